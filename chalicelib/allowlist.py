"""Admission by source address: is the packet's source inside ``allowedCidrRanges``? (pure)

Fail closed: an empty list admits nobody, and an unreadable or non-IPv4 source is refused. Only the
packet's source address (as the edge saw it) counts, never a header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache


@lru_cache(maxsize=256)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network, ...]:
    return tuple(ipaddress.IPv4Network(c) for c in cidrs)


def source_allowed(source_ip: str, cidrs: Iterable[str]) -> bool:
    """Return True if ``source_ip`` lies in one of ``cidrs``; False for anything unreadable."""
    try:
        address = ipaddress.ip_address(source_ip.strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is None:
            return False
        address = mapped
    return any(address in network for network in _networks(tuple(cidrs)))
