"""The outbox's durable spool: append-only JSON-lines segments of unacknowledged events.

Synchronous and free of asyncio: :class:`~relay.control.outbox.EventOutbox` calls it from the event
loop, and runs only the function returned by :meth:`EventSpool.sync_job` in a thread.

1. A directory belongs to one live process: :meth:`EventSpool.replay` takes an exclusive ``flock``
   on ``.lock`` (released by the kernel when the process dies, even by ``SIGKILL``).
2. Lines are appended with one unbuffered ``write`` each, so they reach the page cache at once;
   :meth:`EventSpool.sync_job` makes them durable (``fsync`` of the dirty segments and, after a
   segment was created, of the directory).
3. A segment (``segment-00000001.jsonl``, ...) holds at most ``segment_max_events`` lines and is
   deleted when its last event is acknowledged; after a failed write it is sealed, so no line is
   ever appended behind a torn one.
4. The directory holds at most ``max_bytes``: :meth:`EventSpool.append` refuses lines beyond it.
5. Events the control plane refused as invalid go to ``dead-letter.jsonl`` (one
   ``{"reason", "event"}`` object a line, ``fsync``ed), at most ``max_dead_letter_bytes``; it is
   never replayed: an operator reads it (``docs/relay.md``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from chalicelib.contracts import CallEvent

logger = logging.getLogger(__name__)

SEGMENT_PREFIX = "segment-"
SEGMENT_SUFFIX = ".jsonl"
LOCK_NAME = ".lock"
DEAD_LETTER_NAME = "dead-letter.jsonl"


class SpoolLocked(RuntimeError):
    """Another live process holds this spool directory (each relay needs its own)."""


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    file: IO[bytes] | None
    size_bytes: int = 0
    lines: int = 0
    unacked: int = 0
    dirty: bool = False


class EventSpool:
    """Append-only JSON-lines segments of events not yet acknowledged (synchronous, no asyncio)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_max_events: int,
        max_dead_letter_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_dead_letter_bytes = max_dead_letter_bytes
        self.segment_max_events = segment_max_events
        self._segments: dict[int, _Segment] = {}
        self._active: _Segment | None = None
        self._next_number = 1
        self._dir_dirty = False
        self._lock_fd: int | None = None
        self.size_bytes = 0
        """Bytes in the segments on disk (the cap applies to this)."""
        self.corrupt_lines = 0
        """Lines skipped on replay because they do not parse (a torn last write)."""

    def replay(self) -> list[tuple[CallEvent, int]]:
        """Lock the directory, adopt the segments left on disk and return their events, oldest first.

        Raises:
            SpoolLocked: another live process uses the directory.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock()
        items: list[tuple[CallEvent, int]] = []
        seen: set[str] = set()
        for number, path in sorted(self._segment_files()):
            segment = _Segment(number, path, None, size_bytes=path.stat().st_size)
            self._segments[number] = segment
            self.size_bytes += segment.size_bytes
            self._next_number = max(self._next_number, number + 1)
            for line in path.read_bytes().splitlines():
                event = self._parse_line(line, path)
                if event is not None and event.event_id not in seen:
                    seen.add(event.event_id)
                    segment.unacked += 1
                    items.append((event, number))
            if segment.unacked == 0:
                self._delete(segment)
        return items

    def _lock(self) -> None:
        # flock is released by the kernel when the holder dies, even by SIGKILL.
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLocked(f"{self.directory} is in use by another process") from None
        self._lock_fd = fd

    def _segment_files(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"):
            digits = path.name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
            if digits.isdigit():
                found.append((int(digits), path))
        return found

    def append(self, line: bytes) -> int | None:
        """Write one line to the active segment; return its number, or None if not spooled."""
        if self.size_bytes + len(line) > self.max_bytes:
            return None
        try:
            segment = self._writable_segment()
            assert segment.file is not None
            written = segment.file.write(line)
            if written != len(line):
                raise OSError(f"short write ({written} of {len(line)} bytes)")
        except OSError:
            if self._active is not None:  # never append after a torn line
                self._seal(self._active)
            raise
        segment.size_bytes += len(line)
        segment.lines += 1
        segment.unacked += 1
        segment.dirty = True
        self.size_bytes += len(line)
        return segment.number

    def _writable_segment(self) -> _Segment:
        if self._active is not None and self._active.lines >= self.segment_max_events:
            self._seal(self._active)
        if self._active is None:
            number = self._next_number
            self._next_number += 1
            path = self.directory / f"{SEGMENT_PREFIX}{number:08d}{SEGMENT_SUFFIX}"
            self.directory.mkdir(parents=True, exist_ok=True)
            file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed when the segment is deleted
            self._active = self._segments[number] = _Segment(number, path, file)
            self._dir_dirty = True
        return self._active

    def _seal(self, segment: _Segment) -> None:
        if segment is self._active:
            self._active = None
            if segment.unacked == 0:
                self._delete(segment)

    def sync_job(self) -> Callable[[], None] | None:
        """Return a function (to run in a thread) that makes every line written so far durable.

        It works on duplicated descriptors, so segments may be closed meanwhile. None: nothing to do.
        """
        fds = [os.dup(s.file.fileno()) for s in self._segments.values() if s.dirty and s.file]
        for segment in self._segments.values():
            segment.dirty = False
        if self._dir_dirty:
            fds.append(os.open(self.directory, os.O_RDONLY))
            self._dir_dirty = False
        if not fds:
            return None

        def sync() -> None:
            try:
                for fd in fds:
                    os.fsync(fd)
            finally:
                for fd in fds:
                    os.close(fd)

        return sync

    def ack(self, number: int) -> None:
        """Note that one event of segment ``number`` is acknowledged; delete it once all are."""
        segment = self._segments.get(number)
        if segment is None:
            return
        segment.unacked -= 1
        if segment.unacked <= 0:
            if segment is self._active:
                self._active = None
            self._delete(segment)

    def dead_letter(self, event: CallEvent, reason: str) -> bool:
        """Append ``event`` and why it was refused to the dead-letter file, durably (rule 5).

        Returns False when the file has reached ``max_dead_letter_bytes`` (nothing written).
        """
        record = {"reason": reason[:1000], "event": event.model_dump(mode="json", by_alias=True)}
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        path = self.directory / DEAD_LETTER_NAME
        self.directory.mkdir(parents=True, exist_ok=True)
        size = path.stat().st_size if path.exists() else 0
        if size + len(line) > self.max_dead_letter_bytes:
            return False
        with open(path, "ab", buffering=0) as file:
            file.write(line)
            os.fsync(file.fileno())
        return True

    def _delete(self, segment: _Segment) -> None:
        if segment.file is not None:
            segment.file.close()
        self._segments.pop(segment.number, None)
        self.size_bytes -= segment.size_bytes
        segment.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Close every segment file, keeping them on disk for the next start."""
        for segment in self._segments.values():
            if segment.file is not None:
                segment.file.close()
                segment.file = None
        self._segments.clear()
        self._active = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _parse_line(self, line: bytes, path: Path) -> CallEvent | None:
        if not line.strip():
            return None
        try:
            return CallEvent.model_validate_json(line)
        except ValidationError:
            self.corrupt_lines += 1
            logger.warning(
                "spool %s: skipped a line that does not parse: %r", path.name, line[:120]
            )
            return None
