"""Hostile input at the sockets: 10,000 random byte strings at UDP and at TCP, then a clean close.

The strings come from a seeded generator (reproducible, bounded in size): a third raw random
bytes, the rest valid messages mangled (bytes flipped, inserted, deleted; cut short; CRLFs and
huge Content-Lengths spliced in), so that the framer and parser see deep paths, not only
garbage. The endpoint must not crash, must keep serving, and must leave no task or fd behind.
"""

from __future__ import annotations

import asyncio
import random

from relay.sip.address import Transport
from relay.sip.syntax.message import Response
from relay.sip.syntax.parser import StreamFramer
from relay.transport.endpoint import TransportEndpoint
from tests.integration.relay.transport.fake_core import (
    SDP,
    FakeCore,
    UdpClient,
    config,
    open_fds,
    opened_since,
    read_until_closed,
    request,
    run,
    started,
    until,
)

BARRAGE_SIZE = 10_000
SEED = 3261
_SEEDS = (
    request("OPTIONS"),
    request("INVITE", body=SDP, transport="TCP"),
    request("ACK"),
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
    b"To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
)
_SPLICES = (b"\r\n", b"\r\n\r\n", b"\r\n ", b":", b"\x00", b"Content-Length: 99999999\r\n", b"\xff")


def barrage(rng: random.Random, size: int = BARRAGE_SIZE) -> list[bytes]:
    """Return ``size`` hostile byte strings, each at most ~3 KB."""
    return [_hostile(rng) for _ in range(size)]


def _hostile(rng: random.Random) -> bytes:
    if rng.random() < 1 / 3:
        return rng.randbytes(rng.randint(0, 1500))
    data = bytearray(rng.choice(_SEEDS))
    for _ in range(rng.randint(1, 8)):
        position = rng.randint(0, len(data))
        operation = rng.randrange(4)
        if operation == 0 and data:
            data[min(position, len(data) - 1)] = rng.randrange(256)
        elif operation == 1:
            data[position:position] = rng.choice(_SPLICES)
        elif operation == 2:
            del data[position : position + rng.randint(1, 40)]
        else:
            del data[position:]
    return bytes(data)


async def _udp_barrage(endpoint: TransportEndpoint, core: FakeCore, strings: list[bytes]) -> int:
    """Send the strings as datagrams in batches, waiting for each batch to be processed."""
    strings = [data for data in strings if data]  # asyncio's sendto() skips an empty datagram
    server = endpoint.local_address(Transport.UDP)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        UdpClient, local_addr=("127.0.0.1", 0), remote_addr=(server.host, server.port)
    )
    try:
        for start in range(0, len(strings), 50):
            batch = strings[start : start + 50]
            for data in batch:
                transport.sendto(data)
            await until(lambda start=start, batch=batch: core.datagrams >= start + len(batch))
    finally:
        transport.close()
    return len(strings)


async def _tcp_barrage(endpoint: TransportEndpoint, strings: list[bytes]) -> int:
    """Write the strings down TCP connections, reconnecting whenever the endpoint hangs up."""
    server, connections = endpoint.local_address(Transport.TCP), 0
    pending = list(reversed(strings))
    while pending:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        connections += 1
        closed = asyncio.ensure_future(read_until_closed(reader))
        try:
            while pending and not closed.done():
                writer.write(pending.pop())
                await writer.drain()
                await asyncio.sleep(0)
        except ConnectionError:
            pass
        finally:
            writer.close()
            await asyncio.wait_for(closed, 5)
    return connections


async def _still_serves(endpoint: TransportEndpoint) -> None:
    server = endpoint.local_address(Transport.UDP)
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        UdpClient, local_addr=("127.0.0.1", 0), remote_addr=(server.host, server.port)
    )
    transport.sendto(request("OPTIONS", branch="z9hG4bKafter"))
    while b"z9hG4bKafter" not in (reply := await asyncio.wait_for(client.received.get(), 2)):
        pass
    assert reply.startswith(b"SIP/2.0 200 OK")
    transport.close()
    tcp = endpoint.local_address(Transport.TCP)
    reader, writer = await asyncio.open_connection(tcp.host, tcp.port)
    writer.write(request("OPTIONS", branch="z9hG4bKafter", transport="TCP"))
    framer = StreamFramer()
    framer.feed(await asyncio.wait_for(reader.read(65536), 2))
    (answer,) = list(framer)
    assert isinstance(answer, Response) and answer.status == 200
    writer.close()
    await writer.wait_closed()


def test_ten_thousand_hostile_strings_at_udp_and_tcp_leave_the_endpoint_serving_and_clean() -> None:
    strings = barrage(random.Random(SEED))

    async def scenario() -> None:
        tasks_before, fds_before = asyncio.all_tasks(), open_fds()
        core = FakeCore()
        endpoint = await started(core, config())
        datagrams = await _udp_barrage(endpoint, core, strings)
        connections = await _tcp_barrage(endpoint, strings)
        await _still_serves(endpoint)
        counters = endpoint.counters
        assert core.datagrams == datagrams + 1 and datagrams > 0.95 * BARRAGE_SIZE
        assert counters.core_errors == 0 and counters.parse_errors > 0
        assert counters.connections_accepted == connections + 1
        await endpoint.close()
        await asyncio.sleep(0)
        assert asyncio.all_tasks() == tasks_before
        assert opened_since(fds_before) == set()

    run(scenario, timeout_s=110)
