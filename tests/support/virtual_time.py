"""An asyncio loop on a simulated clock, for socket tests whose claims involve time.

The loop's clock starts at 0 and moves only when the loop has nothing left to do: where a real
loop would sleep until its next timer, this one jumps to it. So a timer set for 0.3 s fires at
exactly 0.3 s of loop time however loaded the machine is, and a test can assert durations and
instants exactly instead of within wall-clock bounds that a busy 2-core VM breaks by luck.

Sockets stay real (127.0.0.1): a datagram or TCP segment sent on loopback is in the receiver's
buffer when ``send`` returns, so the loop sees it before it looks for a timer to jump to. Work
handed to an executor (``getaddrinfo``) runs inline, so that nothing a test waits for happens out
of the loop's sight.

Limits: a peer in another thread or process (SIPp, baresip, a server on its own loop) answers
in real time, which this clock does not wait for; such tests run on a real loop and assert order,
counts and content, never durations (bench/README.md: timing claims are benchmarks).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

__all__ = ["VirtualClockLoop", "run_in_virtual_time"]

_T = TypeVar("_T")


class _JumpingSelector(selectors.DefaultSelector):
    """Poll without waiting; when nothing is ready, move the clock by the wait instead."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only I/O can wake the loop, so wait for it
            return super().select(None)
        self._loop.advance(timeout)
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector loop whose ``time()`` is simulated (see the module docstring).

    ``wake_late_s``: every jump overshoots by this much, as a loaded machine wakes a loop late;
    a test of a schedule that must not drift runs on it.
    """

    def __init__(self, *, wake_late_s: float = 0.0) -> None:
        self._now = 0.0
        self.wake_late_s = wake_late_s
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        """Return the simulated time: 0 at the start, moved only by `advance`."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds`` and ``wake_late_s`` (the loop would have waited)."""
        self._now += max(0.0, seconds) + self.wake_late_s

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        """Run ``func`` at once, in the loop's thread: its result is ready before time moves."""
        future: asyncio.Future[_T] = self.create_future()
        try:
            future.set_result(func(*args))
        except Exception as error:
            future.set_exception(error)
        return future


def run_in_virtual_time(
    main: Callable[[], Awaitable[_T]], *, timeout_s: float = 60.0, wake_late_s: float = 0.0
) -> _T:
    """Run ``main()`` on a fresh `VirtualClockLoop`, bounded by ``timeout_s`` of simulated time."""

    async def bounded() -> _T:
        return await asyncio.wait_for(main(), timeout_s)

    with asyncio.Runner(loop_factory=lambda: VirtualClockLoop(wake_late_s=wake_late_s)) as runner:
        return runner.run(bounded())
