from __future__ import annotations

import pytest

from chalicelib.signing import SignatureError, sign, signature, verify

BODY = b'{"events": []}'
NOW = 1_795_000_000


def test_signed_request_verifies() -> None:
    verify(["s3cret"], sign("s3cret", NOW, BODY), BODY, now=NOW + 5, window_s=60)


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    # Known answer computed with: printf '1795000000.{"events": []}' | openssl dgst -sha256 -hmac s3cret
    import hashlib
    import hmac

    expected = hmac.new(b"s3cret", b"1795000000." + BODY, hashlib.sha256).hexdigest()
    assert signature("s3cret", NOW, BODY) == expected


def test_rotation_accepts_any_configured_secret() -> None:
    verify(["new", "old"], sign("old", NOW, BODY), BODY, now=NOW, window_s=60)


@pytest.mark.parametrize(
    ("headers", "body", "now", "message"),
    [
        ({}, BODY, NOW, "missing X-Sipline-Timestamp or X-Sipline-Signature"),
        (sign("s3cret", NOW, BODY), BODY + b" ", NOW, "signature does not match"),
        (sign("wrong", NOW, BODY), BODY, NOW, "signature does not match"),
        (
            sign("s3cret", NOW, BODY),
            BODY,
            NOW + 61,
            "X-Sipline-Timestamp is outside the 60s replay window",
        ),
        (
            sign("s3cret", NOW, BODY),
            BODY,
            NOW - 61,
            "X-Sipline-Timestamp is outside the 60s replay window",
        ),
        (
            {"X-Sipline-Timestamp": "soon", "X-Sipline-Signature": "v1=00"},
            BODY,
            NOW,
            "X-Sipline-Timestamp is not Unix seconds",
        ),
        (
            {
                "X-Sipline-Timestamp": str(NOW),
                "X-Sipline-Signature": "v0=" + signature("s3cret", NOW, BODY),
            },
            BODY,
            NOW,
            "signature does not match",
        ),
    ],
)
def test_unsigned_stale_or_tampered_requests_are_refused(
    headers: dict[str, str], body: bytes, now: int, message: str
) -> None:
    with pytest.raises(SignatureError) as raised:
        verify(["s3cret"], headers, body, now=now, window_s=60)
    assert str(raised.value) == message


def test_no_configured_secret_refuses_everything() -> None:
    with pytest.raises(SignatureError, match="webhook secret is not configured"):
        verify([""], sign("", NOW, BODY), BODY, now=NOW, window_s=60)


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in sign("s3cret", NOW, BODY).items()}
    verify(["s3cret"], headers, BODY, now=NOW, window_s=60)
