"""Template context from SIP headers, the context schema, and template rendering (pure).

1. Every ``X-`` header becomes a snake_case key (``X-Customer-Name`` -> ``customer_name``); its value
   is parsed as JSON, else kept as the string. The first header of a name wins.
2. sipline adds ``sipline.sip.caller_id``, ``sipline.sip.from_display_name`` and
   ``sipline.sip.from_uri`` (nested: ``{"sipline": {"sip": {...}}}``). The ``sipline`` key is
   reserved: a header cannot set it.
3. With a ``contextSchema``, a key is kept only if the schema allows it: adding it must not add a
   validation error. Dropped keys are reported, never silently lost.
4. ``systemPrompt`` is a Mustache template rendered with this context (``{{customer_name}}``,
   dotted paths such as ``{{sipline.sip.caller_id}}``): ``chalicelib/templates.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from chalicelib.errors import InvalidInput

RESERVED_KEY = "sipline"
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_MAX_HEADER_VALUE = 8192


def header_key(name: str) -> str | None:
    """Return the context key of an ``X-`` header, or None for any other header."""
    if name[:2].lower() != "x-" or len(name) < 3:
        return None
    words = _CAMEL_BOUNDARY.sub("_", name[2:]).lower()
    key = _NON_WORD.sub("_", words).strip("_")
    return key or None


def header_value(value: str) -> Any:
    """Parse a header value as JSON; keep it as the string when it is not JSON."""
    text = value.strip()
    if len(text) > _MAX_HEADER_VALUE:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def context_from_headers(headers: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Return the context the ``X-`` headers carry (the reserved key excluded)."""
    context: dict[str, Any] = {}
    for name, value in headers:
        key = header_key(name)
        if key is not None and key != RESERVED_KEY and key not in context:
            context[key] = header_value(value)
    return context


@dataclass(frozen=True, slots=True)
class CallerInfo:
    """What sipline knows of the caller, added under ``sipline.sip``."""

    caller_id: str
    from_display_name: str | None
    from_uri: str

    def as_context(self) -> dict[str, str]:
        values = {
            "caller_id": self.caller_id,
            "from_display_name": self.from_display_name,
            "from_uri": self.from_uri,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True, slots=True)
class IncomingContext:
    """The context of an incoming call and the keys the schema did not allow."""

    context: dict[str, Any]
    dropped_keys: tuple[str, ...]


def incoming_context(
    headers: Iterable[tuple[str, str]],
    caller: CallerInfo,
    schema: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None = None,
) -> IncomingContext:
    """Build an incoming call's context, schema-filtered: headers, ``extra`` (the fallback
    handler's ``templateContext``, which wins over a header of the same key), then the reserved
    SIP keys. Neither headers nor ``extra`` can set the reserved key."""
    context: dict[str, Any] = {}
    dropped: list[str] = []
    given = context_from_headers(headers)
    given |= {k: v for k, v in (extra or {}).items() if k != RESERVED_KEY}
    dropped += [RESERVED_KEY] if extra and RESERVED_KEY in extra else []
    candidates = [([k], v) for k, v in given.items()]
    candidates += [([RESERVED_KEY, "sip", k], v) for k, v in caller.as_context().items()]
    for path, value in candidates:
        trial = _with(context, path, value)
        if schema is None or _errors(trial, schema) <= _errors(context, schema):
            context = trial
        else:
            dropped.append(".".join(path))
    return IncomingContext(context, tuple(dropped))


def _with(context: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """Return a copy of ``context`` with ``value`` set at the nested ``path``."""
    if len(path) == 1:
        return {**context, path[0]: value}
    child = context.get(path[0])
    return {**context, path[0]: _with(child if isinstance(child, dict) else {}, path[1:], value)}


@lru_cache(maxsize=128)
def _validator(schema_json: str) -> Any:
    from jsonschema import Draft202012Validator  # imported on first use: cold starts stay short

    return Draft202012Validator(json.loads(schema_json))


def _errors(context: Mapping[str, Any], schema: Mapping[str, Any]) -> set[tuple[str, str]]:
    validator = _validator(json.dumps(schema, sort_keys=True))
    return {(e.json_path, e.message) for e in validator.iter_errors(context)}


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise ValueError if ``schema`` is not a valid JSON Schema (draft 2020-12)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise ValueError(f"is not a valid JSON Schema: {error.message}") from None


def validate_context(context: Mapping[str, Any], schema: Mapping[str, Any] | None) -> None:
    """Raise InvalidInput naming the first violation of ``schema`` by ``context``."""
    if schema is None:
        return
    errors = sorted(_errors(context, schema))
    if errors:
        path, message = errors[0]
        where = "templateContext" + path[1:]
        raise InvalidInput(where, message)
