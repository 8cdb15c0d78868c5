"""TCP and TLS connections: one asyncio ``Protocol`` per stream, cut into messages by a framer.

Theory of operation (RFC 3261 §18.3, RFC 5626 §3.5.1):

1. Every connection has an id given by its owner (the :class:`~relay.transport.endpoint.
   TransportEndpoint`); what it frames reaches the owner with an :class:`Address` carrying that
   id, so that responses leave on the same stream (RFC 3261 §18.2.2).
2. A CRLF CRLF ping is answered here with a single CRLF pong; a pong is absorbed.
3. A framing error goes to the owner, whose core may queue a 400/413/513 for it. When the
   framer is ``broken`` the connection closes gracefully, so that reply is written first.
4. Two deadlines bound what a peer can hold: *idle* (no byte either way for
   ``idle_timeout_s``) and *message* (a message begun must be complete within
   ``message_timeout_s``: against slow-loris peers and Content-Length lies). A graceful close
   that the peer does not let finish (it stops reading) is aborted after the message deadline.
5. Server-side TLS connections arrive as plain TCP: the owner counts them against its caps
   first and only then upgrades them (``loop.start_tls``), so a refused peer costs no handshake.
6. An outgoing connection is created before it connects; writes made meanwhile are held and
   sent once it is attached.
7. :class:`ConnectionTable` finds connections by id or by peer and enforces the caps: a total
   (accepted and outgoing) and one per source IP (accepted only). A TLS peer is found by the
   server name it proved too (``Address.tls_name``): an outgoing connection checked for
   ``trunk.test`` carries nothing meant for another name at the same address, and an accepted
   one (whose client proved no name) carries no request that did not arrive on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from relay.sip.address import Address, Transport
from relay.sip.errors import SipParseError
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.parser import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    PingReceived,
    PongReceived,
    StreamFramer,
)

if TYPE_CHECKING:
    from relay.transport.endpoint import TransportCounters

__all__ = ["ConnectionTable", "StreamConnection", "StreamLimits", "StreamOwner"]

logger = logging.getLogger("sipline.relay.transport")

PONG = b"\r\n"  # RFC 5626 §3.5.1
_MAX_WRITE_BUFFER_BYTES = 1024 * 1024  # a peer that stops reading is cut off here
_PeerKey = tuple[Transport, str, int, str | None]


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Caps and deadlines of the TCP/TLS transports (the module docstring says what each bounds)."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    """Largest header section the framer buffers (513 beyond)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest Content-Length accepted on a stream (413 beyond)."""
    message_timeout_s: float = 10.0
    """Time from a message's first byte to its last."""
    idle_timeout_s: float = 180.0
    """Time without a byte in either direction before the connection is closed."""
    max_connections: int = 1024
    """Open connections in all (accepted and outgoing)."""
    max_connections_per_ip: int = 32
    """Accepted connections from one source address."""
    connect_timeout_s: float = 5.0
    """Bound on opening an outgoing connection, TLS handshake included."""
    tls_handshake_timeout_s: float = 10.0
    """Bound on the TLS handshake of an accepted connection."""


class StreamOwner(Protocol):
    """What a connection calls: the endpoint that owns it."""

    def admit(self, connection: StreamConnection) -> bool:
        """Register an accepted connection, or refuse it (over a cap)."""
        ...

    def start_tls(self, connection: StreamConnection, raw: asyncio.Transport) -> None:
        """Upgrade an admitted server-side connection, then :meth:`StreamConnection.attach`."""
        ...

    def message_received(self, message: Request | Response, source: Address) -> None:
        """Hand a framed message to the core."""
        ...

    def parse_error(self, error: SipParseError, source: Address) -> None:
        """Hand a framing or parse error to the core."""
        ...

    def forget(self, connection: StreamConnection) -> None:
        """Deregister a connection that is gone (idempotent)."""
        ...


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, accepted or outgoing."""

    def __init__(
        self,
        owner: StreamOwner,
        transport: Transport,
        connection_id: int,
        limits: StreamLimits,
        counters: TransportCounters,
        *,
        peer: Address | None = None,
    ) -> None:
        """Create the protocol; ``peer`` is given for outgoing connections only."""
        self.id = connection_id
        self.transport_kind = transport
        self.outgoing = peer is not None
        self.peer = peer if peer is not None else Address("", 0, transport, connection_id)
        self.attached = False
        self._loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[None] = self._loop.create_future()
        self._owner, self._limits, self._counters = owner, limits, counters
        self._framer = StreamFramer(
            max_header_bytes=limits.max_header_bytes, max_body_bytes=limits.max_body_bytes
        )
        self._transport: asyncio.Transport | None = None
        self._held: list[bytes] = []
        self._closing = False
        self._last_activity = self._loop.time()
        self._idle: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def closing(self) -> bool:
        """Return whether the connection is closing or closed (nothing more can be sent)."""
        transport_closing = self._transport is not None and self._transport.is_closing()
        return self._closing or transport_closing or self.lost.done()

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit an accepted connection (or attach an outgoing one)."""
        stream = cast(asyncio.Transport, transport)
        self._transport = stream
        if self.outgoing:
            self.attach(stream)
            return
        host, port = stream.get_extra_info("peername")[:2]
        self.peer = Address(host, port, self.transport_kind, self.id)
        if not self._owner.admit(self):
            self._closing = True
            stream.abort()
        elif self.transport_kind is Transport.TLS:
            stream.pause_reading()  # until start_tls: the ClientHello is the upgrade's
            self._arm_idle()
            self._owner.start_tls(self, stream)
        else:
            self.attach(stream)

    def data_received(self, data: bytes) -> None:
        """Frame the bytes; deliver messages, answer pings, close when the stream is broken."""
        self._counters.bytes_in += len(data)
        self._last_activity = self._loop.time()
        self._framer.feed(data)
        progressed = False
        while not self._closing:
            try:
                event = self._framer.next_event()
            except SipParseError as err:
                self._counters.parse_errors += 1
                self._owner.parse_error(err, self.peer)
                if self._framer.broken:
                    self.close()
                continue
            if event is None:
                break
            progressed = True
            self._deliver(event)
        self._watch_message(progressed)

    def eof_received(self) -> bool | None:
        """Let the transport close: a half-closed SIP stream has nothing more to give."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the timers and tell the owner."""
        self._closing = True
        self._cancel_timers()
        if not self.lost.done():
            self.lost.set_result(None)
        if exc is not None:
            logger.debug("connection %d to %s lost: %s", self.id, self.peer, exc)
        self._owner.forget(self)

    # used by the owner

    def attach(self, transport: asyncio.Transport) -> None:
        """Start carrying messages over ``transport`` (after TCP accept, TLS upgrade or connect)."""
        self._transport, self.attached = transport, True
        self._arm_idle()
        held, self._held = self._held, []
        for data in held:
            self.write(data)

    def write(self, data: bytes) -> bool:
        """Send bytes, or hold them until connected; return False when they cannot be sent."""
        if self.closing:
            return False
        if not self.attached:
            self._held.append(data)
            return True
        assert self._transport is not None
        if self._transport.get_write_buffer_size() > _MAX_WRITE_BUFFER_BYTES:
            logger.info("connection %d to %s stopped reading; aborting", self.id, self.peer)
            self.abort()
            return False
        self._transport.write(data)
        self._counters.bytes_out += len(data)
        self._last_activity = self._loop.time()
        return True

    def close(self) -> None:
        """Close once written data is flushed; abort if that takes past the message deadline."""
        if self._transport is None or self._closing:
            return
        self._closing = True
        self._transport.close()
        self._arm_deadline()

    def abort(self) -> None:
        """Drop the connection at once, discarding unsent data."""
        self._closing = True
        if self._transport is not None:
            self._transport.abort()
        elif not self.lost.done():  # an outgoing connection that never connected
            self.lost.set_result(None)
            self._owner.forget(self)

    # events and deadlines

    def _deliver(self, event: Request | Response | PingReceived | PongReceived) -> None:
        if isinstance(event, Request | Response):
            self._owner.message_received(event, self.peer)
        elif isinstance(event, PingReceived):
            self._counters.pings += 1
            self.write(PONG)

    def _watch_message(self, progressed: bool) -> None:
        """Time a message from its first byte: restart on progress, stop when none is pending."""
        pending = self._framer.message_begun  # "\r\n\r" may become a ping; "OPT" will not
        if self._closing:
            return
        if (progressed or not pending) and self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if pending and self._deadline is None:
            self._arm_deadline()

    def _arm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self._loop.call_later(self._limits.message_timeout_s, self._expire)

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        when = self._last_activity + self._limits.idle_timeout_s
        self._idle = self._loop.call_at(when, self._check_idle)

    def _check_idle(self) -> None:
        if self._loop.time() < self._last_activity + self._limits.idle_timeout_s:
            self._arm_idle()
            return
        logger.debug("connection %d to %s idle; closing", self.id, self.peer)
        self._counters.timeouts += 1
        self.abort()

    def _expire(self) -> None:
        logger.debug("connection %d to %s missed its message deadline", self.id, self.peer)
        self._counters.timeouts += 1
        self.abort()

    def _cancel_timers(self) -> None:
        for handle in (self._idle, self._deadline):
            if handle is not None:
                handle.cancel()
        self._idle = self._deadline = None


class ConnectionTable:
    """The live connections of an endpoint: by id, by peer, and counted per source IP."""

    def __init__(self, limits: StreamLimits) -> None:
        """Create an empty table enforcing ``limits``' connection caps."""
        self._limits = limits
        self._by_id: dict[int, StreamConnection] = {}
        self._by_peer: dict[_PeerKey, StreamConnection] = {}
        self._per_ip: Counter[str] = Counter()

    def __len__(self) -> int:
        """Return the number of connections, opening ones included."""
        return len(self._by_id)

    def __iter__(self) -> Iterator[StreamConnection]:
        """Iterate over a snapshot of the connections."""
        return iter(list(self._by_id.values()))

    def get(self, connection_id: int) -> StreamConnection | None:
        """Return the connection with this id, if it is still registered."""
        return self._by_id.get(connection_id)

    def to_peer(self, address: Address) -> StreamConnection | None:
        """Return a live connection to ``address``'s transport, host, port (and TLS name)."""
        connection = self._by_peer.get(_peer_key(address))
        return None if connection is None or connection.closing else connection

    def has_room(self, source_host: str | None = None) -> bool:
        """Return whether one more connection (accepted from ``source_host``) fits the caps."""
        if len(self._by_id) >= self._limits.max_connections:
            return False
        return (
            source_host is None or self._per_ip[source_host] < self._limits.max_connections_per_ip
        )

    def add(self, connection: StreamConnection) -> None:
        """Register a connection (an accepted one counts toward its source's cap)."""
        self._by_id[connection.id] = connection
        self._by_peer[_peer_key(connection.peer, accepted=not connection.outgoing)] = connection
        if not connection.outgoing:
            self._per_ip[connection.peer.host] += 1

    def remove(self, connection: StreamConnection) -> bool:
        """Deregister a connection; return False if it was not registered."""
        if self._by_id.pop(connection.id, None) is None:
            return False
        key = _peer_key(connection.peer, accepted=not connection.outgoing)
        if self._by_peer.get(key) is connection:
            del self._by_peer[key]
        if not connection.outgoing:
            self._per_ip[connection.peer.host] -= 1
            if self._per_ip[connection.peer.host] <= 0:
                del self._per_ip[connection.peer.host]
        return True


def _peer_key(address: Address, *, accepted: bool = False) -> _PeerKey:
    """Return transport, host, port and, for TLS, the name proved ("" for an accepted stream)."""
    name = None
    if address.transport is Transport.TLS:
        name = "" if accepted else address.tls_name
    return address.transport, address.host.removeprefix("[").removesuffix("]"), address.port, name
