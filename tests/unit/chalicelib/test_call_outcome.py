"""Call outcome: when and why a call ended, over the vectors in ``tests/vectors/events/``.

Offsets are seconds from t=0, ``2025-03-14T09:00:00Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.billing import Bill, bill
from chalicelib.call_outcome import (
    CallOutcome,
    EndReason,
    SipTerminationReason,
    summarize,
    termination_reason_for,
)
from chalicelib.contracts import CallEvent, CallEventBatch, CallEventType, LegEndReason, LegRole

VECTORS = Path(__file__).parents[2] / "vectors" / "events"
T0 = datetime(2025, 3, 14, 9, 0, 0, tzinfo=UTC)

Reason = LegEndReason
Sip = SipTerminationReason


def _load(name: str) -> list[CallEvent]:
    return CallEventBatch.model_validate_json((VECTORS / f"{name}.json").read_text()).events


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _event(n: int, kind: CallEventType, seconds: float, **fields: Any) -> CallEvent:
    return CallEvent(event_id=f"e{n:03d}", type=kind, occurred_at=_at(seconds), **fields)


# --- the leg-end mapping -----------------------------------------------------------------------
# Each expectation is read off docs/api.md's `terminationReason` table (the first row that applies)
# and docs/webhooks.md's leg end reasons ("a leg_ended without reason reads as rejected when it
# carries a 3xx-6xx sipStatus, else as remote_hangup"), case by case; the row is named beside it.

TERMINATIONS: list[tuple[Reason | None, int | None, bool, Sip]] = [
    # reason, final status, answered -> termination reason
    # REFERRED: "the leg ended with reason referred"
    (Reason.REFERRED, None, True, Sip.REFERRED),
    # ERROR: "reason error" (before any status row: a 503 with reason error is still ERROR)
    (Reason.ERROR, None, True, Sip.ERROR),
    (Reason.ERROR, 503, False, Sip.ERROR),
    # NORMAL: "a hang-up (either side) after the leg was answered"
    (Reason.REMOTE_HANGUP, None, True, Sip.NORMAL),
    (Reason.LOCAL_HANGUP, None, True, Sip.NORMAL),
    (None, None, True, Sip.NORMAL),  # no reason, no status: reads as remote_hangup
    # TIMEOUT: "reason timeout; or final status 408 or 480"
    (Reason.TIMEOUT, None, False, Sip.TIMEOUT),  # no answer
    (Reason.TIMEOUT, 487, False, Sip.TIMEOUT),  # no answer, then our CANCEL: the reason decides
    (Reason.TIMEOUT, None, True, Sip.TIMEOUT),  # maximum duration or no media
    (Reason.REJECTED, 408, False, Sip.TIMEOUT),
    (Reason.REJECTED, 480, False, Sip.TIMEOUT),
    # INVALID_NUMBER: "final status 404, 484 or 604"
    (Reason.REJECTED, 404, False, Sip.INVALID_NUMBER),
    (Reason.REJECTED, 484, False, Sip.INVALID_NUMBER),
    (Reason.REJECTED, 604, False, Sip.INVALID_NUMBER),
    # BUSY: "final status 486 or 600"
    (Reason.REJECTED, 486, False, Sip.BUSY),
    (Reason.REJECTED, 600, False, Sip.BUSY),
    (None, 486, False, Sip.BUSY),  # no reason and a 3xx-6xx status: reads as rejected
    # CANCELED: "final status 487; or a hang-up before the answer without a failure status"
    (Reason.REJECTED, 487, False, Sip.CANCELED),
    (Reason.LOCAL_HANGUP, 487, False, Sip.CANCELED),
    (Reason.REMOTE_HANGUP, None, False, Sip.CANCELED),  # the caller's CANCEL
    (Reason.LOCAL_HANGUP, None, False, Sip.CANCELED),
    (None, None, False, Sip.CANCELED),  # reads as remote_hangup, before the answer
    # DESTINATION_UNAVAILABLE: "final status 502, 503 or 504"
    (Reason.REJECTED, 502, False, Sip.DESTINATION_UNAVAILABLE),
    (Reason.REJECTED, 503, False, Sip.DESTINATION_UNAVAILABLE),
    (Reason.REJECTED, 504, False, Sip.DESTINATION_UNAVAILABLE),
    # REJECTED: "final status 403 or 603, or reason rejected without a status" (issue 9's table)
    (Reason.REJECTED, 403, False, Sip.REJECTED),
    (Reason.REJECTED, 603, False, Sip.REJECTED),
    (Reason.REJECTED, None, False, Sip.REJECTED),
    # UNKNOWN: "any other 3xx-6xx final status (302, 488, 500, ...)"
    (Reason.REJECTED, 302, False, Sip.UNKNOWN),
    (Reason.REJECTED, 488, False, Sip.UNKNOWN),
    (Reason.REJECTED, 500, False, Sip.UNKNOWN),
    (Reason.REJECTED, 699, False, Sip.UNKNOWN),
]


@pytest.mark.parametrize(("reason", "sip_status", "answered", "expected"), TERMINATIONS)
def test_leg_end_maps_to_its_sip_termination_reason(
    reason: Reason | None, sip_status: int | None, answered: bool, expected: Sip
) -> None:
    assert termination_reason_for(reason, sip_status, answered=answered) is expected


CALLER_LEG_ENDS: dict[Reason, EndReason] = {
    # docs/api.md `endReason`, for a joined call whose caller leg ended with this reason
    Reason.REMOTE_HANGUP: EndReason.HANGUP,  # "hangup: ... remote_hangup (the far end hung up)"
    Reason.REJECTED: EndReason.HANGUP,  # "hangup: ... or rejected"
    Reason.LOCAL_HANGUP: EndReason.AGENT_HANGUP,  # "agent_hangup: ... local_hangup"
    Reason.TIMEOUT: EndReason.TIMEOUT,  # "timeout: the caller leg ended with timeout"
    Reason.ERROR: EndReason.SYSTEM_ERROR,  # "system_error: the caller leg ended with error"
    Reason.REFERRED: EndReason.TRANSFERRED,  # "transferred: a REFER succeeded" (webhooks.md:
    # referred is "handed over by a successful REFER")
}


def test_every_leg_end_reason_has_an_expected_call_end_reason() -> None:
    assert CALLER_LEG_ENDS.keys() == set(LegEndReason)


@pytest.mark.parametrize(("leg_end", "expected"), CALLER_LEG_ENDS.items())
def test_the_caller_legs_end_gives_the_calls_end_reason(
    leg_end: Reason, expected: EndReason
) -> None:
    assert summarize(_incoming_call(leg_end)).end_reason is expected


# --- scenarios ---------------------------------------------------------------------------------

EXPECTED_OUTCOMES: dict[str, tuple[float | None, float | None, EndReason | None, Sip | None]] = {
    # name: (joined s, ended s, end reason, SIP termination reason)
    "incoming_hangup": (1, 61, EndReason.HANGUP, Sip.NORMAL),
    "incoming_hangup_redelivered": (1, 61, EndReason.HANGUP, Sip.NORMAL),
    "incoming_agent_hangup": (1, 45.2, EndReason.AGENT_HANGUP, Sip.NORMAL),
    "incoming_active": (1, None, None, None),
    "incoming_rejected": (None, 0.05, EndReason.UNJOINED, Sip.INVALID_NUMBER),
    "outgoing_answered": (12.5, 72.5, EndReason.HANGUP, Sip.NORMAL),
    "outgoing_no_answer": (None, 30, EndReason.UNJOINED, Sip.TIMEOUT),
    "outgoing_busy": (None, 0.8, EndReason.UNJOINED, Sip.BUSY),
    "outgoing_canceled": (None, 3.2, EndReason.UNJOINED, Sip.CANCELED),
    "refer_cold_transfer": (1, 46, EndReason.TRANSFERRED, Sip.REFERRED),
    "bridged_cold_transfer": (1, 158.2, EndReason.TRANSFERRED, Sip.NORMAL),
    "refer_warm_transfer": (1, 57, EndReason.TRANSFERRED, Sip.REFERRED),
    "try_refer_warm_transfer_succeeded": (1, 57, EndReason.TRANSFERRED, Sip.REFERRED),
    "refer_warm_transfer_failed": (1, 100, EndReason.HANGUP, Sip.NORMAL),
    "bridged_warm_transfer": (1, 175.2, EndReason.TRANSFERRED, Sip.NORMAL),
    "try_refer_warm_transfer_fallback": (1, 175.2, EndReason.TRANSFERRED, Sip.NORMAL),
}


def test_every_event_vector_has_an_expected_outcome() -> None:
    assert {path.stem for path in VECTORS.glob("*.json")} == EXPECTED_OUTCOMES.keys()


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTCOMES))
def test_scenario_summarizes_to_the_expected_outcome(name: str) -> None:
    joined_s, ended_s, end_reason, termination = EXPECTED_OUTCOMES[name]
    events = _load(name)

    assert summarize(events) == CallOutcome(
        joined=None if joined_s is None else _at(joined_s),
        ended=None if ended_s is None else _at(ended_s),
        end_reason=end_reason,
        termination_reason=termination,
        bill=bill(events),
    )


def test_caller_hanging_up_an_incoming_call_is_a_normal_hangup() -> None:
    outcome = summarize(_load("incoming_hangup"))

    assert (outcome.end_reason, outcome.termination_reason) == (EndReason.HANGUP, Sip.NORMAL)
    assert outcome.ended == _at(61)


def test_agent_hanging_up_is_an_agent_hangup() -> None:
    outcome = summarize(_load("incoming_agent_hangup"))

    assert (outcome.end_reason, outcome.termination_reason) == (EndReason.AGENT_HANGUP, Sip.NORMAL)


def test_outgoing_call_refused_busy_is_unjoined_and_busy() -> None:
    outcome = summarize(_load("outgoing_busy"))

    assert (outcome.joined, outcome.end_reason) == (None, EndReason.UNJOINED)
    assert outcome.termination_reason is Sip.BUSY


def test_outgoing_call_not_answered_in_time_is_unjoined_and_timed_out() -> None:
    outcome = summarize(_load("outgoing_no_answer"))

    assert (outcome.end_reason, outcome.termination_reason) == (EndReason.UNJOINED, Sip.TIMEOUT)


def test_outgoing_call_canceled_before_the_answer_is_canceled() -> None:
    outcome = summarize(_load("outgoing_canceled"))

    assert outcome.termination_reason is Sip.CANCELED


def test_refer_transfer_ends_the_call_at_refer_success_even_before_legs_report_ending() -> None:
    events = [e for e in _load("refer_cold_transfer") if e.type is not CallEventType.LEG_ENDED]

    outcome = summarize(events)

    assert outcome.ended == _at(46)
    assert (outcome.end_reason, outcome.termination_reason) == (
        EndReason.TRANSFERRED,
        Sip.REFERRED,
    )


def test_bridged_transfer_ends_when_both_legs_have_ended() -> None:
    events = _load("bridged_cold_transfer")

    assert summarize(events[:-1]).ended is None  # target leg still up after the caller left
    assert summarize(events).ended == _at(158.2)
    assert summarize(events).end_reason is EndReason.TRANSFERRED


def test_failed_warm_refer_without_bridge_is_not_a_transfer() -> None:
    assert summarize(_load("refer_warm_transfer_failed")).end_reason is EndReason.HANGUP


def test_active_call_has_no_end_and_bills_so_far_with_until() -> None:
    events = _load("incoming_active")

    outcome = summarize(events, until=_at(30))

    assert (outcome.ended, outcome.end_reason, outcome.termination_reason) == (None, None, None)
    # docs/billing.md: agent 1 -> 30 s is 29 s (billed 30), SIP from the answer 0 -> 30 s is 30 s
    assert outcome.bill == Bill(
        call_seconds=29.0, sip_seconds=30.0, billed_call_seconds=30, billed_sip_seconds=30
    )


def test_no_events_summarize_to_nothing() -> None:
    assert summarize([]) == CallOutcome(None, None, None, None, Bill(0.0, 0.0, 0, 0))


# --- end reasons beyond the vectors ------------------------------------------------------------


def _incoming_call(end: Reason, *, agent_left: dict[str, Any] | None = None) -> list[CallEvent]:
    leg = {"leg_id": "leg-1", "leg_role": LegRole.CALLER}
    return [
        _event(1, CallEventType.INVITE_RECEIVED, 0, **leg),
        _event(2, CallEventType.ANSWERED, 0, **leg),
        _event(3, CallEventType.AGENT_JOINED, 1),
        _event(4, CallEventType.AGENT_LEFT, 30, **(agent_left or {})),
        _event(5, CallEventType.LEG_ENDED, 30.2, reason=end, **leg),
    ]


@pytest.mark.parametrize(
    ("leg_end", "end_reason", "termination"),
    [
        (Reason.TIMEOUT, EndReason.TIMEOUT, Sip.TIMEOUT),
        (Reason.ERROR, EndReason.SYSTEM_ERROR, Sip.ERROR),
    ],
)
def test_answered_call_ending_by_timeout_or_error_says_so(
    leg_end: Reason, end_reason: EndReason, termination: Sip
) -> None:
    outcome = summarize(_incoming_call(leg_end))

    assert (outcome.end_reason, outcome.termination_reason) == (end_reason, termination)


def test_agent_connection_failing_is_a_connection_error() -> None:
    events = _incoming_call(Reason.LOCAL_HANGUP, agent_left={"reason": Reason.ERROR})

    outcome = summarize(events)

    assert (outcome.end_reason, outcome.termination_reason) == (
        EndReason.CONNECTION_ERROR,
        Sip.NORMAL,
    )


def test_caller_leg_is_the_first_leg_seen_when_no_role_is_given() -> None:
    events = [e.model_copy(update={"leg_role": None}) for e in _load("incoming_hangup")]

    assert summarize(events).end_reason is EndReason.HANGUP


def test_caller_role_wins_over_the_first_leg_seen() -> None:
    target = {"leg_id": "leg-target", "leg_role": LegRole.TRANSFER_TARGET}
    caller = {"leg_id": "leg-caller", "leg_role": LegRole.CALLER}
    events = [
        _event(1, CallEventType.INVITE_SENT, 0, **target),
        _event(2, CallEventType.INVITE_SENT, 0.5, **caller),
        _event(3, CallEventType.LEG_ENDED, 1, reason=Reason.REJECTED, sip_status=503, **target),
        _event(4, CallEventType.LEG_ENDED, 2, reason=Reason.REJECTED, sip_status=486, **caller),
    ]

    assert summarize(events).termination_reason is Sip.BUSY


def test_caller_leg_end_lost_is_a_system_error() -> None:
    caller = {"leg_id": "leg-caller", "leg_role": LegRole.CALLER}
    target = {"leg_id": "leg-target"}
    events = [
        _event(1, CallEventType.ANSWERED, 0, **caller),  # its INVITE_RECEIVED was lost
        _event(2, CallEventType.AGENT_JOINED, 1),
        _event(3, CallEventType.INVITE_SENT, 10, **target),
        _event(4, CallEventType.LEG_ENDED, 20, reason=Reason.REJECTED, sip_status=486, **target),
    ]

    outcome = summarize(events)

    assert (outcome.end_reason, outcome.termination_reason) == (EndReason.SYSTEM_ERROR, Sip.ERROR)


# --- properties --------------------------------------------------------------------------------


@given(name=st.sampled_from(sorted(EXPECTED_OUTCOMES)), data=st.data())
def test_duplicated_or_reordered_delivery_never_changes_the_outcome(
    name: str, data: st.DataObject
) -> None:
    events = _load(name)
    replays = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    delivered = data.draw(st.permutations(events + replays))

    assert summarize(delivered) == summarize(events)


# --- a call the control plane closed (billing.py rule 6, docs/billing.md) --------------------


def _closed(seconds: float) -> CallEvent:
    return CallEvent(
        event_id="call-1:closed",
        type=CallEventType.CALL_CLOSED,
        occurred_at=_at(seconds),
        reason=Reason.ERROR,
        detail="relay_silent",
    )


def test_a_closed_call_that_was_joined_ends_as_a_system_error_at_the_close() -> None:
    events = [*_load("incoming_active"), _closed(31)]  # answered 0, agent joined 1

    outcome = summarize(events)

    assert outcome.ended == _at(31)
    assert (outcome.end_reason, outcome.termination_reason) == (EndReason.SYSTEM_ERROR, Sip.ERROR)
    # docs/billing.md: the agent 1 -> 31 s, SIP 0 -> 31 s rounds up to 36 s
    assert (outcome.bill.billed_call_seconds, outcome.bill.billed_sip_seconds) == (30, 36)


def test_a_closed_call_no_agent_joined_is_unjoined_and_bills_nothing() -> None:
    outcome = summarize([_closed(0)])

    assert (outcome.ended, outcome.end_reason) == (_at(0), EndReason.UNJOINED)
    assert (outcome.bill.billed_call_seconds, outcome.bill.billed_sip_seconds) == (0, 0)


def test_a_closed_call_that_was_bridged_is_a_system_error_not_a_transfer() -> None:
    # docs/billing.md, calls no relay will end: a call only the close ended "ended at the close:
    # endReason is ... system_error; terminationReason is SIP_TERMINATION_ERROR unless the caller
    # leg's end was reported" (docs/api.md: the close comes before the `transferred` row).
    bridged = [e for e in _load("bridged_cold_transfer") if e.occurred_at <= _at(100)]

    outcome = summarize([*bridged, _closed(100)])

    assert outcome.ended == _at(100)
    assert (outcome.end_reason, outcome.termination_reason) == (EndReason.SYSTEM_ERROR, Sip.ERROR)
    # agent 1 -> 38.5 s = 37.5 s (42 s); SIP caller 0 -> 100 s plus target 30 -> 100 s = 170 s
    assert (outcome.bill.billed_call_seconds, outcome.bill.billed_sip_seconds) == (42, 174)


def test_a_closed_call_whose_caller_leg_end_was_reported_keeps_its_termination_reason() -> None:
    # The caller hung up at 158; the target leg was still up when its relay went silent.
    bridged = [e for e in _load("bridged_cold_transfer") if e.occurred_at <= _at(158)]

    outcome = summarize([*bridged, _closed(170)])

    assert (outcome.ended, outcome.end_reason) == (_at(170), EndReason.SYSTEM_ERROR)
    assert outcome.termination_reason is Sip.NORMAL  # a hang-up after the answer
    # SIP: caller 0 -> 158 s plus target 30 -> 170 s = 298 s, billed 300 s
    assert outcome.bill.billed_sip_seconds == 300


def test_a_call_its_relay_ended_before_the_close_keeps_the_relays_reasons() -> None:
    events = [*_load("incoming_hangup"), _closed(500)]

    assert summarize(events) == summarize(_load("incoming_hangup"))


_LATE_KINDS = [
    CallEventType.INVITE_SENT,
    CallEventType.ANSWERED,
    CallEventType.AGENT_JOINED,
    CallEventType.AGENT_LEFT,
    CallEventType.LEG_ENDED,
    CallEventType.BRIDGED,
    CallEventType.REFER_SUCCEEDED,
]


@given(
    late=st.lists(
        st.tuples(
            st.sampled_from(_LATE_KINDS),
            st.floats(min_value=31.001, max_value=10_000),
            st.sampled_from(["leg-in-0003", "leg-new"]),
        ),
        max_size=8,
    )
)
def test_events_that_occurred_after_the_close_never_change_a_closed_call(
    late: list[tuple[CallEventType, float, str]],
) -> None:
    closed = [*_load("incoming_active"), _closed(31)]
    arrivals = [
        _event(100 + n, kind, seconds, leg_id=leg, reason=Reason.REMOTE_HANGUP)
        for n, (kind, seconds, leg) in enumerate(late)
    ]

    assert summarize(closed + arrivals) == summarize(closed)
