"""Call events on their way to the control plane: batched, spooled to disk, retried until acked.

Theory of operation:

1. :meth:`EventOutbox.record` is synchronous and cheap: it appends the event's JSON line to the
   current spool segment with one unbuffered ``write`` (so the line is in the kernel's page cache
   and survives the relay process dying, even by ``SIGKILL``) and queues the event in memory.
2. A background task takes up to ``max_batch`` events (100), or whatever arrived within
   ``batch_window_s`` (200 ms) of the first, ``fsync``\\ s the spool segments they sit in (in a
   thread, on duplicated descriptors, so the event loop never blocks on the disk), and only then
   posts the batch (contract 2).
3. A batch is resent with capped exponential backoff and jitter (from an injected random source)
   until the control plane acknowledges it; the backoff grows with consecutive failures of any
   batch and restarts at the first success. Delivery is at least once; the control plane keeps
   each ``eventId`` once.
   - A batch that still fails after ``max_attempts`` posts (any status but ``400
     invalid_input``, or no answer) is split in halves, each delivered the same way, so the
     events that make it fail end up alone. A single event that still fails is *parked*: it stays
     in the spool and is retried, with the other parked events, every ``park_retry_s``, while
     the events behind it flow.
   - A batch the control plane *refuses* (``400 invalid_input``: some event breaks the
     contract, a bug) is split at once, down to the refused events; those are written to the
     dead-letter file (``dead-letter.jsonl`` in the spool directory, with the reason), logged
     and counted in ``refused``: never retried, never silently dropped.
4. Segments (``segment-00000001.jsonl``, ...) hold at most ``segment_max_events`` lines. A segment
   is deleted as soon as every event in it is acknowledged, including the one being written (the
   next event then opens a new one), so an idle, caught-up relay has an empty spool directory.
5. On start, :meth:`EventOutbox.open` reads every segment left by an earlier process, skips a torn
   last line (counted in ``corrupt_lines``) and queues the events again, oldest segment first;
   events that were acknowledged but whose segment was not yet deleted are sent again, and the
   control plane counts them as duplicates.
6. Bounds. The spool holds at most ``max_spool_bytes``: past that, new events are *not* spooled
   but still queued in memory and delivered while the process lives (counted in ``not_spooled``);
   older spooled events are never dropped for newer ones, as they belong to calls already decided.
   The memory queue holds at most ``max_pending_events``: past that, new events are refused
   (counted in ``dropped``, logged as errors).

Size: just over 400 lines: the queue, its delivery, splitting and parking share one state (what
is pending, in flight and parked, and the spool's acknowledgements); apart, each would take it all.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from chalicelib.contracts import CallEvent, CallEventBatch, CallEventBatchResult
from relay.control.spool import EventSpool, SpoolLocked
from relay.control.webhooks import ControlPlaneUnavailable, RequestRefused

__all__ = ["EventOutbox", "EventSender", "OutboxStats", "SpoolLocked"]

logger = logging.getLogger(__name__)

MAX_BATCH = 500  # CallEventBatch.events max_length


class EventSender(Protocol):
    """Posts a batch of events and returns the acknowledgement (``ControlPlaneClient``)."""

    async def post_events(self, batch: CallEventBatch) -> CallEventBatchResult: ...


@dataclass(slots=True)
class OutboxStats:
    """Counters of an :class:`EventOutbox` (for metrics and tests)."""

    recorded: int = 0
    delivered: int = 0
    """Events acknowledged by the control plane (applied or duplicate)."""
    batches: int = 0
    retries: int = 0
    replayed: int = 0
    """Events read back from the spool on start."""
    not_spooled: int = 0
    """Events kept in memory only because the spool was full or failing."""
    dropped: int = 0
    """Events refused because the memory queue was full."""
    refused: int = 0
    """Events the control plane refused as invalid (written to the dead-letter file)."""
    parked: int = 0
    """Times a single event failed ``max_attempts`` posts and was set aside for later."""
    splits: int = 0
    """Batches split in halves after failing."""
    corrupt_lines: int = 0
    spool_errors: int = 0


@dataclass(frozen=True, slots=True)
class _Item:
    event: CallEvent
    segment: int | None


@dataclass(slots=True)
class _Backoff:
    base_s: float
    cap_s: float
    random: Callable[[], float]

    def delay(self, attempt: int) -> float:
        """Exponential, capped, with jitter in [50%, 100%] of the step (never a zero wait)."""
        step = min(self.cap_s, self.base_s * 2.0 ** min(attempt, 64))  # 2.0**1024 overflows
        return step * (0.5 + 0.5 * self.random())


class _StillFailing(Exception):
    """A batch failed ``max_attempts`` posts (the last reason is the message)."""


@dataclass(slots=True)
class _Queue:
    pending: deque[_Item] = field(default_factory=deque)
    in_flight: list[_Item] = field(default_factory=list)
    parked: deque[_Item] = field(default_factory=deque)
    park_until: float | None = None
    nonempty: asyncio.Event = field(default_factory=asyncio.Event)
    full: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class EventOutbox:
    """Delivers recorded events to the control plane at least once, across relay restarts."""

    def __init__(
        self,
        sender: EventSender,
        spool_dir: Path,
        *,
        max_batch: int = 100,
        batch_window_s: float = 0.2,
        max_spool_bytes: int = 64 * 1024 * 1024,
        segment_max_events: int = 1000,
        max_pending_events: int = 50_000,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 30.0,
        max_attempts: int = 6,
        park_retry_s: float = 60.0,
        max_dead_letter_bytes: int = 16 * 1024 * 1024,
        random_source: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be from 1 to {MAX_BATCH} (got {max_batch})")
        self._sender = sender
        self._spool = EventSpool(
            spool_dir,
            max_bytes=max_spool_bytes,
            segment_max_events=segment_max_events,
            max_dead_letter_bytes=max_dead_letter_bytes,
        )
        self._max_attempts = max_attempts
        self._park_retry_s = park_retry_s
        self._failures = 0
        self._max_batch = max_batch
        self._batch_window_s = batch_window_s
        self._max_pending = max_pending_events
        self._backoff = _Backoff(backoff_base_s, backoff_cap_s, random_source)
        self._sleep = sleep
        self._queue = _Queue()
        self._queue.idle.set()
        self._opened = False
        self._closed = False
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self.stats = OutboxStats()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def undelivered(self) -> int:
        """Return how many recorded events are not acknowledged yet."""
        queue = self._queue
        return len(queue.pending) + len(queue.in_flight) + len(queue.parked)

    def undelivered_call_ids(self) -> set[str]:
        """Return the calls that have events not acknowledged yet (the heartbeat lists them)."""
        queue = self._queue
        items = (*queue.pending, *queue.in_flight, *queue.parked)
        return {item.event.call_id for item in items if item.event.call_id}

    def undelivered_until(self) -> dict[str, datetime]:
        """Return, for each call with events not acknowledged yet, its latest such event's time."""
        queue = self._queue
        latest: dict[str, datetime] = {}
        for item in (*queue.pending, *queue.in_flight, *queue.parked):
            call_id, at = item.event.call_id, item.event.occurred_at
            if call_id and (call_id not in latest or at > latest[call_id]):
                latest[call_id] = at
        return latest

    def open(self) -> None:
        """Adopt the spool left by an earlier process and queue its events (idempotent)."""
        if self._opened:
            return
        if self._closed:
            raise RuntimeError("a closed EventOutbox cannot be opened again; make a new one")
        replayed = self._spool.replay()
        self._opened = True
        self.stats.replayed = len(replayed)
        self.stats.corrupt_lines = self._spool.corrupt_lines
        if replayed:
            logger.info("replaying %d undelivered events from the spool", len(replayed))
            for event, segment in replayed:
                self._enqueue(_Item(event, segment))

    def record(self, event: CallEvent) -> None:
        """Spool and queue ``event`` for delivery; never blocks on the network.

        After :meth:`close` the event is only spooled, for the next process to deliver.
        """
        self.stats.recorded += 1
        if self._closed:
            self._spool_line(event)
            return
        self.open()
        if len(self._queue.pending) + len(self._queue.parked) >= self._max_pending:
            self.stats.dropped += 1
            if self.stats.dropped % 1000 == 1:
                logger.error(
                    "event outbox full (%d queued): %d events dropped, the last %s",
                    self._max_pending,
                    self.stats.dropped,
                    event.model_dump_json(by_alias=True),
                )
            return
        self._enqueue(_Item(event, self._spool_line(event)))

    def _spool_line(self, event: CallEvent) -> int | None:
        line = event.model_dump_json(by_alias=True).encode() + b"\n"
        try:
            segment = self._spool.append(line)
        except OSError as error:
            self.stats.spool_errors += 1
            logger.error("event spool write failed: %s", error)
            segment = None
        if segment is None:
            self.stats.not_spooled += 1
            if self.stats.not_spooled % 1000 == 1:
                logger.warning(
                    "event spool full or failing (%d bytes): %d events kept in memory only",
                    self._spool.size_bytes,
                    self.stats.not_spooled,
                )
        return segment

    def _enqueue(self, item: _Item) -> None:
        queue = self._queue
        queue.pending.append(item)
        queue.idle.clear()
        queue.nonempty.set()
        if len(queue.pending) >= self._max_batch:
            queue.full.set()

    def start(self) -> None:
        """Replay the spool and start delivering, in a task this outbox owns until :meth:`close`."""
        self.open()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-outbox")
            self._task.add_done_callback(_log_failure)

    async def _run(self) -> None:
        try:
            while True:
                batch = await self._next_batch()
                await self._sync()
                settled = await self._deliver(batch)
                self._finish(settled)
        finally:
            parked = {id(item) for item in self._queue.parked}
            unsettled = [item for item in self._queue.in_flight if id(item) not in parked]
            self._queue.pending.extendleft(reversed(unsettled))
            self._queue.in_flight.clear()

    async def _sync(self) -> None:
        job = self._spool.sync_job()
        if job is None:
            return
        try:
            await asyncio.to_thread(job)
        except OSError as error:  # post anyway: the events are still in the page cache
            self.stats.spool_errors += 1
            logger.error("event spool fsync failed: %s", error)

    async def _next_batch(self) -> list[_Item]:
        queue = self._queue
        loop = asyncio.get_running_loop()
        while not queue.pending:
            if queue.parked and queue.park_until is not None and loop.time() >= queue.park_until:
                queue.park_until = None  # the parked events' turn: a batch of them alone
                return self._take(queue.parked)
            queue.nonempty.clear()
            wait = None if queue.park_until is None else max(0.0, queue.park_until - loop.time())
            with suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await queue.nonempty.wait()
        if len(queue.pending) < self._max_batch and not self._draining:
            queue.full.clear()
            with suppress(TimeoutError):
                async with asyncio.timeout(self._batch_window_s):
                    await queue.full.wait()
        return self._take(queue.pending)

    def _take(self, source: deque[_Item]) -> list[_Item]:
        count = min(self._max_batch, len(source))
        self._queue.in_flight = [source.popleft() for _ in range(count)]
        return list(self._queue.in_flight)

    async def _deliver(self, items: list[_Item]) -> list[_Item]:
        """Post ``items`` (rule 3); return those settled: acknowledged, or dead-lettered.

        The others were parked: they stay in the spool and are retried later.
        """
        try:
            await self._post(items)
        except (RequestRefused, _StillFailing) as failure:
            if len(items) > 1:
                self.stats.splits += 1
                middle = len(items) // 2
                return await self._deliver(items[:middle]) + await self._deliver(items[middle:])
            if isinstance(failure, RequestRefused):
                self._dead_letter(items[0], failure.reason)
                return items
            self._park(items[0], str(failure))
            return []
        self.stats.delivered += len(items)
        return items

    async def _post(self, items: list[_Item]) -> None:
        """Post one batch up to ``max_attempts`` times; raise RequestRefused or _StillFailing."""
        batch = CallEventBatch(events=[item.event for item in items])
        reason = ""
        for _ in range(self._max_attempts):
            try:
                await self._sender.post_events(batch)
            except RequestRefused:
                raise
            except ControlPlaneUnavailable as error:
                reason = error.reason
            except Exception as error:
                # The root of delivery: whatever the sender raised, keep the events and retry.
                logger.exception("event delivery failed unexpectedly")
                reason = repr(error)
            else:
                self.stats.batches += 1
                self._failures = 0
                return
            self.stats.retries += 1
            await self._sleep(self._backoff.delay(self._failures))
            self._failures += 1
        raise _StillFailing(reason)

    def _dead_letter(self, item: _Item, reason: str) -> None:
        self.stats.refused += 1
        line = item.event.model_dump_json(by_alias=True)
        logger.error("control plane refused event %s (%s): dead-lettered", line, reason)
        try:
            kept = self._spool.dead_letter(item.event, reason)
        except OSError as error:
            self.stats.spool_errors += 1
            kept = False
            logger.error("event dead-letter write failed: %s", error)
        if not kept:
            logger.error("dead-letter file full or failing: event %s is only in this log", line)

    def _park(self, item: _Item, reason: str) -> None:
        self.stats.parked += 1
        logger.warning(
            "event %s still fails after %d posts (%s): retried in %gs, later events go first",
            item.event.event_id,
            self._max_attempts,
            reason,
            self._park_retry_s,
        )
        queue = self._queue
        queue.parked.append(item)
        if queue.park_until is None:
            queue.park_until = asyncio.get_running_loop().time() + self._park_retry_s

    def _finish(self, settled: list[_Item]) -> None:
        for item in settled:
            if item.segment is not None:
                self._spool.ack(item.segment)
        self._queue.in_flight = []
        if not self._queue.pending and not self._queue.parked:
            self._queue.idle.set()

    async def drain(self, timeout_s: float) -> int:
        """Deliver what is queued, without waiting for batch windows, for at most ``timeout_s``.

        Returns the number of events still undelivered (they stay in the spool for the next start).
        """
        self._draining = True
        self._queue.full.set()
        with suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._queue.idle.wait()
        await self.close()
        return self.undelivered

    async def close(self) -> None:
        """Stop delivering at once; what is undelivered stays in the spool for the next start."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.undelivered:
            logger.warning(
                "event outbox closed with %d undelivered events (%d spooled for the next start)",
                self.undelivered,
                sum(
                    1
                    for i in (*self._queue.pending, *self._queue.in_flight, *self._queue.parked)
                    if i.segment
                ),
            )
        self._spool.close()
        self._closed = True


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.error("event outbox stopped: %r", error, exc_info=error)
