"""What a request's Via says to a server: stamping on receipt, where responses go.

RFC 3261 §18.2.1 and §18.2.2, RFC 3581. The transaction layer stamps every request it
receives and routes every response by these rules; the endpoint uses them for the stateless
responses it sends outside any transaction.
"""

from __future__ import annotations

from relay.sip.address import Address, Transport
from relay.sip.syntax.headers import Headers, Via, split_values

__all__ = ["DEFAULT_PORTS", "response_destination", "stamp_top_via", "transport_of"]

DEFAULT_PORTS = {Transport.UDP: 5060, Transport.TCP: 5060, Transport.TLS: 5061}  # RFC 3261 §19.1.2


def transport_of(via: Via, fallback: Transport) -> Transport:
    """Return the Via's transport, or ``fallback`` for one we do not speak (SCTP, WS)."""
    try:
        return Transport(via.transport.lower())
    except ValueError:
        return fallback


def response_destination(via: Via, source: Address) -> Address:
    """Return where responses to a request go (RFC 3261 §18.2.2, RFC 3581 §4).

    ``via`` is the stamped top Via; ``source`` the address the request came from. A request
    that came on a stream is answered on it whatever its Via says, as long as it lives.
    """
    if source.transport.reliable and source.connection_id is not None:
        return source
    transport = transport_of(via, source.transport)
    host, port = via.response_address(DEFAULT_PORTS[transport])
    return Address(host, port, transport)


def stamp_top_via(headers: Headers, source: Address) -> Headers:
    """Return ``headers`` with the top Via stamped as received from ``source`` (§18.2.1)."""
    fields = list(headers)
    for index, (name, line) in enumerate(fields):
        if name != "Via":
            continue
        values = split_values(line)
        stamped = Via.parse(values[0]).stamped(source.host, source.port)
        fields[index] = ("Via", ", ".join([str(stamped), *values[1:]]))
        return Headers(fields)
    return headers
