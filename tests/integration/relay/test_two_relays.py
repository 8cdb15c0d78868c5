"""Two relays at once under one control plane: each hang-up reaches the relay holding the call.

The control plane is the local stack's (moto server and ``chalice local``, started as ``make dev``
starts them, ``tests/support/localstack.py``); the two relays are ``RelayService`` instances in
this event loop (``tests/integration/relay/harness.py``), each with its own edge id, RTP range
and own command queue, both on the shared queue. Phones call each relay; ``DELETE
/api/calls/{callId}`` must reach the relay holding that call, which sends the BYE
(docs/relay.md, "Commands: how one reaches the relay holding the call"; docs/api.md).

The calls are placed by :func:`incoming_calls`; the outgoing variant (a ``dial`` taken by
whichever relay claims it) needs only another placer returning the same :class:`Placed` items.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from scripts.localstack import LocalStack
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.harness import Phone, Relay, run, running, settings_for, until
from tests.support.localstack import local_stack

COMMANDS = 200
"""Hang-ups in the load phase, each for a call of its own, spread over both relays."""
WAVE = 20
"""Calls up at once during the load phase (half on each relay)."""
LOAD_S = 600.0
"""Bound on the whole load phase (a failure, never a pass)."""
WAIT_S = 30.0
"""Bound on one wave's step (answers, BYEs, ends), loaded machine included."""
RTP = {"a": (26000, 26099), "b": (26100, 26199)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with local_stack(tmp_path_factory.mktemp("two-relays")) as local:
        yield local


@pytest.fixture
def aws_env(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The relays' SQS clients find moto through the environment, as ``make dev``'s relay does."""
    for name, value in stack.aws_environment().items():
        monkeypatch.setenv(name, value)
    return boto3.client("sqs")


def _api(stack: LocalStack, method: str, path: str, body: Any = None) -> requests.Response:
    headers = {"X-API-Key": stack.credentials.api_key}
    return requests.request(method, stack.api_url + path, json=body, headers=headers, timeout=30)


async def _api_async(stack: LocalStack, method: str, path: str, body: Any = None) -> Any:
    return await asyncio.to_thread(_api, stack, method, path, body)


def _route(stack: LocalStack, agent_url: str, prefix: str) -> str:
    """An agent at ``agent_url`` for To users ``<prefix><n>``; 127.0.0.1 allowed in."""
    template = {"mediaEndpoint": {"url": agent_url, "framing": "twilio"}}
    created = _api(stack, "POST", "/api/agents", {"name": prefix, "callTemplate": template})
    assert created.status_code == 201, created.text
    agent_id = str(created.json()["agentId"])
    rules = [{"agentId": agent_id, "toUserPattern": f"^{prefix}[0-9]+$"}]
    patched = _api(
        stack, "PATCH", "/api/sip", {"allowedAgents": rules, "allowedCidrRanges": ["127.0.0.1/32"]}
    )
    assert patched.status_code == 200, patched.text
    return agent_id


@asynccontextmanager
async def two_relays(
    stack: LocalStack, tmp_path: Path, tag: str
) -> AsyncIterator[dict[str, Relay]]:
    """Relays ``a`` and ``b``: edge ids of this test's own, one shared queue, their own queues."""
    async with AsyncExitStack() as stack_of_relays:
        relays: dict[str, Relay] = {}
        for name, (low, high) in RTP.items():
            settings = settings_for(
                stack.api_url,
                tmp_path / f"spool-{name}",
                webhook_secret=stack.credentials.webhook_secret,
                command_queue_url=stack.queue_url,
                command_dead_letter_queue_url=stack.dead_letter_queue_url,
                edge_id=f"{tag}-{name}",
                rtp_port_min=low,
                rtp_port_max=high,
            )
            relays[name] = await stack_of_relays.enter_async_context(running(settings))
            assert relays[name].service.edge_queue is not None
            assert relays[name].service.edge_queue.url is not None  # made before it is ready
        yield relays


@dataclass
class Placed:
    """A call up on one relay: the phone at the far end, and the control plane's call id."""

    relay: str
    phone: Phone
    call_id: str


async def incoming_calls(
    stack: LocalStack, relays: dict[str, Relay], phones: AsyncExitStack, users: dict[str, str]
) -> list[Placed]:
    """Each ``users[user] = relay`` phone calls that relay as ``user``; return them once answered
    and the control plane lists them (by the To user, the call's ``callee``)."""
    placed: dict[str, tuple[str, Phone]] = {}
    for user, relay in users.items():  # one INVITE at a time: moto server's DynamoDB
        phone = await phones.enter_async_context(Phone(relays[relay].port))  # transactions are
        phone.invite(user)  # not safe across its threads (a 500 on concurrent create_call)
        answer = await asyncio.wait_for(phone.answered(), WAIT_S)
        assert answer.status == 200, (user, answer.status)
        placed[user] = (relay, phone)
    ids: dict[str, str] = {}
    async with asyncio.timeout(WAIT_S):
        while len(ids) < len(placed):
            listed = await _api_async(stack, "GET", "/api/calls?pageSize=100")
            assert listed.status_code == 200, listed.text
            for call in listed.json()["results"]:
                if call["callee"] in placed and call["ended"] is None:
                    ids[call["callee"]] = call["callId"]
    return [Placed(relay, phone, ids[user]) for user, (relay, phone) in placed.items()]


async def hang_up_all(stack: LocalStack, calls: list[Placed]) -> None:
    """``DELETE`` each call through the API (concurrently); each answers 204."""
    replies = await asyncio.gather(
        *(_api_async(stack, "DELETE", f"/api/calls/{c.call_id}") for c in calls)
    )
    assert [r.status_code for r in replies] == [204] * len(calls), [r.text for r in replies]


async def ended(stack: LocalStack, call_id: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT_S):
        while True:
            reply = await _api_async(stack, "GET", f"/api/calls/{call_id}")
            assert reply.status_code == 200, reply.text
            if reply.json().get("ended") is not None:
                return dict(reply.json())
            await asyncio.sleep(0.2)


def byes(phone: Phone) -> int:
    return sum(r.method == "BYE" for r in phone.requests)


def handled_here(relay: Relay) -> int:
    """Commands this relay acted on from its own queue."""
    consumer = relay.service.edge_commands
    return 0 if consumer is None else consumer.stats.handled


def held(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(
        int(attributes[name])
        for name in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    )


def _tag(request: pytest.FixtureRequest) -> str:
    return "t" + hashlib.sha256(request.node.name.encode()).hexdigest()[:8]


@pytest.mark.e2e
def test_each_hang_up_reaches_the_relay_holding_the_call_which_sends_the_bye(
    stack: LocalStack, aws_env: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, AsyncExitStack() as phones:
            await asyncio.to_thread(_route, stack, url, "one_")
            async with two_relays(stack, tmp_path, _tag(request)) as relays:
                calls = await incoming_calls(stack, relays, phones, {"one_1": "a", "one_2": "b"})
                await hang_up_all(stack, calls)
                for call in calls:
                    await until(lambda c=call: byes(c.phone) == 1, WAIT_S)
                outcomes = [await ended(stack, c.call_id) for c in calls]
                counts = {name: handled_here(relay) for name, relay in relays.items()}
                shared = {name: r.service.commands.stats for name, r in relays.items()}

        assert [o["endReason"] for o in outcomes] == ["agent_hangup", "agent_hangup"]
        assert counts == {"a": 1, "b": 1}  # each relay got its own call's hang-up, on its queue
        assert all(s.handled == 0 and s.not_here == 0 for s in shared.values() if s)

    run(scenario, timeout_s=180)


@pytest.mark.e2e
def test_two_hundred_hang_ups_over_two_relays_none_lost_none_twice(
    stack: LocalStack, aws_env: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """200 calls in waves of 20, half on each relay; each gets one ``DELETE``: every phone sees
    exactly one BYE, every call ends ``agent_hangup``, each relay acted on exactly the hang-ups
    of its own calls, and no command is left on a queue or dead-lettered."""
    sqs = aws_env

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url:
            await asyncio.to_thread(_route, stack, url, "load_")
            async with two_relays(stack, tmp_path, _tag(request)) as relays:
                placed_on = {"a": 0, "b": 0}
                for wave in range(COMMANDS // WAVE):
                    users = {f"load_{wave * WAVE + n}": "ab"[n % 2] for n in range(WAVE)}
                    async with AsyncExitStack() as phones:
                        calls = await incoming_calls(stack, relays, phones, users)
                        await hang_up_all(stack, calls)
                        for call in calls:
                            await until(lambda c=call: byes(c.phone) >= 1, WAIT_S)
                        outcomes = [await ended(stack, c.call_id) for c in calls]
                        assert [byes(c.phone) for c in calls] == [1] * WAVE
                        assert {o["endReason"] for o in outcomes} == {"agent_hangup"}
                        for call in calls:
                            placed_on[call.relay] += 1
                counts = {name: handled_here(relay) for name, relay in relays.items()}
                shared = [r.service.commands for r in relays.values()]
                queues = [r.service.edge_queue.url for r in relays.values() if r.service.edge_queue]

        assert placed_on == {"a": COMMANDS // 2, "b": COMMANDS // 2}
        assert counts == placed_on  # each hang-up acted on once, by the relay holding the call
        assert all(c is not None and c.stats.handled == 0 for c in shared)
        assert held(sqs, stack.dead_letter_queue_url) == 0
        assert held(sqs, stack.queue_url) == 0
        assert len(queues) == 2

    run(scenario, timeout_s=LOAD_S)
