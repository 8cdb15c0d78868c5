"""Relays' heartbeats: the latest one of each relay, under ``EDGES`` (``docs/storage.md``).

A heartbeat is stored only when it was sent later than the one stored (a condition on ``sent``),
so a delayed, older heartbeat never replaces a newer one. Each item expires (DynamoDB TTL) a day
after it was received: a relay that is gone for good leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from chalicelib.contracts import EdgeHeartbeat
from chalicelib.store import keys
from chalicelib.store.table import Condition, ConditionFailed, Table

HEARTBEAT_TTL_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class StoredHeartbeat:
    """A relay's latest heartbeat and when the control plane received it (its own clock)."""

    heartbeat: EdgeHeartbeat
    received_at: datetime


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Heartbeats:
    """Reads and writes the relays' heartbeats through a :class:`Table`."""

    def __init__(self, table: Table) -> None:
        self._table = table

    def save(self, heartbeat: EdgeHeartbeat, received_at: datetime) -> bool:
        """Store ``heartbeat`` unless a later-sent one of the same relay is stored; return whether."""
        sent = _iso(heartbeat.sent_at)
        item = {
            "pk": keys.EDGES_PK,
            "sk": keys.edge_sk(heartbeat.edge_id),
            "version": 1,
            "data": heartbeat.model_dump_json(by_alias=True),
            "sent": sent,
            "received": _iso(received_at),
            "ttl": int(received_at.timestamp()) + HEARTBEAT_TTL_S,
        }
        try:
            self._table.put(item, Condition(newer_than=("sent", sent)))
        except ConditionFailed:
            return False
        return True

    def latest(self) -> dict[str, StoredHeartbeat]:
        """Return every relay's latest heartbeat, by edge id."""
        found: dict[str, StoredHeartbeat] = {}
        start = None
        while True:
            page = self._table.query(
                keys.EDGES_PK, sk_prefix=keys.edge_sk(), limit=100, start_after=start
            )
            for item in page.items:
                heartbeat = EdgeHeartbeat.model_validate_json(item["data"])
                received = datetime.fromisoformat(item["received"].replace("Z", "+00:00"))
                found[heartbeat.edge_id] = StoredHeartbeat(heartbeat, received)
            if page.last_key is None:
                return found
            start = page.last_key
