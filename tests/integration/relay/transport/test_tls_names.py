"""Outgoing TLS proves the name the destination asks for (RFC 5922 §4), on 127.0.0.1.

Each server presents a certificate made for some names only (``tls.ensure_self_signed``: DNS
names, or an IP address, in its subjectAltName); the client trusts it through
``client_context(cafile=...)`` and dials 127.0.0.1 naming a server, as an outgoing call to
``sips:...@trunk.test`` does once DNS found trunk.test at 127.0.0.1. The server's own
``sni_callback`` records the name the client sent (SNI, RFC 6066 §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from relay.sip.address import Address, Transport, TransportFailure
from relay.transport.endpoint import TransportEndpoint
from relay.transport.tls import client_context, ensure_self_signed, server_context
from tests.integration.relay.transport.fake_core import FakeCore, config, request, run, started
from tests.integration.relay.transport.fake_core import until as wait_until


@dataclass
class TlsServer:
    """A TLS endpoint whose certificate names ``names``; the SNI names it was sent."""

    endpoint: TransportEndpoint
    cert: Path
    sni: list[str | None] = field(default_factory=list)

    def address(self, server_name: str | None) -> Address:
        local = self.endpoint.local_address(Transport.TLS)
        return replace(local, server_name=server_name)


async def tls_server(folder: Path, names: Sequence[str]) -> TlsServer:
    cert, key = folder / f"{names[0]}.crt", folder / f"{names[0]}.key"
    ensure_self_signed(cert, key, names)
    context = server_context(cert, key)
    sni: list[str | None] = []
    context.sni_callback = lambda _socket, name, _context: sni.append(name)
    endpoint = await started(FakeCore(), replace(config(), tls_port=0, tls_server=context))
    return TlsServer(endpoint, cert, sni)


async def client_trusting(server: TlsServer) -> tuple[FakeCore, TransportEndpoint]:
    core = FakeCore()
    endpoint = await started(core, replace(config(), tls_client=client_context(cafile=server.cert)))
    return core, endpoint


async def options(core: FakeCore, endpoint: TransportEndpoint, to: Address, branch: str) -> None:
    """Send an OPTIONS to ``to``; wait for its 200 or a transport error."""
    core.outbox.append((request("OPTIONS", transport="TLS", branch=branch), to))
    done = len(core.received) + len(core.transport_errors)
    endpoint.transmit()
    await wait_until(lambda: len(core.received) + len(core.transport_errors) > done)


def test_the_name_asked_for_is_sent_as_sni_and_found_in_the_certificate(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = await tls_server(tmp_path, ["trunk.test"])
        core, client = await client_trusting(server)
        try:
            await options(core, client, server.address("trunk.test"), "z9hG4bKsni")
            assert core.transport_errors == [] and len(core.received) == 1
            assert server.sni == ["trunk.test"]
        finally:
            await client.close()
            await server.endpoint.close()

    run(scenario)


@pytest.mark.parametrize(
    ("names", "server_name"),
    [
        (["other.test"], "trunk.test"),  # a certificate for another domain
        (["trunk.test"], None),  # dialled by address: the address is checked, not a name
        (["trunk.test.evil"], "trunk.test"),  # a longer name is another name
    ],
)
def test_a_certificate_without_the_name_fails_the_connection_as_tls_unverified(
    tmp_path: Path, names: list[str], server_name: str | None
) -> None:
    async def scenario() -> None:
        server = await tls_server(tmp_path, names)
        core, client = await client_trusting(server)
        try:
            target = server.address(server_name)
            await options(core, client, target, "z9hG4bKbad")
            assert core.transport_errors == [target]
            assert core.transport_failures == [TransportFailure.TLS_UNVERIFIED]
            assert core.received == [] and client.connection_count == 0
        finally:
            await client.close()
            await server.endpoint.close()

    run(scenario)


def test_an_ip_literal_is_checked_against_the_certificates_ip_addresses(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = await tls_server(tmp_path, ["127.0.0.1"])
        core, client = await client_trusting(server)
        try:
            await options(core, client, server.address(None), "z9hG4bKip")
            await options(core, client, server.address("127.0.0.1"), "z9hG4bKip2")
            assert core.transport_errors == [] and len(core.received) == 2
            assert client.counters.connections_opened == 1  # both name 127.0.0.1: one stream
        finally:
            await client.close()
            await server.endpoint.close()

    run(scenario)


def test_a_connection_that_proved_one_name_is_never_reused_for_another(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = await tls_server(tmp_path, ["trunk.test"])
        core, client = await client_trusting(server)
        try:
            trunk, other = server.address("trunk.test"), server.address("other.test")
            await options(core, client, trunk, "z9hG4bKone")
            await options(core, client, other, "z9hG4bKtwo")  # same address and port
            await options(core, client, trunk, "z9hG4bKthree")

            assert len(core.received) == 2  # both to trunk.test
            assert core.transport_errors == [other]
            assert core.transport_failures == [TransportFailure.TLS_UNVERIFIED]
            assert client.counters.connections_opened == 2  # trunk.test's, reused; other.test's
            assert server.sni == ["trunk.test", "other.test"]
        finally:
            await client.close()
            await server.endpoint.close()

    run(scenario)


def test_an_unreachable_server_is_not_a_tls_verification_failure(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = await tls_server(tmp_path, ["trunk.test"])
        core, client = await client_trusting(server)
        target = server.address("trunk.test")
        await server.endpoint.close()  # nothing listens there any more
        try:
            await options(core, client, target, "z9hG4bKgone")
            assert core.transport_failures == [TransportFailure.UNREACHABLE]
        finally:
            await client.close()

    run(scenario)
