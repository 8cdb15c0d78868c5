"""The relay's heartbeat: every ``interval_s``, tell the control plane it is alive and which calls
it holds (``POST /webhooks/sip/heartbeat``, signed like every webhook).

The control plane's reaper closes the calls of a relay whose heartbeat stopped, and the calls a
live relay no longer lists (``chalicelib/liveness.py``). So the list must never miss a call the
relay will still report on: it holds every call whose task is running, and every call with
events not yet acknowledged by the control plane (the outbox's backlog). Past
:data:`~chalicelib.contracts.MAX_HEARTBEAT_CALLS` ids the list is cut and marked incomplete, and
the control plane then closes none of this relay's calls for not being listed.

A listed call that has **ended** here (its task is over; only its undelivered events keep it
listed) is also named in ``endedAt`` with the instant of its latest event. Should the relay die
before those events are delivered, the control plane closes the call at that instant, its end,
rather than at this heartbeat: listing a call for its events must not bill it past its end
(docs/billing.md, Calls no relay will end). At most
:data:`~chalicelib.contracts.MAX_HEARTBEAT_ENDED` are named (the earliest ids); the others are
closed at the heartbeat, as before ``endedAt`` existed.

A failed heartbeat is logged and the next one comes ``interval_s`` later; the control plane
declares a relay dead only after several are missed (``docs/relay.md``).

Each heartbeat also announces the relay's own command queue while it exists
(``relay/control/edge_queue.py``); :meth:`HeartbeatSender.wake` sends one at once when that
queue was (re)made, so the control plane learns of it without waiting ``interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import datetime
from typing import Protocol

from chalicelib.clock import utc_now
from chalicelib.contracts import (
    MAX_HEARTBEAT_CALLS,
    MAX_HEARTBEAT_ENDED,
    EdgeHeartbeat,
    EdgeHeartbeatResult,
)
from relay.control.webhooks import ControlPlaneUnavailable

logger = logging.getLogger(__name__)


class HeartbeatSink(Protocol):
    """Where heartbeats go (``ControlPlaneClient``)."""

    async def post_heartbeat(self, heartbeat: EdgeHeartbeat) -> EdgeHeartbeatResult: ...


def heartbeat(
    edge_id: str,
    call_ids: set[str],
    sent_at: datetime,
    command_queue_url: str | None = None,
    ended_at: Mapping[str, datetime] | None = None,
) -> EdgeHeartbeat:
    """Build one heartbeat; more calls than fit are cut (lowest ids kept) and marked incomplete.

    ``ended_at`` names the calls of ``call_ids`` that ended here, with their last event's instant.
    """
    listed = sorted(call_ids)[:MAX_HEARTBEAT_CALLS]
    ends = ended_at or {}
    ended = [call_id for call_id in listed if call_id in ends][:MAX_HEARTBEAT_ENDED]
    return EdgeHeartbeat(
        edge_id=edge_id,
        sent_at=sent_at,
        call_ids=listed,
        complete=len(call_ids) <= MAX_HEARTBEAT_CALLS,
        command_queue_url=command_queue_url,
        ended_at={call_id: ends[call_id] for call_id in ended} or None,  # none: no key sent
    )


class HeartbeatSender:
    """Sends a heartbeat at once, then every ``interval_s``, until cancelled."""

    def __init__(
        self,
        sink: HeartbeatSink,
        edge_id: str,
        calls: Callable[[], set[str]],
        *,
        interval_s: float = 15.0,
        clock: Callable[[], datetime] = utc_now,
        queue_url: Callable[[], str | None] = lambda: None,
        ended_at: Callable[[], Mapping[str, datetime]] = dict,
    ) -> None:
        self._sink = sink
        self._edge_id = edge_id
        self._calls = calls
        self._interval_s = interval_s
        self._clock = clock
        self._queue_url = queue_url
        self._ended_at = ended_at
        self._woken = asyncio.Event()
        self.sent = 0
        self.failures = 0

    async def beat(self) -> bool:
        """Send one heartbeat; return whether the control plane acknowledged it."""
        try:
            beat = heartbeat(
                self._edge_id, self._calls(), self._clock(), self._queue_url(), self._ended_at()
            )
            await self._sink.post_heartbeat(beat)
        except ControlPlaneUnavailable as error:
            self.failures += 1
            logger.warning("heartbeat not acknowledged: %s", error.reason)
            return False
        self.sent += 1
        return True

    def wake(self) -> None:
        """Send the next heartbeat now rather than at the end of the interval."""
        self._woken.set()

    async def run(self) -> None:
        """Beat forever (until cancelled)."""
        while True:
            self._woken.clear()
            await self.beat()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self._interval_s)
