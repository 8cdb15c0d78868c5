"""Lists out of the table: page requests and results, cursors, and the queries behind them.

A list is a :class:`Scan` (one partition, of the table or an index, optionally narrowed by sort key
and filtered) read a page at a time (:func:`read_page`) or whole (:func:`scan_items`). An item that
no longer reads never breaks a list (``readable.py``); a list's ``total`` is counted by the table
(DynamoDB ``Select=COUNT``), not by loading every item.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from chalicelib.errors import InvalidInput
from chalicelib.store.readable import readable
from chalicelib.store.table import Item, Key, Match, Table

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class PageRequest:
    """``cursor`` and ``pageSize`` of a list request."""

    cursor: str | None = None
    page_size: int = MAX_PAGE_SIZE


@dataclass(frozen=True, slots=True)
class PageResult(Generic[T]):
    """One page of results with the cursors around it and the total count."""

    results: list[T]
    next_cursor: str | None
    previous_cursor: str | None
    total: int


@dataclass(frozen=True, slots=True)
class Scan:
    """The items of one list: a partition of the table or an index, narrowed and filtered."""

    pk: str
    index: str | None = None
    sk_prefix: str | None = None
    sk_between: tuple[str, str] | None = None
    descending: bool = False
    where: Match | None = None


def scan_items(
    table: Table,
    scan: Scan,
    start_after: Key | None = None,
    *,
    descending: bool | None = None,
    batch: int = MAX_PAGE_SIZE,
) -> Iterator[Item]:
    """Yield the items of ``scan``, asking the table for ``batch`` at a time."""
    order = scan.descending if descending is None else descending
    while True:
        page = table.query(
            scan.pk,
            sk_prefix=scan.sk_prefix,
            sk_between=scan.sk_between,
            index=scan.index,
            descending=order,
            limit=batch,
            start_after=start_after,
            where=scan.where,
        )
        yield from page.items
        if page.last_key is None:
            return
        start_after = page.last_key


def read_page(table: Table, scan: Scan, model: type[M], request: PageRequest) -> PageResult[M]:
    """Return the page of ``scan`` that ``request`` asks for, its readable items as ``model``."""
    direction, start = ("next", None) if not request.cursor else _decode_cursor(request.cursor)
    partition = "pk" if scan.index is None else "gsi1pk"
    if start is not None and start.get(partition) != scan.pk:
        # a cursor of another list or account: DynamoDB would refuse it with a 500
        raise InvalidInput("cursor", f"{request.cursor!r} is not a cursor of this list")
    backwards = direction == "prev"
    chosen: list[tuple[Item, M]] = []
    wanted = request.page_size + 1  # one more than the page: is there a next one?
    items = scan_items(table, scan, start, descending=scan.descending != backwards, batch=wanted)
    for pair in readable(model, items):
        chosen.append(pair)
        if len(chosen) > request.page_size:
            break
    more = len(chosen) > request.page_size
    chosen = chosen[: request.page_size]
    if backwards:
        chosen.reverse()
    total = table.count(
        scan.pk,
        sk_prefix=scan.sk_prefix,
        sk_between=scan.sk_between,
        index=scan.index,
        where=scan.where,
    )
    return PageResult(
        results=[value for _, value in chosen],
        next_cursor=_cursor("next", chosen[-1:], scan, more or backwards),
        previous_cursor=_cursor(
            "prev", chosen[:1], scan, (more and backwards) or (start and not backwards)
        ),
        total=total,
    )


def _cursor(direction: str, edge: list[tuple[Item, M]], scan: Scan, wanted: object) -> str | None:
    if not wanted or not edge:
        return None
    item = edge[0][0]
    key = {"pk": item["pk"], "sk": item["sk"]}
    if scan.index is not None:
        key |= {"gsi1pk": item["gsi1pk"], "gsi1sk": item["gsi1sk"]}
    return _encode_cursor(direction, key)


def _encode_cursor(direction: str, key: Key) -> str:
    raw = json.dumps({"d": direction, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, Key]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
        direction, key = body["d"], body["k"]
        if direction not in ("next", "prev") or not all(isinstance(v, str) for v in key.values()):
            raise ValueError(direction)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise InvalidInput("cursor", f"{cursor!r} is not a cursor this API returned") from None
    return direction, key
