"""Kamailio as the record-routing proxy in front of a transfer's operator (KamailioProxy), proven
without the relay: a transfer target can be ``sip:operator@<kamailio>``.

The operator is linphone (auto-answer, on a private PulseAudio: tests/interop/pulseaudio.py).
SIPp calls it through the proxy and hangs up through the route set the 200 carried; a user the
proxy does not know gets 404; and a second party's INVITE with Replaces through the proxy makes
the operator drop its first call (BYE along that call's route set) for the new one. With
``auth=True`` the proxy challenges first (407), as a provider's proxy would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.baresip import Baresip
from tests.interop.kamailio import TRUNK_PASSWORD, TRUNK_USER, KamailioProxy
from tests.interop.linphone import Linphonec
from tests.interop.pulseaudio import PulseAudio
from tests.interop.sipp import run_sipp_uac, scenario
from tests.interop.transfer_peers import answered_dialog, call_with_replaces, received, sent

pytestmark = pytest.mark.interop


def test_sipp_reaches_the_operator_through_the_proxy(tmp_path: Path) -> None:
    with (
        PulseAudio(tmp_path / "pulse") as pulse,
        Linphonec(tmp_path / "operator", None, auto_answer=True, pulse=pulse) as operator,
        KamailioProxy(tmp_path / "proxy", operator_port=operator.sip_port) as proxy,
    ):
        run = run_sipp_uac(
            proxy.hostport(),
            tmp_path / "caller",
            service=proxy.operator_user,
            scenario_file=scenario("uac_call.xml", tmp_path),
            extra=("-d", "500"),
        )
        assert run.returncode == 0, f"{run.explain()}\n--- kamailio ---\n{proxy.log[-3000:]}"
        operator.wait_state("End")  # the BYE reached linphone
        log = proxy.log

    assert "proxy: INVITE" in log and "to the operator" in log
    [answer] = [m for m in received(run) if m.status == 200 and m.cseq[1] == "INVITE"]
    route = ",".join(answer.headers("Record-Route"))
    assert proxy.hostport() in route, answer.text  # the proxy stays on the path ...
    [bye] = [m for m in sent(run) if m.method == "BYE"]
    assert proxy.hostport() in ",".join(bye.headers("Route")), bye.text  # ... and the BYE takes it
    assert run.exchange()[-2:] == ["BYE", "200"]


def test_the_proxy_refuses_other_users(tmp_path: Path) -> None:
    with KamailioProxy(tmp_path / "proxy", operator_port=9) as proxy:  # nothing is called
        run = run_sipp_uac(
            proxy.hostport(),
            tmp_path / "caller",
            service="someone-else",
            scenario_file=scenario("uac_final.xml", tmp_path, status="404"),
        )
        log = proxy.log

    assert run.returncode == 0, run.explain()
    assert "no such user" in log


def test_a_replacing_call_through_the_proxy(tmp_path: Path) -> None:
    with (
        PulseAudio(tmp_path / "pulse") as pulse,
        Linphonec(tmp_path / "operator", None, auto_answer=True, pulse=pulse) as operator,
        KamailioProxy(tmp_path / "proxy", operator_port=operator.sip_port) as proxy,
        Baresip(tmp_path / "first") as first,
    ):
        first.dial(proxy.operator_uri)
        first.wait_event("CALL_ESTABLISHED")
        dialog = answered_dialog(operator)
        run = call_with_replaces(
            proxy.hostport(), tmp_path / "second", replaces_value=dialog.replaces
        )
        assert run.returncode == 0, f"{run.explain()}\n--- linphone ---\n{operator.log[-3000:]}"
        closed = first.wait_event("CALL_CLOSED")

    assert closed["param"] == "Connection reset by peer"  # the operator's BYE, via the proxy
    assert run.exchange()[-4:] == ["200", "ACK", "BYE", "200"], run.exchange()


@pytest.mark.parametrize(("password", "answered"), [(TRUNK_PASSWORD, True), ("wrong", False)])
def test_the_proxy_with_auth_challenges_first(
    tmp_path: Path, password: str, answered: bool
) -> None:
    with (
        PulseAudio(tmp_path / "pulse") as pulse,
        Linphonec(tmp_path / "operator", None, auto_answer=True, pulse=pulse) as operator,
        KamailioProxy(tmp_path / "proxy", operator_port=operator.sip_port, auth=True) as proxy,
    ):
        run = run_sipp_uac(
            proxy.hostport(),
            tmp_path / "caller",
            service=proxy.operator_user,
            scenario_file=scenario("uac_auth.xml", tmp_path),
            extra=("-au", TRUNK_USER, "-ap", password, "-d", "500"),
        )
        if answered:
            operator.wait_state("End")
        log = proxy.log

    assert run.returncode == 0, f"{run.explain()}\n--- kamailio ---\n{log[-3000:]}"
    assert run.exchange()[:2] == ["INVITE", "407"]
    assert ("to the operator" in log) is answered
    assert ("403" in run.exchange()) is not answered
