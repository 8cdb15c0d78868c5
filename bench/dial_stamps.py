"""``python -m bench.dial_stamps FILE``: the relay (``python -m relay``) noting when it takes each dial.

The one change to the relay is a wrapper on ``CommandHandlers.bind``, the point where the
command consumer (``relay/control/commands.py``) hands a parsed command to its handler: for a
``dial`` command, the handler it returns first writes ``<callId> <time.time()>`` as a line to
FILE (line-buffered: one ``write`` system call, a few µs, per dial), then runs the relay's own
handler; for a ``transfer`` command, ``<transferId> <time.time()>`` the same way
(``bench/transfer.py``). So the stamp is taken on the relay's event loop the moment the handler
starts, after the SQS receive and the JSON parsing, before anything of the call is built.

``time.time()`` is CLOCK_REALTIME, the clock the kernel stamps captured packets with
(``dumpcap`` on ``lo``), so the stamp and the INVITE's capture time are on one clock of one
machine: their difference is "dial command consumed -> INVITE on the wire" (bench/outgoing.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from typing import IO

from chalicelib.contracts import Command, DialCommand, TransferCommand
from relay.control.commands import CommandHandlers


def install(stamps: IO[str]) -> None:
    """Wrap ``CommandHandlers.bind`` so that each dial's and transfer's handler stamps its start."""
    bind = CommandHandlers.bind

    def stamped_bind(
        self: CommandHandlers, command: Command
    ) -> Callable[[], Awaitable[None]] | None:
        run = bind(self, command)
        if run is None or not isinstance(command, DialCommand | TransferCommand):
            return run
        key = command.transfer_id if isinstance(command, TransferCommand) else command.call_id

        async def stamped() -> None:
            stamps.write(f"{key} {time.time():.6f}\n")
            await run()

        return stamped

    CommandHandlers.bind = stamped_bind  # type: ignore[method-assign]


def main() -> int:
    import relay.__main__ as relay_main

    install(open(sys.argv[1], "a", buffering=1))  # noqa: SIM115 - open for the process's life
    del sys.argv[1]
    return relay_main.main()


if __name__ == "__main__":
    sys.exit(main())
