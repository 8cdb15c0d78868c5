"""The INVITE usage of an incoming call, UAS side (RFC 3261 §13, §15, §9; RFC 6026).

Theory of operation
===================

1. The endpoint creates an :class:`IncomingCall` for a new INVITE; it sends ``100 Trying`` at
   once (§17.2.1) and picks our To tag, so every later response names the same dialog.
2. The application answers, when it has decided, with :meth:`IncomingCall.ringing`,
   :meth:`~IncomingCall.accept` (the SDP answer, or our offer for a late offer) or
   :meth:`~IncomingCall.reject` (300-699 with headers such as Retry-After or Warning), and
   ends an established call with :meth:`~IncomingCall.hang_up`. Decisions that arrive after
   the caller gave up (CANCEL, BYE) are ignored: the table has explicit no-op entries for them
   in TERMINATED. Any other call the state does not allow raises ``LocalProtocolError``.
3. The transitions are a table, ``_TRANSITIONS[(state, input)] = (action, next state)``, over
   the states of ``call_state.py``: PROCEEDING (100 sent), EARLY (a 1xx with our tag sent:
   early dialog, §12.1.1), ACCEPTED (2xx sent, awaiting ACK: RFC 6026's word), CONFIRMED,
   TERMINATED.
   Inputs are the application's calls, the peer's requests and our timers; where a decision
   depends on message contents (an ACK with a bad answer) the input is classified first.
4. 2xx reliability is ours (RFC 6026): the 2xx is resent at T1, doubling up to T2, until the
   ACK, and after 64*T1 without one the call is ended with BYE (§13.3.1.4). We never send BYE
   before that ACK (§15): a hang-up in ACCEPTED waits for it.
5. CANCEL before our final response: the endpoint answers it 200, and we answer the INVITE
   487 (§9.2). After our 2xx the CANCEL changes nothing. A BYE before our final response also
   gets 487 on the INVITE (§15.1.2).
6. Once the 2xx is sent, :class:`~relay.sip.usage.reinvite.SessionUpdates` owns the session:
   re-INVITE, UPDATE, session timers and the media state. It tells us when the session must
   end (expired, a refresh failed) and we send the BYE.
7. A terminated call lingers 64*T1 when it had a dialog, so late ACKs and a crossed BYE still
   find it; then ``finished`` is set and the endpoint forgets it.

Size: a little over 400 lines; the transition table and its header are most of it, and they are
read together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeAlias

from relay.sip.address import Address
from relay.sip.dialog import Dialog
from relay.sip.errors import LocalProtocolError, RemoteProtocolError
from relay.sip.events import (
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallEndReason,
    Event,
    InfoReceived,
)
from relay.sip.sdp.codecs import resolve_preference
from relay.sip.sdp.description import SessionDescription
from relay.sip.sdp.media_session import MediaSession, supported_codecs
from relay.sip.sdp.offer_answer import NegotiatedMedia
from relay.sip.syntax.message import Request, Response
from relay.sip.transaction.layer import ClientTransaction, ServerTransaction
from relay.sip.usage.call_state import CallInput, CallState
from relay.sip.usage.leg import Leg, UnacknowledgedAnswer
from relay.sip.usage.reinvite import SessionUpdates, parse_sdp_body, retry_after_s
from relay.sip.usage.session_timer import SessionTimer

__all__ = ["CallInput", "CallState", "IncomingCall"]

UNAVAILABLE_ON_HANG_UP = 480  # RFC 3261 §21.4.18: our hang-up before the answer
_IN_DIALOG_METHODS = frozenset({"BYE", "INVITE", "UPDATE", "INFO", "OPTIONS"})


P, E, A, C, T = (
    CallState.PROCEEDING,
    CallState.EARLY,
    CallState.ACCEPTED,
    CallState.CONFIRMED,
    CallState.TERMINATED,
)
I = CallInput  # noqa: E741 - the table reads like the RFC's figures
_Action: TypeAlias = Callable[[Any, float, Any], None]
_Transitions: TypeAlias = dict[tuple[CallState, CallInput], tuple[_Action | None, CallState]]


class IncomingCall:
    """One incoming INVITE and the call it becomes (rules 1 to 7).

    Created by the endpoint; the application only calls the public methods.
    """

    def __init__(
        self,
        tx: ServerTransaction,
        *,
        leg: Leg,
        offer: SessionDescription | None,
        session_timer: SessionTimer | None,
        now: float,
    ) -> None:
        self.request: Request = tx.request
        """The INVITE, its top Via stamped."""
        self.source: Address = tx.source
        self.offer = offer
        """The caller's SDP offer, ``None`` for a late offer."""
        self.leg = leg
        self._tx = tx
        self._state = CallState.PROCEEDING
        self._session_timer = session_timer
        self._answer: UnacknowledgedAnswer | None = None
        self._updates: SessionUpdates | None = None
        self._linger_until: float | None = None
        self._hang_up_pending = False
        self.finished = False
        """Set once the call is terminated and has lingered: the endpoint then forgets it."""
        tx.owner = self
        leg.respond(tx, 100, now)

    # --- what the application reads -------------------------------------------------------

    @property
    def state(self) -> CallState:
        """The current state."""
        return self._state

    @property
    def dialog(self) -> Dialog:
        """The dialog (its ids are known from the start; it exists once we answer)."""
        return self.leg.dialog

    @property
    def call_id(self) -> str:
        """The SIP Call-ID."""
        return self.request.call_id

    @property
    def media(self) -> MediaSession | None:
        """The offer/answer state once the call is answered."""
        return None if self._updates is None else self._updates.media

    # --- what the application does (rule 2) -----------------------------------------------

    def ringing(self, *, now: float) -> None:
        """Send 180 Ringing (an early dialog, §13.3.1.1)."""
        self._handle(CallInput.RINGING, now, None)

    def accept(
        self,
        sdp: SessionDescription,
        *,
        now: float,
        preference: Sequence[str] = (),
        media: NegotiatedMedia | None = None,
    ) -> None:
        """Send 200 OK with ``sdp``: our answer, or our offer when the INVITE had none.

        Args:
            sdp: the SDP body (``plan.AcceptPlan.sdp``).
            preference: the call's codec names, best first, for answering later re-offers;
                by default the codecs of ``sdp``.
            media: what ``sdp`` sets up (``AcceptPlan.media``), so that a re-offer changing
                nothing raises no ``MediaUpdated``.
        """
        names = tuple(preference) or supported_codecs(sdp)
        try:
            resolve_preference(names)
        except ValueError as err:
            raise LocalProtocolError(f"accept() needs codecs sipline supports: {err}") from None
        self._handle(CallInput.ACCEPT, now, (sdp, names, media))

    def reject(
        self,
        status: int,
        reason: str | None = None,
        *,
        now: float,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Answer the INVITE with a 300-699 final response (e.g. 503 + Retry-After)."""
        if not 300 <= status <= 699:
            raise LocalProtocolError(f"reject() needs a status of 300-699, not {status}")
        self._handle(CallInput.REJECT, now, (status, reason, tuple(headers)))

    def hang_up(self, *, now: float) -> None:
        """End the call: BYE once established, else 480 to the INVITE (rule 4)."""
        self._handle(CallInput.HANG_UP, now, (UNAVAILABLE_ON_HANG_UP, None, ()))

    # --- what the endpoint feeds in (the Usage protocol) ---------------------------------

    def receive_ack(self, ack: Request, now: float) -> bool:
        """Take an ACK to one of our 2xx responses (classified per rule 3)."""
        if self._updates is not None and self._updates.receive_ack(ack, now):
            return True
        if ack.cseq.number != self.request.cseq.number:
            return False
        media = self._updates.negotiated if self._updates is not None else None
        if self._state is CallState.ACCEPTED and self._updates is not None:
            if self._updates.media.remote is None:  # a late offer: the ACK must answer
                media = self._updates.complete_late_offer(parse_sdp_body(ack), now)
                if media is None:
                    reason = CallEndReason.MEDIA_FAILED
                    self._handle(CallInput.RECV_ACK_WITHOUT_ANSWER, now, reason)
                    return True
            if self._hang_up_pending:
                self._handle(CallInput.RECV_ACK_AFTER_HANG_UP, now, (ack, media))
                return True
        self._handle(CallInput.RECV_ACK, now, (ack, media))
        return True

    def receive_request(self, request: Request, tx: ServerTransaction, now: float) -> bool:
        """Take a CANCEL of our INVITE, or a request within the dialog that this usage serves.

        BYE, re-INVITE, UPDATE, INFO and OPTIONS are ours; anything else is left to the other
        usages of the dialog.
        """
        if request.method == "CANCEL":
            self.leg.respond(tx, 200, now)  # the same To tag as the INVITE's responses (§9.2)
            self._handle(CallInput.RECV_CANCEL, now, request)
            return True
        if request.method not in _IN_DIALOG_METHODS:
            return False
        tx.owner = self
        if self._state is CallState.TERMINATED and request.method != "BYE":
            self.leg.respond(tx, 481, now)
            return True
        if not self.dialog.accept_cseq(request):
            self.leg.respond(tx, 500, now, reason="CSeq Out Of Order")
            return True
        self.dialog.flow = tx.source
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
        return True

    def _session_update(self, request: Request, tx: ServerTransaction, now: float) -> None:
        if self._updates is not None and self._state is CallState.CONFIRMED:
            self._updates.receive(request, tx, now)
        elif self._state is CallState.ACCEPTED:
            self.leg.respond(tx, 491, now)  # our 2xx's offer/answer is still open (RFC 6337)
        else:  # we have not answered the INVITE's offer yet (RFC 3261 §14.2, RFC 3311 §5.2)
            retry = ("Retry-After", str(retry_after_s(self.leg.ids)))
            self.leg.respond(tx, 500, now, headers=(retry,))

    def receive_response(
        self, response: Response, tx: ClientTransaction | None, now: float
    ) -> bool:
        """Take a response to a request we sent in the dialog."""
        if self._updates is not None and self._state is not CallState.TERMINATED:
            self._session_ending(self._updates.receive_response(response, tx, now), now)
        return True

    def transaction_failed(self, tx: ServerTransaction | ClientTransaction, now: float) -> None:
        """Take a timeout or transport failure of one of our transactions."""
        if tx is self._tx:
            self._handle(CallInput.INVITE_FAILED, now, None)
        elif isinstance(tx, ClientTransaction) and self._updates is not None:
            self._session_ending(self._updates.transaction_failed(tx), now)

    def _session_ending(self, reason: CallEndReason | None, now: float) -> None:
        if reason is CallEndReason.SESSION_EXPIRED:
            self._handle(CallInput.SESSION_EXPIRED, now, reason)
        elif reason is not None:
            self._handle(CallInput.REQUEST_FAILED, now, reason)

    # --- time -----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """Return the earliest deadline of the call, or ``None``."""
        deadlines = [self._linger_until]
        if self._state is CallState.ACCEPTED and self._answer is not None:
            deadlines.append(self._answer.deadline())
        if self._updates is not None and self._state is not CallState.TERMINATED:
            deadlines.append(self._updates.get_timer())
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        """Fire what is due: 2xx retransmission, ACK timeout, session timers, linger end."""
        if self._state is CallState.ACCEPTED and self._answer is not None:
            self._answer.retransmit_if_due(self.leg.layer, self.leg.timers, now)
            if self._answer.given_up(now):
                self._handle(CallInput.ACK_TIMEOUT, now, CallEndReason.ACK_TIMEOUT)
        if self._updates is not None and self._state is not CallState.TERMINATED:
            self._session_ending(self._updates.handle_timer(now), now)
        if self._linger_until is not None and self._linger_until <= now:
            self._linger_until = None
            self.finished = True

    # --- the table (rule 3) ---------------------------------------------------------------

    def _handle(self, event: CallInput, now: float, arg: object) -> None:
        self.leg.outputs.touched.add(self)  # for the application's calls; harmless for others
        entry = self._TRANSITIONS.get((self._state, event))
        if entry is None:
            raise LocalProtocolError(
                f"IncomingCall: {event.value} is not allowed in state {self._state.value}"
            )
        action, next_state = entry
        if action is not None:
            action(self, now, arg)
        if next_state is not self._state:
            self._state = next_state
            if next_state is CallState.TERMINATED:
                self._terminate(now)

    def _terminate(self, now: float) -> None:
        self._answer = None
        if self.leg.dialog.id.remote_tag and self._updates is not None:
            self._linger_until = now + 64 * self.leg.timers.T1
        else:
            self.finished = True

    def _emit(self, event: Event) -> None:
        self.leg.outputs.events.append(event)

    def _end(self, reason: CallEndReason, *, by_remote: bool, status: int | None = None) -> None:
        self._emit(CallEnded(self, reason, by_remote, status))

    # --- actions --------------------------------------------------------------------------

    def _send_ringing(self, now: float, _: object) -> None:
        self.leg.respond(self._tx, 180, now)

    def _send_2xx(
        self,
        now: float,
        arg: tuple[SessionDescription, tuple[str, ...], NegotiatedMedia | None],
    ) -> None:
        sdp, preference, negotiated = arg
        timer = self._session_timer
        headers = timer.response_headers if timer is not None else ()
        response = self.leg.respond(self._tx, 200, now, headers=headers, sdp=bytes(sdp))
        self._answer = UnacknowledgedAnswer.start(self._tx, response, self.leg.timers, now)
        media = MediaSession(local=sdp, remote=self.offer, preference=preference)
        self._updates = SessionUpdates(self, self.leg, media, timer, now)
        self._updates.negotiated = negotiated

    def _send_rejection(
        self, now: float, arg: tuple[int, str | None, tuple[tuple[str, str], ...]]
    ) -> None:
        status, reason, headers = arg
        self.leg.respond(self._tx, status, now, reason=reason, headers=headers)
        self._end(CallEndReason.REJECTED, by_remote=False, status=status)

    def _defer_bye(self, now: float, _: object) -> None:
        self._hang_up_pending = True

    def _send_bye(self, now: float, _: object) -> None:
        # An unroutable remote target: the call ends on our side all the same.
        with contextlib.suppress(RemoteProtocolError):
            self.leg.send("BYE", now, owner=self)

    def _hang_up(self, now: float, arg: object) -> None:
        self._send_bye(now, arg)
        self._end(CallEndReason.BYE, by_remote=False)

    def _cancelled(self, now: float, cancel: Request) -> None:
        self.leg.respond(self._tx, 487, now)
        self._emit(CallCancelled(self, cancel))
        self._end(CallEndReason.CANCELLED, by_remote=True, status=487)

    def _bye_before_answer(self, now: float, tx: ServerTransaction) -> None:
        self.leg.respond(tx, 200, now)
        self.leg.respond(self._tx, 487, now)
        self._end(CallEndReason.BYE, by_remote=True, status=487)

    def _bye_received(self, now: float, tx: ServerTransaction) -> None:
        self.leg.respond(tx, 200, now)
        self._end(CallEndReason.BYE, by_remote=True)

    def _answer_bye(self, now: float, tx: ServerTransaction) -> None:
        self.leg.respond(tx, 200, now)  # a BYE that crossed ours (rule 7)

    def _confirm(self, now: float, arg: tuple[Request, NegotiatedMedia | None]) -> None:
        ack, media = arg
        self._emit(CallAnswered(self, ack, media))

    def _confirm_then_hang_up(
        self, now: float, arg: tuple[Request, NegotiatedMedia | None]
    ) -> None:
        self._confirm(now, arg)
        self._hang_up(now, None)

    def _invite_failed(self, now: float, _: object) -> None:
        self._end(CallEndReason.TRANSACTION_FAILED, by_remote=False)

    def _bye_and_end(self, now: float, reason: CallEndReason) -> None:
        self._send_bye(now, None)
        self._end(reason, by_remote=False)

    _TRANSITIONS: ClassVar[_Transitions] = {
        (P, I.RINGING): (_send_ringing, E),
        (E, I.RINGING): (_send_ringing, E),
        (P, I.ACCEPT): (_send_2xx, A),
        (E, I.ACCEPT): (_send_2xx, A),
        (P, I.REJECT): (_send_rejection, T),
        (E, I.REJECT): (_send_rejection, T),
        (P, I.HANG_UP): (_send_rejection, T),
        (E, I.HANG_UP): (_send_rejection, T),
        (A, I.HANG_UP): (_defer_bye, A),  # no BYE before the ACK (§15)
        (C, I.HANG_UP): (_hang_up, T),
        (T, I.RINGING): (None, T),  # the caller went first: the decision is moot
        (T, I.ACCEPT): (None, T),
        (T, I.REJECT): (None, T),
        (T, I.HANG_UP): (None, T),
        (P, I.RECV_CANCEL): (_cancelled, T),
        (E, I.RECV_CANCEL): (_cancelled, T),
        (A, I.RECV_CANCEL): (None, A),  # too late: the 200 to the CANCEL is all (§9.2)
        (C, I.RECV_CANCEL): (None, C),
        (T, I.RECV_CANCEL): (None, T),
        (P, I.RECV_BYE): (_bye_before_answer, T),
        (E, I.RECV_BYE): (_bye_before_answer, T),
        (A, I.RECV_BYE): (_bye_received, T),
        (C, I.RECV_BYE): (_bye_received, T),
        (T, I.RECV_BYE): (_answer_bye, T),
        (P, I.RECV_ACK): (None, P),  # stray: no 2xx sent yet
        (E, I.RECV_ACK): (None, E),
        (A, I.RECV_ACK): (_confirm, C),
        (A, I.RECV_ACK_AFTER_HANG_UP): (_confirm_then_hang_up, T),
        (A, I.RECV_ACK_WITHOUT_ANSWER): (_bye_and_end, T),
        (C, I.RECV_ACK): (None, C),  # retransmission
        (T, I.RECV_ACK): (None, T),
        (P, I.INVITE_FAILED): (_invite_failed, T),
        (E, I.INVITE_FAILED): (_invite_failed, T),
        (A, I.INVITE_FAILED): (None, A),  # the 2xx is ours to resend; Timer L does not matter
        (C, I.INVITE_FAILED): (None, C),
        (T, I.INVITE_FAILED): (None, T),
        (A, I.ACK_TIMEOUT): (_bye_and_end, T),
        (A, I.SESSION_EXPIRED): (_bye_and_end, T),
        (C, I.SESSION_EXPIRED): (_bye_and_end, T),
        (A, I.REQUEST_FAILED): (_bye_and_end, T),
        (C, I.REQUEST_FAILED): (_bye_and_end, T),
        (T, I.ACK_TIMEOUT): (None, T),  # the call ended first; its last timers are moot
        (T, I.SESSION_EXPIRED): (None, T),
        (T, I.REQUEST_FAILED): (None, T),
    }
