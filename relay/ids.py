"""Identifiers the relay puts on the wire: tags, branches, Call-IDs, SSRCs, sequence numbers.

Cores never draw randomness themselves: they are handed an :class:`IdSource`. Production uses
:class:`SecureIdSource` (``secrets``); tests use :class:`SeededIdSource`, so wire bytes in tests
are reproducible.
"""

from __future__ import annotations

import random
import secrets
from typing import Protocol

BRANCH_MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7


class IdSource(Protocol):
    """Where every random identifier comes from."""

    def token(self, nbytes: int = 8) -> str:
        """Return a URL-safe random token (tags, Call-ID local parts)."""
        ...

    def bits(self, n: int) -> int:
        """Return an integer of ``n`` random bits (SSRCs, initial sequence numbers)."""
        ...


class SecureIdSource:
    """Cryptographically random identifiers (production)."""

    def token(self, nbytes: int = 8) -> str:
        return secrets.token_hex(nbytes)

    def bits(self, n: int) -> int:
        return secrets.randbits(n)


class SeededIdSource:
    """Deterministic identifiers from a seed (tests)."""

    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)

    def token(self, nbytes: int = 8) -> str:
        return self._random.randbytes(nbytes).hex()

    def bits(self, n: int) -> int:
        return self._random.getrandbits(n)


def new_branch(ids: IdSource) -> str:
    """Return a Via branch that starts with the RFC 3261 magic cookie."""
    return BRANCH_MAGIC_COOKIE + ids.token(8)


def new_tag(ids: IdSource) -> str:
    """Return a From/To tag (RFC 3261 §19.3: at least 32 random bits)."""
    return ids.token(6)


def new_call_id(ids: IdSource, host: str) -> str:
    """Return a globally unique Call-ID (RFC 3261 §8.1.1.4)."""
    return f"{ids.token(12)}@{host}"
