"""The wall clock, in UTC: the one ``utc_now`` of the control plane and the relay.

Standard library only, like ``contracts.py``: the relay imports it (its image copies
``chalicelib/``). Code that needs time takes a clock as an argument defaulting to this, so
tests can fix it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)
