"""RTP port pairs for calls: an allocator over the configured range, and one UDP socket each side.

Theory of operation:

1. :class:`RtpPortAllocator` hands out even RTP ports of ``[port_min, port_max]``, RTCP on the
   odd port above (RFC 3550 §11). Free pairs wait in a round robin: a released pair goes to the
   back, so a late packet of an ended call is unlikely to reach the next call on the same port.
   A pair another process holds is skipped (and tried again later); when no pair can be bound,
   :class:`RtpPortsExhausted`: the call gets 503 with ``Retry-After`` (``docs/relay.md``).
2. :class:`RtpSocket` is one bound UDP socket: each datagram goes to a callback with its source,
   sends go out unless the socket is closing, ICMP errors are counted (UDP cannot say for whom),
   and ``lost`` resolves once the socket is closed, so a session can wait for its ports to be
   free before it gives them back.

``relay.transport.rtp_session.RtpSession`` opens a pair through the allocator and drives the
call's media core from the two sockets' callbacks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

__all__ = ["RtpPortAllocator", "RtpPortsExhausted", "RtpSocket"]

logger = logging.getLogger("sipline.relay.media")


class RtpPortsExhausted(RuntimeError):
    """Every port pair of the range is in use (or held by another process)."""


class RtpPortAllocator:
    """Hand out even RTP ports of a range, RTCP on the odd port above (RFC 3550 §11)."""

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        """Serve pairs within ``[port_min, port_max]`` on ``host``.

        Raises:
            ValueError: the range holds no even port with its odd neighbour.
        """
        ports = range(port_min + port_min % 2, port_max, 2)
        if not ports:
            raise ValueError(f"RTP port range {port_min}-{port_max} holds no even/odd pair")
        self.host = host
        # Round robin: a released pair goes to the back, so a late packet of an ended call
        # is unlikely to reach the next call on the same port.
        self._free = deque(ports)
        self._in_use: set[int] = set()

    @property
    def available(self) -> int:
        """Return how many pairs are free."""
        return len(self._free)

    async def bind(
        self, protocols: Callable[[], tuple[RtpSocket, RtpSocket]]
    ) -> tuple[int, RtpSocket, RtpSocket]:
        """Bind the next free pair; return the RTP port and the two connected protocols.

        Raises:
            RtpPortsExhausted: no pair could be bound.
        """
        loop = asyncio.get_running_loop()
        for _ in range(len(self._free)):
            port = self._free.popleft()
            rtp, rtcp = protocols()
            try:
                await loop.create_datagram_endpoint(partial(_same, rtp), (self.host, port))
                await loop.create_datagram_endpoint(partial(_same, rtcp), (self.host, port + 1))
            except OSError:  # taken by another process: try the next pair
                await rtp.close()
                self._free.append(port)
                continue
            self._in_use.add(port)
            return port, rtp, rtcp
        raise RtpPortsExhausted(f"no free RTP port pair on {self.host}")

    def release(self, port: int) -> None:
        """Give a pair back once its sockets are closed."""
        if port in self._in_use:
            self._in_use.remove(port)
            self._free.append(port)


def _same(protocol: RtpSocket) -> RtpSocket:
    return protocol


class RtpSocket(asyncio.DatagramProtocol):
    """One UDP socket: datagrams to a callback, sends, a future that resolves once closed."""

    def __init__(self, received: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._received = received
        self._transport: asyncio.DatagramTransport | None = None
        self.send_errors = 0
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._received(data, (str(addr[0]), addr[1]))

    def error_received(self, exc: Exception) -> None:
        self.send_errors += 1  # ICMP port unreachable and the like: UDP says no more
        logger.debug("RTP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.lost.done():
            self.lost.set_result(None)

    def send(self, data: bytes, destination: tuple[str, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, destination)

    async def close(self) -> None:
        if self._transport is None:
            if not self.lost.done():
                self.lost.set_result(None)
        else:
            self._transport.close()
        await self.lost
