"""Header text as JSON, logs and agents can carry it (pure).

The parser decodes a message's header section as UTF-8 with ``surrogateescape`` (PEP 383): a byte
that is not UTF-8 (an older PBX's Latin-1 ``é``, byte E9) becomes a lone surrogate (U+DCE9), so
that the message re-serializes to the very bytes received (``abnf.py``, rule 4). A lone
surrogate cannot be encoded as UTF-8, so text leaving the SIP core for JSON (the INVITE webhook)
goes through :func:`readable` first: what was UTF-8 stays as decoded, each byte that was not
becomes U+FFFD, and no raw byte reaches JSON.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_SURROGATES = re.compile("[\ud800-\udfff]")
_NOT_A_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
"""Surrogates that ``surrogateescape`` never produces (it maps bytes 80-FF to U+DC80-U+DCFF)."""


def readable(text: str) -> str:
    """Return ``text`` with each undecodable byte kept by the parser replaced by U+FFFD."""
    if _SURROGATES.search(text) is None:
        return text  # the usual case, at the cost of one scan
    text = _NOT_A_BYTE.sub(REPLACEMENT, text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
