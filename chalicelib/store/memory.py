"""An in-memory :class:`~chalicelib.store.table.Table` with DynamoDB's semantics, for domain tests."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence

from chalicelib.store.table import (
    INDEX_KEYS,
    Condition,
    ConditionFailed,
    Increment,
    Item,
    Key,
    Match,
    Page,
    key_of,
)


class MemoryTable:
    """A dict of items keyed by ``(pk, sk)``, with conditions, a GSI and paging."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Item] = {}
        self._lock = threading.Lock()

    def get(self, pk: str, sk: str) -> Item | None:
        item = self._items.get((pk, sk))
        return copy.deepcopy(item) if item is not None else None

    def put(self, item: Item, condition: Condition | None = None) -> None:
        self.transact_put([(item, condition)])

    def delete(self, pk: str, sk: str, condition: Condition | None = None) -> None:
        with self._lock:
            self._check(self._items.get((pk, sk)), condition)
            self._items.pop((pk, sk), None)

    def transact_put(
        self,
        writes: Sequence[tuple[Item, Condition | None]],
        increments: Sequence[Increment] = (),
    ) -> None:
        with self._lock:
            failed = {
                i for i, (item, condition) in enumerate(writes) if not self._holds(item, condition)
            }
            failed |= {len(writes) + i for i, up in enumerate(increments) if not self._room(up)}
            if failed:
                raise ConditionFailed("transaction cancelled", failed=frozenset(failed))
            for item, _ in writes:
                self._items[(item["pk"], item["sk"])] = copy.deepcopy(item)
            for up in increments:
                counter = self._items.setdefault((up.pk, up.sk), {"pk": up.pk, "sk": up.sk})
                counter[up.attribute] = counter.get(up.attribute, 0) + up.by

    def _holds(self, item: Item, condition: Condition | None) -> bool:
        try:
            self._check(self._items.get((item["pk"], item["sk"])), condition)
        except ConditionFailed:
            return False
        return True

    def _room(self, increment: Increment) -> bool:
        if increment.at_most is None:
            return True
        counter = self._items.get((increment.pk, increment.sk)) or {}
        return int(counter.get(increment.attribute, 0)) + increment.by <= increment.at_most

    def query(
        self,
        pk: str,
        *,
        sk_prefix: str | None = None,
        sk_between: tuple[str, str] | None = None,
        index: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        start_after: Key | None = None,
        where: Match | None = None,
    ) -> Page:
        _, sk_name = INDEX_KEYS[index]
        rows = self._matching(pk, sk_prefix, sk_between, index, where)
        rows.sort(key=lambda item: item[sk_name], reverse=descending)
        if start_after is not None:
            after = start_after[sk_name]
            rows = [r for r in rows if (r[sk_name] < after if descending else r[sk_name] > after)]
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if limit is not None else rows
        last = key_of(rows[-1], index) if more and rows else None
        return Page([copy.deepcopy(r) for r in rows], last)

    def count(
        self,
        pk: str,
        *,
        sk_prefix: str | None = None,
        sk_between: tuple[str, str] | None = None,
        index: str | None = None,
        where: Match | None = None,
    ) -> int:
        return len(self._matching(pk, sk_prefix, sk_between, index, where))

    def _matching(
        self,
        pk: str,
        sk_prefix: str | None,
        sk_between: tuple[str, str] | None,
        index: str | None,
        where: Match | None,
    ) -> list[Item]:
        pk_name, sk_name = INDEX_KEYS[index]
        return [
            item
            for item in self._items.values()
            if item.get(pk_name) == pk
            and sk_name in item
            and (sk_prefix is None or item[sk_name].startswith(sk_prefix))
            and (sk_between is None or sk_between[0] <= item[sk_name] <= sk_between[1])
            and (where is None or item.get(where.attribute) in where.values)
        ]

    @staticmethod
    def _check(existing: Item | None, condition: Condition | None) -> None:
        if condition is None:
            return
        if condition.absent and existing is not None:
            raise ConditionFailed("item exists")
        if condition.version is not None and (
            existing is None or existing.get("version") != condition.version
        ):
            raise ConditionFailed("version differs")
        if condition.newer_than is not None and existing is not None:
            attribute, value = condition.newer_than
            if attribute in existing and not existing[attribute] < value:
                raise ConditionFailed(f"{attribute} is not older")
