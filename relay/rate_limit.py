"""INVITEs per source: a token bucket per source address, in a table of bounded size (pure).

Theory of operation
===================

1. Each source has a bucket of ``burst`` tokens that refills at ``rate_per_s``; an INVITE takes
   one. An empty bucket refuses, and says when the next token comes (the 503's Retry-After).
   Over any span of ``t`` seconds a source thus gets at most ``burst + rate_per_s * t`` INVITEs
   through.
2. A source is an IPv4 address, or the /64 an IPv6 address belongs to (one host holds a whole
   /64, so counting single IPv6 addresses would count nothing); an IPv4-mapped IPv6 address is
   its IPv4 address.
3. Bounded memory: the table holds at most ``max_sources`` buckets and forgets the least recently
   used one first. A bucket left alone for ``burst / rate_per_s`` seconds is full again, the same
   as a forgotten one, so forgetting loses nothing until more than ``max_sources`` sources send
   within that span; an attacker rotating through more addresses than that only makes the table
   forget, never grow.
4. Time is an argument (``now``, monotonic seconds); nothing here reads a clock. A clock that
   steps back refills nothing.

Hand-written rather than a library (``limits``, ``pyrate-limiter``): those read their own clock,
and the relay's cores take ``now`` as an argument (docs/relay.md, the rate limit).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["RateLimit", "SourceRateLimiter", "source_key"]

IPV6_SOURCE_PREFIX = 64
"""An IPv6 source is counted by its /64 (RFC 4291 §2.5.1: the interface identifier's bits)."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket's shape: ``burst`` at once, ``rate_per_s`` sustained."""

    rate_per_s: float = 5.0
    burst: int = 20
    max_sources: int = 10_000
    """Buckets kept at most (about 200 bytes each)."""

    def __post_init__(self) -> None:
        if not (self.rate_per_s > 0 and self.burst >= 1 and self.max_sources >= 1):
            raise ValueError(f"a rate limit needs a positive rate, burst and table size: {self}")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


def source_key(host: str) -> str:
    """Return what a source is counted as: its IPv4 address, or its IPv6 /64 (rule 2)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an address (a test's name): counted as itself
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_SOURCE_PREFIX), strict=False))
    return str(address)


class SourceRateLimiter:
    """Token buckets per source, least recently used forgotten first (see the module docstring)."""

    def __init__(self, limit: RateLimit | None = None) -> None:
        self.limit = limit or RateLimit()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """Return how many sources the table holds."""
        return len(self._buckets)

    def take(self, host: str, now: float) -> int | None:
        """Take a token for an INVITE from ``host``.

        Returns:
            ``None`` when the INVITE may go on; else the whole seconds (at least 1) until the
            source's next token, for Retry-After.
        """
        key, limit = source_key(host), self.limit
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(limit.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > limit.max_sources:
                self._buckets.popitem(last=False)  # rule 3: the least recently used
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(limit.burst), bucket.tokens + elapsed * limit.rate_per_s)
            bucket.updated = max(bucket.updated, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / limit.rate_per_s))
