"""DynamoDB's errors, as AWS documents them, become the right domain outcome.

Only a failed condition means "already exists"; a transaction cancelled by throttling or by a
conflicting transaction is retried, then answered 503. The classifier is checked on the error
shapes of the DynamoDB API reference; the store on moto, with the errors moto cannot produce
injected at the HTTP layer (``tests/support/dynamodb_faults.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from chalicelib.call_models import Call
from chalicelib.contracts import MediaEndpoint
from chalicelib.errors import AlreadyExists, RecordTooLarge, StoreBusy
from chalicelib.store.dynamodb import MAX_WRITE_ATTEMPTS, DynamoTable, Failure, classify
from chalicelib.store.repository import Store
from chalicelib.store.schema import create_table
from tests.support.dynamodb_faults import canceled, error, failing
from tests.support.fakes import START

TABLE = "sipline-test"


def _parsed(body: dict[str, Any]) -> dict[str, Any]:
    """What botocore makes of an error body: ``Error.Code`` plus the modeled members."""
    code = body["__type"].rpartition("#")[2]
    extra = {k: v for k, v in body.items() if k not in ("__type", "Message")}
    return {"Error": {"Code": code, "Message": body["Message"]}, **extra}


@pytest.mark.parametrize(
    ("body", "failure"),
    [
        (error("ConditionalCheckFailedException", "The conditional request failed"), "condition"),
        (canceled("ConditionalCheckFailed", "None"), "condition"),
        (canceled("None", "ConditionalCheckFailed"), "condition"),
        (canceled("ThrottlingError", "None"), "transient"),
        (canceled("None", "TransactionConflict"), "transient"),
        (canceled("ProvisionedThroughputExceeded", "None"), "transient"),
        (canceled("ConditionalCheckFailed", "TransactionConflict"), "transient"),
        (canceled("ValidationError", "None"), "other"),
        (error("TransactionConflictException", "Transaction is ongoing for the item"), "transient"),
        (error("ProvisionedThroughputExceededException", "Rate exceeded"), "throttled"),
        (
            error("ThrottlingException", "Rate of requests exceeds the allowed throughput."),
            "throttled",
        ),
        (error("RequestLimitExceeded", "Throughput exceeds the account limit."), "throttled"),
        (error("ResourceNotFoundException", "Requested resource not found"), "other"),
    ],
    ids=lambda value: value if isinstance(value, str) else value["Message"][:60],
)
def test_only_a_failed_condition_means_the_item_exists(body: dict[str, Any], failure: str) -> None:
    expected = {
        "condition": Failure.CONDITION_FAILED,
        "transient": Failure.TRANSIENT,
        "throttled": Failure.THROTTLED,
        "other": Failure.OTHER,
    }[failure]
    assert classify(_parsed(body)) is expected


@dataclass
class Moto:
    client: Any
    store: Store
    sleeps: list[float]


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[Moto]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        sleeps: list[float] = []
        table = DynamoTable(client, TABLE, sleep=sleeps.append, jitter=lambda: 1.0)
        yield Moto(client, Store(table), sleeps)


def a_call(n: int = 1) -> Call:
    return Call(
        call_id=f"call-{n:03d}",
        account_id="default",
        created=START + timedelta(seconds=n),
        direction="incoming",
        agent_id="a",
        caller="+1",
        callee="+2",
        media_endpoint=MediaEndpoint(url="ws://127.0.0.1:9000"),
    )


def test_a_throttled_transaction_is_retried_not_taken_for_a_duplicate(moto: Moto) -> None:
    throttled = canceled("ThrottlingError", "None")
    with failing(moto.client, "TransactWriteItems", throttled, times=2) as seen:
        moto.store.create_call(a_call(), invite_key="INVITE#x")

    assert len(seen) == 3
    assert moto.store.get_call("call-001").value == a_call()
    assert moto.store.find_invite_call("default", "INVITE#x") == "call-001"
    assert moto.sleeps == [0.05, 0.1]  # BACKOFF_BASE_S doubling, jitter pinned to the full step


def test_a_transaction_conflict_is_retried(moto: Moto) -> None:
    conflict = canceled("None", "TransactionConflict")
    with failing(moto.client, "TransactWriteItems", conflict, times=1):
        moto.store.create_call(a_call(), invite_key="INVITE#x")

    assert moto.store.get_call("call-001").value == a_call()


def test_a_transaction_that_stays_throttled_is_a_503_after_bounded_attempts(moto: Moto) -> None:
    throttled = canceled("ThrottlingError", "None")
    with (
        failing(moto.client, "TransactWriteItems", throttled, times=100) as seen,
        pytest.raises(StoreBusy) as raised,
    ):
        moto.store.create_call(a_call(), invite_key="INVITE#x")

    assert len(seen) == MAX_WRITE_ATTEMPTS
    assert raised.value.http_status == 503 and raised.value.sip_status == 503
    assert str(raised.value) == (
        "the table is busy (TransactionCanceledException [ThrottlingError, None])"
        f" after {MAX_WRITE_ATTEMPTS} attempts; try again"
    )
    assert moto.store.find_invite_call("default", "INVITE#x") is None


def test_a_put_meeting_another_transaction_is_retried(moto: Moto) -> None:
    conflict = error("TransactionConflictException", "Transaction is ongoing for the item")
    with failing(moto.client, "PutItem", conflict, times=1):
        moto.store.create_call(a_call())

    assert moto.store.get_call("call-001").value == a_call()


def test_a_read_botocore_gave_up_on_is_a_503(moto: Moto) -> None:
    throttled = error("ProvisionedThroughputExceededException", "Rate exceeded")
    with failing(moto.client, "GetItem", throttled, times=100), pytest.raises(StoreBusy):
        moto.store.get_call("call-001")


def test_a_real_failed_condition_is_already_exists(moto: Moto) -> None:
    moto.store.create_call(a_call(), invite_key="INVITE#x")

    with pytest.raises(AlreadyExists):
        moto.store.create_call(a_call(2), invite_key="INVITE#x")

    assert moto.sleeps == []


def test_a_validation_error_is_not_hidden(moto: Moto) -> None:
    invalid = canceled("ValidationError", "None")
    with failing(moto.client, "TransactWriteItems", invalid, times=1), pytest.raises(ClientError):
        moto.store.create_call(a_call(), invite_key="INVITE#x")


ITEM_TOO_LARGE = "Item size has exceeded the maximum allowed size"
"""DynamoDB's message for an item over 400 KB ("Service, account, and table quotas")."""


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("PutItem", error("ValidationException", ITEM_TOO_LARGE)),
        (
            "TransactWriteItems",
            canceled("None", "None")
            | {"CancellationReasons": [{"Code": "ValidationError", "Message": ITEM_TOO_LARGE}]},
        ),
    ],
    ids=["put", "transaction"],
)
def test_an_item_dynamodb_finds_too_large_is_a_413_naming_the_limit_not_a_500(
    moto: Moto, operation: str, body: dict[str, Any]
) -> None:
    """The repository measures items before writing them (``store/item_size.py``); should
    DynamoDB still refuse one as too large, the user gets 413 ``record_too_large``, not 500."""
    with failing(moto.client, operation, body, times=1), pytest.raises(RecordTooLarge) as raised:
        if operation == "PutItem":
            moto.store.save_call(a_call(), 0)
        else:
            moto.store.create_call(a_call(), invite_key="INVITE#x")

    assert raised.value.http_status == 413
    assert raised.value.code == "record_too_large"
    assert "409600 bytes (400 KB)" in str(raised.value)
    assert moto.sleeps == []
