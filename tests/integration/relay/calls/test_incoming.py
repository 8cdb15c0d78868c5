"""An incoming call's flow (``relay/calls/incoming.py``) driven directly, in-process.

The real SIP endpoint is fed a literal INVITE; the control plane is a scripted ``decide``; the
agent a scripted WebSocket server on 127.0.0.1; the clock simulated (``harness.py``).

Expected values come from the docs: what the caller sees from docs/relay.md (An incoming call,
step by step; How a call ends), the events from docs/relay.md (Call events) and the contract
(docs/webhooks.md), what the agent is sent from docs/agents.md.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from chalicelib.contracts import (
    CallEventType,
    InviteAccepted,
    InviteRejected,
    InviteWebhook,
    parse_decision,
)
from relay.control.webhooks import ControlPlaneUnavailable
from relay.sip.syntax.message import Response
from relay.transport.rtp_session import RtpPortAllocator, RtpSession
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.calls.harness import (
    LOOPBACK,
    RETRY_AFTER_S,
    Caller,
    Wire,
    fields,
)
from tests.support.ports import free_port, free_port_range
from tests.support.virtual_time import run_in_virtual_time

CALL_ID = "01a212bf-1dc0-7935-87f3-1a9f9d14bb2f"
"""docs/webhooks.md's accepted call."""


def accepted(url: str, **overrides: Any) -> InviteAccepted:
    """docs/webhooks.md's ``InviteAccepted`` example, with the test's agent at ``url``."""
    body = {
        "action": "accept",
        "callId": CALL_ID,
        "accountId": "default",
        "agentId": "agent_1",
        "mediaEndpoint": {"url": url, "framing": "twilio"},
        "systemPrompt": "You are a helpful agent.",
        "templateContext": {"customer_name": "Bob"},
        "callTemplate": {},
        "codecPreference": ["PCMU/8000", "PCMA/8000"],
        "joinTimeoutS": None,
        "maxDurationS": 3600,
        **overrides,
    }
    decision = parse_decision(json_text(body))
    assert isinstance(decision, InviteAccepted)
    return decision


def json_text(body: dict[str, Any]) -> str:
    return json.dumps(body)


def answering(decision: InviteAccepted | InviteRejected) -> Callable[..., Awaitable[Any]]:
    async def decide(_: InviteWebhook) -> InviteAccepted | InviteRejected:
        return decision

    return decide


@asynccontextmanager
async def rtp_sink() -> AsyncIterator[int]:
    """A UDP socket on 127.0.0.1 for the relay's RTP to the caller; yield its port."""
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=(LOOPBACK, 0)
    )
    try:
        yield int(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    run_in_virtual_time(scenario, timeout_s=120.0)


def header(response: Response, name: str) -> str | None:
    return response.headers.get(name)


# --- before the answer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rejection", "status", "reason", "retry_after"),
    [
        ({"sipStatus": 403, "reason": "source_ip_not_allowed"}, 403, "Forbidden", None),
        ({"sipStatus": 404, "reason": "no_route"}, 404, "Not Found", None),
        (
            {"sipStatus": 503, "reason": "too_many_active_calls", "retryAfterS": 10},
            503,
            "Service Unavailable",
            "10",
        ),
    ],
)
def test_a_rejection_is_answered_with_its_status_and_records_nothing(
    rejection: dict[str, Any], status: int, reason: str, retry_after: str | None
) -> None:
    """docs/relay.md step 4: the decision's ``sipStatus`` with its standard reason phrase, its
    ``retryAfterS`` as ``Retry-After``; "Nothing is recorded for a rejected INVITE"."""
    decision = parse_decision(json_text({"action": "reject", **rejection}))

    async def scenario() -> None:
        wire = Wire(answering(decision))
        wire.send(Caller(rtp_port=4000).invite())
        final = await wire.final()
        await wire.until_done()
        assert (final.status, final.reason) == (status, reason)
        assert header(final, "Retry-After") == retry_after
        assert wire.events == []

    run(scenario)


def test_the_control_plane_unreachable_gets_503_with_retry_after_and_records_nothing() -> None:
    """docs/relay.md step 3: "the caller gets 503 Service Unavailable with Retry-After"."""

    async def down(_: InviteWebhook) -> InviteAccepted:
        raise ControlPlaneUnavailable("connection refused", retry_after_s=RETRY_AFTER_S)

    async def scenario() -> None:
        wire = Wire(down)
        wire.send(Caller(rtp_port=4000).invite())
        final = await wire.final()
        await wire.until_done()
        assert (final.status, final.reason) == (503, "Service Unavailable")
        assert header(final, "Retry-After") == "5"
        assert wire.events == []

    run(scenario)


def test_no_free_rtp_port_gets_503_with_retry_after_and_an_error_event() -> None:
    """docs/relay.md, How a call ends: no RTP port pair free answers "503 Service Unavailable
    with Retry-After (SIPLINE_RETRY_AFTER_S)", recorded as "leg_ended error with sipStatus 503
    (detail rtp_ports_exhausted)"."""

    async def scenario() -> None:
        low, _ = free_port_range(2)
        ports = RtpPortAllocator(LOOPBACK, low, low + 1)  # one pair, held below
        held = await RtpSession.open(ports)
        try:
            wire = Wire(answering(accepted("ws://127.0.0.1:9/agent")), ports=ports)
            wire.send(Caller(rtp_port=4000).invite())
            final = await wire.final()
            await wire.until_done()
        finally:
            await held.close()
        assert (final.status, final.reason) == (503, "Service Unavailable")
        assert header(final, "Retry-After") == "5"
        assert wire.kinds() == ["invite_received", "leg_ended"]
        ended = wire.events[-1]
        assert (ended.reason, ended.sip_status, ended.detail) == (
            "error", 503, "rtp_ports_exhausted"
        )  # fmt: skip

    run(scenario)


def test_an_agent_that_cannot_be_reached_gets_the_caller_480() -> None:
    """docs/relay.md step 7: "If the agent cannot be reached, the caller gets 480"; after the
    180 (step 6), within the template's ``joinTimeout`` (docs/api.md); the leg ends with
    ``sipStatus`` 480 (Call events)."""

    async def scenario() -> None:
        nobody = f"ws://127.0.0.1:{free_port()}/agent"
        wire = Wire(answering(accepted(nobody, joinTimeoutS=1)))
        wire.send(Caller(rtp_port=4000).invite())
        final = await wire.final()
        await wire.until_done()
        statuses = [m.status for m in wire.sent if isinstance(m, Response)]
        assert statuses == [100, 180, 480]
        assert (final.status, final.reason) == (480, "Temporarily Unavailable")  # docs/agents.md
        assert wire.kinds() == ["invite_received", "ringing", "leg_ended"]
        ended = wire.events[-1]
        assert (ended.reason, ended.sip_status, ended.detail) == ("error", 480, "agent_unreachable")

    run(scenario)


# --- the answered call ----------------------------------------------------------------------


async def answered_call(
    wire: Wire, agent: Agent, caller: Caller
) -> tuple[Response, dict[str, Any]]:
    """Send the INVITE, wait for the 200, ACK it; return the 200 and the agent's ``start``."""
    wire.send(caller.invite())
    final = await wire.final()
    assert final.status == 200
    wire.send(caller.answered(final))
    assert (await agent.next_json())["event"] == "connected"
    start = await agent.next_json()
    assert start["event"] == "start"
    return final, start


def test_an_accepted_call_rings_then_answers_with_sdp_once_the_agent_is_there() -> None:
    """docs/relay.md steps 6-7: 180, then the agent's ``connected`` and ``start``, then 200 OK
    with the SDP answer; the events ``invite_received``, ``ringing`` (180), ``agent_joined``,
    ``answered`` (200), ids ``<callId>:<legId>:<n>`` with ``legRole: caller`` (Call events).
    docs/webhooks.md: the webhook describes the packet and the INVITE."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, rtp_sink() as rtp_port:
            wire = Wire(answering(accepted(url)))
            caller = Caller(rtp_port=rtp_port)
            final, start = await answered_call(wire, agent, caller)
            wire.send(caller.in_dialog("BYE"))
            await wire.until_done()

        statuses = [m.status for m in wire.sent if isinstance(m, Response)][:3]
        assert statuses == [100, 180, 200]
        assert header(final, "Content-Type") == "application/sdp"
        sdp = final.body.decode()
        assert re.search(r"^m=audio \d+ RTP/AVP 0 101\r$", sdp, re.M), sdp  # PCMU first
        assert "c=IN IP4 127.0.0.1\r\n" in sdp

        [webhook] = wire.webhooks
        assert (webhook.source_ip, webhook.transport, webhook.edge_id) == (
            "127.0.0.1", "udp", "edge-1"
        )  # fmt: skip
        assert (webhook.from_display_name, webhook.from_tag) == ("Alice Caller", "a73kszlfl")
        assert webhook.sip_call_id == "3848276298220188511@carrier.example"
        assert ("X-Customer-Name", "Bob") in webhook.headers
        assert webhook.offered_codecs == ["PCMU/8000", "PCMA/8000", "telephone-event/8000"]

        parameters = start["start"]["customParameters"]
        assert (parameters["call_id"], parameters["agent_id"]) == (CALL_ID, "agent_1")
        assert (parameters["from_number"], parameters["to_number"]) == ("+15551234567", "sales")

        first = [fields(e) for e in wire.events[:4]]
        leg_id = first[0]["legId"]
        assert re.fullmatch(r"[0-9a-f]{16}", leg_id)
        assert [(e["type"], e.get("sipStatus")) for e in first] == [
            ("invite_received", None), ("ringing", 180), ("agent_joined", None),
            ("answered", 200),
        ]  # fmt: skip
        for n, event in enumerate(first, start=1):
            assert event["eventId"] == f"{CALL_ID}:{leg_id}:{n}"
            assert (event["callId"], event["legRole"]) == (CALL_ID, "caller")

    run(scenario)


def test_the_callers_bye_ends_the_agent_and_the_leg() -> None:
    """docs/relay.md, How a call ends: the caller's BYE gets 200, the agent ``stop`` and a
    closed WebSocket; recorded as in the docs' six-event example: ``agent_left``
    (``caller_hung_up``), ``leg_ended`` ``remote_hangup`` (``bye``)."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, rtp_sink() as rtp_port:
            wire = Wire(answering(accepted(url)))
            caller = Caller(rtp_port=rtp_port)
            await answered_call(wire, agent, caller)
            wire.send(caller.in_dialog("BYE"))
            assert (await wire.final("BYE")).status == 200
            await wire.until_done()
            assert (await agent.next_event("stop"))["event"] == "stop"
            await asyncio.wait_for(agent.closed.wait(), 10)

        assert wire.kinds() == [
            "invite_received", "ringing", "agent_joined", "answered", "agent_left", "leg_ended"
        ]  # fmt: skip
        assert (wire.events[4].detail, wire.events[4].reason) == ("caller_hung_up", None)
        assert (wire.events[5].reason, wire.events[5].detail) == ("remote_hangup", "bye")

    run(scenario)


async def ended_by_us(
    wire: Wire, agent: Agent, caller: Caller, end: Callable[[], None] | None = None
) -> float:
    """Answer the call, end it with ``end``, answer the relay's BYE; return when it came."""
    await answered_call(wire, agent, caller)
    if end is not None:
        end()
    bye = await wire.request("BYE")
    came_at = asyncio.get_running_loop().time()
    wire.send(Caller.ok(bye))
    await wire.until_done()
    return came_at


def test_an_api_hang_up_sends_stop_to_the_agent_and_bye_to_the_caller() -> None:
    """docs/relay.md, How a call ends: ``DELETE /api/calls/{callId}`` "sends stop to the agent,
    closes, sends BYE", recorded "agent_left, leg_ended local_hangup (detail api_hang_up)"."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, rtp_sink() as rtp_port:
            wire = Wire(answering(accepted(url)))

            def hang_up() -> None:
                assert wire.flow is not None
                wire.flow.signals.hang_up_requested.set()

            await ended_by_us(wire, agent, Caller(rtp_port=rtp_port), hang_up)
            assert (await agent.next_event("stop"))["event"] == "stop"

        assert wire.kinds()[-2:] == ["agent_left", "leg_ended"]
        assert wire.events[-2].detail == "api_hang_up"
        assert wire.events[-2].reason is None  # docs: no error when the API hung up
        assert (wire.events[-1].reason, wire.events[-1].detail) == ("local_hangup", "api_hang_up")

    run(scenario)


def test_max_duration_ends_the_call_with_bye_and_a_timeout() -> None:
    """docs/relay.md, Configuration: ``maxDuration`` "ends the call (stop to the agent, BYE to
    the caller) that long after the answer"; How a call ends: ``agent_left``, ``leg_ended``
    ``timeout`` (detail ``max_duration``)."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, rtp_sink() as rtp_port:
            wire = Wire(answering(accepted(url, maxDurationS=5)))
            caller = Caller(rtp_port=rtp_port)
            bye_at = await ended_by_us(wire, agent, caller)
            assert (await agent.next_event("stop"))["event"] == "stop"

        assert bye_at >= 5  # on the simulated clock: not before maxDuration
        assert wire.kinds()[-2:] == ["agent_left", "leg_ended"]
        assert (wire.events[-2].detail, wire.events[-2].reason) == ("max_duration", None)
        assert (wire.events[-1].reason, wire.events[-1].detail) == ("timeout", "max_duration")

    run(scenario)


@pytest.mark.parametrize(
    ("fault_at", "caller_gets"),
    [(CallEventType.RINGING, 480), (CallEventType.ANSWERED, "BYE")],
    ids=["before-the-answer", "after-the-answer"],
)
def test_a_failure_inside_the_flow_ends_the_call_with_internal_error(
    fault_at: CallEventType, caller_gets: int | str
) -> None:
    """docs/relay.md, How a call ends: "a bug in the call's task | hangs up (BYE, or 480 before
    the answer) | leg_ended error (detail internal_error)". The fault: the call's ``record``
    dependency raises on a ``fault_at`` event."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, rtp_sink() as rtp_port:
            wire = Wire(answering(accepted(url)), fault_at=fault_at)
            caller = Caller(rtp_port=rtp_port)
            wire.send(caller.invite())
            final = await wire.final()
            wire.send(caller.answered(final))
            if caller_gets == "BYE":
                assert final.status == 200
                wire.send(Caller.ok(await wire.request("BYE")))
            else:
                assert final.status == 480
            await wire.until_done()

        ended = wire.events[-1]
        assert (ended.type, ended.reason, ended.detail) == ("leg_ended", "error", "internal_error")
        assert fault_at.value not in wire.kinds()

    run(scenario)
