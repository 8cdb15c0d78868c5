"""How much of an INVITE becomes template context: the limits, and what is dropped (pure).

A caller controls every ``X-`` header of its INVITE, and the context they give is stored in the
call record, rendered into the system prompt and sent to the agent. So what is taken is bounded
(``docs/routing.md``, "Context from SIP headers"):

1. **Depth.** A header value nested deeper than :data:`MAX_DEPTH` arrays or objects is not parsed
   as JSON: it stays the string sent. The depth is found by a linear scan of the text, before any
   parser sees it, so no recursion depends on the caller. A fallback handler's value (already
   parsed) deeper than that is dropped (``too_deep``).
2. **Size per entry.** A key and its value over :data:`MAX_ENTRY_BYTES` (UTF-8; the value as sent,
   or as compact JSON) are dropped (``too_large``).
3. **Count.** At most :data:`MAX_KEYS` keys are taken (header keys in arrival order, then the
   fallback handler's new ones); the rest are dropped (``too_many``).
4. **Total.** The entries taken add up to at most :data:`MAX_CONTEXT_BYTES`; an entry that does not
   fit is dropped (``context_full``) and smaller ones after it may still fit.
5. The reserved ``sipline`` key cannot be set (``reserved``). JSON's ``NaN`` and ``Infinity``,
   and numbers too large for a float, are not JSON a reader accepts: such a value stays a string.

Every drop is a :class:`Dropped` (key and reason); :func:`summary` groups them for the call record.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

RESERVED_KEY = "sipline"
MAX_DEPTH = 16
"""Arrays and objects nested in one value (``[[1]]`` is 2); pydantic reads stored JSON to ~200."""
MAX_ENTRY_BYTES = 8 * 1024
MAX_KEYS = 1000
MAX_CONTEXT_BYTES = 32 * 1024
"""The call item (at most 400 KB in DynamoDB) also holds the rendered prompt and the template."""
LISTED_KEYS = 10
"""Keys the call record names per reason (all are counted)."""
LISTED_KEY_CHARS = 100
"""A listed key longer than this is cut (an over-long key is one of the things dropped)."""

_JSON_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


class DropReason(StrEnum):
    """Why a key was left out of the context (the order the call record lists them in)."""

    RESERVED = "reserved"
    TOO_MANY = "too_many"
    TOO_LARGE = "too_large"
    TOO_DEEP = "too_deep"
    CONTEXT_FULL = "context_full"
    SCHEMA = "schema"


@dataclass(frozen=True, slots=True)
class Dropped:
    """A key left out of the context, and why."""

    key: str
    reason: DropReason


@dataclass(frozen=True, slots=True)
class DroppedSummary:
    """The keys dropped for one reason: how many, and the first :data:`LISTED_KEYS` of them."""

    reason: DropReason
    count: int
    keys: tuple[str, ...]


def nested_deeper_than(text: str, limit: int) -> bool:
    """Return True if the JSON ``text`` nests arrays or objects more than ``limit`` deep.

    A linear scan that skips string literals (their brackets do not count); it stops at the
    first level past ``limit``. Text that is not JSON gets an answer too, harmlessly: the parser
    refuses it afterwards.
    """
    depth, in_string = 0, False
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:  # inside a string, or an escape
            continue
        elif token in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def header_value(value: str) -> Any:
    """Parse a header value as JSON; keep it as the (stripped) string when it is not JSON, or
    when it nests deeper than :data:`MAX_DEPTH`."""
    text = value.strip()
    if nested_deeper_than(text, MAX_DEPTH):
        return text
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except ValueError:  # not JSON, or an integer of more than 4,300 digits
        return text


def entry_bytes(key: str, value: Any) -> int:
    """The size an entry counts for: its key and its value as compact JSON, in UTF-8 bytes."""
    encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(key.encode()) + len(encoded.encode())


@dataclass(frozen=True, slots=True)
class _Header:
    """A header's value, not parsed yet (parsing waits until the key is sure to be counted)."""

    text: str


def bounded_context(
    headers: Iterable[tuple[str, str]], extra: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], list[Dropped]]:
    """Return the context the headers and ``extra`` give within the limits, and the drops.

    Args:
        headers: ``(key, value)`` of each ``X-`` header, in arrival order; the first header of a
            key wins.
        extra: the fallback handler's ``templateContext``: its values replace those of the same
            key, its new keys come after the header keys.
    """
    given: dict[str, _Header | Any] = {}
    dropped: list[Dropped] = []
    for key, text in headers:
        given.setdefault(key, _Header(text))
    given |= dict(extra or {})
    if RESERVED_KEY in given:
        del given[RESERVED_KEY]
        dropped.append(Dropped(RESERVED_KEY, DropReason.RESERVED))
    context: dict[str, Any] = {}
    total = 0
    for key, item in given.items():
        value, size, reason = _measure(key, item)
        if reason is None and len(context) >= MAX_KEYS:
            reason = DropReason.TOO_MANY
        if reason is None and total + size > MAX_CONTEXT_BYTES:
            reason = DropReason.CONTEXT_FULL
        if reason is not None:
            dropped.append(Dropped(key, reason))
            continue
        context[key] = value
        total += size
    return context, dropped


def _measure(key: str, item: Any) -> tuple[Any, int, DropReason | None]:
    """Return the value an entry takes, its size, and the limit it breaks (if any)."""
    if isinstance(item, _Header):
        if len(key) + len(item.text) > MAX_ENTRY_BYTES:  # too large whatever it parses to
            return None, 0, DropReason.TOO_LARGE
        value = header_value(item.text)
    else:
        value = item
        if nested_deeper_than(json.dumps(value), MAX_DEPTH):
            return None, 0, DropReason.TOO_DEEP
    size = entry_bytes(key, value)
    return value, size, DropReason.TOO_LARGE if size > MAX_ENTRY_BYTES else None


def summary(dropped: Iterable[Dropped]) -> list[DroppedSummary]:
    """Group drops by reason (in :class:`DropReason` order), naming the first few keys of each."""
    by_reason: dict[DropReason, list[str]] = {}
    for entry in dropped:
        by_reason.setdefault(entry.reason, []).append(entry.key)
    return [
        DroppedSummary(reason, len(found), tuple(k[:LISTED_KEY_CHARS] for k in found[:LISTED_KEYS]))
        for reason in DropReason
        if (found := by_reason.get(reason))
    ]
