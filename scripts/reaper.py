"""``make dev``'s stand-in for the reaper's schedule: the scheduled Lambda's own handler, every N s.

On AWS, EventBridge invokes ``app.reap_calls`` once a minute; ``chalice local`` runs no schedules,
so the local stack starts this loop beside it, with the control plane's environment.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any


def scheduled_event() -> dict[str, Any]:
    """An EventBridge "Scheduled Event", as the Lambda receives it."""
    return {
        "version": "0",
        "id": "local",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [],
        "detail": {},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between runs")
    parser.add_argument("--once", action="store_true", help="run once and exit")
    args = parser.parse_args(argv)
    import app  # after argparse: --help needs no AWS

    while True:
        try:
            app.reap_calls(scheduled_event(), None)
        except Exception as error:  # the loop's root: a failed run is retried at the next tick
            print(f"reaper run failed: {error!r}", file=sys.stderr, flush=True)
        if args.once:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
