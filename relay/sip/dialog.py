"""Dialog state: ids, sequence numbers, route set, remote target (RFC 3261 §12).

Theory of operation
===================

1. A dialog is identified by Call-ID, local tag and remote tag (§12). For a request we
   receive, the local tag is in To and the remote tag in From; :meth:`DialogId.of_request`
   reads them so, and :meth:`DialogId.of_response` reads a response to our own request.
2. The UAS builds its dialog from the request (§12.1.1): route set = Record-Route in order,
   remote target = the request's Contact, remote sequence number = its CSeq, local sequence
   number empty until we send a request. The UAC builds its dialog from the request and the
   response (§12.1.2): route set = Record-Route reversed, remote target = the response's
   Contact, local sequence number = the request's CSeq.
3. Requests inside the dialog (§12.2.1.1): To and From carry the remote and local URIs and
   tags, CSeq is the local sequence number plus one (ACK and CANCEL reuse the INVITE's),
   and the route set decides the Request-URI: loose routing (the first route has ``lr``)
   keeps the remote target as Request-URI and sends the route set as Route; strict routing
   puts the first route in the Request-URI and appends the remote target to Route.
   The next hop is the first route, else the remote target (§8.1.2).
4. Requests received (§12.2.2): a CSeq lower than the remote sequence number is out of order
   and gets a 500; otherwise it becomes the remote sequence number. A target refresh request
   (re-INVITE, UPDATE) with a Contact replaces the remote target.
5. ``flow`` is the address the peer last sent the dialog's requests from. Without a route
   set, our requests reuse it while it is a live stream (TCP/TLS), and over UDP when the
   dialog is ``symmetric``: the INVITE came from another host than its Via and Contact both
   name, i.e. through a NAT the peer does not know of (RFC 3581's case), so the Contact is
   unreachable and only the NAT's binding reaches the peer. A peer that advertises a
   reachable Contact, or a proxy that record-routes, gets RFC 3261's routing unchanged.
6. A TLS next hop at the very address, port and transport of the flow keeps the flow's
   ``server_name``: the server that proved the domain we dialled (RFC 5922 §4) and then named
   itself by address in its Record-Route or Contact must prove that domain again, on the same
   connection or a new one. Any other next hop proves its own URI's host.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Self

from relay.ids import IdSource
from relay.sip.address import Address, Transport
from relay.sip.errors import RemoteProtocolError, SipParseError
from relay.sip.syntax.headers import Via
from relay.sip.syntax.message import Request, Response, build_request
from relay.sip.syntax.uri import AbsoluteUri, NameAddr, SipUri

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Dialog", "DialogId", "TARGET_REFRESH_METHODS", "target_address"]

TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE"})  # RFC 3261 §12.2, RFC 3311 §5.1
_INITIAL_CSEQ_BITS = 31  # RFC 3261 §8.1.1.5: "MUST be less than 2**31"
_DEFAULT_PORTS = {Transport.UDP: 5060, Transport.TCP: 5060, Transport.TLS: 5061}


@dataclass(frozen=True, slots=True)
class DialogId:
    """Call-ID plus local and remote tags (RFC 3261 §12)."""

    call_id: str
    local_tag: str
    remote_tag: str

    @classmethod
    def of_request(cls, request: Request) -> Self:
        """Return the id a received request names: local tag in To, remote in From."""
        return cls(request.call_id, request.to.tag or "", request.from_.tag or "")

    @classmethod
    def of_response(cls, response: Response) -> Self:
        """Return the id a response to our request names: local tag in From, remote in To."""
        return cls(response.call_id, response.from_.tag or "", response.to.tag or "")


def target_address(uri: SipUri | AbsoluteUri, *, fallback: Transport = Transport.UDP) -> Address:
    """Return the transport address of a SIP URI's next hop (RFC 3263 §4, without DNS).

    The ``transport`` parameter wins, then ``sips`` (TLS), then ``fallback``; ``maddr``
    overrides the host; the port defaults per transport.

    Raises:
        RemoteProtocolError: the URI is not one we can route to (``tel:``, absolute URIs).
    """
    if not isinstance(uri, SipUri) or uri.scheme == "tel" or not uri.host:
        raise RemoteProtocolError(f"cannot route to {uri}")
    named = uri.transport
    if named in ("udp", "tcp", "tls"):
        transport = Transport(named)
    elif uri.scheme == "sips":
        transport = Transport.TLS
    else:
        transport = fallback
    host = uri.param("maddr") or uri.host
    return Address(host, uri.port or _DEFAULT_PORTS[transport], transport)


@dataclass(slots=True)
class Dialog:
    """The state of one dialog (RFC 3261 §12.1); mutated as requests go and come."""

    id: DialogId
    local_uri: NameAddr
    """From of our requests (with our tag)."""
    remote_uri: NameAddr
    """To of our requests (with their tag)."""
    remote_target: SipUri | AbsoluteUri
    route_set: tuple[NameAddr, ...]
    secure: bool
    local_contact: NameAddr
    local_seq: int | None = None
    remote_seq: int | None = None
    flow: Address | None = None
    symmetric: bool = False
    """Send our requests to ``flow`` rather than the remote target (rule 5)."""

    @classmethod
    def as_uas(
        cls, request: Request, *, local_tag: str, local_contact: NameAddr, source: Address
    ) -> Self:
        """Build the dialog a UAS creates by answering ``request`` (RFC 3261 §12.1.1).

        Raises:
            RemoteProtocolError: the request has no Contact (§8.1.1.8 requires one).
        """
        if not request.contacts:
            raise RemoteProtocolError(f"Missing Contact header field in {request.method}")
        secure = (
            isinstance(request.uri, SipUri)
            and request.uri.scheme == "sips"
            and source.transport is Transport.TLS
        )
        return cls(
            id=DialogId(request.call_id, local_tag, request.from_.tag or ""),
            local_uri=request.to.with_tag(local_tag),
            remote_uri=request.from_,
            remote_target=request.contacts[0].uri,
            route_set=request.record_routes,
            secure=secure,
            local_contact=local_contact,
            remote_seq=request.cseq.number,
            flow=source,
            symmetric=_behind_nat(request, source),
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response, *, source: Address | None = None) -> Self:
        """Build the dialog a UAC gets from a 1xx-with-tag or 2xx response (RFC 3261 §12.1.2).

        Raises:
            RemoteProtocolError: the response has no Contact.
        """
        if not response.contacts:
            raise RemoteProtocolError(f"Missing Contact header field in {response.status}")
        contact = request.contacts[0] if request.contacts else NameAddr(uri=request.uri)
        return cls(
            id=DialogId.of_response(response),
            local_uri=request.from_,
            remote_uri=response.to,
            remote_target=response.contacts[0].uri,
            route_set=tuple(reversed(response.record_routes)),
            secure=isinstance(request.uri, SipUri) and request.uri.scheme == "sips",
            local_contact=contact,
            local_seq=request.cseq.number,
            flow=source,
        )

    # --- sending (§12.2.1.1) --------------------------------------------------------------

    def next_cseq(self, ids: IdSource) -> int:
        """Advance the local sequence number and return it, choosing it first if empty."""
        if self.local_seq is None:
            self.local_seq = ids.bits(_INITIAL_CSEQ_BITS - 1) + 1
        else:
            self.local_seq += 1
        return self.local_seq

    def build_request(
        self,
        method: str,
        *,
        via: Via,
        cseq: int,
        extra_headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """Build a request within the dialog (RFC 3261 §12.2.1.1).

        ``cseq`` comes from :meth:`next_cseq`, or is the INVITE's for ACK and CANCEL.
        """
        uri, routes = self._request_uri_and_routes()
        fields = [("Route", str(route)) for route in routes]
        fields.extend(extra_headers)
        return build_request(
            method,
            uri,
            via=via,
            from_=self.local_uri,
            to=self.remote_uri,
            call_id=self.id.call_id,
            cseq=cseq,
            contact=self.local_contact if method in TARGET_REFRESH_METHODS else None,
            extra_headers=fields,
            body=body,
            content_type=content_type,
        )

    def _request_uri_and_routes(self) -> tuple[SipUri | AbsoluteUri, tuple[NameAddr, ...]]:
        if not self.route_set or _is_loose(self.route_set[0]):
            return self.remote_target, self.route_set
        first = self.route_set[0].uri
        if isinstance(first, SipUri):
            first = replace(first, headers=())  # not allowed in a Request-URI (§19.1.1)
        return first, (*self.route_set[1:], NameAddr(uri=self.remote_target))

    def next_hop(self) -> SipUri | AbsoluteUri:
        """Return the URI our in-dialog requests go to first (RFC 3261 §8.1.2)."""
        return self.route_set[0].uri if self.route_set else self.remote_target

    def destination(self) -> Address:
        """Return the transport address of the next hop (rule 5 for a live stream flow).

        Raises:
            RemoteProtocolError: the next hop is not a SIP URI.
        """
        flow = self.flow
        if not self.route_set and flow is not None and self._reuses(flow):
            return flow
        fallback = flow.transport if flow is not None else Transport.UDP
        address = target_address(self.next_hop(), fallback=fallback)
        if flow is not None and flow.server_name is not None and _same_place(address, flow):
            address = replace(address, server_name=flow.server_name)  # rule 6
        return address

    def _reuses(self, flow: Address) -> bool:
        return flow.connection_id is not None or (self.symmetric and not flow.transport.reliable)

    # --- receiving (§12.2.2) --------------------------------------------------------------

    def accept_cseq(self, request: Request) -> bool:
        """Check a request's CSeq against the remote sequence number and advance it.

        Returns:
            ``False`` when the request is out of order (answer 500, §12.2.2). ACK and CANCEL
            carry their INVITE's number and are not checked.
        """
        if request.method in ("ACK", "CANCEL"):
            return True
        number = request.cseq.number
        if self.remote_seq is not None and number < self.remote_seq:
            return False
        self.remote_seq = number
        return True

    def refresh_target(self, message: Request | Response) -> None:
        """Take a new remote target from a target refresh's Contact (RFC 3261 §12.2)."""
        try:
            contacts = message.contacts
        except SipParseError:
            return  # a malformed Contact leaves the target as it was
        if contacts:
            self.remote_target = contacts[0].uri


def _same_place(one: Address, other: Address) -> bool:
    def place(address: Address) -> tuple[Transport, str, int]:
        return address.transport, address.host.strip("[]").lower(), address.port

    return place(one) == place(other)


def _behind_nat(request: Request, source: Address) -> bool:
    """Return whether the request's Via and Contact name a host it did not come from (rule 5)."""
    if request.record_routes or not request.contacts:
        return False
    via_host, contact = request.top_via.host, request.contacts[0].uri
    return isinstance(contact, SipUri) and contact.host == via_host != source.host


def _is_loose(route: NameAddr) -> bool:
    return isinstance(route.uri, SipUri) and route.uri.param("lr") is not None
