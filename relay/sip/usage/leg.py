"""One call leg's means of speaking: answering in and sending within its dialog.

Theory of operation:

1. A :class:`Leg` joins a :class:`~relay.sip.dialog.Dialog` to the transaction layer. Usages
   (``invite_session``, ``reinvite``) call it to answer requests and to send requests within
   the dialog; it adds what RFC 3261 asks of every such message: our To tag (§8.2.6.2),
   ``Contact`` and the copied ``Record-Route`` on dialog-creating responses (§12.1.1),
   ``Allow`` and ``Supported`` on 2xx to INVITE (§13.3.1.4), ``Server`` / ``User-Agent``.
2. :class:`UnacknowledgedAnswer` is a 2xx to an INVITE that the TU resends until its ACK:
   T1, doubling up to T2, for 64*T1 whatever the transport (RFC 3261 §13.3.1.4; RFC 6026
   leaves the retransmission to the TU). The initial INVITE and every re-INVITE use it.
3. :class:`UserAgentSettings` says what this UA does: the methods it allows, the option tags
   it supports, what it accepts, its session timer policy.
4. The endpoint makes legs (``SipEndpoint.new_leg``) and gives each its ``touch``: a usage
   that changed outside the endpoint's dispatch (the application accepted, hung up...) calls
   ``leg.touch(usage)`` so that the endpoint re-arms or forgets it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from relay.ids import IdSource
from relay.sip.address import Address, Transport
from relay.sip.dialog import Dialog
from relay.sip.syntax.message import Request, Response, make_response
from relay.sip.syntax.uri import NameAddr, SipUri
from relay.sip.transaction.layer import (
    ClientTransaction,
    ServerTransaction,
    TransactionLayer,
    Usage,
)
from relay.sip.transaction.timers import Timers
from relay.sip.usage.session_timer import SessionTimerPolicy

__all__ = [
    "ALLOWED_METHODS",
    "ACCEPTED_BODIES",
    "SUPPORTED_OPTIONS",
    "Leg",
    "UnacknowledgedAnswer",
    "UserAgentSettings",
    "local_contact",
]

ALLOWED_METHODS = (
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY"
)  # fmt: skip
SUPPORTED_OPTIONS = ("timer",)  # RFC 4028
ACCEPTED_BODIES = (
    "application/sdp", "application/dtmf-relay", "application/dtmf", "message/sipfrag"
)  # fmt: skip
SDP = "application/sdp"


@dataclass(frozen=True, slots=True)
class UserAgentSettings:
    """What this user agent says about itself and how it times sessions."""

    user_agent: str
    allow: tuple[str, ...] = ALLOWED_METHODS
    supported: tuple[str, ...] = SUPPORTED_OPTIONS
    accept: tuple[str, ...] = ACCEPTED_BODIES
    session_timer: SessionTimerPolicy = field(default_factory=SessionTimerPolicy)

    @property
    def capability_headers(self) -> tuple[tuple[str, str], ...]:
        """``Allow``, ``Supported``: what a 2xx to INVITE and OPTIONS carry (§13.3.1.4, §11.2)."""
        return (("Allow", ", ".join(self.allow)), ("Supported", ", ".join(self.supported)))


def local_contact(local: Address, *, sips: bool = False) -> NameAddr:
    """Return our Contact for a dialog on ``local``'s transport (RFC 3261 §8.1.1.8)."""
    params: tuple[tuple[str, str | None], ...] = ()
    if local.transport is not Transport.UDP and not sips:
        params = (("transport", local.transport.value),)
    uri = SipUri(scheme="sips" if sips else "sip", host=local.host, port=local.port, params=params)
    return NameAddr(uri=uri)


class Leg:
    """Answer and send within one dialog (rule 1)."""

    def __init__(
        self,
        dialog: Dialog,
        *,
        layer: TransactionLayer,
        ids: IdSource,
        timers: Timers,
        settings: UserAgentSettings,
        touch: Callable[[Usage], None],
    ) -> None:
        self.dialog = dialog
        self.layer = layer
        self.ids = ids
        self.timers = timers
        self.settings = settings
        self.touch = touch
        """Ask the endpoint to re-arm a usage that changed outside its dispatch (rule 4)."""

    def respond(
        self,
        tx: ServerTransaction,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        sdp: bytes = b"",
    ) -> Response:
        """Answer ``tx``'s request and return the response sent."""
        request = tx.request
        fields: list[tuple[str, str]] = []
        if status > 100 and request.method == "INVITE" and status < 300:
            fields.extend(("Record-Route", rr) for rr in request.headers.get_all("Record-Route"))
            fields.append(("Contact", str(self.dialog.local_contact)))
        if 200 <= status < 300 and request.method in ("INVITE", "UPDATE", "OPTIONS"):
            fields.extend(self.settings.capability_headers)
        fields.append(("Server", self.settings.user_agent))
        fields.extend(headers)
        if sdp:
            fields.append(("Content-Type", SDP))
        to_tag = None if status == 100 else self.dialog.id.local_tag
        response = make_response(
            request, status, reason, to_tag=to_tag, extra_headers=fields, body=sdp
        )
        self.layer.send_response(tx, response, now)
        return response

    def _request(
        self,
        method: str,
        cseq: int,
        headers: Iterable[tuple[str, str]],
        sdp: bytes,
        content_type: str = SDP,
    ) -> tuple[Request, Address]:
        destination = self.dialog.destination()
        fields = [("User-Agent", self.settings.user_agent), *headers]
        request = self.dialog.build_request(
            method,
            via=self.layer.new_via(destination.transport),
            cseq=cseq,
            extra_headers=fields,
            body=sdp,
            content_type=content_type if sdp else None,
        )
        return request, destination

    def send(
        self,
        method: str,
        now: float,
        *,
        owner: Usage,
        headers: Iterable[tuple[str, str]] = (),
        sdp: bytes = b"",
        content_type: str = SDP,
    ) -> ClientTransaction:
        """Send a new request within the dialog in a client transaction (§12.2.1.1).

        ``sdp`` is the body, of ``content_type`` (another type for INFO, RFC 6086).

        Raises:
            RemoteProtocolError: the dialog's next hop is not routable.
        """
        cseq = self.dialog.next_cseq(self.ids)
        request, destination = self._request(method, cseq, headers, sdp, content_type)
        return self.layer.send_request(request, destination, now, owner=owner)

    def send_ack(self, cseq: int, *, sdp: bytes = b"") -> tuple[Request, Address]:
        """Send the ACK for a 2xx to our INVITE numbered ``cseq`` (§13.2.2.4) and return it."""
        request, destination = self._request("ACK", cseq, (), sdp)
        self.layer.send_stateless(request, destination)
        return request, destination


@dataclass(slots=True)
class UnacknowledgedAnswer:
    """A 2xx to an INVITE, resent until its ACK arrives (rule 2, RFC 3261 §13.3.1.4)."""

    tx: ServerTransaction
    response: Response
    interval_s: float
    next_at: float
    give_up_at: float

    @classmethod
    def start(
        cls, tx: ServerTransaction, response: Response, timers: Timers, now: float
    ) -> UnacknowledgedAnswer:
        """Begin retransmitting ``response``, sent at ``now``."""
        return cls(tx, response, timers.T1, now + timers.T1, now + 64 * timers.T1)

    @property
    def cseq(self) -> int:
        """The CSeq number its ACK carries."""
        return self.response.cseq.number

    def deadline(self) -> float:
        """Return the next retransmission or the give-up time, whichever is first."""
        return min(self.next_at, self.give_up_at)

    def retransmit_if_due(self, layer: TransactionLayer, timers: Timers, now: float) -> None:
        """Resend the 2xx when its interval has run out, doubling the interval up to T2."""
        if self.next_at > now or self.give_up_at <= now:
            return
        layer.send_response(self.tx, self.response, now)
        self.interval_s = min(2 * self.interval_s, timers.T2)
        self.next_at = now + self.interval_s

    def given_up(self, now: float) -> bool:
        """Return whether 64*T1 have passed without an ACK."""
        return self.give_up_at <= now
