"""The incoming call: the INVITE session of the UAS side (RFC 3261 §13, §15, §9; RFC 6026).

Theory of operation
===================

1. The endpoint creates an :class:`IncomingCall` for a new INVITE that passed
   :func:`screen_invite` (Contact, SDP body, session timer: 400, 415, 422); it sends
   ``100 Trying`` at once (§17.2.1) and picks our To tag, so every later response names the
   same dialog.
2. The application answers, when it has decided, with :meth:`IncomingCall.ringing`,
   :meth:`~IncomingCall.accept` (the SDP answer, or our offer for a late offer) or
   :meth:`~IncomingCall.reject` (300-699 with headers such as Retry-After or Warning), and
   ends the call with :meth:`~IncomingCall.hang_up` (480 before the answer, BYE after).
   Decisions that arrive after the caller gave up (CANCEL, BYE) are ignored: the table has
   explicit no-op entries for them in TERMINATED. Any other call the state does not allow
   raises ``LocalProtocolError``.
3. The transitions are a table over the states of ``call_state.py``: PROCEEDING (100 sent),
   EARLY (a 1xx with our tag sent: early dialog, §12.1.1), ACCEPTED (2xx sent, awaiting ACK:
   RFC 6026's word), CONFIRMED, TERMINATED. It starts from the established-session rows of
   :class:`~relay.sip.usage.invite_session.InviteSession` (``invite_session.py``), which also
   handles the dialog's requests, the session updates and lingering. Where a decision depends
   on message contents (an ACK with a bad answer) the input is classified first.
4. 2xx reliability is ours (RFC 6026): the 2xx is resent at T1, doubling up to T2, until the
   ACK, and after 64*T1 without one the call is ended with BYE (§13.3.1.4). We never send BYE
   before that ACK (§15): a hang-up in ACCEPTED waits for it.
5. CANCEL before our final response: we answer it 200 and the INVITE 487 (§9.2). After our
   2xx the CANCEL changes nothing. A BYE before our final response also gets 487 on the
   INVITE (§15.1.2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from relay.sip.address import Address
from relay.sip.errors import LocalProtocolError, SipParseError
from relay.sip.sdp.codecs import resolve_preference
from relay.sip.sdp.description import SessionDescription
from relay.sip.sdp.fields import SdpParseError
from relay.sip.sdp.media_session import MediaSession, supported_codecs
from relay.sip.sdp.offer_answer import NegotiatedMedia
from relay.sip.syntax.message import Request
from relay.sip.transaction.layer import ClientTransaction, ServerTransaction
from relay.sip.usage.call_state import CallEndReason, CallInput, CallState
from relay.sip.usage.invite_session import (
    CallAnswered,
    CallCancelled,
    CallEvent,
    InviteSession,
    Transitions,
)
from relay.sip.usage.leg import SDP, Leg, UnacknowledgedAnswer
from relay.sip.usage.reinvite import parse_sdp_body
from relay.sip.usage.session_timer import (
    SessionTimer,
    SessionTimerPolicy,
    SessionTimerTooSmall,
    negotiate_as_uas,
)

__all__ = ["IncomingCall", "InviteScreened", "InviteUnfit", "screen_invite"]

UNAVAILABLE_ON_HANG_UP = 480  # RFC 3261 §21.4.18: our hang-up before the answer

P, E, A, C, T = (
    CallState.PROCEEDING,
    CallState.EARLY,
    CallState.ACCEPTED,
    CallState.CONFIRMED,
    CallState.TERMINATED,
)
I = CallInput  # noqa: E741 - the table reads like the RFC's figures


@dataclass(frozen=True, slots=True)
class InviteScreened:
    """What a new INVITE that may become a call carries (rule 1)."""

    offer: SessionDescription | None
    session_timer: SessionTimer | None


@dataclass(frozen=True, slots=True)
class InviteUnfit:
    """The final response a new INVITE gets instead of a call (rule 1)."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


def screen_invite(request: Request, policy: SessionTimerPolicy) -> InviteScreened | InviteUnfit:
    """Make the checks a UAS makes before ringing (RFC 3261 §8.2, §13.3.1; RFC 4028 §9)."""
    if not request.contacts:
        return InviteUnfit(400, "Missing Contact header field in INVITE")
    if request.body and request.content_type != SDP:
        return InviteUnfit(415, headers=(("Accept", SDP),))
    try:
        offer = SessionDescription.parse(request.body) if request.body else None
        timer = negotiate_as_uas(request, policy)
    except SdpParseError as err:
        return InviteUnfit(400, f"Malformed SDP body: {err}"[:120])
    except SipParseError as err:
        return InviteUnfit(400, err.message)
    if isinstance(timer, SessionTimerTooSmall):
        return InviteUnfit(timer.status, headers=timer.headers)
    return InviteScreened(offer, timer)


class IncomingCall(InviteSession):
    """One incoming INVITE and the call it becomes (rules 1 to 5).

    Created by the endpoint; the application only calls the public methods.
    """

    def __init__(
        self,
        tx: ServerTransaction,
        *,
        leg: Leg,
        emit: Callable[[CallEvent], None],
        offer: SessionDescription | None,
        session_timer: SessionTimer | None,
        now: float,
    ) -> None:
        super().__init__(leg, emit=emit)
        self.request: Request = tx.request
        """The INVITE, its top Via stamped."""
        self.source: Address = tx.source
        self.offer = offer
        """The caller's SDP offer, ``None`` for a late offer."""
        self._tx = tx
        self._session_timer = session_timer
        self._answer: UnacknowledgedAnswer | None = None
        self._hang_up_pending = False
        tx.owner = self
        leg.respond(tx, 100, now)

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

    # --- what the endpoint feeds in, beyond the session's ---------------------------------

    def _receive_cancel(self, cancel: Request, tx: ServerTransaction, now: float) -> bool:
        self.leg.respond(tx, 200, now)  # the same To tag as the INVITE's responses (§9.2)
        self._handle(CallInput.RECV_CANCEL, now, cancel)
        return True

    def _receive_initial_ack(self, ack: Request, now: float) -> bool:
        if ack.cseq.number != self.request.cseq.number:
            return False
        updates = self._updates
        media = updates.negotiated if updates is not None else None
        if self._state is CallState.ACCEPTED and updates is not None:
            if updates.media.remote is None:  # a late offer: the ACK must answer
                media = updates.complete_late_offer(parse_sdp_body(ack), now)
                if media is None:
                    reason = CallEndReason.MEDIA_FAILED
                    self._handle(CallInput.RECV_ACK_WITHOUT_ANSWER, now, reason)
                    return True
            if self._hang_up_pending:
                self._handle(CallInput.RECV_ACK_AFTER_HANG_UP, now, (ack, media))
                return True
        self._handle(CallInput.RECV_ACK, now, (ack, media))
        return True

    def transaction_failed(self, tx: ServerTransaction | ClientTransaction, now: float) -> None:
        """Take a timeout or transport failure of one of our transactions."""
        if tx is self._tx:
            self._handle(CallInput.INVITE_FAILED, now, None)
        else:
            super().transaction_failed(tx, now)

    # --- time -----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """Return the earliest deadline of the call, or ``None``."""
        deadlines = [super().get_timer()]
        if self._state is CallState.ACCEPTED and self._answer is not None:
            deadlines.append(self._answer.deadline())
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        """Fire what is due: 2xx retransmission, ACK timeout, session timers, linger end."""
        if self._state is CallState.ACCEPTED and self._answer is not None:
            self._answer.retransmit_if_due(self.leg.layer, self.leg.timers, now)
            if self._answer.given_up(now):
                self._handle(CallInput.ACK_TIMEOUT, now, CallEndReason.ACK_TIMEOUT)
        super().handle_timer(now)

    def _terminate(self, now: float) -> None:
        self._answer = None
        super()._terminate(now)

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
        self._start_session(media, timer, now, peer=self.request, negotiated=negotiated)

    def _send_rejection(
        self, now: float, arg: tuple[int, str | None, tuple[tuple[str, str], ...]]
    ) -> None:
        status, reason, headers = arg
        self.leg.respond(self._tx, status, now, reason=reason, headers=headers)
        self._end(CallEndReason.REJECTED, by_remote=False, status=status)

    def _reject_on_hang_up(self, now: float, _: object) -> None:
        self._send_rejection(now, (UNAVAILABLE_ON_HANG_UP, None, ()))

    def _defer_bye(self, now: float, _: object) -> None:
        self._hang_up_pending = True

    def _cancelled(self, now: float, cancel: Request) -> None:
        self.leg.respond(self._tx, 487, now)
        self._emit(CallCancelled(self, cancel))
        self._end(CallEndReason.CANCELLED, by_remote=True, status=487)

    def _bye_before_answer(self, now: float, tx: ServerTransaction) -> None:
        self.leg.respond(tx, 200, now)
        self.leg.respond(self._tx, 487, now)
        self._end(CallEndReason.BYE, by_remote=True, status=487)

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

    _TRANSITIONS: ClassVar[Transitions] = {
        **InviteSession._SESSION_TRANSITIONS,
        (P, I.RINGING): (_send_ringing, E),
        (E, I.RINGING): (_send_ringing, E),
        (P, I.ACCEPT): (_send_2xx, A),
        (E, I.ACCEPT): (_send_2xx, A),
        (P, I.REJECT): (_send_rejection, T),
        (E, I.REJECT): (_send_rejection, T),
        (P, I.HANG_UP): (_reject_on_hang_up, T),
        (E, I.HANG_UP): (_reject_on_hang_up, T),
        (A, I.HANG_UP): (_defer_bye, A),  # no BYE before the ACK (§15)
        (T, I.RINGING): (None, T),  # the caller went first: the decision is moot
        (T, I.ACCEPT): (None, T),
        (T, I.REJECT): (None, T),
        (P, I.RECV_CANCEL): (_cancelled, T),
        (E, I.RECV_CANCEL): (_cancelled, T),
        (A, I.RECV_CANCEL): (None, A),  # too late: the 200 to the CANCEL is all (§9.2)
        (C, I.RECV_CANCEL): (None, C),
        (T, I.RECV_CANCEL): (None, T),
        (P, I.RECV_BYE): (_bye_before_answer, T),
        (E, I.RECV_BYE): (_bye_before_answer, T),
        (A, I.RECV_BYE): (InviteSession._bye_received, T),
        (P, I.RECV_ACK): (None, P),  # stray: no 2xx sent yet
        (E, I.RECV_ACK): (None, E),
        (A, I.RECV_ACK): (_confirm, C),
        (A, I.RECV_ACK_AFTER_HANG_UP): (_confirm_then_hang_up, T),
        (A, I.RECV_ACK_WITHOUT_ANSWER): (InviteSession._bye_and_end, T),
        (C, I.RECV_ACK): (None, C),  # retransmission
        (T, I.RECV_ACK): (None, T),
        (P, I.INVITE_FAILED): (_invite_failed, T),
        (E, I.INVITE_FAILED): (_invite_failed, T),
        (A, I.INVITE_FAILED): (None, A),  # the 2xx is ours to resend; Timer L does not matter
        (C, I.INVITE_FAILED): (None, C),
        (T, I.INVITE_FAILED): (None, T),
        (A, I.ACK_TIMEOUT): (InviteSession._bye_and_end, T),
        (A, I.SESSION_EXPIRED): (InviteSession._bye_and_end, T),
        (A, I.REQUEST_FAILED): (InviteSession._bye_and_end, T),
        (T, I.ACK_TIMEOUT): (None, T),  # the call ended first; its last timers are moot
    }
