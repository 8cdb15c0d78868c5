"""Routing of what the core queues: connections opened on demand, reused, and failures reported."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import pytest

from relay.sip.address import Address, Transport
from relay.sip.syntax.message import Request, make_response
from relay.sip.syntax.parser import StreamFramer
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
from tests.support.virtual_time import run_in_virtual_time


class _Peer:
    """A TCP SIP peer that answers every request with 200 and counts its connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[Request] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        framer = StreamFramer()
        while data := await reader.read(65536):
            framer.feed(data)
            for event in framer:
                if isinstance(event, Request):
                    self.requests.append(event)
                    writer.write(bytes(make_response(event, 200, to_tag="peer")))
        writer.close()


def test_a_destination_without_connection_id_opens_one_connection_and_reuses_it() -> None:
    async def scenario() -> None:
        core, peer = FakeCore(), _Peer()
        endpoint = await started(core, config())
        server = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
        try:
            target = Address("127.0.0.1", server.sockets[0].getsockname()[1], Transport.TCP)
            core.outbox.append((request(branch="z9hG4bKa", transport="TCP"), target))
            core.outbox.append((request(branch="z9hG4bKb", transport="TCP"), target))
            endpoint.transmit()
            await until(lambda: len(core.received) == 2)
            core.outbox.append((request(branch="z9hG4bKc", transport="TCP"), target))
            endpoint.transmit()
            await until(lambda: len(core.received) == 3)
            assert peer.connections == 1 and endpoint.counters.connections_opened == 1
            ids = {source.connection_id for _, source in core.received}
            assert len(ids) == 1 and None not in ids
            assert [m.branch for m, _ in core.received] == ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc"]
        finally:
            server.close()
            await endpoint.close()
            await server.wait_closed()

    run(scenario)


def test_a_refused_connection_is_reported_to_the_core_as_a_transport_error() -> None:
    async def scenario() -> None:
        core = FakeCore()
        endpoint = await started(core, config())
        refusing = socket.socket()  # bound and held, so nobody else listens there; not listening
        refusing.bind(("127.0.0.1", 0))
        port = refusing.getsockname()[1]
        try:
            target = Address("127.0.0.1", port, Transport.TCP)
            core.outbox.append((request(transport="TCP"), target))
            endpoint.transmit()
            await until(lambda: bool(core.transport_errors))
            assert core.transport_errors == [target]
            assert endpoint.connection_count == 0 and core.lost_connections == []
        finally:
            await endpoint.close()
            refusing.close()

    run(scenario)


def test_a_response_for_a_connection_that_is_gone_is_a_transport_error() -> None:
    async def scenario() -> None:
        core = FakeCore()
        endpoint = await started(core, config())
        try:
            gone = Address("127.0.0.1", 5999, Transport.TCP, connection_id=41)
            core.outbox.append((request(transport="TCP"), gone))
            endpoint.transmit()
            assert core.transport_errors == [gone]
            assert endpoint.counters.send_failures == 1
        finally:
            await endpoint.close()

    run(scenario)


def test_a_udp_send_without_a_udp_listener_is_a_transport_error() -> None:
    async def scenario() -> None:
        core = FakeCore()
        endpoint = await started(core, replace(config(), udp_port=None))
        try:
            target = Address("127.0.0.1", 5999)
            core.outbox.append((request(), target))
            endpoint.transmit()
            assert core.transport_errors == [target]
        finally:
            await endpoint.close()

    run(scenario)


class _Blackhole:
    """A listener whose accept queue is full: further connects hang in SYN-SENT."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = [socket.socket() for _ in range(2)]
        for filler in self.fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))

    def close(self) -> None:
        for sock in (*self.fillers, self.listener):
            sock.close()


def test_a_connect_that_hangs_is_a_transport_error_after_the_connect_timeout() -> None:
    async def scenario() -> None:
        core, hole = FakeCore(), _Blackhole()
        endpoint = await started(core, config(connect_timeout_s=0.3))
        loop = asyncio.get_running_loop()
        try:
            target = Address("127.0.0.1", hole.port, Transport.TCP)
            core.outbox.append((request(transport="TCP"), target))
            began = loop.time()
            endpoint.transmit()
            await until(lambda: bool(core.transport_errors))
            assert core.transport_errors == [target]
            # Reported when the connect timeout ran out (``until`` polls every 5 ms).
            assert loop.time() - began == pytest.approx(0.3, abs=0.005 + 1e-9)
            assert endpoint.connection_count == 0
        finally:
            await endpoint.close()
            hole.close()

    run_in_virtual_time(scenario)


def test_close_during_a_pending_connect_leaves_no_task_and_no_socket() -> None:
    async def scenario() -> None:
        hole = _Blackhole()
        tasks_before, fds_before = asyncio.all_tasks(), open_fds()
        core = FakeCore()
        endpoint = await started(core, config())
        loop = asyncio.get_running_loop()
        target = Address("127.0.0.1", hole.port, Transport.TCP)
        core.outbox.append((request(transport="TCP"), target))
        endpoint.transmit()
        await asyncio.sleep(0.05)
        began = loop.time()
        await endpoint.close()
        assert loop.time() == began  # the pending connect is cancelled, not waited for
        assert asyncio.all_tasks() == tasks_before and opened_since(fds_before) == set()
        assert core.transport_errors == []
        hole.close()

    run_in_virtual_time(scenario)
