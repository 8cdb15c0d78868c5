"""Commands from the control plane (contract 3): long-poll SQS, dispatch, delete when handled.

Theory of operation:

1. One long poll at a time (``ReceiveMessage`` with ``WaitTimeSeconds``) runs in a dedicated
   thread (boto3 is synchronous; its clients are thread-safe). It asks for at most as many
   messages as there are free handler slots, so at most ``max_in_flight`` commands run at once and
   a busy edge leaves the rest on the queue for the others.
2. Each message is parsed with :func:`chalicelib.contracts.parse_command` and handed to the
   handler for its ``type``. The handler should return once the command is *taken in charge*
   (a dial started, a hang-up sent), not when the call ends. While it runs, the message's
   visibility is extended every half ``visibility_timeout_s``.
3. The message is deleted only after its handler returned. A handler that raises leaves the
   message to come back after a backoff (``2 ** (receives - 1)`` seconds, capped); a handler that
   raises :class:`CommandNotHere` hands it straight back to the queue for another edge.
4. Poison: a message that does not parse, names a type this edge has no handler for (a newer
   control plane during a rolling deploy), or keeps failing, is handed back the same way until it
   has been received ``max_receives`` times; then it is moved to the dead-letter queue if one is
   configured (else logged with its body) and deleted. Every case has a counter in :attr:`stats`.
   The queue's own redrive policy (infra) is the backstop behind this.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from chalicelib.contracts import (
    DialCommand,
    HangUpCommand,
    RegisterCommand,
    UnregisterCommand,
    parse_command,
)

logger = logging.getLogger(__name__)

Command = DialCommand | HangUpCommand | RegisterCommand | UnregisterCommand
C = TypeVar("C", DialCommand, HangUpCommand, RegisterCommand, UnregisterCommand)
Handler = Callable[[C], Awaitable[None]]
SQS_MAX_MESSAGES = 10  # ReceiveMessage's MaxNumberOfMessages limit
SQS_MAX_VISIBILITY_S = 43_200


class CommandNotHere(Exception):
    """Raised by a handler for a command this edge cannot take (e.g. it does not hold the call)."""


@dataclass(frozen=True)
class CommandHandlers:
    """The async handler of each command type; a type without one is not handled by this edge."""

    dial: Handler[DialCommand] | None = None
    hangup: Handler[HangUpCommand] | None = None
    register: Handler[RegisterCommand] | None = None
    unregister: Handler[UnregisterCommand] | None = None

    def bind(self, command: Command) -> Callable[[], Awaitable[None]] | None:
        """Return the call that handles ``command``, or None if this edge has no handler."""
        match command:
            case DialCommand():
                return _bound(self.dial, command)
            case HangUpCommand():
                return _bound(self.hangup, command)
            case RegisterCommand():
                return _bound(self.register, command)
            case UnregisterCommand():
                return _bound(self.unregister, command)


def _bound(handler: Handler[C] | None, command: C) -> Callable[[], Awaitable[None]] | None:
    return None if handler is None else lambda: handler(command)


@dataclass(slots=True)
class CommandStats:
    """Counters of a :class:`CommandConsumer`."""

    received: int = 0
    handled: int = 0
    failed: int = 0
    """Handler raised (the message comes back later)."""
    not_here: int = 0
    unparseable: int = 0
    unhandled: int = 0
    """Parsed, but this edge has no handler for its type."""
    poison: int = 0
    """Deleted (or moved to the dead-letter queue) after ``max_receives`` receives."""
    receive_errors: int = 0


class CommandConsumer:
    """Consumes edge commands from an SQS queue (see the module docstring)."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handlers: CommandHandlers,
        *,
        max_in_flight: int = 10,
        wait_time_s: int = 10,
        visibility_timeout_s: int = 30,
        max_receives: int = 5,
        dead_letter_queue_url: str | None = None,
        error_backoff_s: float = 1.0,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._handlers = handlers
        self._max_in_flight = max_in_flight
        self._wait_time_s = wait_time_s
        self._visibility_timeout_s = visibility_timeout_s
        self._max_receives = max_receives
        self._dead_letter_queue_url = dead_letter_queue_url
        self._error_backoff_s = error_backoff_s
        self._in_flight = 0
        self._slot_freed = asyncio.Event()
        self.stats = CommandStats()

    async def run(self) -> None:
        """Poll and dispatch until cancelled; handlers in flight are cancelled with it."""
        poller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqs-poll")
        try:
            async with asyncio.TaskGroup() as handlers:
                while True:
                    while self._in_flight >= self._max_in_flight:
                        self._slot_freed.clear()
                        await self._slot_freed.wait()
                    free = self._max_in_flight - self._in_flight
                    for message in await self._receive(poller, min(SQS_MAX_MESSAGES, free)):
                        self._in_flight += 1
                        handlers.create_task(self._handle_and_release(message))
        finally:
            # A long poll in progress ends by itself within wait_time_s; its messages come back.
            poller.shutdown(wait=False, cancel_futures=True)

    async def _receive(self, poller: ThreadPoolExecutor, count: int) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(
                poller,
                lambda: self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=count,
                    WaitTimeSeconds=self._wait_time_s,
                    VisibilityTimeout=self._visibility_timeout_s,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                ),
            )
        except Exception as error:  # root of the poll loop: SQS down, throttled, misconfigured
            self.stats.receive_errors += 1
            logger.warning("command queue receive failed: %s", error)
            await asyncio.sleep(self._error_backoff_s)
            return []
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        self.stats.received += len(messages)
        return messages

    async def _handle_and_release(self, message: dict[str, Any]) -> None:
        try:
            await self._handle(message)
        except Exception:  # root of a handler task: never let one message end the consumer
            logger.exception("command message %s: handling failed", message.get("MessageId"))
        finally:
            self._in_flight -= 1
            self._slot_freed.set()

    async def _handle(self, message: dict[str, Any]) -> None:
        try:
            command = parse_command(message["Body"])
        except ValidationError as error:
            self.stats.unparseable += 1
            await self._retry_or_poison(message, f"unparseable: {error.errors()[0]['msg']}")
            return
        run = self._handlers.bind(command)
        if run is None:
            self.stats.unhandled += 1
            await self._retry_or_poison(message, f"no handler for {command.type!r} commands")
            return
        try:
            await self._with_heartbeat(message, run)
        except CommandNotHere as error:
            self.stats.not_here += 1
            await self._retry_or_poison(message, f"not here: {error}", delay_s=0)
        except Exception as error:
            self.stats.failed += 1
            logger.exception("%s command failed", command.type)
            await self._retry_or_poison(message, f"handler failed: {error!r}")
        else:
            await self._call("delete_message", ReceiptHandle=message["ReceiptHandle"])
            self.stats.handled += 1

    async def _with_heartbeat(
        self, message: dict[str, Any], run: Callable[[], Awaitable[None]]
    ) -> None:
        beat = asyncio.create_task(self._heartbeat(message["ReceiptHandle"]))
        try:
            await run()
        finally:
            beat.cancel()
            with suppress(asyncio.CancelledError):
                await beat

    async def _heartbeat(self, receipt: str) -> None:
        while True:
            await asyncio.sleep(self._visibility_timeout_s / 2)
            with suppress(Exception):  # a missed beat only risks a duplicate delivery
                await self._call(
                    "change_message_visibility",
                    ReceiptHandle=receipt,
                    VisibilityTimeout=self._visibility_timeout_s,
                )

    async def _retry_or_poison(
        self, message: dict[str, Any], reason: str, *, delay_s: int | None = None
    ) -> None:
        receives = _receive_count(message)
        if receives < self._max_receives:
            if delay_s is None:
                delay_s = min(self._visibility_timeout_s, 2 ** (receives - 1))
            logger.warning(
                "command message %s (receive %d): %s; handed back for %ds",
                message.get("MessageId"),
                receives,
                reason,
                delay_s,
            )
            await self._call(
                "change_message_visibility",
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=min(delay_s, SQS_MAX_VISIBILITY_S),
            )
            return
        await self._set_aside(message, reason, receives)
        self.stats.poison += 1

    async def _set_aside(self, message: dict[str, Any], reason: str, receives: int) -> None:
        where = self._dead_letter_queue_url
        logger.error(
            "command message %s is poison after %d receives (%s); %s: %s",
            message.get("MessageId"),
            receives,
            reason,
            f"moved to {where}" if where else "deleted",
            message["Body"][:500],
        )
        if where:
            await asyncio.to_thread(
                self._sqs.send_message,
                QueueUrl=where,
                MessageBody=message["Body"],
                MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:256]}},
            )
        await self._call("delete_message", ReceiptHandle=message["ReceiptHandle"])

    async def _call(self, operation: str, **params: Any) -> None:
        method = getattr(self._sqs, operation)
        await asyncio.to_thread(method, QueueUrl=self._queue_url, **params)


def _receive_count(message: dict[str, Any]) -> int:
    raw = message.get("Attributes", {}).get("ApproximateReceiveCount", "1")
    return int(raw) if str(raw).isdigit() else 1


def sqs_client(*, wait_time_s: int = 10, region: str | None = None) -> Any:
    """Return a boto3 SQS client whose read timeout outlasts a long poll.

    ``AWS_ENDPOINT_URL`` (moto locally) and the usual AWS variables configure it.
    """
    import boto3
    from botocore.config import Config

    config = Config(read_timeout=wait_time_s + 10, retries={"mode": "standard"})
    return boto3.client("sqs", region_name=region, config=config)
