"""The few table operations the repository needs, as a protocol with two implementations.

``dynamodb.py`` runs them on DynamoDB (moto locally); ``memory.py`` is a dict fake with the same
behaviour for the pure domain tests. Items are flat dicts of strings and ints: every model is kept
as one JSON string in ``data``, beside its keys and its ``version``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Item = dict[str, Any]
Key = dict[str, str]


@dataclass(frozen=True, slots=True)
class Condition:
    """A write precondition: the item is absent, or its ``version`` equals ``version``."""

    absent: bool = False
    version: int | None = None
    newer_than: tuple[str, str] | None = None
    """``(attribute, value)``: the attribute is missing or smaller than ``value``."""

    @classmethod
    def must_be_absent(cls) -> Condition:
        return cls(absent=True)

    @classmethod
    def at_version(cls, version: int) -> Condition:
        return cls(version=version)


@dataclass(frozen=True, slots=True)
class Match:
    """A query filter: the item's ``attribute`` is one of ``values`` (DynamoDB's ``IN``)."""

    attribute: str
    values: frozenset[str]


MAX_MATCH_VALUES = 100
"""DynamoDB's ``IN`` takes at most 100 values."""


@dataclass(frozen=True, slots=True)
class Increment:
    """Add ``by`` to the number ``attribute`` of the item at ``(pk, sk)`` (0 when missing).

    With ``at_most``, the write's condition is that the number stays at most ``at_most`` (a
    capped counter: a transaction that would pass the cap fails whole).
    """

    pk: str
    sk: str
    attribute: str
    by: int
    at_most: int | None = None


ABSENT = Condition.must_be_absent()
INDEX_KEYS: dict[str | None, tuple[str, str]] = {
    None: ("pk", "sk"),
    "gsi1": ("gsi1pk", "gsi1sk"),
    "gsi2": ("gsi2pk", "gsi2sk"),
}
"""The key attributes of the table (``None``) and of each index."""


def key_of(item: Item, index: str | None) -> Key:
    """Return the key a query continues after ``item`` from (the table's, plus the index's)."""
    key = {"pk": item["pk"], "sk": item["sk"]}
    if index is not None:
        pk_name, sk_name = INDEX_KEYS[index]
        key |= {pk_name: item[pk_name], sk_name: item[sk_name]}
    return key


class ConditionFailed(Exception):
    """A conditional write found the table in another state (translated by the repository).

    ``failed`` holds the positions, in a transaction's writes then its increments, of those whose
    condition failed (empty when unknown).
    """

    def __init__(self, message: str, *, failed: frozenset[int] = frozenset()) -> None:
        super().__init__(message)
        self.failed = failed


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a query, and the key to continue from (None at the end)."""

    items: list[Item]
    last_key: Key | None


class Table(Protocol):
    """The table operations the repository is written against."""

    def get(self, pk: str, sk: str) -> Item | None: ...

    def put(self, item: Item, condition: Condition | None = None) -> None: ...

    def delete(self, pk: str, sk: str, condition: Condition | None = None) -> None: ...

    def transact_put(
        self,
        writes: Sequence[tuple[Item, Condition | None]],
        increments: Sequence[Increment] = (),
    ) -> None: ...

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
    ) -> Page: ...

    def count(
        self,
        pk: str,
        *,
        sk_prefix: str | None = None,
        sk_between: tuple[str, str] | None = None,
        index: str | None = None,
        where: Match | None = None,
    ) -> int:
        """Return how many items ``query`` would return, without returning them."""
        ...
