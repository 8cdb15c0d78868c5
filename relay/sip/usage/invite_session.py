"""The INVITE session both calls share, incoming (UAS) and outgoing (UAC), and its events.

RFC 3261 §12-§15, RFC 6026. Theory of operation
===============================================

1. An :class:`InviteSession` is the INVITE usage of one dialog (RFC 5057 §3): it implements the
   :class:`~relay.sip.transaction.layer.Usage` protocol the endpoint drives, speaks through its
   :class:`~relay.sip.usage.leg.Leg`, and reports with events (below) through the ``emit``
   callable it was given. ``IncomingCall`` (``incoming.py``) adds what only the UAS does:
   100/180/2xx to the INVITE, its retransmission until the ACK, CANCEL.
2. Within the dialog it takes BYE, re-INVITE, UPDATE, INFO and OPTIONS; any other method is
   left to the dialog's other usages. A request after the session ended gets 481 (a crossed
   BYE still gets 200); one with a lower CSeq gets 500 (§12.2.2). INFO raises
   :class:`InfoReceived` (RFC 6086); OPTIONS gets 200 with Allow and Accept (§11.2).
3. Once the 2xx is sent or received, :class:`~relay.sip.usage.reinvite.SessionUpdates` owns
   the session: re-INVITE, UPDATE, session timers and the media state. It gets a leg, the
   session as owner of the requests it sends, whether the peer allows UPDATE, and two
   callables for what it observed; it returns a :class:`~relay.sip.usage.call_state.CallEndReason`
   when the session must end, and we send the BYE.
4. The transitions are a table, ``_TRANSITIONS[(state, input)] = (action, next state)``, over
   ``call_state.py``. The rows of an established session (CONFIRMED and TERMINATED: hang-up,
   BYE, expiry, a failed refresh) are :attr:`InviteSession._SESSION_TRANSITIONS`, which each
   subclass's table starts from. Any input a state does not allow raises
   ``LocalProtocolError``; :meth:`_handle` is the one entry and marks the session for the
   endpoint to re-arm (the endpoint marks it after its own dispatches too).
5. A terminated session lingers 64*T1 when it had a dialog and a session, so late ACKs and a
   crossed BYE still find it; then ``finished`` is set and the endpoint forgets it.

Every call's events end with exactly one :class:`CallEnded`; the events name the session they
concern (``call``), so the application acts on the object it was given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from relay.sip.dialog import Dialog
from relay.sip.digest import DigestSession
from relay.sip.errors import LocalProtocolError, RemoteProtocolError
from relay.sip.sdp.media_session import MediaSession
from relay.sip.sdp.offer_answer import NegotiatedMedia
from relay.sip.syntax.message import Request, Response
from relay.sip.transaction.layer import ClientTransaction, ServerTransaction
from relay.sip.usage.call_state import CallEndReason, CallInput, CallState
from relay.sip.usage.leg import Leg
from relay.sip.usage.reinvite import SessionUpdates, retry_after_s
from relay.sip.usage.session_timer import SessionTimer

__all__ = [
    "CallAnswered",
    "CallCancelled",
    "CallEnded",
    "CallEvent",
    "CallProgress",
    "InfoReceived",
    "InviteSession",
    "MediaUpdated",
    "ReInviteReceived",
]

_SESSION_METHODS = frozenset({"BYE", "INVITE", "UPDATE", "INFO", "OPTIONS"})
C, T = CallState.CONFIRMED, CallState.TERMINATED
I = CallInput  # noqa: E741 - the table reads like the RFC's figures
_Action: TypeAlias = Callable[[Any, float, Any], None]
Transitions: TypeAlias = dict[tuple[CallState, CallInput], tuple[_Action | None, CallState]]


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """The call is established: the ACK to our 2xx came (RFC 3261 §13.3.1.4), or, for an
    outgoing call, we sent the ACK to the 2xx that answered our INVITE (§13.2.2.4)."""

    call: InviteSession
    ack: Request
    media: NegotiatedMedia | None
    """The call's media: settled by the ACK's answer for a late offer, else what ``accept()``
    was told (``None`` if it was not told); for an outgoing call, the 2xx's answer to our offer."""


@dataclass(frozen=True, slots=True)
class CallProgress:
    """A provisional response other than 100 came to our INVITE (180, 183...; RFC 3261 §13.2.2.1)."""

    call: InviteSession
    status: int
    reason: str
    """The reason phrase as the far end wrote it (for the log)."""
    early_media: NegotiatedMedia | None
    """What a 183's SDP answer sets up (early media), kept for the application; ``None`` without
    a usable SDP. The 2xx's answer is what the call uses (RFC 3261 §13.2.1)."""


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """The caller cancelled before our final response; 487 and 200 (to CANCEL) are sent."""

    call: InviteSession
    cancel: Request


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over; the last event about it."""

    call: InviteSession
    reason: CallEndReason
    by_remote: bool
    """Whether the peer ended it (BYE, CANCEL) rather than we (reject, hang-up, a timer)."""
    status: int | None = None
    """The final response we sent when the call ended unanswered (487, the rejection...)."""


@dataclass(frozen=True, slots=True)
class ReInviteReceived:
    """The peer sent a re-INVITE or an UPDATE within the call, and we answered it."""

    call: InviteSession
    request: Request
    status: int
    """What we answered: 200, 488 (no common codec), 491 or 500 (pending), 422..."""


@dataclass(frozen=True, slots=True)
class MediaUpdated:
    """Offer and answer agreed on new media within the call (hold, unhold, a new codec...)."""

    call: InviteSession
    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class InfoReceived:
    """An INFO arrived within the call and was answered 200 (RFC 6086)."""

    call: InviteSession
    request: Request
    content_type: str | None
    """E.g. ``application/dtmf-relay`` (``Signal=5`` / ``Duration=160`` lines)."""
    body: bytes


CallEvent: TypeAlias = (
    CallAnswered
    | CallProgress
    | CallCancelled
    | CallEnded
    | ReInviteReceived
    | MediaUpdated
    | InfoReceived
)


class InviteSession:
    """The INVITE usage of one dialog, whichever side sent the INVITE (rules 1 to 5)."""

    _TRANSITIONS: ClassVar[Transitions] = {}

    def __init__(self, leg: Leg, *, emit: Callable[[CallEvent], None]) -> None:
        self.leg = leg
        self._emit = emit
        self._state = CallState.PROCEEDING
        self._updates: SessionUpdates | None = None
        self._linger_until: float | None = None
        self._bye_headers: tuple[tuple[str, str], ...] = ()
        self.finished = False
        """Set once the call is terminated and has lingered: the endpoint then forgets it."""

    # --- what the application reads -------------------------------------------------------

    @property
    def state(self) -> CallState:
        """The current state."""
        return self._state

    @property
    def dialog(self) -> Dialog:
        """The dialog (its ids are known from the start)."""
        return self.leg.dialog

    @property
    def call_id(self) -> str:
        """The SIP Call-ID."""
        return self.leg.dialog.id.call_id

    @property
    def digest(self) -> DigestSession | None:
        """The credentials that answer challenges to requests in the dialog (a REFER), if any."""
        return None

    @property
    def media(self) -> MediaSession | None:
        """The offer/answer state once the call is answered."""
        return None if self._updates is None else self._updates.media

    def hang_up(self, *, now: float, headers: Sequence[tuple[str, str]] = ()) -> None:
        """End the call: BYE once established; what a subclass's table says before.

        ``headers`` go on our BYE, also one deferred until the ACK (e.g. a Reason, RFC 3326).
        """
        self._bye_headers = tuple(headers)
        self._handle(CallInput.HANG_UP, now, None)

    def send_info(self, content_type: str, body: bytes, now: float) -> bool:
        """Send an INFO within the confirmed dialog (RFC 6086), e.g. a DTMF digit.

        Returns False, sending nothing, before the ACK or once the call has ended. The response
        is not waited for, and a failed INFO does not end the call.
        """
        if self._state is not CallState.CONFIRMED:
            return False
        self.leg.touch(self)  # a new client transaction: the endpoint re-arms our timers
        try:
            self.leg.send("INFO", now, owner=self, sdp=body, content_type=content_type)
        except RemoteProtocolError:
            return False
        return True

    # --- what the endpoint feeds in (the Usage protocol) ---------------------------------

    def receive_request(self, request: Request, tx: ServerTransaction, now: float) -> bool:
        """Take a request within the dialog (rule 2); return whether it was this usage's."""
        if request.method == "CANCEL":
            return self._receive_cancel(request, tx, now)
        if request.method not in _SESSION_METHODS:
            return False
        tx.owner = self
        if self._state is CallState.TERMINATED and request.method != "BYE":
            self.leg.respond(tx, 481, now)
        elif not self.dialog.accept_cseq(request):
            self.leg.respond(tx, 500, now, reason="CSeq Out Of Order")
        else:
            self.dialog.flow = tx.source
            self._in_dialog(request, tx, now)
        return True

    def _in_dialog(self, request: Request, tx: ServerTransaction, now: float) -> None:
        if request.method == "BYE":
            self._handle(CallInput.RECV_BYE, now, tx)
        elif request.method in ("INVITE", "UPDATE"):
            self._session_update(request, tx, now)
        elif request.method == "INFO":
            self.leg.respond(tx, 200, now)
            self._emit(InfoReceived(self, request, request.content_type, request.body))
        else:  # OPTIONS; Leg adds Allow
            accept = ("Accept", ", ".join(self.leg.settings.accept))
            self.leg.respond(tx, 200, now, headers=(accept,))

    def _receive_cancel(self, cancel: Request, tx: ServerTransaction, now: float) -> bool:
        """Take a CANCEL of our INVITE; only a UAS gets one, so by default it is not ours."""
        return False

    def _session_update(self, request: Request, tx: ServerTransaction, now: float) -> None:
        if self._updates is not None and self._state is CallState.CONFIRMED:
            self._updates.receive(request, tx, now)
        elif self._state is CallState.ACCEPTED:
            self.leg.respond(tx, 491, now)  # our 2xx's offer/answer is still open (RFC 6337)
        else:  # the INVITE's offer is not answered yet (RFC 3261 §14.2, RFC 3311 §5.2)
            retry = ("Retry-After", str(retry_after_s(self.leg.ids)))
            self.leg.respond(tx, 500, now, headers=(retry,))

    def receive_ack(self, ack: Request, now: float) -> bool:
        """Take an ACK to one of our 2xx responses; return whether it was one of ours."""
        if self._updates is not None and self._updates.receive_ack(ack, now):
            return True
        return self._receive_initial_ack(ack, now)

    def _receive_initial_ack(self, ack: Request, now: float) -> bool:
        """Take the ACK to our 2xx to the initial INVITE; only a UAS sends that 2xx."""
        return False

    def receive_response(
        self, response: Response, tx: ClientTransaction | None, now: float
    ) -> bool:
        """Take a response to a request we sent in the dialog."""
        if self._updates is not None and self._state is not CallState.TERMINATED:
            self._session_ending(self._updates.receive_response(response, tx, now), now)
        return True

    def transaction_failed(self, tx: ServerTransaction | ClientTransaction, now: float) -> None:
        """Take a timeout or transport failure of one of our in-dialog requests."""
        if isinstance(tx, ClientTransaction) and self._updates is not None:
            self._session_ending(self._updates.transaction_failed(tx), now)

    def _session_ending(self, reason: CallEndReason | None, now: float) -> None:
        if reason is CallEndReason.SESSION_EXPIRED:
            self._handle(CallInput.SESSION_EXPIRED, now, reason)
        elif reason is not None:
            self._handle(CallInput.REQUEST_FAILED, now, reason)

    def _start_session(
        self,
        media: MediaSession,
        timer: SessionTimer | None,
        now: float,
        *,
        peer: Request | Response,
        negotiated: NegotiatedMedia | None,
    ) -> None:
        """Hand the session to :class:`SessionUpdates` once the 2xx is sent or received."""
        allow = (method.upper() for method in peer.headers.get_all("Allow"))
        self._updates = SessionUpdates(
            self.leg,
            media,
            timer,
            now,
            owner=self,
            peer_allows_update="UPDATE" in allow,
            on_answered=lambda request, status: self._emit(ReInviteReceived(self, request, status)),
            on_media=lambda negotiated: self._emit(MediaUpdated(self, negotiated)),
        )
        self._updates.negotiated = negotiated

    # --- time -----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """Return the earliest deadline of the session, or ``None``."""
        deadlines = [self._linger_until]
        if self._updates is not None and self._state is not CallState.TERMINATED:
            deadlines.append(self._updates.get_timer())
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        """Fire what is due: session timers, the end of lingering."""
        if self._updates is not None and self._state is not CallState.TERMINATED:
            self._session_ending(self._updates.handle_timer(now), now)
        if self._linger_until is not None and self._linger_until <= now:
            self._linger_until = None
            self.finished = True

    # --- the table (rule 4) ---------------------------------------------------------------

    def _handle(self, event: CallInput, now: float, arg: object) -> None:
        self.leg.touch(self)
        entry = self._TRANSITIONS.get((self._state, event))
        if entry is None:
            raise LocalProtocolError(
                f"{type(self).__name__}: {event.value} is not allowed in state {self._state.value}"
            )
        action, next_state = entry
        if action is not None:
            action(self, now, arg)
        if next_state is not self._state:
            self._state = next_state
            if next_state is CallState.TERMINATED:
                self._terminate(now)

    def _terminate(self, now: float) -> None:
        if self.leg.dialog.id.remote_tag and self._updates is not None:
            self._linger_until = now + 64 * self.leg.timers.T1
        else:
            self.finished = True

    def _end(self, reason: CallEndReason, *, by_remote: bool, status: int | None = None) -> None:
        self._emit(CallEnded(self, reason, by_remote, status))

    # --- actions of an established session ------------------------------------------------

    def _send_bye(self, now: float, _: object) -> None:
        # An unroutable remote target: the call ends on our side all the same.
        with contextlib.suppress(RemoteProtocolError):
            self.leg.send("BYE", now, owner=self, headers=self._bye_headers)

    def _hang_up(self, now: float, arg: object) -> None:
        self._send_bye(now, arg)
        self._end(CallEndReason.BYE, by_remote=False)

    def _bye_received(self, now: float, tx: ServerTransaction) -> None:
        self.leg.respond(tx, 200, now)
        self._end(CallEndReason.BYE, by_remote=True)

    def _answer_bye(self, now: float, tx: ServerTransaction) -> None:
        self.leg.respond(tx, 200, now)  # a BYE that crossed ours

    def _bye_and_end(self, now: float, reason: CallEndReason) -> None:
        self._send_bye(now, None)
        self._end(reason, by_remote=False)

    _SESSION_TRANSITIONS: ClassVar[Transitions] = {
        (C, I.HANG_UP): (_hang_up, T),
        (T, I.HANG_UP): (None, T),  # the peer went first: the decision is moot
        (C, I.RECV_BYE): (_bye_received, T),
        (T, I.RECV_BYE): (_answer_bye, T),
        (C, I.SESSION_EXPIRED): (_bye_and_end, T),
        (C, I.REQUEST_FAILED): (_bye_and_end, T),
        (T, I.SESSION_EXPIRED): (None, T),  # the call ended first; its last timers are moot
        (T, I.REQUEST_FAILED): (None, T),
    }
    """The rows of an established session, which every subclass's table starts from."""
