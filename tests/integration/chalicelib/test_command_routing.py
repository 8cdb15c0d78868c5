"""Commands reach the relay that holds the call (chalicelib/command_routing.py, docs/relay.md
"Commands: how one reaches the relay holding the call"), through the app, on moto's SQS.

Each relay's own queue is made here as a relay makes it (``sipline-edge-<edgeId>``) and announced
in its heartbeat; what each queue holds is read back as the relay reads it.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib import reaper
from chalicelib.commands import SqsEdgeQueues, edge_queue_name
from chalicelib.contracts import EdgeCommand, HangUpCommand, parse_command
from chalicelib.services import Services
from tests.integration.harness import Api, Aws, Queue
from tests.support.fakes import FixedClock

CARRIER = "203.0.113.0/24"
PREFIX = "sipline-edge-"


def relay_queue(aws: Aws, edge_id: str) -> str:
    """The queue a relay of ``edge_id`` makes at start (relay/control/edge_queue.py)."""
    return str(aws.sqs.create_queue(QueueName=edge_queue_name(PREFIX, edge_id))["QueueUrl"])


def drain(aws: Aws, url: str) -> list[EdgeCommand]:
    """Receive and delete every command on ``url``."""
    taken: list[EdgeCommand] = []
    while messages := aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        for message in messages:
            taken.append(parse_command(message["Body"]))
            aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return taken


def beat(api: Api, edge_id: str, call_ids: list[str], queue_url: str | None) -> None:
    fields = {"commandQueueUrl": queue_url} if queue_url else {}
    reply = api.heartbeat(edge_id, call_ids, **fields)
    assert reply.status == 200, reply.body


def claim(api: Api, call_id: str, edge_id: str) -> dict[str, Any]:
    reply = api.webhook("/webhooks/sip/dial", {"callId": call_id, "edgeId": edge_id})
    assert reply.status == 200, reply.body
    return dict(reply.body)


def dialled(api: Api, queue: Queue) -> str:
    """An outgoing call whose ``dial`` is on the shared queue (taken off it here)."""
    agent_id = api.create_agent()["agentId"]
    reply = api.dial(agent_id)
    assert reply.status == 201, reply.body
    assert [c.type for c in queue.drain()] == ["dial"]
    return str(reply.body["callId"])


def incoming(api: Api, edge_id: str, sip_call_id: str) -> str:
    """An incoming call accepted from relay ``edge_id`` (its INVITE webhook names the edge)."""
    reply = api.invite(edgeId=edge_id, sipCallId=sip_call_id)
    assert reply.body["action"] == "accept", reply.body
    return str(reply.body["callId"])


@pytest.fixture
def routed(api: Api) -> None:
    agent_id = api.create_agent("sales")["agentId"]
    api.patch_sip(
        allowedCidrRanges=[CARRIER],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )


def test_hang_ups_go_to_the_queue_of_the_relay_holding_each_call(
    api: Api, aws: Aws, queue: Queue, routed: None
) -> None:
    queues = {edge: relay_queue(aws, edge) for edge in ("edge-a", "edge-b")}
    calls = {edge: incoming(api, edge, f"{edge}@carrier") for edge in queues}
    for edge, url in queues.items():
        beat(api, edge, [calls[edge]], url)

    for edge in queues:
        assert api.delete(f"/api/calls/{calls[edge]}").status == 204

    for edge, url in queues.items():
        assert drain(aws, url) == [HangUpCommand(call_id=calls[edge], edge_id=edge)]
    assert queue.drain() == []  # nothing on the shared queue
    for call_id in calls.values():  # ended by the relay's events, not by the control plane
        assert api.get(f"/api/calls/{call_id}").body["ended"] is None


def test_a_dial_claim_binds_the_call_and_its_hang_up_goes_to_the_claiming_relay(
    api: Api, aws: Aws, queue: Queue
) -> None:
    url = relay_queue(aws, "edge-a")
    beat(api, "edge-a", [], url)
    call_id = dialled(api, queue)

    assert claim(api, call_id, "edge-a") == {"proceed": True, "reason": None}
    assert api.delete(f"/api/calls/{call_id}").status == 204

    assert drain(aws, url) == [HangUpCommand(call_id=call_id, edge_id="edge-a")]
    assert queue.drain() == []


def test_a_duplicate_dial_claims_once_a_second_relay_is_told_taken(api: Api, queue: Queue) -> None:
    """SQS may deliver the ``dial`` twice, to the same relay or another: one call is placed."""
    call_id = dialled(api, queue)

    first = claim(api, call_id, "edge-a")
    again = claim(api, call_id, "edge-a")
    other = claim(api, call_id, "edge-b")

    assert (first["proceed"], again["proceed"]) == (True, True)
    assert other == {"proceed": False, "reason": "taken"}


def test_a_hang_up_before_any_relay_took_the_dial_cancels_it(
    api: Api, aws: Aws, queue: Queue
) -> None:
    """No relay holds the call: it ends at once as a hang-up before the INVITE (docs/relay.md,
    Commands: ``unjoined``, ``SIP_TERMINATION_CANCELED``, nothing billed), and the relay that
    takes the ``dial`` later is told not to place it."""
    url = relay_queue(aws, "edge-a")
    beat(api, "edge-a", [], url)
    call_id = dialled(api, queue)

    assert api.delete(f"/api/calls/{call_id}").status == 204
    refused = claim(api, call_id, "edge-a")

    assert refused == {"proceed": False, "reason": "hung_up"}
    call = api.get(f"/api/calls/{call_id}").body
    assert (call["endReason"], call["billingStatus"]) == ("unjoined", "BILLING_STATUS_BILLED")
    assert call["sipDetails"]["terminationReason"] == "SIP_TERMINATION_CANCELED"
    assert call["sipDetails"]["billedDuration"] == "0s"
    assert drain(aws, url) == [] and queue.drain() == []
    assert api.delete(f"/api/calls/{call_id}").status == 409  # a second hang-up: nothing twice


def test_a_claim_that_wins_the_race_against_a_hang_up_gets_the_hang_up(
    api: Api, aws: Aws, queue: Queue, services: Services
) -> None:
    """The hang-up read the call unclaimed, then a relay's claim was written before the hang-up's
    own write: the hang-up's version condition fails, and on the retry it finds the relay."""
    url = relay_queue(aws, "edge-a")
    beat(api, "edge-a", [], url)
    call_id = dialled(api, queue)
    store = services.store
    original = store.get_call
    reads: list[str] = []

    def get_call(wanted: str) -> Any:
        read = original(wanted)
        reads.append(wanted)
        if len(reads) == 2:  # _cancel_if_unclaimed's read: the claim lands right after it
            assert claim(api, call_id, "edge-a")["proceed"] is True
        return read

    store.get_call = get_call  # type: ignore[method-assign]
    try:
        assert api.delete(f"/api/calls/{call_id}").status == 204
    finally:
        store.get_call = original  # type: ignore[method-assign]

    assert drain(aws, url) == [HangUpCommand(call_id=call_id, edge_id="edge-a")]
    assert api.get(f"/api/calls/{call_id}").body["ended"] is None  # the relay will end it
    assert claim(api, call_id, "edge-b") == {"proceed": False, "reason": "taken"}


@pytest.mark.parametrize("joined", [False, True])
def test_a_hang_up_for_a_call_whose_relay_is_dead_closes_it_and_sends_nothing(
    api: Api, aws: Aws, queue: Queue, clock: FixedClock, routed: None, joined: bool
) -> None:
    """Never a command into a void: the holder's heartbeat is stale (120 s, chalicelib/liveness.py),
    so the control plane closes the call as the reaper does (docs/billing.md: ``unjoined`` when
    no agent joined, else ``system_error``)."""
    dead, alive = relay_queue(aws, "edge-dead"), relay_queue(aws, "edge-alive")
    call_id = incoming(api, "edge-dead", "dead@carrier")
    if joined:
        event = {
            "eventId": "e1",
            "type": "agent_joined",
            "occurredAt": clock().isoformat(),
            "callId": call_id,
        }
        assert api.events([event]).status == 200
    beat(api, "edge-dead", [call_id], dead)
    clock.advance(121)
    beat(api, "edge-alive", [], alive)

    assert api.delete(f"/api/calls/{call_id}").status == 204

    call = api.get(f"/api/calls/{call_id}").body
    assert call["endReason"] == ("system_error" if joined else "unjoined")
    assert call["billingStatus"] == "BILLING_STATUS_BILLED"
    assert drain(aws, dead) == [] and drain(aws, alive) == [] and queue.drain() == []


def test_a_hang_up_whose_relay_queue_is_gone_closes_the_call(
    api: Api, aws: Aws, queue: Queue, routed: None
) -> None:
    """The relay deleted its queue (a clean stop) after its last heartbeat: the control plane
    does not answer 503, it closes the call."""
    url = relay_queue(aws, "edge-a")
    call_id = incoming(api, "edge-a", "gone@carrier")
    beat(api, "edge-a", [call_id], url)
    aws.sqs.delete_queue(QueueUrl=url)

    assert api.delete(f"/api/calls/{call_id}").status == 204

    call = api.get(f"/api/calls/{call_id}").body
    assert (call["endReason"], call["billingStatus"]) == ("unjoined", "BILLING_STATUS_BILLED")
    assert queue.drain() == []


def test_a_relay_without_a_queue_gets_its_hang_ups_on_the_shared_queue(
    api: Api, queue: Queue, routed: None
) -> None:
    """A relay older than relay queues (an upgrade in progress) announces none: the shared queue,
    where relays pass on what they do not hold (docs/relay.md)."""
    call_id = incoming(api, "edge-old", "old@carrier")
    beat(api, "edge-old", [call_id], None)

    assert api.delete(f"/api/calls/{call_id}").status == 204

    assert queue.drain() == [HangUpCommand(call_id=call_id, edge_id="edge-old")]


@pytest.mark.parametrize(
    "announced",
    [
        "https://sqs.us-east-1.amazonaws.com/999999999999/sipline-edge-edge-a",  # another account
        "https://sqs.us-east-1.amazonaws.com/123456789012/sipline-commands-test",  # not a relay's
        "https://attacker.example/123456789012/sipline-edge-edge-a",  # another endpoint
    ],
)
def test_a_queue_outside_the_relay_queues_is_never_sent_to(
    api: Api, aws: Aws, queue: Queue, routed: None, announced: str
) -> None:
    """A heartbeat cannot point commands elsewhere (docs/security.md): the shared queue instead."""
    relay_queue(aws, "edge-a")
    call_id = incoming(api, "edge-a", "evil@carrier")
    beat(api, "edge-a", [call_id], announced)

    assert api.delete(f"/api/calls/{call_id}").status == 204

    assert queue.drain() == [HangUpCommand(call_id=call_id, edge_id="edge-a")]


def test_a_queue_url_over_its_limit_is_refused_naming_the_field(api: Api) -> None:
    reply = api.heartbeat("edge-a", [], commandQueueUrl="https://x/" + "q" * 1024)
    assert reply.status == 400
    assert "commandQueueUrl" in reply.body["field"]


def test_a_dial_claim_for_an_unknown_or_incoming_call_is_refused(api: Api, routed: None) -> None:
    call_id = incoming(api, "edge-a", "in@carrier")
    assert claim(api, "no-such-call", "edge-a") == {"proceed": False, "reason": "not_found"}
    assert claim(api, call_id, "edge-b") == {"proceed": False, "reason": "not_outgoing"}


def test_the_reaper_deletes_the_queues_of_relays_gone_for_long_enough(
    api: Api, aws: Aws, services: Services, clock: FixedClock
) -> None:
    """docs/relay.md: a queue whose relay was last heard from more than
    ``SIPLINE_EDGE_QUEUE_ABANDON_S`` ago is deleted, and so is one no heartbeat ever announced
    once it is that old; a live relay's queue is kept."""
    services.edge_queues = SqsEdgeQueues(aws.sqs, PREFIX)
    services.settings = dataclasses.replace(services.settings, edge_queue_abandon_s=600)
    clock.now = datetime.now(UTC) + timedelta(seconds=5)  # moto dates queues by the real clock
    gone, alive, unknown = (relay_queue(aws, e) for e in ("edge-gone", "edge-alive", "edge-x"))
    beat(api, "edge-gone", [], gone)
    beat(api, "edge-alive", [], alive)

    clock.advance(300)
    beat(api, "edge-alive", [], alive)
    early = reaper.reap(services).queues_deleted
    clock.advance(400)
    beat(api, "edge-alive", [], alive)
    late = reaper.reap(services).queues_deleted

    assert early == []  # nobody silent for 600 s yet, and every queue younger than that
    assert sorted(late) == sorted([gone, unknown])
    assert aws.sqs.list_queues(QueueNamePrefix=PREFIX)["QueueUrls"] == [alive]
