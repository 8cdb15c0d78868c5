"""One record is one DynamoDB item, at most 400 KB: checked before it is written (pure).

A record that user input can grow past the limit (the SIP configuration's ``allowedAgents``, an
agent's ``callTemplate``, a call's ``templateContext`` or rendered ``systemPrompt``) would be
refused by DynamoDB with a ``ValidationException`` and answered 500. :func:`check_item_size`
measures the item the way DynamoDB does ("Service quotas": attribute names and values together,
strings as UTF-8) and raises :class:`~chalicelib.errors.RecordTooLarge` (413, SIP 480) naming the
record's largest field, so the user knows what to make smaller (``docs/storage.md``, item shape).
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.errors import RecordTooLarge

MAX_ITEM_BYTES = 400 * 1024
"""DynamoDB's item size limit, 400 KB: attribute names and values, UTF-8."""
_NUMBER_BYTES = 21
"""The most a DynamoDB number takes (38 significant digits: 1 byte per two, plus 1)."""


def item_bytes(item: dict[str, Any]) -> int:
    """Return the size DynamoDB gives ``item`` (an upper bound for its numbers)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        size += len(value.encode()) if isinstance(value, str) else _NUMBER_BYTES
    return size


def check_item_size(item: dict[str, Any], what: str) -> None:
    """Raise RecordTooLarge if ``item`` (whose ``data`` is its model as JSON) is over the limit."""
    size = item_bytes(item)
    if size > MAX_ITEM_BYTES:
        field = largest_field(item.get("data", "{}"))
        raise RecordTooLarge(
            field,
            f"{what} would be stored as {size} bytes; one record holds at most {MAX_ITEM_BYTES}"
            f" bytes (400 KB), DynamoDB's item limit: make {field} smaller",
        )


def largest_field(data: str) -> str:
    """The path, two levels at most, of the largest field of a record's JSON (``callTemplate.
    systemPrompt``, ``allowedAgents``, ``templateContext.notes``)."""
    value: Any = json.loads(data)
    path: list[str] = []
    for _ in range(2):
        if not isinstance(value, dict) or not value:
            break
        sizes = {k: len(json.dumps(v, ensure_ascii=False).encode()) for k, v in value.items()}
        key = max(sizes, key=sizes.__getitem__)
        path.append(key)
        value = value[key]
    return ".".join(path) or "body"
