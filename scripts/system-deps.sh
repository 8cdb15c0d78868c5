#!/usr/bin/env bash
# Debian packages the tests and the local stack need: codec libraries for the relay, and the SIP
# software the interop tests run against (and dnsmasq-base, the DNS server of the RFC 3263 tests).
# Installs what is missing (root), or says what to install.
# wireshark-common is dumpcap, the capture the load benchmarks time SIP with (bench/sip_load.py,
# bench/outgoing.py, whose small run is an interop test); `system-deps.sh bench` asks for nothing more.
# podman, buildah, runc and debootstrap build and run the relay image without a Docker engine
# (tests/interop/relay_image.py; docs/deployment.md, "The relay image").
# iproute2 and iptables build the 1:1 NAT of the public-address test in network namespaces
# (tests/interop/netns.py). pulseaudio (a private server with null devices) is linphone's sound
# card in the transfer tests: on ALSA null, linphonec 5.1 deadlocks as it stops a stream
# (tests/interop/pulseaudio.py).
# nodejs runs the CDK library (jsii) for the CDK app and tests/integration/infra (node 20 is what
# these machines have; any 18+ works); util-linux gives `unshare`, which runs those synths offline.
set -euo pipefail
PACKAGES=(libopus0 libvo-amrwbenc0 libopencore-amrwb0 sip-tester baresip-core linphone-cli sox espeak-ng
  dnsmasq-base kamailio kamailio-tls-modules openssl wireshark-common podman buildah runc debootstrap
  iproute2 iptables nodejs util-linux pulseaudio)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
