"""Reading stored items as models, when one of them does not read (``docs/storage.md``).

A stored item whose ``data`` no longer reads as its model (written by a bug, an older version or
a hand edit) must not break a list: :func:`readable` skips it, logs ``unreadable record skipped``
(its keys, the record kind and the kind of error, never the stored value) and counts it in the
metric ``UnreadableRecord`` by ``record``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from chalicelib.observability import count, logger
from chalicelib.store.table import Item

M = TypeVar("M", bound=BaseModel)


def readable(model: type[M], items: Iterable[Item]) -> Iterator[tuple[Item, M]]:
    """Yield each item with its model; skip, log and count the items that do not read."""
    for item in items:
        try:
            yield item, model.model_validate_json(item["data"])
        except (ValidationError, KeyError, TypeError) as error:
            record = model.__name__.lower()
            logger.warning(
                "unreadable record skipped",
                extra={"pk": item.get("pk"), "sk": item.get("sk"), "record": record,
                       "error": describe(error)},
            )  # fmt: skip
            count("UnreadableRecord", record=record)


def describe(error: Exception) -> str:
    """What went wrong, without the stored value (it may hold anything)."""
    if isinstance(error, ValidationError):
        first = error.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(step) for step in first["loc"])
        return f"{first['type']} at {where or 'the top'} ({error.error_count()} errors)"
    return type(error).__name__
