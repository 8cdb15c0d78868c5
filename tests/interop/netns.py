"""A task behind 1:1 NAT, as on AWS, built from network namespaces: relay, router, carrier.

On Fargate a task's ENI has a private address; the internet gateway maps a public address to
it one to one, and a carrier on the internet can reach only the public one. The same here, in
three namespaces this module makes (unique names per run, deleted on exit whatever happened):

- **relay**: one veth with ``PRIVATE`` (10.0.1.10/24), default route via the router; ``lo`` up,
  for the services the relay talks to inside (the control plane, moto, the metadata endpoint,
  the test agent).
- **router**: ``10.0.1.1/24`` towards the relay and ``203.0.113.1/24`` towards the carrier, plus
  ``PUBLIC`` (203.0.113.10/32), forwarding on. iptables does what the gateway does: DNAT of
  ``PUBLIC`` to ``PRIVATE`` on the way in, SNAT of ``PRIVATE`` to ``PUBLIC`` on the way out, and
  a packet from the carrier's side whose flow was addressed to the private subnet is dropped
  (the private address is not reachable from outside; the packets of a flow addressed to the
  public one pass, whichever side began it: the relay's RTP often starts before the carrier's).
- **carrier**: one veth with ``PEER`` (203.0.113.20/24), default route via the router. SIPp and
  the capture run here (``ip netns exec``).

The addresses are documentation ranges (RFC 5737 203.0.113.0/24, RFC 1918 10.0.0.0/8) that
exist only inside these namespaces: nothing is added to the host's own network.

:meth:`NatNetwork.inside` moves the calling thread (the test's main thread) into a namespace
for a with-block (``setns(2)``, through libc: Python 3.11 has no ``os.setns``): every socket
made, thread started and process spawned meanwhile lives there, which is how the local stack
(moto, ``chalice local``, the relay) and the test agent run in the relay's namespace while the
test drives them over 127.0.0.1 as the other interop tests do.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.interop.stack import require

PRIVATE = "10.0.1.10"
PUBLIC = "203.0.113.10"
PEER = "203.0.113.20"
ROUTER_PRIVATE = "10.0.1.1"
ROUTER_PUBLIC = "203.0.113.1"
PRIVATE_SUBNET = "10.0.1.0/24"
COMMAND_TIMEOUT_S = 20
CAPTURE_START_S = 10
CLONE_NEWNET = 0x40000000  # <sched.h>
NETNS_DIR = Path("/var/run/netns")


class NatNetwork:
    """The three namespaces of the module docstring; use as a context manager."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            pytest.fail(
                "network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)", pytrace=False
            )
        self.ip = require("ip")
        self.iptables = require("iptables")
        tag = f"sl{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.relay, self.router, self.carrier = f"{tag}-relay", f"{tag}-router", f"{tag}-carrier"
        self._veth = (f"{tag}r", f"{tag}n", f"{tag}p", f"{tag}m")
        """relay's, router's towards relay, carrier's, router's towards carrier (<= 15 chars)."""
        self._made: list[str] = []

    def __enter__(self) -> NatNetwork:
        try:
            self._build()
        except BaseException:
            self._delete()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._delete()

    @property
    def carrier_interface(self) -> str:
        """The carrier's one interface (where its capture listens)."""
        return self._veth[2]

    def exec_prefix(self, namespace: str) -> list[str]:
        """The command prefix that runs a program in ``namespace``."""
        return [self.ip, "netns", "exec", namespace]

    @contextmanager
    def inside(self, namespace: str) -> Iterator[None]:
        """Run the with-block's thread in ``namespace`` (module docstring), then come back."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns_path(NETNS_DIR / namespace)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)

    def _build(self) -> None:
        relay_if, router_relay_if, carrier_if, router_carrier_if = self._veth
        for namespace in (self.relay, self.router, self.carrier):
            self._run(self.ip, "netns", "add", namespace)
            self._made.append(namespace)
        self._run(self.ip, "link", "add", relay_if, "netns", self.relay, "type", "veth",
                  "peer", "name", router_relay_if, "netns", self.router)  # fmt: skip
        self._run(self.ip, "link", "add", carrier_if, "netns", self.carrier, "type", "veth",
                  "peer", "name", router_carrier_if, "netns", self.router)  # fmt: skip
        self._address(self.relay, relay_if, f"{PRIVATE}/24", via=ROUTER_PRIVATE)
        self._address(self.carrier, carrier_if, f"{PEER}/24", via=ROUTER_PUBLIC)
        self._address(self.router, router_relay_if, f"{ROUTER_PRIVATE}/24")
        self._address(self.router, router_carrier_if, f"{ROUTER_PUBLIC}/24")
        self._run(
            self.ip, "-n", self.router, "addr", "add", f"{PUBLIC}/32", "dev", router_carrier_if
        )
        in_router = self.exec_prefix(self.router)
        self._run(*in_router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        nat = [*in_router, self.iptables, "-t", "nat", "-A"]
        self._run(*nat, "PREROUTING", "-d", PUBLIC, "-j", "DNAT", "--to-destination", PRIVATE)
        self._run(*nat, "POSTROUTING", "-s", PRIVATE, "-j", "SNAT", "--to-source", PUBLIC)
        self._run(*in_router, self.iptables, "-A", "FORWARD", "-i", router_carrier_if,
                  "-m", "conntrack", "--ctorigdst", PRIVATE_SUBNET, "-j", "DROP")  # fmt: skip

    def _address(self, namespace: str, interface: str, cidr: str, via: str | None = None) -> None:
        self._run(self.ip, "-n", namespace, "addr", "add", cidr, "dev", interface)
        self._run(self.ip, "-n", namespace, "link", "set", interface, "up")
        self._run(self.ip, "-n", namespace, "link", "set", "lo", "up")
        if via is not None:
            self._run(self.ip, "-n", namespace, "route", "add", "default", "via", via)

    def _delete(self) -> None:
        for namespace in reversed(self._made):  # its veth ends and iptables rules go with it
            subprocess.run(
                [self.ip, "netns", "del", namespace],
                capture_output=True,
                timeout=COMMAND_TIMEOUT_S,
            )
        self._made.clear()

    @staticmethod
    def _run(*command: str) -> None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        assert done.returncode == 0, f"{' '.join(command)}: {done.stderr.strip()}"


_libc = ctypes.CDLL(None, use_errno=True)


def _setns_path(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        _setns(descriptor)
    finally:
        os.close(descriptor)


def _setns(descriptor: int) -> None:
    if _libc.setns(descriptor, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


@contextmanager
def capture(prefix: list[str], interface: str, path: Path) -> Iterator[Path]:
    """``dumpcap`` on ``interface`` (in the namespace of ``prefix``) into ``path`` (classic pcap).

    Started before the with-block (it says ``File:`` once it captures), stopped with SIGINT
    after it: dumpcap writes what it holds and exits.
    """
    errors = path.with_suffix(".err")
    command = [
        *prefix,
        require("dumpcap"),
        "-i",
        interface,
        "-f",
        "udp",
        "-P",
        "-q",
        "-w",
        str(path),
    ]
    with open(errors, "wb") as err:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    try:
        deadline = time.monotonic() + CAPTURE_START_S
        while b"File:" not in errors.read_bytes():
            assert process.poll() is None, f"dumpcap exited: {errors.read_text(errors='replace')}"
            assert time.monotonic() < deadline, "dumpcap did not start capturing"
            time.sleep(0.05)
        yield path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=COMMAND_TIMEOUT_S)
