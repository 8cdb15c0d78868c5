"""The sans-I/O SIP endpoint: the :class:`~relay.sip.address.SipCore` the transports drive.

Theory of operation
===================

1. Input (``SipCore``): datagrams are parsed here; stream messages come framed. Unparseable
   input is dropped and counted; a parseable request that breaks the rules (CSeq method
   mismatch, a bad Via, an unsupported ``Require``...) gets a stateless error response with
   the reason (``message.error_response``), counted too.
2. An INVITE that would start a call, or that names a dialog that does not exist, is first
   put to the application's :class:`~relay.sip.stateless.Admission` (the IP guard, the rate
   limit); a refusal, and the 481 for the missing dialog, is sent statelessly, one response
   per request received, no transaction (``stateless.py``, RFC 3261 §8.2.7), and counted.
   Everything else goes to the transaction layer first, then, by the events it returns,
   to dialogs and usages (the :class:`~relay.sip.transaction.layer.Usage` seam: the endpoint
   calls usages through that protocol only, never a concrete call class):

   - an ACK without a transaction goes to the usages of the dialog it names;
   - a method we do not allow gets 405 (a method SIP defines) or 501 (one it does not), both
     with ``Allow`` (RFC 3261 §8.2.1, §21.5.2);
   - CANCEL goes to the usage owning the INVITE it matches, which answers 200 and cancels it,
     or gets 481 (§9.2);
   - a request with a To tag is offered to its dialog's usages in the order they were bound
     (``usage/table.py``); the first that takes it answers; if none does, the endpoint's
     usage starters may start a usage of the dialog for it (``UsageStarter``: a REFER starts
     ``usage/refer_server.py``'s subscription, or is declined); else 481 (§12.2.2);
   - a new INVITE becomes an :class:`~relay.sip.usage.incoming.IncomingCall` once it passes
     the checks a UAS makes before ringing (``screen_invite``: Contact, SDP body, session
     timer: 400, 415, 422; a merged request: 482);
   - OPTIONS outside a dialog gets 200 with Allow, Accept and Supported (§11.2);
   - any other request outside a dialog gets 481;
   - responses go to the usage owning their transaction; a stray 2xx (no transaction left) to
     its dialog's usages; a failed transaction to its owner.

3. Output: ``datagrams_to_send()`` and ``next_event()`` (the events of ``events.py``), drained
   after every call in; ``get_timer()`` / ``handle_timer(now)`` cover every transaction and
   usage. The endpoint marks a usage after every dispatch to it, so that the next
   ``get_timer()`` re-arms it and a finished one is forgotten; when the application acts on a
   call directly (accept, reject, hang up) the call marks itself.
4. Usages the application makes, with the means below: ``usage/dial.py``'s ``place_call``
   starts an outgoing call (``usage/outgoing.py``), ``usage/refer.py``'s ``send_refer`` a
   transfer; the endpoint makes the incoming call itself, and its usage starters (by default the
   one that declines REFER) make the rest. :meth:`SipEndpoint.add_usage` holds one,
   :meth:`SipEndpoint.bind_dialog` routes a dialog to it once a response creates that dialog
   (once per To tag of a forked INVITE), :meth:`SipEndpoint.new_leg` gives it the endpoint's
   means of speaking in that dialog, :attr:`SipEndpoint.transactions` sends its requests
   outside any dialog, with the usage as owner, :meth:`SipEndpoint.usages_of` lists the
   usages already bound to a dialog, and :meth:`SipEndpoint.emit` queues its events.

Driving an incoming call from asyncio (the glue; ``transport.transmit()`` after each step)::

    # the drain loop, after every call into the core; it never awaits
    while (event := core.next_event()) is not None:
        match event:
            case IncomingCallReceived(call=call):   # 100 Trying is already queued
                call_tasks.create_task(answer(call))
            case CallAnswered(call=call, media=media): start RTP with media
            case CallEnded(call=call, reason=reason): stop media, post leg_ended

    async def answer(call):                         # decide, then do
        try:
            decision = await asyncio.wait_for(webhook(call.request, call.source), 4.0)
            plan = plan_incoming_invite(call.request, decision, local_address=rtp_host,
                                        local_port=rtp_port, session_id=ids.bits(31),
                                        warning_agent=host)
        except TimeoutError:
            plan = plan_unavailable(retry_after_s=30)
        now = loop.time()
        if isinstance(plan, AcceptPlan):
            call.ringing(now=now)
            call.accept(plan.sdp, now=now, preference=plan.preference, media=plan.media)
        else:
            call.reject(plan.status, plan.reason, now=now, headers=plan.headers)
        transport.transmit()

    call.hang_up(now=loop.time()); transport.transmit()   # the agent or the API hung up

Size: about 510 lines, a fifth of them this docstring (the dispatch rules and the asyncio
example, read together with the code). The refusal policy lives in ``stateless.py``, the usage
table in ``usage/table.py``, the checks of a new INVITE in ``usage/incoming.py``; what stays
(``_refused``, the dispatch) reads the endpoint's transactions, usages, counters and events.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from relay.ids import IdSource, new_tag
from relay.sip.address import Address, SipCore, Transport, TransportFailure
from relay.sip.dialog import Dialog, DialogId
from relay.sip.errors import RemoteProtocolError, SipParseError
from relay.sip.events import (
    BadRequestRejected,
    Event,
    IncomingCallReceived,
    InviteRefused,
    ParseErrorDropped,
)
from relay.sip.stateless import Admission, invite_refusal, stateless_reply
from relay.sip.syntax.message import Request, Response, error_response, make_response
from relay.sip.syntax.parser import is_keepalive, parse_message, validate_request, validate_response
from relay.sip.syntax.via import response_destination, stamp_top_via
from relay.sip.transaction.deadlines import Deadlines
from relay.sip.transaction.layer import (
    RequestArrived,
    ResponseArrived,
    ServerTransaction,
    TransactionFailed,
    TransactionLayer,
    Usage,
)
from relay.sip.transaction.timers import Timers
from relay.sip.usage.incoming import IncomingCall, InviteUnfit, screen_invite
from relay.sip.usage.leg import Leg, UserAgentSettings, local_contact
from relay.sip.usage.refer_server import ReferServers
from relay.sip.usage.session_timer import SessionTimerPolicy
from relay.sip.usage.table import UsageStarter, UsageTable

__all__ = ["EndpointCounters", "SipEndpoint"]

# Methods SIP defines (RFC 3261, 3262, 3265/6665, 3311, 3428, 3515, 3903, 6086): 405, not 501.
KNOWN_METHODS = frozenset(
    {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
     "UPDATE", "MESSAGE", "REFER", "PUBLISH", "INFO"}
)  # fmt: skip


@dataclass(slots=True)
class EndpointCounters:
    """Running totals (exported as metrics by the service)."""

    dropped_unparseable: int = 0
    """Messages dropped because they could not be parsed or answered (rule 1)."""
    stateless_errors_sent: int = 0
    """Parseable bad requests answered statelessly with the reason (400, 420, 505...)."""
    responses_dropped: int = 0
    """Responses that failed the UAC checks (RFC 3261 §8.1.3.3)."""
    keepalives: int = 0
    """CRLF keep-alive datagrams, ignored."""
    invites_refused: int = 0
    """INVITEs refused statelessly before any call existed (rule 2)."""
    calls_received: int = 0


class SipEndpoint:
    """A SIP user agent that answers incoming calls, sans-I/O (rules 1 to 3).

    Args:
        local_addresses: our address per transport (Via sent-by, Contact).
        user_agent: the ``Server`` / ``User-Agent`` value, also our Warning agent.
        timers: T1, T2, T4.
        ids: tags, branches, sequence numbers.
        session_timer: RFC 4028 settings.
        admission: who may start a call (``None``: everybody); asked before any transaction.
        usage_starters: what may start a usage of a dialog for a request its usages leave
            (rule 2); ``None``: a :class:`~relay.sip.usage.refer_server.ReferServers` that
            declines every REFER with 603.
    """

    def __init__(
        self,
        local_addresses: Mapping[Transport, Address],
        *,
        user_agent: str,
        timers: Timers,
        ids: IdSource,
        session_timer: SessionTimerPolicy | None = None,
        admission: Admission | None = None,
        usage_starters: Sequence[UsageStarter] | None = None,
    ) -> None:
        self.counters = EndpointCounters()
        self._starters = tuple(usage_starters) if usage_starters is not None else (ReferServers(),)
        self._admission = admission
        self._local = dict(local_addresses)
        self._timers = timers
        self._ids = ids
        self._settings = UserAgentSettings(
            user_agent=user_agent, session_timer=session_timer or SessionTimerPolicy()
        )
        self._layer = TransactionLayer(local_addresses=self._local, timers=timers, ids=ids)
        self._events: deque[Event] = deque()
        self._touched: set[Usage] = set()
        self._usages = UsageTable()
        self._invites: dict[tuple[str, str, int], Usage] = {}
        self._invite_keys: dict[Usage, tuple[str, str, int]] = {}
        self._deadlines: Deadlines[Usage] = Deadlines()

    @property
    def usages(self) -> list[Usage]:
        """The usages the endpoint still holds (including terminated calls that linger)."""
        return list(self._usages)

    @property
    def transactions(self) -> TransactionLayer:
        """The transaction layer, for a usage's requests outside any dialog (rule 4)."""
        return self._layer

    @property
    def ids(self) -> IdSource:
        """Tags, branches, Call-IDs: for a usage that builds its own first request (rule 4)."""
        return self._ids

    @property
    def settings(self) -> UserAgentSettings:
        """What this user agent says about itself (User-Agent, Allow, Supported...)."""
        return self._settings

    # --- usages the application makes (rule 4) --------------------------------------------

    def add_usage(self, usage: Usage) -> None:
        """Hold ``usage``: time it, and forget it once it is ``finished`` (rule 4)."""
        self._usages.add(usage)
        self._touched.add(usage)

    def bind_dialog(self, dialog: Dialog, usage: Usage) -> None:
        """Offer ``dialog``'s requests, ACKs and stray 2xx to ``usage`` (rule 4).

        Usages already bound to the dialog are offered them first.

        Raises:
            LocalProtocolError: another ``Dialog`` object is bound under the same id.
        """
        self._usages.bind(dialog, usage)
        self._touched.add(usage)

    def usages_of(self, dialog_id: DialogId) -> tuple[Usage, ...]:
        """Return the usages bound to the dialog ``dialog_id`` names, in order (rule 4)."""
        return self._usages.usages_of(dialog_id)

    def emit(self, event: Event) -> None:
        """Queue ``event`` for :meth:`next_event` (the usages' ``emit``, rule 4)."""
        self._events.append(event)

    def new_leg(self, dialog: Dialog) -> Leg:
        """Return the means of answering and sending within ``dialog`` (rule 4)."""
        return Leg(
            dialog,
            layer=self._layer,
            ids=self._ids,
            timers=self._timers,
            settings=self._settings,
            touch=self._touched.add,
        )

    # --- SipCore: input -------------------------------------------------------------------

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        """Parse a datagram and take the message in (rule 1)."""
        if is_keepalive(data):
            self.counters.keepalives += 1
            return
        try:
            message = parse_message(data)
        except SipParseError as err:
            self.receive_parse_error(err, source, now)
            return
        self.receive_message(message, source, now)

    def receive_message(self, message: Request | Response, source: Address, now: float) -> None:
        """Take a parsed message in (rules 1 and 2)."""
        try:
            if isinstance(message, Response):
                validate_response(message)
                self._layer.receive_response(message, source, now)
            else:
                validate_request(message, supported=frozenset(self._settings.supported))
                if self._refused(message, source, now):
                    return
                self._layer.receive_request(message, source, now)
        except SipParseError as err:
            if isinstance(message, Response):
                self.counters.responses_dropped += 1
                self.emit(ParseErrorDropped(source, err.message))
                return
            self.receive_parse_error(err, source, now)
            return
        self._drain(now)

    def receive_parse_error(self, error: SipParseError, source: Address, now: float) -> None:
        """Answer a bad request statelessly with the reason, or drop and count (rule 1)."""
        reply = error_response(error, to_tag=new_tag(self._ids))
        if reply is None:
            self.counters.dropped_unparseable += 1
            self.emit(ParseErrorDropped(source, error.message))
            return
        try:
            reply = replace(reply, headers=stamp_top_via(reply.headers, source))
            destination = response_destination(reply.top_via, source)
        except SipParseError:
            destination = source  # the Via was the problem: answer where it came from
        self._layer.send_stateless(reply, destination)
        self.counters.stateless_errors_sent += 1
        self.emit(BadRequestRejected(source, reply.status, reply.reason))

    def _refused(self, request: Request, source: Address, now: float) -> bool:
        """Refuse statelessly an INVITE that would start a call or names no dialog (rule 2)."""
        if request.method != "INVITE" or self._layer.has_server_transaction(request):
            return False  # not an INVITE, or a retransmission its transaction absorbs
        known = request.to.tag is not None and DialogId.of_request(request) in self._usages
        refusal = invite_refusal(request, source, now, self._admission, dialog_exists=known)
        if refusal is None:
            return False
        reply, destination = stateless_reply(request, source, refusal, self._settings.user_agent)
        self._layer.send_stateless(reply, destination)
        self.counters.invites_refused += 1
        self.emit(InviteRefused(source, refusal))
        return True

    def connection_lost(self, connection_id: int, now: float) -> None:
        """Forget a closed stream: later messages go by address (RFC 3261 §18.2.2)."""
        self._layer.connection_lost(connection_id)
        for dialog in self._usages.dialogs():
            flow = dialog.flow
            if flow is not None and flow.connection_id == connection_id:
                dialog.flow = replace(flow, connection_id=None)

    def transport_error(
        self,
        destination: Address,
        now: float,
        failure: TransportFailure = TransportFailure.UNREACHABLE,
    ) -> None:
        """Take a failed send (§17.1.4, §17.2.4, §18.2.2)."""
        self._layer.transport_error(destination, now, failure)
        self._drain(now)

    # --- SipCore: output and time ---------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """Return and forget the queued ``(bytes, Address)`` pairs."""
        return self._layer.datagrams_to_send()

    def next_event(self) -> Event | None:
        """Return the oldest event for the application, or ``None``."""
        self._sync()
        events = self._events
        return events.popleft() if events else None

    def get_timer(self) -> float | None:
        """Return the earliest deadline of any transaction or usage, or ``None``."""
        self._sync()
        deadlines = (self._layer.get_timer(), self._deadlines.earliest())
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        """Fire every transaction and usage timer due at ``now``."""
        self._layer.handle_timer(now)
        self._drain(now)
        self._sync()
        for usage in self._deadlines.pop_due(now):
            usage.handle_timer(now)
            self._touched.add(usage)
        self._drain(now)

    def _sync(self) -> None:
        """Re-arm the usages that changed and forget the finished ones."""
        touched = self._touched
        while touched:
            usage = touched.pop()
            if usage.finished:
                self._forget(usage)
            else:
                self._deadlines.set(usage, usage.get_timer())

    def _forget(self, usage: Usage) -> None:
        self._deadlines.set(usage, None)
        self._usages.remove(usage)
        key = self._invite_keys.pop(usage, None)
        if key is not None and self._invites.get(key) is usage:
            del self._invites[key]

    # --- dispatch (rule 2) ----------------------------------------------------------------

    def _drain(self, now: float) -> None:
        while (event := self._layer.next_event()) is not None:
            try:
                self._dispatch(event, now)
            except RemoteProtocolError as err:  # a lazily parsed field was malformed
                self.counters.dropped_unparseable += 1
                source = None if isinstance(event, TransactionFailed) else event.source
                self.emit(ParseErrorDropped(source, err.message))

    def _dispatch(
        self, event: RequestArrived | ResponseArrived | TransactionFailed, now: float
    ) -> None:
        if isinstance(event, RequestArrived):
            self._on_request(event, now)
        elif isinstance(event, ResponseArrived):
            response, tx = event.response, event.transaction
            owner = tx.owner if tx is not None else None
            dialog_id = DialogId.of_response(response)  # a stray 2xx: its dialog's usages
            usages = (owner,) if owner is not None else self._usages.usages_of(dialog_id)
            self._offer(usages, lambda usage: usage.receive_response(response, tx, now))
        elif (owner := event.transaction.owner) is not None:
            owner.transaction_failed(event.transaction, now)
            self._touched.add(owner)

    def _offer(self, usages: Iterable[Usage], take: Callable[[Usage], bool]) -> bool:
        """Offer a message to ``usages`` in order until one takes it; mark each one asked."""
        for usage in usages:
            taken = take(usage)
            self._touched.add(usage)
            if taken:
                return True
        return False

    def _on_request(self, event: RequestArrived, now: float) -> None:
        request, tx = event.request, event.transaction
        if tx is None:  # an ACK to a 2xx
            usages = self._usages.usages_of(DialogId.of_request(request))
            self._offer(usages, lambda usage: usage.receive_ack(request, now))
            return
        method = request.method
        if method not in self._settings.allow:
            allow = ("Allow", ", ".join(self._settings.allow))
            self._respond(tx, 405 if method in KNOWN_METHODS else 501, now, headers=(allow,))
        elif method == "CANCEL":
            self._on_cancel(tx, now)
        elif request.to.tag is not None:
            self._in_dialog(tx, now)
        elif method == "INVITE":
            self._on_invite(tx, now)
        elif method == "OPTIONS":
            accept = ("Accept", ", ".join(self._settings.accept))
            self._respond(tx, 200, now, headers=(*self._settings.capability_headers, accept))
        else:
            self._respond(tx, 481, now)

    def _in_dialog(self, tx: ServerTransaction, now: float) -> None:
        request, dialog_id = tx.request, DialogId.of_request(tx.request)
        usages = self._usages.usages_of(dialog_id)
        if self._offer(usages, lambda usage: usage.receive_request(request, tx, now)):
            return
        dialog = self._usages.dialog(dialog_id)
        if dialog is not None:
            for starter in self._starters:
                if starter.start_usage(self, dialog, request, tx, now):
                    return
        self._respond(tx, 481, now)

    def _respond(
        self,
        tx: ServerTransaction,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        fields = (("Server", self._settings.user_agent), *headers)
        response = make_response(
            tx.request, status, reason, to_tag=new_tag(self._ids), extra_headers=fields
        )
        self._layer.send_response(tx, response, now)

    def _on_cancel(self, tx: ServerTransaction, now: float) -> None:
        invite = self._layer.find_invite(tx.request)
        owners = () if invite is None or invite.owner is None else (invite.owner,)
        if not self._offer(owners, lambda usage: usage.receive_request(tx.request, tx, now)):
            self._respond(tx, 481, now)

    def _on_invite(self, tx: ServerTransaction, now: float) -> None:
        request = tx.request
        key = _invite_key(request)
        if key in self._invites:  # merged: same request by another path (§8.2.2.2)
            self._respond(tx, 482, now)
            return
        screened = screen_invite(request, self._settings.session_timer)
        if isinstance(screened, InviteUnfit):
            self._respond(
                tx, screened.status, now, reason=screened.reason, headers=screened.headers
            )
            return
        offer, timer = screened.offer, screened.session_timer
        leg = self._leg_for(tx)
        call = IncomingCall(tx, leg=leg, emit=self.emit, offer=offer, session_timer=timer, now=now)
        self._usages.bind(call.dialog, call)
        self._touched.add(call)
        self._invites[key] = call
        self._invite_keys[call] = key
        self.counters.calls_received += 1
        self.emit(IncomingCallReceived(call, request, offer))

    def _leg_for(self, tx: ServerTransaction) -> Leg:
        transport = tx.source.transport
        local = self._local.get(transport) or next(iter(self._local.values()))
        uri = tx.request.uri
        sips = getattr(uri, "scheme", "") == "sips" and transport is Transport.TLS
        dialog = Dialog.as_uas(
            tx.request,
            local_tag=new_tag(self._ids),
            local_contact=local_contact(local, sips=sips),
            source=tx.source,
        )
        return self.new_leg(dialog)


if TYPE_CHECKING:

    def _implements_sip_core(endpoint: SipEndpoint) -> SipCore:
        return endpoint  # mypy checks that SipEndpoint is the SipCore of address.py


def _invite_key(request: Request) -> tuple[str, str, int]:
    return request.call_id, request.from_.tag or "", request.cseq.number
