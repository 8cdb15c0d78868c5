"""sipline's outgoing calls through Kamailio as a SIP trunk, to a baresip that answers by itself.

The trunk (``kamailio.py``) challenges each new INVITE for one static user (401, or 407 as a
proxy; MD5 or SHA-256, ``qop=auth``), answers a wrong password 403, and relays the authenticated
INVITE, record-routed, to the baresip callee. The relay runs in the test's loop
(``outgoing.py``), dials over UDP, TCP and TLS, and hangs up through its ``hangup`` handler
once the agent joined. Kamailio's own Digest check is the independent proof of the answer;
baresip's events that the call reached it; the outcome is read from the recorded events
(docs/relay.md).

Over TLS the trunk is reached as a carrier's is, by its domain: the relay dials
``sip:...@trunk.test;transport=tls``, dnsmasq (a real DNS server on 127.0.0.1, the relay's
``SIPLINE_DNS_SERVERS``) answers ``_sips._tcp.trunk.test`` with an SRV record pointing at
``edge.provider.test``, whose address is 127.0.0.1; Kamailio presents a certificate for
``DNS:trunk.test`` only (no IP address, not the SRV target), signed by a throwaway CA that the
relay trusts through ``SIPLINE_TLS_CA_FILE`` (RFC 5922 §4: the domain dialled is what the
server proves). A certificate for ``other.test`` ends the call before Kamailio sees an INVITE.
The relay listens on TLS itself, for its Via and Contact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from relay.config import RelaySettings
from relay.transport.dns import DnsSettings
from relay.transport.tls import ensure_self_signed
from tests.integration.relay.calls.dialing import encrypted
from tests.interop.baresip import Baresip
from tests.interop.dnsmasq import Dnsmasq
from tests.interop.kamailio import TRUNK_PASSWORD, TRUNK_USER, KamailioTrunk
from tests.interop.outgoing import Dialled, dial, run_scenario
from tests.support.ports import free_port

pytestmark = pytest.mark.interop

ANSWER = ";answermode=auto"


TRUNK_DOMAIN = "trunk.test"
SRV_TARGET = "edge.provider.test"


def with_tls(
    tmp_path: Path, trunk: KamailioTrunk, dns: Dnsmasq
) -> Callable[[RelaySettings], RelaySettings]:
    """The relay's own TLS listener (needed for a TLS Via and Contact: a throwaway certificate),
    the trunk's CA as ``SIPLINE_TLS_CA_FILE``, and dnsmasq as ``SIPLINE_DNS_SERVERS``."""
    cert, key = tmp_path / "relay.pem", tmp_path / "relay.key"
    ensure_self_signed(cert, key, ["127.0.0.1"])

    def settings(base: RelaySettings) -> RelaySettings:
        return replace(
            base, tls_cert_path=cert, tls_key_path=key, tls_port=free_port(),
            tls_ca_file=trunk.certificate, dns=DnsSettings(nameservers=(dns.nameserver,)),
        )  # fmt: skip

    return settings


def trunk_zone(trunk: KamailioTrunk) -> list[str]:
    """trunk.test's SIP-over-TLS service (RFC 3263 §4.2) at another host name, on 127.0.0.1."""
    return [
        f"srv-host=_sips._tcp.{TRUNK_DOMAIN},{SRV_TARGET},{trunk.tls_port},0,1",
        f"host-record={SRV_TARGET},127.0.0.1",
    ]


def call_through_trunk(
    tmp_path: Path,
    *,
    transport: str,
    proxy_auth: bool = False,
    sha256: bool = False,
    password: str = TRUNK_PASSWORD,
    certificate_for: str = TRUNK_DOMAIN,
) -> tuple[Dialled, str, list[str]]:
    """Dial ``bob`` through the trunk; return the call, the trunk's log and baresip's events."""
    answered = password == TRUNK_PASSWORD and certificate_for == TRUNK_DOMAIN
    with contextlib.ExitStack() as stack:
        callee = stack.enter_context(Baresip(tmp_path / "callee", account_params=ANSWER))
        trunk = stack.enter_context(
            KamailioTrunk(
                tmp_path / "trunk", callee_port=callee.sip_port, proxy_auth=proxy_auth,
                sha256=sha256, certificate_names=[f"DNS:{certificate_for}"],
            )
        )  # fmt: skip
        to = trunk.uri("+15551234567", transport)
        settings: Callable[[RelaySettings], RelaySettings] = lambda base: base  # noqa: E731
        if transport == "tls":  # by domain, through DNS, as a carrier's trunk is reached
            dns = stack.enter_context(Dnsmasq(tmp_path, trunk_zone(trunk)))
            settings = with_tls(tmp_path, trunk, dns)
            to = f"sip:+15551234567@{TRUNK_DOMAIN};transport=tls"
        call = run_scenario(
            lambda: dial(
                to, tmp_path, answered=answered, hang_up_after_join=answered,
                username=TRUNK_USER, passwordCiphertext=encrypted(password), settings=settings,
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
    tmp_path: Path, transport: str, proxy_auth: bool, sha256: bool
) -> None:
    call, log, _ = call_through_trunk(
        tmp_path, transport=transport, proxy_auth=proxy_auth, sha256=sha256
    )
    assert "trunk: rejected" not in log, log[-3000:]
    # A callee may answer without a 180 (RFC 3261 §13.3.1: provisional responses are optional);
    # baresip's auto-answer sometimes does, so `ringing` is allowed, not required.
    kinds = [kind for kind in call.kinds if kind != "ringing"]
    assert kinds[:3] == ["invite_sent", "answered", "agent_joined"], log[-3000:]
    assert call.outcome == ("agent_hangup", "SIP_TERMINATION_NORMAL")


@pytest.mark.parametrize("transport", ["udp", "tls"])
def test_a_wrong_password_is_refused_403_and_ends_rejected(tmp_path: Path, transport: str) -> None:
    call, log, seen = call_through_trunk(tmp_path, transport=transport, password="not-the-password")
    assert "trunk: rejected" in log
    assert "CALL_INCOMING" not in seen and "CALL_ESTABLISHED" not in seen
    assert (call.leg_ended().reason, call.leg_ended().sip_status) == ("rejected", 403)
    assert call.outcome == ("unjoined", "SIP_TERMINATION_REJECTED")


def test_a_trunk_whose_certificate_names_another_domain_is_not_called(tmp_path: Path) -> None:
    """The trunk's certificate is for other.test (signed by the CA the relay trusts): the TLS
    handshake fails, no INVITE reaches Kamailio, and the call ends saying why."""
    call, log, seen = call_through_trunk(tmp_path, transport="tls", certificate_for="other.test")
    assert "trunk: INVITE" not in log, log[-3000:]
    assert "CALL_INCOMING" not in seen
    ended = call.leg_ended()
    assert (ended.reason, ended.sip_status, ended.detail) == (
        "rejected", 503, "tls_verification_failed",
    )  # fmt: skip
    assert call.outcome == ("unjoined", "SIP_TERMINATION_DESTINATION_UNAVAILABLE")
