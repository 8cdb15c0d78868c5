"""Transfer requests: one item per request under its call, ``CALL#<callId>`` /
``TRANSFER#<nnnn>`` (``docs/storage.md``).

The sort key is the request's number in its call, written with ``attribute_not_exists``: two
requests that both found no transfer in progress both try number *n*, and exactly one is stored;
the other gets :class:`~chalicelib.errors.AlreadyExists` (the API answers 409, one transfer at a
time). Updates (a warm transfer's outcome, a command that could not be sent) are conditional on
the version read, like every record (``chalicelib/store/repository.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.errors import AlreadyExists, StaleVersion
from chalicelib.store import keys
from chalicelib.store.item_size import check_item_size
from chalicelib.store.paging import Scan, scan_items
from chalicelib.store.readable import readable
from chalicelib.store.table import ABSENT, Condition, ConditionFailed, Item, Table
from chalicelib.transfer_status import TransferRecord


@dataclass(frozen=True, slots=True)
class CallTransfers:
    """A call's transfer requests (with the version each was read at) and the next number."""

    records: list[tuple[TransferRecord, int]]
    next_sequence: int


def _item(record: TransferRecord, version: int) -> Item:
    item = {
        "pk": keys.call_pk(record.call_id),
        "sk": keys.transfer_sk(record.sequence),
        "version": version,
        "data": record.model_dump_json(by_alias=True),
    }
    check_item_size(item, "the transfer")
    return item


class Transfers:
    """Reads and writes transfer requests through a :class:`Table`."""

    def __init__(self, table: Table) -> None:
        self._table = table

    def create(self, record: TransferRecord) -> None:
        """Store a new request; AlreadyExists if its number in the call is taken."""
        try:
            self._table.put(_item(record, 1), ABSENT)
        except ConditionFailed:
            raise AlreadyExists(
                f"transfer {record.sequence} of call {record.call_id!r} exists"
            ) from None

    def of_call(self, call_id: str) -> CallTransfers:
        """Every readable request of the call, first first, each with its version, and the
        number the next one takes (past unreadable ones too: they keep their number)."""
        scan = Scan(keys.call_pk(call_id), sk_prefix=keys.transfer_sk())
        items = list(scan_items(self._table, scan))
        found = [(record, int(item["version"])) for item, record in readable(TransferRecord, items)]
        numbers = [int(str(item["sk"]).removeprefix(keys.transfer_sk()) or 0) for item in items]
        return CallTransfers(
            sorted(found, key=lambda pair: pair[0].sequence), max(numbers, default=0) + 1
        )

    def save(self, record: TransferRecord, read_version: int) -> None:
        """Write a request read at ``read_version``; StaleVersion if it changed since."""
        try:
            self._table.put(_item(record, read_version + 1), Condition.at_version(read_version))
        except ConditionFailed:
            raise StaleVersion(f"transfer {record.transfer_id!r} changed") from None
