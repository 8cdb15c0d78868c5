"""A leg's events (``relay/calls/recorder.py``), against docs/relay.md's Call events example."""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.contracts import CallEvent, CallEventType, LegEndReason, LegRole, dump
from relay.calls.recorder import LegEvents

CALL_ID = "01a212fa-d498-7736-b793-88e840fce7b3"
LEG_ID = "924f6f13b6e2c684"
AT = datetime(2026, 11, 25, 13, 52, 48, 31550, tzinfo=UTC)


def test_events_are_stamped_as_in_the_docs_example() -> None:
    """docs/relay.md, Call events: the sixth event of the example, field for field."""
    events: list[CallEvent] = []
    leg = LegEvents(events.append, leg_id=LEG_ID, role=LegRole.CALLER, call_id=CALL_ID)
    leg.count = 5
    leg.record(CallEventType.LEG_ENDED, at=AT, reason=LegEndReason.REMOTE_HANGUP, detail="bye")
    body = {k: v for k, v in dump(events[0]).items() if v is not None}
    assert body == {
        "eventId": "01a212fa-d498-7736-b793-88e840fce7b3:924f6f13b6e2c684:6",
        "type": "leg_ended",
        "occurredAt": "2026-11-25T13:52:48.031550Z",
        "callId": CALL_ID,
        "legId": LEG_ID,
        "legRole": "caller",
        "reason": "remote_hangup",
        "detail": "bye",
    }


def test_the_sequence_counts_from_one_and_the_clock_stamps_the_rest() -> None:
    events: list[CallEvent] = []
    leg = LegEvents(
        events.append, leg_id=LEG_ID, role=LegRole.CALLER, call_id=CALL_ID, clock=lambda: AT
    )
    leg.record(CallEventType.INVITE_RECEIVED, at=datetime(2026, 11, 25, 13, 52, 38, tzinfo=UTC))
    leg.record(CallEventType.RINGING, sip_status=180)
    assert [e.event_id.rsplit(":", 1)[1] for e in events] == ["1", "2"]
    assert [e.occurred_at.second for e in events] == [38, 48]
    assert events[1].sip_status == 180


def test_nothing_is_recorded_before_there_is_a_call() -> None:
    """docs/relay.md: "Rejected INVITEs ... record nothing: no call was created"."""
    events: list[CallEvent] = []
    leg = LegEvents(events.append, leg_id=LEG_ID, role=LegRole.CALLER)
    leg.record(CallEventType.LEG_ENDED, reason=LegEndReason.ERROR)
    assert events == []
    assert leg.count == 0
