from __future__ import annotations

from typing import Any

import pytest

from chalicelib.signing import (
    SignatureError,
    body_signature,
    sign,
    sign_body,
    signature,
    verify,
)

BODY = b'{"events": []}'
NOW = 1_795_000_000
POST = {"method": "POST", "path": "/webhooks/sip/events"}


def _verify(
    headers: dict[str, str], body: bytes = BODY, secrets: tuple[str, ...] = ("s3cret",), **kw: Any
) -> None:
    options: dict[str, Any] = {"now": NOW, "window_s": 60} | POST | kw
    verify(secrets, headers, body, **options)


def test_signed_request_verifies() -> None:
    _verify(sign("s3cret", NOW, BODY, **POST), now=NOW + 5)


def test_signature_is_hmac_sha256_over_timestamp_method_path_and_body() -> None:
    # docs/webhooks.md: the HMAC of "<timestamp>\n<METHOD>\n<path>\n<body>". The literal is the
    # output of OpenSSL 3.0, run by hand and pasted here:
    #   printf '1795000000\nPOST\n/webhooks/sip/events\n{"events": []}' \
    #     | openssl dgst -sha256 -hmac s3cret
    #   SHA2-256(stdin)= 32fd474b10a3c9c8b3ad4fb77f7a569901ec805a359bf54c58f36ffe40a1abd6
    expected = "32fd474b10a3c9c8b3ad4fb77f7a569901ec805a359bf54c58f36ffe40a1abd6"
    assert signature("s3cret", NOW, BODY, **POST) == expected
    assert signature("s3cret", NOW, BODY, method="post", path=POST["path"]) == expected
    assert sign("s3cret", NOW, BODY, **POST) == {
        "X-Sipline-Timestamp": "1795000000",
        "X-Sipline-Signature": f"v2={expected}",
    }


def test_fallback_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    # docs/routing.md: the fallback handler's v1 signature, the HMAC of "<timestamp>.<body>". The
    # literal is the output of OpenSSL 3.0, run by hand and pasted here:
    #   printf '1795000000.{"events": []}' | openssl dgst -sha256 -hmac s3cret
    #   SHA2-256(stdin)= 29b7fd3cb81d90c9beab3371277943f72cbc9d5715fa5d98ce6ffa41e68ec81b
    expected = "29b7fd3cb81d90c9beab3371277943f72cbc9d5715fa5d98ce6ffa41e68ec81b"
    assert body_signature("s3cret", NOW, BODY) == expected
    assert sign_body("s3cret", NOW, BODY) == {
        "X-Sipline-Timestamp": "1795000000",
        "X-Sipline-Signature": f"v1={expected}",
    }


def test_the_openssl_signed_headers_verify_alone_or_among_several_values() -> None:
    # The openssl literal above, as a sender would put it on the wire (docs/webhooks.md: during a
    # rotation the header may carry several comma-separated values; any match is enough).
    literal = "v2=32fd474b10a3c9c8b3ad4fb77f7a569901ec805a359bf54c58f36ffe40a1abd6"
    _verify({"X-Sipline-Timestamp": "1795000000", "X-Sipline-Signature": literal})
    _verify(
        {"X-Sipline-Timestamp": "1795000000", "X-Sipline-Signature": f"v2={'0' * 64}, {literal}"}
    )


def test_rotation_accepts_any_configured_secret() -> None:
    _verify(sign("old", NOW, BODY, **POST), secrets=("new", "old"))


@pytest.mark.parametrize(
    ("headers", "body", "overrides", "message"),
    [
        ({}, BODY, {}, "missing X-Sipline-Timestamp or X-Sipline-Signature"),
        (sign("s3cret", NOW, BODY, **POST), BODY + b" ", {}, "signature does not match"),
        (sign("wrong", NOW, BODY, **POST), BODY, {}, "signature does not match"),
        (
            sign("s3cret", NOW, BODY, method="POST", path="/webhooks/sip/invite"),
            BODY,
            {},
            "signature does not match",
        ),
        (
            sign("s3cret", NOW, BODY, method="GET", path="/webhooks/sip/events"),
            BODY,
            {},
            "signature does not match",
        ),
        (sign_body("s3cret", NOW, BODY), BODY, {}, "signature does not match"),
        (
            sign("s3cret", NOW, BODY, **POST),
            BODY,
            {"now": NOW + 61},
            "X-Sipline-Timestamp is outside the 60s replay window",
        ),
        (
            sign("s3cret", NOW, BODY, **POST),
            BODY,
            {"now": NOW - 61},
            "X-Sipline-Timestamp is outside the 60s replay window",
        ),
        (
            {"X-Sipline-Timestamp": "soon", "X-Sipline-Signature": "v2=00"},
            BODY,
            {},
            "X-Sipline-Timestamp is not Unix seconds",
        ),
        (
            {
                "X-Sipline-Timestamp": str(NOW),
                "X-Sipline-Signature": "v0=" + signature("s3cret", NOW, BODY, **POST),
            },
            BODY,
            {},
            "signature does not match",
        ),
        (
            {"X-Sipline-Timestamp": str(NOW), "X-Sipline-Signature": "v2=é"},
            BODY,
            {},
            "signature does not match",
        ),
    ],
    ids=[
        "unsigned",
        "tampered body",
        "wrong secret",
        "signed for another path",
        "signed for another method",
        "body-only v1 signature",
        "stale",
        "future",
        "timestamp not a number",
        "unknown scheme",
        "non-ascii signature",
    ],
)
def test_unsigned_stale_replayed_or_tampered_requests_are_refused(
    headers: dict[str, str], body: bytes, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(SignatureError) as raised:
        _verify(headers, body, **overrides)
    assert str(raised.value) == message


def test_no_configured_secret_refuses_everything() -> None:
    with pytest.raises(SignatureError, match="webhook secret is not configured"):
        _verify(sign("", NOW, BODY, **POST), secrets=("",))


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in sign("s3cret", NOW, BODY, **POST).items()}
    _verify(headers)


def test_method_is_compared_case_insensitively() -> None:
    _verify(sign("s3cret", NOW, BODY, method="post", path="/webhooks/sip/events"))
