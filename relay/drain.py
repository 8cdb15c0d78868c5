"""Draining: how a stopping relay lets its calls finish (``SIPLINE_DRAIN_S``, docs/relay.md).

Theory of operation
===================

A relay is stopped by SIGTERM (ECS, ``docker stop``, a deploy, a scale-in) or SIGINT (Ctrl-C).
:class:`StopSignals` turns the signals into two events: the **first** signal sets ``stop``, which
starts the shutdown; a **second** one sets ``cut``, which cuts a drain short (an operator who
means it, or an orchestrator that gives up).

The shutdown (``RelayService._shut_down``) then goes in this order:

1. **Stop taking calls.** The relay is no longer ready: an INVITE gets 503 with ``Retry-After:
   1`` (as before the relay was ready), a ``dial`` command is passed on to another relay (the
   command consumers re-send it as a new message, docs/relay.md, Commands: never lost), and the
   health port (``relay/health_port.py``) closes, so a load balancer's TCP health check moves new
   flows to other relays. The heartbeat, both command consumers (a ``hangup`` for a call still
   running must reach it) and the event outbox keep running.
2. **Drain.** :func:`wait_for_calls` waits until every call task has ended, ``SIPLINE_DRAIN_S``
   has passed, or ``cut`` is set, whichever comes first. With ``SIPLINE_DRAIN_S`` 0 (the
   default) it returns at once: today's behaviour, every call is hung up at the signal.
3. **End the rest.** Every call still running is hung up with
   ``CallSignals.shutting_down`` set: BYE with ``Reason: SIP;cause=503;text="relay shutting
   down"`` (RFC 3326, ``relay/sip/reason.py``), recorded ``relay_shutdown``
   (``relay/calls/ending.py``); then, as before draining existed, 5 s for the call tasks to
   record their last events, 5 s for the outbox to deliver, the relay's own command queue
   deleted, the sockets closed.

On ECS the task's ``stopTimeout`` (at most 120 s on Fargate) must exceed ``SIPLINE_DRAIN_S`` plus
the ~15 s of step 3, or ECS sends SIGKILL before the calls are recorded as ended (the reaper then
closes them at their last heartbeat, docs/billing.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from contextlib import suppress
from typing import Any

logger = logging.getLogger("sipline.relay")

__all__ = ["StopSignals", "wait_for_calls"]


class StopSignals:
    """The first stop signal starts the shutdown (``stop``); a second cuts its drain (``cut``)."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.cut = asyncio.Event()

    def received(self) -> None:
        """Handle one SIGTERM or SIGINT."""
        if self.stop.is_set():
            if not self.cut.is_set():
                logger.warning("second stop signal: ending the calls now")
            self.cut.set()
        else:
            self.stop.set()


async def wait_for_calls(
    running: Callable[[], Collection[asyncio.Task[None]]],
    deadline_s: float,
    cut: asyncio.Event | None = None,
) -> int:
    """Wait until no task of ``running()`` is left, ``deadline_s`` passed, or ``cut`` is set.

    ``running`` is read again after each task ends (the set shrinks as calls end). Returns how
    many tasks are still running (the calls the shutdown will hang up).
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    cut_wait = asyncio.ensure_future(cut.wait()) if cut is not None else None
    try:
        while (tasks := running()) and not (cut is not None and cut.is_set()):
            left = end - loop.time()
            if left <= 0:
                break
            waits: set[asyncio.Future[Any]] = set(tasks)
            if cut_wait is not None:
                waits.add(cut_wait)
            await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if cut_wait is not None:
            cut_wait.cancel()
            with suppress(asyncio.CancelledError):
                await cut_wait
    return len(running())
