"""The reaper (``chalicelib/reaper.py``) on moto's DynamoDB, run as the scheduled Lambda's own
handler, with a clock the test moves: what a killed relay's calls are billed (docs/billing.md,
Calls no relay will end; the relay's side in docs/relay.md, Heartbeat).

Expected figures come from docs/billing.md: a call no relay will end is closed at the last
evidence it was up; a relay that lists a call only for its undelivered events gives the call's
end (``endedAt``) as that evidence; totals are rounded up to whole deciminutes (6 s).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import app
from tests.integration.harness import Api
from tests.support.fakes import FixedClock

CARRIER = "203.0.113.0/24"
HEARTBEAT_STALE_S = 120  # docs/billing.md: a relay silent this long is dead


@pytest.fixture
def agent_id(api: Api) -> str:
    agent_id = str(api.create_agent("sales")["agentId"])
    api.patch_sip(
        allowedCidrRanges=[CARRIER],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )
    return agent_id


def _event(call_id: str, n: int, kind: str, at: Any, **fields: Any) -> dict[str, Any]:
    return {
        "eventId": f"{call_id}:leg1:{n}",
        "type": kind,
        "occurredAt": at.isoformat(),
        "callId": call_id,
        "legId": "leg1",
        "legRole": "caller",
        **fields,
    }


def _reap() -> dict[str, Any]:
    scheduled = {  # as EventBridge invokes it
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": "",
        "resources": [],
        "region": "us-east-1",
        "account": "123456789012",
        "id": "1",
        "version": "0",
        "detail": {},
    }
    result: dict[str, Any] = app.reap_calls(scheduled, None)
    return result


def test_a_killed_relays_ended_call_is_billed_to_its_end_not_to_its_last_listing(
    api: Api, agent_id: str, clock: FixedClock
) -> None:
    """The caller hangs up at +20 s; the relay's ``agent_left``/``leg_ended`` never reach the
    control plane (the events endpoint fails, then the task is killed and its spool goes with
    it), while its heartbeats at +30 s and +45 s still list the call for those events, with
    ``endedAt`` +20 s. The reaper closes it at +20 s: agent and SIP clocks 1 s -> 20 s = 19 s,
    billed 24 s (rounded up to 6 s). Without ``endedAt`` it was billed to +45 s (48 s)."""
    start = clock.now
    decision = api.invite(sipCallId="in-1@carrier.example", edgeId="edge-a").body
    assert decision["action"] == "accept", decision
    call_id = str(decision["callId"])
    at = lambda s: start + timedelta(seconds=s)  # noqa: E731
    delivered = api.events(
        [
            _event(call_id, 1, "invite_received", at(0)),
            _event(call_id, 2, "agent_joined", at(1)),
            _event(call_id, 3, "answered", at(1), sipStatus=200),
        ]
    )
    assert delivered.status == 200, delivered.body
    clock.advance(15)
    assert api.heartbeat("edge-a", [call_id]).status == 200  # held
    ended = at(20).isoformat()
    for beat_at in (30, 45):
        clock.advance(beat_at - (clock.now - start).total_seconds())
        reply = api.heartbeat("edge-a", [call_id], endedAt={call_id: ended})
        assert reply.status == 200, reply.body
    # edge-a is killed; edge-b keeps beating, so the control plane hears relays
    for _ in range(4):
        clock.advance(40)
        api.heartbeat("edge-b", [])
        _reap()

    call = api.get(f"/api/calls/{call_id}").body
    assert call["ended"] == at(20).isoformat().replace("+00:00", "Z")
    assert call["endReason"] == "system_error"
    assert call["billedDuration"] == "24s"
    assert call["sipDetails"]["billedDuration"] == "24s"


def test_a_heartbeat_naming_an_unlisted_call_in_endedat_is_refused(api: Api) -> None:
    """docs/webhooks.md: ``endedAt`` may name only calls in ``callIds`` (400 naming the field)."""
    reply = api.heartbeat("edge-a", ["call-1"], endedAt={"call-2": "2026-11-25T12:00:20Z"})

    assert reply.status == 400
    assert "endedAt may name only calls listed in callIds" in str(reply.body)
