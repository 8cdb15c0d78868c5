"""``python -m relay``: run the SIP edge with settings from the environment (``relay/config.py``).

Garbage collection is tuned for latency here, process-wide (measured by ``bench/sip_load.py``,
see ``bench/README.md``): everything imported and built at start-up is frozen (``gc.freeze()``,
as ``app.py`` does), so that full collections no longer walk it; and the young generation is
collected every ``YOUNG_GC_INTERVAL_S``. Without that, the steady churn of calls (each call's
objects are freed by reference counting about 5 s after they were made, when its INVITE
transaction ends) keeps the young generation's net allocation count near zero, the young
generation grows to tens of thousands of objects, and its collection stalls the event loop for
30-40 ms every few seconds. The middle generation is collected every ``MIDDLE_GC_INTERVAL_S``,
while it is still small (2-6 ms), rather than when the young collections have filled it.

The event loop is asyncio's own. uvloop measured no better here (100 and 200 calls, within
noise: the relay's time is in its own callbacks, not the loop's), and its ``start_tls`` hands
the ClientHello to the old protocol when the upgrade follows ``connection_made`` (the TLS
listener admits a connection before its handshake), so TLS calls failed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

from relay.config import RelayConfigError, RelaySettings
from relay.service import RelayService

YOUNG_GC_INTERVAL_S = 0.05
MIDDLE_GC_INTERVAL_S = 0.5
_YOUNG_PER_MIDDLE = round(MIDDLE_GC_INTERVAL_S / YOUNG_GC_INTERVAL_S)


def _collect_young(loop: asyncio.AbstractEventLoop, count: int = 0) -> None:
    gc.collect(1 if count % _YOUNG_PER_MIDDLE == 0 else 0)
    loop.call_later(YOUNG_GC_INTERVAL_S, _collect_young, loop, count + 1)


async def _main(settings: RelaySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _collect_young(loop)
    await RelayService(settings).run(stop)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = RelaySettings.from_env()
    except RelayConfigError as error:
        print(f"relay: {error}", file=sys.stderr)
        return 2
    gc.collect()
    gc.freeze()  # what start-up built lives as long as the process: no collection walks it again
    asyncio.run(_main(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
