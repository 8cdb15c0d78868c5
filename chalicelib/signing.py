"""HMAC-SHA256 request signing with a replay window (pure; contract 5, docs/webhooks.md).

A signed request carries two headers:

- ``X-Sipline-Timestamp``: Unix seconds when it was signed;
- ``X-Sipline-Signature``: one or more comma-separated ``<scheme>=<hex>`` values (several while
  a secret is rotated).

Two schemes, one per direction:

- ``v2``, the edge's webhooks to the control plane: the HMAC-SHA256 under the shared secret of
  ``<timestamp>\\n<METHOD>\\n<path>\\n<body>``, so a signature made for one route or method is
  refused on another. The path is the route's (``/webhooks/sip/events``: no stage prefix, no
  query string); no method or path holds a newline, so the message splits one way only.
- ``v1``, sipline's requests to an account's fallback handler (docs/routing.md): the HMAC of
  ``<timestamp>.<body>``. A handler has one URL, which the account chose.

A webhook is accepted only if one ``v2`` signature matches under one of the secrets and its
timestamp is within ``window_s`` of now, either way. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

TIMESTAMP_HEADER = "X-Sipline-Timestamp"
SIGNATURE_HEADER = "X-Sipline-Signature"
SCHEME = "v2"
"""The edge's webhooks: timestamp, method, path and body."""
BODY_SCHEME = "v1"
"""The fallback handler's requests: timestamp and body."""


class SignatureError(Exception):
    """The request is unsigned, stale or tampered with (HTTP 401)."""


def _hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature(secret: str, timestamp: int, body: bytes, *, method: str, path: str) -> str:
    """Return the hex ``v2`` HMAC-SHA256 of ``<timestamp>\\n<METHOD>\\n<path>\\n<body>``."""
    head = f"{timestamp}\n{method.upper()}\n{path}\n"
    return _hmac(secret, head.encode() + body)


def sign(secret: str, timestamp: int, body: bytes, *, method: str, path: str) -> dict[str, str]:
    """Return the headers that sign a webhook request (``v2``)."""
    digest = signature(secret, timestamp, body, method=method, path=path)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: f"{SCHEME}={digest}"}


def body_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Return the hex ``v1`` HMAC-SHA256 of ``<timestamp>.<body>`` (fallback handler requests)."""
    return _hmac(secret, str(timestamp).encode() + b"." + body)


def sign_body(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Return the headers that sign a request to a fallback handler (``v1``)."""
    digest = body_signature(secret, timestamp, body)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: f"{BODY_SCHEME}={digest}"}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def verify(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    path: str,
    now: float,
    window_s: int,
) -> None:
    """Raise SignatureError unless the request is ``v2``-signed by one of ``secrets`` in time."""
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
        expected = signature(secret, timestamp, body, method=method, path=path).encode()
        # As bytes: compare_digest refuses str with non-ASCII characters (a 500, not a 401).
        if any(hmac.compare_digest(expected, c.encode("utf-8", "replace")) for c in offered):
            return
    raise SignatureError("signature does not match")
