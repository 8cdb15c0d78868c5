"""A REFER from the far end, through the whole system: SIPp as the PBX and as the target.

SIPp calls the relay (``scenarios/uac_refer_far_end.xml``) and, once answered, sends REFER
with ``Refer-To`` a SIPp UAS on 127.0.0.1 (``uas_answer``, which hangs up 3 s after its
answer). What the account's ``/api/sip`` ``incomingRefer`` says decides (docs/api.md,
docs/relay.md "A REFER from the far end"):

- ``follow``: 202, NOTIFY ``100 Trying``, ``180 Ringing``, ``200 OK`` (RFC 3515 §2.4.4-§2.4.5,
  RFC 5589 §6.1), the relay's BYE to the PBX; the target is called and answered, the relay's
  RTP reaches it; the agent's one session goes on (one ``start``) until the target hangs up;
- ``decline``: 603 Decline (never 405, issue 11), the target is never called, the PBX hangs up.

Both record ``refer_received`` (read back from the store). SIPp fails its run (rc != 0) when the
relay answers otherwise.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from chalicelib.billing import bill
from chalicelib.contracts import CallEventType, LegRole
from tests.interop.agent_server import AgentServer
from tests.interop.loopback_capture import LoopbackCapture
from tests.interop.sipp import SippRun, run_sipp, scenario
from tests.interop.sipp_uas import SippUas
from tests.interop.stack import InteropStack
from tests.interop.test_transfer_sipp import first, stored_events
from tests.interop.transfer_peers import notifies, received

pytestmark = pytest.mark.interop

_names = itertools.count(1)


def far_end_call(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path, refer_to: str
) -> tuple[str, str, SippRun]:
    """The PBX's call to a new agent, REFERring it to ``refer_to``: agent id, WS name, run."""
    n = next(_names)
    service, name = f"interop_far_refer_{n}", f"far-refer-{n}"
    agent_id = stack.add_agent(name, f"^{service}$", agent_server.url(name))
    run = run_sipp(
        stack,
        tmp_path,
        service=service,
        scenario_file=scenario("uac_refer_far_end.xml", tmp_path),
        timeout_s=30,
        extra=("-key", "refer_to", f"<{refer_to}>", "-d", "2000"),
    )
    return agent_id, name, run


def set_incoming_refer(stack: InteropStack, value: str) -> None:
    patched = stack.api("PATCH", "/api/sip", {"incomingRefer": value})
    assert patched.status_code == 200, patched.text
    assert patched.json()["incomingRefer"] == value


def test_follow_calls_the_target_and_moves_the_agent_onto_it(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path
) -> None:
    set_incoming_refer(stack, "follow")
    try:
        with (
            SippUas("uas_answer", tmp_path / "target", hangup_after_ms=3000) as target,
            LoopbackCapture(target.media_port) as capture,
        ):
            agent_id, name, run = far_end_call(
                stack, agent_server, tmp_path, target.uri("+15550100")
            )
            target_run = target.wait(timeout_s=30)
    finally:
        set_incoming_refer(stack, "decline")

    assert run.returncode == 0, run.explain() + stack.relay_log()[-4000:]
    assert target_run.returncode == 0, target_run.explain()
    assert [n.sipfrag for n in notifies(run)] == [
        "SIP/2.0 100 Trying", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK"
    ]  # fmt: skip
    assert all(n.event.startswith("refer") for n in notifies(run))
    assert notifies(run)[-1].subscription_state.startswith("terminated")
    assert [m.method for m in received(run) if m.method == "BYE"] == ["BYE"]
    assert capture.payloads(target.media_port), "no RTP from the relay reached the target"

    [ended] = stack.wait_for_call(agent_id, timeout_s=15.0)
    [session] = agent_server.sessions(name)
    assert session.events.count("start") == 1 and session.events[-1] == "stop"
    events = stored_events(stack, ended["callId"])
    [refer] = [e for e in events if e.type is CallEventType.REFER_RECEIVED]
    assert refer.detail is not None and refer.detail.startswith("accepted to=sip:+15550100@")
    target_leg = LegRole.TRANSFER_TARGET
    caller_end = [
        e for e in events if e.type is CallEventType.LEG_ENDED and e.leg_role is LegRole.CALLER
    ]
    assert [e.reason for e in caller_end] == ["referred"]
    expected = (caller_end[0].occurred_at.timestamp() - first(events, CallEventType.ANSWERED)) + (
        first(events, CallEventType.LEG_ENDED, role=target_leg)
        - first(events, CallEventType.INVITE_SENT, role=target_leg)
    )
    assert abs(bill(events).sip_seconds - expected) < 1e-3


def test_decline_answers_603_and_the_call_goes_on(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path
) -> None:
    set_incoming_refer(stack, "decline")
    with SippUas("uas_answer", tmp_path / "target", timeout_s=10) as target:
        agent_id, name, run = far_end_call(stack, agent_server, tmp_path, target.uri("+15550100"))
        called = target.received("INVITE")

    assert run.returncode == 0, run.explain() + stack.relay_log()[-4000:]
    assert not called
    assert not notifies(run)
    [ended] = stack.wait_for_call(agent_id, timeout_s=15.0)
    assert (ended["endReason"], ended["sipDetails"]["terminationReason"]) == (
        "hangup", "SIP_TERMINATION_NORMAL"
    )  # fmt: skip
    events = stored_events(stack, ended["callId"])
    [refer] = [e for e in events if e.type is CallEventType.REFER_RECEIVED]
    assert refer.detail is not None and refer.detail.startswith("declined to=sip:+15550100@")
    assert not [e for e in events if e.leg_role is LegRole.TRANSFER_TARGET]
