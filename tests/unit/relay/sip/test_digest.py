"""Digest responses against the RFCs' worked examples, the password kept hidden, the retry policy.

Every expected ``response`` is printed in an RFC, not computed here:
- RFC 7616 §3.9.1 (MD5 and SHA-256, ``qop=auth``, the "Mufasa" example);
- RFC 7616 §3.9.2 (SHA-512-256 with ``userhash``) with the values of its erratum 4897 (the
  RFC's own were computed with a draft SHA-512/256 and match no implementation);
- RFC 2617 §3.5 (MD5, ``qop=auth``; note its password is "Circle Of Life");
- RFC 2069 §2.4 (MD5 without qop) with the value of its erratum 749.
The SIP-shaped cross-check (INVITE, a ``sip:`` digest-uri, ``auth-int``) is SIPp's
``verifyauth`` in tests/interop/test_digest_sipp.py.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.sip.digest import (
    MAX_REALMS,
    Credentials,
    DigestSession,
    GiveUp,
    GiveUpReason,
    Retry,
    authorization,
)
from relay.sip.digest_challenge import Challenge, parse_challenges
from relay.sip.syntax.headers import Headers
from relay.sip.syntax.message import REASON_PHRASES, Request, Response
from relay.sip.syntax.uri import SipUri

PASSWORD = "s3cr3t-pass"
CREDENTIALS = Credentials("alice", PASSWORD)


def _one(value: str, *, proxy: bool = False) -> Challenge:
    [challenge] = parse_challenges(value, proxy=proxy).challenges
    return challenge


def _params(header_value: str) -> dict[str, str]:
    """Read an Authorization value's parameters (a test-side reading, quotes removed)."""
    assert header_value.startswith("Digest ")
    pairs = re.findall(r'([a-z]+)=("(?:[^"\\]|\\.)*"|[^, ]+)', header_value[len("Digest ") :])
    return {name: value.strip('"') for name, value in pairs}


# --- the RFCs' worked examples ---------------------------------------------------------------

RFC7616 = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc_7616_section_3_9_1_mufasa(algorithm: str, response: str) -> None:
    challenge = _one(RFC7616.format(algorithm))
    mufasa = Credentials("Mufasa", "Circle of Life")

    name, value = authorization(
        challenge, mufasa, method="GET", uri="/dir/index.html", nc=1, cnonce=RFC7616_CNONCE
    )

    assert name == "Authorization"
    assert value == (
        'Digest username="Mufasa", realm="http-auth@example.org", '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", uri="/dir/index.html", '
        f'response="{response}", algorithm={algorithm}, '
        'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, nc=00000001, '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )


def test_rfc_7616_section_3_9_2_userhash_as_corrected_by_erratum_4897() -> None:
    challenge = _one(
        'Digest realm="api@example.org", qop="auth", algorithm=SHA-512-256, '
        'nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK", '
        'opaque="HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS", charset=UTF-8, userhash=true'
    )
    jason = Credentials("J\u00e4s\u00f8n Doe", "Secret, or not?")

    _, value = authorization(
        challenge,
        jason,
        method="GET",
        uri="/doe.json",
        nc=1,
        cnonce="NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
    )

    params = _params(value)
    assert params["username"] == "793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b"
    assert params["response"] == "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"
    assert params["userhash"] == "true" and params["algorithm"] == "SHA-512-256"


def test_rfc_2617_section_3_5() -> None:
    challenge = _one(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    mufasa = Credentials("Mufasa", "Circle Of Life")

    _, value = authorization(
        challenge, mufasa, method="GET", uri="/dir/index.html", nc=1, cnonce="0a4f113b"
    )

    assert _params(value)["response"] == "6629fae49393a05397450978507c4ef1"


def test_no_qop_is_rfc_2069_compatible_as_corrected_by_erratum_749() -> None:
    challenge = _one(
        'Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    mufasa = Credentials("Mufasa", "CircleOfLife")

    _, value = authorization(
        challenge, mufasa, method="GET", uri="/dir/index.html", nc=1, cnonce="x"
    )

    params = _params(value)
    assert params["response"] == "1949323746fe6a43ef61f9606e7febea"
    assert "cnonce" not in params and "nc" not in params and "qop" not in params


def test_auth_int_is_used_only_when_auth_is_not_offered_and_covers_the_body() -> None:
    only_int = _one('Digest realm="r", nonce="n", qop="auth-int"')
    both = _one('Digest realm="r", nonce="n", qop="auth-int,auth"')
    sign = {"method": "INVITE", "uri": "sip:bob@example.com", "nc": 1, "cnonce": "c"}

    with_body = _params(authorization(only_int, CREDENTIALS, body=b"v=0\r\n", **sign)[1])  # type: ignore[arg-type]
    other_body = _params(authorization(only_int, CREDENTIALS, body=b"v=1\r\n", **sign)[1])  # type: ignore[arg-type]

    assert with_body["qop"] == "auth-int" and with_body["response"] != other_body["response"]
    assert _params(authorization(both, CREDENTIALS, **sign)[1])["qop"] == "auth"  # type: ignore[arg-type]


def test_quotes_and_backslashes_in_challenge_values_are_escaped_back() -> None:
    challenge = _one('Digest realm="a \\"b\\" \\\\c", nonce="n"')

    _, value = authorization(challenge, CREDENTIALS, method="INVITE", uri="sip:x", nc=1, cnonce="c")

    assert 'realm="a \\"b\\" \\\\c"' in value


# --- the password stays hidden ---------------------------------------------------------------


def test_the_password_is_in_no_repr_str_or_header() -> None:
    session = DigestSession(CREDENTIALS, _Ids())
    retry = session.on_response(_challenge('realm="r", nonce="n"'), _invite())

    assert isinstance(retry, Retry)
    shown = [repr(CREDENTIALS), str(CREDENTIALS), f"{CREDENTIALS}", repr(session), repr(retry)]
    assert all(PASSWORD not in text for text in shown)
    assert repr(CREDENTIALS) == "Credentials(username='alice', password=<hidden>, realm=None)"


def test_bad_credentials_are_refused_without_echoing_the_password() -> None:
    for username in ("", "ali\r\nce"):
        with pytest.raises(ValueError) as caught:
            Credentials(username, PASSWORD)
        assert PASSWORD not in str(caught.value)


# --- the retry policy ------------------------------------------------------------------------


class _Ids:
    """cnonce-1, cnonce-2...: an IdSource whose tokens say in which order they were drawn."""

    def __init__(self) -> None:
        self.drawn = 0

    def token(self, nbytes: int = 8) -> str:
        self.drawn += 1
        return f"cnonce-{self.drawn}"

    def bits(self, n: int) -> int:
        raise AssertionError("digest draws tokens only")


def _invite(body: bytes = b"") -> Request:
    headers = Headers([("Call-ID", "c1@relay"), ("CSeq", "1 INVITE")])
    return Request(
        "INVITE", SipUri.parse("sip:+15551234567@trunk.example"), headers=headers, body=body
    )


def _challenge(*challenges: str, status: int = 401, proxy: list[str] | None = None) -> Response:
    """A 401/407 with these Digest challenges, each with ``qop="auth"`` added."""
    fields = [("WWW-Authenticate", f'Digest {c}, qop="auth"') for c in challenges]
    fields += [("Proxy-Authenticate", f'Digest {c}, qop="auth"') for c in proxy or []]
    return Response(status, REASON_PHRASES[status], headers=Headers(fields))


def _status(status: int) -> Response:
    return Response(status, REASON_PHRASES[status], headers=Headers())


def _sent(retry: Retry | GiveUp | None) -> list[tuple[str, dict[str, str]]]:
    assert isinstance(retry, Retry), retry
    return [(name, _params(value)) for name, value in retry.headers]


def test_a_401_is_answered_with_the_request_uri_and_a_fresh_cnonce() -> None:
    session = DigestSession(CREDENTIALS, _Ids())

    [(name, params)] = _sent(session.on_response(_challenge('realm="r", nonce="n1"'), _invite()))

    assert name == "Authorization"
    assert params["uri"] == "sip:+15551234567@trunk.example" and params["nonce"] == "n1"
    assert params["cnonce"] == "cnonce-1" and params["nc"] == "00000001"


def test_sha_256_is_preferred_to_md5_of_the_same_realm() -> None:
    session = DigestSession(CREDENTIALS, _Ids())
    response = _challenge(
        'realm="r", nonce="md5", algorithm=MD5', 'realm="r", nonce="sha", algorithm=SHA-256'
    )

    [(_, params)] = _sent(session.on_response(response, _invite()))

    assert params["algorithm"] == "SHA-256" and params["nonce"] == "sha"


def test_a_second_challenge_after_credentials_gives_up_with_its_status() -> None:
    session = DigestSession(CREDENTIALS, _Ids())
    _sent(session.on_response(_challenge('realm="r", nonce="n1"', status=407), _invite()))

    verdict = session.on_response(_challenge('realm="r", nonce="n2"', status=407), _invite())

    assert verdict == GiveUp(407, GiveUpReason.REJECTED, "Authorization for realm 'r' refused")


def test_stale_is_retried_once_with_the_new_nonce_then_gives_up() -> None:
    session = DigestSession(CREDENTIALS, _Ids())
    _sent(session.on_response(_challenge('realm="r", nonce="n1"'), _invite()))

    [(_, params)] = _sent(
        session.on_response(_challenge('realm="r", nonce="n2", stale=true'), _invite())
    )
    again = session.on_response(_challenge('realm="r", nonce="n3", stale=true'), _invite())

    assert params["nonce"] == "n2" and params["nc"] == "00000001" and params["cnonce"] == "cnonce-2"
    assert isinstance(again, GiveUp) and again.reason is GiveUpReason.REJECTED
    assert again.detail == "Authorization for realm 'r' stale again"


def test_a_proxy_realm_keeps_its_nonce_with_nc_plus_one_when_the_uas_challenges_next() -> None:
    session = DigestSession(CREDENTIALS, _Ids())
    _sent(
        session.on_response(_challenge(status=407, proxy=['realm="proxy", nonce="p"']), _invite())
    )

    sent = _sent(session.on_response(_challenge('realm="uas", nonce="u"'), _invite()))

    assert [(name, p["realm"], p["nonce"], p["nc"]) for name, p in sent] == [
        ("Proxy-Authorization", "proxy", "p", "00000002"),
        ("Authorization", "uas", "u", "00000001"),
    ]


def test_both_kinds_of_challenge_in_one_response_are_answered_together() -> None:
    session = DigestSession(CREDENTIALS, _Ids())
    response = _challenge('realm="uas", nonce="u"', status=407, proxy=['realm="proxy", nonce="p"'])

    sent = _sent(session.on_response(response, _invite()))

    assert sorted(name for name, _ in sent) == ["Authorization", "Proxy-Authorization"]


def test_retry_apply_replaces_earlier_credentials() -> None:
    headers = Headers(
        [("Call-ID", "c"), ("Authorization", "Digest old"), ("Proxy-Authorization", "x")]
    )

    applied = Retry((("Authorization", "Digest new"),)).apply(headers)

    assert list(applied) == [("Call-ID", "c"), ("Authorization", "Digest new")]


def test_credentials_are_reused_pre_emptively_and_an_expired_nonce_gets_one_fresh_try() -> None:
    session = DigestSession(CREDENTIALS, _Ids())
    _sent(session.on_response(_challenge('realm="r", nonce="n1"'), _invite()))
    assert session.on_response(_status(200), _invite()) is None

    [(_, refresh)] = [(n, _params(v)) for n, v in session.authorization_headers(_invite())]
    [(_, fresh)] = _sent(session.on_response(_challenge('realm="r", nonce="n2"'), _invite()))
    verdict = session.on_response(_challenge('realm="r", nonce="n3"'), _invite())

    assert (refresh["nonce"], refresh["nc"], refresh["cnonce"]) == ("n1", "00000002", "cnonce-1")
    assert (fresh["nonce"], fresh["nc"]) == ("n2", "00000001")
    assert isinstance(verdict, GiveUp) and verdict.reason is GiveUpReason.REJECTED


def test_provisional_responses_change_nothing() -> None:
    session = DigestSession(CREDENTIALS, _Ids())
    _sent(session.on_response(_challenge('realm="r", nonce="n1"'), _invite()))

    assert session.on_response(_status(180), _invite()) is None
    assert isinstance(session.on_response(_challenge('realm="r", nonce="n2"'), _invite()), GiveUp)


@pytest.mark.parametrize(
    ("response", "reason", "detail"),
    [
        (
            _challenge('realm="other", nonce="n"'),
            GiveUpReason.NO_CREDENTIALS,
            "no credentials for realm 'other'",
        ),
        (
            Response(
                401, "Unauthorized", headers=Headers([("WWW-Authenticate", 'Basic realm="r"')])
            ),
            GiveUpReason.UNSUPPORTED,
            "no challenge sipline can answer: Basic",
        ),
        (
            _challenge('realm="r"'),
            GiveUpReason.MALFORMED,
            "WWW-Authenticate: Digest challenge without nonce",
        ),
        (_status(401), GiveUpReason.MALFORMED, "401 without a challenge"),
        (
            _challenge(*[f'realm="r{i}", nonce="n"' for i in range(MAX_REALMS + 1)]),
            GiveUpReason.TOO_MANY_REALMS,
            f"more than {MAX_REALMS} realms",
        ),
    ],
)
def test_what_cannot_be_answered_gives_up_saying_why(
    response: Response, reason: GiveUpReason, detail: str
) -> None:
    bound = (
        Credentials("alice", PASSWORD, realm="r")
        if reason is GiveUpReason.NO_CREDENTIALS
        else CREDENTIALS
    )

    verdict = DigestSession(bound, _Ids()).on_response(response, _invite())

    assert verdict == GiveUp(401, reason, detail)


_SERVER_CHALLENGE = st.tuples(
    st.sampled_from([401, 407]),
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d", "e", "f"]), st.booleans()),
        min_size=1,
        max_size=3,
    ),
)


@given(st.lists(_SERVER_CHALLENGE, min_size=40, max_size=40))
def test_no_server_keeps_a_session_retrying(
    responses: list[tuple[int, list[tuple[str, bool]]]],
) -> None:
    session = DigestSession(CREDENTIALS, _Ids())
    retries = 0
    for nonce, (status, realms) in enumerate(responses):
        challenges = [
            f'realm="{realm}", nonce="{nonce}", stale={str(stale).lower()}'
            for realm, stale in realms
        ]
        proxy = status == 407
        response = _challenge(
            *([] if proxy else challenges), status=status, proxy=challenges if proxy else None
        )
        verdict = session.on_response(response, _invite())
        if isinstance(verdict, GiveUp):
            break
        retries += 1
    else:
        raise AssertionError("40 challenges in a row were all answered")
    assert retries <= 2 * 2 * MAX_REALMS  # per header kind: each realm fresh once, stale once
