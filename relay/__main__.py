"""``python -m relay``: run the SIP edge with settings from the environment (``relay/config.py``).

Garbage collection is tuned for latency here, process-wide (measured by ``bench/sip_load.py``,
see ``bench/README.md``): everything imported and built at start-up is frozen (``gc.freeze()``,
as ``app.py`` does), so that full collections no longer walk it; and the young generation is
collected every ``YOUNG_GC_INTERVAL_S``. Without that, the steady churn of calls (each call's
objects are freed by reference counting about 5 s after they were made, when its INVITE
transaction ends) keeps the young generation's net allocation count near zero, the young
generation grows to tens of thousands of objects, and its collection stalls the event loop for
30-40 ms every few seconds. The middle generation is collected every ``MIDDLE_GC_INTERVAL_S``,
while it is still small (under 3 ms), rather than when the young collections have filled it.
Full collections walk every object not frozen: 14-21 ms at 100 calls, three times in 40 s when
CPython schedules them (``bench/relay_calls.py`` saw them as caller->agent delay p99 of 44 ms).
They run every ``FULL_GC_INTERVAL_S`` instead, which is rare enough to leave the p99 alone; the
relay is written not to make reference cycles, so they find little.

The event loop is asyncio's own. uvloop measured no better here (100 and 200 calls, within
noise: the relay's time is in its own callbacks, not the loop's), and its ``start_tls`` hands
the ClientHello to the old protocol when the upgrade follows ``connection_made`` (the TLS
listener admits a connection before its handshake), so TLS calls failed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys

from relay import ecs_identity
from relay.config import RelayConfigError, RelaySettings
from relay.drain import StopSignals
from relay.service import RelayService

YOUNG_GC_INTERVAL_S = 0.05
MIDDLE_GC_INTERVAL_S = 0.5
FULL_GC_INTERVAL_S = 60.0
_YOUNG_PER_MIDDLE = round(MIDDLE_GC_INTERVAL_S / YOUNG_GC_INTERVAL_S)
_YOUNG_PER_FULL = round(FULL_GC_INTERVAL_S / YOUNG_GC_INTERVAL_S)
_NO_AUTOMATIC_FULL_GC = 1 << 30
"""The oldest generation's threshold: CPython never starts a full collection by itself."""
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _collect_young(loop: asyncio.AbstractEventLoop, count: int = 0) -> None:
    if count % _YOUNG_PER_FULL == _YOUNG_PER_FULL - 1:
        gc.collect(2)
    else:
        gc.collect(1 if count % _YOUNG_PER_MIDDLE == 0 else 0)
    loop.call_later(YOUNG_GC_INTERVAL_S, _collect_young, loop, count + 1)


async def serve(service: RelayService) -> None:
    """Run ``service`` until SIGTERM or SIGINT, then shut it down gracefully (docs/relay.md);
    a second signal cuts the drain short (``relay/drain.py``)."""
    signals = StopSignals()
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, signals.received)
    try:
        await service.run(signals.stop, signals.cut)
    finally:
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def _main(settings: RelaySettings) -> None:
    _collect_young(asyncio.get_running_loop())
    await serve(RelayService(settings))


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = RelaySettings.from_env()
        settings = ecs_identity.resolve(settings, os.environ)  # SIPLINE_PUBLIC_ADDRESS=ecs
    except RelayConfigError as error:  # an EcsIdentityError too: the relay must not start
        print(f"relay: {error}", file=sys.stderr)
        return 2
    gc.collect()
    gc.freeze()  # what start-up built lives as long as the process: no collection walks it again
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, _NO_AUTOMATIC_FULL_GC)
    asyncio.run(_main(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
