"""A relay's own command queue (relay/control/edge_queue.py) and its consumer (``addressed``
consumers, relay/control/commands.py rule 6), against moto's SQS served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from chalicelib.commands import edge_queue_name
from chalicelib.contracts import (
    DialCommand,
    HangUpCommand,
    MediaEndpoint,
    TransferCommand,
    TransferOutcomeCommand,
    dump,
)
from relay.control.commands import CommandConsumer, CommandHandlers, CommandNotHere
from relay.control.edge_queue import MAX_RECEIVE_COUNT, EdgeQueue
from tests.integration.relay.control.fake_control_plane import free_port
from tests.support.queues import queue_name


@pytest.fixture(scope="module")
def sqs() -> Iterator[Any]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield boto3.client(
            "sqs",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    finally:
        server.stop()


@pytest.fixture
def names(request: pytest.FixtureRequest) -> tuple[str, str]:
    """An edge id and a dead-letter queue name of this test's own."""
    base = queue_name(request.node.name)
    return base[:40], base + "-dlq"


def _held(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(
        int(attributes[name])
        for name in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    )


def _hangup(call_id: str) -> str:
    return json.dumps(dump(HangUpCommand(call_id=call_id)))


async def _until(done: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not done():
            await asyncio.sleep(0.01)


def test_the_queue_is_named_from_the_edge_id_dead_letters_to_the_shared_dlq_and_is_tagged(
    sqs: Any, names: tuple[str, str]
) -> None:
    edge_id, dlq_name = names
    dead_letters = sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
    queue = EdgeQueue(
        sqs, edge_queue_name("sipline-edge-", edge_id), edge_id, dead_letter_queue_url=dead_letters
    )

    url = asyncio.run(queue.make())
    again = asyncio.run(queue.make())  # a restart with the same edge id takes the same queue

    assert url == again and url.endswith(f"/sipline-edge-{edge_id}")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["QueueArn"])
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn["Attributes"]["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == MAX_RECEIVE_COUNT == 5  # the shared queue's
    tags = sqs.list_queue_tags(QueueUrl=url)["Tags"]
    assert tags == {"sipline:role": "edge-commands", "sipline:edge-id": edge_id}
    asyncio.run(queue.delete())
    assert url not in sqs.list_queues(QueueNamePrefix="sipline-edge-").get("QueueUrls", [])


def test_a_queue_found_gone_is_made_again_and_announced(sqs: Any, names: tuple[str, str]) -> None:
    """The reaper deleted it while the relay was paused: the consumer sees it gone, the queue is
    made again, ``on_made`` runs (the heartbeat announces it), and commands flow again."""
    edge_id, _ = names
    queue = EdgeQueue(sqs, edge_queue_name("sipline-edge-", edge_id), edge_id, retry_min_s=0.05)
    handled: list[str] = []
    announced: list[str | None] = []

    async def on_hangup(command: HangUpCommand) -> None:
        handled.append(command.call_id)

    async def consume(url: str) -> None:
        consumer = CommandConsumer(
            sqs, url, CommandHandlers(hangup=on_hangup), wait_time_s=1, addressed=True
        )
        await consumer.run()

    async def main() -> None:
        keeper = asyncio.create_task(queue.keep(consume, lambda: announced.append(queue.url)))
        await _until(lambda: queue.url is not None)
        first = queue.url
        assert first is not None
        await asyncio.to_thread(sqs.delete_queue, QueueUrl=first)
        await _until(lambda: queue.made == 2)
        assert queue.url is not None
        await asyncio.to_thread(sqs.send_message, QueueUrl=queue.url, MessageBody=_hangup("c-1"))
        await _until(lambda: handled == ["c-1"])
        keeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await keeper

    asyncio.run(main())
    assert len(announced) == 2 and announced[0] == announced[1]  # the same name, made again


def test_on_its_own_queue_a_command_for_a_call_not_here_is_acknowledged_not_passed_on(
    sqs: Any, names: tuple[str, str]
) -> None:
    """The call just ended, or SQS delivered the hang-up twice: acknowledged once each, no
    re-send, nothing left, nothing dead-lettered (docs/relay.md, Commands)."""
    edge_id, dlq_name = names
    url = sqs.create_queue(QueueName=edge_queue_name("sipline-edge-", edge_id))["QueueUrl"]
    dead_letters = sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
    held = {"c-held"}
    hung_up: list[str] = []

    async def on_hangup(command: HangUpCommand) -> None:
        if command.call_id not in held:
            raise CommandNotHere(f"{command.call_id} is not here")
        hung_up.append(command.call_id)
        held.discard(command.call_id)  # the call ends: a duplicate finds it gone

    for call_id in ("c-held", "c-held", "c-ended"):
        sqs.send_message(QueueUrl=url, MessageBody=_hangup(call_id))
    consumer = CommandConsumer(
        sqs,
        url,
        CommandHandlers(hangup=on_hangup),
        wait_time_s=1,
        dead_letter_queue_url=dead_letters,
        addressed=True,
    )

    async def main() -> None:
        task = asyncio.create_task(consumer.run())
        stats = consumer.stats
        await _until(lambda: stats.handled == 1 and stats.not_here == 2 and _held(sqs, url) == 0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert hung_up == ["c-held"]
    assert (consumer.stats.passed_on, consumer.stats.poison) == (0, 0)
    assert _held(sqs, dead_letters) == 0


def test_on_its_own_queue_a_command_type_without_a_handler_is_dead_lettered_at_once(
    sqs: Any, names: tuple[str, str]
) -> None:
    """A ``dial`` never belongs on a relay's own queue: misrouted, dead-lettered with the reason,
    never passed on (there is no other relay on this queue)."""
    edge_id, dlq_name = names
    url = sqs.create_queue(QueueName=edge_queue_name("sipline-edge-", edge_id))["QueueUrl"]
    dead_letters = sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
    dial = DialCommand(
        call_id="c-1",
        to="sip:+15557654321@trunk.example",
        from_="+15551234567",
        media_endpoint=MediaEndpoint(url="ws://127.0.0.1:9/agent"),
    )
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(dump(dial)))
    consumer = CommandConsumer(
        sqs,
        url,
        CommandHandlers(),
        wait_time_s=1,
        dead_letter_queue_url=dead_letters,
        addressed=True,
    )

    async def main() -> None:
        task = asyncio.create_task(consumer.run())
        await _until(lambda: consumer.stats.poison == 1 and _held(sqs, url) == 0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    [moved] = sqs.receive_message(QueueUrl=dead_letters, MessageAttributeNames=["All"])["Messages"]
    assert "no handler for 'dial'" in moved["MessageAttributes"]["reason"]["StringValue"]
    assert consumer.stats.passed_on == 0


def test_a_transfer_this_relay_cannot_execute_goes_to_the_dead_letter_queue_with_a_log_line(
    sqs: Any, names: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: the control plane sends ``transfer`` commands before relays execute them.

    A relay without a transfer handler neither crashes nor hands the command back again and
    again: it dead-letters it at once, logged, and keeps taking the commands after it.
    """
    edge_id, dlq_name = names
    url = sqs.create_queue(QueueName=edge_queue_name("sipline-edge-", edge_id))["QueueUrl"]
    dead_letters = sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
    transfer = TransferCommand(
        call_id="c-1", transfer_id="t-1", kind="cold", method="REFER", target="sip:op@pbx.example"
    )
    outcome = TransferOutcomeCommand(call_id="c-1", transfer_id="t-1", accepted=False)
    for command in (transfer, outcome):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(dump(command)))
    sqs.send_message(QueueUrl=url, MessageBody=_hangup("c-2"))
    hung_up: list[str] = []

    async def on_hangup(command: HangUpCommand) -> None:
        hung_up.append(command.call_id)

    consumer = CommandConsumer(
        sqs,
        url,
        CommandHandlers(hangup=on_hangup),  # a relay with no handler for the two
        wait_time_s=1,
        dead_letter_queue_url=dead_letters,
        addressed=True,
    )

    async def main() -> None:
        task = asyncio.create_task(consumer.run())
        await _until(lambda: consumer.stats.poison == 2 and hung_up and _held(sqs, url) == 0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.ERROR, logger="relay.control.commands"):
        asyncio.run(main())
    moved = sqs.receive_message(
        QueueUrl=dead_letters, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    reasons = sorted(m["MessageAttributes"]["reason"]["StringValue"] for m in moved)
    assert reasons == [
        "no handler for 'transfer' commands",
        "no handler for 'transfer_outcome' commands",
    ]
    assert hung_up == ["c-2"]
    assert (consumer.stats.unhandled, consumer.stats.passed_on) == (2, 0)
    assert caplog.text.count("is poison") == 2
