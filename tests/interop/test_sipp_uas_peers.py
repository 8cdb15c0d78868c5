"""The SIPp callees of outgoing calls, proven with SIPp (and baresip) as the caller.

Each ``scenarios/uas_*.xml`` is a peer sipline's outgoing calls will be tested against; here a
SIPp UAC (or baresip, which decodes what it hears) plays sipline's part, so that each peer is
known to do what its comment says before sipline is put in front of it. Both ends must succeed
(SIPp rc 0), and the trace must show the exchange the scenario promises. `digest.verify`, the
independent checker of the answers SIPp 3.6.1 cannot verify (SHA-256, Proxy-Authorization), is
tested here against RFC 7616's worked example and against SIPp's own MD5 answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop import digest
from tests.interop.baresip import Baresip
from tests.interop.sipp import SippRun, run_sipp_uac, scenario
from tests.interop.sipp_uas import AUTH_PASSWORD, AUTH_USER, TONE_HZ, SippUas, parse_trace
from tests.interop.tone import dominant_frequency, read_wav, sounding

pytestmark = pytest.mark.interop

CALL_MS = "300"  # how long the SIPp callers stay in an answered call (-d)


def call(
    uas: SippUas,
    workdir: Path,
    scenario_file: Path | None = None,
    extra: tuple[str, ...] = (),
    timeout_s: int = 15,
) -> SippRun:
    """Run one SIPp caller against ``uas``; the built-in ``uac`` unless a scenario is given."""
    return run_sipp_uac(
        uas.hostport,
        workdir / "caller",
        service="service",
        builtin=None if scenario_file else "uac",
        scenario_file=scenario_file,
        transport=uas.transport,
        timeout_s=timeout_s,
        extra=extra,
    )


def both_succeed(uas: SippUas, caller: SippRun) -> SippRun:
    callee = uas.wait()
    assert caller.returncode == 0, f"caller:\n{caller.explain()}\ncallee:\n{callee.explain()}"
    assert callee.returncode == 0, f"callee:\n{callee.explain()}\ncaller:\n{caller.explain()}"
    return callee


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_answer_then_the_caller_hangs_up(tmp_path: Path, transport: str) -> None:
    with SippUas("uas_answer", tmp_path, transport=transport) as uas:
        # Not the built-in uac: it closes its TCP connection as soon as its BYE is answered,
        # and SIPp fails a call whose connection closes before it reaches its timewait.
        caller = call(uas, tmp_path, scenario("uac_call.xml", tmp_path), extra=("-d", CALL_MS))
        both_succeed(uas, caller)

    assert caller.exchange() == ["INVITE", "100", "180", "200", "ACK", "BYE", "200"]
    [offer] = uas.received("INVITE")
    assert "sip:sipp@" in (offer.header("From") or "")
    [answer] = uas.sent("200")[:1]
    assert "m=audio" in answer.body and "a=rtpmap:0 PCMU/8000" in answer.body


def test_answer_then_the_callee_hangs_up(tmp_path: Path) -> None:
    with SippUas("uas_answer", tmp_path, hangup_after_ms=300) as uas:
        caller = call(uas, tmp_path, scenario("bye_from_relay.xml", tmp_path, bye_within_ms="8000"))
        both_succeed(uas, caller)

    [bye] = uas.sent("BYE")
    [invite] = uas.received("INVITE")
    assert bye.call_id == invite.call_id
    assert bye.request_uri is not None and "sipp@" in bye.request_uri  # the caller's Contact
    assert uas.received("BYE") == []


@pytest.mark.parametrize(
    ("name", "status"), [("uas_busy", "486"), ("uas_not_found", "404"), ("uas_decline", "603")]
)
def test_rejecting_callees_answer_their_status_and_take_the_ack(
    tmp_path: Path, name: str, status: str
) -> None:
    with SippUas(name, tmp_path) as uas:
        caller = call(uas, tmp_path, scenario("uac_final.xml", tmp_path, status=status))
        both_succeed(uas, caller)

    assert caller.exchange() == ["INVITE", "100", status, "ACK"]


def test_ring_no_answer_takes_a_matching_cancel(tmp_path: Path) -> None:
    with SippUas("uas_ring_no_answer", tmp_path) as uas:
        caller = call(uas, tmp_path, scenario("cancel.xml", tmp_path))
        both_succeed(uas, caller)

    assert [m.kind for m in uas.received()] == ["INVITE", "CANCEL", "ACK"]
    assert [m.kind for m in uas.sent()] == ["100", "180", "200", "487"]
    [invite], [cancel] = uas.received("INVITE"), uas.received("CANCEL")
    assert cancel.cseq == (invite.cseq[0], "CANCEL")


def test_ring_no_answer_fails_a_cancel_of_another_branch(tmp_path: Path) -> None:
    text = scenario("cancel.xml", tmp_path).read_text()
    at = text.index("CANCEL sip:")
    wrong = tmp_path / "cancel-wrong-branch.xml"
    wrong.write_text(text[:at] + text[at:].replace("-inv;rport", "-other;rport", 1))

    with SippUas("uas_ring_no_answer", tmp_path, timeout_s=10) as uas:
        call(uas, tmp_path, wrong, timeout_s=3)  # it waits in vain for the CANCEL's 200
        callee = uas.wait()

    assert callee.returncode == 1, callee.explain()
    assert uas.sent("487") == []


@pytest.mark.parametrize(("password", "final"), [(AUTH_PASSWORD, "200"), ("wrong", "403")])
def test_md5_challenge_is_verified_by_sipp(tmp_path: Path, password: str, final: str) -> None:
    with SippUas("uas_auth_md5", tmp_path) as uas:
        caller = call(
            uas,
            tmp_path,
            scenario("uac_auth.xml", tmp_path),
            extra=("-au", AUTH_USER, "-ap", password, "-d", CALL_MS),
        )
        both_succeed(uas, caller)

    assert [m.kind for m in uas.sent()][:2] == ["401", final], uas.wait().explain()
    first, retry = uas.received("INVITE")
    assert retry.cseq[0] == first.cseq[0] + 1
    assert retry.header("Via") != first.header("Via")  # a new transaction: a new branch
    challenge = uas.sent("401")[0].header("WWW-Authenticate")
    answer = retry.header("Authorization")
    assert challenge and answer
    # The independent checker agrees with SIPp's verifyauth, both ways.
    assert digest.verify(
        answer, method="INVITE", password=AUTH_PASSWORD, challenge=challenge, username=AUTH_USER
    ) is (final == "200")


@pytest.mark.parametrize("password", [AUTH_PASSWORD, "wrong"])
def test_proxy_challenge_is_answered_with_proxy_authorization(
    tmp_path: Path, password: str
) -> None:
    with SippUas("uas_proxy_auth", tmp_path) as uas:
        caller = call(
            uas,
            tmp_path,
            scenario("uac_auth.xml", tmp_path),
            extra=("-au", AUTH_USER, "-ap", password, "-d", CALL_MS),
        )
        both_succeed(uas, caller)

    # SIPp 3.6.1 cannot verify a Proxy-Authorization: any Digest answer gets 200; the hash is
    # the checker's business.
    assert [m.kind for m in uas.sent()][:2] == ["407", "200"]
    _, retry = uas.received("INVITE")
    challenge = uas.sent("407")[0].header("Proxy-Authenticate")
    answer = retry.header("Proxy-Authorization")
    assert challenge and answer and retry.header("Authorization") is None
    assert digest.verify(
        answer, method="INVITE", password=AUTH_PASSWORD, challenge=challenge, username=AUTH_USER
    ) is (password == AUTH_PASSWORD)


def test_the_checker_reproduces_rfc_7616_worked_example() -> None:
    # RFC 7616 §3.9.1: user "Mufasa", password "Circle of Life", GET /dir/index.html.
    fields = (
        'username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, qop=auth, '
        'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    for algorithm, response in [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ]:
        params = digest.parse_params(f"Digest {fields}, algorithm={algorithm}")
        assert digest.expected_response(params, method="GET", password="Circle of Life") == response


def test_early_media_then_answer_is_one_dialog(tmp_path: Path) -> None:
    with SippUas("uas_early_media", tmp_path) as uas:
        caller = call(uas, tmp_path, scenario("uac_call.xml", tmp_path), extra=("-d", CALL_MS))
        both_succeed(uas, caller)

    heard = [m for m in parse_trace(caller.messages) if m.direction == "received"]
    progress = next(m for m in heard if m.status == 183)
    answer = next(m for m in heard if m.status == 200)
    assert "m=audio" in progress.body and "a=rtpmap:0 PCMU/8000" in progress.body
    assert progress.header("To") == answer.header("To")  # the same To tag: one dialog


def test_forked_answers_are_both_acked_and_the_second_is_hung_up(tmp_path: Path) -> None:
    with SippUas("uas_forked", tmp_path) as uas:
        caller = call(uas, tmp_path, scenario("uac_forked.xml", tmp_path), extra=("-d", CALL_MS))
        both_succeed(uas, caller)

    assert [m.kind for m in uas.received()] == ["INVITE", "ACK", "ACK", "BYE", "BYE"]
    in_dialog = [m for m in uas.received() if m.method in ("ACK", "BYE")]
    # The callee's To tags are <pid>SIPpTag0<branch><call number>.
    branches = [(m.header("To") or "").split("SIPpTag0", 1)[1][0] for m in in_dialog]
    assert branches == ["1", "2", "2", "1"]


def test_the_tone_callee_is_heard_by_baresip(tmp_path: Path) -> None:
    with SippUas("uas_answer_tone", tmp_path / "uas", hangup_after_ms=2000) as uas:
        with Baresip(tmp_path / "baresip", lifetime_s=30) as phone:
            phone.dial(uas.uri())
            phone.wait_event("CALL_ESTABLISHED", timeout_s=10)
            phone.wait_event("CALL_CLOSED", timeout_s=15)  # the callee's BYE
            samples, rate = read_wav(phone.heard())
        callee = uas.wait()

    assert callee.returncode == 0, callee.explain()
    assert uas.sent("BYE")
    heard = sounding(samples, rate)
    assert len(heard) >= rate, f"only {len(heard)} samples of sound"  # at least a second
    assert dominant_frequency(heard, rate) == pytest.approx(TONE_HZ, abs=5)
