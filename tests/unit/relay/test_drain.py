"""The stop signals (``relay/drain.py``): the first starts the shutdown, a second cuts its
drain short (docs/relay.md, Shutting down)."""

from __future__ import annotations

import asyncio

from relay.drain import StopSignals


def test_the_first_signal_stops_and_the_second_cuts_the_drain() -> None:
    async def scenario() -> None:
        signals = StopSignals()
        assert not signals.stop.is_set() and not signals.cut.is_set()
        signals.received()
        assert signals.stop.is_set() and not signals.cut.is_set()
        signals.received()
        assert signals.cut.is_set()
        signals.received()  # a third changes nothing
        assert signals.stop.is_set() and signals.cut.is_set()

    asyncio.run(scenario())
