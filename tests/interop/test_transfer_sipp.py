"""Cold transfers through the whole system: SIPp callers and targets, the relay process, the API.

The transfer is asked the way a bot asks it (docs/agents.md, Transferring a call):
``POST /api/calls/{callId}/transfers`` with the agent's ``coldTransfer`` tool; the control plane
decides and sends the ``transfer`` command to the relay holding the call, on its own SQS queue
(moto), as in production. What each SIPp scenario expects is in its comment, and SIPp fails the
run (rc != 0) when the relay does otherwise:

- ``uac_transferee.xml``: the caller as RFC 5589 §6.1's transferee: REFER, 202, NOTIFY 100, a
  final NOTIFY (200, or 603), then its BYE;
- ``uac_call_tone.xml`` + ``uas_answer`` with ``-rtp_echo``: a bridged transfer whose caller's
  tone must reach the target (seen on ``lo``: ``loopback_capture.py``), the target answering, the
  caller's BYE ending the target's leg with the relay's BYE.

Outcomes come from docs/billing.md (the scenarios table: ``transferred`` / ``REFERRED`` for a
REFER, ``transferred`` / ``NORMAL`` for a bridge; rules 2, 3, 5) applied by
``chalicelib/billing.py`` to the events the relay reported (read back from the store), and from
docs/agents.md (the ``transfer`` message).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from chalicelib.billing import DECIMINUTE_S, bill
from chalicelib.contracts import CallEvent, CallEventType, LegRole
from scripts.localstack import TABLE
from tests.interop.agent_server import AgentServer
from tests.interop.loopback_capture import LoopbackCapture
from tests.interop.sipp import SippRun, run_sipp, scenario
from tests.interop.sipp_uas import SippUas, write_tone
from tests.interop.stack import InteropStack
from tests.interop.tone import dominant_frequency, ulaw_samples

pytestmark = pytest.mark.interop

CALLER_TONE_HZ = 440
_names = itertools.count(1)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def transfer_agent(
    stack: InteropStack, agent_server: AgentServer, parameters: dict[str, Any]
) -> tuple[str, str, str]:
    """An agent with a ``coldTransfer`` tool of ``parameters``; its id, To user and WS name."""
    n = next(_names)
    service, name = f"interop_transfer_{n}", f"transfer-{n}"
    tool = {"toolName": "coldTransfer", "parameterOverrides": parameters}
    agent_id = stack.add_agent(name, f"^{service}$", agent_server.url(name), selectedTools=[tool])
    return agent_id, service, name


def joined_call(stack: InteropStack, agent_id: str) -> dict[str, Any]:
    [call] = stack.wait_for_call(
        agent_id, lambda call: call.get("joined") is not None, timeout_s=15.0
    )
    return call


def ask_transfer(stack: InteropStack, call_id: str) -> dict[str, Any]:
    """What the bot's tool handler sends (docs/agents.md): the tool by name, nothing else."""
    asked = stack.api("POST", f"/api/calls/{call_id}/transfers", {"toolName": "coldTransfer"})
    assert asked.status_code == 201, asked.text
    transfer: dict[str, Any] = asked.json()
    return transfer


def transfers(stack: InteropStack, call_id: str) -> list[dict[str, Any]]:
    listed = stack.api("GET", f"/api/calls/{call_id}/transfers")
    assert listed.status_code == 200, listed.text
    results: list[dict[str, Any]] = listed.json()["results"]
    return results


def stored_events(stack: InteropStack, call_id: str) -> list[CallEvent]:
    """The call's events as the control plane stored them (moto's DynamoDB)."""
    environment = stack.local.aws_environment()
    table = boto3.resource(
        "dynamodb",
        endpoint_url=stack.local.moto_url,
        region_name=environment["AWS_DEFAULT_REGION"],
        aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
    ).Table(TABLE)
    items = table.query(
        KeyConditionExpression=Key("pk").eq(f"CALL#{call_id}") & Key("sk").begins_with("EVENT#")
    )["Items"]
    return [CallEvent.model_validate_json(str(item["data"])) for item in items]


def first(events: list[CallEvent], kind: CallEventType, role: LegRole = LegRole.CALLER) -> float:
    return min(e.occurred_at.timestamp() for e in events if e.type is kind and e.leg_role is role)


def rounded_up(seconds: float) -> int:
    """docs/billing.md rule 8: up to whole deciminutes."""
    return int(-(-round(seconds * 1_000_000) // (DECIMINUTE_S * 1_000_000)) * DECIMINUTE_S)


def transferee(
    stack: InteropStack, tmp_path: Path, service: str, final: str, pause_ms: int
) -> SippRun:
    write_tone(tmp_path / "tone.ul", CALLER_TONE_HZ)
    return run_sipp(
        stack,
        tmp_path,
        service=service,
        scenario_file=scenario("uac_transferee.xml", tmp_path),
        timeout_s=40,
        extra=("-key", "refer_final", final, "-d", str(pause_ms)),
    )


def test_a_refer_transfer_the_caller_completes_ends_the_call_referred(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    """(a) REFER, 202, NOTIFY 200 sipfrag, the transferee's BYE: SIPp rc 0; the call reads
    ``transferred`` / ``SIP_TERMINATION_REFERRED`` and the transfer ``referred`` (docs/billing.md
    table, docs/api.md); the agent got ``transfer`` ``referred`` then ``stop``; the SIP clock
    stopped at ``refer_succeeded`` though the caller's BYE came later (rule 3)."""
    target = "sip:+15550100@pbx.example.com"
    agent_id, service, name = transfer_agent(
        stack,
        agent_server,
        {"target": target, "sipVerb": "REFER", "extraHeaders": {"X-Case": "42"}},
    )
    sipp: Future[SippRun] = pool.submit(transferee, stack, tmp_path, service, "200 OK", 1500)
    call = joined_call(stack, agent_id)
    ask_transfer(stack, call["callId"])
    run = sipp.result(timeout=60)

    assert run.returncode == 0, run.explain() + stack.relay_log()[-4000:]
    assert f"Refer-To: <{target}?X-Case=42>" in run.messages, run.explain()
    [ended] = stack.wait_for_call(agent_id, timeout_s=15.0)
    assert (ended["endReason"], ended["sipDetails"]["terminationReason"]) == (
        "transferred", "SIP_TERMINATION_REFERRED"
    )  # fmt: skip
    [transfer] = transfers(stack, call["callId"])
    assert (transfer["status"], transfer["sipStatus"], transfer["method"]) == (
        "referred", 200, "REFER"
    )  # fmt: skip
    [session] = agent_server.sessions(name)
    assert session.transfers == [
        {"transferId": transfer["transferId"], "status": "referred", "sipStatus": None,
         "reason": None}
    ]  # fmt: skip
    assert session.events.index("transfer") < session.events.index("stop")

    events = stored_events(stack, call["callId"])
    answered = first(events, CallEventType.ANSWERED)
    succeeded = first(events, CallEventType.REFER_SUCCEEDED)
    leg_ended = first(events, CallEventType.LEG_ENDED)
    assert leg_ended > succeeded
    billed = bill(events)
    assert abs(billed.sip_seconds - (succeeded - answered)) < 1e-3
    assert ended["sipDetails"]["billedDuration"] == f"{rounded_up(succeeded - answered)}s"


def test_a_refer_the_target_declines_leaves_the_caller_with_the_agent(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    """(b) 202 then NOTIFY ``SIP/2.0 603 Declined``: the call goes on with the agent, which is
    told ``transfer`` ``failed`` 603 (docs/agents.md) and still hears the caller; the caller's
    BYE ends the call as any call (``hangup`` / ``SIP_TERMINATION_NORMAL``); the transfer reads
    ``failed`` 603."""
    agent_id, service, name = transfer_agent(
        stack, agent_server, {"target": "sip:desk@pbx.example.com", "sipVerb": "REFER"}
    )
    sipp: Future[SippRun] = pool.submit(transferee, stack, tmp_path, service, "603 Declined", 3000)
    call = joined_call(stack, agent_id)
    ask_transfer(stack, call["callId"])
    run = sipp.result(timeout=60)

    assert run.returncode == 0, run.explain() + stack.relay_log()[-4000:]
    [ended] = stack.wait_for_call(agent_id, timeout_s=15.0)
    assert (ended["endReason"], ended["sipDetails"]["terminationReason"]) == (
        "hangup", "SIP_TERMINATION_NORMAL"
    )  # fmt: skip
    [transfer] = transfers(stack, call["callId"])
    assert (transfer["status"], transfer["sipStatus"]) == ("failed", 603)
    [session] = agent_server.sessions(name)
    assert [(t["status"], t["sipStatus"]) for t in session.transfers] == [("failed", 603)]
    told = session.events.index("transfer")
    assert "media" in session.events[told:]  # the agent still hears the caller
    assert session.events[-1] == "stop"


def test_a_bridged_transfer_joins_the_callers_rtp_to_the_target(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    """(c) A cold transfer by INVITE to a SIPp UAS that answers (``uas_answer``, echoing RTP):
    the caller's tone reaches the target's media port through the relay; the agent gets
    ``transfer`` ``bridged`` and ``stop`` while the caller's leg goes on; the caller's BYE ends
    the target's leg with the relay's BYE (SIPp rc 0 both). docs/billing.md: ``transferred`` /
    ``NORMAL``; both legs bill until each ends (rules 2 and 5)."""
    with SippUas("uas_answer", tmp_path / "target", extra=("-rtp_echo",)) as target:
        agent_id, service, name = transfer_agent(
            stack, agent_server, {"target": target.uri("+15550100"), "sipVerb": "INVITE"}
        )
        write_tone(tmp_path / "tone.ul", CALLER_TONE_HZ)
        with LoopbackCapture(target.media_port) as capture:
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
            ask_transfer(stack, call["callId"])
            run = sipp.result(timeout=60)
        target_run = target.wait()

    assert run.returncode == 0, run.explain() + stack.relay_log()[-4000:]
    assert target_run.returncode == 0, target_run.explain()
    heard = b"".join(payload[12:] for payload in capture.payloads(target.media_port))
    assert len(heard) >= 8000, f"{len(heard)} bytes of RTP reached the target"
    assert abs(dominant_frequency(ulaw_samples(heard), 8000) - CALLER_TONE_HZ) < 5

    [ended] = stack.wait_for_call(agent_id, timeout_s=15.0)
    assert (ended["endReason"], ended["sipDetails"]["terminationReason"]) == (
        "transferred", "SIP_TERMINATION_NORMAL"
    )  # fmt: skip
    [transfer] = transfers(stack, call["callId"])
    assert (transfer["status"], transfer["method"]) == ("bridged", "INVITE")
    [session] = agent_server.sessions(name)
    assert [t["status"] for t in session.transfers] == ["bridged"]
    assert session.events[-1] == "stop"

    events = stored_events(stack, call["callId"])
    target_leg = LegRole.TRANSFER_TARGET
    left = first(events, CallEventType.AGENT_LEFT, role=LegRole.CALLER)
    caller_end = first(events, CallEventType.LEG_ENDED)
    target_end = first(events, CallEventType.LEG_ENDED, role=target_leg)
    assert caller_end > left and target_end > left  # the legs outlived the agent
    expected = (caller_end - first(events, CallEventType.ANSWERED)) + (
        target_end - first(events, CallEventType.INVITE_SENT, role=target_leg)
    )
    assert abs(bill(events).sip_seconds - expected) < 1e-3
