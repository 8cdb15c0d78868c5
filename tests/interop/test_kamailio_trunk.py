"""Kamailio as a SIP trunk (tests/interop/kamailio.py), proven with SIPp and baresip as the caller.

The trunk challenges each INVITE for one static user; with the right password the call reaches
the callee behind it (a baresip that answers by itself), with a wrong one the caller gets 403 and
no call is placed. Over UDP and TCP the caller is SIPp (``uac_auth.xml``, ``-au``/``-ap``); over
TLS it is baresip, because Debian's SIPp 3.6.1 is built without TLS. The 407 and SHA-256 modes
are Kamailio's own Digest checks, which sipline's outgoing calls will meet later.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.baresip import Baresip
from tests.interop.kamailio import TRUNK_PASSWORD, TRUNK_USER, KamailioTrunk
from tests.interop.sipp import SippRun, run_sipp_uac, scenario

pytestmark = pytest.mark.interop

ANSWER = ";answermode=auto"


def sipp_call(trunk: KamailioTrunk, workdir: Path, transport: str, password: str) -> SippRun:
    return run_sipp_uac(
        trunk.hostport(transport),
        workdir / "caller",
        service="anyone",
        scenario_file=scenario("uac_auth.xml", workdir),
        transport=transport,
        timeout_s=15,
        extra=("-au", TRUNK_USER, "-ap", password, "-d", "500"),
    )


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_through_the_trunk_reaches_the_callee(tmp_path: Path, transport: str) -> None:
    with (
        Baresip(tmp_path / "callee", account_params=ANSWER) as callee,
        KamailioTrunk(tmp_path / "trunk", callee_port=callee.sip_port) as trunk,
    ):
        run = sipp_call(trunk, tmp_path, transport, TRUNK_PASSWORD)
        assert run.returncode == 0, f"{run.explain()}\n--- kamailio ---\n{trunk.log[-3000:]}"
        callee.wait_event("CALL_ESTABLISHED", timeout_s=10)
        callee.wait_event("CALL_CLOSED", timeout_s=10)  # SIPp's BYE, through the route set

    assert run.exchange()[:2] == ["INVITE", "401"]
    assert run.count("200") == 2 and run.count("403") == 0  # INVITE and BYE answered


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_wrong_password_gets_403_and_no_call(tmp_path: Path, transport: str) -> None:
    with Baresip(tmp_path / "callee", account_params=ANSWER) as callee:
        with KamailioTrunk(tmp_path / "trunk", callee_port=callee.sip_port) as trunk:
            run = sipp_call(trunk, tmp_path, transport, "not-the-password")
            log = trunk.log
        callee_log = callee.log

    assert run.returncode == 0, run.explain()
    assert run.exchange() == ["INVITE", "401", "ACK", "INVITE", "403", "ACK"], run.explain()
    assert "authenticated" not in log and "trunk: rejected" in log
    assert "answering call" not in callee_log  # baresip logs each call it answers


def test_the_proxy_challenge_is_kamailios_407(tmp_path: Path) -> None:
    with (
        Baresip(tmp_path / "callee", account_params=ANSWER) as callee,
        KamailioTrunk(tmp_path / "trunk", callee_port=callee.sip_port, proxy_auth=True) as trunk,
    ):
        run = sipp_call(trunk, tmp_path, "udp", TRUNK_PASSWORD)
        assert run.returncode == 0, f"{run.explain()}\n--- kamailio ---\n{trunk.log[-3000:]}"
        callee.wait_event("CALL_ESTABLISHED", timeout_s=10)

    assert run.exchange()[:2] == ["INVITE", "407"]
    assert "Proxy-Authorization: Digest" in run.messages


@pytest.mark.parametrize(("password", "established"), [(TRUNK_PASSWORD, True), ("wrong", False)])
def test_baresip_over_tls_through_the_trunk(
    tmp_path: Path, password: str, established: bool
) -> None:
    with Baresip(tmp_path / "callee", account_params=ANSWER) as callee:
        with KamailioTrunk(tmp_path / "trunk", callee_port=callee.sip_port) as trunk:
            caller_params = f";auth_user={TRUNK_USER};auth_pass={password}"
            with Baresip(
                tmp_path / "caller",
                account_params=caller_params,
                extra_config=f"sip_cafile {trunk.certificate}",
            ) as caller:
                caller.dial(trunk.uri("anyone", "tls"))
                if established:
                    caller.wait_event("CALL_ESTABLISHED", timeout_s=10)
                    callee.wait_event("CALL_ESTABLISHED", timeout_s=10)
                    caller.hang_up()
                    callee.wait_event("CALL_CLOSED", timeout_s=10)
                else:
                    closed = caller.wait_event("CALL_CLOSED", timeout_s=10)
                    assert "403" in str(closed.get("param")), closed
            log = trunk.log
        callee_log = callee.log

    assert "over tls" in log
    assert ("authenticated" in log) is established
    assert ("answering call" in callee_log) is established
