"""Turning pydantic's validation errors into one clear message that names the field and value."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from chalicelib.errors import InvalidInput

_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
}


_SECRET_FIELDS = re.compile(r"password|secret", re.IGNORECASE)


def _is_secret(location: tuple[int | str, ...]) -> bool:
    return any(isinstance(part, str) and _SECRET_FIELDS.search(part) for part in location)


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
    return path or "body"


def describe(error: dict[str, Any]) -> str:
    """Return the reason of one pydantic error, with the offending value when useful.

    The value of a secret field (a password, a signing secret) is never echoed back.
    """
    message = _MESSAGES.get(error["type"]) or str(error["msg"]).removeprefix("Value error, ")
    if error["type"] in ("missing",) or _is_secret(error.get("loc", ())):
        return message
    value = error.get("input")
    if isinstance(value, (dict, list)) or message.find(repr(value)) >= 0:
        return message
    return f"{message} (got {value!r})"


def invalid_input(error: ValidationError, prefix: str = "") -> InvalidInput:
    """Return the InvalidInput for the first problem pydantic found."""
    first = error.errors(include_url=False)[0]
    return InvalidInput(field_path(tuple(first["loc"]), prefix), describe(dict(first)))
