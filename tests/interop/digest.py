"""Checking a Digest answer without sipline's code: RFC 7616 §3.4.1 (RFC 2617 §3.2.2) in hashlib.

SIPp 3.6.1 verifies MD5 ``Authorization`` headers only (tests/interop/sipp_uas.py), so the SHA-256
and ``Proxy-Authorization`` answers a caller sends to ``uas_auth_sha256`` and ``uas_proxy_auth``
are checked here, on the trace: `parse_params` reads the header, `expected_response` computes
the response the RFC defines for it, `verify` compares, and also that the answer names the
challenge's realm and nonce and the request's method. The formulas are tested against RFC 7616
§3.9.1's worked example (MD5 and SHA-256) and against SIPp's own MD5 answers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "SHA-512-256": lambda data: hashlib.new("sha512_256", data).hexdigest(),
}
PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)')


def parse_params(header: str) -> dict[str, str]:
    """The parameters of a ``Digest ...`` challenge or answer, unquoted, names lower-cased."""
    scheme, _, rest = header.strip().partition(" ")
    assert scheme.lower() == "digest", f"not a Digest header: {header!r}"
    return {
        name.lower(): value[1:-1].replace('\\"', '"') if value.startswith('"') else value
        for name, value in PARAM.findall(rest)
    }


def expected_response(params: dict[str, str], *, method: str, password: str) -> str:
    """The ``response`` RFC 7616 §3.4.1 gives for these parameters (qop auth or none)."""
    algorithm = params.get("algorithm", "MD5")
    sess = algorithm.lower().endswith("-sess")
    digest = HASHES[algorithm[: -len("-sess")] if sess else algorithm]

    def h(text: str) -> str:
        return digest(text.encode())

    ha1 = h(f"{params['username']}:{params['realm']}:{password}")
    if sess:
        ha1 = h(f"{ha1}:{params['nonce']}:{params['cnonce']}")
    ha2 = h(f"{method}:{params['uri']}")
    qop = params.get("qop")
    if qop is None:
        return h(f"{ha1}:{params['nonce']}:{ha2}")
    assert qop == "auth", f"qop {qop!r} is not checked here"
    return h(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:{qop}:{ha2}")


def verify(
    header: str, *, method: str, password: str, challenge: str, username: str | None = None
) -> bool:
    """True if ``header`` answers ``challenge`` (the WWW-/Proxy-Authenticate value) for a
    request of ``method`` with ``password`` (and ``username``, when given)."""
    answer, asked = parse_params(header), parse_params(challenge)
    same = all(answer.get(key) == asked.get(key) for key in ("realm", "nonce", "opaque"))
    algorithm_ok = answer.get("algorithm", "MD5").upper() == asked.get("algorithm", "MD5").upper()
    user_ok = username is None or answer.get("username") == username
    expected = expected_response(answer, method=method, password=password)
    return same and algorithm_ok and user_ok and answer.get("response") == expected
