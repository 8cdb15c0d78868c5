"""``POST /webhooks/sip/events``: the edge's event batches update calls and registrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import VECTORS, Api, apply, load_vector
from tests.support.fakes import FixedClock

CARRIER = "203.0.113.0/24"
ALL_VECTORS = sorted(path.stem for path in VECTORS.glob("*.json"))


@pytest.fixture
def agent_id(api: Api) -> str:
    agent_id = str(api.create_agent("sales")["agentId"])
    api.patch_sip(
        allowedCidrRanges=[CARRIER],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )
    return agent_id


def _incoming_call(api: Api, sip_call_id: str = "in-1@carrier.example") -> str:
    decision = api.invite(sipCallId=sip_call_id).body
    assert decision["action"] == "accept", decision
    return str(decision["callId"])


def _outgoing_call(api: Api, agent_id: str) -> str:
    reply = api.dial(agent_id)
    assert reply.status == 201, reply.body
    return str(reply.body["callId"])


def _call(api: Api, call_id: str) -> dict[str, Any]:
    reply = api.get(f"/api/calls/{call_id}")
    assert reply.status == 200
    return dict(reply.body)


def _outcome(call: dict[str, Any]) -> dict[str, Any]:
    """What the events decide about a call (everything but its identity)."""
    keys = ("joined", "ended", "endReason", "billedDuration", "billingStatus", "sipDetails")
    return {key: call[key] for key in keys}


def test_incoming_call_gets_joined_ended_and_billed_from_its_events(
    api: Api, agent_id: str
) -> None:
    call_id = _incoming_call(api)

    reply = api.events(load_vector("incoming_hangup", call_id))

    assert reply.status == 200
    assert reply.body == {"applied": 5, "duplicates": 0, "unknown": 0}
    call = _call(api, call_id)
    assert call["joined"] == "2026-11-25T12:00:01Z"  # the vector's t=1, t=0 moved to START
    assert call["ended"] == "2026-11-25T12:01:01Z"
    assert call["endReason"] == "hangup"
    assert call["billedDuration"] == "60s"
    assert call["billingStatus"] == "BILLING_STATUS_BILLED"
    assert call["sipDetails"]["billedDuration"] == "66s"
    assert call["sipDetails"]["terminationReason"] == "SIP_TERMINATION_NORMAL"
    assert (call["caller"], call["callee"]) == ("+15551234567", "sales")


def test_unanswered_outgoing_call_bills_sip_time_but_no_call_time(api: Api, agent_id: str) -> None:
    call_id = _outgoing_call(api, agent_id)

    apply(api, load_vector("outgoing_no_answer", call_id))

    call = _call(api, call_id)
    assert call["joined"] is None
    assert call["endReason"] == "unjoined"
    assert call["billedDuration"] == "0s"
    assert call["sipDetails"]["billedDuration"] == "30s"
    assert call["sipDetails"]["terminationReason"] == "SIP_TERMINATION_TIMEOUT"


def test_active_call_is_joined_but_not_ended_nor_billed(api: Api, agent_id: str) -> None:
    call_id = _incoming_call(api)

    apply(api, load_vector("incoming_active", call_id))

    call = _call(api, call_id)
    assert call["joined"] == "2026-11-25T12:00:01Z"
    assert (call["ended"], call["endReason"], call["billedDuration"]) == (None, None, None)
    assert call["billingStatus"] == "BILLING_STATUS_PENDING"


def _at(offset: str | None) -> str | None:
    """The API's time for a vector offset (t=0 is the harness's START, 2026-11-25T12:00:00Z)."""
    return None if offset is None else f"2026-11-25T12:{offset}Z"


EXPECTED_CALLS: dict[
    str, tuple[str | None, str | None, str | None, str | None, str | None, str | None]
] = {
    # Written by hand from docs/billing.md's scenario table and rules (call and SIP seconds rounded
    # up to whole deciminutes, 6 s) and docs/api.md (`null` while active), over the offsets of
    # tests/vectors/events/README.md; terminationReason without its SIP_TERMINATION_ prefix.
    # name: (joined mm:ss, ended mm:ss, endReason, terminationReason, billed call, billed SIP)
    "incoming_hangup": ("00:01", "01:01", "hangup", "NORMAL", "60s", "66s"),  # 60 s; 61 s
    "incoming_hangup_redelivered": ("00:01", "01:01", "hangup", "NORMAL", "60s", "66s"),
    "incoming_agent_hangup": ("00:01", "00:45.200000", "agent_hangup", "NORMAL", "48s", "48s"),
    "incoming_active": ("00:01", None, None, None, None, None),
    "incoming_rejected": (None, "00:00.050000", "unjoined", "INVALID_NUMBER", "0s", "0s"),
    "outgoing_answered": ("00:12.500000", "01:12.500000", "hangup", "NORMAL", "60s", "78s"),
    "outgoing_no_answer": (None, "00:30", "unjoined", "TIMEOUT", "0s", "30s"),
    "outgoing_busy": (None, "00:00.800000", "unjoined", "BUSY", "0s", "6s"),  # 0.8 s of SIP
    "outgoing_canceled": (None, "00:03.200000", "unjoined", "CANCELED", "0s", "6s"),
    "refer_cold_transfer": ("00:01", "00:46", "transferred", "REFERRED", "48s", "48s"),  # 45; 46
    # agent 1 -> 38.5 = 37.5 s; caller 0 -> 158 + target 30 -> 158.2 = 286.2 s
    "bridged_cold_transfer": ("00:01", "02:38.200000", "transferred", "NORMAL", "42s", "288s"),
    # agent 1 -> 57 = 56 s; caller 0 -> 57 + operator 20 -> 57 = 94 s
    "refer_warm_transfer": ("00:01", "00:57", "transferred", "REFERRED", "60s", "96s"),
    "try_refer_warm_transfer_succeeded": (
        "00:01",
        "00:57",
        "transferred",
        "REFERRED",
        "60s",
        "96s",
    ),
    # agent 1 -> 100 = 99 s; caller 0 -> 100 + operator 20 -> 58.5 = 138.5 s
    "refer_warm_transfer_failed": ("00:01", "01:40", "hangup", "NORMAL", "102s", "144s"),
    # agent 1 -> 55.3 = 54.3 s; caller 0 -> 175 + operator 20 -> 175.2 = 330.2 s
    "bridged_warm_transfer": ("00:01", "02:55.200000", "transferred", "NORMAL", "60s", "336s"),
    # agent 1 -> 56 = 55 s; SIP as the bridged warm transfer
    "try_refer_warm_transfer_fallback": (
        "00:01",
        "02:55.200000",
        "transferred",
        "NORMAL",
        "60s",
        "336s",
    ),
}


def test_every_event_vector_has_an_expected_call() -> None:
    assert set(ALL_VECTORS) == EXPECTED_CALLS.keys()


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_every_event_vector_shows_through_the_api_as_its_expected_call(
    api: Api, agent_id: str, name: str
) -> None:
    joined, ended, end_reason, termination, billed, billed_sip = EXPECTED_CALLS[name]
    call_id = _outgoing_call(api, agent_id)

    reply = api.events(load_vector(name, call_id))

    assert reply.status == 200
    call = _call(api, call_id)
    assert {
        "joined": call["joined"],
        "ended": call["ended"],
        "endReason": call["endReason"],
        "terminationReason": call["sipDetails"]["terminationReason"],
        "billedDuration": call["billedDuration"],
        "sipBilledDuration": call["sipDetails"]["billedDuration"],
        "billingStatus": call["billingStatus"],
    } == {
        "joined": _at(joined),
        "ended": _at(ended),
        "endReason": end_reason,
        "terminationReason": termination and f"SIP_TERMINATION_{termination}",
        "billedDuration": billed,
        "sipBilledDuration": billed_sip,
        "billingStatus": "BILLING_STATUS_PENDING" if ended is None else "BILLING_STATUS_BILLED",
    }


def test_the_same_batch_posted_twice_changes_nothing_the_second_time(
    api: Api, agent_id: str
) -> None:
    call_id = _incoming_call(api)
    events = load_vector("incoming_hangup", call_id)
    apply(api, events)
    before = _call(api, call_id)

    reply = api.events(events)

    assert reply.status == 200
    assert reply.body == {"applied": 0, "duplicates": 5, "unknown": 0}
    assert _call(api, call_id) == before


def test_duplicated_and_shuffled_events_give_the_same_call(api: Api, agent_id: str) -> None:
    clean = _incoming_call(api, "clean@carrier.example")
    redelivered = _incoming_call(api, "redelivered@carrier.example")
    apply(api, load_vector("incoming_hangup", clean))

    reply = api.events(load_vector("incoming_hangup_redelivered", redelivered))

    assert reply.body == {"applied": 5, "duplicates": 3, "unknown": 0}
    assert _outcome(_call(api, redelivered)) == _outcome(_call(api, clean))


@pytest.mark.parametrize("name", ["outgoing_answered", "refer_warm_transfer_failed"])
def test_events_reordered_across_two_batches_give_the_same_call(
    api: Api, agent_id: str, name: str
) -> None:
    in_order = _outgoing_call(api, agent_id)
    reordered = _outgoing_call(api, agent_id)
    apply(api, load_vector(name, in_order))
    events = load_vector(name, reordered)
    half = len(events) // 2

    later = api.events(list(reversed(events[half:])))
    earlier = api.events(list(reversed(events[:half])))

    assert (later.status, earlier.status) == (200, 200)
    assert later.body["applied"] + earlier.body["applied"] == len(events)
    assert _outcome(_call(api, reordered)) == _outcome(_call(api, in_order))


def test_events_of_an_unknown_call_are_counted_and_change_no_call(api: Api, agent_id: str) -> None:
    call_id = _incoming_call(api)
    before = _call(api, call_id)

    reply = api.events(load_vector("incoming_hangup", "no-such-call"))

    assert reply.status == 200
    assert reply.body["unknown"] == 5
    assert _call(api, call_id) == before
    assert api.get("/api/calls/no-such-call").status == 404


def _registration_event(event_id: str, registration_id: str, kind: str, at: str) -> dict[str, str]:
    return {
        "eventId": event_id,
        "type": f"registration_{kind}",
        "occurredAt": at,
        "registrationId": registration_id,
    }


def test_registration_event_sets_successful(api: Api) -> None:
    registration_id = api.create_registration()["registrationId"]

    reply = api.events(
        [_registration_event("reg-1", registration_id, "succeeded", "2026-11-25T12:00:02Z")]
    )

    assert reply.body == {"applied": 1, "duplicates": 0, "unknown": 0}
    assert api.get(f"/api/sip/registrations/{registration_id}").body["successful"] is True


def test_older_registration_event_arriving_later_does_not_flip_successful(api: Api) -> None:
    registration_id = api.create_registration()["registrationId"]
    path = f"/api/sip/registrations/{registration_id}"
    apply(api, [_registration_event("new", registration_id, "failed", "2026-11-25T12:04:00Z")])

    reply = api.events(
        [_registration_event("old", registration_id, "succeeded", "2026-11-25T12:00:00Z")]
    )

    assert reply.status == 200
    assert api.get(path).body["successful"] is False


def test_registration_events_in_one_batch_follow_the_latest_by_edge_time(api: Api) -> None:
    registration_id = api.create_registration()["registrationId"]

    apply(
        api,
        [
            _registration_event("b", registration_id, "succeeded", "2026-11-25T12:04:00Z"),
            _registration_event("a", registration_id, "failed", "2026-11-25T12:00:00Z"),
        ],
    )

    assert api.get(f"/api/sip/registrations/{registration_id}").body["successful"] is True


def test_event_for_an_unknown_registration_is_counted_unknown(api: Api) -> None:
    reply = api.events(
        [_registration_event("x", "no-such-reg", "succeeded", "2026-11-25T12:00:00Z")]
    )

    assert reply.status == 200
    assert reply.body["unknown"] == 1


AT = "2026-11-25T12:00:00Z"


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"eventId": "e1", "type": "answered", "occurredAt": AT}, "events[5].callId"),
        (
            {"eventId": "e1", "type": "registration_failed", "occurredAt": AT},
            "events[5].registrationId",
        ),
        (
            {"eventId": "e1", "type": "answered", "occurredAt": AT[:-1], "callId": "c"},
            "events[5].occurredAt",
        ),
        ({"eventId": "e1", "type": "exploded", "occurredAt": AT, "callId": "c"}, "events[5].type"),
        ({"eventId": "", "type": "answered", "occurredAt": AT, "callId": "c"}, "events[5].eventId"),
        (
            {"eventId": "e1", "type": "answered", "occurredAt": AT, "callId": "c", "x": 1},
            "events[5].x",
        ),
    ],
)
def test_batch_with_one_malformed_event_is_400_naming_it_and_applies_nothing(
    api: Api, agent_id: str, bad: dict[str, Any], field: str
) -> None:
    call_id = _incoming_call(api)
    before = _call(api, call_id)

    reply = api.events(load_vector("incoming_hangup", call_id) + [bad])

    assert reply.status == 400
    assert reply.body["field"] == field
    assert _call(api, call_id) == before
    assert apply(api, load_vector("incoming_hangup", call_id))["applied"] == 5


def test_empty_batch_is_400(api: Api) -> None:
    reply = api.events([])

    assert reply.status == 400
    assert reply.body["field"] == "events"


def test_usage_sums_billed_call_and_sip_minutes_per_day(
    api: Api, agent_id: str, clock: FixedClock
) -> None:
    first_day = [_outgoing_call(api, agent_id), _incoming_call(api, "day1@carrier.example")]
    apply(api, load_vector("outgoing_answered", first_day[0]))  # 60 s call, 78 s SIP
    apply(api, load_vector("incoming_hangup", first_day[1]))  # 60 s call, 66 s SIP
    clock.advance(24 * 3600)
    second_day = _outgoing_call(api, agent_id)
    apply(api, load_vector("outgoing_no_answer", second_day, at=clock()))  # 0 s call, 30 s SIP

    reply = api.get("/api/accounts/me/billing/usage?fromDate=2026-11-20&toDate=2026-11-30")

    assert reply.status == 200
    assert reply.body == {
        "dailyUsage": [
            {"date": "2026-11-25", "minutes": 2.0, "sipMinutes": 2.4},
            {"date": "2026-11-26", "minutes": 0.0, "sipMinutes": 0.5},
        ],
        "totalMinutes": 2.0,
        "totalSipMinutes": 2.9,
    }


def test_usage_is_limited_to_the_days_asked_for(api: Api, agent_id: str, clock: FixedClock) -> None:
    apply(api, load_vector("outgoing_answered", _outgoing_call(api, agent_id)))
    clock.advance(24 * 3600)
    apply(api, load_vector("outgoing_no_answer", _outgoing_call(api, agent_id), at=clock()))

    reply = api.get("/api/accounts/me/billing/usage?fromDate=2026-11-26&toDate=2026-11-26")

    assert reply.body["dailyUsage"] == [{"date": "2026-11-26", "minutes": 0.0, "sipMinutes": 0.5}]
    assert (reply.body["totalMinutes"], reply.body["totalSipMinutes"]) == (0.0, 0.5)


def test_usage_defaults_to_the_last_30_days(api: Api, agent_id: str) -> None:
    apply(api, load_vector("outgoing_answered", _outgoing_call(api, agent_id)))

    reply = api.get("/api/accounts/me/billing/usage")

    assert reply.body["dailyUsage"] == [{"date": "2026-11-25", "minutes": 1.0, "sipMinutes": 1.3}]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("fromDate=2026-11-30&toDate=2026-11-01", "toDate"),
        ("fromDate=2020-01-01&toDate=2026-11-01", "fromDate"),
        ("fromDate=nope", "fromDate"),
    ],
)
def test_usage_with_a_bad_range_is_refused(api: Api, query: str, field: str) -> None:
    reply = api.get(f"/api/accounts/me/billing/usage?{query}")

    assert reply.status == 400
    assert reply.body["field"] == field


def test_vectors_folder_is_where_the_tests_read_it() -> None:
    assert Path(VECTORS / "incoming_hangup.json").is_file()
