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
   message to come back after a backoff (``2 ** (receives - 1)`` seconds, capped).
4. **Passing on.** A command this relay cannot take (the handler raised :class:`CommandNotHere`:
   another relay holds the call; or no handler for its type, e.g. ``dial`` on a relay without
   one) is *re-sent* to the queue as a new message with a ``hops`` attribute one higher, then
   deleted. A hand-back by visibility would count as a receive, and the queue's poison limit
   (``maxReceiveCount``) would delete a hang-up after five wrong relays: with four relays, 24 %
   of hang-ups. The first ``fast_hops`` pass on at once, later ones after ``hop_delay_s``; after
   ``max_hops`` the message is dead-lettered with the reason (``docs/relay.md``).
5. Poison: a message that does not parse or keeps failing is handed back until it has been
   received ``max_receives`` times; then it is dead-lettered. Dead-lettering moves it to
   ``dead_letter_queue_url`` with a ``reason`` attribute; without one, it is never deleted: it is
   left invisible for 6 hours at a time (logged as an error each time) for the queue's own
   redrive policy to move. Every case has a counter in :attr:`stats`.
6. **A relay's own queue** (``addressed=True``, ``relay/control/edge_queue.py``) carries only
   commands the control plane addressed to this relay for a call it holds. Nothing is passed on
   from it: a command for a call not here (it ended since, or a duplicate delivery) is
   acknowledged (deleted, counted in ``stats.not_here``), and a command type without a handler
   here was misrouted and is dead-lettered at once (a ``transfer`` to a relay that cannot
   transfer yet, for example: it goes to the dead-letter queue with an error log line, and the
   transfer stays ``requested`` until the control plane times it out, ``docs/api.md``). When SQS says the queue no longer exists,
   :meth:`CommandConsumer.run` raises :class:`~chalicelib.commands.QueueGone` for its owner to
   make it again. Parsing, visibility, backoff and poison rules are the shared queue's.
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

from chalicelib.commands import QueueGone, queue_gone
from chalicelib.contracts import (
    Command,
    DialCommand,
    HangUpCommand,
    RegisterCommand,
    TransferCommand,
    TransferOutcomeCommand,
    UnregisterCommand,
    parse_command,
)

logger = logging.getLogger(__name__)

C = TypeVar("C", bound=Command)
Handler = Callable[[C], Awaitable[None]]
SQS_MAX_MESSAGES = 10  # ReceiveMessage's MaxNumberOfMessages limit
SQS_MAX_VISIBILITY_S = 43_200
SET_ASIDE_VISIBILITY_S = 6 * 3600
"""How long a poison message with nowhere to go stays invisible (SQS caps a message's total at 12 h)."""
HOPS = "hops"
"""The message attribute counting how often a command was passed on (rule 4)."""


class CommandNotHere(Exception):
    """Raised by a handler for a command this edge cannot take (e.g. it does not hold the call)."""


@dataclass(frozen=True)
class CommandHandlers:
    """The async handler of each command type; a type without one is not handled by this edge."""

    dial: Handler[DialCommand] | None = None
    hangup: Handler[HangUpCommand] | None = None
    register: Handler[RegisterCommand] | None = None
    unregister: Handler[UnregisterCommand] | None = None
    transfer: Handler[TransferCommand] | None = None
    transfer_outcome: Handler[TransferOutcomeCommand] | None = None

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
            case TransferCommand():
                return _bound(self.transfer, command)
            case TransferOutcomeCommand():
                return _bound(self.transfer_outcome, command)


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
    passed_on: int = 0
    """Re-sent for another relay (rule 4)."""
    poison: int = 0
    """Dead-lettered: after ``max_receives`` receives or ``max_hops`` hops."""
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
        max_hops: int = 200,
        fast_hops: int = 20,
        hop_delay_s: int = 1,
        addressed: bool = False,
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
        self._max_hops = max_hops
        self._fast_hops = fast_hops
        self._hop_delay_s = hop_delay_s
        self._addressed = addressed
        self._gone: BaseException | None = None
        self._in_flight = 0
        self._slot_freed = asyncio.Event()
        self.stats = CommandStats()

    @property
    def queue_url(self) -> str:
        return self._queue_url

    async def run(self) -> None:
        """Poll and dispatch until cancelled; handlers in flight are cancelled with it.

        Raises:
            QueueGone: ``addressed`` and SQS says the queue does not exist (rule 6).
        """
        poller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqs-poll")
        try:
            async with asyncio.TaskGroup() as handlers:
                while self._gone is None:
                    while self._in_flight >= self._max_in_flight:
                        self._slot_freed.clear()
                        await self._slot_freed.wait()
                    free = self._max_in_flight - self._in_flight
                    for message in await self._receive(poller, min(SQS_MAX_MESSAGES, free)):
                        self._in_flight += 1
                        handlers.create_task(self._handle_and_release(message))
            # The handlers in flight have finished (their deletes fail: they come to nothing).
            raise QueueGone(self._queue_url) from self._gone
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
                    MessageAttributeNames=["All"],
                ),
            )
        except Exception as error:  # root of the poll loop: SQS down, throttled, misconfigured
            self.stats.receive_errors += 1
            if self._addressed and queue_gone(error):
                self._gone = error
                return []
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
            reason = f"no handler for {command.type!r} commands"
            if self._addressed:  # rule 6: addressed to this relay, which cannot take it
                await self._set_aside(message, reason, _receive_count(message))
                self.stats.poison += 1
            else:
                await self._pass_on(message, reason)
            return
        try:
            await self._with_heartbeat(message, run)
        except CommandNotHere as error:
            self.stats.not_here += 1
            if self._addressed:  # rule 6: it was for this relay; the call is gone: acknowledge
                logger.info("command %s acknowledged: %s", command.type, error)
                await self._call("delete_message", ReceiptHandle=message["ReceiptHandle"])
            else:
                await self._pass_on(message, f"not here: {error}")
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

    async def _pass_on(self, message: dict[str, Any], reason: str) -> None:
        """Re-send ``message`` for another relay, one hop further (rule 4), then delete it."""
        hops = _hops(message) + 1
        if hops > self._max_hops:
            await self._set_aside(message, f"{reason}; passed on {hops - 1} times", hops - 1)
            self.stats.poison += 1
            return
        attributes = {
            name: {k: v for k, v in value.items() if k in ("DataType", "StringValue")}
            for name, value in message.get("MessageAttributes", {}).items()
            if name != HOPS
        }
        attributes[HOPS] = {"DataType": "Number", "StringValue": str(hops)}
        try:
            await asyncio.to_thread(
                self._sqs.send_message,
                QueueUrl=self._queue_url,
                MessageBody=message["Body"],
                MessageAttributes=attributes,
                DelaySeconds=0 if hops <= self._fast_hops else self._hop_delay_s,
            )
        except Exception as error:  # the queue refused: hand it back the old way, never lose it
            logger.warning(
                "command message %s: re-send failed (%s)", message.get("MessageId"), error
            )
            await self._retry_or_poison(message, reason)
            return
        await self._call("delete_message", ReceiptHandle=message["ReceiptHandle"])
        self.stats.passed_on += 1

    async def _retry_or_poison(self, message: dict[str, Any], reason: str) -> None:
        receives = _receive_count(message)
        if receives < self._max_receives:
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

    async def _set_aside(self, message: dict[str, Any], reason: str, times: int) -> None:
        """Dead-letter ``message`` (rule 5): move it, or leave it for the queue's redrive policy."""
        where = self._dead_letter_queue_url
        logger.error(
            "command message %s is poison after %d receives or hops (%s); %s: %s",
            message.get("MessageId"),
            times,
            reason,
            f"moved to {where}" if where else "left for the queue's redrive policy",
            message["Body"][:500],
        )
        if not where:  # never delete a command: SIPLINE_COMMAND_DLQ_URL is unset
            await self._call(
                "change_message_visibility",
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=SET_ASIDE_VISIBILITY_S,
            )
            return
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


def _hops(message: dict[str, Any]) -> int:
    raw = message.get("MessageAttributes", {}).get(HOPS, {}).get("StringValue", "0")
    return int(raw) if str(raw).isdigit() else 0


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
