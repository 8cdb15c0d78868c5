"""Identifiers: time-ordered UUIDs (RFC 9562 version 7), so ids sort by creation time."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import datetime

IdFactory = Callable[[], str]


def uuid7(now: datetime, random_bits: int) -> str:
    """Return a version-7 UUID for ``now`` with 74 bits taken from ``random_bits`` (RFC 9562 §5.7)."""
    unix_ms = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    rand_a = (random_bits >> 62) & 0xFFF
    rand_b = random_bits & ((1 << 62) - 1)
    value = (unix_ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def id_factory(clock: Callable[[], datetime]) -> IdFactory:
    """Return a factory of random version-7 UUIDs stamped by ``clock``."""
    return lambda: uuid7(clock(), secrets.randbits(74))


def counting_id_factory(clock: Callable[[], datetime], start: int = 1) -> IdFactory:
    """Return a deterministic factory (tests): the random bits are a counter."""
    counter = iter(range(start, 1 << 62))
    return lambda: uuid7(clock(), next(counter))
