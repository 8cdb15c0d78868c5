"""The repository: models in and out of the single table, with conditional writes.

Every record is one item: its keys, a ``version`` bumped by each write, and the model as JSON in
``data``. Writers that can race (two PATCHes, two event batches) write with ``version`` as their
condition; a lost race raises :class:`~chalicelib.errors.StaleVersion` and the caller re-reads and
re-applies, so no write is lost silently. Lists are read through ``paging.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from chalicelib.call_models import Call
from chalicelib.contracts import CallEvent
from chalicelib.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    StaleVersion,
    TooManyActiveCalls,
)
from chalicelib.models import Agent, Registration, SipConfig
from chalicelib.store import keys
from chalicelib.store.heartbeats import Heartbeats
from chalicelib.store.item_size import check_item_size
from chalicelib.store.paging import PageRequest, PageResult, Scan, read_page, scan_items
from chalicelib.store.readable import read_one, readable
from chalicelib.store.table import (
    ABSENT,
    MAX_MATCH_VALUES,
    Condition,
    ConditionFailed,
    Increment,
    Item,
    Match,
    Table,
)
from chalicelib.store.transfers import Transfers

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
MAX_AGENT_FILTER = MAX_MATCH_VALUES
"""At most this many ``agentIds`` in one calls query (one DynamoDB ``IN``)."""
CALL_AGENT = "agent"
"""The call item's attribute holding its agent id, which ``agentIds`` filters on."""
_RECORD_NAMES = {
    "SipConfig": "the SIP configuration",
    "Agent": "the agent",
    "Registration": "the registration",
    "Call": "the call",
}
INVITE_KEY_TTL_S = 7 * 24 * 3600
"""How long a retried INVITE webhook finds its decision (DynamoDB TTL removes the key after)."""


@dataclass(frozen=True, slots=True)
class Versioned(Generic[T]):
    """A record and the version it was read at (0: never written)."""

    value: T
    version: int


def _item(pk: str, sk: str, model: BaseModel, version: int, **extra: str) -> Item:
    """The item of a record; RecordTooLarge (413) if it is over DynamoDB's 400 KB."""
    data = model.model_dump_json(by_alias=True)
    item = {"pk": pk, "sk": sk, "version": version, "data": data, **extra}
    check_item_size(item, _RECORD_NAMES.get(type(model).__name__, "the record"))
    return item


def _load(model: type[M], item: Item, what: str, account_id: str | None = None) -> Versioned[M]:
    """The item's model and version; UnreadableRecord (409) if it does not read."""
    return Versioned(read_one(model, item, what, account_id=account_id), int(item["version"]))


@lru_cache(maxsize=32)
def _parsed_sip_config(data: str) -> SipConfig:
    """Parse a stored configuration once per distinct content (routing caches by identity)."""
    return SipConfig.model_validate_json(data)


class Store:
    """Reads and writes every sipline record through a :class:`Table`."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.heartbeats = Heartbeats(table)
        self.transfers = Transfers(table)

    # --- SIP configuration -----------------------------------------------------------------------

    def get_sip_config(self, account_id: str) -> Versioned[SipConfig]:
        """Return the account's SIP configuration (the default one, version 0, if never set)."""
        item = self.table.get(keys.account_pk(account_id), keys.SIP_CONFIG_SK)
        if item is None:
            return Versioned(SipConfig(), 0)
        try:
            return Versioned(_parsed_sip_config(item["data"]), int(item["version"]))
        except (ValidationError, KeyError, TypeError):
            return _load(SipConfig, item, "the SIP configuration")  # raises, logged and counted

    def save_sip_config(self, account_id: str, config: SipConfig, read_version: int) -> int:
        """Write the configuration read at ``read_version``; return the new version."""
        item = _item(keys.account_pk(account_id), keys.SIP_CONFIG_SK, config, read_version + 1)
        self._write(item, read_version)
        return read_version + 1

    # --- agents ----------------------------------------------------------------------------------

    def create_agent(self, account_id: str, agent: Agent) -> None:
        """Store a new agent."""
        item = _item(keys.account_pk(account_id), keys.agent_sk(agent.agent_id), agent, 1)
        self._write(item, 0)

    def get_agent(self, account_id: str, agent_id: str) -> Versioned[Agent]:
        """Return an agent, or raise NotFound."""
        item = self.table.get(keys.account_pk(account_id), keys.agent_sk(agent_id))
        if item is None:
            raise NotFound(f"agent {agent_id!r} not found")
        return _load(Agent, item, f"agent {agent_id!r}")

    def agent_ids(self, account_id: str) -> set[str]:
        """Return the ids of every agent of the account (one query, however many rules name them)."""
        scan = Scan(keys.account_pk(account_id), sk_prefix=keys.agent_sk())
        prefix = len(keys.agent_sk())
        return {item["sk"][prefix:] for item in scan_items(self.table, scan)}

    def save_agent(self, account_id: str, agent: Agent, read_version: int) -> None:
        """Write an agent read at ``read_version``."""
        pk, sk = keys.account_pk(account_id), keys.agent_sk(agent.agent_id)
        self._write(_item(pk, sk, agent, read_version + 1), read_version)

    def delete_agent(self, account_id: str, agent_id: str) -> None:
        """Delete an agent, or raise NotFound (an agent that does not read is deleted too)."""
        if self.table.get(keys.account_pk(account_id), keys.agent_sk(agent_id)) is None:
            raise NotFound(f"agent {agent_id!r} not found")
        self.table.delete(keys.account_pk(account_id), keys.agent_sk(agent_id))

    def list_agents(self, account_id: str, request: PageRequest) -> PageResult[Agent]:
        """List an account's agents, newest first."""
        scan = Scan(keys.account_pk(account_id), sk_prefix=keys.agent_sk(), descending=True)
        return read_page(self.table, scan, Agent, request)

    # --- registrations ---------------------------------------------------------------------------

    def create_registration(self, account_id: str, registration: Registration) -> None:
        """Store a new registration."""
        self._write(self._registration_item(account_id, registration, 1), 0)

    def get_registration(self, registration_id: str) -> tuple[str, Versioned[Registration]]:
        """Return ``(account_id, registration)``, or raise NotFound."""
        item = self.table.get(keys.registration_pk(registration_id), keys.REGISTRATION_SK)
        if item is None:
            raise NotFound(f"registration {registration_id!r} not found")
        what = f"registration {registration_id!r}"
        return item["account"], _load(Registration, item, what, item.get("account"))

    def save_registration(
        self, account_id: str, registration: Registration, read_version: int
    ) -> None:
        """Write a registration read at ``read_version``."""
        item = self._registration_item(account_id, registration, read_version + 1)
        self._write(item, read_version)

    def delete_registration(self, registration_id: str) -> None:
        """Delete a registration (its status events stay, as the record of what happened)."""
        self.table.delete(keys.registration_pk(registration_id), keys.REGISTRATION_SK)

    def list_registrations(self, account_id: str, request: PageRequest) -> PageResult[Registration]:
        """List an account's registrations, newest first."""
        scan = Scan(keys.registrations_gsi1pk(account_id), index=keys.GSI1, descending=True)
        return read_page(self.table, scan, Registration, request)

    @staticmethod
    def _registration_item(account_id: str, registration: Registration, version: int) -> Item:
        rid = registration.registration_id
        return _item(
            keys.registration_pk(rid),
            keys.REGISTRATION_SK,
            registration,
            version,
            account=account_id,
            gsi1pk=keys.registrations_gsi1pk(account_id),
            gsi1sk=rid,
        )

    # --- calls -----------------------------------------------------------------------------------

    def create_call(
        self, call: Call, *, invite_key: str | None = None, slot_limit: int | None = None
    ) -> None:
        """Store a new call; with ``invite_key``, atomically with the INVITE's idempotency record.

        A call that ``holds_slot`` takes one of its account's slots in the same transaction: the
        account's counter of active calls goes up by one, and with ``slot_limit`` only while it
        stays within it (docs/storage.md, active calls). :meth:`save_call` frees the slot.

        Raises:
            AlreadyExists: the INVITE was decided before (a retried webhook).
            TooManyActiveCalls: the account's calls already hold ``slot_limit`` slots.
        """
        writes: list[tuple[Item, Condition | None]] = [(self._call_item(call, 1), ABSENT)]
        if invite_key is not None:
            marker = {"pk": keys.account_pk(call.account_id), "sk": invite_key}
            expires = int(call.created.timestamp()) + INVITE_KEY_TTL_S
            writes.append(({**marker, "version": 1, "data": call.call_id, "ttl": expires}, ABSENT))
        slots = [self._slots(call.account_id, +1, slot_limit)] if call.holds_slot else []
        try:
            self.table.transact_put(writes, slots)
        except ConditionFailed as failed:
            if slot_limit is not None and failed.failed == {len(writes)}:  # only the counter
                raise TooManyActiveCalls(slot_limit) from None
            raise AlreadyExists(f"call {call.call_id!r} or its INVITE exists") from None

    def active_calls(self, account_id: str) -> int:
        """Return how many of the account's calls hold a slot (docs/storage.md, active calls)."""
        item = self.table.get(keys.account_pk(account_id), keys.ACTIVE_CALLS_SK)
        return int(item.get(keys.ACTIVE_CALLS_ATTRIBUTE, 0)) if item else 0

    @staticmethod
    def _slots(account_id: str, by: int, at_most: int | None = None) -> Increment:
        pk, sk = keys.account_pk(account_id), keys.ACTIVE_CALLS_SK
        return Increment(pk, sk, keys.ACTIVE_CALLS_ATTRIBUTE, by, at_most)

    def find_invite_call(self, account_id: str, invite_key: str) -> str | None:
        """Return the call id an INVITE was already decided into, if any."""
        item = self.table.get(keys.account_pk(account_id), invite_key)
        return str(item["data"]) if item else None

    def get_call(self, call_id: str) -> Versioned[Call]:
        """Return a call, or raise NotFound."""
        item = self.table.get(keys.call_pk(call_id), keys.CALL_SK)
        if item is None:
            raise NotFound(f"call {call_id!r} not found")
        owner = keys.account_of_calls_gsi1pk(str(item.get("gsi1pk", "")))
        return _load(Call, item, f"call {call_id!r}", owner)

    def save_call(self, call: Call, read_version: int) -> None:
        """Write a call read at ``read_version`` (and derived from what was read then).

        The one place a call's slot is freed: a call that holds one and has ended is written
        without it, and the account's counter goes down by one in the same transaction. The
        version condition makes that happen once, however many writers end the call, by
        whatever path (events, the API, a reaper): the losers re-read a call without a slot.
        """
        if not (call.holds_slot and call.ended is not None):
            self._write(self._call_item(call, read_version + 1), read_version)
            return
        freed = call.model_copy(update={"holds_slot": False})
        item = self._call_item(freed, read_version + 1)
        condition = ABSENT if read_version == 0 else Condition.at_version(read_version)
        try:
            self.table.transact_put([(item, condition)], [self._slots(call.account_id, -1)])
        except ConditionFailed:
            raise StaleVersion(
                f"call {call.call_id!r} changed since version {read_version}"
            ) from None

    def list_calls(
        self,
        account_id: str,
        request: PageRequest,
        *,
        created_between: tuple[datetime, datetime] | None = None,
        agent_ids: frozenset[str] = frozenset(),
    ) -> PageResult[Call]:
        """List an account's calls, newest first, by creation time and agent (at most
        :data:`MAX_AGENT_FILTER` agent ids)."""
        between = None
        if created_between is not None:
            low, high = (keys.calls_gsi1sk(_iso(t), "") for t in created_between)
            between = (low, high + "~")
        if len(agent_ids) > MAX_AGENT_FILTER:
            raise InvalidInput(
                "agentIds", f"at most {MAX_AGENT_FILTER} agent ids (got {len(agent_ids)})"
            )
        scan = Scan(
            keys.calls_gsi1pk(account_id),
            index=keys.GSI1,
            sk_between=between,
            descending=True,
            where=Match(CALL_AGENT, agent_ids) if agent_ids else None,
        )
        return read_page(self.table, scan, Call, request)

    def iter_calls(
        self, account_id: str, created_between: tuple[datetime, datetime]
    ) -> Iterator[Call]:
        """Yield every readable call of the account created in the range (for usage reports)."""
        low, high = (keys.calls_gsi1sk(_iso(t), "") for t in created_between)
        scan = Scan(keys.calls_gsi1pk(account_id), index=keys.GSI1, sk_between=(low, high + "~"))
        for _, call in readable(Call, scan_items(self.table, scan)):
            yield call

    def iter_open_calls(self) -> Iterator[Call]:
        """Yield every call that has not ended, oldest first in each GSI2 shard (the reaper's)."""
        for shard in range(keys.OPEN_CALL_SHARDS):
            scan = Scan(keys.open_calls_gsi2pk(shard), index=keys.GSI2)
            for _, call in readable(Call, scan_items(self.table, scan)):
                yield call

    @staticmethod
    def _call_item(call: Call, version: int) -> Item:
        created = _iso(call.created)
        extra = {
            "gsi1pk": keys.calls_gsi1pk(call.account_id),
            "gsi1sk": keys.calls_gsi1sk(created, call.call_id),
        }
        if call.agent_id:
            extra[CALL_AGENT] = call.agent_id
        if call.ended is None:  # GSI2 is sparse: it lists only the calls that are still open
            extra["gsi2pk"] = keys.open_calls_gsi2pk(keys.open_call_shard(call.call_id))
            extra["gsi2sk"] = keys.calls_gsi1sk(created, call.call_id)
        return _item(keys.call_pk(call.call_id), keys.CALL_SK, call, version, **extra)

    # --- events ----------------------------------------------------------------------------------

    def add_event(self, pk: str, event: CallEvent) -> bool:
        """Store ``event`` under ``pk`` once; return False if its id was stored before."""
        item = {
            "pk": pk,
            "sk": keys.event_sk(event.event_id),
            "version": 1,
            "data": event.model_dump_json(by_alias=True),
        }
        try:
            self.table.put(item, ABSENT)
        except ConditionFailed:
            return False
        return True

    def list_events(self, pk: str) -> list[CallEvent]:
        """Return every readable event stored under ``pk`` (unordered: callers order by edge
        time)."""
        scan = Scan(pk, sk_prefix=keys.event_sk())
        return [event for _, event in readable(CallEvent, scan_items(self.table, scan))]

    # --- helpers ---------------------------------------------------------------------------------

    def _write(self, item: Item, read_version: int) -> None:
        condition = ABSENT if read_version == 0 else Condition.at_version(read_version)
        try:
            self.table.put(item, condition)
        except ConditionFailed:
            what = f"{item['pk']}/{item['sk']}"
            if read_version == 0:
                raise AlreadyExists(f"{what} already exists") from None
            raise StaleVersion(f"{what} changed since version {read_version}") from None


def _iso(value: datetime) -> str:
    """Fixed-width UTC time, so that sort keys order like the times they hold."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
