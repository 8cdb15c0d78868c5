"""The repository's behaviour, the same on the in-memory table and on moto's DynamoDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws

from chalicelib.call_models import Call
from chalicelib.contracts import CallEvent, MediaEndpoint
from chalicelib.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    StaleVersion,
    TooManyActiveCalls,
)
from chalicelib.models import Agent, CallTemplate, SipConfig
from chalicelib.store import keys
from chalicelib.store.dynamodb import DynamoTable
from chalicelib.store.memory import MemoryTable
from chalicelib.store.paging import PageRequest
from chalicelib.store.repository import Store
from chalicelib.store.schema import create_table
from tests.support.fakes import START


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    if request.param == "memory":
        yield Store(MemoryTable())
        return
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "sipline-test")
        yield Store(DynamoTable(client, "sipline-test"))


def agent(n: int) -> Agent:
    return Agent(
        agent_id=f"0000000{n}",
        name=f"agent{n}",
        created=START + timedelta(seconds=n),
        call_template=CallTemplate(),
    )


def call(n: int, *, agent_id: str = "a", account: str = "default", hours: float = 0) -> Call:
    return Call(
        call_id=f"call-{n:03d}",
        account_id=account,
        created=START + timedelta(hours=hours, seconds=n),
        direction="outgoing",
        agent_id=agent_id,
        caller="+1",
        callee="+2",
        media_endpoint=MediaEndpoint(url="ws://127.0.0.1:9000"),
    )


def test_sip_config_defaults_then_versions(store: Store) -> None:
    initial = store.get_sip_config("default")
    assert initial.version == 0 and initial.value == SipConfig()
    version = store.save_sip_config("default", SipConfig(allow_all_agents=True), 0)
    assert version == 1
    assert store.get_sip_config("default").value.allow_all_agents is True


def test_a_lost_race_is_a_stale_version_not_a_silent_overwrite(store: Store) -> None:
    store.save_sip_config("default", SipConfig(), 0)
    store.save_sip_config("default", SipConfig(allow_all_agents=True), 1)
    with pytest.raises(StaleVersion):
        store.save_sip_config("default", SipConfig(allowed_cidr_ranges=["10.0.0.0/8"]), 1)
    assert store.get_sip_config("default").value.allow_all_agents is True


def test_creating_twice_is_refused(store: Store) -> None:
    store.create_agent("default", agent(1))
    with pytest.raises(AlreadyExists):
        store.create_agent("default", agent(1))


def test_agents_are_private_to_their_account(store: Store) -> None:
    store.create_agent("default", agent(1))
    with pytest.raises(NotFound):
        store.get_agent("other", agent(1).agent_id)


def test_pages_walk_forward_and_back_newest_first(store: Store) -> None:
    for n in range(1, 6):
        store.create_agent("default", agent(n))
    first = store.list_agents("default", PageRequest(page_size=2))
    assert [a.name for a in first.results] == ["agent5", "agent4"]
    assert first.total == 5 and first.previous_cursor is None
    second = store.list_agents("default", PageRequest(first.next_cursor, 2))
    assert [a.name for a in second.results] == ["agent3", "agent2"]
    third = store.list_agents("default", PageRequest(second.next_cursor, 2))
    assert [a.name for a in third.results] == ["agent1"]
    assert third.next_cursor is None
    back = store.list_agents("default", PageRequest(third.previous_cursor, 2))
    assert [a.name for a in back.results] == ["agent3", "agent2"]
    start = store.list_agents("default", PageRequest(back.previous_cursor, 2))
    assert [a.name for a in start.results] == ["agent5", "agent4"]
    assert start.previous_cursor is None


def test_a_forged_cursor_is_a_400(store: Store) -> None:
    with pytest.raises(InvalidInput) as raised:
        store.list_agents("default", PageRequest("not-a-cursor", 2))
    assert raised.value.field == "cursor"


def test_calls_list_by_time_range_and_agent(store: Store) -> None:
    store.create_call(call(1, agent_id="a", hours=0))
    store.create_call(call(2, agent_id="b", hours=30))
    store.create_call(call(3, agent_id="a", hours=60))
    store.create_call(call(4, account="other"))
    everything = store.list_calls("default", PageRequest())
    assert [c.call_id for c in everything.results] == ["call-003", "call-002", "call-001"]
    window = (START + timedelta(hours=1), START + timedelta(hours=61))
    ranged = store.list_calls("default", PageRequest(), created_between=window)
    assert [c.call_id for c in ranged.results] == ["call-003", "call-002"]
    by_agent = store.list_calls("default", PageRequest(page_size=1), agent_ids=frozenset({"a"}))
    assert [c.call_id for c in by_agent.results] == ["call-003"] and by_agent.total == 2
    rest = store.list_calls(
        "default", PageRequest(by_agent.next_cursor, 1), agent_ids=frozenset({"a"})
    )
    assert [c.call_id for c in rest.results] == ["call-001"]


def test_an_invite_key_makes_call_creation_idempotent(store: Store) -> None:
    key = keys.invite_sk("cid@x", "tag", "203.0.113.10")
    store.create_call(call(1), invite_key=key)
    with pytest.raises(AlreadyExists):
        store.create_call(call(2), invite_key=key)
    assert store.find_invite_call("default", key) == "call-001"
    with pytest.raises(NotFound):
        store.get_call("call-002")


def test_events_are_stored_once_by_id(store: Store) -> None:
    event = CallEvent.model_validate(
        {"eventId": "e1", "type": "ringing", "occurredAt": START.isoformat(), "callId": "c"}
    )
    assert store.add_event(keys.call_pk("c"), event) is True
    assert store.add_event(keys.call_pk("c"), event) is False
    assert store.list_events(keys.call_pk("c")) == [event]


# --- active calls: the account's concurrent-call slots (docs/storage.md) --------------------


def slotted(n: int, *, account: str = "default") -> Call:
    return call(n, account=account).model_copy(update={"holds_slot": True})


def ended(stored: Call) -> Call:
    return stored.model_copy(update={"ended": START + timedelta(minutes=1)})


def test_a_call_that_holds_a_slot_counts_until_the_limit_refuses_the_next(store: Store) -> None:
    store.create_call(slotted(1), slot_limit=2)
    store.create_call(slotted(2), slot_limit=2)

    with pytest.raises(TooManyActiveCalls) as refused:
        store.create_call(slotted(3), slot_limit=2)

    assert refused.value.limit == 2 and refused.value.retry_after_s == 10
    assert store.active_calls("default") == 2
    with pytest.raises(NotFound):
        store.get_call("call-003")  # the refused transaction wrote nothing
    store.create_call(slotted(4, account="other"), slot_limit=2)  # accounts count apart
    assert store.active_calls("other") == 1


def test_a_call_that_ends_frees_its_slot_exactly_once(store: Store) -> None:
    store.create_call(slotted(1), slot_limit=1)
    stored = store.get_call("call-001")

    store.save_call(ended(stored.value), stored.version)

    again = store.get_call("call-001")
    assert again.value.holds_slot is False and again.value.ended is not None
    assert store.active_calls("default") == 0
    store.save_call(ended(again.value), again.version)  # saved ended again: nothing to free
    assert store.active_calls("default") == 0
    store.create_call(slotted(2), slot_limit=1)
    assert store.active_calls("default") == 1


def test_a_writer_that_lost_the_race_frees_nothing(store: Store) -> None:
    store.create_call(slotted(1), slot_limit=5)
    read_by_both = store.get_call("call-001")
    store.save_call(ended(read_by_both.value), read_by_both.version)

    with pytest.raises(StaleVersion):
        store.save_call(ended(read_by_both.value), read_by_both.version)

    assert store.active_calls("default") == 0


def test_a_call_that_holds_no_slot_never_touches_the_count(store: Store) -> None:
    store.create_call(call(1), slot_limit=1)  # e.g. stored before slots existed
    stored = store.get_call("call-001")
    store.save_call(ended(stored.value), stored.version)

    assert store.active_calls("default") == 0
    store.create_call(slotted(2), slot_limit=1)


def test_a_retried_invite_at_the_limit_is_already_decided_not_refused(store: Store) -> None:
    key = keys.invite_sk("sip-call", "tag", "203.0.113.10")
    store.create_call(slotted(1), invite_key=key, slot_limit=1)

    with pytest.raises(AlreadyExists):  # its own call holds the last slot
        store.create_call(slotted(2), invite_key=key, slot_limit=1)
