"""The command consumer against moto's SQS, served over HTTP on 127.0.0.1 (ThreadedMotoServer)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from chalicelib.contracts import DialCommand, HangUpCommand, MediaEndpoint, RegisterCommand, dump
from relay.config import RelaySettings
from relay.control.commands import CommandConsumer, CommandHandlers, CommandNotHere
from relay.service import command_consumer
from scripts.localstack import MAX_RECEIVE_COUNT, create_command_queues
from tests.integration.relay.control.fake_control_plane import free_port
from tests.support.queues import queue_name


@dataclass
class Queues:
    sqs: Any
    url: str
    dead_letters: str

    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def count(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def queues(moto_url: str, request: pytest.FixtureRequest) -> Queues:
    sqs = boto3.client(
        "sqs",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = queue_name(request.node.name)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    dead_letters = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
    return Queues(sqs, url, dead_letters)


def dial(call_id: str) -> str:
    command = DialCommand(
        call_id=call_id,
        to="sip:+15557654321@trunk.example",
        from_="+15551234567",
        media_endpoint=MediaEndpoint(url="ws://127.0.0.1:9/agent"),
    )
    return json.dumps(dump(command))


def hangup(call_id: str) -> str:
    return json.dumps(dump(HangUpCommand(call_id=call_id)))


async def consume_until(
    consumer: CommandConsumer, done: Callable[[], bool], timeout_s: float = 10.0
) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(timeout_s):
            while not done():
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def consumer_for(queues: Queues, handlers: CommandHandlers, **options: Any) -> CommandConsumer:
    return CommandConsumer(
        queues.sqs,
        queues.url,
        handlers,
        wait_time_s=1,
        dead_letter_queue_url=queues.dead_letters,
        **options,
    )


def test_each_command_goes_to_its_handler_and_is_deleted_once_handled(queues: Queues) -> None:
    seen: list[object] = []

    async def on_dial(command: DialCommand) -> None:
        seen.append(command)

    async def on_hangup(command: HangUpCommand) -> None:
        seen.append(command)

    queues.send(dial("call-1"))
    queues.send(hangup("call-2"))
    consumer = consumer_for(queues, CommandHandlers(dial=on_dial, hangup=on_hangup))
    asyncio.run(consume_until(consumer, lambda: consumer.stats.handled == 2))
    assert sorted(type(c).__name__ for c in seen) == ["DialCommand", "HangUpCommand"]
    assert queues.count(queues.url) == 0


def test_a_failing_handler_leaves_the_message_to_come_back(queues: Queues) -> None:
    attempts: list[str] = []

    async def on_hangup(command: HangUpCommand) -> None:
        attempts.append(command.call_id)
        if len(attempts) == 1:
            raise RuntimeError("the call task was busy")

    queues.send(hangup("call-1"))
    consumer = consumer_for(queues, CommandHandlers(hangup=on_hangup))
    asyncio.run(consume_until(consumer, lambda: consumer.stats.handled == 1))
    assert attempts == ["call-1", "call-1"]
    assert (consumer.stats.failed, consumer.stats.poison) == (1, 0)
    assert queues.count(queues.url) == 0


def test_a_command_not_for_this_edge_is_handed_straight_back(queues: Queues) -> None:
    attempts: list[str] = []

    async def on_hangup(command: HangUpCommand) -> None:
        attempts.append(command.call_id)
        if len(attempts) < 3:
            raise CommandNotHere(f"{command.call_id} is held by another edge")

    queues.send(hangup("call-1"))
    consumer = consumer_for(queues, CommandHandlers(hangup=on_hangup))
    stats = (
        consumer.stats
    )  # a pass-on's delete may still be in flight when the next copy is handled
    asyncio.run(consume_until(consumer, lambda: stats.handled == 1 and stats.passed_on == 2))
    assert consumer.stats.not_here == 2
    assert queues.count(queues.url) == 0


def test_poison_is_moved_to_the_dead_letter_queue_after_max_receives(
    queues: Queues, caplog: pytest.LogCaptureFixture
) -> None:
    async def on_dial(command: DialCommand) -> None:
        raise AssertionError("never called")

    queues.send("{not json")
    queues.send(json.dumps({"type": "teleport", "callId": "call-9"}))
    registration = RegisterCommand(
        registration_id="reg-1", username="u", password_ciphertext="fernet:x", proxy="pbx.example"
    )
    queues.send(json.dumps(dump(registration)))  # parses, but this edge has no register handler
    consumer = consumer_for(queues, CommandHandlers(dial=on_dial), max_receives=2, max_hops=1)
    with caplog.at_level(logging.ERROR, logger="relay.control.commands"):
        stats = consumer.stats  # wait for the pass-on's delete too, not only the set-aside
        asyncio.run(consume_until(consumer, lambda: stats.poison == 3 and stats.passed_on == 1))
    assert consumer.stats.unparseable == 4 and consumer.stats.unhandled == 2
    assert queues.count(queues.url) == 0
    moved = queues.sqs.receive_message(
        QueueUrl=queues.dead_letters, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    assert sorted(m["Body"][:10] for m in moved) == sorted(
        ["{not json", '{"type": "', '{"type": "']
    )
    assert "is poison after 2 receives" in caplog.text


def test_no_more_than_max_in_flight_commands_run_at_once(queues: Queues) -> None:
    running = 0
    most = 0
    release = asyncio.Event()

    async def on_dial(command: DialCommand) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await release.wait()
        finally:
            running -= 1

    for n in range(6):
        queues.send(dial(f"call-{n}"))
    consumer = consumer_for(queues, CommandHandlers(dial=on_dial), max_in_flight=2)

    async def main() -> None:
        task = asyncio.create_task(consume_until(consumer, lambda: consumer.stats.handled == 6))
        async with asyncio.timeout(10):
            while consumer.stats.received < 2:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # time enough to (wrongly) take more
        assert (running, consumer.stats.received) == (2, 2)
        release.set()
        await task

    asyncio.run(main())
    assert most == 2


def test_a_long_handler_keeps_its_message_invisible(queues: Queues) -> None:
    calls: list[str] = []

    async def on_dial(command: DialCommand) -> None:
        calls.append(command.call_id)
        await asyncio.sleep(2.5)

    queues.send(dial("call-1"))
    consumer = consumer_for(queues, CommandHandlers(dial=on_dial), visibility_timeout_s=1)
    asyncio.run(consume_until(consumer, lambda: consumer.stats.handled == 1))
    assert calls == ["call-1"]
    assert consumer.stats.received == 1


def test_a_command_type_without_a_handler_is_never_deleted_without_a_dead_letter_queue(
    queues: Queues, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``dial`` on a relay that cannot dial stays on the queue for the redrive policy."""
    queues.send(dial("call-1"))
    consumer = CommandConsumer(queues.sqs, queues.url, CommandHandlers(), wait_time_s=1, max_hops=2)
    with caplog.at_level(logging.ERROR, logger="relay.control.commands"):
        # The last pass-on's delete may still be in flight when the next hop is set aside.
        stats = consumer.stats
        asyncio.run(consume_until(consumer, lambda: stats.poison == 1 and stats.passed_on == 2))
    assert (consumer.stats.unhandled, consumer.stats.passed_on) == (3, 2)
    assert queues.count(queues.url) == 1  # invisible for 6 h, not deleted
    assert "left for the queue's redrive policy" in caplog.text


def test_a_pass_on_is_a_new_message_whose_receives_start_again(queues: Queues) -> None:
    """Passing a hang-up on must not bring it closer to the queue's maxReceiveCount."""
    receive_counts: list[str] = []
    hops: list[str] = []

    async def on_hangup(command: HangUpCommand) -> None:
        raise CommandNotHere("held elsewhere")

    consumer = consumer_for(queues, CommandHandlers(hangup=on_hangup), max_hops=4)
    original = consumer._handle

    async def spy(message: dict[str, Any]) -> None:
        receive_counts.append(message["Attributes"]["ApproximateReceiveCount"])
        hops.append(message.get("MessageAttributes", {}).get("hops", {}).get("StringValue", "0"))
        await original(message)

    consumer._handle = spy  # type: ignore[method-assign]
    queues.send(hangup("call-1"))
    asyncio.run(consume_until(consumer, lambda: consumer.stats.poison == 1))
    assert receive_counts == ["1"] * 5
    assert hops == ["0", "1", "2", "3", "4"]
    moved = queues.sqs.receive_message(QueueUrl=queues.dead_letters, MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert "passed on 4 times" in moved[0]["MessageAttributes"]["reason"]["StringValue"]


def test_the_command_queue_of_make_dev_and_the_tests_has_a_dead_letter_queue(
    moto_url: str,
) -> None:
    """A message no consumer deletes moves to the DLQ after maxReceiveCount receives."""
    sqs = boto3.client(
        "sqs",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    url, dead_letters = create_command_queues(sqs, "redrive-check")
    sqs.send_message(QueueUrl=url, MessageBody=hangup("call-1"))
    for _ in range(MAX_RECEIVE_COUNT):
        [message] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]
    assert sqs.receive_message(QueueUrl=url, VisibilityTimeout=0).get("Messages", []) == []
    [moved] = sqs.receive_message(QueueUrl=dead_letters)["Messages"]
    assert moved["Body"] == message["Body"]


def test_the_relay_dead_letters_to_sipline_command_dlq_url(queues: Queues) -> None:
    """``SIPLINE_COMMAND_DLQ_URL`` reaches the consumer: poison is moved there, not dropped."""
    settings = RelaySettings.from_env(
        {"SIPLINE_COMMAND_QUEUE_URL": queues.url, "SIPLINE_COMMAND_DLQ_URL": queues.dead_letters}
    )
    consumer = command_consumer(
        settings, CommandHandlers(), queues.sqs, wait_time_s=1, max_receives=1
    )
    queues.send("{not json")
    asyncio.run(consume_until(consumer, lambda: consumer.stats.poison == 1))
    [moved] = queues.sqs.receive_message(QueueUrl=queues.dead_letters)["Messages"]
    assert moved["Body"] == "{not json"
