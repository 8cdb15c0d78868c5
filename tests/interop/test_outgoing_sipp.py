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

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.relay.calls.dialing import encrypted
from tests.interop import digest
from tests.interop.outgoing import Dialled, dial, run_scenario
from tests.interop.sipp_uas import AUTH_PASSWORD, AUTH_USER, TONE_HZ, SippUas
from tests.interop.tone import dominant_frequency, sounding, ulaw_samples

pytestmark = pytest.mark.interop


def call_sipp(uas: SippUas, tmp_path: Path, **options: Any) -> Dialled:
    """Dial ``uas`` (see ``outgoing.dial``); SIPp must then exit 0: every check of its scenario
    held."""

    def ready() -> bool:  # uas_forked takes the relay's own BYE of its second branch first
        return uas.name != "uas_forked" or len(uas.received("BYE")) == 1

    call = run_scenario(lambda: dial(uas.uri(), tmp_path, ready_to_hang_up=ready, **options))
    sipp = uas.wait()
    assert sipp.returncode == 0, sipp.explain()
    return call


# --- answered -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_answered_then_the_callee_hangs_up(tmp_path: Path, transport: str) -> None:
    with SippUas("uas_answer", tmp_path, transport=transport, hangup_after_ms=1500) as uas:
        call = call_sipp(uas, tmp_path, answered=True)
        [invite] = uas.received("INVITE")

    assert call.kinds == [
        "invite_sent", "ringing", "answered", "agent_joined", "agent_left", "leg_ended"
    ]  # fmt: skip
    assert call.leg_ended().reason == "remote_hangup"
    assert call.outcome == ("hangup", "SIP_TERMINATION_NORMAL")
    assert "sip:+15557654321@" in (invite.header("From") or "")


def test_answered_then_the_api_hangs_up_with_bye(tmp_path: Path) -> None:
    with SippUas("uas_answer", tmp_path) as uas:
        call = call_sipp(uas, tmp_path, answered=True, hang_up_after_join=True)
        assert [m.kind for m in uas.received()] == ["INVITE", "ACK", "BYE"]
    assert call.outcome == ("agent_hangup", "SIP_TERMINATION_NORMAL")


def test_the_callees_tone_reaches_the_agent(tmp_path: Path) -> None:
    """``uas_answer_tone`` sends a TONE_HZ sine as PCMU from the ACK on: the agent hears it."""
    with SippUas("uas_answer_tone", tmp_path, hangup_after_ms=3000) as uas:
        call = call_sipp(uas, tmp_path, answered=True)

    heard = sounding(ulaw_samples(b"".join(call.media)), 8000)
    assert len(heard) >= 8000, f"only {len(heard)} samples of sound"  # a second at least
    assert dominant_frequency(np.asarray(heard), 8000) == pytest.approx(TONE_HZ, abs=5)


def test_early_media_then_the_answer(tmp_path: Path) -> None:
    with SippUas("uas_early_media", tmp_path, hangup_after_ms=1000) as uas:
        call = call_sipp(uas, tmp_path, answered=True)

    ringing = next(e for e in call.events if e.type.value == "ringing")
    assert ringing.sip_status == 183
    assert call.outcome == ("hangup", "SIP_TERMINATION_NORMAL")


def test_a_second_forked_answer_is_acked_and_hung_up(tmp_path: Path) -> None:
    with SippUas("uas_forked", tmp_path) as uas:
        # the scenario checks: ACK, ACK, BYE of branch 2, then our BYE of branch 1
        call = call_sipp(uas, tmp_path, answered=True, hang_up_after_join=True)
        assert [m.kind for m in uas.received()] == ["INVITE", "ACK", "ACK", "BYE", "BYE"]
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
    with SippUas(name, tmp_path) as uas:
        call = call_sipp(uas, tmp_path, answered=False)  # the failure's ACK came, same branch

    assert (call.leg_ended().reason, call.leg_ended().sip_status) == ("rejected", status)
    assert call.outcome == ("unjoined", termination)


def test_no_answer_within_the_ring_timeout_is_cancelled(tmp_path: Path) -> None:
    with SippUas("uas_ring_no_answer", tmp_path) as uas:
        # the CANCEL matched the INVITE, its 487 was ACKed, no INVITE came after it
        call = call_sipp(uas, tmp_path, answered=False, ring_timeout_s=2.0)
        assert [m.kind for m in uas.received()] == ["INVITE", "CANCEL", "ACK"]

    assert (call.leg_ended().reason, call.leg_ended().sip_status) == ("timeout", 487)
    assert call.outcome == ("unjoined", "SIP_TERMINATION_TIMEOUT")


def test_a_hang_up_while_ringing_is_cancelled(tmp_path: Path) -> None:
    with SippUas("uas_ring_no_answer", tmp_path) as uas:
        call = call_sipp(uas, tmp_path, answered=False, hang_up_while_ringing=True)
        assert [m.kind for m in uas.received()] == ["INVITE", "CANCEL", "ACK"]

    assert call.outcome == ("unjoined", "SIP_TERMINATION_CANCELED")


# --- digest ---------------------------------------------------------------------------------


def credentials(password: str = AUTH_PASSWORD) -> dict[str, Any]:
    return {"username": AUTH_USER, "passwordCiphertext": encrypted(password)}


@pytest.mark.parametrize(("password", "final"), [(AUTH_PASSWORD, "200"), ("wrong", "403")])
def test_a_401_md5_challenge_is_answered_and_verified_by_sipp(
    tmp_path: Path, password: str, final: str
) -> None:
    with SippUas("uas_auth_md5", tmp_path) as uas:
        call = call_sipp(
            uas, tmp_path, answered=True, hang_up_after_join=final == "200",
            **credentials(password),
        )  # fmt: skip
        assert [m.kind for m in uas.sent()][:2] == ["401", final]
        first, retry = uas.received("INVITE")

    assert retry.cseq[0] == first.cseq[0] + 1 and retry.call_id == first.call_id
    if final == "200":
        assert call.outcome == ("agent_hangup", "SIP_TERMINATION_NORMAL")
    else:
        assert call.outcome == ("unjoined", "SIP_TERMINATION_REJECTED")


@pytest.mark.parametrize(
    ("name", "status", "challenge_header", "answer_header"),
    [
        ("uas_auth_sha256", "401", "WWW-Authenticate", "Authorization"),
        ("uas_proxy_auth", "407", "Proxy-Authenticate", "Proxy-Authorization"),
    ],
)
def test_a_challenge_sipp_cannot_verify_is_answered_correctly(
    tmp_path: Path, name: str, status: str, challenge_header: str, answer_header: str
) -> None:
    with SippUas(name, tmp_path) as uas:
        # SIPp's own check: the BYE is accepted only after a retry of the right algorithm
        call = call_sipp(uas, tmp_path, answered=True, hang_up_after_join=True, **credentials())
        challenge = uas.sent(status)[0].header(challenge_header)
        _, retry = uas.received("INVITE")

    answer = retry.header(answer_header)
    assert challenge and answer
    assert digest.verify(
        answer, method="INVITE", password=AUTH_PASSWORD, challenge=challenge, username=AUTH_USER
    )
    assert call.outcome == ("agent_hangup", "SIP_TERMINATION_NORMAL")
