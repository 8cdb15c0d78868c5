"""Warm transfers of an answered incoming call (``relay/calls/transfer_warm.py``), in-process.

The real SIP endpoint is fed the caller's and the operator's literal messages; the call's agent
and the operator leg's agent are two WebSockets to one server on 127.0.0.1; the clock simulated
(``transferring.py``). Expected values come from RFC 3891 §6.1 and RFC 5589 §7 (the attended
transfer: ``Refer-To`` with an escaped ``Replaces`` naming the operator's dialog, the operator's
tag as ``to-tag``), RFC 3515 (202, NOTIFY sipfrag), docs/relay.md (Transfers, warm),
docs/agents.md (the operator leg's ``start.customParameters``, the ``transfer`` message), the
control plane's own reading of the events (``chalicelib/transfer_status.py``: ``briefing``,
``referred``, ``bridged``, ``declined``, ``failed``) and docs/billing.md's rules 2-6, applied by
``chalicelib/billing.py`` to what the flow recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.billing import bill
from chalicelib.contracts import CallEvent, CallEventType
from chalicelib.transfer_status import TransferRecord, derive
from relay.sip.syntax.message import Request
from tests.integration.relay.bridge.harness import Agent
from tests.integration.relay.calls.dialing import CALLEE, Callee
from tests.integration.relay.calls.harness import Caller
from tests.integration.relay.calls.test_incoming import accepted, answering
from tests.integration.relay.calls.test_transfer_cold import (
    at,
    one,
    refer_of,
    response_to,
    sounding,
    talking,
    target_invite,
)
from tests.integration.relay.calls.transferring import (
    CALL_ID,
    DECISION_TIMEOUT_S,
    RING_TIMEOUT_S,
    T0,
    TRANSFER_ID,
    WARM_PROMPT,
    RtpPeer,
    TransferWire,
    agents_server,
    notify,
    reply,
    sdp_port,
    warm_command,
)
from tests.support.virtual_time import run_in_virtual_time

TALK_S = 20.0
"""The agent talks with the caller this long before asking (docs/billing.md's warm rows: 20 s)."""
BRIEF_S = 30.0
"""The operator's briefing (docs/billing.md's warm rows: answered 25, decided 55)."""


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    run_in_virtual_time(scenario, timeout_s=600.0)


def operator_events(wire: TransferWire) -> list[CallEvent]:
    return [e for e in wire.events if e.leg_role == "transfer_target"]


def status(wire: TransferWire, method: str, outcome: tuple[bool, float] | None = None) -> str:
    """The Transfer's ``status`` as the control plane derives it from the recorded events."""
    accepted_, outcome_at = outcome if outcome is not None else (None, None)
    record = TransferRecord(
        transfer_id=TRANSFER_ID,
        call_id=CALL_ID,
        sequence=1,
        created=T0,
        tool_name="warmTransfer",
        kind="warm",
        method=method,  # type: ignore[arg-type]
        target="sip:+15550100@127.0.0.1",
        accepted=accepted_,
        outcome_reason=None,
        outcome_at=None if outcome_at is None else T0 + timedelta(seconds=outcome_at),
    )
    return derive(record, wire.events, call_ended=None, now=T0 + timedelta(days=1)).status


class Scene:
    """A call answered by its agent, a warm transfer asked, the operator answered and briefed."""

    def __init__(self, wire: TransferWire, agent: Agent, operator: Agent, caller: Caller) -> None:
        self.wire, self.agent, self.operator, self.caller = wire, agent, operator, caller
        self.callee = Callee(port=CALLEE.port)
        self.invite: Request | None = None
        self.start: dict[str, Any] = {}

    async def briefed(self, method: str, phone: RtpPeer, operator_phone: RtpPeer) -> Request:
        """Talk, ask, ring, answer; return the operator INVITE once its agent has ``start``."""
        self.callee = Callee(rtp_port=operator_phone.port, port=CALLEE.port)
        await talking(self.wire, self.agent, self.caller, phone)
        await asyncio.sleep(TALK_S)
        self.wire.transfer(warm_command(method))
        invite = self.invite = await target_invite(self.wire)
        self.wire.send_from(self.callee.ringing(invite), CALLEE)
        await asyncio.sleep(5.0)
        self.wire.send_from(self.callee.answer(invite), CALLEE)
        operator_phone.talk(sdp_port(invite.body))
        assert (await self.operator.next_json())["event"] == "connected"
        self.start = await self.operator.next_json()
        assert self.start["event"] == "start"
        return invite


def held_and_briefed(scene: Scene) -> None:
    """docs/agents.md: the operator leg's ``start.customParameters``; transfer_status: the
    operator leg's ``agent_joined`` reads ``briefing``."""
    params = scene.start["start"]["customParameters"]
    assert params["sipline_leg"] == "operator"
    assert params["sipline_transfer_id"] == TRANSFER_ID
    assert params["sipline_call_id"] == CALL_ID
    assert params["call_id"] == CALL_ID
    assert params["system_prompt"] == WARM_PROMPT
    assert (params["direction"], params["to_number"]) == ("outgoing", "+15550100")


@pytest.mark.parametrize("method", ["REFER", "TRY_REFER"])
def test_an_accepted_warm_refer_replaces_the_operator_leg_and_stops_both_clocks(
    method: str,
) -> None:
    """RFC 5589 §7 / RFC 3891 §6.1: accepted, the operator's agent gets ``stop``, the caller gets
    REFER with ``Refer-To: <target?X-Case=..&Replaces=<operator Call-ID>;to-tag=<operator's
    tag>;from-tag=<ours>>`` (escaped, RFC 3261 §19.1.1); 202, NOTIFY 200; the caller's agent is
    told ``referred``; the operator (its dialog replaced) BYEs us: ``leg_ended`` ``referred`` on
    both legs. docs/billing.md rule 3: both SIP clocks stop at ``refer_succeeded``; rule 6:
    TRY_REFER that succeeds bills as REFER."""

    async def scenario() -> None:
        agent, operator = Agent(), Agent()
        async with (
            agents_server(agent, operator) as url,
            RtpPeer(1) as phone,
            RtpPeer(2) as operator_phone,
        ):
            wire = TransferWire(answering(accepted(url)))
            scene = Scene(wire, agent, operator, Caller(rtp_port=phone.port))
            invite = await scene.briefed(method, phone, operator_phone)
            assert status(wire, method) == "briefing"
            await asyncio.sleep(BRIEF_S)
            mark = len(wire.sent)
            wire.outcome(True)
            decided = asyncio.get_running_loop().time()
            assert (await operator.next_event("stop"))["event"] == "stop"
            refer = await refer_of(wire, mark)
            wire.send(reply(refer, 202, "Accepted"))
            await asyncio.sleep(2.0)
            wire.send(notify(scene.caller, refer, "SIP/2.0 200 OK", terminated=True))
            told = await agent.next_event("transfer")
            assert (await agent.next_event("stop"))["event"] == "stop"
            await asyncio.sleep(0.2)
            wire.send(scene.caller.in_dialog("BYE"))
            assert (await response_to(wire, "BYE", mark)).status == 200
            await asyncio.sleep(0.1)  # docs/billing.md's refer_warm_transfer: 57.2, 57.3
            wire.send_from(scene.callee.bye(invite, cseq=2), CALLEE)  # RFC 3891 §3
            await wire.until_done()
            await asyncio.sleep(0.5)
            bye_ok = await response_to(wire, "BYE", mark + 1)

        held_and_briefed(scene)
        call_id = invite.call_id.replace("@", "%40")
        from_tag = invite.from_.tag
        assert refer.headers.get("Refer-To") == (
            f"<sip:+15550100@127.0.0.1:{CALLEE.port}?X-Case=42%20%26%20urgent&Replaces="
            f"{call_id}%3Bto-tag%3Dcallee-tag-1%3Bfrom-tag%3D{from_tag}>"
        )
        assert bye_ok.status == 200
        assert told["transfer"] == {
            "transferId": TRANSFER_ID, "status": "referred", "sipStatus": None, "reason": None
        }  # fmt: skip
        legs = operator_events(wire)
        assert [e.type.value for e in legs] == [
            "invite_sent", "ringing", "answered", "agent_joined", "leg_ended"
        ]  # fmt: skip
        assert all(e.transfer_id == TRANSFER_ID for e in legs)
        assert (legs[-1].reason, legs[-1].detail) == ("referred", "operator_hung_up")
        caller_end = one(wire, CallEventType.LEG_ENDED)
        assert caller_end.reason == "referred"
        assert status(wire, method, (True, decided)) == "referred"

        succeeded = one(wire, CallEventType.REFER_SUCCEEDED)
        answered = one(wire, CallEventType.ANSWERED)
        expected = (at(succeeded) - at(answered)) + (at(succeeded) - at(legs[0]))
        billed = bill(wire.events)
        assert abs(billed.sip_seconds - expected) < 1e-6
        # docs/billing.md, refer_warm_transfer: INVITE 20, answered 25, REFER 55, NOTIFY 200 at
        # 57 (as here): SIP 57 + 37 = 94 -> 96 s
        assert (at(legs[0]), at(legs[2]), at(succeeded)) == (20.0, 25.0, 57.0)
        assert (billed.sip_seconds, billed.billed_sip_seconds) == (94.0, 96)

    run(scenario)


@pytest.mark.parametrize("method", ["BRIDGE", "TRY_REFER"])
def test_an_accepted_warm_transfer_bridges_the_caller_and_the_operator(method: str) -> None:
    """docs/relay.md (Transfers, warm): ``BRIDGE`` joins the two legs' media in the relay;
    ``TRY_REFER`` does so once its REFER failed (405: ``refer_failed`` recorded, the agent not
    told it). The operator's agent gets ``stop``, the caller's agent is told ``bridged`` and
    leaves. docs/billing.md rules 2, 5, 6: both legs bill until each ends, the call clock is the
    caller's agent's (the operator leg's ``agent_joined`` changes nothing)."""

    async def scenario() -> None:
        agent, operator = Agent(), Agent()
        async with (
            agents_server(agent, operator) as url,
            RtpPeer(1) as phone,
            RtpPeer(2) as operator_phone,
        ):
            wire = TransferWire(answering(accepted(url)))
            scene = Scene(wire, agent, operator, Caller(rtp_port=phone.port))
            invite = await scene.briefed(method, phone, operator_phone)
            await asyncio.sleep(BRIEF_S)
            mark = len(wire.sent)
            wire.outcome(True, "I will take the call")
            decided = asyncio.get_running_loop().time()
            assert (await operator.next_event("stop"))["event"] == "stop"
            if method == "TRY_REFER":
                refer = await refer_of(wire, mark)
                wire.send(reply(refer, 405, "Method Not Allowed"))
            told = await agent.next_event("transfer")
            assert (await agent.next_event("stop"))["event"] == "stop"
            heard_before = operator_phone.heard(), phone.heard()
            await asyncio.sleep(60.0)  # the caller and the operator talk, bridged
            wire.send_from(scene.callee.bye(invite, cseq=2), CALLEE)
            bye = await wire.next_sent(
                lambda m: (
                    isinstance(m, Request) and m.method == "BYE" and m.call_id != invite.call_id
                )
            )
            assert isinstance(bye, Request)
            wire.send(Caller.ok(bye))
            await wire.until_done()
            heard = operator_phone.heard() - heard_before[0], phone.heard() - heard_before[1]

        held_and_briefed(scene)
        assert heard[0] > 50 and heard[1] > 50  # each heard the other's packets, bridged
        assert told["transfer"] == {
            "transferId": TRANSFER_ID, "status": "bridged", "sipStatus": None, "reason": None
        }  # fmt: skip
        legs = operator_events(wire)
        assert [e.type.value for e in legs] == [
            "invite_sent", "ringing", "answered", "agent_joined", "bridged", "leg_ended"
        ]  # fmt: skip
        refer_failures = [e for e in wire.events if e.type is CallEventType.REFER_FAILED]
        assert [(e.sip_status, e.transfer_id) for e in refer_failures] == (
            [(405, TRANSFER_ID)] if method == "TRY_REFER" else []
        )
        assert status(wire, method, (True, decided)) == "bridged"
        caller_end = one(wire, CallEventType.LEG_ENDED)
        assert (caller_end.reason, caller_end.detail) == ("local_hangup", "bridged_leg_ended")

        answered, joined = one(wire, CallEventType.ANSWERED), one(wire, CallEventType.AGENT_JOINED)
        left = one(wire, CallEventType.AGENT_LEFT)
        billed = bill(wire.events)
        expected = (at(caller_end) - at(answered)) + (at(legs[-1]) - at(legs[0]))
        assert abs(billed.sip_seconds - expected) < 1e-6
        assert abs(billed.call_seconds - (at(left) - at(joined))) < 1e-6

    run(scenario)


def test_a_declined_warm_transfer_returns_the_caller_to_its_agent() -> None:
    """docs/relay.md (Transfers, warm): declined, the operator's agent gets ``stop``, the operator
    leg our BYE (``leg_ended`` ``local_hangup`` ``declined``), the hold music stops, the caller's
    agent is told ``declined`` with the bot's reason and carries on. docs/billing.md rule 4: two
    legs bill only while the operator leg was up."""

    async def scenario() -> None:
        agent, operator = Agent(), Agent()
        async with (
            agents_server(agent, operator) as url,
            RtpPeer(1) as phone,
            RtpPeer(2) as operator_phone,
        ):
            wire = TransferWire(answering(accepted(url)))
            scene = Scene(wire, agent, operator, Caller(rtp_port=phone.port))
            invite = await scene.briefed("TRY_REFER", phone, operator_phone)
            await asyncio.sleep(2.0)
            held = sounding(phone.received)
            wire.outcome(False, "The operator is on another call")
            decided = asyncio.get_running_loop().time()
            assert (await operator.next_event("stop"))["event"] == "stop"
            bye = await wire.next_sent(
                lambda m: (
                    isinstance(m, Request) and m.method == "BYE" and m.call_id == invite.call_id
                )
            )
            assert isinstance(bye, Request)
            wire.send_from(scene.callee.response(bye, 200, "OK"), CALLEE)
            told = await agent.next_event("transfer")
            await asyncio.sleep(0.1)
            back = len(phone.received)
            await asyncio.sleep(10.0)
            assert not wire.task.done()  # type: ignore[union-attr]
            assert held >= 50 and sounding(phone.received[back:]) == 0  # music, then none
            wire.send(scene.caller.in_dialog("BYE"))
            await wire.until_done()

        assert told["transfer"] == {
            "transferId": TRANSFER_ID,
            "status": "declined",
            "sipStatus": None,
            "reason": "The operator is on another call",
        }
        legs = operator_events(wire)
        assert [e.type.value for e in legs] == [
            "invite_sent", "ringing", "answered", "agent_joined", "leg_ended"
        ]  # fmt: skip
        assert (legs[-1].reason, legs[-1].detail) == ("local_hangup", "declined")
        assert status(wire, "TRY_REFER", (False, decided)) == "declined"
        assert not [e for e in wire.events if e.type is CallEventType.REFER_SENT]
        caller_end = one(wire, CallEventType.LEG_ENDED)
        answered, joined = one(wire, CallEventType.ANSWERED), one(wire, CallEventType.AGENT_JOINED)
        billed = bill(wire.events)
        expected = (at(caller_end) - at(answered)) + (at(legs[-1]) - at(legs[0]))
        assert abs(billed.sip_seconds - expected) < 1e-6
        left = one(wire, CallEventType.AGENT_LEFT)  # the call's agent, to the caller's BYE
        assert abs(billed.call_seconds - (at(left) - at(joined))) < 1e-6

    run(scenario)


def test_a_warm_transfer_nobody_decides_ends_at_the_decision_timeout() -> None:
    """docs/relay.md (Transfers, warm): no ``transfer_outcome`` within
    ``SIPLINE_WARM_DECISION_TIMEOUT_S`` of the answer: the operator leg gets our BYE
    (``decision_timeout``), its agent ``stop``, the caller's agent is told ``failed``."""

    async def scenario() -> None:
        agent, operator = Agent(), Agent()
        async with (
            agents_server(agent, operator) as url,
            RtpPeer(1) as phone,
            RtpPeer(2) as operator_phone,
        ):
            wire = TransferWire(answering(accepted(url)))
            scene = Scene(wire, agent, operator, Caller(rtp_port=phone.port))
            invite = await scene.briefed("REFER", phone, operator_phone)
            wire.outcome(True, transferId=TRANSFER_ID.replace("0001", "0009"))  # not this one
            await asyncio.sleep(DECISION_TIMEOUT_S - 1.0)
            assert not operator.closed.is_set()
            stop = await operator.next_event("stop", timeout_s=5.0)
            bye = await wire.next_sent(
                lambda m: (
                    isinstance(m, Request) and m.method == "BYE" and m.call_id == invite.call_id
                )
            )
            assert isinstance(bye, Request)
            wire.send_from(scene.callee.response(bye, 200, "OK"), CALLEE)
            told = await agent.next_event("transfer")
            wire.send(scene.caller.in_dialog("BYE"))
            await wire.until_done()

        assert stop["event"] == "stop"
        assert told["transfer"] == {
            "transferId": TRANSFER_ID,
            "status": "failed",
            "sipStatus": None,
            "reason": "decision_timeout",
        }
        legs = operator_events(wire)
        assert [e.type.value for e in legs][-1] == "leg_ended"
        assert (legs[-1].reason, legs[-1].detail) == ("local_hangup", "decision_timeout")
        waited = at(legs[-1]) - at(legs[2])  # from the answer
        assert DECISION_TIMEOUT_S <= waited < DECISION_TIMEOUT_S + 1.0
        assert status(wire, "REFER") == "failed"

    run(scenario)


def test_an_operator_who_does_not_answer_leaves_the_caller_with_its_agent() -> None:
    """docs/relay.md (Transfers, warm): the operator leg rings at most ``SIPLINE_RING_TIMEOUT_S``,
    then CANCEL (RFC 3261 §9.1): ``leg_ended`` ``timeout``, no operator agent stream, the hold
    music stops, the caller's agent is told ``failed`` 487."""

    async def scenario() -> None:
        agent, operator = Agent(), Agent()
        async with agents_server(agent, operator) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url)))
            scene = Scene(wire, agent, operator, Caller(rtp_port=phone.port))
            await talking(wire, agent, scene.caller, phone)
            wire.transfer(warm_command("BRIDGE"))
            invite = await target_invite(wire)
            wire.send_from(scene.callee.ringing(invite), CALLEE)
            await asyncio.sleep(RING_TIMEOUT_S)
            cancel = await wire.next_sent(lambda m: isinstance(m, Request) and m.method == "CANCEL")
            assert isinstance(cancel, Request)
            wire.send_from(scene.callee.response(cancel, 200, "OK"), CALLEE)
            wire.send_from(scene.callee.response(invite, 487, "Request Terminated"), CALLEE)
            told = await agent.next_event("transfer", timeout_s=10.0)
            wire.send(scene.caller.in_dialog("BYE"))
            await wire.until_done()

        assert not operator.connected.is_set()
        assert (told["transfer"]["status"], told["transfer"]["sipStatus"]) == ("failed", 487)
        legs = operator_events(wire)
        assert [e.type.value for e in legs] == ["invite_sent", "ringing", "leg_ended"]
        assert (legs[-1].reason, legs[-1].detail) == ("timeout", "ring_timeout")
        assert status(wire, "BRIDGE") == "failed"

    run(scenario)


def test_a_caller_who_hangs_up_during_the_briefing_ends_the_operator_leg() -> None:
    """docs/relay.md (Transfers, warm): the call ends first: the operator's agent gets ``stop``,
    the operator leg our BYE (``leg_ended`` ``local_hangup`` ``call_ended``)."""

    async def scenario() -> None:
        agent, operator = Agent(), Agent()
        async with (
            agents_server(agent, operator) as url,
            RtpPeer(1) as phone,
            RtpPeer(2) as operator_phone,
        ):
            wire = TransferWire(answering(accepted(url)))
            scene = Scene(wire, agent, operator, Caller(rtp_port=phone.port))
            invite = await scene.briefed("BRIDGE", phone, operator_phone)
            wire.send(scene.caller.in_dialog("BYE"))
            assert (await operator.next_event("stop"))["event"] == "stop"
            bye = await wire.next_sent(
                lambda m: (
                    isinstance(m, Request) and m.method == "BYE" and m.call_id == invite.call_id
                )
            )
            assert isinstance(bye, Request)
            wire.send_from(scene.callee.response(bye, 200, "OK"), CALLEE)
            await wire.until_done()

        legs = operator_events(wire)
        assert (legs[-1].type, legs[-1].reason, legs[-1].detail) == (
            "leg_ended", "local_hangup", "call_ended"
        )  # fmt: skip
        assert one(wire, CallEventType.LEG_ENDED).reason == "remote_hangup"

    run(scenario)


@pytest.mark.parametrize("who", ["operator", "operator_bot"])
def test_an_operator_or_its_bot_gone_during_the_briefing_ends_the_transfer(who: str) -> None:
    """docs/relay.md (Transfers, warm), step 6: the operator hangs up (its BYE: ``leg_ended``
    ``remote_hangup``, ``operator_hung_up``), or its bot closes its WebSocket without an outcome
    (the relay's BYE, ``operator_agent_left``): the caller's agent is told ``failed`` with that
    reason and carries on."""

    async def scenario() -> None:
        agent, operator = Agent(), Agent()
        async with (
            agents_server(agent, operator) as url,
            RtpPeer(1) as phone,
            RtpPeer(2) as operator_phone,
        ):
            wire = TransferWire(answering(accepted(url)))
            scene = Scene(wire, agent, operator, Caller(rtp_port=phone.port))
            invite = await scene.briefed("BRIDGE", phone, operator_phone)
            await asyncio.sleep(5.0)
            if who == "operator":
                wire.send_from(scene.callee.bye(invite, cseq=2), CALLEE)
                assert (await operator.next_event("stop"))["event"] == "stop"
            else:
                assert operator.connection is not None
                await operator.connection.close()
                bye = await wire.next_sent(
                    lambda m: (
                        isinstance(m, Request) and m.method == "BYE" and m.call_id == invite.call_id
                    )
                )
                assert isinstance(bye, Request)
                wire.send_from(scene.callee.response(bye, 200, "OK"), CALLEE)
            told = await agent.next_event("transfer")
            await asyncio.sleep(2.0)
            assert not wire.task.done()  # type: ignore[union-attr]
            wire.send(scene.caller.in_dialog("BYE"))
            await wire.until_done()

        why = "operator_hung_up" if who == "operator" else "operator_agent_left"
        assert told["transfer"] == {
            "transferId": TRANSFER_ID, "status": "failed", "sipStatus": None, "reason": why
        }  # fmt: skip
        legs = operator_events(wire)
        expected = ("remote_hangup", "bye") if who == "operator" else ("local_hangup", why)
        assert (legs[-1].type, legs[-1].reason, legs[-1].detail) == ("leg_ended", *expected)
        assert status(wire, "BRIDGE") == "failed"

    run(scenario)
