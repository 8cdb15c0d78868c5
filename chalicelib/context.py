"""Template context from SIP headers and the context schema (pure; rendering: templates.py).

1. Every ``X-`` header becomes a snake_case key (``X-Customer-Name`` -> ``customer_name``); its value
   is parsed as JSON, else kept as the string. The first header of a name wins.
2. What is taken is bounded in depth, size, count and total (``context_limits.py``); what is left
   out is reported with its reason, never silently lost.
3. sipline adds ``sipline.sip.caller_id``, ``sipline.sip.from_display_name`` and
   ``sipline.sip.from_uri`` (nested: ``{"sipline": {"sip": {...}}}``). The ``sipline`` key is
   reserved: a header cannot set it.
4. With a ``contextSchema``, a key is kept only if the schema allows it (``context_schema.py``,
   linear in the number of keys). Dropped keys are reported, never silently lost. A stored schema
   that breaks a rule of ``context_schema_rules.py`` (saved before the rule) makes the agent
   unavailable (SIP 480, HTTP 409), as a stored prompt that does not parse does.
5. ``systemPrompt`` is a Mustache template rendered with this context (``{{customer_name}}``,
   dotted paths such as ``{{sipline.sip.caller_id}}``): ``chalicelib/templates.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.context_limits import (
    RESERVED_KEY,
    Dropped,
    DroppedSummary,
    DropReason,
    bounded_context,
    summary,
)
from chalicelib.context_schema import Candidate, build, errors, filter_context
from chalicelib.context_schema_rules import SchemaRefused
from chalicelib.errors import AgentUnavailable, InvalidInput

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def header_key(name: str) -> str | None:
    """Return the context key of an ``X-`` header, or None for any other header."""
    if name[:2].lower() != "x-" or len(name) < 3:
        return None
    words = _CAMEL_BOUNDARY.sub("_", name[2:]).lower()
    key = _NON_WORD.sub("_", words).strip("_")
    return key or None


def _keyed(headers: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    for name, value in headers:
        if (key := header_key(name)) is not None:
            yield key, value


def context_from_headers(headers: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Return the context the ``X-`` headers carry, within the limits (the reserved key excluded)."""
    return bounded_context(_keyed(headers))[0]


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
    """The context of an incoming call and the keys left out of it, with why."""

    context: dict[str, Any]
    dropped: tuple[Dropped, ...]

    @property
    def dropped_keys(self) -> tuple[str, ...]:
        """The keys left out, in the order they were met (reserved keys dotted)."""
        return tuple(entry.key for entry in self.dropped)

    def dropped_summary(self) -> list[DroppedSummary]:
        """The keys left out, by reason (what the call record keeps)."""
        return summary(self.dropped)


def incoming_context(
    headers: Iterable[tuple[str, str]],
    caller: CallerInfo,
    schema: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None = None,
) -> IncomingContext:
    """Build an incoming call's context, bounded and schema-filtered: headers, ``extra`` (the
    fallback handler's ``templateContext``, which wins over a header of the same key), then the
    reserved SIP keys. Neither headers nor ``extra`` can set the reserved key."""
    given, dropped = bounded_context(_keyed(headers), extra)
    candidates: list[Candidate] = [((key,), value) for key, value in given.items()]
    candidates += [((RESERVED_KEY, "sip", k), v) for k, v in caller.as_context().items()]
    if schema is None:
        return IncomingContext(build(candidates), tuple(dropped))
    try:
        context, refused = filter_context(candidates, schema)
    except SchemaRefused as error:
        raise unusable_schema(str(error)) from None
    except RecursionError:  # a recursive schema and a context nested deep enough (docs/api.md)
        raise unusable_schema("cannot check this call's context: it recurses too deep") from None
    dropped += [Dropped(".".join(path), DropReason.SCHEMA) for path in refused]
    return IncomingContext(context, tuple(dropped))


def unusable_schema(reason: str) -> AgentUnavailable:
    """The error of an agent whose stored ``contextSchema`` cannot be used (SIP 480, HTTP 409)."""
    return AgentUnavailable(
        f"callTemplate.contextSchema {reason}; correct it with PATCH /api/agents/{{agentId}}"
    )


def validate_context(context: Mapping[str, Any], schema: Mapping[str, Any] | None) -> None:
    """Raise InvalidInput naming the first violation of ``schema`` by ``context``.

    Raises:
        AgentUnavailable: the (stored) schema breaks a rule of ``context_schema_rules.py``.
    """
    if schema is None:
        return
    try:
        found = sorted(errors(context, schema))
    except SchemaRefused as error:
        raise unusable_schema(str(error)) from None
    except RecursionError:
        raise InvalidInput(
            "templateContext", "is nested too deep to be checked against contextSchema"
        ) from None
    if found:
        path, message = found[0]
        where = "templateContext" + path[1:]
        raise InvalidInput(where, message)
