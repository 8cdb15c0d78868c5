"""Two relays at once under one control plane: each hang-up reaches the relay holding the call.

The control plane is the local stack's (moto server and ``chalice local``, started as ``make dev``
starts them); the two relays and the calls placed on them come from ``relay_pair.py``: phones
calling each relay, and outgoing calls whose ``dial`` whichever relay receives from the shared
queue claims and places. ``DELETE /api/calls/{callId}`` must reach the relay holding that call,
which sends the BYE (docs/relay.md, "Commands: how one reaches the relay holding the call", "An
outgoing call, step by step"; docs/api.md). The expected outcomes are docs/api.md's (Calls;
``endReason``, ``terminationReason``) and docs/billing.md's (Calls no relay will end).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import boto3
import pytest

from scripts.localstack import LocalStack
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.calls.udp_callee import UdpCallee
from tests.integration.relay.harness import run, until
from tests.integration.relay.relay_pair import (
    CALLER,
    WAIT_S,
    api_async,
    dials_taken,
    ended,
    handled_here,
    hang_up_all,
    held,
    incoming_calls,
    listed_once,
    other,
    outgoing_calls,
    route,
    two_relays,
)
from tests.support.localstack import local_stack

INCOMING = 100
"""Incoming calls in the load phase, half on each relay: 100 hang-ups, one per call."""
DIALS = 100
"""Outgoing calls in the load phase: 200 commands (a ``dial`` and a hang-up each)."""
WAVES = 10
"""The load phase's waves: 10 incoming and 10 outgoing calls up at once, then all hung up."""
LOAD_S = 600.0
"""Bound on the whole load phase (a failure, never a pass)."""


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


def _tag(request: pytest.FixtureRequest) -> str:
    return "t" + hashlib.sha256(request.node.name.encode()).hexdigest()[:8]


@pytest.mark.e2e
def test_each_hang_up_reaches_the_relay_holding_the_call_which_sends_the_bye(
    stack: LocalStack, aws_env: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, AsyncExitStack() as phones:
            await asyncio.to_thread(route, stack, url, "one_")
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
            agent_id = await asyncio.to_thread(route, stack, url, "dial_")
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
    callee never gets an INVITE. The call ends as docs/relay.md (Commands) says for a hang-up
    before any claim, like one before the INVITE: ``unjoined``, ``SIP_TERMINATION_CANCELED``
    (docs/api.md: "a hang-up before the answer without a failure status")."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, UdpCallee(answering=True) as callee:
            agent_id = await asyncio.to_thread(route, stack, url, "race_")
            outgoing = {"to": callee.uri("race_1"), "from": CALLER}
            body = {"medium": {"sip": {"outgoing": outgoing}}}
            created = await api_async(stack, "POST", f"/api/agents/{agent_id}/calls", body)
            assert created.status_code == 201, created.text
            call_id = created.json()["callId"]
            hung_up = await api_async(stack, "DELETE", f"/api/calls/{call_id}")
            assert hung_up.status_code == 204, hung_up.text
            outcome = (await api_async(stack, "GET", f"/api/calls/{call_id}")).json()
            assert held(aws_env, stack.queue_url) == 1  # the dial waits for a relay
            async with two_relays(stack, tmp_path, _tag(request)) as relays:
                await until(lambda: sum(map(dials_taken, relays.values())) == 1, WAIT_S)
                hang_ups = [handled_here(relay) for relay in relays.values()]

        assert callee.requests == []  # no INVITE, ever: the claim was refused
        assert hang_ups == [0, 0]
        assert outcome["ended"] is not None  # 204: closed at once
        assert outcome["endReason"] == "unjoined"
        assert outcome["sipDetails"]["terminationReason"] == "SIP_TERMINATION_CANCELED"
        assert held(aws_env, stack.queue_url) == held(aws_env, stack.dead_letter_queue_url) == 0
        again = await api_async(stack, "DELETE", f"/api/calls/{call_id}")
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
            agent_id = await asyncio.to_thread(route, stack, url, "load_")
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
