"""Two relays at once under one control plane: each hang-up reaches the relay holding the call.

The control plane is the local stack's (moto server and ``chalice local``, started as ``make dev``
starts them, ``tests/support/localstack.py``); the two relays are ``RelayService`` instances in
this event loop (``tests/integration/relay/harness.py``), each with its own edge id, RTP range
and own command queue, both on the shared queue. Phones call each relay; ``DELETE
/api/calls/{callId}`` must reach the relay holding that call, which sends the BYE
(docs/relay.md, "Commands: how one reaches the relay holding the call"; docs/api.md).

Calls are placed by two placers returning the same :class:`Placed` items: :func:`incoming_calls`
(phones call each relay) and :func:`outgoing_calls` (``POST /api/agents/{agentId}/calls``: the
``dial`` goes to the shared queue, whichever relay receives it claims the call and dials an
answering callee on 127.0.0.1, ``tests/integration/relay/calls/udp_callee.py``; docs/relay.md,
"An outgoing call, step by step"). Which relay placed an outgoing call is read at the callee:
where its INVITE came from. The expected outcomes are docs/api.md's (Calls; ``endReason``,
``terminationReason``) and docs/billing.md's (Calls no relay will end).

The relays poll with 1 s long polls, and each test waits, after stopping its relays, until
their last polls have returned: a poll still open on the shared queue when the next test posts a
``dial`` would take it and hide it for its 30 s visibility timeout (docs/relay.md, Commands).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from scripts.localstack import LocalStack
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.calls.udp_callee import UdpCallee
from tests.integration.relay.harness import Phone, Relay, run, running, settings_for, until
from tests.support.localstack import local_stack

INCOMING = 100
"""Incoming calls in the load phase, half on each relay: 100 hang-ups, each for a call of its own."""
DIALS = 100
"""Outgoing calls in the load phase: 200 commands (a ``dial`` and a hang-up each)."""
WAVES = 10
"""The load phase's waves: 10 incoming and 10 outgoing calls up at once, then all hung up."""
CALLER = "+15557654321"
POLL_S = 1
"""The relays' long polls (``wait_time_s``): the longest a stopped relay's last poll stays open."""
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
            relay = running(settings, consumer_options={"wait_time_s": POLL_S})
            relays[name] = await stack_of_relays.enter_async_context(relay)
            assert relays[name].service.edge_queue is not None
            assert relays[name].service.edge_queue.url is not None  # made before it is ready
        yield relays
    await until(lambda: not _polling(), POLL_S + WAIT_S)  # see the module docstring


def _polling() -> bool:
    """A command consumer's long poll is still open (its thread, ``relay/control/commands.py``)."""
    return any(t.name.startswith("sqs-poll") and t.is_alive() for t in threading.enumerate())


@dataclass
class Placed:
    """A call up on one relay: the control plane's call id, and the BYEs its far end got."""

    relay: str
    call_id: str
    byes: Callable[[], int]


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
    return [
        Placed(relay, ids[user], partial(byes, phone)) for user, (relay, phone) in placed.items()
    ]


async def outgoing_calls(
    stack: LocalStack,
    relays: dict[str, Relay],
    callee: UdpCallee,
    agent_id: str,
    users: list[str],
) -> list[Placed]:
    """``POST /api/agents/{agent_id}/calls`` to ``callee`` as each of ``users`` (one at a time:
    moto server's transactions); return them once each was answered and ACKed and the control
    plane says the agent ``joined``, each on the relay whose SIP port sent its INVITE."""
    ids: dict[str, str] = {}
    for user in users:
        outgoing = {"to": callee.uri(user), "from": CALLER}
        body = {"medium": {"sip": {"outgoing": outgoing}}}
        created = await _api_async(stack, "POST", f"/api/agents/{agent_id}/calls", body)
        assert created.status_code == 201, created.text
        ids[user] = str(created.json()["callId"])
    await until(lambda: all(callee.distinct("ACK", user) for user in users), WAIT_S)
    await joined(stack, set(ids.values()))
    by_port = {relay.port: name for name, relay in relays.items()}
    placed = []
    for user in users:
        invites = {source for r, source in callee.dialog(user) if r.method == "INVITE"}
        assert len(invites) == 1 and next(iter(invites))[1] in by_port, (user, invites, by_port)
        relay = by_port[next(iter(invites))[1]]
        placed.append(Placed(relay, ids[user], partial(callee_byes, callee, user)))
    return placed


async def listed_once(stack: LocalStack, call_ids: set[str], field: str) -> list[dict[str, Any]]:
    """Wait until the newest 100 calls the control plane lists include each of ``call_ids`` with
    ``field`` set (``joined``, ``ended``); return them."""
    async with asyncio.timeout(WAIT_S):
        while True:
            listed = await _api_async(stack, "GET", "/api/calls?pageSize=100")
            assert listed.status_code == 200, listed.text
            done = {c["callId"]: c for c in listed.json()["results"] if c[field] is not None}
            if call_ids <= done.keys():
                return [done[call_id] for call_id in call_ids]
            await asyncio.sleep(0.2)


async def joined(stack: LocalStack, call_ids: set[str]) -> None:
    """Wait until the control plane says the agent ``joined`` each of ``call_ids``."""
    await listed_once(stack, call_ids, "joined")


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


def callee_byes(callee: UdpCallee, user: str) -> int:
    """BYEs of the call to ``user`` (each transaction once)."""
    return len(callee.distinct("BYE", user))


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


def dials_taken(relay: Relay) -> int:
    """``dial`` commands this relay took from the shared queue (the only commands sent there)."""
    consumer = relay.service.commands
    return 0 if consumer is None else consumer.stats.handled


def other(name: str) -> str:
    return "b" if name == "a" else "a"


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
                    await until(lambda c=call: c.byes() == 1, WAIT_S)
                outcomes = [await ended(stack, c.call_id) for c in calls]
                counts = {name: handled_here(relay) for name, relay in relays.items()}
                shared = {name: r.service.commands.stats for name, r in relays.items()}

        assert [o["endReason"] for o in outcomes] == ["agent_hangup", "agent_hangup"]
        assert counts == {"a": 1, "b": 1}  # each relay got its own call's hang-up, on its queue
        assert all(s.handled == 0 and s.not_here == 0 for s in shared.values() if s)

    run(scenario, timeout_s=180)


@pytest.mark.e2e
def test_a_call_dialled_through_one_relay_is_hung_up_through_the_api_by_that_relay(
    stack: LocalStack, aws_env: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """docs/relay.md (Commands: how one reaches the relay holding the call): the relay that
    took the ``dial`` claimed the call, so the ``DELETE``'s hang-up goes to its own queue and
    it sends the BYE (from its SIP port, its Via); the other relay never touches the call. The
    call ends as docs/api.md's table says for an answered call we hung up: ``agent_hangup``,
    ``SIP_TERMINATION_NORMAL``."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, UdpCallee(answering=True) as callee:
            agent_id = await asyncio.to_thread(_route, stack, url, "dial_")
            async with two_relays(stack, tmp_path, _tag(request)) as relays:
                [call] = await outgoing_calls(stack, relays, callee, agent_id, ["dial_1"])
                await hang_up_all(stack, [call])
                await until(lambda: call.byes() == 1, WAIT_S)
                outcome = await ended(stack, call.call_id)
                ports = {name: relay.port for name, relay in relays.items()}
                dials = {name: dials_taken(relay) for name, relay in relays.items()}
                hang_ups = {name: handled_here(relay) for name, relay in relays.items()}
                edges = [r.service.edge_commands for r in relays.values()]

        placer, bystander = call.relay, other(call.relay)
        dialog = callee.dialog("dial_1")
        [bye] = callee.distinct("BYE", "dial_1")
        assert [r.method for r, _ in dialog] == ["INVITE", "ACK", "BYE"]
        assert {source for _, source in dialog} == {("127.0.0.1", ports[placer])}
        assert (bye.top_via.host, bye.top_via.port) == ("127.0.0.1", ports[placer])
        assert dials == {placer: 1, bystander: 0}  # taken once, by the relay that placed it
        assert hang_ups == {placer: 1, bystander: 0}  # the hang-up reached its own queue
        assert all(e is not None and e.stats.not_here == 0 for e in edges)
        assert (outcome["direction"], outcome["callee"]) == ("outgoing", "dial_1")
        assert outcome["joined"] is not None
        assert outcome["endReason"] == "agent_hangup"
        assert outcome["sipDetails"]["terminationReason"] == "SIP_TERMINATION_NORMAL"
        assert held(aws_env, stack.queue_url) == held(aws_env, stack.dead_letter_queue_url) == 0

    run(scenario, timeout_s=180)


@pytest.mark.e2e
def test_a_hang_up_before_any_relay_took_the_dial_rings_nobody(
    stack: LocalStack, aws_env: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """docs/relay.md (Commands, edge cases: "A hang-up before any relay took the ``dial``"):
    ``DELETE`` right after the ``POST``, while no relay runs to claim it, closes the call at
    once; the relays started afterwards receive the ``dial``, their claim is refused, and the
    callee never gets an INVITE. The call ends as docs/billing.md (Calls no relay will end) and
    docs/api.md (``endReason``, ``terminationReason``) say for a call the control plane closed
    with no event from a relay: ``unjoined``, ``SIP_TERMINATION_ERROR`` (the caller leg's end was
    never reported)."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, UdpCallee(answering=True) as callee:
            agent_id = await asyncio.to_thread(_route, stack, url, "race_")
            outgoing = {"to": callee.uri("race_1"), "from": CALLER}
            body = {"medium": {"sip": {"outgoing": outgoing}}}
            created = await _api_async(stack, "POST", f"/api/agents/{agent_id}/calls", body)
            assert created.status_code == 201, created.text
            call_id = created.json()["callId"]
            hung_up = await _api_async(stack, "DELETE", f"/api/calls/{call_id}")
            assert hung_up.status_code == 204, hung_up.text
            outcome = (await _api_async(stack, "GET", f"/api/calls/{call_id}")).json()
            assert held(aws_env, stack.queue_url) == 1  # the dial waits for a relay
            async with two_relays(stack, tmp_path, _tag(request)) as relays:
                await until(lambda: sum(map(dials_taken, relays.values())) == 1, WAIT_S)
                hang_ups = [handled_here(relay) for relay in relays.values()]

        assert callee.requests == []  # no INVITE, ever: the claim was refused
        assert hang_ups == [0, 0]
        assert outcome["ended"] is not None  # 204: closed at once
        assert outcome["endReason"] == "unjoined"
        assert outcome["sipDetails"]["terminationReason"] == "SIP_TERMINATION_ERROR"
        assert held(aws_env, stack.queue_url) == held(aws_env, stack.dead_letter_queue_url) == 0
        again = await _api_async(stack, "DELETE", f"/api/calls/{call_id}")
        assert again.status_code == 409  # ended once

    run(scenario, timeout_s=180)


@pytest.mark.e2e
def test_three_hundred_commands_over_two_relays_none_lost_none_twice(
    stack: LocalStack, aws_env: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """100 incoming calls (half on each relay) and 100 outgoing ones (their ``dial`` taken by
    whichever relay SQS gives it to), in waves of 10 + 10; each gets one ``DELETE``. Every far
    end sees exactly one BYE, from the relay holding the call; every outgoing call was dialled
    once (one INVITE); every call ends ``agent_hangup`` (outgoing: ``SIP_TERMINATION_NORMAL``);
    each relay took exactly the dials it placed and acted on exactly the hang-ups of its own
    calls; no command is left on a queue or dead-lettered."""
    sqs = aws_env

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, UdpCallee(answering=True) as callee:
            agent_id = await asyncio.to_thread(_route, stack, url, "load_")
            async with two_relays(stack, tmp_path, _tag(request)) as relays:
                ports = {name: relay.port for name, relay in relays.items()}
                per_wave = INCOMING // WAVES
                for wave in range(WAVES):
                    first = wave * per_wave
                    users = {f"load_{first + n}": "ab"[n % 2] for n in range(per_wave)}
                    dialled = [f"load_{INCOMING + first + n}" for n in range(DIALS // WAVES)]
                    async with AsyncExitStack() as phones:
                        incoming = await incoming_calls(stack, relays, phones, users)
                        out = await outgoing_calls(stack, relays, callee, agent_id, dialled)
                        calls = incoming + out
                        await hang_up_all(stack, calls)
                        for call in calls:
                            await until(lambda c=call: c.byes() >= 1, WAIT_S)
                        outcomes = await listed_once(stack, {c.call_id for c in calls}, "ended")
                        assert [c.byes() for c in calls] == [1] * len(calls)
                        assert {o["endReason"] for o in outcomes} == {"agent_hangup"}
                        terminations = {o["sipDetails"]["terminationReason"] for o in outcomes}
                        assert terminations == {"SIP_TERMINATION_NORMAL"}
                        for user, call in zip(dialled, out, strict=True):
                            assert len(callee.distinct("INVITE", user)) == 1, user
                            sources = {s for _, s in callee.dialog(user)}
                            assert sources == {("127.0.0.1", ports[call.relay])}, user
                        for call in incoming:
                            incoming_on[call.relay] += 1
                        for call in out:
                            dialled_on[call.relay] += 1
                dials = {name: dials_taken(relay) for name, relay in relays.items()}
                counts = {name: handled_here(relay) for name, relay in relays.items()}
                edges = [r.service.edge_commands for r in relays.values()]

        assert incoming_on == {"a": INCOMING // 2, "b": INCOMING // 2}
        assert sum(dialled_on.values()) == DIALS
        assert dials == dialled_on  # each dial taken once, by the relay that placed the call
        # each hang-up acted on once, by the relay holding the call
        assert counts == {name: incoming_on[name] + dialled_on[name] for name in counts}
        assert all(e is not None and e.stats.not_here == 0 for e in edges)
        assert held(sqs, stack.dead_letter_queue_url) == 0
        assert held(sqs, stack.queue_url) == 0
        # Not a guarantee of the design (any ready relay may take any dial), but SQS spreads
        # them: all 100 to one relay means one relay's shared consumer is not taking any.
        assert min(dialled_on.values()) > 0, f"SQS gave every dial to one relay: {dialled_on}"

    incoming_on = {"a": 0, "b": 0}
    dialled_on = {"a": 0, "b": 0}
    run(scenario, timeout_s=LOAD_S)
