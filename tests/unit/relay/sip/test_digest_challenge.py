"""Reading WWW-Authenticate / Proxy-Authenticate: the auth-param grammar, limits, the choice.

The challenge texts are the RFCs' own (RFC 7616 §3.9.1 and §3.9.2, RFC 2617 §3.5), written on
one line as the parser sees them after unfolding.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.sip.digest_challenge import (
    MAX_AUTH_PARAMS,
    MAX_CHALLENGE_CHARS,
    MAX_CHALLENGES,
    Algorithm,
    Challenge,
    ChallengeError,
    Qop,
    parse_challenges,
    read_challenges,
    strongest,
)
from relay.sip.syntax.headers import Headers

RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def rfc7616_challenge(algorithm: str) -> str:
    """RFC 7616 §3.9.1: the server's challenge, once per algorithm."""
    return (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )


def test_the_rfc_7616_challenge_reads_as_its_fields() -> None:
    [challenge] = parse_challenges(rfc7616_challenge("SHA-256"), proxy=False).challenges

    assert challenge == Challenge(
        proxy=False,
        realm="http-auth@example.org",
        nonce=RFC7616_NONCE,
        algorithm=Algorithm.SHA_256,
        qop=(Qop.AUTH, Qop.AUTH_INT),
        opaque=RFC7616_OPAQUE,
    )
    assert challenge.authorization_header == "Authorization"


def test_the_rfc_7616_userhash_challenge_sets_userhash_and_sha_512_256() -> None:
    value = (  # RFC 7616 §3.9.2
        'Digest realm="api@example.org", qop="auth", algorithm=SHA-512-256, '
        'nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK", '
        'opaque="HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS", charset=UTF-8, userhash=true'
    )

    [challenge] = parse_challenges(value, proxy=True).challenges

    assert challenge.algorithm is Algorithm.SHA_512_256 and challenge.userhash
    assert challenge.qop == (Qop.AUTH,)
    assert challenge.authorization_header == "Proxy-Authorization"


def test_names_are_case_insensitive_and_values_may_be_tokens_or_quoted() -> None:
    value = (
        'DIGEST REALM=sip.example, Nonce="a\\"b\\\\c", ALGORITHM="md5-SESS", QOP=auth, Stale=TRUE'
    )

    [challenge] = parse_challenges(value, proxy=False).challenges

    assert challenge.realm == "sip.example"
    assert challenge.nonce == 'a"b\\c'
    assert challenge.algorithm is Algorithm.MD5_SESS
    assert challenge.qop == (Qop.AUTH,) and challenge.stale


def test_a_challenge_without_algorithm_or_qop_is_md5_in_rfc_2069_form() -> None:
    [challenge] = parse_challenges('Digest realm="r", nonce="n"', proxy=False).challenges

    assert challenge.algorithm is Algorithm.MD5 and challenge.qop == ()
    assert not challenge.stale and not challenge.userhash and challenge.opaque is None


def test_several_challenges_in_one_field_and_in_several_fields_are_all_read() -> None:
    headers = Headers(
        [
            ("WWW-Authenticate", f"{rfc7616_challenge('SHA-256')}, {rfc7616_challenge('MD5')}"),
            ("Proxy-Authenticate", 'Basic realm="proxy", Digest realm="proxy", nonce="p"'),
        ]
    )

    offered = read_challenges(headers)

    kinds = [(c.proxy, c.algorithm) for c in offered.challenges]
    assert kinds == [(False, Algorithm.SHA_256), (False, Algorithm.MD5), (True, Algorithm.MD5)]
    assert offered.unsupported == ("Basic",) and offered.errors == ()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ('Basic realm="x"', "Basic"),
        ('Bearer realm="x", Negotiate abc==', "Bearer"),
        ('Digest realm="r", nonce="n", algorithm=SHA-1', "Digest algorithm=SHA-1"),
        ('Digest realm="r", nonce="n", qop="auth-conf"', "Digest qop=auth-conf"),
        (
            'Digest realm="r", nonce="n", algorithm=MD5-sess',
            "Digest algorithm=MD5-sess without qop",
        ),
    ],
)
def test_a_well_formed_challenge_we_cannot_answer_is_listed_not_raised(
    value: str, why: str
) -> None:
    offered = parse_challenges(value, proxy=False)

    assert offered.challenges == () and offered.unsupported[0] == why


def test_the_token68_of_another_scheme_does_not_hide_a_digest_challenge() -> None:
    offered = parse_challenges('Negotiate YIIB==, Digest realm="r", nonce="n"', proxy=False)

    assert offered.unsupported == ("Negotiate",) and offered.challenges[0].nonce == "n"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('realm="r", nonce="n"', "WWW-Authenticate: a parameter before the scheme"),
        ('Digest nonce="n"', "WWW-Authenticate: Digest challenge without realm"),
        ('Digest realm="r"', "WWW-Authenticate: Digest challenge without nonce"),
        (
            'Digest realm="r", nonce="n", Nonce="m"',
            "WWW-Authenticate: parameter nonce appears twice",
        ),
        ('Digest realm="r" nonce="n"', "WWW-Authenticate: expected a comma at ' nonce=\"n\"'"),
        ('Digest realm="unterminated, nonce="n', "WWW-Authenticate: expected a comma at 'n'"),
        ('Digest realm=, nonce="n"', "WWW-Authenticate: parameter realm has no valid value"),
        ('Digest realm="r", nonce="n", "x"', "WWW-Authenticate: unexpected '\"x\"'"),
    ],
)
def test_a_malformed_challenge_raises_a_challenge_error_saying_where(
    value: str, message: str
) -> None:
    with pytest.raises(ChallengeError) as caught:
        parse_challenges(value, proxy=False)

    assert str(caught.value) == message and caught.value.header == "WWW-Authenticate"


def test_limits_on_length_parameters_and_challenges() -> None:
    many_params = "Digest " + ", ".join(f"p{i}=v" for i in range(MAX_AUTH_PARAMS + 1))
    many_challenges = ", ".join(['Digest realm="r", nonce="n"'] * (MAX_CHALLENGES + 1))
    long = 'Digest realm="r", nonce="' + "n" * MAX_CHALLENGE_CHARS + '"'

    for value, message in [
        (many_params, f"Proxy-Authenticate: more than {MAX_AUTH_PARAMS} parameters"),
        (many_challenges, f"Proxy-Authenticate: more than {MAX_CHALLENGES} challenges"),
        (long, f"Proxy-Authenticate longer than {MAX_CHALLENGE_CHARS} characters"),
    ]:
        with pytest.raises(ChallengeError, match=f"^{message}$"):
            parse_challenges(value, proxy=True)


def test_too_many_challenges_across_fields_is_an_error_of_the_response() -> None:
    one = 'Digest realm="r", nonce="n"'
    headers = Headers([("WWW-Authenticate", one)] * (MAX_CHALLENGES + 1))

    offered = read_challenges(headers)

    assert offered.challenges == ()
    assert [str(e) for e in offered.errors] == [
        f"More than {MAX_CHALLENGES} challenges in a response"
    ]


def test_a_malformed_field_does_not_hide_a_good_one() -> None:
    headers = Headers(
        [
            ("WWW-Authenticate", 'Digest realm="r"'),
            ("WWW-Authenticate", 'Digest realm="r", nonce="n"'),
        ]
    )

    offered = read_challenges(headers)

    assert [c.nonce for c in offered.challenges] == ["n"] and len(offered.errors) == 1


def _challenge(algorithm: Algorithm, *, realm: str = "r", proxy: bool = False) -> Challenge:
    return Challenge(proxy=proxy, realm=realm, nonce=algorithm.value, algorithm=algorithm)


def test_the_strongest_algorithm_of_a_realm_wins_whatever_the_order() -> None:
    offered = [
        _challenge(Algorithm.MD5),
        _challenge(Algorithm.SHA_256_SESS),
        _challenge(Algorithm.SHA_256),
        _challenge(Algorithm.MD5, realm="other"),
        _challenge(Algorithm.MD5, proxy=True),
    ]

    chosen = strongest(offered)

    assert [(c.proxy, c.realm, c.algorithm) for c in chosen] == [
        (False, "r", Algorithm.SHA_256_SESS),  # ties go to the topmost
        (False, "other", Algorithm.MD5),
        (True, "r", Algorithm.MD5),
    ]
    assert (
        strongest([_challenge(Algorithm.SHA_512_256), _challenge(Algorithm.SHA_256)])[0].algorithm
        is Algorithm.SHA_512_256
    )


_PIECES = st.sampled_from(
    ["Digest", " ", ",", "=", '"', "\\", "realm", "nonce", "qop", "auth", "MD5", "x", "\t", "é"]
)


@given(st.one_of(st.text(max_size=300), st.lists(_PIECES, max_size=60).map("".join)))
def test_any_text_parses_or_raises_a_challenge_error(value: str) -> None:
    try:
        offered = parse_challenges(value, proxy=False)
    except ChallengeError:
        return
    for challenge in offered.challenges:
        assert isinstance(challenge.realm, str) and isinstance(challenge.nonce, str)
