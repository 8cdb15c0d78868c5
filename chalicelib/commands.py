"""Commands to the edge (contract 3), sent through SQS by an injected sender."""

from __future__ import annotations

import json
from typing import Any, Protocol

from chalicelib.contracts import Command


class CommandSender(Protocol):
    """Delivers a command to the edge."""

    def send(self, command: Command) -> None: ...


class SqsCommandSender:
    """Sends each command as one SQS message whose body is the command's JSON."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, command: Command) -> None:
        body = json.dumps(command.model_dump(mode="json", by_alias=True))
        self._client.send_message(
            QueueUrl=self._queue_url,
            MessageBody=body,
            MessageAttributes={"type": {"DataType": "String", "StringValue": command.type}},
        )


class MemoryCommandSender:
    """Keeps the commands it was given (tests and tools)."""

    def __init__(self) -> None:
        self.sent: list[Command] = []

    def send(self, command: Command) -> None:
        self.sent.append(command)
