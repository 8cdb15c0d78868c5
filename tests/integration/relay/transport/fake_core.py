"""A stand-in for the SIP core behind the transports, and helpers for socket tests on 127.0.0.1.

:class:`FakeCore` implements ``relay.sip.address.SipCore``: it records every call, answers each
request (but ACK) with a 200 on the connection or address it came from, answers parse errors
with ``message.error_response`` as the real core does, and sends whatever a test queues.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from relay.sip.address import Address, TransportFailure
from relay.sip.errors import SipParseError
from relay.sip.syntax.message import Request, Response, error_response, make_response
from relay.sip.syntax.parser import parse_message
from relay.transport.endpoint import TransportConfig, TransportEndpoint
from relay.transport.stream import StreamLimits

SCENARIO_TIMEOUT_S = 30.0


@dataclass
class FakeCore:
    """Record what the transports hand over; queue answers and test-made datagrams."""

    auto_answer: bool = True
    fail_on_datagram: bool = False
    received: list[tuple[Request | Response, Address]] = field(default_factory=list)
    datagrams: int = 0
    parse_errors: list[tuple[SipParseError, Address]] = field(default_factory=list)
    lost_connections: list[int] = field(default_factory=list)
    transport_errors: list[Address] = field(default_factory=list)
    transport_failures: list[TransportFailure] = field(default_factory=list)
    timer_at: float | None = None
    timer_fired_at: list[float] = field(default_factory=list)
    outbox: list[tuple[bytes, Address]] = field(default_factory=list)

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        self.datagrams += 1
        if self.fail_on_datagram:
            raise RuntimeError("a core bug")
        try:
            message = parse_message(data)
        except SipParseError as err:
            self.receive_parse_error(err, source, now)
            return
        self.receive_message(message, source, now)

    def receive_message(self, message: Request | Response, source: Address, now: float) -> None:
        self.received.append((message, source))
        if self.auto_answer and isinstance(message, Request) and message.method != "ACK":
            try:
                answer = make_response(message, 200, to_tag="uas")
            except SipParseError:  # a To that frames but does not parse: the core drops it
                return
            self.outbox.append((bytes(answer), source))

    def receive_parse_error(self, error: SipParseError, source: Address, now: float) -> None:
        self.parse_errors.append((error, source))
        reply = error_response(error, to_tag="uas")
        if reply is not None:
            self.outbox.append((bytes(reply), source))

    def connection_lost(self, connection_id: int, now: float) -> None:
        self.lost_connections.append(connection_id)

    def transport_error(
        self,
        destination: Address,
        now: float,
        failure: TransportFailure = TransportFailure.UNREACHABLE,
    ) -> None:
        self.transport_errors.append(destination)
        self.transport_failures.append(failure)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return self.timer_at

    def handle_timer(self, now: float) -> None:
        if self.timer_at is not None and now >= self.timer_at:
            self.timer_fired_at.append(now)
            self.timer_at = None


def request(
    method: str = "OPTIONS",
    *,
    call_id: str = "a84b4c76e66710",
    branch: str = "z9hG4bK776asdhds",
    body: bytes = b"",
    content_length: int | None = None,
    transport: str = "UDP",
) -> bytes:
    """Return a request as wire bytes (RFC 3261 §24.2 style), optionally lying about its length."""
    length = len(body) if content_length is None else content_length
    extra = "Content-Type: application/sdp\r\n" if body else ""
    head = (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} pc33.example.com;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "To: Bob <sip:bob@example.com>\r\n"
        "From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 314159 {method}\r\n"
        "Contact: <sip:alice@pc33.example.com>\r\n"
        f"{extra}Content-Length: {length}\r\n\r\n"
    )
    return head.encode() + body


SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\n"
    b"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def config(**limits: Any) -> TransportConfig:
    """Return a config listening on ephemeral 127.0.0.1 ports with the given stream limits."""
    return TransportConfig(host="127.0.0.1", udp_port=0, tcp_port=0, limits=StreamLimits(**limits))


def run(scenario: Callable[[], Awaitable[None]], timeout_s: float = SCENARIO_TIMEOUT_S) -> None:
    """Run an async scenario in a fresh loop, bounded by ``timeout_s``."""

    async def bounded() -> None:
        await asyncio.wait_for(scenario(), timeout_s)

    asyncio.run(bounded())


async def until(predicate: Callable[[], bool], timeout_s: float = 3.0) -> None:
    """Wait until ``predicate()`` holds, polling the loop; fail after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


def open_fds() -> frozenset[tuple[int, str]]:
    """Return this process's file descriptors, each with the object it refers to.

    The object (``socket:[inode]``, a path) tells a descriptor apart from a later one that
    reuses its number. Compare snapshots with :func:`opened_since`, never by count: other
    threads of the test process (one left by an earlier test, such as a relay's SQS long poll
    that outlives its consumer, see relay/control/commands.py) close theirs at any moment.
    """
    snapshot = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            snapshot.add((int(name), os.readlink(f"/proc/self/fd/{name}")))
        except FileNotFoundError:  # closed since the listing (the listing's own fd, for one)
            continue
    return frozenset(snapshot)


def opened_since(before: frozenset[tuple[int, str]]) -> set[tuple[int, str]]:
    """Return the descriptors open now that were not open in the snapshot ``before``."""
    return set(open_fds() - before)


async def started(core: FakeCore, endpoint_config: TransportConfig) -> TransportEndpoint:
    """Return a started endpoint around ``core``."""
    endpoint = TransportEndpoint(core, endpoint_config)
    await endpoint.start()
    return endpoint


class UdpClient(asyncio.DatagramProtocol):
    """A UDP peer that collects what it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.received.put_nowait(data)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Read until the server closes (EOF or reset) and return everything read."""
    data = bytearray()
    try:
        while chunk := await reader.read(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return bytes(data)
