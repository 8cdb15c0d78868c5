from __future__ import annotations

from typing import Any

import pytest

from chalicelib import calls, events, registrations
from chalicelib.agents import create_agent
from chalicelib.call_models import AgentCallCreate
from chalicelib.contracts import CallEventBatch
from chalicelib.errors import InvalidInput
from chalicelib.models import AgentFields, RegistrationFields
from chalicelib.services import Services
from tests.support.event_vectors import vector_events


def outgoing_call(services: Services) -> str:
    agent = create_agent(services, "default", AgentFields(name="dialer"))
    body = AgentCallCreate.model_validate(
        {
            "medium": {
                "sip": {
                    "outgoing": {"to": "sip:+15557654321@trunk.example", "from": "+15551234567"}
                }
            }
        }
    )
    return calls.create_agent_call(services, "default", agent.agent_id, body).call_id


def vector(name: str, call_id: str) -> CallEventBatch:
    return CallEventBatch.model_validate({"events": vector_events(name, call_id)})


def test_answered_outgoing_call_is_billed_from_its_invite(services: Services) -> None:
    call_id = outgoing_call(services)
    result = events.apply_batch(services, vector("outgoing_answered", call_id))
    assert result.duplicates == 0 and result.unknown == 0
    view = calls.get_call(services, "default", call_id).view()
    assert view["billedDuration"] == "60s"
    assert view["sipDetails"]["billedDuration"] == "78s"
    assert view["endReason"] == "hangup"
    assert view["sipDetails"]["terminationReason"] == "SIP_TERMINATION_NORMAL"
    assert view["billingStatus"] == "BILLING_STATUS_BILLED"
    # t=0 is START, 2026-11-25T12:00:00Z: the agent joined at 12.5 s, the callee hung up at 72.5 s
    assert (view["joined"], view["ended"]) == (
        "2026-11-25T12:00:12.500000Z",
        "2026-11-25T12:01:12.500000Z",
    )


def test_a_retried_batch_changes_nothing(services: Services) -> None:
    call_id = outgoing_call(services)
    batch = vector("outgoing_answered", call_id)
    events.apply_batch(services, batch)
    before = services.store.get_call(call_id)
    again = events.apply_batch(services, batch)
    assert again.applied == 0 and again.duplicates == len(batch.events)
    after = services.store.get_call(call_id)
    assert after == before


def test_batches_in_any_order_give_the_same_call(services: Services) -> None:
    first_id, second_id = outgoing_call(services), outgoing_call(services)
    batch = vector("bridged_warm_transfer", first_id)
    events.apply_batch(services, batch)
    reordered = vector("bridged_warm_transfer", second_id).events[::-1]
    half = len(reordered) // 2
    events.apply_batch(services, CallEventBatch(events=reordered[:half]))
    events.apply_batch(services, CallEventBatch(events=reordered[half:]))
    one, two = (calls.get_call(services, "default", c).view() for c in (first_id, second_id))
    own = ("callId", "agentId")
    assert {k: v for k, v in one.items() if k not in own} == {
        k: v for k, v in two.items() if k not in own
    }
    assert one["sipDetails"]["billedDuration"] == "336s"


def test_unanswered_outgoing_call_has_sip_minutes_only(services: Services) -> None:
    call_id = outgoing_call(services)
    events.apply_batch(services, vector("outgoing_no_answer", call_id))
    view = calls.get_call(services, "default", call_id).view()
    assert (view["billedDuration"], view["sipDetails"]["billedDuration"]) == ("0s", "30s")
    assert view["endReason"] == "unjoined"
    usage = calls.usage(services, "default", None, None)
    assert usage["totalMinutes"] == 0.0 and usage["totalSipMinutes"] == 0.5


def test_events_for_an_unknown_call_are_acknowledged_and_counted(services: Services) -> None:
    result = events.apply_batch(services, vector("incoming_hangup", "no-such-call"))
    assert result.unknown == len(vector("incoming_hangup", "x").events)


def event(**fields: Any) -> dict[str, Any]:
    return {"eventId": "r1", "occurredAt": "2026-11-25T12:00:00Z", **fields}


def test_registration_status_follows_the_latest_event_by_edge_time(services: Services) -> None:
    fields = RegistrationFields(username="u", password="p", proxy="pbx.example")
    rid = registrations.create_registration(services, "default", fields).registration_id
    assert registrations.get_registration(services, "default", rid).successful is None
    newer = event(
        eventId="r2",
        type="registration_succeeded",
        registrationId=rid,
        occurredAt="2026-11-25T12:00:10Z",
    )
    older = event(eventId="r1", type="registration_failed", registrationId=rid)
    events.apply_batch(services, CallEventBatch.model_validate({"events": [newer]}))
    events.apply_batch(services, CallEventBatch.model_validate({"events": [older]}))
    assert registrations.get_registration(services, "default", rid).successful is True


def test_a_batch_with_an_event_naming_nothing_is_refused_whole(services: Services) -> None:
    call_id = outgoing_call(services)
    good = event(type="ringing", callId=call_id, legId="leg-1")
    bad = event(eventId="r9", type="ringing", legId="leg-1")
    with pytest.raises(InvalidInput) as raised:
        events.apply_batch(services, CallEventBatch.model_validate({"events": [good, bad]}))
    assert raised.value.field == "events[1].callId"
    assert services.store.list_events(f"CALL#{call_id}") == []


def test_a_leg_event_without_a_leg_is_refused(services: Services) -> None:
    call_id = outgoing_call(services)
    with pytest.raises(InvalidInput) as raised:
        events.apply_batch(
            services,
            CallEventBatch.model_validate({"events": [event(type="leg_ended", callId=call_id)]}),
        )
    assert raised.value.field == "events[0].legId"


def test_a_retried_batch_repairs_a_call_whose_recompute_was_lost(services: Services) -> None:
    call_id = outgoing_call(services)
    batch = vector("outgoing_answered", call_id)
    for item in batch.events:  # the events were stored, then the Lambda died before recomputing
        services.store.add_event(f"CALL#{call_id}", item)
    assert calls.get_call(services, "default", call_id).ended is None
    result = events.apply_batch(services, batch)
    assert result.applied == 0 and result.duplicates == len(batch.events)
    assert calls.get_call(services, "default", call_id).view()["billedDuration"] == "60s"


def test_unknown_call_events_are_kept_but_not_applied(services: Services) -> None:
    batch = vector("incoming_hangup", "ghost")
    result = events.apply_batch(services, batch)
    assert (result.applied, result.unknown) == (0, len(batch.events))
    assert len(services.store.list_events("CALL#ghost")) == len(batch.events)
