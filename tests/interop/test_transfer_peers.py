"""The third-party peers of transfers, on their own (no relay): what the relay's transfer tests
stand on. SIPp plays the transferor and the second party; the peers' behaviour is the expected
value (RFC 3515 / RFC 5589 §6.1 for REFER, RFC 3891 for Replaces), not sipline's.

- baresip 1.0 follows a REFER by itself: 202, NOTIFY 100, an INVITE to the Refer-To, NOTIFY with
  the outcome (200, or the target's refusal); the transferor hangs up the old call.
- linphone 5.1 follows a REFER too, holding the old call first and making the Refer-To's
  embedded headers real headers of its INVITE.
- linphone completes an attended transfer: a Refer-To carrying Replaces reaches the operator.
- linphone as an auto-answering operator takes an INVITE with Replaces naming its call with a
  first party: it answers the second party and sends BYE to the first.
- baresip 1.0 has no Replaces (420 Bad Extension); with ``call_transfer=no`` it answers REFER 501.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from tests.interop.baresip import Baresip
from tests.interop.linphone import Linphonec
from tests.interop.pulseaudio import PulseAudio
from tests.interop.sipp_uas import SippUas
from tests.interop.transfer_peers import (
    answered_dialog,
    call_with_replaces,
    notifies,
    received,
    refer_as_transferor,
)

pytestmark = pytest.mark.interop

TRYING = "SIP/2.0 100 Trying"


def test_baresip_follows_a_refer_and_reports_the_answer(tmp_path: Path) -> None:
    with (
        SippUas("uas_answer", tmp_path / "target", hangup_after_ms=500) as target,
        Baresip(tmp_path / "transferee", account_params=";answermode=auto") as phone,
    ):
        refer_to = f"<{target.uri('operator')}>"
        run = refer_as_transferor(
            f"127.0.0.1:{phone.sip_port}", tmp_path / "sipp", refer_to=refer_to, service="bob"
        )
        assert run.returncode == 0, f"{run.explain()}\n--- baresip ---\n{phone.log[-3000:]}"
        transfer = phone.wait_event("TRANSFER")
        established = phone.wait_events("CALL_ESTABLISHED", 2)
        phone.wait_events("CALL_CLOSED", 2)  # SIPp's BYE, then the target's
        assert target.wait().returncode == 0, target.wait().explain()

    assert transfer["param"] == refer_to
    assert established[1]["peeruri"] == target.uri("operator")
    [invite] = target.received("INVITE")
    assert invite.request_uri == target.uri("operator")
    frags = notifies(run)
    assert [n.sipfrag for n in frags] == [TRYING, "SIP/2.0 200 OK"], frags
    assert frags[0].subscription_state.startswith("active")
    assert frags[1].subscription_state.startswith("terminated")
    assert all(n.event.startswith("refer") and n.content_type == "message/sipfrag" for n in frags)
    assert "BYE" not in [m.method for m in received(run)]  # the transferor hangs up


def test_baresip_reports_the_targets_refusal(tmp_path: Path) -> None:
    with (
        SippUas("uas_busy", tmp_path / "target") as target,
        Baresip(tmp_path / "transferee", account_params=";answermode=auto") as phone,
    ):
        run = refer_as_transferor(
            f"127.0.0.1:{phone.sip_port}",
            tmp_path / "sipp",
            refer_to=f"<{target.uri()}>",
            service="bob",
        )
        assert run.returncode == 0, f"{run.explain()}\n--- baresip ---\n{phone.log[-3000:]}"
        phone.wait_event("TRANSFER")
        assert target.wait().returncode == 0, target.wait().explain()

    frags = notifies(run)
    assert [n.status for n in frags] == [100, 486], frags
    assert frags[1].subscription_state.startswith("terminated")


def test_linphone_follows_a_refer_with_embedded_headers(tmp_path: Path) -> None:
    with (
        PulseAudio(tmp_path / "pulse") as pulse,
        SippUas("uas_answer", tmp_path / "target", hangup_after_ms=500) as target,
        Linphonec(tmp_path / "transferee", None, auto_answer=True, pulse=pulse) as phone,
    ):
        refer_to = f"<{target.uri('operator')}?X-Transfer-Id=t-1&Subject=transfer%20test>"
        run = refer_as_transferor(phone.hostport, tmp_path / "sipp", refer_to=refer_to)
        assert run.returncode == 0, f"{run.explain()}\n--- linphone ---\n{phone.log[-3000:]}"
        assert target.wait().returncode == 0, target.wait().explain()
        phone.wait_state("Paused")

    [invite] = target.received("INVITE")
    assert invite.request_uri == target.uri("operator")  # the headers left the URI ...
    assert invite.header("X-Transfer-Id") == "t-1"  # ... for the INVITE's header fields,
    assert invite.header("Subject") == "transfer test"  # unescaped (RFC 3261 §19.1.5)
    assert "sip:sipp@" in (invite.header("Referred-By") or "")
    held = [m for m in received(run) if m.method == "INVITE"]
    assert len(held) == 1 and "a=sendonly" in held[0].body  # the old call, on hold
    frags = notifies(run)
    assert [n.status for n in frags] == [100, 200], frags
    assert frags[1].subscription_state.startswith("terminated")


def test_linphone_operator_takes_a_call_that_replaces_its_call(tmp_path: Path) -> None:
    with (
        PulseAudio(tmp_path / "pulse") as pulse,
        Linphonec(tmp_path / "operator", None, auto_answer=True, pulse=pulse) as operator,
        Baresip(tmp_path / "first") as first,
    ):
        first.dial(operator.uri("operator"))
        established = first.wait_event("CALL_ESTABLISHED")
        dialog = answered_dialog(operator)
        assert dialog.call_id == established["id"]
        run = call_with_replaces(
            operator.hostport, tmp_path / "second", replaces_value=dialog.replaces
        )
        assert run.returncode == 0, f"{run.explain()}\n--- linphone ---\n{operator.log[-3000:]}"
        closed = first.wait_event("CALL_CLOSED")

    assert closed["param"] == "Connection reset by peer"  # baresip's word for a BYE it got
    assert run.exchange()[-4:] == ["200", "ACK", "BYE", "200"], run.exchange()


def test_baresip_has_no_replaces(tmp_path: Path) -> None:
    with (
        Baresip(tmp_path / "operator", account_params=";answermode=auto") as operator,
        Baresip(tmp_path / "first") as first,
    ):
        first.dial(f"sip:bob@127.0.0.1:{operator.sip_port}")
        established = first.wait_event("CALL_ESTABLISHED")
        run = call_with_replaces(
            f"127.0.0.1:{operator.sip_port}",
            tmp_path / "second",
            replaces_value=f"{established['id']};to-tag=any;from-tag=any",
            service="bob",
            timeout_s=8,
        )
        first.hang_up()
        first.wait_event("CALL_CLOSED")

    assert run.exchange()[:2] == ["INVITE", "420"], run.explain()  # RFC 3261 §8.2.2.3
    [refusal] = [m for m in received(run) if m.status == 420][:1]
    assert refusal.header("Unsupported") == "replaces"
    assert [e["type"] for e in first.events].count("CALL_CLOSED") == 1  # only our hang-up


def test_baresip_without_follow_refer_answers_501(tmp_path: Path) -> None:
    with Baresip(
        tmp_path / "transferee", account_params=";answermode=auto", follow_refer=False
    ) as phone:
        run = refer_as_transferor(
            f"127.0.0.1:{phone.sip_port}",
            tmp_path / "sipp",
            refer_to="<sip:nobody@127.0.0.1:9>",
            service="bob",
            timeout_s=8,
        )

    assert [m.kind for m in received(run)][-1] == "501", run.explain()
    assert "TRANSFER" not in [e["type"] for e in phone.events]


def test_linphone_completes_an_attended_transfer_with_replaces_in_refer_to(tmp_path: Path) -> None:
    """RFC 5589 §7.1's end: the transferee calls the operator with the Replaces the Refer-To
    carried (RFC 3891 §6.1's escaping), and the operator swaps its call for the transferee's."""
    with (
        PulseAudio(tmp_path / "pulse") as pulse,
        Linphonec(tmp_path / "operator", None, auto_answer=True, pulse=pulse) as operator,
        Linphonec(tmp_path / "transferee", None, auto_answer=True, pulse=pulse) as transferee,
        Baresip(tmp_path / "consult") as consult,  # the transferor's call with the operator
    ):
        consult.dial(operator.uri("operator"))
        consult.wait_event("CALL_ESTABLISHED")
        dialog = answered_dialog(operator)
        refer_to = f"<{operator.uri('operator')}?Replaces={quote(dialog.replaces, safe='')}>"
        run = refer_as_transferor(transferee.hostport, tmp_path / "sipp", refer_to=refer_to)
        assert run.returncode == 0, f"{run.explain()}\n--- linphone ---\n{transferee.log[-3000:]}"
        closed = consult.wait_event("CALL_CLOSED")  # the operator's BYE: its call was replaced

    assert closed["param"] == "Connection reset by peer"
    assert [n.status for n in notifies(run)] == [100, 200]
    assert f"Replaces: {dialog.replaces}" in operator.log  # the header the transferee sent
