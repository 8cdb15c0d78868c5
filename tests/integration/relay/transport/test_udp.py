"""The UDP transport and the endpoint's core loop (timer, sends, core failures) on 127.0.0.1."""

from __future__ import annotations

import asyncio

from relay.sip.address import Address, Transport
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.parser import parse_message
from relay.transport.endpoint import TransportEndpoint
from tests.integration.relay.transport.fake_core import (
    FakeCore,
    UdpClient,
    config,
    request,
    run,
    started,
    until,
)


async def _udp_client(endpoint: TransportEndpoint) -> tuple[asyncio.DatagramTransport, UdpClient]:
    server = endpoint.local_address(Transport.UDP)
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(
        UdpClient, local_addr=("127.0.0.1", 0), remote_addr=(server.host, server.port)
    )


def test_a_udp_request_reaches_the_core_and_its_response_comes_back() -> None:
    async def scenario() -> None:
        core = FakeCore()
        endpoint = await started(core, config())
        transport, client = await _udp_client(endpoint)
        try:
            transport.sendto(request("OPTIONS"))
            reply = parse_message(await asyncio.wait_for(client.received.get(), 2))
            message, source = core.received[0]
            assert isinstance(reply, Response) and isinstance(message, Request)
            assert (reply.status, reply.call_id, message.method) == (
                200,
                message.call_id,
                "OPTIONS",
            )
            local = transport.get_extra_info("sockname")
            assert source == Address("127.0.0.1", local[1], Transport.UDP)
            assert endpoint.counters.messages_in == endpoint.counters.messages_out == 1
        finally:
            transport.close()
            await endpoint.close()

    run(scenario)


def test_a_core_that_raises_loses_one_datagram_not_the_listener() -> None:
    async def scenario() -> None:
        core = FakeCore(fail_on_datagram=True)
        endpoint = await started(core, config())
        transport, client = await _udp_client(endpoint)
        try:
            transport.sendto(request("OPTIONS"))
            await until(lambda: endpoint.counters.core_errors == 1)
            core.fail_on_datagram = False
            transport.sendto(request("OPTIONS"))
            reply = parse_message(await asyncio.wait_for(client.received.get(), 2))
            assert isinstance(reply, Response) and reply.status == 200
        finally:
            transport.close()
            await endpoint.close()

    run(scenario)


def test_the_core_timer_fires_at_get_timer_and_is_rearmed_after_each_call() -> None:
    async def scenario() -> None:
        core = FakeCore()
        endpoint = await started(core, config())
        loop = asyncio.get_running_loop()
        try:
            core.timer_at = due = loop.time() + 0.05
            endpoint.transmit()
            await until(lambda: bool(core.timer_fired_at))
            assert core.timer_fired_at[0] >= due
            core.timer_at = loop.time() + 10
            endpoint.transmit()
            core.timer_at = loop.time() + 0.02  # moved earlier: the next transmit re-arms
            endpoint.transmit()
            await until(lambda: len(core.timer_fired_at) == 2)
        finally:
            await endpoint.close()

    run(scenario)


def test_a_udp_destination_by_name_is_resolved_without_blocking_and_sent() -> None:
    async def scenario() -> None:
        core = FakeCore()
        endpoint = await started(core, config())
        loop = asyncio.get_running_loop()
        peer, client = await loop.create_datagram_endpoint(UdpClient, local_addr=("127.0.0.1", 0))
        try:
            port = peer.get_extra_info("sockname")[1]
            core.outbox.append((request("OPTIONS"), Address("localhost", port, Transport.UDP)))
            core.outbox.append((request("OPTIONS"), Address("no-such-host.invalid", port)))
            endpoint.transmit()
            sent = parse_message(await asyncio.wait_for(client.received.get(), 2))
            assert isinstance(sent, Request) and sent.method == "OPTIONS"
            await until(lambda: bool(core.transport_errors), timeout_s=10)
            assert core.transport_errors == [Address("no-such-host.invalid", port)]
        finally:
            peer.close()
            await endpoint.close()

    run(scenario)
