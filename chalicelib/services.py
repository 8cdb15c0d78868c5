"""What every use case is given: the store, the clock, ids, the cipher and the outside world.

Built once per Lambda container by ``app.py`` (or by a test with fakes), then passed down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from chalicelib.clock import utc_now
from chalicelib.commands import CommandSender, EdgeQueues
from chalicelib.config import Settings
from chalicelib.contracts import Command
from chalicelib.crypto import Cipher
from chalicelib.egress import Resolver, system_resolver
from chalicelib.errors import CommandNotSent, StaleVersion
from chalicelib.fallback import FallbackClient
from chalicelib.ids import IdFactory
from chalicelib.store.repository import Store

T = TypeVar("T")
MAX_WRITE_ATTEMPTS = 8


@dataclass
class Services:
    """Dependencies of the use cases, injected so that tests can fix them."""

    settings: Settings
    store: Store
    cipher: Cipher
    commands: CommandSender
    fallback: FallbackClient
    new_id: IdFactory
    clock: Callable[[], datetime] = utc_now
    epoch_seconds: Callable[[], float] = field(default=time.time)
    resolve: Resolver = system_resolver
    """DNS, for checking the hosts users give (``chalicelib/targets.py``) when they are saved."""
    edge_queues: EdgeQueues | None = None
    """The relays' own command queues, for the reaper to delete abandoned ones (None: no SQS)."""


def send_command(services: Services, command: Command) -> None:
    """Queue ``command`` for the edge, or raise CommandNotSent (503) if the queue refuses it."""
    try:
        services.commands.send(command)
    except Exception as error:  # any failure of the queue: the caller decides what to undo
        raise CommandNotSent(f"could not queue the {command.type} command: {error}") from error


def retry_on_conflict(attempt: Callable[[], T]) -> T:
    """Run a read-modify-write ``attempt`` again while it loses races (StaleVersion)."""
    for _ in range(MAX_WRITE_ATTEMPTS - 1):
        try:
            return attempt()
        except StaleVersion:
            continue
    return attempt()
