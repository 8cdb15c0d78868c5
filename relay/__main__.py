"""``python -m relay``: run the SIP edge with settings from the environment (``relay/config.py``)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from relay.config import RelayConfigError, RelaySettings
from relay.service import RelayService


async def _main(settings: RelaySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
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
    asyncio.run(_main(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
