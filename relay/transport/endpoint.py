"""The sockets of one SIP core: UDP, TCP and TLS listeners, outgoing connections, one timer.

Theory of operation (the seam is described in ``relay/sip/address.py``):

1. Every input (a datagram, a framed message, a framing error, a lost connection, a send
   failure, the timer) is one call into the core with ``now = loop.time()``, followed by
   :meth:`TransportEndpoint.transmit`: send what the core queued, then re-arm the single
   ``loop.call_at`` timer at ``core.get_timer()``. Code that calls into the core from outside
   (the service, on a webhook decision) calls :meth:`~TransportEndpoint.transmit` after it.
2. Routing of a queued ``(bytes, Address)``: UDP leaves from the listening socket; an Address
   with a connection id goes on that connection, and if it is gone the core hears
   ``transport_error`` (it may retry without the id, RFC 3261 §18.2.2); one without an id
   reuses a live connection to ``(transport, host, port)`` (and, for TLS, the same server name:
   ``Address.tls_name``, sent as SNI and checked in the certificate) or opens one.
3. Accepted connections are capped in all and per source IP (refused ones are aborted before
   any TLS handshake); outgoing ones count toward the total.
4. A core that raises is a bug, not the network's fault: the input is dropped, logged with its
   traceback and counted, and the listeners live on.
5. Every task (TLS upgrade, outgoing connect, DNS lookup) is owned here and cancelled by
   :meth:`~TransportEndpoint.close`, which also closes every socket before it returns.

Size: about 400 lines; the connection table lives in stream.py, TLS contexts and failure kinds
in tls.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from itertools import count
from typing import Any

from relay.sip.address import Address, SipCore, Transport
from relay.sip.errors import SipParseError
from relay.sip.syntax.message import Request, Response
from relay.transport.stream import ConnectionTable, StreamConnection, StreamLimits
from relay.transport.tls import client_context, connect_failure
from relay.transport.udp import UdpListener

__all__ = ["TransportConfig", "TransportCounters", "TransportEndpoint"]

logger = logging.getLogger("sipline.relay.transport")

_FLUSH_ROUNDS = 8  # transport errors may make the core queue more; bound a misbehaving core
_CLOSE_GRACE_S = 1.0  # connections get this long to flush on close() before they are aborted


@dataclass(slots=True)
class TransportCounters:
    """Running totals of the transports (exported as metrics by the service)."""

    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    """Datagrams and framed stream messages handed to the core."""
    messages_out: int = 0
    parse_errors: int = 0
    """Stream framing/parse errors (UDP ones are parsed, and counted, by the core)."""
    pings: int = 0
    connections_accepted: int = 0
    connections_opened: int = 0
    """Outgoing connections started."""
    connections_refused: int = 0
    """Accepted connections dropped at once (over a cap), or outgoing ones not started."""
    connections_closed: int = 0
    handshake_failures: int = 0
    timeouts: int = 0
    """Connections closed by the idle timeout or a message deadline."""
    send_failures: int = 0
    core_errors: int = 0


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Where to listen and how to guard the streams; a port of ``None`` means no listener."""

    host: str = "127.0.0.1"
    udp_port: int | None = 5060
    tcp_port: int | None = 5060
    tls_port: int | None = None
    tls_server: ssl.SSLContext | None = None
    """Required with ``tls_port`` (``tls.server_context``)."""
    tls_client: ssl.SSLContext | None = None
    """For outgoing TLS; ``None`` verifies against the system store (``tls.client_context``)."""
    limits: StreamLimits = StreamLimits()


class TransportEndpoint:
    """Own the listeners, connections, tasks and timer of one :class:`SipCore`."""

    def __init__(
        self,
        core: SipCore,
        config: TransportConfig,
        *,
        after_each_call: Callable[[], None] | None = None,
    ) -> None:
        """Prepare the endpoint (inside the running loop); nothing is bound until :meth:`start`.

        Args:
            core: the sans-I/O SIP core fed by these transports.
            config: listen addresses, TLS contexts and stream limits.
            after_each_call: run after every call into the core, before sending (the
                service drains the core's events here).
        """
        self.counters = TransportCounters()
        self._core, self._config, self._after_each_call = core, config, after_each_call
        self._loop = asyncio.get_running_loop()
        self._udp: UdpListener | None = None
        self._udp_transport: asyncio.DatagramTransport | None = None
        self._servers: dict[Transport, asyncio.Server] = {}
        self._connections = ConnectionTable(config.limits)
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._ids = count(1)
        self._client_tls = config.tls_client
        self._closing = False

    @property
    def connection_count(self) -> int:
        """Return the number of open (or opening) TCP/TLS connections."""
        return len(self._connections)

    def local_address(self, transport: Transport) -> Address:
        """Return the bound address of a listener (useful with port 0)."""
        if transport is Transport.UDP:
            assert self._udp_transport is not None, "no UDP listener"
            host, port = self._udp_transport.get_extra_info("sockname")[:2]
        else:
            host, port = self._servers[transport].sockets[0].getsockname()[:2]
        return Address(host, port, transport)

    async def start(self) -> None:
        """Bind the configured listeners; on failure, release what was bound and raise."""
        config = self._config
        if config.tls_port is not None and config.tls_server is None:
            raise ValueError("tls_port is set but tls_server has no context")
        try:
            if config.udp_port is not None:
                self._udp_transport, self._udp = await self._loop.create_datagram_endpoint(
                    lambda: UdpListener(self, self.counters), (config.host, config.udp_port)
                )
            streams = ((Transport.TCP, config.tcp_port), (Transport.TLS, config.tls_port))
            for transport, port in streams:
                if port is not None:
                    self._servers[transport] = await self._loop.create_server(
                        self._factory(transport), config.host, port
                    )
        except BaseException:
            await self.close()
            raise
        self.transmit()

    async def close(self) -> None:
        """Stop listening; close every connection and socket; cancel every task."""
        if self._closing:
            return
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        for server in self._servers.values():
            server.close()
        if self._udp is not None:
            self._udp.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._close_connections()
        for server in self._servers.values():
            await server.wait_closed()
        if self._udp is not None:
            await self._udp.lost

    def transmit(self) -> None:
        """Send what the core queued and re-arm the timer (after any call into the core)."""
        if self._closing:
            return
        for _ in range(_FLUSH_ROUNDS):
            datagrams = self._core.datagrams_to_send()
            if not datagrams:
                break
            for data, destination in datagrams:
                self._send(data, destination)
        else:
            logger.warning("core still queueing after %d rounds of send errors", _FLUSH_ROUNDS)
        self._rearm()

    # owner callbacks: UdpListener and StreamConnection

    def datagram_received(self, data: bytes, source: Address) -> None:
        """Give a datagram to the core."""
        self.counters.messages_in += 1
        self._call_core(lambda now: self._core.receive_datagram(data, source, now))

    def message_received(self, message: Request | Response, source: Address) -> None:
        """Give a framed stream message to the core."""
        self.counters.messages_in += 1
        self._call_core(lambda now: self._core.receive_message(message, source, now))

    def parse_error(self, error: SipParseError, source: Address) -> None:
        """Give a stream framing/parse error to the core (it may queue a 400/413/513)."""
        self._call_core(lambda now: self._core.receive_parse_error(error, source, now))

    def admit(self, connection: StreamConnection) -> bool:
        """Register an accepted connection unless a cap is reached."""
        host = connection.peer.host
        if self._closing or not self._connections.has_room(host):
            self.counters.connections_refused += 1
            logger.info("refused a %s connection from %s", connection.transport_kind, host)
            return False
        self._connections.add(connection)
        self.counters.connections_accepted += 1
        return True

    def start_tls(self, connection: StreamConnection, raw: asyncio.Transport) -> None:
        """Run the server-side TLS handshake of an admitted connection."""
        self._spawn(self._upgrade(connection, raw))

    def forget(self, connection: StreamConnection) -> None:
        """Deregister a closed connection; tell the core if it ever carried messages."""
        if not self._connections.remove(connection):
            return
        self.counters.connections_closed += 1
        if connection.attached:
            self._call_core(lambda now: self._core.connection_lost(connection.id, now))

    # calling the core

    def _call_core(self, call: Callable[[float], None]) -> None:
        # A task root in effect: every protocol callback ends here, and an exception escaping
        # into asyncio would close the UDP socket or the connection it came from.
        if self._closing:
            return
        try:
            call(self._loop.time())
            if self._after_each_call is not None:
                self._after_each_call()
        except Exception:
            self.counters.core_errors += 1
            logger.exception("the SIP core (or after_each_call) failed on an input; dropped")
        try:
            self.transmit()
        except Exception:
            self.counters.core_errors += 1
            logger.exception("the SIP core failed while transmitting")

    def _rearm(self) -> None:
        when = self._core.get_timer()
        if self._timer is not None and self._timer.when() != when:
            self._timer.cancel()
            self._timer = None
        if when is not None and self._timer is None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._call_core(self._core.handle_timer)

    # sending

    def _send(self, data: bytes, destination: Address) -> None:
        if self._route(data, destination):
            self.counters.messages_out += 1
            return
        self.counters.send_failures += 1
        logger.debug("cannot send to %s", destination)
        self._core.transport_error(destination, self._loop.time())

    def _route(self, data: bytes, destination: Address) -> bool:
        if destination.transport is Transport.UDP:
            if self._udp is None:
                return False
            host = _socket_host(destination)
            if _is_ip(host):
                return self._udp.send(data, host, destination.port)
            self._spawn(self._resolve_and_send(data, destination))
            return True
        connection = self._connection_to(destination)
        return connection is not None and connection.write(data)

    def _connection_to(self, destination: Address) -> StreamConnection | None:
        if destination.connection_id is not None:
            return self._connections.get(destination.connection_id)
        connection = self._connections.to_peer(destination)
        return connection if connection is not None else self._open(destination)

    def _open(self, destination: Address) -> StreamConnection | None:
        if not self._connections.has_room():
            self.counters.connections_refused += 1
            return None
        connection_id = next(self._ids)
        peer = replace(destination, connection_id=connection_id)
        connection = StreamConnection(
            self,
            destination.transport,
            connection_id,
            self._config.limits,
            self.counters,
            peer=peer,
        )
        self._connections.add(connection)
        self.counters.connections_opened += 1
        self._spawn(self._connect(connection, destination))
        return connection

    def _factory(self, transport: Transport) -> Callable[[], StreamConnection]:
        limits = self._config.limits
        return lambda: StreamConnection(self, transport, next(self._ids), limits, self.counters)

    # tasks

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("transport task failed", exc_info=error)

    async def _upgrade(self, connection: StreamConnection, raw: asyncio.Transport) -> None:
        assert self._config.tls_server is not None
        secured: asyncio.Transport | None = None
        try:
            secured = await self._loop.start_tls(
                raw,
                connection,
                self._config.tls_server,
                server_side=True,
                ssl_handshake_timeout=self._config.limits.tls_handshake_timeout_s,
            )
        except OSError as exc:  # ssl.SSLError, resets, the handshake timeout
            self.counters.handshake_failures += 1
            logger.debug("TLS handshake with %s failed: %s", connection.peer, exc)
        finally:
            if secured is None:  # failed, timed out, peer gone or cancelled: raw is closed
                self.forget(connection)
        if secured is not None:
            connection.attach(secured)

    async def _connect(self, connection: StreamConnection, destination: Address) -> None:
        tls = destination.transport is Transport.TLS  # SNI and certificate check: its tls_name
        context, name = (self._tls_client(), destination.tls_name) if tls else (None, None)
        try:
            async with asyncio.timeout(self._config.limits.connect_timeout_s):
                await self._loop.create_connection(
                    lambda: connection, _socket_host(destination), destination.port,
                    ssl=context, server_hostname=name,
                )  # fmt: skip
        except OSError as exc:  # refused, unreachable, TLS verification, TimeoutError
            failure = connect_failure(exc)
            logger.info("connection to %s failed (%s): %s", destination, failure, exc)
            self.forget(connection)
            self._call_core(lambda now: self._core.transport_error(destination, now, failure))
        except asyncio.CancelledError:
            self.forget(connection)
            raise

    async def _resolve_and_send(self, data: bytes, destination: Address) -> None:
        assert self._udp is not None
        try:
            infos = await self._loop.getaddrinfo(
                destination.host, destination.port, family=self._udp.family, type=socket.SOCK_DGRAM
            )
            sent = self._udp.send(data, str(infos[0][4][0]), destination.port)
        except OSError as exc:
            logger.info("cannot resolve %s: %s", destination.host, exc)
            sent = False
        if not sent:
            self.counters.send_failures += 1
            self._call_core(lambda now: self._core.transport_error(destination, now))

    def _tls_client(self) -> ssl.SSLContext:
        if self._client_tls is None:
            self._client_tls = client_context()
        return self._client_tls

    async def _close_connections(self) -> None:
        connections = list(self._connections)
        for connection in connections:
            connection.close()
        lost = [connection.lost for connection in connections]
        if not lost:
            return
        await asyncio.wait(lost, timeout=_CLOSE_GRACE_S)
        for connection in connections:
            connection.abort()
        await asyncio.wait(lost, timeout=_CLOSE_GRACE_S)


def _socket_host(address: Address) -> str:
    """Return the host as sockets take it: an IPv6 reference loses its brackets (RFC 3261 §25.1)."""
    return address.host.removeprefix("[").removesuffix("]")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
