"""A REFER from the far end of an answered call (``relay/calls/far_refer.py``), in-process.

The real SIP endpoint is fed the caller's (the transferor's) and the target's literal messages;
the agent is a WebSocket server on 127.0.0.1; the clock simulated (``transferring.py``).
Expected values come from RFC 5589 §6.1 (the transferee's call flow: 202, NOTIFY ``100
Trying``, the INVITE to the target, NOTIFY ``180``/``200 OK`` ``message/sipfrag``, the
transferee's BYE to the transferor), RFC 3515 §2.4.5 (``Event: refer``, ``Subscription-State``),
docs/relay.md (A REFER from the far end),
docs/api.md (``incomingRefer``) and docs/billing.md's rules 1 and 2 applied by
``chalicelib/billing.py`` to what the flow recorded.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

from chalicelib.billing import bill
from chalicelib.call_outcome import summarize
from chalicelib.contracts import CallEvent, CallEventType
from relay.sip.syntax.message import Request, Response
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.calls.dialing import CALLEE, Callee
from tests.integration.relay.calls.harness import CALLER, LOOPBACK, Caller
from tests.integration.relay.calls.test_incoming import accepted, answered_call, answering
from tests.integration.relay.calls.transferring import (
    PAYLOAD,
    T0,
    RtpPeer,
    TransferWire,
    reply,
    sdp_port,
    transfer_command,
)
from tests.support.virtual_time import run_in_virtual_time

TARGET = f"sip:+15550100@{LOOPBACK}:{CALLEE.port}"
REFERRED_BY = "<sip:transferor@atlanta.example.com>"
"""RFC 5589 §6.1's transferor."""


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    run_in_virtual_time(scenario, timeout_s=300.0)


def at(event: CallEvent) -> float:
    return (event.occurred_at - T0).total_seconds()


def refer(caller: Caller, refer_to: str, referred_by: str = REFERRED_BY) -> str:
    """The transferor's REFER in the call's dialog (RFC 3515 §2.4, RFC 5589 §6.1)."""
    caller.cseq += 1
    return (
        f"REFER {caller.remote_target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{CALLER.port};branch=z9hG4bKrefer{caller.cseq}\r\n"
        "Max-Forwards: 70\r\n"
        f'From: "Alice Caller" <sip:+15551234567@{LOOPBACK}>;tag={caller.tag}\r\n'
        f"To: <sip:sales@{LOOPBACK}>;tag={caller.to_tag}\r\n"
        f"Call-ID: {caller.call_id}\r\n"
        f"CSeq: {caller.cseq} REFER\r\n"
        f"Contact: <sip:alice@{LOOPBACK}:{CALLER.port}>\r\n"
        f"Refer-To: <{refer_to}>\r\n"
        f"Referred-By: {referred_by}\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    )


async def notified(wire: TransferWire, status_line: str) -> Request:
    """The relay's NOTIFY whose sipfrag is ``status_line``; answered 200 (RFC 6665 §4.1.3)."""
    found = await wire.next_sent(
        lambda m: (
            isinstance(m, Request)
            and m.method == "NOTIFY"
            and m.body.decode().startswith(status_line)
        )
    )
    assert isinstance(found, Request)
    wire.send(reply(found, 200, "OK"))
    return found


async def target_invite(wire: TransferWire) -> Request:
    found = await wire.next_sent(
        lambda m: isinstance(m, Request) and m.method == "INVITE" and "+15550100" in str(m.uri)
    )
    assert isinstance(found, Request)
    return found


def of_role(wire: TransferWire, role: str) -> list[CallEvent]:
    return [e for e in wire.events if e.leg_role == role]


def agent_heard(agent: Agent, since: float) -> int:
    """Media frames the agent got after ``since`` whose audio is the peers' PAYLOAD."""
    count = 0
    for when, message in agent.arrivals:
        if when < since or not isinstance(message, str):
            continue
        decoded: dict[str, Any] = json.loads(message)
        if decoded.get("event") == "media":
            audio = base64.b64decode(decoded["media"]["payload"])
            count += audio.count(PAYLOAD[:1] * 80) > 0
    return count


def test_follow_moves_the_agent_onto_a_new_leg_to_the_refer_to_target() -> None:
    """RFC 5589 §6.1 with ``incomingRefer: follow``: 202, NOTIFY 100 Trying, the INVITE to the
    target (with the Refer-To's embedded ``X-`` field and the agent's own RTP port), NOTIFY 180 then 200 OK
    (``terminated``), BYE to the transferor. The agent's stream goes on with the target: its
    audio reaches the target, the target's reaches it. Events: ``refer_received`` (accepted,
    target, referrer), the new leg's ``invite_sent``/``ringing``/``answered`` as
    ``transfer_target``, the old leg's ``leg_ended`` ``referred``; billing: both legs from
    their start to their end (rules 1 and 2)."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone, RtpPeer(2) as target_phone:
            wire = TransferWire(answering(accepted(url, incomingRefer="follow")))
            caller = Caller(rtp_port=phone.port)
            final, _ = await answered_call(wire, agent, caller)
            relay_port = sdp_port(final.body)
            phone.talk(relay_port)
            await asyncio.sleep(30.0)
            wire.send(refer(caller, f"{TARGET}?X-Case=7"))
            answer = await wire.final("REFER")
            trying = await notified(wire, "SIP/2.0 100 Trying")
            invite = await target_invite(wire)
            callee = Callee(rtp_port=target_phone.port, port=CALLEE.port)
            wire.send_from(callee.ringing(invite), CALLEE)
            ringing = await notified(wire, "SIP/2.0 180 Ringing")
            await asyncio.sleep(5.0)
            wire.send_from(callee.answer(invite), CALLEE)
            target_phone.talk(relay_port)
            done = await notified(wire, "SIP/2.0 200 OK")
            bye = await wire.next_sent(
                lambda m: isinstance(m, Request) and m.method == "BYE"
                and m.call_id == caller.call_id
            )  # fmt: skip
            assert isinstance(bye, Request)
            wire.send(Caller.ok(bye))
            phone.quiet()
            switched = asyncio.get_running_loop().time()
            await asyncio.sleep(0.5)
            await agent.send(
                {
                    "event": "media",
                    "streamSid": "x",
                    "media": {"payload": base64.b64encode(PAYLOAD * 10).decode()},
                }
            )
            await asyncio.sleep(60.0)  # the agent and the target talk
            assert not wire.task.done()  # type: ignore[union-attr]
            wire.send_from(callee.bye(invite, cseq=2), CALLEE)
            assert (await agent.next_event("stop", timeout_s=5.0))["event"] == "stop"
            await wire.until_done()
            heard_by_target = target_phone.heard()
            heard_by_agent = agent_heard(agent, switched + 1.0)

        assert isinstance(answer, Response) and answer.status == 202
        assert trying.headers.get("Event") == f"refer;id={caller.cseq}"
        assert (trying.headers.get("Content-Type") or "").startswith("message/sipfrag")
        assert (ringing.headers.get("Subscription-State") or "").startswith("active")
        assert (done.headers.get("Subscription-State") or "").startswith("terminated")
        assert invite.headers.get("X-Case") == "7"
        assert sdp_port(invite.body) == relay_port  # the agent's own media session
        assert heard_by_target >= 10  # the agent's 200 ms went to the target
        assert heard_by_agent > 10  # and the target's audio to the agent

        [received] = [e for e in wire.events if e.type is CallEventType.REFER_RECEIVED]
        assert received.leg_role == "caller"
        assert received.detail == f"accepted to={TARGET} by={REFERRED_BY}"
        caller_leg = of_role(wire, "caller")
        target_leg = of_role(wire, "transfer_target")
        assert [e.type.value for e in target_leg] == [
            "invite_sent", "ringing", "answered", "agent_left", "leg_ended"
        ]  # fmt: skip
        assert all(e.transfer_id is None for e in target_leg)
        assert (target_leg[-1].reason, target_leg[-1].detail) == ("remote_hangup", "bye")
        old_end = [e for e in caller_leg if e.type is CallEventType.LEG_ENDED]
        assert [e.reason for e in old_end] == ["referred"]
        answered = next(e for e in caller_leg if e.type is CallEventType.ANSWERED)
        billed = bill(wire.events)
        expected = (at(old_end[0]) - at(answered)) + (at(target_leg[-1]) - at(target_leg[0]))
        assert abs(billed.sip_seconds - expected) < 1e-6
        outcome = summarize(wire.events)  # docs/webhooks.md: the caller's leg was referred
        assert outcome.ended == target_leg[-1].occurred_at
        assert (outcome.end_reason, outcome.termination_reason) == (
            "transferred", "SIP_TERMINATION_REFERRED"
        )  # fmt: skip

    run(scenario)


def test_decline_answers_603_records_the_refer_and_dials_nothing() -> None:
    """``incomingRefer`` ``decline`` (the default, docs/api.md): 603 Decline (never 405, issue
    11), ``refer_received`` ``declined``; no INVITE; the call goes on with the agent."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url)))
            caller = Caller(rtp_port=phone.port)
            final, _ = await answered_call(wire, agent, caller)
            phone.talk(sdp_port(final.body))
            wire.send(refer(caller, TARGET))
            answer = await wire.final("REFER")
            await asyncio.sleep(10.0)
            assert not wire.task.done()  # type: ignore[union-attr]
            wire.send(caller.in_dialog("BYE"))
            await wire.until_done()

        assert answer.status == 603
        assert not [m for m in wire.sent if isinstance(m, Request) and m.method != "BYE"
                    and m.method != "ACK"]  # fmt: skip
        [received] = [e for e in wire.events if e.type is CallEventType.REFER_RECEIVED]
        assert received.detail == f"declined to={TARGET} by={REFERRED_BY}"
        [ended] = [e for e in wire.events if e.type is CallEventType.LEG_ENDED]
        assert ended.reason == "remote_hangup"

    run(scenario)


def test_a_target_outside_the_egress_rules_gets_notify_403_and_nothing_is_dialled() -> None:
    """docs/security.md: the egress rules apply to a far end's REFER as to anything the relay
    dials: a private address not allowed is NOTIFY ``403 Forbidden`` after the 202; no INVITE
    leaves, no leg is recorded, and the call stays with the agent."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url, incomingRefer="follow")))
            caller = Caller(rtp_port=phone.port)
            final, _ = await answered_call(wire, agent, caller)
            phone.talk(sdp_port(final.body))
            wire.send(refer(caller, "sip:admin@169.254.169.254"))
            assert (await wire.final("REFER")).status == 202
            await notified(wire, "SIP/2.0 100 Trying")
            forbidden = await notified(wire, "SIP/2.0 403 Forbidden")
            await asyncio.sleep(10.0)
            assert not wire.task.done()  # type: ignore[union-attr]
            wire.send(caller.in_dialog("BYE"))
            await wire.until_done()

        assert (forbidden.headers.get("Subscription-State") or "").startswith("terminated")
        assert not [m for m in wire.sent if isinstance(m, Request) and m.method == "INVITE"]
        assert not of_role(wire, "transfer_target")
        [ended] = [e for e in wire.events if e.type is CallEventType.LEG_ENDED]
        assert ended.reason == "remote_hangup"

    run(scenario)


def test_a_target_that_refuses_leaves_the_call_with_the_agent_and_notifies_the_status() -> None:
    """RFC 3515 §2.4.5: the referred request's failure is the final sipfrag (486); the new leg's
    ``leg_ended`` ``rejected`` 486; the old leg is the call's still: the caller's BYE ends it."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url, incomingRefer="follow")))
            caller = Caller(rtp_port=phone.port)
            final, _ = await answered_call(wire, agent, caller)
            phone.talk(sdp_port(final.body))
            wire.send(refer(caller, TARGET))
            await notified(wire, "SIP/2.0 100 Trying")
            invite = await target_invite(wire)
            wire.send_from(Callee(port=CALLEE.port).response(invite, 486, "Busy Here"), CALLEE)
            await notified(wire, "SIP/2.0 486 Busy Here")
            await asyncio.sleep(10.0)
            assert not wire.task.done()  # type: ignore[union-attr]
            wire.send(caller.in_dialog("BYE"))
            await wire.until_done()

        target_leg = of_role(wire, "transfer_target")
        assert [(e.type.value, e.reason, e.sip_status) for e in target_leg] == [
            ("invite_sent", None, None), ("leg_ended", "rejected", 486)
        ]  # fmt: skip
        ends = [e for e in of_role(wire, "caller") if e.type is CallEventType.LEG_ENDED]
        assert [e.reason for e in ends] == ["remote_hangup"]

    run(scenario)


def test_a_transferor_that_hangs_up_while_the_target_rings_does_not_end_the_call() -> None:
    """RFC 5589 §6.1 allows the transferor to BYE once the REFER is accepted: the call goes on
    while the target rings, and continues on the new leg once it answers."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url, incomingRefer="follow")))
            caller = Caller(rtp_port=phone.port)
            final, _ = await answered_call(wire, agent, caller)
            relay_port = sdp_port(final.body)
            phone.talk(relay_port)
            wire.send(refer(caller, TARGET))
            await notified(wire, "SIP/2.0 100 Trying")
            invite = await target_invite(wire)
            wire.send(caller.in_dialog("BYE"))
            phone.quiet()
            await asyncio.sleep(2.0)
            assert not wire.task.done()  # type: ignore[union-attr]
            callee = Callee(rtp_port=phone.port, port=CALLEE.port)
            wire.send_from(callee.answer(invite), CALLEE)
            phone.talk(relay_port)
            await asyncio.sleep(20.0)
            assert not wire.task.done()  # type: ignore[union-attr]
            wire.send_from(callee.bye(invite, cseq=2), CALLEE)
            await wire.until_done()

        ends = [(e.leg_role, e.reason) for e in wire.events if e.type is CallEventType.LEG_ENDED]
        assert ends == [("caller", "remote_hangup"), ("transfer_target", "remote_hangup")]

    run(scenario)


def test_a_refer_while_a_transfer_the_agent_asked_for_runs_is_declined() -> None:
    """docs/relay.md (A REFER from the far end): even with ``follow``, a REFER that comes while
    the agent's own (bridged) transfer rings gets 603, recorded ``declined``."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url, incomingRefer="follow")))
            caller = Caller(rtp_port=phone.port)
            final, _ = await answered_call(wire, agent, caller)
            phone.talk(sdp_port(final.body))
            wire.transfer(transfer_command("INVITE"))
            invite = await target_invite(wire)
            wire.send(refer(caller, "sip:desk@127.0.0.1:5090"))
            answer = await wire.final("REFER")
            wire.send_from(Callee(port=CALLEE.port).response(invite, 486, "Busy Here"), CALLEE)
            await agent.next_event("transfer")
            wire.send(caller.in_dialog("BYE"))
            await wire.until_done()

        assert answer.status == 603
        [received] = [e for e in wire.events if e.type is CallEventType.REFER_RECEIVED]
        assert received.detail is not None and received.detail.startswith("declined")

    run(scenario)
