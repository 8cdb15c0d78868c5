"""sipline's outgoing calls against SIPp callees (``scenarios/uas_*.xml``, ``sipp_uas.py``).

A whole relay runs in the test's loop (``tests/integration/relay/harness.py``), with the relay
tests' control-plane stand-in taking its events; the ``dial`` command is given to its handler as
the command consumer would. Each SIPp scenario says in its comment what it checks, and fails the
run (rc != 0) when the relay does otherwise; the expected outcome of each (``endReason``,
``sipDetails.terminationReason``) comes from issue 9's table and docs/relay.md (How an
unanswered outgoing call ends), read from the recorded events by the control plane's summary.
Digest answers SIPp 3.6.1 cannot check (SHA-256, Proxy-Authorization) are checked on its trace
with ``tests/interop/digest.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chalicelib.call_outcome import summarize
from chalicelib.contracts import CallEvent, HangUpCommand
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.calls.dialing import PASSWORD_KEY, dial_command, encrypted
from tests.integration.relay.harness import ControlPlane, Relay, run, running, settings_for, until
from tests.interop import digest
from tests.interop.sipp_uas import AUTH_PASSWORD, AUTH_USER, TONE_HZ, SippUas
from tests.interop.tone import dominant_frequency, sounding, ulaw_samples

pytestmark = pytest.mark.interop

NOBODY = "ws://127.0.0.1:9/agent"
ENDED_S = 30.0
"""Bound on a call's end (SIPp's own timeouts are shorter)."""


@dataclass
class Dialled:
    """What a test reads after the call: the events, the SIPp run, what the agent got."""

    events: list[CallEvent]
    agent: Agent
    uas: SippUas
    media: list[bytes] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [event.type.value for event in self.events]

    @property
    def outcome(self) -> tuple[str | None, str | None]:
        summary = summarize(self.events)
        end = summary.end_reason.value if summary.end_reason else None
        term = summary.termination_reason.value if summary.termination_reason else None
        return end, term

    def leg_ended(self) -> CallEvent:
        return next(e for e in self.events if e.type.value == "leg_ended")


def events_of(control: ControlPlane) -> list[CallEvent]:
    return [CallEvent.model_validate(event) for event in control.applied.values()]


async def dial_sipp(
    uas: SippUas,
    tmp_path: Path,
    *,
    answered: bool,
    hang_up_after_join: bool = False,
    hang_up_while_ringing: bool = False,
    ring_timeout_s: float = 60.0,
    **overrides: Any,
) -> Dialled:
    """Dial ``uas`` from a running relay; end the call as told; wait until its leg ended."""
    control = ControlPlane()
    agent = Agent()
    await control.start()
    try:
        async with agent_server(agent) as url:
            settings = settings_for(
                control.url, tmp_path / "spool", password_key=PASSWORD_KEY,
                ring_timeout_s=ring_timeout_s,
            )  # fmt: skip
            async with running(settings) as relay:
                command = dial_command(url if answered else NOBODY, to=uas.uri(), **overrides)
                await relay.service._dial_command(command)
                if hang_up_while_ringing:
                    await until(lambda: "ringing" in [e["type"] for e in control.applied.values()])
                    await hang_up(relay, command.call_id)
                if hang_up_after_join:
                    await agent.next_event("start", timeout_s=10)
                    await until(lambda: before_hang_up(uas), timeout_s=10)
                    await hang_up(relay, command.call_id)
                await until(lambda: ended(control), timeout_s=ENDED_S)
    finally:
        await control.stop()
    await asyncio.to_thread(uas.wait)
    return Dialled(events_of(control), agent, uas, media=media_of(agent))


async def hang_up(relay: Relay, call_id: str) -> None:
    """The ``hangup`` command ``DELETE /api/calls/{id}`` sends, given to the relay's handler."""
    await relay.service._hang_up_command(HangUpCommand(call_id=call_id))


def before_hang_up(uas: SippUas) -> bool:
    """Whether the callee is ready for our BYE: ``uas_forked`` first takes the BYE of its second
    branch (which the relay sends on its own), so the test's hang-up must come after it."""
    return uas.name != "uas_forked" or len(uas.received("BYE")) == 1


def ended(control: ControlPlane) -> bool:
    return any(event["type"] == "leg_ended" for event in control.applied.values())


def media_of(agent: Agent) -> list[bytes]:
    """The μ-law payloads of the agent's ``media`` messages (Twilio framing)."""
    payloads = []
    for _, message in agent.arrivals:
        if isinstance(message, str):
            decoded = json.loads(message)
            if decoded.get("event") == "media":
                payloads.append(base64.b64decode(decoded["media"]["payload"]))
    return payloads


def succeeded(run_of: Dialled) -> None:
    sipp = run_of.uas.wait()
    assert sipp.returncode == 0, sipp.explain()


# --- answered -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_answered_then_the_callee_hangs_up(tmp_path: Path, transport: str) -> None:
    async def scenario() -> Dialled:
        with SippUas("uas_answer", tmp_path, transport=transport, hangup_after_ms=1500) as uas:
            return await dial_sipp(uas, tmp_path, answered=True)

    call = run_scenario(scenario)
    succeeded(call)
    assert call.kinds == [
        "invite_sent", "ringing", "answered", "agent_joined", "agent_left", "leg_ended"
    ]  # fmt: skip
    assert call.leg_ended().reason == "remote_hangup"
    assert call.outcome == ("hangup", "SIP_TERMINATION_NORMAL")
    [invite] = call.uas.received("INVITE")
    assert "sip:+15557654321@" in (invite.header("From") or "")


def test_answered_then_the_api_hangs_up_with_bye(tmp_path: Path) -> None:
    async def scenario() -> Dialled:
        with SippUas("uas_answer", tmp_path) as uas:
            return await dial_sipp(uas, tmp_path, answered=True, hang_up_after_join=True)

    call = run_scenario(scenario)
    succeeded(call)
    assert [m.kind for m in call.uas.received()] == ["INVITE", "ACK", "BYE"]
    assert call.outcome == ("agent_hangup", "SIP_TERMINATION_NORMAL")


def test_the_callees_tone_reaches_the_agent(tmp_path: Path) -> None:
    """``uas_answer_tone`` sends a TONE_HZ sine as PCMU from the ACK on: the agent hears it."""

    async def scenario() -> Dialled:
        with SippUas("uas_answer_tone", tmp_path, hangup_after_ms=3000) as uas:
            return await dial_sipp(uas, tmp_path, answered=True)

    call = run_scenario(scenario)
    succeeded(call)
    samples = ulaw_samples(b"".join(call.media))
    heard = sounding(samples, 8000)
    assert len(heard) >= 8000, f"only {len(heard)} samples of sound"  # a second at least
    assert dominant_frequency(np.asarray(heard), 8000) == pytest.approx(TONE_HZ, abs=5)


def test_early_media_then_the_answer(tmp_path: Path) -> None:
    async def scenario() -> Dialled:
        with SippUas("uas_early_media", tmp_path, hangup_after_ms=1000) as uas:
            return await dial_sipp(uas, tmp_path, answered=True)

    call = run_scenario(scenario)
    succeeded(call)
    ringing = next(e for e in call.events if e.type.value == "ringing")
    assert ringing.sip_status == 183
    assert call.outcome == ("hangup", "SIP_TERMINATION_NORMAL")


def test_a_second_forked_answer_is_acked_and_hung_up(tmp_path: Path) -> None:
    async def scenario() -> Dialled:
        with SippUas("uas_forked", tmp_path) as uas:
            return await dial_sipp(uas, tmp_path, answered=True, hang_up_after_join=True)

    call = run_scenario(scenario)
    succeeded(call)  # the scenario checks ACK, ACK, BYE of branch 2, then BYE of branch 1
    assert [m.kind for m in call.uas.received()] == ["INVITE", "ACK", "ACK", "BYE", "BYE"]
    assert call.outcome == ("agent_hangup", "SIP_TERMINATION_NORMAL")


# --- not answered ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "termination"),
    [
        ("uas_busy", 486, "SIP_TERMINATION_BUSY"),
        ("uas_not_found", 404, "SIP_TERMINATION_INVALID_NUMBER"),
        ("uas_decline", 603, "SIP_TERMINATION_REJECTED"),
    ],
)
def test_a_refusing_callee_ends_the_call_as_the_issue_table_says(
    tmp_path: Path, name: str, status: int, termination: str
) -> None:
    async def scenario() -> Dialled:
        with SippUas(name, tmp_path) as uas:
            return await dial_sipp(uas, tmp_path, answered=False)

    call = run_scenario(scenario)
    succeeded(call)  # the ACK of the failure came, on the INVITE's branch
    assert (call.leg_ended().reason, call.leg_ended().sip_status) == ("rejected", status)
    assert call.outcome == ("unjoined", termination)


def test_no_answer_within_the_ring_timeout_is_cancelled(tmp_path: Path) -> None:
    async def scenario() -> Dialled:
        with SippUas("uas_ring_no_answer", tmp_path) as uas:
            return await dial_sipp(uas, tmp_path, answered=False, ring_timeout_s=2.0)

    call = run_scenario(scenario)
    succeeded(call)  # the CANCEL matched the INVITE; its 487 was ACKed; no INVITE after it
    assert [m.kind for m in call.uas.received()] == ["INVITE", "CANCEL", "ACK"]
    assert (call.leg_ended().reason, call.leg_ended().sip_status) == ("timeout", 487)
    assert call.outcome == ("unjoined", "SIP_TERMINATION_TIMEOUT")


def test_a_hang_up_while_ringing_is_cancelled(tmp_path: Path) -> None:
    async def scenario() -> Dialled:
        with SippUas("uas_ring_no_answer", tmp_path) as uas:
            return await dial_sipp(uas, tmp_path, answered=False, hang_up_while_ringing=True)

    call = run_scenario(scenario)
    succeeded(call)
    assert [m.kind for m in call.uas.received()] == ["INVITE", "CANCEL", "ACK"]
    assert call.outcome == ("unjoined", "SIP_TERMINATION_CANCELED")


# --- digest ---------------------------------------------------------------------------------


def credentials(password: str = AUTH_PASSWORD) -> dict[str, Any]:
    return {"username": AUTH_USER, "passwordCiphertext": encrypted(password)}


@pytest.mark.parametrize(("password", "final"), [(AUTH_PASSWORD, "200"), ("wrong", "403")])
def test_a_401_md5_challenge_is_answered_and_verified_by_sipp(
    tmp_path: Path, password: str, final: str
) -> None:
    async def scenario() -> Dialled:
        with SippUas("uas_auth_md5", tmp_path) as uas:
            return await dial_sipp(
                uas, tmp_path, answered=True, hang_up_after_join=final == "200",
                **credentials(password),
            )  # fmt: skip

    call = run_scenario(scenario)
    succeeded(call)
    assert [m.kind for m in call.uas.sent()][:2] == ["401", final]
    first, retry = call.uas.received("INVITE")
    assert retry.cseq[0] == first.cseq[0] + 1 and retry.call_id == first.call_id
    if final == "200":
        assert call.outcome == ("agent_hangup", "SIP_TERMINATION_NORMAL")
    else:
        assert call.outcome == ("unjoined", "SIP_TERMINATION_REJECTED")


@pytest.mark.parametrize(
    ("name", "challenge_header", "answer_header"),
    [
        ("uas_auth_sha256", "WWW-Authenticate", "Authorization"),
        ("uas_proxy_auth", "Proxy-Authenticate", "Proxy-Authorization"),
    ],
)
def test_a_challenge_sipp_cannot_verify_is_answered_correctly(
    tmp_path: Path, name: str, challenge_header: str, answer_header: str
) -> None:
    async def scenario() -> Dialled:
        with SippUas(name, tmp_path) as uas:
            return await dial_sipp(
                uas, tmp_path, answered=True, hang_up_after_join=True, **credentials()
            )

    call = run_scenario(scenario)
    succeeded(call)  # the BYE was accepted too (the scenario's own check of the algorithm)
    challenge = call.uas.sent(call.uas.sent()[0].kind)[0].header(challenge_header)
    _, retry = call.uas.received("INVITE")
    answer = retry.header(answer_header)
    assert challenge and answer
    assert digest.verify(
        answer, method="INVITE", password=AUTH_PASSWORD, challenge=challenge, username=AUTH_USER
    )
    assert call.outcome == ("agent_hangup", "SIP_TERMINATION_NORMAL")


def run_scenario(scenario: Any) -> Dialled:
    result: list[Dialled] = []

    async def capture() -> None:
        result.append(await scenario())

    run(capture, timeout_s=120.0)
    return result[0]
