"""Transfer requests on moto's DynamoDB (chalicelib/store/transfers.py): numbered under their
call, the first write of a number wins (one transfer at a time), versions guard updates, and an
item that no longer reads keeps its number (docs/storage.md, Transfers)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws

from chalicelib.errors import AlreadyExists, StaleVersion
from chalicelib.store import keys
from chalicelib.store.dynamodb import DynamoTable
from chalicelib.store.repository import Store
from chalicelib.store.schema import create_table
from chalicelib.transfer_status import TransferRecord
from tests.support.fakes import START

TABLE = "sipline-test"


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        yield Store(DynamoTable(client, TABLE))


def record(sequence: int, transfer_id: str) -> TransferRecord:
    return TransferRecord(
        transfer_id=transfer_id,
        call_id="call-1",
        sequence=sequence,
        created=START + timedelta(seconds=sequence),
        tool_name="coldTransfer",
        kind="cold",
        method="REFER",
        target="sip:operator@pbx.example",
    )


def test_of_two_requests_for_the_same_number_one_is_stored(store: Store) -> None:
    assert store.transfers.of_call("call-1").next_sequence == 1
    store.transfers.create(record(1, "first"))
    with pytest.raises(AlreadyExists):
        store.transfers.create(record(1, "second"))
    found = store.transfers.of_call("call-1")
    assert [(r.transfer_id, v) for r, v in found.records] == [("first", 1)]
    assert found.next_sequence == 2


def test_an_update_from_a_stale_read_is_refused(store: Store) -> None:
    store.transfers.create(record(1, "first"))
    [(read, version)] = store.transfers.of_call("call-1").records
    store.transfers.save(read.model_copy(update={"accepted": True}), version)
    with pytest.raises(StaleVersion):
        store.transfers.save(read.model_copy(update={"accepted": False}), version)
    [(now, _)] = store.transfers.of_call("call-1").records
    assert now.accepted is True


def test_an_unreadable_request_keeps_its_number_and_the_list_skips_it(store: Store) -> None:
    store.transfers.create(record(1, "first"))
    store.table.put({"pk": keys.call_pk("call-1"), "sk": keys.transfer_sk(2), "version": 1,
                     "data": "{not json"})  # fmt: skip
    found = store.transfers.of_call("call-1")
    assert [r.transfer_id for r, _ in found.records] == ["first"]
    assert found.next_sequence == 3
    store.transfers.create(record(found.next_sequence, "third"))
    assert [r.sequence for r, _ in store.transfers.of_call("call-1").records] == [1, 3]
