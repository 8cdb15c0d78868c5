"""Two SIP peers in memory: a minimal UAC driver and our UAS :class:`SipEndpoint`.

:class:`UacUasPair` moves every datagram between the two at an explicit ``now``: no sockets,
no sleep. Timers fire by jumping ``now`` to the next deadline of either side. The network can
``drop``, ``duplicate`` or ``delay`` (reorder) chosen datagrams, so retransmission (Timer A/E,
2xx retransmission), CANCEL races and lost ACKs are tested deterministically.

The :class:`Uac` is just enough of a caller: INVITE (with or without SDP), ACK for each 2xx
(resent for retransmitted ones), CANCEL, BYE, re-INVITE, UPDATE, INFO, OPTIONS; it answers
our BYE and our refreshes with 200. It uses the real transaction layer and dialog modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from relay.ids import SeededIdSource, new_call_id, new_tag
from relay.sip.address import Address, Transport
from relay.sip.dialog import Dialog
from relay.sip.endpoint import SipEndpoint
from relay.sip.events import Event, IncomingCallReceived
from relay.sip.sdp.description import SessionDescription
from relay.sip.sdp.offer_answer import NegotiatedMedia, NoCommonCodec, build_offer, negotiate
from relay.sip.stateless import Admission
from relay.sip.syntax.headers import Headers
from relay.sip.syntax.message import Request, Response, build_request, make_response
from relay.sip.syntax.parser import parse_message
from relay.sip.syntax.uri import NameAddr, SipUri
from relay.sip.transaction.layer import (
    ClientTransaction,
    RequestArrived,
    ResponseArrived,
    ServerTransaction,
    TransactionFailed,
    TransactionLayer,
)
from relay.sip.transaction.timers import Timers
from relay.sip.usage.incoming import IncomingCall
from relay.sip.usage.session_timer import SessionTimerPolicy
from relay.sip.usage.table import UsageStarter

UAS_HOST, UAS_PORT = "192.0.2.1", 5060
UAC_HOST, UAC_PORT = "192.0.2.10", 5062
CONNECTION_ID = 7
SDP = "application/sdp"


def uac_offer(
    *, codecs: tuple[str, ...] = ("PCMU", "PCMA"), port: int = 4000
) -> SessionDescription:
    """The caller's SDP offer."""
    return build_offer(
        preference=codecs, local_address=UAC_HOST, local_port=port, session_id=1, session_version=1
    )


class Action(Enum):
    """What the network does to one datagram."""

    DELIVER = "deliver"
    DROP = "drop"
    DUPLICATE = "duplicate"
    DELAY = "delay"
    """Hold it back until the next datagram has been delivered (a reordering)."""


@dataclass(frozen=True, slots=True)
class Datagram:
    """One message on the wire."""

    data: bytes
    source: Address
    destination: Address
    to_uas: bool

    @property
    def message(self) -> Request | Response:
        """The message, parsed."""
        return parse_message(self.data)

    @property
    def label(self) -> str:
        """``"INVITE"`` or ``"200 INVITE"``: what the datagram is, for predicates and logs."""
        message = self.message
        if isinstance(message, Request):
            return message.method
        return f"{message.status} {message.cseq.method}"


def is_(label: str, *, to_uas: bool | None = None) -> Callable[[Datagram], bool]:
    """Return a predicate matching datagrams by label (``"ACK"``, ``"200 INVITE"``...)."""
    return lambda d: d.label == label and (to_uas is None or d.to_uas is to_uas)


class Uac:
    """A minimal caller on the real transaction layer and dialog (see the module docstring)."""

    def __init__(self, local: Address, uas: Address, *, timers: Timers, seed: int) -> None:
        self.local = local
        self.uas = uas
        self.timers = timers
        self.ids = SeededIdSource(seed)
        self.layer = TransactionLayer(
            local_addresses={local.transport: local}, timers=timers, ids=self.ids
        )
        self.invite_request: Request | None = None
        self.invite_tx: ClientTransaction | None = None
        self.dialog: Dialog | None = None
        self.ack: Request | None = None
        """The ACK to the first 2xx."""
        self.acks: dict[int, Request] = {}
        """Every ACK sent, by CSeq number, to resend for a retransmitted 2xx."""
        self.state = "idle"
        self.responses: list[Response] = []
        self.requests: list[Request] = []
        self.give_up_at: float | None = None
        self.auto_answer_offer = True
        self.script: dict[str, list[tuple[int, tuple[tuple[str, str], ...]]]] = {}
        """Replies to give instead of 200, per method, first one first (e.g. 491 to INVITE)."""
        self.answer_in_ack = True
        """Answer an offer in a 2xx in the ACK (late offer); tests turn it off to misbehave."""

    # --- what tests make it do ------------------------------------------------------------

    def invite(
        self,
        now: float,
        *,
        sdp: SessionDescription | None = None,
        late_offer: bool = False,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """Send the INVITE."""
        body = b"" if late_offer else bytes(sdp or uac_offer())
        transport_param = (
            ()
            if self.local.transport is Transport.UDP
            else (("transport", self.local.transport.value),)
        )
        request = build_request(
            "INVITE",
            SipUri(user="sales", host=self.uas.host, port=self.uas.port),
            via=self.layer.new_via(self.local.transport),
            from_=NameAddr(
                uri=SipUri(user="alice", host=self.local.host), params=(("tag", new_tag(self.ids)),)
            ),
            to=NameAddr(uri=SipUri(user="sales", host=self.uas.host)),
            call_id=new_call_id(self.ids, self.local.host),
            cseq=1,
            contact=NameAddr(
                uri=SipUri(
                    user="alice", host=self.local.host, port=self.local.port, params=transport_param
                )
            ),
            extra_headers=(("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"), *headers),
            body=body,
            content_type=SDP if body else None,
        )
        self.invite_request = request
        self.invite_tx = self.layer.send_request(request, self.uas, now)
        self.state = "calling"
        self.give_up_at = now + 64 * self.timers.T1
        return request

    def cancel(self, now: float) -> Request:
        """CANCEL the INVITE (RFC 3261 §9.1)."""
        invite = self.invite_request
        assert invite is not None
        fields = [
            ("Via", str(invite.top_via)),
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("From") or ""),
            ("To", invite.headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.number} CANCEL"),
        ]
        request = Request("CANCEL", invite.uri, headers=Headers(fields))
        self.layer.send_request(request, self.uas, now)
        return request

    def send(
        self,
        method: str,
        now: float,
        *,
        sdp: SessionDescription | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        cseq: int | None = None,
    ) -> Request:
        """Send a request within the dialog (BYE, re-INVITE, UPDATE, INFO, OPTIONS...)."""
        dialog = self.dialog
        assert dialog is not None
        if sdp is not None:
            body, content_type = bytes(sdp), SDP
        destination = dialog.destination()
        request = dialog.build_request(
            method,
            via=self.layer.new_via(destination.transport),
            cseq=dialog.next_cseq(self.ids) if cseq is None else cseq,
            extra_headers=headers,
            body=body,
            content_type=content_type,
        )
        self.layer.send_request(request, destination, now)
        if method == "BYE":
            self.state = "terminated"
        return request

    # --- the core interface the pair drives -----------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> None:
        message = parse_message(data)
        if isinstance(message, Response):
            self.layer.receive_response(message, source, now)
        else:
            self.layer.receive_request(message, source, now)
        self._drain(now)

    def get_timer(self) -> float | None:
        deadlines = [self.layer.get_timer()]
        if self.state in ("calling", "early"):
            deadlines.append(self.give_up_at)
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        self.layer.handle_timer(now)
        if (
            self.state in ("calling", "early")
            and self.give_up_at is not None
            and self.give_up_at <= now
        ):
            self.state = "terminated"  # no final response for 64*T1: give up
            self.cancel(now)
        self._drain(now)

    def _drain(self, now: float) -> None:
        while (event := self.layer.next_event()) is not None:
            if isinstance(event, ResponseArrived):
                self._on_response(event.response, event.transaction, now)
            elif isinstance(event, RequestArrived):
                self._on_request(event.request, event.transaction, now)
            elif isinstance(event, TransactionFailed) and event.transaction is self.invite_tx:
                self.state = "terminated"

    def _on_response(self, response: Response, tx: ClientTransaction | None, now: float) -> None:
        self.responses.append(response)
        if response.cseq.method != "INVITE":
            return
        number = response.cseq.number
        if number == 1 and response.status < 200 and self.state == "calling":
            self.state = "early"
        elif number == 1 and response.status >= 300:
            self.state = "terminated"
        elif 200 <= response.status < 300:
            if number in self.acks:
                self.layer.send_stateless(self.acks[number], self._ack_destination())  # §13.2.2.4
            else:
                self._acknowledge(response, tx)

    def _acknowledge(self, response: Response, tx: ClientTransaction | None) -> None:
        assert self.invite_request is not None
        if self.dialog is None:
            self.dialog = Dialog.as_uac(self.invite_request, response)
        request = tx.request if tx is not None else self.invite_request
        body = b""
        if not request.body and response.body and self.answer_in_ack:  # answer their offer
            result = negotiate(
                SessionDescription.parse(response.body),
                preference=("PCMU",),
                local_address=UAC_HOST,
                local_port=4000,
                session_id=1,
                session_version=1,
            )
            assert not isinstance(result, NoCommonCodec)
            body = bytes(result.sdp)
        destination = self._ack_destination()
        ack = self.dialog.build_request(
            "ACK",
            via=self.layer.new_via(destination.transport),
            cseq=response.cseq.number,
            body=body,
            content_type=SDP if body else None,
        )
        self.acks[response.cseq.number] = ack
        self.ack = self.ack or ack
        self.layer.send_stateless(ack, destination)
        if self.state != "terminated":
            self.state = "confirmed"

    def _ack_destination(self) -> Address:
        assert self.dialog is not None
        return self.dialog.destination()

    def _on_request(self, request: Request, tx: ServerTransaction | None, now: float) -> None:
        self.requests.append(request)
        if tx is None:
            return  # an ACK
        tag = self.dialog.id.local_tag if self.dialog is not None else new_tag(self.ids)
        known = self.dialog is not None and request.call_id == self.dialog.id.call_id
        if not known or self.state == "terminated":
            self._respond(tx, 481, now, tag)
            return
        scripted = self.script.get(request.method)
        if scripted:
            status, headers = scripted.pop(0)
            self._respond(tx, status, now, tag, headers=headers)
            return
        body = b""
        if request.method == "INVITE" and request.body and self.auto_answer_offer:
            result = negotiate(
                SessionDescription.parse(request.body),
                preference=("PCMU", "PCMA"),
                local_address=UAC_HOST,
                local_port=4000,
                session_id=1,
                session_version=2,
            )
            assert not isinstance(result, NoCommonCodec)
            body = bytes(result.sdp)
        self._respond(tx, 200, now, tag, body=body)
        if request.method == "BYE":
            self.state = "terminated"

    def _respond(
        self,
        tx: ServerTransaction,
        status: int,
        now: float,
        tag: str,
        *,
        body: bytes = b"",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        fields = [("Contact", f"<sip:alice@{self.local.host}:{self.local.port}>"), *headers]
        if body:
            fields.append(("Content-Type", SDP))
        response = make_response(tx.request, status, to_tag=tag, extra_headers=fields, body=body)
        self.layer.send_response(tx, response, now)


@dataclass
class UacUasPair:
    """A UAC and our UAS endpoint joined by an in-memory network.

    Args:
        transport: UDP, or TCP (one connection, id :data:`CONNECTION_ID`).
        nat: the address the UAS sees the UAC's datagrams come from (a NAT), if any.
    """

    transport: Transport = Transport.UDP
    timers: Timers = field(default_factory=Timers)
    seed: int = 0
    nat: Address | None = None
    session_timer: SessionTimerPolicy | None = None
    now: float = 0.0
    policy: Callable[[Datagram], Action] | None = None
    """Decides each datagram's fate; ``None`` delivers everything."""
    admission: Admission | None = None
    """Who may start a call at the UAS (the IP guard, the rate limit); ``None``: everybody."""
    usage_starters: tuple[UsageStarter, ...] | None = None
    """What starts usages of the UAS's dialogs (REFER); ``None``: the endpoint's default."""

    def __post_init__(self) -> None:
        uas_local = Address(UAS_HOST, UAS_PORT, self.transport)
        self.uac_local = Address(UAC_HOST, UAC_PORT, self.transport)
        self.uas = SipEndpoint(
            {self.transport: uas_local},
            user_agent="sipline-test",
            timers=self.timers,
            ids=SeededIdSource(self.seed),
            session_timer=self.session_timer,
            admission=self.admission,
            usage_starters=self.usage_starters,
        )
        self.uac = Uac(self.uac_local, uas_local, timers=self.timers, seed=self.seed + 1)
        self.uas_local = uas_local
        self.in_flight: list[Datagram] = []
        self.held: list[Datagram] = []
        self.wire: list[Datagram] = []
        """Every datagram either side sent, in order (before the network's policy)."""
        self.sent_at: list[tuple[float, Datagram]] = []
        """The same, with the ``now`` at which each was sent."""
        self.lost: list[Datagram] = []
        """Datagrams addressed to nobody we know (e.g. a private Contact behind NAT)."""
        self.events: list[Event] = []
        self._rules: list[tuple[Callable[[Datagram], bool], Action, int]] = []

    # --- network controls -----------------------------------------------------------------

    def drop(self, predicate: Callable[[Datagram], bool], *, times: int = 1) -> None:
        """Drop the next ``times`` datagrams matching ``predicate``."""
        self._rules.append((predicate, Action.DROP, times))

    def duplicate(self, predicate: Callable[[Datagram], bool], *, times: int = 1) -> None:
        """Deliver the next ``times`` datagrams matching ``predicate`` twice."""
        self._rules.append((predicate, Action.DUPLICATE, times))

    def delay(self, predicate: Callable[[Datagram], bool], *, times: int = 1) -> None:
        """Hold back the next matching datagram until another has been delivered."""
        self._rules.append((predicate, Action.DELAY, times))

    def _fate(self, datagram: Datagram) -> Action:
        for index, (predicate, action, times) in enumerate(self._rules):
            if predicate(datagram):
                if times <= 1:
                    del self._rules[index]
                else:
                    self._rules[index] = (predicate, action, times - 1)
                return action
        return self.policy(datagram) if self.policy is not None else Action.DELIVER

    # --- moving datagrams -----------------------------------------------------------------

    @property
    def uac_seen_as(self) -> Address:
        """The UAC's address as the UAS sees it."""
        if self.nat is not None:
            return self.nat
        if self.transport.reliable:
            return Address(UAC_HOST, UAC_PORT, self.transport, CONNECTION_ID)
        return self.uac_local

    def _collect(self) -> None:
        for data, destination in self.uas.datagrams_to_send():
            self._send(Datagram(data, self.uas_local, destination, to_uas=False))
        for data, destination in self.uac.layer.datagrams_to_send():
            self._send(Datagram(data, self.uac_seen_as, destination, to_uas=True))
        while (event := self.uas.next_event()) is not None:
            self.events.append(event)

    def _send(self, datagram: Datagram) -> None:
        self.wire.append(datagram)
        self.sent_at.append((self.now, datagram))
        fate = self._fate(datagram)
        if fate is Action.DROP:
            return
        if fate is Action.DELAY:
            self.held.append(datagram)
            return
        self.in_flight.append(datagram)
        if fate is Action.DUPLICATE:
            self.in_flight.append(datagram)

    def _deliver(self, datagram: Datagram) -> None:
        destination = datagram.destination
        if datagram.to_uas:
            if (destination.host, destination.port) != (UAS_HOST, UAS_PORT):
                self.lost.append(datagram)
                return
            if self.transport.reliable:
                self.uas.receive_message(datagram.message, datagram.source, self.now)
            else:
                self.uas.receive_datagram(datagram.data, datagram.source, self.now)
            return
        seen = self.uac_seen_as
        if destination.connection_id is None and (destination.host, destination.port) != (
            seen.host,
            seen.port,
        ):
            self.lost.append(datagram)
            return
        self.uac.receive(datagram.data, self.uas_local, self.now)

    def pump(self) -> None:
        """Deliver everything in flight, and what that causes, until the network is quiet."""
        self._collect()
        while self.in_flight or self.held:
            if not self.in_flight:
                self.in_flight, self.held = self.held, []
            self._deliver(self.in_flight.pop(0))
            if self.held and self.in_flight:
                self.in_flight.append(self.held.pop(0))  # released after one delivery
            self._collect()

    def run(self, until: float) -> None:
        """Pump, then fire timers on both sides in deadline order up to ``until``."""
        self.pump()
        while True:
            deadlines = [d for d in (self.uas.get_timer(), self.uac.get_timer()) if d is not None]
            if not deadlines or min(deadlines) > until:
                break
            self.now = max(self.now, min(deadlines))
            self.uas.handle_timer(self.now)
            self.uac.handle_timer(self.now)
            self.pump()
        self.now = max(self.now, until)

    # --- conveniences for tests -----------------------------------------------------------

    def call(self) -> IncomingCall:
        """Return the (last) incoming call the UAS announced."""
        calls = [e.call for e in self.events if isinstance(e, IncomingCallReceived)]
        assert calls, "no IncomingCallReceived yet"
        return calls[-1]

    def labels(self, *, to_uas: bool | None = None) -> list[str]:
        """Return the labels of everything sent, optionally in one direction."""
        return [d.label for d in self.wire if to_uas is None or d.to_uas is to_uas]

    def events_of(self, kind: type) -> list[Event]:
        """Return the UAS events of one type."""
        return [e for e in self.events if isinstance(e, kind)]

    def establish(
        self, *, late_offer: bool = False, headers: Iterable[tuple[str, str]] = ()
    ) -> IncomingCall:
        """Run INVITE → 100 → 180 → 200 → ACK and return the call."""
        self.uac.invite(self.now, late_offer=late_offer, headers=headers)
        self.pump()
        call = self.call()
        call.ringing(now=self.now)
        sdp, media = plan_for(call)
        call.accept(sdp, now=self.now, preference=("PCMU", "PCMA"), media=media)
        self.pump()
        return call


def answer_for(call: IncomingCall) -> SessionDescription:
    """Our SDP for ``call``: an answer to its offer, or an offer for a late offer."""
    return plan_for(call)[0]


def plan_for(call: IncomingCall) -> tuple[SessionDescription, NegotiatedMedia | None]:
    """Our SDP for ``call`` and the media it sets up (``None`` for a late offer)."""
    if call.offer is None:
        offer = build_offer(
            preference=("PCMU", "PCMA"),
            local_address=UAS_HOST,
            local_port=30000,
            session_id=7,
            session_version=7,
        )
        return offer, None
    result = negotiate(
        call.offer,
        preference=("PCMU", "PCMA"),
        local_address=UAS_HOST,
        local_port=30000,
        session_id=7,
        session_version=7,
    )
    assert not isinstance(result, NoCommonCodec)
    return result.sdp, result.media
