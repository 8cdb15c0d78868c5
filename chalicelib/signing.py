"""HMAC-SHA256 request signing with a replay window (pure; contract 5).

A signed request carries two headers:

- ``X-Sipline-Timestamp``: Unix seconds when it was signed;
- ``X-Sipline-Signature``: ``v1=<hex>``, the HMAC-SHA256 of ``<timestamp>.<body>`` under the shared
  secret. Several ``v1=`` values may be given, comma-separated (secret rotation).

A request is accepted only if one signature matches under one of the secrets and its timestamp is
within ``window_s`` of now, either way. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

TIMESTAMP_HEADER = "X-Sipline-Timestamp"
SIGNATURE_HEADER = "X-Sipline-Signature"
SCHEME = "v1"


class SignatureError(Exception):
    """The request is unsigned, stale or tampered with (HTTP 401)."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Return the headers that sign ``body`` at ``timestamp``."""
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{SCHEME}={signature(secret, timestamp, body)}",
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def verify(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    window_s: int,
) -> None:
    """Raise SignatureError unless ``body`` is signed by one of ``secrets`` within the window."""
    usable = [s for s in secrets if s]
    if not usable:
        raise SignatureError("webhook secret is not configured")
    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    raw_signature = _header(headers, SIGNATURE_HEADER)
    if not raw_timestamp or not raw_signature:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} is not Unix seconds") from None
    if abs(now - timestamp) > window_s:
        raise SignatureError(f"{TIMESTAMP_HEADER} is outside the {window_s}s replay window")
    offered = [
        v.strip()[len(SCHEME) + 1 :]
        for v in raw_signature.split(",")
        if v.strip().startswith(SCHEME + "=")
    ]
    for secret in usable:
        expected = signature(secret, timestamp, body)
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return
    raise SignatureError("signature does not match")
