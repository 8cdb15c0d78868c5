"""What a customer copies from the docs must stand up to a hostile request.

``docs/routing.md`` ("The fallback handler") gives the code a fallback handler runs to check
sipline's signature. Anyone can send that handler a request, with any header bytes: the code as
printed must answer False to a forged one, never raise (a crash there is the customer's 500).
The snippet is read from the page itself, so the test checks what customers copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chalicelib.signing import sign_body

ROUTING_MD = Path(__file__).resolve().parents[2] / "docs" / "routing.md"
SECRET = "whsec-fallback-9c1d"
BODY = b'{"sipCallId": "a84b4c76e66710@pc33.example.com"}'
Verify = Callable[[str, dict[str, str], bytes], bool]


@pytest.fixture(scope="module")
def verify() -> Verify:
    """The ``verify`` function of the docs' snippet, as printed."""
    text = ROUTING_MD.read_text(encoding="utf-8")
    lead = "Verify over\nthe raw body bytes, as received:\n\n```python\n"
    start = text.index(lead) + len(lead)
    snippet = text[start : text.index("```", start)]
    namespace: dict[str, object] = {}
    exec(compile(snippet, str(ROUTING_MD), "exec"), namespace)  # noqa: S102 (the docs' own code)
    found = namespace["verify"]
    assert callable(found)
    return found  # type: ignore[return-value]


def _signed_now() -> dict[str, str]:
    """The headers sipline's fallback client sends (``chalicelib/signing.py``)."""
    return sign_body(SECRET, int(time.time()), BODY)


def test_the_docs_verifier_accepts_what_sipline_signs(verify: Verify) -> None:
    assert verify(SECRET, _signed_now(), BODY) is True
    assert verify("another-secret", _signed_now(), BODY) is False
    assert verify(SECRET, _signed_now(), BODY + b" ") is False


@pytest.mark.parametrize(
    "signature",
    ["v1=é" + "0" * 63, "v1=" + "\u00ff" * 64, "v1=\u2603", "v1=\udcff" * 2],
    ids=["latin-1-letter", "latin-1-bytes-as-text", "snowman", "lone-surrogate"],
)
def test_the_docs_verifier_refuses_a_non_ascii_signature_without_raising(
    verify: Verify, signature: str
) -> None:
    """Attack: ``X-Sipline-Signature: v1=é...``. The printed code compared ``str`` values with
    ``hmac.compare_digest``, which raises TypeError on non-ASCII text: the customer's handler
    crashed (500) on any request carrying one. It compares bytes now."""
    headers = _signed_now() | {"X-Sipline-Signature": signature}

    assert verify(SECRET, headers, BODY) is False


@pytest.mark.parametrize("timestamp", ["\u00b2", "\u0661\u0662", "1e3", ""], ids=repr)
def test_the_docs_verifier_refuses_a_timestamp_that_is_not_ascii_digits(
    verify: Verify, timestamp: str
) -> None:
    """``"²".isdigit()`` is True and ``int("²")`` raises ValueError: only ASCII digits count."""
    headers = _signed_now() | {"X-Sipline-Timestamp": timestamp}

    assert verify(SECRET, headers, BODY) is False

