"""start() and close(): nothing is left behind, whatever state the connections are in."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from relay.sip.address import Address, Transport
from relay.transport.endpoint import TransportEndpoint
from relay.transport.tls import client_context, ensure_self_signed, server_context
from tests.integration.relay.transport.fake_core import (
    FakeCore,
    config,
    open_fds,
    opened_since,
    request,
    run,
    started,
    until,
)


def test_close_leaves_no_task_and_no_socket_with_connections_in_every_state(
    tmp_path: Path,
) -> None:
    cert, key = tmp_path / "sip.crt", tmp_path / "sip.key"
    ensure_self_signed(cert, key, ["localhost"])

    async def scenario() -> None:
        tasks_before, fds_before = asyncio.all_tasks(), open_fds()
        core = FakeCore()
        endpoint = await started(
            core, replace(config(), tls_port=0, tls_server=server_context(cert, key))
        )
        tcp, tls = endpoint.local_address(Transport.TCP), endpoint.local_address(Transport.TLS)
        peers = [
            await asyncio.open_connection(tcp.host, tcp.port),  # idle
            await asyncio.open_connection(tcp.host, tcp.port),  # mid-message
            await asyncio.open_connection(tls.host, tls.port),  # mid-handshake
            await asyncio.open_connection(
                tls.host, tls.port, ssl=client_context(verify=False)
            ),  # established TLS
        ]
        peers[1][1].write(request(transport="TCP")[:50])
        core.outbox.append((request(transport="TCP"), Address(tcp.host, tcp.port, Transport.TCP)))
        endpoint.transmit()  # an outgoing connection to our own listener
        await until(lambda: endpoint.connection_count == 6)
        await endpoint.close()
        for _, writer in peers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for _, w in peers), return_exceptions=True)
        await asyncio.sleep(0)
        assert asyncio.all_tasks() == tasks_before
        assert opened_since(fds_before) == set()
        assert endpoint.connection_count == 0

    run(scenario)


def test_a_listener_that_cannot_bind_releases_what_was_bound() -> None:
    async def scenario() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            fds_before = open_fds()
            port = taken.getsockname()[1]
            endpoint = TransportEndpoint(FakeCore(), replace(config(), tcp_port=port))
            with pytest.raises(OSError):
                await endpoint.start()
            assert opened_since(fds_before) == set()

    run(scenario)


def test_close_twice_is_harmless_and_a_closed_endpoint_sends_nothing() -> None:
    async def scenario() -> None:
        core = FakeCore()
        endpoint = await started(core, config())
        await endpoint.close()
        await endpoint.close()
        core.outbox.append((request(), Address("127.0.0.1", 9)))
        endpoint.transmit()
        assert core.outbox and core.transport_errors == []

    run(scenario)


def test_the_descriptor_check_sees_a_leak_and_not_what_another_thread_closed() -> None:
    """The checks above compare descriptors, not their count: one that another thread of the test
    process closes meanwhile (a thread left by an earlier test) is not a leak; one opened and left
    open is, even when it reuses the number of one that was closed."""
    theirs = socket.socket()
    before = open_fds()
    closer = threading.Thread(target=theirs.close)
    closer.start()
    closer.join()
    assert opened_since(before) == set()
    with socket.socket() as left_open:
        inode = os.fstat(left_open.fileno()).st_ino
        assert opened_since(before) == {(left_open.fileno(), f"socket:[{inode}]")}
