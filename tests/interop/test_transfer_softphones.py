"""Cold transfers with real softphones and Kamailio: the relay's transfers against software we
did not write (issue 11). The peers' behaviour, proven without the relay in
test_transfer_peers.py and test_kamailio_proxy.py, is the expected value; the transfer is asked
through the API as a bot asks it (test_transfer_sipp.py's helpers), so the command reaches the
relay process on its queue.

- baresip calls an agent and is REFERred to an operator (linphone, auto-answer) behind
  Kamailio: it follows the REFER, reports the answer (NOTIFY ``SIP/2.0 200 OK``), and sends no
  BYE (tests/interop/baresip.py), so the relay ends the old dialog with its own BYE once its
  bound (``REFERRED_BYE_S``) has passed; the call reads ``transferred`` / ``REFERRED`` and
  the SIP clock stopped at ``refer_succeeded`` (docs/billing.md rule 3).
- the same, to a user the proxy refuses (404): baresip's final NOTIFY carries the 404, the
  transfer fails with it and the caller stays with the agent (docs/agents.md).
- linphone calls an agent and is REFERred with ``extraHeaders``: it holds the old call
  (re-INVITE ``a=sendonly``, which the relay answers mid-transfer), makes the Refer-To's embedded
  ``X-Case`` a real header of its INVITE (``uas_refer_target_headers.xml`` checks it with a
  regexp), and ends its subscription with ``terminated;reason=reason=noresource`` (sic), which
  the relay takes as the end it is.
- a bridged cold transfer (``sipVerb: INVITE``) to a baresip operator behind Kamailio that
  challenges (407) for the tool's ``username``/``password``: the relay authenticates, the operator
  answers, and RTP flows both ways through the relay's bridge (seen on ``lo``,
  ``loopback_capture.py``: the operator's 440 Hz sine reaches the caller and the caller's
  reaches the operator, PCMU on both legs); the agent left, both legs billed (rules 2 and 5).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.billing import bill
from chalicelib.contracts import CallEvent, CallEventType, LegEndReason, LegRole
from tests.interop.agent_server import AgentServer
from tests.interop.baresip import Baresip
from tests.interop.kamailio import TRUNK_PASSWORD, TRUNK_USER, KamailioProxy
from tests.interop.linphone import Linphonec
from tests.interop.loopback_capture import LoopbackCapture
from tests.interop.pulseaudio import PulseAudio
from tests.interop.sipp_uas import SippUas
from tests.interop.stack import InteropStack
from tests.interop.test_transfer_sipp import (
    ask_transfer,
    first,
    joined_call,
    rounded_up,
    stored_events,
    transfer_agent,
    transfers,
)
from tests.interop.tone import dominant_frequency, ulaw_samples

pytestmark = pytest.mark.interop

BARESIP_HZ = 440  # tests/interop/baresip.py: ausine's frequency
PCMU_ONLY = ";answermode=auto;audio_codecs=PCMU/8000/1"
PACKETS = 100
"""RTP packets (2 s of 20 ms PCMU) each softphone must receive through the bridge."""
ENDED_S = 40.0
"""Bound on the call's end: the transfer, then the relay's wait for a BYE (REFERRED_BYE_S)."""


@pytest.fixture
def pulse(tmp_path: Path) -> Iterator[PulseAudio]:
    with PulseAudio(tmp_path / "pulse") as audio:
        yield audio


def _ports(phone: Baresip) -> range:
    low, high = phone.rtp_ports
    return range(low, high + 1)


def _bridged(stack: InteropStack, call_id: str) -> bool:
    return [t["status"] for t in transfers(stack, call_id)] == ["bridged"]


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        time.sleep(0.1)


def _wait_rtp(capture: LoopbackCapture, sides: list[range], count: int) -> None:
    """Wait (bounded) until each side's ports received ``count`` datagrams."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        got = [sum(len(capture.payloads(port)) for port in side) for side in sides]
        if min(got) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"RTP datagrams per side {got}, wanted {count} each")


def leg_ended_events(stack: InteropStack, call_id: str) -> list[CallEvent]:
    """The call's stored events once its caller leg's ``leg_ended`` is among them (bounded): the
    call reads ended at ``refer_succeeded``, the dialog's end comes later, through the queue."""
    deadline = time.monotonic() + ENDED_S
    while True:
        events = stored_events(stack, call_id)
        done = [e for e in events if e.type is CallEventType.LEG_ENDED]
        if done or time.monotonic() > deadline:
            assert done, [(e.type.value, e.leg_role.value, e.reason) for e in events]
            return events
        time.sleep(0.2)


def ended_call(stack: InteropStack, agent_id: str) -> dict[str, Any]:
    [ended] = stack.wait_for_call(agent_id, timeout_s=ENDED_S)
    return ended


def assert_referred(stack: InteropStack, agent_id: str, call_id: str, log: str) -> None:
    """docs/billing.md's REFER row: ``transferred`` / ``REFERRED``, transfer ``referred`` 200,
    the SIP clock stopped at ``refer_succeeded`` (rule 3) though the dialog ended later."""
    ended = ended_call(stack, agent_id)
    assert (ended["endReason"], ended["sipDetails"]["terminationReason"]) == (
        "transferred", "SIP_TERMINATION_REFERRED"
    ), log  # fmt: skip
    [transfer] = transfers(stack, call_id)
    assert (transfer["status"], transfer["sipStatus"], transfer["method"]) == (
        "referred", 200, "REFER"
    )  # fmt: skip
    events = leg_ended_events(stack, call_id)
    answered = first(events, CallEventType.ANSWERED)
    succeeded = first(events, CallEventType.REFER_SUCCEEDED)
    [leg_ended] = [e for e in events if e.type is CallEventType.LEG_ENDED]
    assert leg_ended.occurred_at.timestamp() > succeeded
    # neither softphone hangs up after a transfer: the relay's BYE ended the old dialog
    assert (leg_ended.reason, leg_ended.detail) == (LegEndReason.REFERRED, "bye_sent"), log
    assert abs(bill(events).sip_seconds - (succeeded - answered)) < 1e-3
    assert ended["sipDetails"]["billedDuration"] == f"{rounded_up(succeeded - answered)}s"


def test_baresip_follows_the_relays_refer_to_linphone_behind_kamailio(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path, pulse: PulseAudio
) -> None:
    with (
        Linphonec(
            tmp_path / "operator", None, auto_answer=True, pulse=pulse, lifetime_s=90
        ) as operator,
        KamailioProxy(tmp_path / "proxy", operator_port=operator.sip_port) as proxy,
        Baresip(tmp_path / "caller", lifetime_s=90) as caller,
    ):
        agent_id, service, name = transfer_agent(
            stack, agent_server, {"target": proxy.operator_uri, "sipVerb": "REFER"}
        )
        caller.dial(f"sip:{service}@127.0.0.1:{stack.sip_port}")
        call = joined_call(stack, agent_id)
        ask_transfer(stack, call["callId"])
        transfer = caller.wait_event("TRANSFER", timeout_s=15)
        operator.wait_state("StreamsRunning", timeout_s=15)  # the operator took the call
        relay_bye = caller.wait_event("CALL_CLOSED", timeout_s=ENDED_S)  # the old call
        proxy_log = proxy.log
        log = f"--- baresip ---\n{caller.log[-3000:]}\n--- relay ---\n{stack.relay_log()[-4000:]}"
        assert_referred(stack, agent_id, call["callId"], log)

    assert transfer["param"] == f"<{proxy.operator_uri}>"
    assert "proxy: INVITE" in proxy_log and "to the operator" in proxy_log
    assert relay_bye["param"] == "Connection reset by peer", relay_bye  # a BYE baresip got
    [session] = agent_server.sessions(name)
    assert [t["status"] for t in session.transfers] == ["referred"]
    assert session.events[-1] == "stop"


def test_baresip_reports_kamailios_refusal_and_stays_with_the_agent(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path
) -> None:
    """The proxy knows no ``nobody`` (404): baresip's final NOTIFY carries the 404, the transfer
    fails with it, the agent is told and keeps the caller, whose hang-up ends the call as any."""
    with (
        KamailioProxy(tmp_path / "proxy", operator_port=9) as proxy,  # no operator is reached
        Baresip(tmp_path / "caller", lifetime_s=60) as caller,
    ):
        agent_id, service, name = transfer_agent(
            stack, agent_server, {"target": proxy.uri("nobody"), "sipVerb": "REFER"}
        )
        caller.dial(f"sip:{service}@127.0.0.1:{stack.sip_port}")
        call = joined_call(stack, agent_id)
        ask_transfer(stack, call["callId"])
        caller.wait_event("TRANSFER", timeout_s=15)
        [session] = agent_server.wait_sessions(name)
        _wait(lambda: bool(session.transfers), "the agent told of the transfer's end")
        told = len(session.events)
        _wait(lambda: "media" in session.events[told:], "the caller still heard by the agent")
        caller.hang_up()
        caller.wait_event("CALL_CLOSED")
        proxy_log = proxy.log

    assert "no such user" in proxy_log
    assert [(t["status"], t["sipStatus"]) for t in session.transfers] == [("failed", 404)]
    ended = ended_call(stack, agent_id)
    assert (ended["endReason"], ended["sipDetails"]["terminationReason"]) == (
        "hangup", "SIP_TERMINATION_NORMAL"
    )  # fmt: skip
    [transfer] = transfers(stack, call["callId"])
    assert (transfer["status"], transfer["sipStatus"]) == ("failed", 404)


def test_linphone_follows_a_refer_carrying_x_headers(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path, pulse: PulseAudio
) -> None:
    with SippUas(
        "uas_refer_target_headers", tmp_path / "target", hangup_after_ms=1000, timeout_s=60
    ) as target:
        agent_id, service, _ = transfer_agent(
            stack,
            agent_server,
            {"target": target.uri("desk"), "sipVerb": "REFER", "extraHeaders": {"X-Case": "42"}},
        )
        with Linphonec(
            tmp_path / "caller",
            f"sip:{service}@127.0.0.1:{stack.sip_port}",
            pulse=pulse,
            lifetime_s=90,
        ) as caller:
            call = joined_call(stack, agent_id)
            ask_transfer(stack, call["callId"])
            run = target.wait(timeout_s=30)
            assert run.returncode == 0, f"{run.explain()}\n--- linphone ---\n{caller.log[-4000:]}"
            log = f"--- linphone ---\n{caller.log[-4000:]}\n--- relay ---\n"
            assert_referred(stack, agent_id, call["callId"], log + stack.relay_log()[-4000:])
            states = caller.states()

    [invite] = target.received("INVITE")
    assert invite.request_uri == target.uri("desk")  # the header left the URI ...
    assert invite.header("X-Case") == "42"  # ... for the INVITE's header fields
    assert "Paused" in states  # linphone held the old call, which the relay's BYE ended


def test_a_bridged_transfer_to_baresip_behind_an_authenticating_kamailio(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path
) -> None:
    with (
        Baresip(tmp_path / "operator", account_params=PCMU_ONLY, lifetime_s=90) as operator,
        KamailioProxy(
            tmp_path / "proxy", operator_port=operator.sip_port, operator_user="bob", auth=True
        ) as proxy,
        Baresip(tmp_path / "caller", account_params=";audio_codecs=PCMU/8000/1") as caller,
    ):
        agent_id, service, name = transfer_agent(
            stack,
            agent_server,
            {"target": proxy.operator_uri, "sipVerb": "INVITE", "holdMusicUrl": None,
             "username": TRUNK_USER, "password": TRUNK_PASSWORD},
        )  # fmt: skip
        caller.dial(f"sip:{service}@127.0.0.1:{stack.sip_port}")
        call = joined_call(stack, agent_id)
        ask_transfer(stack, call["callId"])
        operator.wait_event("CALL_ESTABLISHED", timeout_s=15)
        stack.wait_for_call(agent_id, lambda c: _bridged(stack, c["callId"]), timeout_s=15)
        # From here on the agent is gone and no hold music plays: what reaches each
        # softphone's RTP ports is the other one's audio, through the bridge.
        with LoopbackCapture(*_ports(caller), *_ports(operator)) as capture:
            _wait_rtp(capture, [_ports(caller), _ports(operator)], PACKETS)
        caller.hang_up()
        caller.wait_event("CALL_CLOSED")
        operator.wait_event("CALL_CLOSED", timeout_s=10)  # the relay's BYE on the other leg
        proxy_log = proxy.log

    assert "proxy: INVITE" in proxy_log and "rejected" not in proxy_log
    assert TRUNK_PASSWORD not in stack.relay_log()  # docs/security.md: never in a log
    for phone in (caller, operator):
        heard = b"".join(p[12:] for port in _ports(phone) for p in capture.payloads(port))
        assert len(heard) >= 8000, f"{len(heard)} bytes of RTP reached {phone.directory.name}"
        assert abs(dominant_frequency(ulaw_samples(heard), 8000) - BARESIP_HZ) < 5

    ended = ended_call(stack, agent_id)
    assert (ended["endReason"], ended["sipDetails"]["terminationReason"]) == (
        "transferred", "SIP_TERMINATION_NORMAL"
    )  # fmt: skip
    [transfer] = transfers(stack, call["callId"])
    assert (transfer["status"], transfer["method"]) == ("bridged", "INVITE")
    [session] = agent_server.sessions(name)
    assert [t["status"] for t in session.transfers] == ["bridged"]
    events = stored_events(stack, call["callId"])
    target_leg = LegRole.TRANSFER_TARGET
    left = first(events, CallEventType.AGENT_LEFT)
    caller_end = first(events, CallEventType.LEG_ENDED)
    target_end = first(events, CallEventType.LEG_ENDED, role=target_leg)
    assert caller_end > left and target_end > left  # both legs outlived the agent
    expected = (caller_end - first(events, CallEventType.ANSWERED)) + (
        target_end - first(events, CallEventType.INVITE_SENT, role=target_leg)
    )
    assert abs(bill(events).sip_seconds - expected) < 1e-3
