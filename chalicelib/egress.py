"""Where sipline may connect on a user's behalf: the address policy against SSRF (pure but for DNS).

Users give sipline places to connect to: ``fallbackHandler.url`` (the control plane POSTs to it),
``callTemplate.mediaEndpoint.url`` (the relay opens a WebSocket to it), a registration's ``proxy``
and ``outboundProxy`` and an outgoing call's ``to`` (the relay sends SIP there). Pointed inside the
network, each one would make sipline a proxy into it: the cloud metadata service (credentials), a
database on the VPC, the relay's own loopback. This module is the one definition of what is
refused; the control plane (at save time, ``chalicelib/targets.py``, and when it calls the fallback
handler) and the relay (``relay/transport/egress.py``) both use it.

1. **Only globally reachable addresses.** An address inside a block of :data:`SPECIAL_PURPOSE`
   is refused: the IANA IPv4 and IPv6 Special-Purpose Address Registries' blocks that are not
   globally reachable (RFC 6890 and its updates), plus multicast. That covers loopback,
   RFC 1918 and ULA private ranges, link-local, unspecified, shared address space (CGNAT,
   100.64.0.0/10: it is the carrier's or the VPC's inside, never a customer's server), and the
   documentation, benchmarking and reserved blocks (not reachable on the Internet, so refusing
   them costs nothing).
2. **Embedded IPv4.** An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) is the IPv4 address it
   maps, and a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address is checked as the IPv4 address it
   embeds, so no IPv6 spelling reaches a refused IPv4 address.
3. **The deployment's allowance.** ``SIPLINE_ALLOWED_PRIVATE_TARGETS`` lists CIDR ranges that are
   allowed although special (a PBX on the VPC, ``make dev``'s loopback). A list of ranges, not
   one "allow private" switch: opening the VPC's 10.0.0.0/16 must not open loopback or the rest
   of 10/8 too.
4. **Never the metadata service.** :data:`METADATA_ADDRESSES` (AWS instance metadata, the ECS
   task metadata and credentials endpoint, EKS pod identity) are refused even inside an allowed
   range: they hand out the deployment's own credentials.
5. **Names.** ``localhost`` and ``*.localhost`` are loopback by name (RFC 6761 §6.3). Any other
   name is resolved and *every* address it resolves to must pass: a name with one internal
   address among public ones is refused. At connect time the caller then connects to a checked
   address, never to the name (a second resolution could answer differently: DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> addresses`` as text; raises OSError (``socket.gaierror``) when it cannot."""

ALLOWANCE_VARIABLE = "SIPLINE_ALLOWED_PRIVATE_TARGETS"

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # EC2 instance metadata (IMDS), also GCP and Azure
        "fd00:ec2::254",  # EC2 instance metadata over IPv6
        "169.254.170.2",  # ECS task metadata and task-role credentials (the relay runs on ECS)
        "169.254.170.23",  # EKS Pod Identity credentials
        "fd00:ec2::23",  # EKS Pod Identity credentials over IPv6
    )
)


@dataclass(frozen=True, slots=True)
class SpecialBlock:
    """One special-purpose block: what it is called and where it is defined."""

    network: IpNetwork
    kind: str
    source: str


def _blocks(*rows: tuple[str, str, str]) -> tuple[SpecialBlock, ...]:
    blocks = [SpecialBlock(ipaddress.ip_network(cidr), kind, source) for cidr, kind, source in rows]
    return tuple(sorted(blocks, key=lambda b: -b.network.prefixlen))  # most specific first


SPECIAL_PURPOSE = _blocks(
    # IANA IPv4 Special-Purpose Address Registry, blocks not globally reachable, and multicast.
    ("0.0.0.0/8", "unspecified", "RFC 791, RFC 1122 §3.2.1.3 ('this network')"),
    ("10.0.0.0/8", "private", "RFC 1918"),
    ("100.64.0.0/10", "shared address space (CGNAT)", "RFC 6598"),
    ("127.0.0.0/8", "loopback", "RFC 1122 §3.2.1.3"),
    ("169.254.0.0/16", "link-local", "RFC 3927"),
    ("172.16.0.0/12", "private", "RFC 1918"),
    ("192.0.0.0/24", "IETF protocol assignment", "RFC 6890 §2.2.2"),
    ("192.0.2.0/24", "documentation", "RFC 5737"),
    ("192.88.99.0/24", "reserved (6to4 relay anycast)", "RFC 7526"),
    ("192.168.0.0/16", "private", "RFC 1918"),
    ("198.18.0.0/15", "benchmarking", "RFC 2544"),
    ("198.51.100.0/24", "documentation", "RFC 5737"),
    ("203.0.113.0/24", "documentation", "RFC 5737"),
    ("224.0.0.0/4", "multicast", "RFC 5771"),
    ("240.0.0.0/4", "reserved", "RFC 1112 §4"),
    ("255.255.255.255/32", "broadcast", "RFC 919 §7"),
    # IANA IPv6 Special-Purpose Address Registry, blocks not globally reachable, and multicast.
    ("::/128", "unspecified", "RFC 4291 §2.5.2"),
    ("::1/128", "loopback", "RFC 4291 §2.5.3"),
    ("::/96", "IPv4-compatible (deprecated)", "RFC 4291 §2.5.5.1"),
    ("64:ff9b:1::/48", "NAT64 local use", "RFC 8215"),
    ("100::/64", "discard-only", "RFC 6666"),
    ("2001::/23", "IETF protocol assignment", "RFC 2928"),
    ("2001:db8::/32", "documentation", "RFC 3849"),
    ("3fff::/20", "documentation", "RFC 9637"),
    ("5f00::/16", "segment routing (SRv6)", "RFC 9602"),
    ("fc00::/7", "private", "RFC 4193 (unique local)"),
    ("fe80::/10", "link-local", "RFC 4291 §2.5.6"),
    ("fec0::/10", "site-local (deprecated)", "RFC 3879"),
    ("ff00::/8", "multicast", "RFC 4291 §2.7"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 §2.1: the IPv4 address is the last 32 bits
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")  # RFC 4291 §2.4; the rest of IPv6 is reserved


class TargetRefused(ValueError):
    """A target is not a place sipline connects to; the message says which address and why."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def normalize(address: IpAddress) -> IpAddress:
    """Return the IPv4 address an IPv4-mapped IPv6 address stands for; any other unchanged."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_allowance(text: str) -> tuple[IpNetwork, ...]:
    """Parse ``SIPLINE_ALLOWED_PRIVATE_TARGETS``: comma-separated CIDR ranges ('' allows none).

    Raises:
        ValueError: an item is not a CIDR range (the message names the variable and the item).
    """
    networks: list[IpNetwork] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as error:
            raise ValueError(
                f"{ALLOWANCE_VARIABLE}: {item!r} is not a CIDR range ({error})"
            ) from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Which addresses sipline may connect to: the globally reachable ones, plus ``allowed``."""

    allowed: tuple[IpNetwork, ...] = ()
    """Special-purpose ranges the deployment allows (``SIPLINE_ALLOWED_PRIVATE_TARGETS``)."""

    @classmethod
    def from_setting(cls, text: str) -> EgressPolicy:
        """Build the policy from the text of ``SIPLINE_ALLOWED_PRIVATE_TARGETS``."""
        return cls(parse_allowance(text))

    def refusal(self, address: IpAddress) -> str | None:
        """Return why ``address`` is refused (its kind, e.g. ``"loopback"``), or None if allowed."""
        address = normalize(address)
        if address in METADATA_ADDRESSES:
            return "cloud metadata"
        if any(address in network for network in self.allowed):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None and (inner := self.refusal(embedded)) is not None:
                return f"{inner}, as {embedded}"
        for block in SPECIAL_PURPOSE:
            if address in block.network:
                return block.kind
        if address.version == 6 and address not in _GLOBAL_UNICAST and address not in _NAT64:
            return "reserved (outside 2000::/3)"
        return None

    def check(self, address: IpAddress, *, name: str | None = None) -> IpAddress:
        """Return the address to connect to (IPv4-mapped ones as IPv4), or raise TargetRefused."""
        address = normalize(address)
        kind = self.refusal(address)
        if kind is not None:
            subject = f"{name} resolves to {address}, which" if name else str(address)
            raise TargetRefused(f"{subject} is not a public address ({kind})")
        return address

    def check_all(self, name: str, addresses: Iterable[str]) -> list[IpAddress]:
        """Check every address ``name`` resolved to; return them in order, without repeats.

        Raises:
            TargetRefused: any one of them is refused, or there are none.
        """
        checked: list[IpAddress] = []
        for text in addresses:
            address = self.check(_answer(name, text), name=name)
            if address not in checked:
                checked.append(address)
        if not checked:
            raise TargetRefused(f"{name} resolves to no address")
        return checked


def _answer(name: str, text: str) -> IpAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise TargetRefused(f"{name} resolves to {text!r}, which is not an IP address") from None


def literal_address(host: str) -> IpAddress | None:
    """Return ``host`` as an IP address when it is one (``[v6]`` brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def loopback_name(host: str) -> bool:
    """Tell whether ``host`` is ``localhost`` or under ``.localhost`` (RFC 6761 §6.3)."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


_LOOPBACK_NAME_ADDRESSES = ("127.0.0.1", "::1")


def checked_without_dns(policy: EgressPolicy, host: str) -> list[IpAddress] | None:
    """Check a host that needs no lookup: an IP address, or a loopback name (which stands for
    127.0.0.1 and ::1, rule 5). Return its checked addresses, or None when it must be resolved.

    Raises:
        TargetRefused: the address, or a loopback address the name stands for, is refused.
    """
    literal = literal_address(host)
    if literal is not None:
        return [policy.check(literal)]
    if loopback_name(host):
        return policy.check_all(host, _LOOPBACK_NAME_ADDRESSES)
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the system's resolver (``getaddrinfo``); the addresses as text."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def resolve_checked(
    policy: EgressPolicy, host: str, port: int, resolve: Resolver = system_resolver
) -> list[IpAddress]:
    """Resolve ``host`` once and check every address: connect to one of those returned.

    Raises:
        TargetRefused: the host, or an address it resolves to, is refused.
        OSError: the name does not resolve (``socket.gaierror``).
    """
    known = checked_without_dns(policy, host)
    if known is not None:
        return known
    try:
        answers = resolve(host, port)
    except ValueError as error:  # idna refuses the name (UnicodeError), or a NUL in it
        raise OSError(f"{host!r} cannot be resolved ({error})") from None
    return policy.check_all(host, answers)


def check_when_saved(
    policy: EgressPolicy, host: str, port: int, resolve: Resolver = system_resolver
) -> None:
    """Refuse a target when it is saved: an address, a loopback name, or a name that resolves to
    a refused address. A name that does not resolve now is accepted: it is checked again on
    every connection, which is what protects (a PBX's name may resolve only inside its VPC).

    Raises:
        TargetRefused: the target is refused.
    """
    try:
        resolve_checked(policy, host, port, resolve)
    except OSError:
        return
