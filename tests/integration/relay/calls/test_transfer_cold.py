"""Cold transfers of an answered incoming call (``relay/calls/transfer_cold.py``), in-process.

The real SIP endpoint is fed the caller's and the target's literal messages; the agent is a
WebSocket server on 127.0.0.1; the clock simulated (``transferring.py``). Expected values come
from RFC 3515 / RFC 5589 §6.1 (the REFER call flow: 202, NOTIFY sipfrag, the transferee's BYE),
RFC 3261 §19.1.1 (headers embedded in the Refer-To URI, escaped), docs/relay.md (Transfers),
docs/agents.md (the ``transfer`` message) and docs/billing.md's rules 2, 3 and 5, applied by
``chalicelib/billing.py`` to what the flow recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from chalicelib.billing import DECIMINUTE_S, bill
from chalicelib.contracts import CallEvent, CallEventType
from relay.sip.syntax.message import Request, Response
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.calls.dialing import CALLEE, Callee
from tests.integration.relay.calls.harness import Caller
from tests.integration.relay.calls.test_incoming import accepted, answered_call, answering
from tests.integration.relay.calls.transferring import (
    NOTIFY_TIMEOUT_S,
    RING_TIMEOUT_S,
    T0,
    TRANSFER_ID,
    RtpPeer,
    TransferWire,
    notify,
    reply,
    sdp_port,
    transfer_command,
)
from tests.support.virtual_time import run_in_virtual_time

TALK_S = 40.0
"""How long the agent talks with the caller before the transfer (docs/billing.md's REFER row)."""


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    run_in_virtual_time(scenario, timeout_s=300.0)


def at(event: CallEvent) -> float:
    return (event.occurred_at - T0).total_seconds()


def one(wire: TransferWire, kind: CallEventType, role: str = "caller") -> CallEvent:
    [found] = [e for e in wire.events if e.type is kind and e.leg_role == role]
    return found


def sounding(datagrams: list[bytes]) -> int:
    """RTP packets whose PCMU payload is not silence (0xFF or 0x7F: ±0, RFC 3551 §4.5.14)."""
    return sum(1 for data in datagrams if data[12:].strip(b"\xff\x7f"))


def rounded_up(seconds: float) -> int:
    """docs/billing.md rule 8: up to whole deciminutes."""
    tenths = -(-round(seconds * 1_000_000) // (DECIMINUTE_S * 1_000_000))
    return int(tenths * DECIMINUTE_S)


async def refer_of(wire: TransferWire, after: int) -> Request:
    found = await wire.next_sent(lambda m: isinstance(m, Request) and m.method == "REFER", after)
    assert isinstance(found, Request)
    return found


async def response_to(wire: TransferWire, method: str, after: int) -> Response:
    found = await wire.next_sent(
        lambda m: isinstance(m, Response) and m.cseq.method == method, after
    )
    assert isinstance(found, Response)
    return found


async def talking(wire: TransferWire, agent: Agent, caller: Caller, phone: RtpPeer) -> None:
    """Answer the call; the caller's phone then sends RTP (so the media never times out)."""
    final, _ = await answered_call(wire, agent, caller)
    phone.talk(sdp_port(final.body))


# --- REFER ----------------------------------------------------------------------------------


def test_a_refer_that_succeeds_hands_the_caller_on_and_stops_the_sip_clock() -> None:
    """RFC 5589 §6.1: REFER, 202 Accepted, NOTIFY ``SIP/2.0 200 OK`` (answered 200), then the
    transferee's BYE. docs/relay.md (Transfers): ``refer_sent``, ``refer_accepted`` 202,
    ``refer_succeeded`` 200, the agent told ``referred`` then ``stop``, ``agent_left``
    ``transferred``, ``leg_ended`` ``referred``. RFC 3261 §19.1.1: ``referHeaders`` ride in the
    Refer-To URI, escaped. docs/billing.md rule 3: the SIP clock stops at ``refer_succeeded``."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url)))
            caller = Caller(rtp_port=phone.port)
            await talking(wire, agent, caller, phone)
            await asyncio.sleep(TALK_S)
            mark = len(wire.sent)
            wire.transfer(transfer_command("REFER"))
            refer = await refer_of(wire, mark)
            wire.send(reply(refer, 202, "Accepted"))
            await asyncio.sleep(6.0)  # the transferee's INVITE to the target rings
            wire.send(notify(caller, refer, "SIP/2.0 200 OK", terminated=True))
            assert (await response_to(wire, "NOTIFY", mark)).status == 200
            told = await agent.next_event("transfer")
            assert (await agent.next_event("stop"))["event"] == "stop"
            await asyncio.sleep(0.2)
            wire.send(caller.in_dialog("BYE"))  # RFC 5589 §6.1: the transferee ends it
            assert (await response_to(wire, "BYE", mark)).status == 200
            await wire.until_done()

        assert refer.headers.get("Refer-To") == (
            f"<sip:+15550100@127.0.0.1:{CALLEE.port}?X-Case=42%20%26%20urgent>"
        )
        assert refer.headers.get("Event") is None  # RFC 3515: REFER has no Event header
        assert told["transfer"] == {
            "transferId": TRANSFER_ID, "status": "referred", "sipStatus": None, "reason": None
        }  # fmt: skip
        assert wire.kinds()[4:] == [
            "refer_sent", "refer_accepted", "refer_succeeded", "agent_left", "leg_ended"
        ]  # fmt: skip
        accepted_, succeeded = wire.events[5], wire.events[6]
        assert (accepted_.sip_status, succeeded.sip_status) == (202, 200)
        assert all(e.transfer_id == TRANSFER_ID for e in wire.events[4:7])
        assert (wire.events[7].detail, wire.events[8].reason) == ("transferred", "referred")

        answered = one(wire, CallEventType.ANSWERED)
        billed = bill(wire.events)
        assert billed.sip_seconds == at(succeeded) - at(answered)  # not to the BYE
        assert at(wire.events[8]) > at(succeeded)
        assert billed.billed_sip_seconds == rounded_up(at(succeeded) - at(answered))

    run(scenario)


def test_a_referred_caller_that_does_not_hang_up_gets_our_bye() -> None:
    """RFC 5589 §6.1: the transferee ends the dialog with us; docs/relay.md: when it has not
    within ``REFERRED_BYE_S`` the relay sends BYE (``leg_ended`` ``referred``, ``bye_sent``)."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url)))
            caller = Caller(rtp_port=phone.port)
            await talking(wire, agent, caller, phone)
            mark = len(wire.sent)
            wire.transfer(transfer_command("REFER"))
            refer = await refer_of(wire, mark)
            wire.send(reply(refer, 202, "Accepted"))
            wire.send(notify(caller, refer, "SIP/2.0 200 OK", terminated=True))
            bye = await wire.next_sent(lambda m: isinstance(m, Request) and m.method == "BYE")
            assert isinstance(bye, Request)
            wire.send(Caller.ok(bye))
            await wire.until_done()
        ended = wire.events[-1]
        assert (ended.type, ended.reason, ended.detail) == ("leg_ended", "referred", "bye_sent")

    run(scenario)


def test_a_refer_whose_notify_says_603_leaves_the_caller_with_the_agent() -> None:
    """RFC 3515 §2.4.5: a failure sipfrag ends the transfer; docs/relay.md: ``refer_failed``
    603, the caller stays with the agent, which gets ``transfer`` ``failed`` 603
    (docs/agents.md); the call then ends as any call (the caller's BYE)."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url)))
            caller = Caller(rtp_port=phone.port)
            await talking(wire, agent, caller, phone)
            mark = len(wire.sent)
            wire.transfer(transfer_command("REFER"))
            refer = await refer_of(wire, mark)
            wire.send(reply(refer, 202, "Accepted"))
            wire.send(notify(caller, refer, "SIP/2.0 100 Trying", terminated=False))
            wire.send(notify(caller, refer, "SIP/2.0 603 Declined", terminated=True))
            told = await agent.next_event("transfer")
            await asyncio.sleep(5.0)  # the call goes on
            assert not wire.task.done()  # type: ignore[union-attr]
            wire.send(caller.in_dialog("BYE"))
            await wire.until_done()
            assert (await agent.next_event("stop"))["event"] == "stop"

        assert told["transfer"] == {
            "transferId": TRANSFER_ID, "status": "failed", "sipStatus": 603, "reason": "Declined"
        }  # fmt: skip
        assert wire.kinds()[4:] == [
            "refer_sent", "refer_accepted", "refer_failed", "agent_left", "leg_ended"
        ]  # fmt: skip
        failed = wire.events[6]
        assert (failed.sip_status, failed.transfer_id) == (603, TRANSFER_ID)
        assert (wire.events[7].detail, wire.events[8].reason) == ("caller_hung_up", "remote_hangup")

    run(scenario)


def test_a_refused_refer_and_a_missing_notify_both_fail_the_transfer() -> None:
    """RFC 3515 §2.4.2: a REFER answered 405 failed (``refer_failed`` 405); T1's bound: no
    final NOTIFY within ``notify_timeout_s`` fails with 408 (docs/relay.md, REFER). The
    second transfer of the same call runs once the first has failed."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url)))
            caller = Caller(rtp_port=phone.port)
            await talking(wire, agent, caller, phone)
            mark = len(wire.sent)
            wire.transfer(transfer_command("REFER"))
            refer = await refer_of(wire, mark)
            wire.send(reply(refer, 405, "Method Not Allowed"))
            first = await agent.next_event("transfer")
            mark = len(wire.sent)
            second_id = TRANSFER_ID.replace("0001", "0002")
            wire.transfer(transfer_command("REFER", transferId=second_id))
            refer = await refer_of(wire, mark)
            wire.send(reply(refer, 202, "Accepted"))
            second = await agent.next_event("transfer", timeout_s=NOTIFY_TIMEOUT_S + 5)
            wire.send(caller.in_dialog("BYE"))
            await wire.until_done()

        assert (first["transfer"]["status"], first["transfer"]["sipStatus"]) == ("failed", 405)
        assert second["transfer"]["transferId"] == second_id
        assert (second["transfer"]["status"], second["transfer"]["sipStatus"]) == ("failed", 408)
        failures = [e for e in wire.events if e.type is CallEventType.REFER_FAILED]
        assert [(e.transfer_id, e.sip_status) for e in failures] == [
            (TRANSFER_ID, 405), (second_id, 408)
        ]  # fmt: skip
        sent, failed = one_of(wire, second_id)
        assert at(failed) - at(sent) == NOTIFY_TIMEOUT_S

    run(scenario)


def one_of(wire: TransferWire, transfer_id: str) -> tuple[CallEvent, CallEvent]:
    mine = [e for e in wire.events if e.transfer_id == transfer_id]
    sent = next(e for e in mine if e.type is CallEventType.REFER_SENT)
    failed = next(e for e in mine if e.type is CallEventType.REFER_FAILED)
    return sent, failed


def test_a_redelivered_transfer_command_runs_once() -> None:
    """SQS delivers at least once (docs/relay.md, Commands): the same ``transferId`` twice sends
    one REFER."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url)))
            caller = Caller(rtp_port=phone.port)
            await talking(wire, agent, caller, phone)
            mark = len(wire.sent)
            wire.transfer(transfer_command("REFER"))
            refer = await refer_of(wire, mark)
            wire.send(reply(refer, 603, "Decline"))
            await agent.next_event("transfer")
            wire.transfer(transfer_command("REFER"))
            await asyncio.sleep(2.0)
            wire.send(caller.in_dialog("BYE"))
            await wire.until_done()
        refers = [m for m in wire.sent if isinstance(m, Request) and m.method == "REFER"]
        assert len(refers) == 1

    run(scenario)


# --- INVITE (bridged) -----------------------------------------------------------------------


async def target_invite(wire: TransferWire) -> Request:
    found = await wire.next_sent(
        lambda m: isinstance(m, Request) and m.method == "INVITE" and "+15550100" in str(m.uri)
    )
    assert isinstance(found, Request)
    return found


def test_a_bridged_transfer_joins_the_legs_and_both_bill_until_each_ends() -> None:
    """docs/relay.md (Transfers, INVITE): the target is called (``invite_sent`` role
    ``transfer_target`` with ``transferId``, the command's ``inviteHeaders``), rings, answers;
    the agent is told ``bridged`` and stopped; ``bridged``, ``agent_left`` ``transferred``; the
    target's BYE ends the caller's leg with our BYE. docs/billing.md rules 2 and 5: two legs
    bill double while both are up, and keep billing after the agent left."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone, RtpPeer(2) as target_phone:
            wire = TransferWire(answering(accepted(url)))
            caller = Caller(rtp_port=phone.port)
            callee = Callee(rtp_port=target_phone.port, port=CALLEE.port)
            await talking(wire, agent, caller, phone)
            await asyncio.sleep(30.0)
            wire.transfer(transfer_command("INVITE"))
            invite = await target_invite(wire)
            await asyncio.sleep(0.5)
            wire.send_from(callee.ringing(invite), CALLEE)
            await asyncio.sleep(7.5)
            wire.send_from(callee.answer(invite), CALLEE)
            target_phone.talk(sdp_port(invite.body))
            told = await agent.next_event("transfer")
            assert (await agent.next_event("stop"))["event"] == "stop"
            await asyncio.sleep(120.0)  # the caller and the target talk, bridged
            wire.send_from(callee.bye(invite, cseq=2), CALLEE)
            bye = await wire.next_sent(
                lambda m: (
                    isinstance(m, Request) and m.method == "BYE" and m.call_id != invite.call_id
                )
            )
            assert isinstance(bye, Request)
            wire.send(Caller.ok(bye))
            await wire.until_done()

            heard = target_phone.heard(), phone.heard()
        assert heard[0] > 100 and heard[1] > 100  # the bridge: each heard the other's packets
        assert invite.headers.get("X-Case") == "42"
        assert told["transfer"] == {
            "transferId": TRANSFER_ID, "status": "bridged", "sipStatus": None, "reason": None
        }  # fmt: skip
        target = [e for e in wire.events if e.leg_role == "transfer_target"]
        assert [e.type.value for e in target] == [
            "invite_sent", "ringing", "answered", "bridged", "leg_ended"
        ]  # fmt: skip
        assert all(e.transfer_id == TRANSFER_ID for e in target)
        assert (target[-1].reason, target[-1].detail) == ("remote_hangup", "bye")
        left = one(wire, CallEventType.AGENT_LEFT)
        assert left.detail == "transferred"
        caller_end = one(wire, CallEventType.LEG_ENDED)
        assert (caller_end.reason, caller_end.detail) == ("local_hangup", "bridged_leg_ended")

        answered = one(wire, CallEventType.ANSWERED)
        sent, ended = target[0], target[-1]
        billed = bill(wire.events)
        expected = (at(caller_end) - at(answered)) + (at(ended) - at(sent))  # rules 1, 2, 5
        assert abs(billed.sip_seconds - expected) < 1e-6
        both = bill(wire.events, until=T0 + timedelta(seconds=at(left) + 100))
        one_leg = bill(wire.events, until=T0 + timedelta(seconds=at(left) + 50))
        assert abs((both.sip_seconds - one_leg.sip_seconds) - 100.0) < 1e-6  # double rate
        joined = one(wire, CallEventType.AGENT_JOINED)
        assert abs(billed.call_seconds - (at(left) - at(joined))) < 1e-6

    run(scenario)


def test_a_bridged_transfer_the_target_refuses_returns_the_caller_to_the_agent() -> None:
    """docs/relay.md (Transfers, INVITE): the caller hears hold music while the target rings; a
    486 from the target ends its leg (``leg_ended`` ``rejected`` 486), the hold music stops, the
    agent is told ``failed`` 486 and carries on."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url)))
            caller = Caller(rtp_port=phone.port)
            callee = Callee(port=CALLEE.port)
            await talking(wire, agent, caller, phone)
            await asyncio.sleep(2.0)
            before = sounding(phone.received)  # the agent (the test's) says nothing: silence
            wire.transfer(transfer_command("INVITE"))
            invite = await target_invite(wire)
            await asyncio.sleep(2.0)
            ringing = len(phone.received)
            held = sounding(phone.received)
            wire.send_from(callee.response(invite, 486, "Busy Here"), CALLEE)
            told = await agent.next_event("transfer")
            await asyncio.sleep(0.1)
            back = len(phone.received)
            await asyncio.sleep(5.0)
            assert not wire.task.done()  # type: ignore[union-attr]
            assert before == 0 and held >= 50  # the hold music while the target rang (2 s)
            assert sounding(phone.received[back:]) == 0  # and none once the agent is back
            assert ringing < back
            wire.send(caller.in_dialog("BYE"))
            await wire.until_done()

        assert told["transfer"] == {
            "transferId": TRANSFER_ID, "status": "failed", "sipStatus": 486, "reason": "rejected"
        }  # fmt: skip
        target = [e for e in wire.events if e.leg_role == "transfer_target"]
        assert [(e.type.value, e.reason, e.sip_status) for e in target] == [
            ("invite_sent", None, None), ("leg_ended", "rejected", 486)
        ]  # fmt: skip
        assert one(wire, CallEventType.AGENT_LEFT).detail == "caller_hung_up"

    run(scenario)


def test_an_unanswered_target_is_cancelled_at_the_ring_timeout() -> None:
    """docs/relay.md (Transfers): the second leg rings at most ``SIPLINE_RING_TIMEOUT_S``, then
    CANCEL (RFC 3261 §9.1); ``leg_ended`` ``timeout``; the agent is told ``failed``."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url)))
            caller = Caller(rtp_port=phone.port)
            callee = Callee(port=CALLEE.port)
            await talking(wire, agent, caller, phone)
            wire.transfer(transfer_command("INVITE"))
            invite = await target_invite(wire)
            wire.send_from(callee.ringing(invite), CALLEE)
            await asyncio.sleep(RING_TIMEOUT_S)
            cancel = await wire.next_sent(lambda m: isinstance(m, Request) and m.method == "CANCEL")
            assert isinstance(cancel, Request)
            wire.send_from(callee.response(cancel, 200, "OK"), CALLEE)
            wire.send_from(callee.response(invite, 487, "Request Terminated"), CALLEE)
            told = await agent.next_event("transfer", timeout_s=10.0)
            wire.send(caller.in_dialog("BYE"))
            await wire.until_done()

        assert (told["transfer"]["status"], told["transfer"]["sipStatus"]) == ("failed", 487)
        target = [e for e in wire.events if e.leg_role == "transfer_target"]
        assert [e.type.value for e in target] == ["invite_sent", "ringing", "leg_ended"]
        assert (target[-1].reason, target[-1].detail) == ("timeout", "ring_timeout")

    run(scenario)


def test_a_caller_who_hangs_up_while_the_target_rings_cancels_it() -> None:
    """docs/relay.md (Transfers): the call ends with a transfer under way: the ringing target is
    cancelled (``leg_ended`` ``local_hangup`` 487), the caller's leg ends as usual."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, RtpPeer(1) as phone:
            wire = TransferWire(answering(accepted(url)))
            caller = Caller(rtp_port=phone.port)
            callee = Callee(port=CALLEE.port)
            await talking(wire, agent, caller, phone)
            wire.transfer(transfer_command("INVITE"))
            invite = await target_invite(wire)
            wire.send_from(callee.ringing(invite), CALLEE)
            wire.send(caller.in_dialog("BYE"))
            cancel = await wire.next_sent(lambda m: isinstance(m, Request) and m.method == "CANCEL")
            assert isinstance(cancel, Request)
            wire.send_from(callee.response(cancel, 200, "OK"), CALLEE)
            wire.send_from(callee.response(invite, 487, "Request Terminated"), CALLEE)
            await wire.until_done()

        target = [e for e in wire.events if e.leg_role == "transfer_target"]
        assert [(e.type.value, e.reason, e.sip_status) for e in target] == [
            ("invite_sent", None, None), ("ringing", None, 180), ("leg_ended", "local_hangup", 487)
        ]  # fmt: skip
        assert one(wire, CallEventType.LEG_ENDED).reason == "remote_hangup"

    run(scenario)
