"""The earliest deadline among many timer owners: a heap with lazy deletion.

The endpoint holds thousands of transactions and calls, each with its own ``get_timer()``. Asking
all of them after every datagram would cost O(n) per message; instead each owner's deadline is
recorded here when it may have changed (``set``), and the heap answers ``earliest()`` and
``pop_due(now)`` in O(log n). Superseded entries stay in the heap until they surface and are
skipped then; the heap is rebuilt when they outnumber the live ones.
"""

from __future__ import annotations

import heapq
from itertools import count
from typing import Generic, TypeVar

K = TypeVar("K")

_COMPACT_SLACK = 64  # rebuild once stale entries exceed live ones by this much


class Deadlines(Generic[K]):
    """Map owners to their next deadline and find the earliest one quickly."""

    def __init__(self) -> None:
        self._current: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._order = count()

    def __len__(self) -> int:
        """Return how many owners have a deadline."""
        return len(self._current)

    def set(self, key: K, deadline: float | None) -> None:
        """Record ``key``'s next deadline; ``None`` removes it."""
        if deadline is None:
            self._current.pop(key, None)
            return
        if self._current.get(key) == deadline:
            return
        self._current[key] = deadline
        heapq.heappush(self._heap, (deadline, next(self._order), key))
        if len(self._heap) > 2 * len(self._current) + _COMPACT_SLACK:
            self._compact()

    def earliest(self) -> float | None:
        """Return the earliest live deadline, or ``None``."""
        heap = self._heap
        while heap:
            deadline, _, key = heap[0]
            if self._current.get(key) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[K]:
        """Remove and return every owner whose deadline is at or before ``now``, earliest first."""
        due: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            if self._current.get(key) == deadline:
                del self._current[key]
                due.append(key)
        return due

    def _compact(self) -> None:
        self._heap = [(at, next(self._order), key) for key, at in self._current.items()]
        heapq.heapify(self._heap)
