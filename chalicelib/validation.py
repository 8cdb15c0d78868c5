"""Turning pydantic's validation errors into one short message that names the field.

Rules (docs/api.md, "Errors"):

1. A body that is not JSON is named by its line and column, never quoted: its text may hold a
   password.
2. An unknown field is named, its value left out: it may be a mistyped secret (``passwd``).
3. A field whose name says it is secret (password, secret, token, key, credential) never has its
   value shown, nor a validator's message that could quote it.
4. Any other value is quoted only when it is a scalar whose ``repr`` fits in
   :data:`MAX_SHOWN_CHARS`; the field path and the message are clipped to bounded lengths, so
   an error is a few hundred bytes whatever the body's size.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from chalicelib.errors import InvalidInput

MAX_SHOWN_CHARS = 64
"""The longest ``repr`` of a value that an error quotes (a CIDR, a name, a number)."""
MAX_DETAIL_CHARS = 240
MAX_FIELD_CHARS = 120

_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
}
_UNQUOTED = frozenset({"extra_forbidden", "missing", "json_invalid"})
"""Error types whose input is never shown (rules 1-2)."""
_CUSTOM = frozenset({"value_error", "assertion_error"})
"""Error types whose message comes from our validators and may quote the value (rule 3)."""
_SECRET_FIELDS = re.compile(r"password|secret|token|key|credential", re.IGNORECASE)


def _is_secret(location: tuple[int | str, ...]) -> bool:
    return any(isinstance(part, str) and _SECRET_FIELDS.search(part) for part in location)


def clip(text: str, limit: int) -> str:
    """Return ``text``, cut to ``limit`` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(value: Any) -> str:
    """Return the ``repr`` of a non-secret value for an error message, at most 64 characters."""
    return clip(repr(value), MAX_SHOWN_CHARS)


def field_path(location: tuple[int | str, ...], prefix: str = "") -> str:
    """Render a pydantic location as ``allowedAgents[0].toUserPattern``."""
    path = prefix
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in ("function-after", "function-before") and not part.startswith(
            ("function-", "json-or-python")
        ):
            path += f".{part}" if path else part
    return clip(path or "body", MAX_FIELD_CHARS)


def describe(error: dict[str, Any]) -> str:
    """Return the reason of one pydantic error, quoting the value only when rules 1-4 allow."""
    kind = error["type"]
    if kind == "json_invalid":
        return f"invalid JSON: {error.get('ctx', {}).get('error', 'not parseable')}"
    message = _MESSAGES.get(kind) or str(error["msg"]).removeprefix("Value error, ")
    if _is_secret(tuple(error.get("loc", ()))):
        return "invalid value" if kind in _CUSTOM else message
    value = error.get("input")
    quotable = isinstance(value, (str, int, float, bool)) and len(repr(value)) <= MAX_SHOWN_CHARS
    if kind in _UNQUOTED or not quotable or repr(value) in message:
        return clip(message, MAX_DETAIL_CHARS)
    return clip(f"{message} (got {value!r})", MAX_DETAIL_CHARS)


def invalid_input(error: ValidationError, prefix: str = "") -> InvalidInput:
    """Return the InvalidInput for the first problem pydantic found."""
    first = error.errors(include_url=False)[0]
    return InvalidInput(field_path(tuple(first["loc"]), prefix), describe(dict(first)))
