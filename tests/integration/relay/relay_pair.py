"""Two relays under the local stack's control plane, and the calls placed on them.

- :func:`two_relays` runs relays ``a`` and ``b`` (``RelayService`` instances in the test's event
  loop, ``harness.py``) against the local stack (moto server and ``chalice local``,
  ``tests/support/localstack.py``): edge ids of the test's own, their own RTP ranges and command
  queues, one shared queue. They long-poll for :data:`POLL_S`; once stopped, the block waits
  until their last polls have returned: a poll still open on the shared queue when the next
  test posts a ``dial`` would take it and hide it for its 30 s visibility timeout
  (docs/relay.md, Commands).
- Two placers return the same :class:`Placed` items: :func:`incoming_calls` (a phone calls each
  relay, one INVITE at a time) and :func:`outgoing_calls` (``POST /api/agents/{agentId}/calls``
  one at a time; the ``dial`` goes to the shared queue, whichever relay receives it claims the
  call and dials an answering :class:`~tests.integration.relay.calls.udp_callee.UdpCallee`;
  the relay that placed it is where its INVITE came from). moto server's DynamoDB transactions
  are not safe across its threads (a 500 on concurrent call creations): calls are created one at
  a time; hang-ups (``DELETE``) go all at once.
- Counters: BYEs at the far end, commands each relay took from each queue, messages left on a
  queue.

Every wait is on a condition, bounded by :data:`WAIT_S`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import requests

from scripts.localstack import LocalStack
from tests.integration.relay.calls.udp_callee import UdpCallee
from tests.integration.relay.harness import Phone, Relay, running, settings_for, until

CALLER = "+15557654321"
"""The ``from`` of the outgoing calls."""
POLL_S = 1
"""The relays' long polls (``wait_time_s``): the longest a stopped relay's last poll stays open."""
WAIT_S = 30.0
"""Bound on one wave's step (answers, BYEs, ends), loaded machine included."""
RTP = {"a": (26000, 26099), "b": (26100, 26199)}


def api(stack: LocalStack, method: str, path: str, body: Any = None) -> requests.Response:
    headers = {"X-API-Key": stack.credentials.api_key}
    return requests.request(method, stack.api_url + path, json=body, headers=headers, timeout=30)


async def api_async(stack: LocalStack, method: str, path: str, body: Any = None) -> Any:
    return await asyncio.to_thread(api, stack, method, path, body)


def route(stack: LocalStack, agent_url: str, prefix: str) -> str:
    """An agent at ``agent_url`` for To users ``<prefix><n>``; 127.0.0.1 allowed in."""
    template = {"mediaEndpoint": {"url": agent_url, "framing": "twilio"}}
    created = api(stack, "POST", "/api/agents", {"name": prefix, "callTemplate": template})
    assert created.status_code == 201, created.text
    agent_id = str(created.json()["agentId"])
    rules = [{"agentId": agent_id, "toUserPattern": f"^{prefix}[0-9]+$"}]
    patched = api(
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
    await until(lambda: not polling(), POLL_S + WAIT_S)  # see the module docstring


def polling() -> bool:
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
            listed = await api_async(stack, "GET", "/api/calls?pageSize=100")
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
        created = await api_async(stack, "POST", f"/api/agents/{agent_id}/calls", body)
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
            listed = await api_async(stack, "GET", "/api/calls?pageSize=100")
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
        *(api_async(stack, "DELETE", f"/api/calls/{c.call_id}") for c in calls)
    )
    assert [r.status_code for r in replies] == [204] * len(calls), [r.text for r in replies]


async def ended(stack: LocalStack, call_id: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT_S):
        while True:
            reply = await api_async(stack, "GET", f"/api/calls/{call_id}")
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


def dials_taken(relay: Relay) -> int:
    """``dial`` commands this relay took from the shared queue (the only commands sent there)."""
    consumer = relay.service.commands
    return 0 if consumer is None else consumer.stats.handled


def other(name: str) -> str:
    return "b" if name == "a" else "a"
