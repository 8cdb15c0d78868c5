"""The relay's control-plane side against the real control plane: ``chalice local`` + moto server.

Real HTTP, real signatures, real DynamoDB and SQS (moto in server mode), started the way
``make dev`` starts them (``scripts.localstack``). The control plane's answers and state are read
back through its REST API, the way a user would see them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from chalicelib.contracts import (
    CallEvent,
    DialCommand,
    InviteAccepted,
    InviteRejected,
    InviteWebhook,
    LegEndReason,
    LegRole,
)
from relay.control.commands import CommandConsumer, CommandHandlers
from relay.control.outbox import EventOutbox
from relay.control.webhooks import ControlPlaneClient, ControlPlaneUnavailable
from scripts.localstack import REGION, LocalStack
from tests.support.fakes import invite_body
from tests.support.localstack import local_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with local_stack(tmp_path_factory.mktemp("relay-localstack")) as local:
        yield local


def api(stack: LocalStack, method: str, path: str, body: Any = None) -> requests.Response:
    headers = {"X-API-Key": stack.credentials.api_key}
    return requests.request(method, stack.api_url + path, json=body, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def agent_id(stack: LocalStack) -> str:
    created = api(stack, "POST", "/api/agents", {"name": "relay-sales"})
    assert created.status_code == 201, created.text
    agent = str(created.json()["agentId"])
    config = {
        "allowedCidrRanges": ["203.0.113.0/24"],
        "allowedAgents": [{"agentId": agent, "toUserPattern": "^sales$"}],
    }
    assert api(stack, "PATCH", "/api/sip", config).status_code == 200
    return agent


def client_of(stack: LocalStack, secret: str | None = None) -> ControlPlaneClient:
    secret = stack.credentials.webhook_secret if secret is None else secret
    # chalice local answers the first request of a route slowly (imports), hence 10 s.
    return ControlPlaneClient(stack.api_url, secret, decision_timeout_s=10)


def invite(**overrides: Any) -> InviteWebhook:
    uri = "sip:sales@sip.localhost"
    return InviteWebhook.model_validate(invite_body(requestUri=uri, toUri=uri, **overrides))


def leg_events(call_id: str) -> list[CallEvent]:
    start = datetime.now(UTC) - timedelta(seconds=61)  # the call just ended: a real call's times
    steps = [
        ("invite_received", 0.0),
        ("answered", 0.0),
        ("agent_joined", 1.0),
        ("leg_ended", 61.0),
        ("agent_left", 61.0),
    ]
    return [
        CallEvent(
            event_id=f"{call_id}-{n}",
            type=kind,
            occurred_at=start + timedelta(seconds=at),
            call_id=call_id,
            leg_id="leg-1",
            leg_role=LegRole.CALLER,
            reason=LegEndReason.REMOTE_HANGUP if kind == "leg_ended" else None,
        )
        for n, (kind, at) in enumerate(steps)
    ]


def test_a_decided_call_gets_its_events_through_the_outbox(
    stack: LocalStack, agent_id: str, tmp_path: Path
) -> None:
    async def main() -> str:
        async with client_of(stack) as client:
            decision = await client.decide(invite(sipCallId="relay-e2e-1@carrier"))
            assert isinstance(decision, InviteAccepted), decision
            assert decision.agent_id == agent_id
            outbox = EventOutbox(client, tmp_path / "spool", batch_window_s=0.05)
            outbox.start()
            for event in leg_events(decision.call_id):
                outbox.record(event)
            assert await outbox.drain(20) == 0
            assert outbox.stats.delivered == 5
            return decision.call_id

    call_id = asyncio.run(main())
    call = api(stack, "GET", f"/api/calls/{call_id}").json()
    assert call["endReason"] == "hangup"
    assert call["billedDuration"] == "60s"
    assert list((tmp_path / "spool").glob("segment-*")) == []


def test_a_source_outside_the_allowlist_is_rejected_with_403(
    stack: LocalStack, agent_id: str
) -> None:
    async def main() -> InviteRejected | InviteAccepted:
        async with client_of(stack) as client:
            return await client.decide(invite(sourceIp="198.51.100.99", sipCallId="relay-e2e-2@c"))

    decision = asyncio.run(main())
    assert isinstance(decision, InviteRejected)
    assert (decision.sip_status, decision.reason) == (403, "source_ip_not_allowed")


def test_a_wrong_secret_is_unavailable_with_the_401(stack: LocalStack) -> None:
    async def main() -> None:
        async with client_of(stack, secret="whsec_wrong") as client:
            with pytest.raises(ControlPlaneUnavailable) as raised:
                await client.decide(invite(sipCallId="relay-e2e-3@c"))
            assert raised.value.status == 401

    asyncio.run(main())


def test_a_dial_command_from_the_rest_api_reaches_the_handler(
    stack: LocalStack, agent_id: str
) -> None:
    outgoing = {"to": "sip:+15557654321@trunk.example", "from": "+15551234567"}
    created = api(
        stack, "POST", f"/api/agents/{agent_id}/calls", {"medium": {"sip": {"outgoing": outgoing}}}
    )
    assert created.status_code == 201, created.text
    sqs = boto3.client(
        "sqs",
        endpoint_url=stack.moto_url,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    dials: list[DialCommand] = []

    async def on_dial(command: DialCommand) -> None:
        dials.append(command)

    consumer = CommandConsumer(sqs, stack.queue_url, CommandHandlers(dial=on_dial), wait_time_s=1)

    async def main() -> None:
        task = asyncio.create_task(consumer.run())
        try:
            async with asyncio.timeout(10):
                while consumer.stats.handled < 1:
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert [d.call_id for d in dials] == [created.json()["callId"]]
    assert dials[0].to == outgoing["to"]
    left = sqs.get_queue_attributes(
        QueueUrl=stack.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert left["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_the_allowlist_endpoint_feeds_the_ip_guard(stack: LocalStack, agent_id: str) -> None:
    async def main() -> None:
        async with client_of(stack) as client:
            snapshot = await client.fetch_allowlist()
        assert snapshot.allowed_cidr_ranges == ["203.0.113.0/24"]

    asyncio.run(main())
