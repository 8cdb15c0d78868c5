"""The connection table's caps and lookups, with stand-in connections (no sockets, no loop)."""

from __future__ import annotations

from dataclasses import dataclass, replace
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


def test_a_tls_connection_is_found_only_for_the_server_name_it_was_opened_for() -> None:
    table = _table()
    trunk = Address("192.0.2.50", 5061, Transport.TLS, server_name="trunk.test")
    connection = _Connection(1, replace(trunk, connection_id=1), outgoing=True)
    table.add(connection)

    assert table.to_peer(trunk) is connection
    assert table.to_peer(replace(trunk, server_name="TRUNK.test.")) is connection  # same name
    assert table.to_peer(replace(trunk, server_name="other.test")) is None
    assert table.to_peer(replace(trunk, server_name=None)) is None  # that one proves 192.0.2.50
    assert table.to_peer(replace(trunk, transport=Transport.TCP, server_name=None)) is None


def test_an_accepted_tls_connection_carries_no_request_that_did_not_arrive_on_it() -> None:
    table = _table()
    peer = Address("192.0.2.7", 5061, Transport.TLS, connection_id=1)
    table.add(_Connection(1, peer))

    assert table.to_peer(replace(peer, connection_id=None)) is None  # its client proved no name
    assert table.get(1) is not None
    tcp = Address("192.0.2.7", 5060, Transport.TCP, connection_id=2)
    table.add(_Connection(2, tcp))
    assert table.to_peer(replace(tcp, connection_id=None)) is not None  # TCP: as before
