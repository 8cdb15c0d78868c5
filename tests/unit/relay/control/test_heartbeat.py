"""The relay's heartbeat: the calls it lists, and when it says the list is incomplete."""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.contracts import MAX_HEARTBEAT_CALLS, MAX_HEARTBEAT_ENDED
from relay.control.heartbeat import heartbeat

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_a_heartbeat_lists_every_call_while_they_fit() -> None:
    beat = heartbeat("edge-1", {"call-b", "call-a"}, NOW)

    assert (beat.edge_id, beat.call_ids, beat.complete) == ("edge-1", ["call-a", "call-b"], True)


def test_a_heartbeat_with_more_calls_than_fit_says_it_is_incomplete() -> None:
    calls = {f"call-{n:05d}" for n in range(MAX_HEARTBEAT_CALLS + 1)}

    beat = heartbeat("edge-1", calls, NOW)

    assert len(beat.call_ids) == MAX_HEARTBEAT_CALLS and beat.complete is False


def test_a_call_listed_only_for_its_events_is_named_with_its_end() -> None:
    """relay/control/heartbeat.py: a listed call that ended here goes in ``endedAt`` with its
    last event's instant; a call not listed (cut) is not named there."""
    ended = datetime(2026, 11, 25, 9, 59, 40, tzinfo=UTC)

    beat = heartbeat("edge-1", {"held", "ended"}, NOW, ended_at={"ended": ended, "gone": ended})

    assert beat.call_ids == ["ended", "held"]
    assert beat.ended_at == {"ended": ended}
    assert beat.evidence("ended") == ended and beat.evidence("held") == NOW
    assert beat.model_dump(mode="json", by_alias=True)["endedAt"] == {
        "ended": "2026-11-25T09:59:40Z"
    }


def test_endedat_is_bounded() -> None:
    calls = {f"call-{n:05d}" for n in range(MAX_HEARTBEAT_ENDED + 10)}

    beat = heartbeat("edge-1", calls, NOW, ended_at=dict.fromkeys(calls, NOW))

    assert beat.ended_at is not None and len(beat.ended_at) == MAX_HEARTBEAT_ENDED
    assert beat.complete is True


def test_without_ended_calls_no_endedat_key_is_sent() -> None:
    """A control plane older than ``endedAt`` refuses unknown fields: the key appears only when
    a call is named (upgrade the control plane first, docs/relay.md, Heartbeat)."""
    beat = heartbeat("edge-1", {"held"}, NOW, ended_at={})

    assert "endedAt" not in beat.model_dump(by_alias=True, exclude_none=True)
