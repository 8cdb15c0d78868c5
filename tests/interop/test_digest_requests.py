"""Our digest responses against requests' ``HTTPDigestAuth``, an implementation we did not write.

SIPp 3.6.1 verifies MD5 only (test_digest_sipp.py), so SHA-256 (and MD5-sess, which it lacks
too) is cross-checked here: for any realm, nonce, username, password and method, requests and
``relay.sip.digest`` must compute the same ``response``, for a first use of a nonce (through a
``DigestSession`` answering a 401) and for its reuse with nc 2. requests takes the digest-uri from
its URL's path; the URL ``x:<sip URI>`` makes that path the SIP Request-URI itself. requests does
not do ``auth-int``, ``-sess`` other than MD5-sess, nor SHA-512-256: those rest on the RFC 7616
vectors of tests/unit/relay/sip/test_digest.py (SHA-512-256 §3.9.2) and on SIPp (auth-int).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.auth import HTTPDigestAuth

from relay.sip.digest import Credentials, DigestSession, Retry, authorization
from relay.sip.digest_challenge import parse_challenges
from relay.sip.syntax.headers import Headers
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.uri import SipUri

pytestmark = pytest.mark.interop

REQUEST_URI = "sip:+15551234567@trunk.example:5060;transport=tcp"


class _Cnonces:
    """An IdSource handing out the cnonces requests chose."""

    def __init__(self, *cnonces: str) -> None:
        self._cnonces = list(cnonces)

    def token(self, nbytes: int = 8) -> str:
        return self._cnonces.pop(0)

    def bits(self, n: int) -> int:
        raise AssertionError("digest draws tokens only")


def _params(value: str) -> dict[str, str]:
    pairs = re.findall(r'([a-z]+)=("[^"]*"|[^, ]+)', value.removeprefix("Digest "))
    return {name: text.strip('"') for name, text in pairs}


_QUOTABLE = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x17F, exclude_characters='"\\\x7f'),
    max_size=24,
)
_USERNAME = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x17F, exclude_characters='"\\\x7f'),
    min_size=1,
    max_size=16,
)
_PASSWORD = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)


@settings(max_examples=150)
@given(
    realm=_QUOTABLE,
    nonce=_QUOTABLE.filter(bool),
    username=_USERNAME,
    password=_PASSWORD,
    method=st.sampled_from(["INVITE", "REGISTER", "BYE", "OPTIONS"]),
    algorithm=st.sampled_from(["MD5", "MD5-sess", "SHA-256"]),
    qop=st.sampled_from(["auth", "auth,auth-int", None]),
)
def test_requests_and_we_compute_the_same_response(
    realm: str,
    nonce: str,
    username: str,
    password: str,
    method: str,
    algorithm: str,
    qop: str | None,
) -> None:
    if algorithm == "MD5-sess" and qop is None:
        return  # no cnonce without qop, so no -sess (RFC 2617 §3.2.2.2); we refuse that challenge
    theirs = HTTPDigestAuth(username, password)
    theirs.init_per_thread_state()
    theirs._thread_local.chal = {"realm": realm, "nonce": nonce, "algorithm": algorithm}
    if qop:
        theirs._thread_local.chal["qop"] = qop
    first, second = (
        _params(theirs.build_digest_header(method, f"x:{REQUEST_URI}") or "") for _ in "12"
    )
    challenge = f'Digest realm="{realm}", nonce="{nonce}", algorithm={algorithm}'
    if qop:
        challenge += f', qop="{qop}"'
    credentials = Credentials(username, password)
    session = DigestSession(credentials, _Cnonces(first.get("cnonce", "unused")))
    request = Request(method, SipUri.parse(REQUEST_URI), headers=Headers([("CSeq", f"1 {method}")]))
    challenged = Response(401, "Unauthorized", headers=Headers([("WWW-Authenticate", challenge)]))

    retry = session.on_response(challenged, request)
    [reused] = parse_challenges(challenge, proxy=False).challenges
    _, again = authorization(
        reused,
        credentials,
        method=method,
        uri=REQUEST_URI,
        nc=2,
        cnonce=second.get("cnonce", "unused"),
    )

    assert isinstance(retry, Retry)
    ours = _params(retry.headers[0][1])
    assert first["uri"] == ours["uri"] == REQUEST_URI
    assert ours["response"] == first["response"]
    assert _params(again)["response"] == second["response"]
    assert ours.get("nc") == first.get("nc") and second.get("nc", "00000002") == "00000002"
