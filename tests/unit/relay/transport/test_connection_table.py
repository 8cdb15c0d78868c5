"""The connection table's caps and lookups, with stand-in connections (no sockets, no loop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.sip.address import Address, Transport
from relay.transport.stream import ConnectionTable, StreamLimits


@dataclass
class _Connection:
    """What the table reads of a StreamConnection."""

    id: int
    peer: Address
    outgoing: bool = False
    closing: bool = False


def _accepted(connection_id: int, host: str = "192.0.2.1") -> Any:
    return _Connection(connection_id, Address(host, 40000 + connection_id, Transport.TCP))


def _table(**limits: int) -> ConnectionTable:
    return ConnectionTable(StreamLimits(**limits))


def test_accepted_connections_are_capped_per_source_and_in_all() -> None:
    table = _table(max_connections=3, max_connections_per_ip=2)
    table.add(_accepted(1))
    table.add(_accepted(2))

    assert not table.has_room("192.0.2.1")
    assert table.has_room("192.0.2.2")
    table.add(_accepted(3, "192.0.2.2"))
    assert not table.has_room("192.0.2.3") and not table.has_room()


def test_removing_a_connection_gives_its_place_back_once() -> None:
    table = _table(max_connections_per_ip=1)
    connection = _accepted(1)
    table.add(connection)

    assert table.remove(connection) is True
    assert table.remove(connection) is False
    assert table.has_room("192.0.2.1") and len(table) == 0


def test_outgoing_connections_count_in_all_but_not_against_a_source() -> None:
    table = _table(max_connections=2, max_connections_per_ip=1)
    target = Address("192.0.2.1", 5060, Transport.TLS)
    table.add(_Connection(1, target, outgoing=True))

    assert table.has_room("192.0.2.1")
    table.add(_accepted(2))
    assert not table.has_room()


def test_a_peer_lookup_finds_only_a_live_connection_on_the_same_transport() -> None:
    table = _table()
    target = Address("192.0.2.1", 5060, Transport.TCP)
    connection = _Connection(1, target, outgoing=True)
    table.add(connection)

    assert table.to_peer(Address("192.0.2.1", 5060, Transport.TCP, connection_id=9)) is connection
    assert table.to_peer(Address("192.0.2.1", 5060, Transport.TLS)) is None
    connection.closing = True
    assert table.to_peer(target) is None
    assert table.get(1) is connection
