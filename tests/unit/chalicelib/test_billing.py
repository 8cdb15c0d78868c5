"""Billing: every call scenario of the spec's "SIP Billing" and "Transfers" paragraphs.

Scenario timelines are files in ``tests/vectors/events/`` (see its README); offsets below are
seconds from t=0, ``2025-03-14T09:00:00Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.billing import DECIMINUTE_S, Bill, bill, call_ended_at, ordered_events
from chalicelib.contracts import CallEvent, CallEventBatch, CallEventType, LegEndReason

VECTORS = Path(__file__).parents[2] / "vectors" / "events"
T0 = datetime(2025, 3, 14, 9, 0, 0, tzinfo=UTC)


def _load(name: str) -> list[CallEvent]:
    return CallEventBatch.model_validate_json((VECTORS / f"{name}.json").read_text()).events


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _event(n: int, kind: CallEventType, seconds: float, **fields: Any) -> CallEvent:
    return CallEvent(event_id=f"e{n:03d}", type=kind, occurred_at=_at(seconds), **fields)


def _sip_rate(events: list[CallEvent], start_s: float, stop_s: float) -> float:
    """How many SIP seconds accrue per wall-clock second between two instants."""
    before = bill(events, until=_at(start_s)).sip_seconds
    after = bill(events, until=_at(stop_s)).sip_seconds
    return round((after - before) / (stop_s - start_s), 6)


def _bill(call_s: float, sip_s: float, billed_call_s: int, billed_sip_s: int) -> Bill:
    return Bill(
        call_seconds=call_s,
        sip_seconds=sip_s,
        billed_call_seconds=billed_call_s,
        billed_sip_seconds=billed_sip_s,
    )


EXPECTED_BILLS: dict[str, Bill] = {
    # name: (call s, SIP s, billed call s, billed SIP s)
    "incoming_hangup": _bill(60.0, 61.0, 60, 66),
    "incoming_hangup_redelivered": _bill(60.0, 61.0, 60, 66),
    "incoming_agent_hangup": _bill(44.0, 45.2, 48, 48),
    "incoming_active": _bill(0.0, 1.0, 0, 6),  # open clocks stop at the latest event (t=1)
    "incoming_rejected": _bill(0.0, 0.0, 0, 0),
    "outgoing_answered": _bill(60.0, 72.5, 60, 78),
    "outgoing_no_answer": _bill(0.0, 30.0, 0, 30),
    "outgoing_busy": _bill(0.0, 0.8, 0, 6),
    "outgoing_canceled": _bill(0.0, 3.2, 0, 6),
    "refer_cold_transfer": _bill(45.0, 46.0, 48, 48),
    "bridged_cold_transfer": _bill(37.5, 158.0 + 128.2, 42, 288),
    "refer_warm_transfer": _bill(56.0, 57.0 + 37.0, 60, 96),
    "try_refer_warm_transfer_succeeded": _bill(56.0, 57.0 + 37.0, 60, 96),
    "refer_warm_transfer_failed": _bill(99.0, 100.0 + 38.5, 102, 144),
    "bridged_warm_transfer": _bill(54.3, 175.0 + 155.2, 60, 336),
    "try_refer_warm_transfer_fallback": _bill(55.0, 175.0 + 155.2, 60, 336),
}


def test_every_event_vector_has_an_expected_bill() -> None:
    assert {path.stem for path in VECTORS.glob("*.json")} == EXPECTED_BILLS.keys()


@pytest.mark.parametrize("name", sorted(EXPECTED_BILLS))
def test_scenario_bills_the_expected_figures(name: str) -> None:
    assert bill(_load(name)) == EXPECTED_BILLS[name]


# --- calls without transfers -------------------------------------------------------------------


def test_incoming_call_bills_sip_from_the_answer_and_call_time_from_the_agent_join() -> None:
    result = bill(_load("incoming_hangup"))

    assert (result.sip_seconds, result.billed_sip_seconds, result.sip_minutes) == (61.0, 66, 1.1)
    assert (result.call_seconds, result.billed_call_seconds, result.minutes) == (60.0, 60, 1.0)


def test_outgoing_call_bills_ring_time_as_sip_time_not_call_time() -> None:
    result = bill(_load("outgoing_answered"))  # INVITE at 0, answered 12, agent joins 12.5

    assert result.sip_seconds == 72.5
    assert result.call_seconds == 60.0
    assert result.sip_minutes == 1.3


def test_unanswered_outgoing_call_bills_zero_call_minutes_and_nonzero_sip_minutes() -> None:
    result = bill(_load("outgoing_no_answer"))

    assert result.minutes == 0
    assert result.sip_minutes == 0.5


@pytest.mark.parametrize(("name", "ring_s"), [("outgoing_busy", 0.8), ("outgoing_canceled", 3.2)])
def test_ring_time_alone_rounds_up_to_one_deciminute(name: str, ring_s: float) -> None:
    result = bill(_load(name))

    assert (result.sip_seconds, result.billed_sip_seconds, result.sip_minutes) == (ring_s, 6, 0.1)


def test_incoming_leg_never_answered_bills_no_sip_time() -> None:
    assert bill(_load("incoming_rejected")) == _bill(0.0, 0.0, 0, 0)


def test_agent_time_stops_when_the_call_ends_even_if_agent_left_arrives_later() -> None:
    events = _load("incoming_hangup")  # caller BYE at 61, agent_left reported at 61.1

    assert bill(events).call_seconds == 60.0


def test_agent_rejoining_opens_a_new_span() -> None:
    leg = {"leg_id": "leg-1"}
    events = [
        _event(1, CallEventType.INVITE_RECEIVED, 0, **leg),
        _event(2, CallEventType.ANSWERED, 0, **leg),
        _event(3, CallEventType.AGENT_JOINED, 1),
        _event(4, CallEventType.AGENT_LEFT, 11),
        _event(5, CallEventType.AGENT_JOINED, 20),
        _event(6, CallEventType.AGENT_JOINED, 25),  # already joined: no second span
        _event(7, CallEventType.AGENT_LEFT, 30),
        _event(8, CallEventType.LEG_ENDED, 40, reason=LegEndReason.REMOTE_HANGUP, **leg),
    ]

    assert bill(events).call_seconds == 20.0


def test_no_events_bill_nothing() -> None:
    assert bill([]) == _bill(0.0, 0.0, 0, 0)


# --- transfers ---------------------------------------------------------------------------------


def test_refer_cold_transfer_stops_the_sip_clock_at_refer_success_and_never_runs_double() -> None:
    events = _load("refer_cold_transfer")  # answered 0, REFER succeeds 46, leg ends 46.2

    assert bill(events).sip_seconds == 46.0
    assert _sip_rate(events, 10, 46) == 1.0
    assert _sip_rate(events, 46, 100) == 0.0


def test_bridged_cold_transfer_bills_double_while_both_legs_are_up() -> None:
    events = _load("bridged_cold_transfer")  # target INVITE 30, caller BYE 158, target ends 158.2

    assert _sip_rate(events, 0, 30) == 1.0
    assert _sip_rate(events, 30, 158) == 2.0
    assert _sip_rate(events, 158, 158.2) == 1.0


def test_bridged_cold_transfer_legs_keep_billing_after_the_agent_leaves() -> None:
    events = _load("bridged_cold_transfer")  # agent leaves at 38.5

    assert _sip_rate(events, 38.5, 158) == 2.0
    assert bill(events, until=_at(150)).call_seconds == 37.5


def test_warm_refer_bills_double_while_the_operator_leg_is_up() -> None:
    events = _load("refer_warm_transfer")  # operator INVITE at 20

    assert _sip_rate(events, 0, 20) == 1.0
    assert _sip_rate(events, 20, 57) == 2.0


def test_warm_refer_success_stops_both_legs_at_once() -> None:
    events = _load("refer_warm_transfer")  # REFER succeeds at 57, legs report ending 57.2/57.3

    assert _sip_rate(events, 57, 120) == 0.0
    assert bill(events).sip_seconds == 57.0 + 37.0


def test_failed_warm_refer_returns_to_single_rate_and_the_agent_continues() -> None:
    events = _load("refer_warm_transfer_failed")  # REFER fails 58, operator leg ends 58.5

    assert _sip_rate(events, 25, 58.5) == 2.0
    assert _sip_rate(events, 58.5, 100) == 1.0
    assert bill(events).call_seconds == 99.0


def test_bridged_warm_transfer_bills_double_until_both_legs_end_after_the_agent_left() -> None:
    events = _load("bridged_warm_transfer")  # agent leaves 55.3, caller BYE 175

    assert _sip_rate(events, 20, 175) == 2.0
    assert bill(events).call_seconds == 54.3


def test_try_refer_success_bills_exactly_as_refer() -> None:
    assert bill(_load("try_refer_warm_transfer_succeeded")) == bill(_load("refer_warm_transfer"))


def test_try_refer_failure_falls_back_to_the_bridge_and_bills_as_the_bridge() -> None:
    fallback = _load("try_refer_warm_transfer_fallback")  # REFER fails 55.4, bridged 55.6

    assert _sip_rate(fallback, 55.6, 175) == 2.0
    assert bill(fallback).sip_seconds == bill(_load("bridged_warm_transfer")).sip_seconds


# --- open clocks and `until` -------------------------------------------------------------------


def test_open_clocks_stop_at_the_latest_event_when_until_is_not_given() -> None:
    assert bill(_load("incoming_active")) == _bill(0.0, 1.0, 0, 6)  # latest event: join at 1


def test_open_clocks_run_to_until_for_an_active_call() -> None:
    assert bill(_load("incoming_active"), until=_at(30)) == _bill(29.0, 30.0, 30, 30)


def test_until_after_the_call_ended_changes_nothing() -> None:
    events = _load("bridged_cold_transfer")

    assert bill(events, until=_at(3600)) == bill(events)


def test_until_caps_every_clock() -> None:
    events = _load("bridged_cold_transfer")

    assert bill(events, until=_at(31)) == _bill(30.0, 31.0 + 1.0, 30, 36)


# --- rounding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sip_s", "billed_s"),
    [(0, 0), (0.000001, 6), (0.001, 6), (5.999999, 6), (6, 6), (6.000001, 12), (60, 60)],
)
def test_sip_seconds_round_up_to_whole_deciminutes(sip_s: float, billed_s: int) -> None:
    leg = {"leg_id": "leg-1"}
    events = [
        _event(1, CallEventType.INVITE_SENT, 0, **leg),
        _event(2, CallEventType.LEG_ENDED, sip_s, reason=LegEndReason.TIMEOUT, **leg),
    ]

    assert bill(events).billed_sip_seconds == billed_s


def test_minutes_are_exact_deciminutes() -> None:
    result = _bill(0.5, 77.1, 6, 78)

    assert (result.minutes, result.sip_minutes) == (0.1, 1.3)


# --- the canonical timeline --------------------------------------------------------------------


def test_ordered_events_keeps_the_first_occurrence_of_an_event_id() -> None:
    first = _event(1, CallEventType.AGENT_JOINED, 1)
    replay = first.model_copy(update={"occurred_at": _at(5)})

    assert ordered_events([first, replay]) == [first]


def test_ordered_events_breaks_time_ties_by_event_id() -> None:
    later_id = _event(2, CallEventType.AGENT_JOINED, 1)
    earlier_id = _event(1, CallEventType.ANSWERED, 1, leg_id="leg-1")

    assert ordered_events([later_id, earlier_id]) == [earlier_id, later_id]


def test_call_ends_at_refer_success_before_any_leg_reports_ending() -> None:
    events = [e for e in _load("refer_cold_transfer") if e.type is not CallEventType.LEG_ENDED]

    assert call_ended_at(ordered_events(events)) == _at(46)


def test_call_is_active_while_any_started_leg_is_up() -> None:
    events = _load("bridged_cold_transfer")[:-1]  # the target leg's end not yet reported

    assert call_ended_at(ordered_events(events)) is None


# --- properties --------------------------------------------------------------------------------

SCENARIOS = sorted(EXPECTED_BILLS)


@given(name=st.sampled_from(SCENARIOS), data=st.data())
def test_duplicated_or_reordered_delivery_never_changes_the_bill(
    name: str, data: st.DataObject
) -> None:
    events = _load(name)
    replays = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    delivered = data.draw(st.permutations(events + replays))

    assert bill(delivered) == bill(events)


@given(
    name=st.sampled_from(SCENARIOS),
    first_s=st.floats(min_value=-10, max_value=200),
    second_s=st.floats(min_value=-10, max_value=200),
)
def test_billing_so_far_never_decreases_as_until_advances(
    name: str, first_s: float, second_s: float
) -> None:
    events = _load(name)
    earlier, later = sorted((first_s, second_s))
    before, after = bill(events, until=_at(earlier)), bill(events, until=_at(later))

    assert before.billed_call_seconds <= after.billed_call_seconds
    assert before.billed_sip_seconds <= after.billed_sip_seconds


MICROS = st.integers(min_value=0, max_value=2_000_000_000)


@given(answer=MICROS, join=MICROS, leave=MICROS, hangup=MICROS, xfer=MICROS, xfer_end=MICROS)
def test_billed_seconds_are_raw_seconds_rounded_up_to_a_deciminute(
    answer: int, join: int, leave: int, hangup: int, xfer: int, xfer_end: int
) -> None:
    def at_us(micros: int) -> float:
        return micros / 1_000_000

    events = [
        _event(1, CallEventType.INVITE_RECEIVED, 0, leg_id="caller"),
        _event(2, CallEventType.ANSWERED, at_us(answer), leg_id="caller"),
        _event(3, CallEventType.AGENT_JOINED, at_us(join)),
        _event(4, CallEventType.AGENT_LEFT, at_us(leave)),
        _event(5, CallEventType.LEG_ENDED, at_us(hangup), leg_id="caller"),
        _event(6, CallEventType.INVITE_SENT, at_us(xfer), leg_id="target"),
        _event(7, CallEventType.LEG_ENDED, at_us(xfer_end), leg_id="target"),
    ]
    result = bill(events)

    for raw, billed in [
        (result.call_seconds, result.billed_call_seconds),
        (result.sip_seconds, result.billed_sip_seconds),
    ]:
        assert billed % DECIMINUTE_S == 0
        assert raw <= billed < raw + DECIMINUTE_S
