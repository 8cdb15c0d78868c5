"""The reaper's rules (``chalicelib/liveness.py``) as a pure function: a call, its events, the
relays' latest heartbeats and ``now`` in; a closing or None out. Bounds from ``docs/billing.md``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from chalicelib.call_models import Call
from chalicelib.contracts import CallEvent, CallEventType, EdgeHeartbeat, MediaEndpoint
from chalicelib.liveness import CloseRule, RelayView, verdict
from chalicelib.store.heartbeats import StoredHeartbeat

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _call(edge_id: str | None = "edge-a", **fields: object) -> Call:
    return Call(
        call_id="call-1",
        account_id="default",
        created=T0,
        direction="incoming" if edge_id else "outgoing",
        caller="alice",
        callee="sales",
        media_endpoint=MediaEndpoint(url="ws://127.0.0.1:9/agent"),
        edge_id=edge_id,
        **fields,  # type: ignore[arg-type]
    )


def _relays(*beats: tuple[str, float, list[str], bool]) -> RelayView:
    stored = {
        edge: StoredHeartbeat(
            EdgeHeartbeat(edge_id=edge, sent_at=_at(at), call_ids=calls, complete=complete),
            _at(at),
        )
        for edge, at, calls, complete in beats
    }
    return RelayView.of(stored)


def _joined(seconds: float) -> list[CallEvent]:
    return [
        CallEvent(
            event_id="e1",
            type=CallEventType.AGENT_JOINED,
            occurred_at=_at(seconds),
            call_id="call-1",
        )
    ]


def test_an_incomplete_heartbeat_closes_none_of_its_relays_unlisted_calls() -> None:
    relays = _relays(("edge-a", 600, [], False))

    assert verdict(_call(), lambda: [], relays, _at(601)) is None


def test_a_complete_heartbeat_without_the_call_closes_it_only_after_the_grace() -> None:
    early = _relays(("edge-a", 60, [], True))
    late = _relays(("edge-a", 60.001, [], True))

    assert verdict(_call(), lambda: [], early, _at(61)) is None
    closing = verdict(_call(), lambda: [], late, _at(61))
    assert closing is not None and (closing.rule, closing.at) == (CloseRule.NOT_HELD, T0)


def test_a_silent_relays_call_closes_at_the_last_heartbeat_that_listed_it() -> None:
    relays = _relays(("edge-a", 30, ["call-1"], True), ("edge-b", 200, [], True))

    closing = verdict(_call(), lambda: _joined(1), relays, _at(151))

    assert closing is not None and (closing.rule, closing.at) == (CloseRule.RELAY_SILENT, _at(30))


def test_a_relay_is_silent_only_past_the_bound() -> None:
    relays = _relays(("edge-a", 30, ["call-1"], True), ("edge-b", 200, [], True))

    assert verdict(_call(), lambda: _joined(1), relays, _at(150)) is None


def test_a_call_listed_by_another_fresh_relay_is_held() -> None:
    relays = _relays(("edge-a", 0, [], True), ("edge-b", 200, ["call-1"], True))

    assert verdict(_call(), lambda: _joined(1), relays, _at(201)) is None


def test_the_events_are_read_only_when_a_rule_needs_them() -> None:
    def unread() -> list[CallEvent]:
        raise AssertionError("a held call's events are not read")

    relays = _relays(("edge-a", 100, ["call-1"], True))

    assert verdict(_call(), unread, relays, _at(101)) is None


def test_a_joined_call_with_no_known_relay_waits_for_the_ceiling() -> None:
    relays = _relays(("edge-b", 1000, [], True))
    call = _call(edge_id=None, join_timeout="10s", max_duration="60s")

    assert verdict(call, lambda: _joined(5), relays, _at(10 + 60 + 300 - 0.001)) is None
    closing = verdict(call, lambda: _joined(5), relays, _at(10 + 60 + 300))
    assert closing is not None and closing.rule is CloseRule.MAX_DURATION


def test_a_ceiling_close_never_bills_past_join_timeout_plus_max_duration() -> None:
    relays = _relays(("edge-a", 500, ["call-1"], True))
    call = _call(join_timeout="10s", max_duration="60s")

    closing = verdict(call, lambda: _joined(5), relays, _at(500))

    assert closing is not None and closing.at == _at(70)


def test_a_hang_up_closes_a_call_no_relay_holds_at_once_even_with_no_fresh_relay() -> None:
    call = _call(edge_id=None)

    assert verdict(call, lambda: [], _relays(), _at(1)) is None
    closing = verdict(call, lambda: [], _relays(), _at(1), hang_up=True)
    assert closing is not None and closing.rule is CloseRule.NEVER_JOINED


def test_an_ended_call_is_never_closed_again() -> None:
    call = _call(ended=_at(5))

    assert verdict(call, lambda: [], _relays(("edge-b", 9999, [], True)), _at(9999)) is None


def test_a_silent_relays_ended_call_closes_at_its_end_not_at_the_heartbeat() -> None:
    """docs/billing.md, Calls no relay will end: a call its relay lists only for undelivered
    events (``endedAt``) is closed at its end, not at the later heartbeat that listed it."""
    beat = EdgeHeartbeat(
        edge_id="edge-a", sent_at=_at(45), call_ids=["call-1"], ended_at={"call-1": _at(20)}
    )
    relays = RelayView.of(
        {
            "edge-a": StoredHeartbeat(beat, _at(45)),
            "edge-b": StoredHeartbeat(EdgeHeartbeat(edge_id="edge-b", sent_at=_at(200)), _at(200)),
        }
    )

    closing = verdict(_call(), lambda: _joined(1), relays, _at(166))

    assert closing is not None and (closing.rule, closing.at) == (CloseRule.RELAY_SILENT, _at(20))


def test_an_end_after_the_heartbeat_counts_as_the_heartbeat() -> None:
    """A relay's ``endedAt`` never moves the evidence past the heartbeat that carries it."""
    beat = EdgeHeartbeat(
        edge_id="edge-a", sent_at=_at(45), call_ids=["call-1"], ended_at={"call-1": _at(99)}
    )

    assert beat.evidence("call-1") == _at(45)


@pytest.mark.parametrize(
    ("ended_at", "message"),
    [
        ({"call-2": "2026-11-25T12:00:20Z"}, "endedAt may name only calls listed in callIds"),
        ({"call-1": "2026-11-25T12:00:20"}, "must carry a timezone"),
        ({"call-1": "yesterday"}, "datetime"),
    ],
)
def test_a_malformed_endedat_is_refused(ended_at: dict[str, str], message: str) -> None:
    body = {"edgeId": "edge-a", "sentAt": "2026-11-25T12:00:45Z", "callIds": ["call-1"]}
    with pytest.raises(ValidationError, match=message):
        EdgeHeartbeat.model_validate(body | {"endedAt": ended_at})
