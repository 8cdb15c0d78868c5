"""The UDP transport: one ``DatagramProtocol`` per listening socket, datagrams in whole.

A datagram goes to the owner (and from it to ``core.receive_datagram``) untouched: parsing,
keep-alive CRLFs and stateless 400s are the core's business (RFC 3261 §18.3). Sends leave from
the listening socket, so that a peer's replies and our responses share one port (RFC 3581).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Protocol, cast

from relay.sip.address import Address, Transport

if TYPE_CHECKING:
    from relay.transport.endpoint import TransportCounters

__all__ = ["DatagramOwner", "UdpListener"]

logger = logging.getLogger("sipline.relay.transport")


class DatagramOwner(Protocol):
    """What the listener calls: the endpoint that owns it."""

    def datagram_received(self, data: bytes, source: Address) -> None:
        """Hand a datagram to the core."""
        ...


class UdpListener(asyncio.DatagramProtocol):
    """The SIP UDP socket: receives for the core, sends what the core queues."""

    def __init__(self, owner: DatagramOwner, counters: TransportCounters) -> None:
        """Create the protocol; ``loop.create_datagram_endpoint`` connects it."""
        self._owner, self._counters = owner, counters
        self._transport: asyncio.DatagramTransport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def family(self) -> socket.AddressFamily:
        """Return the socket's address family (what a DNS lookup for it must return)."""
        sock = None if self._transport is None else self._transport.get_extra_info("socket")
        return socket.AF_INET if sock is None else sock.family

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to send on."""
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        """Pass one datagram to the owner with its source address."""
        self._counters.bytes_in += len(data)
        self._owner.datagram_received(data, Address(str(addr[0]), addr[1], Transport.UDP))

    def error_received(self, exc: Exception) -> None:
        """Count an asynchronous send error (ICMP unreachable...): UDP cannot say for whom."""
        self._counters.send_failures += 1
        logger.debug("UDP error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        """Mark the socket closed."""
        self._transport = None
        if not self.lost.done():
            self.lost.set_result(None)

    def send(self, data: bytes, host: str, port: int) -> bool:
        """Send one datagram to an IP literal; return False when the socket is gone."""
        if self._transport is None or self._transport.is_closing():
            return False
        self._transport.sendto(data, (host, port))
        self._counters.bytes_out += len(data)
        return True

    def close(self) -> None:
        """Close the socket (``lost`` resolves once it is closed)."""
        if self._transport is not None:
            self._transport.close()
