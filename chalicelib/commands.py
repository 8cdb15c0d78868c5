"""Commands to the edge (contract 3), sent through SQS by an injected sender.

Two kinds of queue carry them (``docs/relay.md``, "Commands: how one reaches the relay holding
the call"): the **shared** queue (``SIPLINE_COMMAND_QUEUE_URL``), which any relay may take a
command from (``dial``, and ``register`` later), and each relay's **own** queue, named by
:func:`edge_queue_name` from its edge id and announced in its heartbeat, for the commands
addressed to a call it holds (``hangup``, and DTMF and transfers later).
:mod:`chalicelib.command_routing` chooses the queue; this module only sends.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from chalicelib.contracts import Command

DEFAULT_EDGE_QUEUE_PREFIX = "sipline-edge-"
MAX_EDGE_QUEUE_PREFIX = 40
"""SQS names hold 80 characters: the prefix leaves at least 40 for the edge id."""
SQS_MAX_QUEUE_NAME = 80
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_GONE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def valid_prefix(prefix: str) -> bool:
    """Whether ``prefix`` may begin the relays' queue names (1-40 of ``A-Za-z0-9_-``)."""
    return len(prefix) <= MAX_EDGE_QUEUE_PREFIX and _QUEUE_NAME.fullmatch(prefix) is not None


def edge_queue_name(prefix: str, edge_id: str) -> str:
    """The name of the command queue of relay ``edge_id``: ``<prefix><edgeId>``.

    An edge id with characters SQS names do not allow, or too long to fit, is cleaned and cut,
    and a digest of the whole id is appended, so that two edge ids never share a queue.
    """
    clean = _NOT_NAME_CHARS.sub("-", edge_id)
    name = prefix + clean
    if clean == edge_id and len(name) <= SQS_MAX_QUEUE_NAME:
        return name
    digest = hashlib.sha256(edge_id.encode()).hexdigest()[:10]
    room = SQS_MAX_QUEUE_NAME - len(prefix) - len(digest) - 1
    return f"{prefix}{clean[:room]}-{digest}"


def queue_gone(error: BaseException) -> bool:
    """Whether ``error`` is SQS saying the queue does not exist (deleted, or never made)."""
    response = getattr(error, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in _GONE_CODES


class QueueGone(Exception):
    """The queue a command was sent to does not exist (its relay deleted it, or the reaper)."""


class CommandSender(Protocol):
    """Delivers a command to the edge."""

    def send(self, command: Command, queue_url: str | None = None) -> None:
        """Send to ``queue_url`` (a relay's own queue), or to the shared queue when None.

        Raises:
            QueueGone: ``queue_url`` does not exist.
        """
        ...


class SqsCommandSender:
    """Sends each command as one SQS message whose body is the command's JSON."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    @property
    def client(self) -> Any:
        """The SQS client (the reaper lists and deletes relay queues with it)."""
        return self._client

    @property
    def shared_queue_url(self) -> str:
        return self._queue_url

    def send(self, command: Command, queue_url: str | None = None) -> None:
        body = json.dumps(command.model_dump(mode="json", by_alias=True))
        try:
            self._client.send_message(
                QueueUrl=queue_url or self._queue_url,
                MessageBody=body,
                MessageAttributes={"type": {"DataType": "String", "StringValue": command.type}},
            )
        except Exception as error:
            if queue_url is not None and queue_gone(error):
                raise QueueGone(queue_url) from error
            raise


class MemoryCommandSender:
    """Keeps the commands it was given (tests and tools); ``queues[i]`` is where ``sent[i]`` went
    (None: the shared queue)."""

    def __init__(self) -> None:
        self.sent: list[Command] = []
        self.queues: list[str | None] = []
        self.gone: set[str] = set()
        """Queue URLs to answer :class:`QueueGone` for."""

    def send(self, command: Command, queue_url: str | None = None) -> None:
        if queue_url is not None and queue_url in self.gone:
            raise QueueGone(queue_url)
        self.sent.append(command)
        self.queues.append(queue_url)


@dataclass(frozen=True, slots=True)
class EdgeQueue:
    """One relay command queue found by :meth:`SqsEdgeQueues.list`."""

    url: str
    created: datetime


class EdgeQueues(Protocol):
    """The relays' own queues (the reaper deletes abandoned ones)."""

    def list(self) -> list[EdgeQueue]: ...

    def delete(self, url: str) -> None: ...


@dataclass
class SqsEdgeQueues:
    """The relays' own queues, as the reaper sees them: listed by prefix, deleted when abandoned."""

    client: Any
    prefix: str = DEFAULT_EDGE_QUEUE_PREFIX

    def list(self) -> list[EdgeQueue]:
        """Every queue whose name starts with the prefix, with its creation time."""
        found: list[EdgeQueue] = []
        params: dict[str, Any] = {"QueueNamePrefix": self.prefix, "MaxResults": 1000}
        while True:
            page = self.client.list_queues(**params)
            for url in page.get("QueueUrls", []):
                try:
                    attributes = self.client.get_queue_attributes(
                        QueueUrl=url, AttributeNames=["CreatedTimestamp"]
                    )["Attributes"]
                except Exception as error:
                    if queue_gone(error):
                        continue  # deleted between the listing and now
                    raise
                created = datetime.fromtimestamp(float(attributes["CreatedTimestamp"]), UTC)
                found.append(EdgeQueue(url, created))
            if not page.get("NextToken"):
                return found
            params["NextToken"] = page["NextToken"]

    def delete(self, url: str) -> None:
        """Delete the queue at ``url`` (already gone is fine)."""
        try:
            self.client.delete_queue(QueueUrl=url)
        except Exception as error:
            if not queue_gone(error):
                raise


def queue_name_of(url: str) -> str:
    """The name of the queue at ``url`` (its last path segment)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def announced_queue_ok(url: str, prefix: str, shared_queue_url: str | None) -> bool:
    """Whether a relay's announced queue URL may receive commands: a queue name with ``prefix``,
    in the same account and endpoint as the shared queue (when there is one)."""
    base, _, name = url.rstrip("/").rpartition("/")
    if not name.startswith(prefix) or _QUEUE_NAME.fullmatch(name) is None:
        return False
    if shared_queue_url is None:
        return bool(base)
    return base == shared_queue_url.rstrip("/").rpartition("/")[0]
