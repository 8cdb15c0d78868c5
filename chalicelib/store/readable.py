"""Reading stored items as models, when one of them does not read (``docs/storage.md``).

A stored item whose ``data`` no longer reads as its model (written by a bug, an older version or
a hand edit) must not break a list: :func:`readable` skips it, logs ``unreadable record skipped``
(its keys, the record kind and the kind of error, never the stored value) and counts it in the
metric ``UnreadableRecord`` by ``record``. Read on its own (``GET`` of one agent, registration,
call or the SIP configuration), such an item is logged and counted the same way and answered with
:class:`~chalicelib.errors.UnreadableRecord` (409 ``unreadable_record``): :func:`read_one`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from chalicelib.errors import UnreadableRecord
from chalicelib.observability import count, logger
from chalicelib.store.table import Item

M = TypeVar("M", bound=BaseModel)


def readable(model: type[M], items: Iterable[Item]) -> Iterator[tuple[Item, M]]:
    """Yield each item with its model; skip, log and count the items that do not read."""
    for item in items:
        try:
            yield item, model.model_validate_json(item["data"])
        except (ValidationError, KeyError, TypeError) as error:
            _report("unreadable record skipped", model, item, error)


def read_one(model: type[M], item: Item, what: str, *, account_id: str | None = None) -> M:
    """Return the model of one item, read on its own (a ``GET`` of one record).

    Raises:
        UnreadableRecord: the item does not read (HTTP 409 ``unreadable_record``); it is logged
            as ``unreadable record refused`` and counted in ``UnreadableRecord`` as a list's skip
            is. ``what`` names the record in the message (``"agent 'id'"``).
    """
    try:
        return model.model_validate_json(item["data"])
    except (ValidationError, KeyError, TypeError) as error:
        reason = _report("unreadable record refused", model, item, error)
    raise UnreadableRecord(
        f"{what} is stored but cannot be read ({reason}): it was written by another version or"
        " damaged, and is logged as 'unreadable record refused' with its keys",
        account_id=account_id,
    )


def _report(message: str, model: type[BaseModel], item: Item, error: Exception) -> str:
    record = model.__name__.lower()
    reason = describe(error)
    logger.warning(
        message,
        extra={"pk": item.get("pk"), "sk": item.get("sk"), "record": record, "error": reason},
    )
    count("UnreadableRecord", record=record)
    return reason


def describe(error: Exception) -> str:
    """What went wrong, without the stored value (it may hold anything)."""
    if isinstance(error, ValidationError):
        first = error.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(step) for step in first["loc"])
        return f"{first['type']} at {where or 'the top'} ({error.error_count()} errors)"
    return type(error).__name__
