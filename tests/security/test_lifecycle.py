"""Calls that never end, events that get lost: each test is a failure a relay, a queue or a
control plane can suffer, and what sipline does so that no call stays open forever and no event or
hang-up is lost silently.

The control-plane tests run the Chalice app on DynamoDB and SQS mocked by moto, with a clock the
test moves (``tests/integration/conftest.py``); the reaper is the scheduled Lambda's own handler.
Expected figures come from ``docs/billing.md`` ("Calls no relay will end") and its bounds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import app
from chalicelib.contracts import CallEvent, CallEventType, HangUpCommand
from chalicelib.reaper import closed_event, relay_view, verdict_now
from chalicelib.services import Services
from chalicelib.store import keys
from relay.control.commands import CommandHandlers, CommandNotHere
from relay.control.outbox import EventOutbox
from relay.control.spool import DEAD_LETTER_NAME
from relay.control.webhooks import ControlPlaneClient
from tests.integration import conftest as integration
from tests.integration.harness import Api, Queue
from tests.integration.relay.control import test_commands as commands
from tests.integration.relay.control.fake_control_plane import SECRET, FakeControlPlane, Reply
from tests.integration.relay.control.test_commands import (
    Queues,
    consume_until,
    consumer_for,
    hangup,
)
from tests.support.fakes import FixedClock

# The fixtures of the route tests (moto's DynamoDB and SQS, the app, a clock the test moves) and
# of the command consumer's tests (moto server over HTTP), shared rather than copied.
boto_clients, aws, clock, services = (
    integration.boto_clients,
    integration.aws,
    integration.clock,
    integration.services,
)
api, queue = integration.api, integration.queue
moto_url, queues = commands.moto_url, commands.queues

CARRIER = "203.0.113.0/24"
HEARTBEAT_STALE_S = 120  # docs/billing.md: a relay silent this long is dead
LISTING_GRACE_S = 60  # docs/billing.md: a heartbeat this long after creation must list the call
DELIVERY_MARGIN_S = 120  # docs/billing.md: joinTimeout + this, for agent_joined to arrive
DEFAULT_JOIN_TIMEOUT_S = 30  # docs/billing.md: the reaper's joinTimeout when none is set
DEFAULT_MAX_DURATION_S = 3600  # docs/api.md: maxDuration when none is set
CEILING_MARGIN_S = 300  # docs/billing.md


@pytest.fixture
def agent_id(api: Api) -> str:
    agent_id = str(api.create_agent("sales")["agentId"])
    api.patch_sip(
        allowedCidrRanges=[CARRIER],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )
    return agent_id


def _incoming_call(api: Api, edge_id: str, sip_call_id: str = "in-1@carrier.example") -> str:
    decision = api.invite(sipCallId=sip_call_id, edgeId=edge_id).body
    assert decision["action"] == "accept", decision
    return str(decision["callId"])


def _event(
    call_id: str, n: int, kind: str, at_s: float, clock: FixedClock, **f: Any
) -> dict[str, Any]:
    at = clock.now + timedelta(seconds=at_s)
    return {
        "eventId": f"{call_id}:leg1:{n}",
        "type": kind,
        "occurredAt": at.isoformat(),
        "callId": call_id,
        "legId": "leg1",
        "legRole": "caller",
        **f,
    }


def _answered_and_joined(api: Api, call_id: str, clock: FixedClock) -> None:
    """The relay reports: INVITE at +0, agent joined at +1 s, answered at +1 s (then dies)."""
    reply = api.events(
        [
            _event(call_id, 1, "invite_received", 0, clock),
            _event(call_id, 2, "agent_joined", 1, clock),
            _event(call_id, 3, "answered", 1, clock, sipStatus=200),
        ]
    )
    assert reply.status == 200, reply.body


def _reap() -> dict[str, Any]:
    """Run the scheduled Lambda's handler, as EventBridge invokes it."""
    result: dict[str, Any] = app.reap_calls(
        {
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "time": "",
            "resources": [],
            "region": "us-east-1",
            "account": "123456789012",
            "id": "1",
            "version": "0",
            "detail": {},
        },
        None,
    )
    return result


def _call(api: Api, call_id: str) -> dict[str, Any]:
    reply = api.get(f"/api/calls/{call_id}")
    assert reply.status == 200, reply.body
    return dict(reply.body)


def test_a_dead_relays_call_is_closed_as_system_error_and_billed_to_its_last_heartbeat(
    api: Api, agent_id: str, clock: FixedClock
) -> None:
    """A relay dies mid-call: its call must not stay open (and unbilled) forever."""
    call_id = _incoming_call(api, "edge-a")
    _answered_and_joined(api, call_id, clock)
    clock.advance(31)
    api.heartbeat("edge-a", [call_id])  # the last sign of life: the call was up at +31 s
    api.heartbeat("edge-b", [])
    for _ in range(4):  # edge-a is gone; edge-b keeps beating, so heartbeats do reach us
        clock.advance(40)
        api.heartbeat("edge-b", [])
        _reap()
        if _call(api, call_id)["ended"] is not None:
            break

    call = _call(api, call_id)
    assert call["ended"] == "2026-11-25T12:00:31Z"
    assert call["endReason"] == "system_error"
    assert call["sipDetails"]["terminationReason"] == "SIP_TERMINATION_ERROR"
    # answered +1 s .. closed +31 s = 30 s on both clocks: 5 whole deciminutes (docs/billing.md)
    assert call["billedDuration"] == "30s"
    assert call["sipDetails"]["billedDuration"] == "30s"
    assert call["billingStatus"] == "BILLING_STATUS_BILLED"


def test_a_call_whose_decision_timed_out_at_the_relay_is_closed_unjoined(
    api: Api, agent_id: str, clock: FixedClock
) -> None:
    """The control plane accepted an INVITE the relay had given up on (503 to the caller)."""
    call_id = _incoming_call(api, "edge-a")
    clock.advance(LISTING_GRACE_S - 1)
    api.heartbeat("edge-a", [])
    assert _reap()["closed"] == {}  # too early to tell: the heartbeat may predate the decision
    clock.advance(2)
    api.heartbeat("edge-a", [])

    assert _reap()["closed"] == {"relay_does_not_hold_it": 1}
    call = _call(api, call_id)
    assert (call["ended"], call["endReason"]) == ("2026-11-25T12:00:00Z", "unjoined")
    assert (call["billedDuration"], call["sipDetails"]["billedDuration"]) == ("0s", "0s")


def test_a_dial_command_nobody_handled_is_closed_unjoined(
    api: Api, agent_id: str, clock: FixedClock
) -> None:
    """An outgoing call whose dial no relay takes must not stay active forever."""
    call_id = str(api.dial(agent_id).body["callId"])
    bound = DEFAULT_JOIN_TIMEOUT_S + DELIVERY_MARGIN_S
    clock.advance(bound - 1)
    api.heartbeat("edge-a", [])  # relays are alive, none took the dial
    assert _reap()["closed"] == {}
    clock.advance(1)

    assert _reap()["closed"] == {"never_joined": 1}
    call = _call(api, call_id)
    assert (call["ended"], call["endReason"]) == ("2026-11-25T12:00:00Z", "unjoined")


def test_a_call_its_live_relay_still_holds_is_left_alone(
    api: Api, agent_id: str, clock: FixedClock
) -> None:
    """The reaper must not close a healthy call, however long it lasts within maxDuration."""
    call_id = _incoming_call(api, "edge-a")
    _answered_and_joined(api, call_id, clock)
    for _ in range(10):
        clock.advance(300)
        api.heartbeat("edge-a", [call_id])
        assert _reap()["closed"] == {}
    assert _call(api, call_id)["ended"] is None


def test_a_call_past_the_default_max_duration_is_closed_even_while_its_relay_lists_it(
    api: Api, agent_id: str, clock: FixedClock
) -> None:
    """A relay that keeps a call open beyond maxDuration (a bug) cannot bill it forever."""
    call_id = _incoming_call(api, "edge-a")
    _answered_and_joined(api, call_id, clock)
    ceiling = DEFAULT_JOIN_TIMEOUT_S + DEFAULT_MAX_DURATION_S
    clock.advance(ceiling + CEILING_MARGIN_S - 1)
    api.heartbeat("edge-a", [call_id])
    assert _reap()["closed"] == {}
    clock.advance(1)
    api.heartbeat("edge-a", [call_id])

    assert _reap()["closed"] == {"max_duration_exceeded": 1}
    call = _call(api, call_id)
    assert call["endReason"] == "system_error"
    # closed at the ceiling, created + 30 s + 3600 s; billed from the answer at +1 s
    assert call["ended"] == "2026-11-25T13:00:30Z"
    assert call["sipDetails"]["billedDuration"] == "3630s"


def test_relay_events_arriving_after_the_close_change_nothing(
    api: Api, agent_id: str, clock: FixedClock
) -> None:
    """A relay's spool replayed after the reaper closed its call must not reopen or rebill it."""
    call_id = _incoming_call(api, "edge-a")
    _answered_and_joined(api, call_id, clock)
    api.heartbeat("edge-a", [call_id])
    start = clock.now
    clock.advance(HEARTBEAT_STALE_S + 1)
    api.heartbeat("edge-b", [])
    assert _reap()["closed"] == {"relay_silent": 1}
    closed = _call(api, call_id)

    late = [
        _event(call_id, 4, "agent_left", 500, clock, detail="caller_hung_up"),
        _event(call_id, 5, "leg_ended", 500, clock, reason="remote_hangup"),
    ]
    clock.advance(500)  # they are posted once they happened (an event from the future is refused)
    assert api.events(late).status == 200
    assert _reap()["closed"] == {}  # and a second run changes nothing either

    assert _call(api, call_id) == closed
    assert closed["ended"] == (start + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")


def test_a_reaper_run_that_died_after_storing_its_event_is_completed_by_the_next_run(
    api: Api, agent_id: str, clock: FixedClock, services: Services
) -> None:
    """A Lambda killed between storing ``call_closed`` and recomputing the call left it open; the
    next run must finish the job with the event already stored, not write a second one."""
    call_id = _incoming_call(api, "edge-a")
    _answered_and_joined(api, call_id, clock)
    api.heartbeat("edge-a", [call_id])
    clock.advance(HEARTBEAT_STALE_S + 1)
    api.heartbeat("edge-b", [])
    call = services.store.get_call(call_id).value
    first = verdict_now(services, call, relay_view(services))
    assert first is not None
    services.store.add_event(keys.call_pk(call_id), closed_event(call_id, first))  # then died
    clock.advance(600)
    api.heartbeat("edge-b", [])

    assert _reap()["closed"] == {"relay_silent": 1}
    stored = services.store.list_events(keys.call_pk(call_id))
    assert [e.event_id for e in stored if e.type is CallEventType.CALL_CLOSED] == [
        f"{call_id}:closed"
    ]
    assert _call(api, call_id)["ended"] == first.at.isoformat().replace("+00:00", "Z")


def test_the_edge_cannot_close_a_call_with_the_control_planes_own_event(
    api: Api, agent_id: str, clock: FixedClock
) -> None:
    """``call_closed`` is the control plane's: an edge sending it is refused, naming the field."""
    call_id = _incoming_call(api, "edge-a")
    reply = api.events([_event(call_id, 1, "call_closed", 0, clock)])

    assert reply.status == 400
    assert reply.body["field"] == "events[0].type"
    assert _call(api, call_id)["ended"] is None


def test_no_call_is_closed_when_no_relays_heartbeat_reaches_the_control_plane(
    api: Api, agent_id: str, clock: FixedClock
) -> None:
    """Heartbeats lost on the way (not dead relays) must not end every live call at once."""
    call_id = _incoming_call(api, "edge-a")
    _answered_and_joined(api, call_id, clock)
    api.heartbeat("edge-a", [call_id])
    clock.advance(HEARTBEAT_STALE_S + 1)

    assert _reap()["closed"] == {}
    assert _call(api, call_id)["ended"] is None


def test_hanging_up_a_call_no_relay_holds_closes_it_at_once(
    api: Api, agent_id: str, clock: FixedClock, queue: Queue
) -> None:
    """``DELETE`` answered 204 and changed nothing for a call nobody would ever hang up."""
    call_id = str(api.dial(agent_id).body["callId"])
    queue.drain()

    reply = api.delete(f"/api/calls/{call_id}")

    assert reply.status == 204
    call = _call(api, call_id)
    assert (call["ended"], call["endReason"]) == ("2026-11-25T12:00:00Z", "unjoined")
    assert queue.drain() == []  # no relay to tell
    assert api.delete(f"/api/calls/{call_id}").status == 409


def test_hanging_up_a_dead_relays_call_closes_it_and_sends_nothing(
    api: Api, agent_id: str, clock: FixedClock, queue: Queue
) -> None:
    """A call whose relay went silent is closed at once by DELETE, not left to the next run, and
    no command goes into a void (docs/relay.md, "Commands: how one reaches the relay holding the
    call")."""
    call_id = _incoming_call(api, "edge-a")
    _answered_and_joined(api, call_id, clock)
    api.heartbeat("edge-a", [call_id])
    clock.advance(HEARTBEAT_STALE_S + 1)

    assert api.delete(f"/api/calls/{call_id}").status == 204

    call = _call(api, call_id)
    assert call["endReason"] == "system_error"
    assert queue.drain() == []


def test_a_delayed_older_heartbeat_never_replaces_a_newer_one(
    api: Api, agent_id: str, clock: FixedClock
) -> None:
    """A heartbeat sent before a call existed, arriving late, must not make its call look unheld."""
    call_id = _incoming_call(api, "edge-a")
    sent_early = clock.now.isoformat()
    clock.advance(LISTING_GRACE_S + 5)
    assert api.heartbeat("edge-a", [call_id]).body == {"stored": True}
    late = api.heartbeat("edge-a", [], sentAt=sent_early)

    assert late.body == {"stored": False}
    assert _reap()["closed"] == {}


def test_a_heartbeat_listing_more_calls_than_the_limit_is_refused_naming_the_field(
    api: Api,
) -> None:
    """A heartbeat's size is bounded (one DynamoDB item holds it): 5,000 call ids at most."""
    reply = api.heartbeat("edge-a", [f"call-{n}" for n in range(5001)])

    assert reply.status == 400
    assert reply.body["field"] == "callIds"


# --- hang-ups between several relays ------------------------------------------------------


def test_a_hang_up_bounced_by_relays_that_do_not_hold_the_call_still_reaches_the_one_that_does(
    queues: Queues,
) -> None:
    """With four relays on one queue, three that do not hold a call handed its hang-up back by
    visibility: each hand-back counted as a receive, and after five it was deleted as poison,
    after the API had answered 204 (lost with probability (3/4)^5, 24 %)."""
    held: list[str] = []

    async def not_here(command: HangUpCommand) -> None:
        raise CommandNotHere(f"{command.call_id} is on another relay")

    async def holds_it(command: HangUpCommand) -> None:
        held.append(command.call_id)

    others = [
        consumer_for(queues, CommandHandlers(hangup=not_here), visibility_timeout_s=1)
        for _ in range(3)
    ]
    holder = consumer_for(queues, CommandHandlers(hangup=holds_it))
    queues.send(hangup("call-1"))

    async def main() -> None:
        tasks = [asyncio.create_task(other.run()) for other in others]
        try:  # the wrong relays get it first, more often than the queue's poison limit
            async with asyncio.timeout(30):
                while sum(other.stats.not_here for other in others) < 6:
                    await asyncio.sleep(0.01)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await consume_until(holder, lambda: holder.stats.handled >= 1, timeout_s=30)

    asyncio.run(main())
    assert set(held) == {"call-1"}  # a relay stopped mid-pass-on may leave a copy: at least once
    assert sum(other.stats.poison for other in others) == 0
    assert queues.count(queues.dead_letters) == 0


# --- the relay's outbox against a control plane that answers errors ------------------------


def _ringing(n: int) -> CallEvent:
    return CallEvent(
        event_id=f"ev-{n:04d}",
        type=CallEventType.RINGING,
        occurred_at=datetime(2026, 11, 25, 10, 0, tzinfo=UTC) + timedelta(milliseconds=n),
        call_id="call-1",
        leg_id="leg-1",
    )


def _fast_outbox(client: ControlPlaneClient, spool: Path) -> EventOutbox:
    return EventOutbox(
        client,
        spool,
        max_batch=10,
        batch_window_s=0.01,
        backoff_base_s=0.001,
        backoff_cap_s=0.01,
        park_retry_s=0.2,
    )


async def _until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("status", [409, 404, 403, 500])
def test_events_answered_a_passing_error_are_retried_not_dropped(
    tmp_path: Path, status: int
) -> None:
    """A 409 (a race lost), a 404 (a registration deleted meanwhile) or a 403 (a WAF) was taken
    as final: the whole batch was split and every event dropped."""
    failures = iter(range(5))  # enough for a splitting outbox to reach single events

    def flaky(path: str) -> Reply | None:
        if path.endswith("/events") and next(failures, None) is not None:
            return Reply(status, b'{"code": "conflict", "detail": "try again"}')
        return None

    async def main() -> EventOutbox:
        plane = FakeControlPlane(script=flaky)
        await plane.start()
        async with ControlPlaneClient(plane.url, SECRET) as client:
            outbox = _fast_outbox(client, tmp_path)
            outbox.start()
            for n in range(10):
                outbox.record(_ringing(n))
            assert await outbox.drain(20) == 0
        await plane.stop()
        assert sorted(plane.applied) == [f"ev-{n:04d}" for n in range(10)]
        return outbox

    outbox = asyncio.run(main())
    assert (outbox.stats.refused, outbox.stats.delivered) == (0, 10)
    assert not (tmp_path / DEAD_LETTER_NAME).exists()


@pytest.mark.parametrize("status", [500, 403])
def test_an_event_that_always_fails_is_isolated_and_the_events_behind_it_flow(
    tmp_path: Path, status: int
) -> None:
    """One event the control plane always fails on (a handler crash, a WAF rule) stalled every
    event recorded after it, for ever."""
    healed = False

    def poison(path: str, body: bytes) -> Reply | None:
        if path.endswith("/events") and b"ev-0003" in body and not healed:
            return Reply(status, b"Internal Server Error")
        return None

    async def main() -> None:
        nonlocal healed
        plane = FakeControlPlane(body_script=poison)
        await plane.start()
        async with ControlPlaneClient(plane.url, SECRET) as client:
            outbox = _fast_outbox(client, tmp_path)
            outbox.start()
            for n in range(25):
                outbox.record(_ringing(n))
            await _until(lambda: len(plane.applied) == 24)
            assert "ev-0003" not in plane.applied
            assert outbox.stats.parked >= 1 and outbox.undelivered == 1
            assert list(tmp_path.glob("segment-*.jsonl"))  # still spooled, not dropped
            healed = True  # the bug is fixed: the parked event goes through on its next turn
            await _until(lambda: "ev-0003" in plane.applied)
            assert await outbox.drain(5) == 0
        await plane.stop()
        assert not list(tmp_path.glob("segment-*.jsonl"))

    asyncio.run(main())


def test_an_event_refused_as_invalid_goes_to_the_dead_letter_file_not_to_nothing(
    tmp_path: Path,
) -> None:
    """A 400 ``invalid_input`` is final, but the refused event was dropped with only a log line."""

    def refuse(path: str, body: bytes) -> Reply | None:
        if path.endswith("/events") and b"ev-0004" in body:
            detail = b'{"code": "invalid_input", "field": "events[4].legId", "detail": "required"}'
            return Reply(400, detail)
        return None

    async def main() -> EventOutbox:
        plane = FakeControlPlane(body_script=refuse)
        await plane.start()
        async with ControlPlaneClient(plane.url, SECRET) as client:
            outbox = _fast_outbox(client, tmp_path)
            outbox.start()
            for n in range(10):
                outbox.record(_ringing(n))
            assert await outbox.drain(20) == 0
        await plane.stop()
        assert sorted(plane.applied) == [f"ev-{n:04d}" for n in range(10) if n != 4]
        return outbox

    outbox = asyncio.run(main())
    assert outbox.stats.refused == 1
    [line] = (tmp_path / DEAD_LETTER_NAME).read_text().splitlines()
    kept = json.loads(line)
    assert kept["event"]["eventId"] == "ev-0004"
    assert "invalid_input" in kept["reason"]
