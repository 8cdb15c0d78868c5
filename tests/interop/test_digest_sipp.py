"""Our digest credentials, checked by SIPp's own digest code (``verifyauth``).

A SIPp UAS (scenarios/digest_uas.xml, digest_proxy_uas.xml) challenges an INVITE that this test
sends over UDP on 127.0.0.1, signs with ``relay.sip.digest.DigestSession`` and resubmits; SIPp
answers 200 only if its ``verifyauth`` computes the same response (403 otherwise). The BYE is
pre-authorized with the same nonce and nc 2, and checked the same way. SIPp 3.6.1 (Debian 12)
verifies MD5 only (``qop`` auth, auth-int or none; SHA-256 arrived in SIPp 3.7.3), and reads only
the Authorization field: SHA-256 and SHA-512-256 are cross-checked against another implementation
in test_digest_requests.py.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from relay.ids import SeededIdSource, new_branch, new_tag
from relay.sip.digest import Credentials, DigestSession, Retry
from relay.sip.syntax.headers import Via
from relay.sip.syntax.message import Request, Response, build_request
from relay.sip.syntax.parser import parse_message
from relay.sip.syntax.uri import NameAddr, SipUri
from tests.interop.sipp import SCENARIOS, scenario
from tests.interop.stack import require
from tests.support.ports import PortTaken, address_in_use, free_sip_port, with_fresh_ports

pytestmark = pytest.mark.interop

USER, PASSWORD = "trunkuser", 'pa"ss w:rd'
RESPONSE_WAIT_S = 0.5
"""How long one send waits for SIPp's answer before the request is sent again (UDP)."""
SENDS = 20
"""Bound on sends of one request: SIPp may still be starting when the first INVITE leaves."""
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class _Uac:
    """Just enough of a UAC on a UDP socket to walk one INVITE dialog against SIPp."""

    def __init__(self, sipp_port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(RESPONSE_WAIT_S)
        self.port = self.sock.getsockname()[1]
        self.peer = ("127.0.0.1", sipp_port)
        self.ids = SeededIdSource(9)
        self.uri = SipUri(user="+15551234567", host="127.0.0.1", port=sipp_port)
        self.from_ = NameAddr(
            uri=SipUri(user="agent", host="127.0.0.1"), params=(("tag", new_tag(self.ids)),)
        )
        self.call_id = f"digest-{self.ids.token(8)}@127.0.0.1"
        self.cseq = 0

    def request(
        self,
        method: str,
        *,
        to_tag: str | None = None,
        branch: str | None = None,
        body: bytes = b"",
    ) -> Request:
        if method != "ACK":
            self.cseq += 1
        to_params = (("tag", to_tag),) if to_tag else ()
        return build_request(
            method,
            self.uri,
            via=Via(
                transport="UDP",
                host="127.0.0.1",
                port=self.port,
                params=(("branch", branch or new_branch(self.ids)),),
            ),
            from_=self.from_,
            to=NameAddr(uri=self.uri, params=to_params),
            call_id=self.call_id,
            cseq=self.cseq,
            contact=NameAddr(uri=SipUri(user="agent", host="127.0.0.1", port=self.port)),
            body=body,
            content_type="application/sdp" if body else None,
        )

    def exchange(self, request: Request) -> Response:
        """Send ``request`` until a final response comes back (bounded), and return it."""
        for _ in range(SENDS):
            self.sock.sendto(bytes(request), self.peer)
            try:
                while True:
                    message = parse_message(self.sock.recv(65535))
                    if isinstance(message, Response) and message.status >= 200:
                        return message
            except TimeoutError:
                continue
        raise AssertionError(f"no final response to {request.method} after {SENDS} sends")

    def ack(self, invite: Request, response: Response) -> None:
        """ACK a final response: a non-2xx on the INVITE's branch (RFC 3261 §17.1.1.3)."""
        branch = invite.branch if response.status >= 300 else None
        ack = self.request("ACK", to_tag=response.to.tag, branch=branch)  # CSeq: the INVITE's
        self.sock.sendto(bytes(ack), self.peer)


@contextmanager
def _sipp(path: Path, tmp_path: Path, **keys: str) -> Iterator[int]:
    """Run SIPp as the UAS of scenario ``path`` for one call; yield its port; check its end."""
    sipp = require("sipp")

    def start() -> tuple[subprocess.Popen[str], int]:
        port = free_sip_port()
        command = [
            "timeout", "-k", "3", "40", sipp, "-sf", str(path), "-i", "127.0.0.1",
            "-p", str(port), "-m", "1", "-nostdin", "-timeout", "30s", "-timeout_error",
            "-trace_msg", "-message_file", str(tmp_path / "messages.log"),
            "-trace_err", "-error_file", str(tmp_path / "errors.log"),
        ]  # fmt: skip
        for key, value in keys.items():
            command += ["-key", key, value]
        process = subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            process.wait(timeout=0.3)  # an early exit is a port taken or a bad scenario
        except subprocess.TimeoutExpired:
            return process, port
        output = process.stdout.read() if process.stdout else ""
        if address_in_use(output):
            raise PortTaken(output)
        raise AssertionError(f"sipp exited at once (rc {process.returncode}):\n{output[-3000:]}")

    process, port = with_fresh_ports(start)
    try:
        yield port
        output, _ = process.communicate(timeout=45)
        trace = (
            (tmp_path / "messages.log").read_text(errors="replace")
            if (tmp_path / "messages.log").exists()
            else ""
        )
        assert process.returncode == 0, (
            f"sipp rc {process.returncode}\n{output[-2000:]}\n{trace[-4000:]}"
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _retry(session: DigestSession, response: Response, request: Request) -> Retry:
    verdict = session.on_response(response, request)
    assert isinstance(verdict, Retry), verdict
    return verdict


def _resubmit(uac: _Uac, invite: Request, retry: Retry) -> Request:
    """The INVITE again, with a new CSeq and branch (RFC 3261 §22.1) and the credentials."""
    again = uac.request("INVITE", body=invite.body)
    return Request("INVITE", again.uri, headers=retry.apply(again.headers), body=again.body)


def _shown_to_sipp(fields: tuple[tuple[str, str], ...]) -> Retry:
    """The credential fields, each Proxy-Authorization also carried as Authorization.

    SIPp 3.6.1's verifyauth reads the Authorization field only (src/call.cpp looks up
    "Authorization:"); a proxy's credentials have the same syntax and digest (RFC 3261 §22.3),
    so the same value under that name lets SIPp check it.
    """
    mirrored = [("Authorization", value) for name, value in fields if name == "Proxy-Authorization"]
    return Retry((*fields, *mirrored))


@pytest.mark.parametrize(
    ("status", "qop"),
    [(401, "auth"), (401, "auth-int"), (401, None), (407, "auth")],
    ids=["401-auth", "401-auth-int", "401-rfc2069", "407-auth"],
)
def test_sipp_verifies_the_credentials_of_a_challenged_invite_and_of_the_bye(
    status: int, qop: str | None, tmp_path: Path
) -> None:
    header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    challenge = 'Digest realm="trunk.example", nonce="4f1c2d9e7ab0", opaque="o-1", algorithm=MD5'
    if qop:
        challenge += f', qop="{qop}"'
    reason = "Unauthorized" if status == 401 else "Proxy Authentication Required"
    uas = scenario("digest_uas.xml", tmp_path, status=str(status), reason=reason)
    keys = {"challenge_header": header, "challenge": challenge, "user": USER, "pass": PASSWORD}
    session = DigestSession(Credentials(USER, PASSWORD), SeededIdSource(1))

    with _sipp(uas, tmp_path, **keys) as port:
        uac = _Uac(port)
        invite = uac.request("INVITE", body=SDP)
        challenged = uac.exchange(invite)
        assert challenged.status == status
        uac.ack(invite, challenged)
        retry = _retry(session, challenged, invite)
        assert [name for name, _ in retry.headers] == [
            "Authorization" if status == 401 else "Proxy-Authorization"
        ]

        signed = _resubmit(uac, invite, _shown_to_sipp(retry.headers))
        answer = uac.exchange(signed)
        assert answer.status == 200, f"{answer.status} {answer.reason}"
        uac.ack(signed, answer)
        assert session.on_response(answer, signed) is None

        bye = uac.request("BYE", to_tag=answer.to.tag)
        pre_authorized = _shown_to_sipp(session.authorization_headers(bye))
        assert "nc=00000002" in pre_authorized.headers[0][1] or qop is None
        bye = Request("BYE", bye.uri, headers=pre_authorized.apply(bye.headers))
        done = uac.exchange(bye)
        assert done.status == 200, f"{done.status} {done.reason}"


def test_a_wrong_password_does_not_verify_at_sipp(tmp_path: Path) -> None:
    challenge = 'Digest realm="trunk.example", nonce="4f1c2d9e7ab0", qop="auth"'
    uas = scenario("digest_uas.xml", tmp_path, status="401", reason="Unauthorized")
    keys = {"challenge_header": "WWW-Authenticate", "challenge": challenge}
    session = DigestSession(Credentials(USER, "not the password"), SeededIdSource(2))

    with _sipp(uas, tmp_path, user=USER, **{"pass": PASSWORD}, **keys) as port:
        uac = _Uac(port)
        invite = uac.request("INVITE", body=SDP)
        challenged = uac.exchange(invite)
        uac.ack(invite, challenged)
        signed = _resubmit(uac, invite, _retry(session, challenged, invite))
        refused = uac.exchange(signed)

    assert (refused.status, refused.reason) == (403, "INVITE credentials did not verify")


def test_a_proxy_s_credentials_are_kept_when_the_uas_challenges_next(tmp_path: Path) -> None:
    keys = {
        "proxy_challenge": 'Digest realm="proxy.example", nonce="p-91a", qop="auth"',
        "challenge": 'Digest realm="uas.example", nonce="u-27c", qop="auth,auth-int"',
    }
    session = DigestSession(Credentials(USER, PASSWORD), SeededIdSource(3))

    with _sipp(
        SCENARIOS / "digest_proxy_uas.xml", tmp_path, user=USER, **{"pass": PASSWORD}, **keys
    ) as port:
        uac = _Uac(port)
        invite = uac.request("INVITE", body=SDP)
        for expected in (407, 401):
            challenged = uac.exchange(invite)
            assert challenged.status == expected, f"{challenged.status} {challenged.reason}"
            uac.ack(invite, challenged)
            invite = _resubmit(uac, invite, _retry(session, challenged, invite))
        answer = uac.exchange(invite)
        assert answer.status == 200, f"{answer.status} {answer.reason}"
        uac.ack(invite, answer)

    assert invite.headers.count("Proxy-Authorization") == invite.headers.count("Authorization") == 1
