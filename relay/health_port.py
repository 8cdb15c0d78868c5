"""The health port (``SIPLINE_HEALTH_PORT``): a TCP listener that is open exactly while the relay
takes new calls.

A Network Load Balancer in front of the relays (docs/deployment.md) sends new SIP flows only to
targets whose health check passes; its TCP health check passes when a connection to the port is
accepted. The port cannot be the SIP port itself: that one must keep serving the calls a draining
relay still holds (their in-dialog requests, over TCP or TLS, come to it). So the relay listens
on a port of its own:

- **closed while starting**: it opens only once the relay is ready (transports bound, control
  plane client up), so a target is not marked healthy before it can take a call;
- **open while ready**: each connection is accepted and closed at once. Nothing is read or
  written, so a client costs one accept and one close, whatever it sends; the listen backlog is
  :data:`BACKLOG`;
- **closed at the first stop signal** (``relay/drain.py``), before the drain: new connections
  are refused, the load balancer marks the target unhealthy and moves new flows away, while the
  calls in progress go on.

The container's own health check (``relay/healthcheck.py``, a SIP OPTIONS) stays healthy during
a drain: the process is fine, only new calls go elsewhere.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger("sipline.relay")

__all__ = ["BACKLOG", "HealthPort"]

BACKLOG = 64
"""Connections the kernel queues before the relay's loop accepts (and closes) them."""


class _CloseAtOnce(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()

    def data_received(self, data: bytes) -> None:  # pragma: no cover - closed before any read
        pass


class HealthPort:
    """A TCP listener on ``host:port`` that accepts and closes; :meth:`open`, :meth:`close`."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def is_open(self) -> bool:
        """Whether the port listens."""
        return self._server is not None

    async def open(self) -> None:
        """Start listening (idempotent)."""
        if self._server is None:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                _CloseAtOnce, self.host, self.port, backlog=BACKLOG, reuse_address=True
            )
            logger.info("health port %s:%d open", self.host, self.port)

    async def close(self) -> None:
        """Stop listening: new connections are refused (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
            logger.info("health port %s:%d closed", self.host, self.port)
