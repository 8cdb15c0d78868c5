"""sipline's outgoing calls through Kamailio as a SIP trunk, to a baresip that answers by itself.

The trunk (``kamailio.py``) challenges each new INVITE for one static user (401, or 407 as a
proxy; MD5 or SHA-256, ``qop=auth``), answers a wrong password 403, and relays the authenticated
INVITE, record-routed, to the baresip callee. The relay runs in the test's loop
(``outgoing.py``), dials over UDP, TCP and TLS (the relay's TLS client trusts the trunk's
throwaway certificate through ``SSL_CERT_FILE``, as OpenSSL reads it; it listens on TLS itself,
for its Via and Contact), and hangs up through its ``hangup`` handler once the agent joined.
Kamailio's own Digest check is the independent proof of the answer; baresip's events that the
call reached it; the outcome is read from the recorded events (docs/relay.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from relay.config import RelaySettings
from relay.transport.tls import ensure_self_signed
from tests.integration.relay.calls.dialing import encrypted
from tests.interop.baresip import Baresip
from tests.interop.kamailio import TRUNK_PASSWORD, TRUNK_USER, KamailioTrunk
from tests.interop.outgoing import Dialled, dial, run_scenario
from tests.support.ports import free_port

pytestmark = pytest.mark.interop

ANSWER = ";answermode=auto"


def with_tls(tmp_path: Path) -> Callable[[RelaySettings], RelaySettings]:
    """The relay's own TLS listener (needed for a TLS Via and Contact): a throwaway certificate."""
    cert, key = tmp_path / "relay.pem", tmp_path / "relay.key"
    ensure_self_signed(cert, key, ["127.0.0.1"])

    def settings(base: RelaySettings) -> RelaySettings:
        return replace(base, tls_cert_path=cert, tls_key_path=key, tls_port=free_port())

    return settings


def call_through_trunk(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    transport: str,
    proxy_auth: bool = False,
    sha256: bool = False,
    password: str = TRUNK_PASSWORD,
) -> tuple[Dialled, str, list[str]]:
    """Dial ``bob`` through the trunk; return the call, the trunk's log and baresip's events."""
    answered = password == TRUNK_PASSWORD
    with (
        Baresip(tmp_path / "callee", account_params=ANSWER) as callee,
        KamailioTrunk(
            tmp_path / "trunk", callee_port=callee.sip_port, proxy_auth=proxy_auth, sha256=sha256
        ) as trunk,
    ):
        monkeypatch.setenv("SSL_CERT_FILE", str(trunk.certificate))
        settings = with_tls(tmp_path) if transport == "tls" else (lambda base: base)
        call = run_scenario(
            lambda: dial(
                trunk.uri("+15551234567", transport), tmp_path, answered=answered,
                hang_up_after_join=answered, username=TRUNK_USER,
                passwordCiphertext=encrypted(password), settings=settings,
            )
        )  # fmt: skip
        if answered:
            callee.wait_event("CALL_ESTABLISHED", timeout_s=10)
            callee.wait_event("CALL_CLOSED", timeout_s=10)  # our BYE, through the route set
        seen = [str(event.get("type")) for event in callee.events]
        log = trunk.log
    return call, log, seen


@pytest.mark.parametrize(
    ("transport", "proxy_auth", "sha256"),
    [
        ("udp", False, False),
        ("tcp", False, False),
        ("tls", False, False),
        ("udp", True, False),
        ("udp", False, True),
        ("tcp", True, True),
        ("tls", True, True),
    ],
    ids=["udp-401-md5", "tcp-401-md5", "tls-401-md5", "udp-407-md5", "udp-401-sha256",
         "tcp-407-sha256", "tls-407-sha256"],
)  # fmt: skip
def test_a_call_through_the_trunk_reaches_the_callee(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str, proxy_auth: bool, sha256: bool
) -> None:
    call, log, _ = call_through_trunk(
        tmp_path, monkeypatch, transport=transport, proxy_auth=proxy_auth, sha256=sha256
    )
    assert "trunk: rejected" not in log, log[-3000:]
    assert call.kinds[:4] == ["invite_sent", "ringing", "answered", "agent_joined"], log[-3000:]
    assert call.outcome == ("agent_hangup", "SIP_TERMINATION_NORMAL")


@pytest.mark.parametrize("transport", ["udp", "tls"])
def test_a_wrong_password_is_refused_403_and_ends_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    call, log, seen = call_through_trunk(
        tmp_path, monkeypatch, transport=transport, password="not-the-password"
    )
    assert "trunk: rejected" in log
    assert "CALL_INCOMING" not in seen and "CALL_ESTABLISHED" not in seen
    assert (call.leg_ended().reason, call.leg_ended().sip_status) == ("rejected", 403)
    assert call.outcome == ("unjoined", "SIP_TERMINATION_REJECTED")
