"""Where a SIP message came from or goes to, and the seam between the sans-I/O core and sockets.

The transports (``relay/transport/``) own sockets and stream framing; the core (the endpoint in
``relay/sip/endpoint.py``) owns everything else. They meet here:

1. A UDP datagram goes in whole: ``core.receive_datagram(data, source, now)``; the core parses it,
   answers a parseable bad request with a stateless 400, and drops (and counts) the rest.
2. A TCP/TLS stream is framed by the transport with ``parser.StreamFramer``; each complete message
   goes in with ``core.receive_message(message, source, now)``, each framing error with
   ``core.receive_parse_error(error, source, now)``. Keepalive pings are answered by the transport.
3. ``source.connection_id`` names the stream a message arrived on; responses to it leave on the
   same connection while it lives (RFC 3261 §18.2.2). ``core.connection_lost(id, now)`` reports a
   closed stream.
4. After every call in, the transport drains ``core.datagrams_to_send()`` and sends each
   ``(bytes, Address)``; an Address with a connection id goes on that connection, one without
   opens (or reuses) a connection to ``host:port`` for TCP/TLS. A failed send is reported with
   ``core.transport_error(address, now, failure)``, ``failure`` saying whether the peer could
   not be reached or its TLS certificate did not prove the name wanted. Then it re-arms one
   timer at ``core.get_timer()`` and calls ``core.handle_timer(now)`` when it fires.
5. A TLS destination names the server it must reach (RFC 5922 §4; RFC 3261 §26.3.1): its
   ``server_name``, else its host. The transport sends that name as SNI, checks the server's
   certificate for it (a DNS name against the DNS names, an IP address against the IP
   addresses of its subjectAltName), and reuses an open TLS connection only for a destination
   naming the same server at the same address, port included.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from chalicelib.contracts import Transport as Transport  # defined there: the webhook carries it
from relay.sip.errors import SipParseError
from relay.sip.syntax.message import Request, Response


@dataclass(frozen=True, slots=True)
class Address:
    """A peer's address as the transport layer sees it."""

    host: str
    port: int
    transport: Transport = Transport.UDP
    connection_id: int | None = None
    """The stream a message arrived on (TCP/TLS), so that responses leave on it."""
    server_name: str | None = None
    """TLS only: the name the server must prove, when it is not ``host`` (rule 5): the domain
    of the URI that was located (``relay/sip/locate.py``), while ``host`` is the address found
    for it."""

    @property
    def tls_name(self) -> str:
        """Return the name a TLS server at this address must prove: ``server_name``, else the
        host (an IPv6 reference without its brackets), lower-cased."""
        name = self.server_name or self.host.removeprefix("[").removesuffix("]")
        return name.rstrip(".").lower()


class TransportFailure(StrEnum):
    """Why a message could not be sent (``SipCore.transport_error``)."""

    UNREACHABLE = "unreachable"
    """No connection: refused, reset, timed out, no address, or a TLS handshake that failed
    for another reason than the certificate."""
    TLS_UNVERIFIED = "tls_unverified"
    """The TLS server's certificate is not trusted, or does not name the server wanted."""


class SipCore(Protocol):
    """What the transports call; implemented by the sans-I/O endpoint."""

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None: ...

    def receive_message(self, message: Request | Response, source: Address, now: float) -> None: ...

    def receive_parse_error(self, error: SipParseError, source: Address, now: float) -> None: ...

    def connection_lost(self, connection_id: int, now: float) -> None: ...

    def transport_error(
        self,
        destination: Address,
        now: float,
        failure: TransportFailure = TransportFailure.UNREACHABLE,
    ) -> None: ...

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...
