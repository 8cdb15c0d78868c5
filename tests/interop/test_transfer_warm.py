"""Warm transfers through the whole system: SIPp and linphone peers, the relay process, the API.

The transfer is asked as a bot asks it (docs/agents.md, Warm transfers):
``POST /api/calls/{callId}/transfers`` with the agent's ``warmTransfer`` tool and a ``context``;
the relay calls the operator (a SIPp UAS that answers and echoes RTP), opens a second WebSocket
to the agent server for the operator leg, and the test, as that leg's bot, reports the outcome
with ``POST /api/calls/{callId}/transfers/{transferId}/outcome``. Expected values come from
docs/agents.md (the operator leg's ``start.customParameters``), docs/api.md (the Transfer's
``briefing`` then ``bridged``/``declined``), docs/billing.md (rules 2 and 5; a bridged warm
transfer reads ``transferred`` / ``NORMAL``) and the SIPp scenarios' comments (rc != 0 when the
relay does otherwise). The attended transfer by REFER is proven with linphone 5.1 on both ends
(tests/interop/test_transfer_peers.py shows each on its own): the caller follows the relay's
REFER, calling the operator with the ``Replaces`` it carried (RFC 3891 §6.1, RFC 5589 §7), and
the operator swaps the relay's leg for the caller's call.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from chalicelib.billing import bill
from chalicelib.contracts import CallEvent, CallEventType, LegRole
from tests.interop.agent_server import AgentServer
from tests.interop.linphone import Linphonec
from tests.interop.loopback_capture import LoopbackCapture
from tests.interop.pulseaudio import PulseAudio
from tests.interop.sipp import SippRun, run_sipp, scenario
from tests.interop.sipp_uas import SippUas, write_tone
from tests.interop.stack import InteropStack
from tests.interop.test_transfer_sipp import (
    CALLER_TONE_HZ,
    first,
    joined_call,
    pool,
    stored_events,
    transfers,
)
from tests.interop.tone import dominant_frequency, ulaw_samples
from tests.interop.transfer_peers import answered_dialog

pytestmark = pytest.mark.interop
__all__ = ["pool"]  # the fixture, imported to be used here

TEMPLATE = "You are briefing an operator. {context}"
CONTEXT = "Bob wants to change his delivery address."


def warm_agent(
    stack: InteropStack, agent_server: AgentServer, target: str, name: str, method: str
) -> tuple[str, str]:
    """An agent with a ``warmTransfer`` tool to ``target``; its id and To user."""
    service = f"interop_{name.replace('-', '_')}"
    tool = {
        "toolName": "warmTransfer",
        "parameterOverrides": {
            "target": target,
            "transferType": method,
            "transferSystemPromptTemplate": TEMPLATE,
        },
    }
    agent_id = stack.add_agent(name, f"^{service}$", agent_server.url(name), selectedTools=[tool])
    return agent_id, service


def ask_warm(stack: InteropStack, call_id: str) -> str:
    """What the bot's tool handler sends (docs/agents.md): the tool and the context."""
    asked = stack.api(
        "POST", f"/api/calls/{call_id}/transfers", {"toolName": "warmTransfer", "context": CONTEXT}
    )
    assert asked.status_code == 201, asked.text
    transfer_id: str = asked.json()["transferId"]
    return transfer_id


def report(stack: InteropStack, call_id: str, transfer_id: str, outcome: dict[str, Any]) -> None:
    """What the operator leg's bot sends (docs/agents.md, Warm transfers: the outcome)."""
    path = f"/api/calls/{call_id}/transfers/{transfer_id}/outcome"
    reported = stack.api("POST", path, outcome)
    assert reported.status_code == 200, reported.text


def until_status(stack: InteropStack, call_id: str, wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        [transfer] = transfers(stack, call_id)
        if transfer["status"] == wanted:
            return transfer
        time.sleep(0.1)
    raise AssertionError(f"transfer never read {wanted!r}: {transfers(stack, call_id)}")


@pytest.mark.parametrize("accepted", [True, False], ids=["accepted", "declined"])
def test_a_warm_transfer_briefs_the_operator_then_bridges_or_returns(
    stack: InteropStack,
    agent_server: AgentServer,
    tmp_path: Path,
    pool: ThreadPoolExecutor,
    accepted: bool,
) -> None:
    """The operator (SIPp ``uas_answer``, echoing RTP) answers; a second WebSocket to the agent
    server carries the operator leg (``sipline_leg: operator``, the rendered prompt); the
    Transfer reads ``briefing``. Accepted (``BRIDGE``): the caller's tone reaches the operator's
    media port, the caller's bot gets ``bridged`` and ``stop``, both legs bill until each ends.
    Declined: the operator leg gets the relay's BYE, the caller's bot ``declined`` with the
    reason, and the call goes on with it until the caller's BYE."""
    name = f"warm-{'accepted' if accepted else 'declined'}"
    with SippUas("uas_answer", tmp_path / "operator", extra=("-rtp_echo",)) as operator:
        agent_id, service = warm_agent(
            stack, agent_server, operator.uri("+15550100"), name, "BRIDGE"
        )
        write_tone(tmp_path / "tone.ul", CALLER_TONE_HZ)
        with LoopbackCapture(operator.media_port) as capture:
            sipp: Future[SippRun] = pool.submit(
                run_sipp,
                stack,
                tmp_path,
                service=service,
                scenario_file=scenario("uac_call_tone.xml", tmp_path),
                timeout_s=40,
                extra=("-d", "12000"),
            )
            call = joined_call(stack, agent_id)
            call_id = call["callId"]
            transfer_id = ask_warm(stack, call_id)
            caller_bot, operator_bot = agent_server.wait_sessions(name, 2, timeout_s=15.0)
            until_status(stack, call_id, "briefing")
            outcome = {"accepted": True} if accepted else {"accepted": False, "reason": "busy"}
            report(stack, call_id, transfer_id, outcome)
            run = sipp.result(timeout=60)
        operator_run = operator.wait()

    assert run.returncode == 0, run.explain() + stack.relay_log()[-4000:]
    assert operator_run.returncode == 0, operator_run.explain()
    params = operator_bot.custom_parameters
    assert (params["sipline_leg"], params["sipline_call_id"]) == ("operator", call_id)
    assert params["sipline_transfer_id"] == transfer_id
    assert params["system_prompt"] == TEMPLATE.format(context=CONTEXT)
    assert "sipline_leg" not in caller_bot.custom_parameters
    assert operator_bot.events[-1] == "stop"
    [transfer] = transfers(stack, call_id)
    [ended] = stack.wait_for_call(agent_id, timeout_s=15.0)
    events = stored_events(stack, call_id)
    operator_leg = LegRole.TRANSFER_TARGET
    if not accepted:
        assert (transfer["status"], transfer["reason"]) == ("declined", "busy")
        assert caller_bot.transfers == [
            {"transferId": transfer_id, "status": "declined", "sipStatus": None, "reason": "busy"}
        ]
        told = caller_bot.events.index("transfer")
        assert "media" in caller_bot.events[told:]  # the caller's bot still hears the caller
        assert ended["endReason"] != "transferred"
        return
    heard = b"".join(payload[12:] for payload in capture.payloads(operator.media_port))
    assert len(heard) >= 8000, f"{len(heard)} bytes of RTP reached the operator"
    assert abs(dominant_frequency(ulaw_samples(heard), 8000) - CALLER_TONE_HZ) < 5
    assert transfer["status"] == "bridged"
    assert [t["status"] for t in caller_bot.transfers] == ["bridged"]
    assert caller_bot.events[-1] == "stop"
    assert (ended["endReason"], ended["sipDetails"]["terminationReason"]) == (
        "transferred", "SIP_TERMINATION_NORMAL"
    )  # fmt: skip
    caller_end = first(events, CallEventType.LEG_ENDED)
    operator_end = first(events, CallEventType.LEG_ENDED, role=operator_leg)
    expected = (caller_end - first(events, CallEventType.ANSWERED)) + (
        operator_end - first(events, CallEventType.INVITE_SENT, role=operator_leg)
    )
    assert abs(bill(events).sip_seconds - expected) < 1e-3


def test_linphone_completes_a_warm_refer_the_relay_sends(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path
) -> None:
    """A linphone caller, a linphone operator (auto-answer), ``transferType: REFER``: briefed and
    accepted, the relay REFERs the caller with ``Refer-To: <operator?Replaces=...>`` naming its
    leg to the operator; linphone calls the operator with that ``Replaces`` (the operator's tag
    as ``to-tag``, RFC 3891 §6.1), the operator replaces the relay's leg with it. docs/api.md:
    the Transfer reads ``referred``; docs/billing.md: the call ``transferred`` / ``REFERRED``,
    both legs stopping billing at ``refer_succeeded`` (rule 3)."""
    name = "warm-refer-linphone"
    with (
        PulseAudio(tmp_path / "pulse") as pulse,
        Linphonec(
            tmp_path / "operator", None, auto_answer=True, pulse=pulse, lifetime_s=90
        ) as operator,
    ):
        agent_id, service = warm_agent(stack, agent_server, operator.uri("operator"), name, "REFER")
        target = f"sip:{service}@127.0.0.1:{stack.sip_port}"
        (tmp_path / "caller").mkdir()
        with Linphonec(tmp_path / "caller", target, pulse=pulse, lifetime_s=90) as caller:
            caller.wait_state("StreamsRunning", timeout_s=15.0)
            call_id = joined_call(stack, agent_id)["callId"]
            transfer_id = ask_warm(stack, call_id)
            caller_bot, operator_bot = agent_server.wait_sessions(name, 2, timeout_s=15.0)
            until_status(stack, call_id, "briefing")
            relay_leg = answered_dialog(operator)  # the relay's call to the operator
            report(stack, call_id, transfer_id, {"accepted": True})
            operator.wait_log(rf"^Replaces: {re.escape(relay_leg.replaces)}", timeout_s=20.0)
            transfer = until_status(stack, call_id, "referred")
            [ended] = stack.wait_for_call(agent_id, timeout_s=30.0)

    assert operator_bot.custom_parameters["sipline_leg"] == "operator"
    assert [t["status"] for t in caller_bot.transfers] == ["referred"]
    assert transfer["method"] == "REFER"
    assert (ended["endReason"], ended["sipDetails"]["terminationReason"]) == (
        "transferred", "SIP_TERMINATION_REFERRED"
    )  # fmt: skip
    events = stored_events(stack, call_id)
    operator_leg = LegRole.TRANSFER_TARGET
    succeeded = first(events, CallEventType.REFER_SUCCEEDED)
    expected = (succeeded - first(events, CallEventType.ANSWERED)) + (
        succeeded - first(events, CallEventType.INVITE_SENT, role=operator_leg)
    )
    assert abs(bill(events).sip_seconds - expected) < 1e-3
    # linphone sends no BYE on the referred call: the relay's comes REFERRED_BYE_S (10 s) later
    deadline = time.monotonic() + 30.0
    while len(ends := leg_ends(stack, call_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sorted((e.leg_role, str(e.reason)) for e in ends) == [
        ("caller", "referred"), ("transfer_target", "referred")
    ]  # fmt: skip


def leg_ends(stack: InteropStack, call_id: str) -> list[CallEvent]:
    return [e for e in stored_events(stack, call_id) if e.type is CallEventType.LEG_ENDED]
