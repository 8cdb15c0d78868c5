"""TLS on 127.0.0.1 with the self-signed certificate of ``tls.ensure_self_signed``."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace
from pathlib import Path

import pytest

from relay.sip.address import Transport
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.parser import StreamFramer
from relay.transport.endpoint import TransportConfig, TransportEndpoint
from relay.transport.tls import client_context, ensure_self_signed, server_context
from tests.integration.relay.transport.fake_core import (
    FakeCore,
    config,
    read_until_closed,
    request,
    run,
    started,
    until,
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "sip.crt", folder / "sip.key"
    ensure_self_signed(cert, key, ["localhost", "127.0.0.1"])
    return cert, key


def _tls_config(certificate: tuple[Path, Path], **changes: object) -> TransportConfig:
    return replace(config(), tls_port=0, tls_server=server_context(*certificate), **changes)


async def _events(reader: asyncio.StreamReader, count: int) -> list[Request | Response]:
    framer, events = StreamFramer(), []
    while len(events) < count:
        framer.feed(await asyncio.wait_for(reader.read(65536), 2))
        events.extend(e for e in framer if isinstance(e, Request | Response))
    return events


def test_a_verifying_tls_client_exchanges_messages_both_ways(
    certificate: tuple[Path, Path],
) -> None:
    async def scenario() -> None:
        core = FakeCore()
        endpoint = await started(core, _tls_config(certificate))
        server = endpoint.local_address(Transport.TLS)
        reader, writer = await asyncio.open_connection(
            server.host,
            server.port,
            ssl=client_context(cafile=certificate[0]),
            server_hostname="localhost",
        )
        try:
            writer.write(request("OPTIONS", transport="TLS"))
            (answer,) = await _events(reader, 1)
            message, source = core.received[0]
            assert isinstance(answer, Response) and answer.status == 200
            assert source.transport is Transport.TLS and source.connection_id is not None
            core.outbox.append((request("BYE", branch="z9hG4bKout"), source))
            endpoint.transmit()
            (incoming,) = await _events(reader, 1)
            assert isinstance(incoming, Request) and incoming.method == "BYE"
        finally:
            writer.close()
            await endpoint.close()

    run(scenario)


def test_an_outgoing_tls_connection_verifies_the_server_name_and_carries_the_reply(
    certificate: tuple[Path, Path],
) -> None:
    async def scenario() -> None:
        server_core, client_core = FakeCore(), FakeCore()
        server = await started(server_core, _tls_config(certificate))
        client = await started(
            client_core, replace(config(), tls_client=client_context(cafile=certificate[0]))
        )
        try:
            target = server.local_address(Transport.TLS)
            client_core.outbox.append((request("OPTIONS", transport="TLS"), target))
            client.transmit()
            await until(lambda: bool(client_core.received))
            answer, source = client_core.received[0]
            assert isinstance(answer, Response) and answer.status == 200
            assert (source.host, source.port, source.transport) == (
                target.host,
                target.port,
                Transport.TLS,
            )
            assert source.connection_id is not None
            assert client.counters.connections_opened == 1
        finally:
            await client.close()
            await server.close()

    run(scenario)


def test_an_untrusted_server_certificate_is_a_transport_error_unless_verification_is_off(
    certificate: tuple[Path, Path],
) -> None:
    async def scenario() -> None:
        server_core, strict_core, lax_core = FakeCore(), FakeCore(), FakeCore()
        server = await started(server_core, _tls_config(certificate))
        strict = await started(strict_core, replace(config(), tls_client=client_context()))
        lax = await started(lax_core, replace(config(), tls_client=client_context(verify=False)))
        try:
            target = server.local_address(Transport.TLS)
            for core, endpoint in ((strict_core, strict), (lax_core, lax)):
                core.outbox.append((request("OPTIONS", transport="TLS"), target))
                endpoint.transmit()
            await until(lambda: bool(strict_core.transport_errors) and bool(lax_core.received))
            assert strict_core.transport_errors == [target]
            assert strict.connection_count == 0
        finally:
            for endpoint in (strict, lax, server):
                await endpoint.close()

    run(scenario)


def test_a_peer_that_speaks_plain_sip_to_the_tls_port_fails_the_handshake_and_is_dropped(
    certificate: tuple[Path, Path],
) -> None:
    async def scenario() -> None:
        core = FakeCore()
        endpoint = await started(core, _tls_config(certificate))
        server = endpoint.local_address(Transport.TLS)
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(request("OPTIONS", transport="TLS"))
            await asyncio.wait_for(read_until_closed(reader), 2)
            await until(lambda: endpoint.connection_count == 0)
            assert endpoint.counters.handshake_failures == 1
            assert core.received == [] and core.lost_connections == []
        finally:
            writer.close()
            await endpoint.close()

    run(scenario)


def test_a_peer_that_never_starts_the_handshake_is_dropped_at_the_handshake_deadline(
    certificate: tuple[Path, Path],
) -> None:
    async def scenario() -> None:
        core = FakeCore()
        limits = replace(config().limits, tls_handshake_timeout_s=0.3)
        endpoint = await started(core, _tls_config(certificate, limits=limits))
        server = endpoint.local_address(Transport.TLS)
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            assert await asyncio.wait_for(read_until_closed(reader), 3) == b""
            await until(lambda: endpoint.connection_count == 0)
            assert endpoint.counters.handshake_failures == 1
        finally:
            writer.close()
            await endpoint.close()

    run(scenario)


def test_a_refused_tls_peer_costs_no_handshake(certificate: tuple[Path, Path]) -> None:
    async def scenario() -> None:
        core = FakeCore()
        limits = replace(config().limits, max_connections_per_ip=1)
        endpoint = await started(core, _tls_config(certificate, limits=limits))
        server = endpoint.local_address(Transport.TLS)
        context = client_context(verify=False)
        first = await asyncio.open_connection(server.host, server.port, ssl=context)
        try:
            with pytest.raises((ConnectionError, ssl.SSLError)):
                await asyncio.open_connection(server.host, server.port, ssl=context)
            assert endpoint.counters.connections_refused == 1
            assert endpoint.counters.handshake_failures == 0
        finally:
            first[1].close()
            await endpoint.close()

    run(scenario)


def test_a_tls_port_without_a_server_context_is_refused_at_start() -> None:
    async def scenario() -> None:
        endpoint = TransportEndpoint(FakeCore(), replace(config(), tls_port=0))
        with pytest.raises(ValueError, match="tls_port is set but tls_server has no context"):
            await endpoint.start()

    run(scenario)
