"""This relay's own command queue: made at start, announced in heartbeats, deleted at a clean stop.

Theory of operation (the design and its alternatives: ``docs/relay.md``, "Commands: how one
reaches the relay holding the call"):

1. At start the relay makes an SQS queue named from its edge id,
   :func:`chalicelib.commands.edge_queue_name` (``sipline-edge-<edgeId>``), with a redrive policy
   to the shared dead-letter queue (``SIPLINE_COMMAND_DLQ_URL``), a one-hour retention (a command
   older than that is for a call the reaper has closed) and the tags ``sipline:role`` and
   ``sipline:edge-id``. Making it again is harmless: SQS answers the existing queue's URL when the
   attributes are the same, and a queue of the same name with other attributes (an older
   relay's) is given ours.
2. Its URL goes into every heartbeat (``commandQueueUrl``), and the control plane sends the
   commands for this relay's calls there (``chalicelib/command_routing.py``). A
   :class:`~relay.control.commands.CommandConsumer` with ``addressed=True`` consumes it, with the
   shared queue's rules.
3. :meth:`EdgeQueue.keep` makes the queue (retrying with a capped backoff: AWS refuses a name for
   60 s after a queue of that name was deleted, so a relay restarted at once waits) and consumes
   it; when SQS says the queue is gone (the reaper deleted it while this relay was paused past
   ``SIPLINE_EDGE_QUEUE_ABANDON_S``), it makes it again and tells the heartbeat to announce it.
   Until the queue exists the heartbeat announces none, and the control plane sends this relay's
   commands to the shared queue, where relays pass on what they do not hold.
4. On a clean stop the relay deletes it last, after its calls ended and their events were
   delivered; a relay that crashed leaves it to the control plane's reaper.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from chalicelib.commands import QueueGone, queue_gone

logger = logging.getLogger(__name__)

RETENTION_S = 3600
VISIBILITY_TIMEOUT_S = 30
MAX_RECEIVE_COUNT = 5
"""The redrive policy's, as the shared queue's (docs/deployment.md)."""
RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0
_EXISTS_CODES = frozenset({"QueueAlreadyExists", "AWS.SimpleQueueService.QueueNameExists"})


def _code(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


class EdgeQueue:
    """This relay's own command queue (see the module docstring)."""

    def __init__(
        self,
        sqs: Any,
        name: str,
        edge_id: str,
        *,
        dead_letter_queue_url: str | None = None,
        retry_min_s: float = RETRY_MIN_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self._sqs = sqs
        self.name = name
        self._edge_id = edge_id
        self._dead_letter_queue_url = dead_letter_queue_url
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self.url: str | None = None
        """The queue's URL while it exists (what the heartbeat announces)."""
        self.made = 0
        """How often the queue was made (more than once: it was found gone and made again)."""

    async def make(self) -> str:
        """Make the queue (or take the existing one with our attributes); return its URL."""
        url = await asyncio.to_thread(self._make)
        self.url = url
        self.made += 1
        logger.info("command queue of edge %s: %s", self._edge_id, url)
        return url

    def _attributes(self) -> dict[str, str]:
        attributes = {
            "MessageRetentionPeriod": str(RETENTION_S),
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_S),
        }
        if self._dead_letter_queue_url:
            arn = self._sqs.get_queue_attributes(
                QueueUrl=self._dead_letter_queue_url, AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            policy = {"deadLetterTargetArn": arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
            attributes["RedrivePolicy"] = json.dumps(policy)
        return attributes

    def _make(self) -> str:
        attributes = self._attributes()
        tags = {"sipline:role": "edge-commands", "sipline:edge-id": self._edge_id}
        try:
            answer = self._sqs.create_queue(QueueName=self.name, Attributes=attributes, tags=tags)
            return str(answer["QueueUrl"])
        except Exception as error:
            if _code(error) not in _EXISTS_CODES:
                raise
        url = str(self._sqs.get_queue_url(QueueName=self.name)["QueueUrl"])
        self._sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        self._sqs.tag_queue(QueueUrl=url, Tags=tags)
        return url

    async def keep(
        self, consume: Callable[[str], Awaitable[None]], on_made: Callable[[], None]
    ) -> None:
        """Make the queue when it is missing, then ``consume(url)``; again when it is gone.

        ``on_made`` is called after each making (the heartbeat announces the URL at once).
        Runs until cancelled.
        """
        delay = self._retry_min_s
        while True:
            if self.url is None:
                try:
                    await self.make()
                except Exception as error:  # SQS down, throttled, the name deleted < 60 s ago
                    logger.warning(
                        "cannot make command queue %s (%s); retry in %.0fs", self.name, error, delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                delay = self._retry_min_s
                on_made()
            assert self.url is not None
            try:
                await consume(self.url)
            except QueueGone:
                logger.warning("command queue %s is gone; making it again", self.name)
                self.url = None

    async def delete(self) -> None:
        """Delete the queue (clean stop). Failures are logged: the reaper deletes it later."""
        url, self.url = self.url, None
        if url is None:
            return
        try:
            await asyncio.to_thread(self._sqs.delete_queue, QueueUrl=url)
        except Exception as error:
            if not queue_gone(error):
                logger.warning("command queue %s not deleted (%s); the reaper will", url, error)
