"""The relay's heartbeat: the calls it lists, and when it says the list is incomplete."""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.contracts import MAX_HEARTBEAT_CALLS
from relay.control.heartbeat import heartbeat

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_a_heartbeat_lists_every_call_while_they_fit() -> None:
    beat = heartbeat("edge-1", {"call-b", "call-a"}, NOW)

    assert (beat.edge_id, beat.call_ids, beat.complete) == ("edge-1", ["call-a", "call-b"], True)


def test_a_heartbeat_with_more_calls_than_fit_says_it_is_incomplete() -> None:
    calls = {f"call-{n:05d}" for n in range(MAX_HEARTBEAT_CALLS + 1)}

    beat = heartbeat("edge-1", calls, NOW)

    assert len(beat.call_ids) == MAX_HEARTBEAT_CALLS and beat.complete is False
