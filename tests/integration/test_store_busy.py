"""A table that stays throttled answers 503 (HTTP) or rejects the INVITE with SIP 503, never
"already exists"; the errors are DynamoDB's documented ones (``tests/support/dynamodb_faults``)."""

from __future__ import annotations

import pytest

from chalicelib.services import Services
from chalicelib.store.dynamodb import DynamoTable
from chalicelib.store.repository import Store
from tests.integration.harness import MEDIA_URL, TABLE, Api, Aws
from tests.support.dynamodb_faults import canceled, error, failing


@pytest.fixture
def no_sleep(services: Services, aws: Aws) -> None:
    """The store, without waiting between retries (their delays are tested in
    tests/integration/chalicelib/store/test_dynamodb.py)."""
    services.store = Store(DynamoTable(aws.dynamodb, TABLE, sleep=lambda _: None))


def test_invite_while_the_table_stays_throttled_is_rejected_with_sip_503(
    api: Api, aws: Aws, no_sleep: None
) -> None:
    agent_id = api.create_agent("sales")["agentId"]
    api.patch_sip(
        allowedCidrRanges=["203.0.113.0/24"],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )

    throttled = canceled("ThrottlingError", "None")
    with failing(aws.dynamodb, "TransactWriteItems", throttled, times=100):
        decision = api.invite().body

    assert decision["action"] == "reject"
    assert (decision["sipStatus"], decision["reason"]) == (503, "store_busy")
    assert api.invite().body["action"] == "accept"  # the retried INVITE, once the table recovers


def test_api_write_that_keeps_meeting_a_transaction_is_503_with_retry_after(
    api: Api, aws: Aws, no_sleep: None
) -> None:
    conflict = error("TransactionConflictException", "Transaction is ongoing for the item")
    with failing(aws.dynamodb, "PutItem", conflict, times=100):
        reply = api.post(
            "/api/agents", {"name": "sales", "callTemplate": {"mediaEndpoint": {"url": MEDIA_URL}}}
        )

    assert reply.status == 503
    assert reply.body["code"] == "store_busy"
    assert reply.headers["Retry-After"] == "1"
    assert api.get("/api/agents").body["total"] == 0
