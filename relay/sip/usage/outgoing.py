"""The outgoing call: the INVITE session of the UAC side (RFC 3261 §13.2, §9.1; RFC 6026).

Theory of operation
===================

1. ``usage/dial.py``'s ``place_call`` builds the INVITE (``invite_request.py``) and makes an
   :class:`OutgoingCall`, which sends it to the first target in an INVITE client transaction
   it owns, and arms the ring timeout. Until a 2xx names the call's dialog, the call speaks
   through the dialog the INVITE implies (remote tag empty); every To tag of a response gets a
   dialog of its own in :class:`~relay.sip.usage.forks.Forks`, bound to the call (``forks.py``).
2. Responses to the INVITE (only those naming our Call-ID, From tag and the CSeq we sent last;
   others are dropped). A 1xx moves the call to EARLY (CANCEL may now be sent, §9.1); one with
   a To tag creates an early dialog; each but 100 raises :class:`CallProgress`, with the
   early media of a 183's SDP. A 2xx is ACKed at once with its CSeq (§13.2.2.4, the ACK is the
   TU's), confirms its dialog, starts :class:`~relay.sip.usage.reinvite.SessionUpdates` with our
   offer and the 2xx's answer, honours its Session-Expires (``negotiate_as_uac``) and raises
   :class:`CallAnswered`. A 2xx without a usable answer is ACKed and BYEd (MEDIA_FAILED); one
   without a Contact we can route to too (TRANSACTION_FAILED), through ``unroutable_dialog``.
3. A 300-699 (the transaction ACKs it, §17.1.1.3) is classified first (decide, then do):
   401/407 goes to the :class:`~relay.sip.digest.DigestSession`, whose ``Retry`` resends the
   INVITE with a new branch and CSeq + 1 (§22.2) and whose ``GiveUp`` ends the call REJECTED
   with that status; a 503, Timer B or a transport error (kept in ``transport_failure``: TLS
   verification, say) move on to the next target with a new branch and CSeq + 1, the same
   Call-ID and From tag (RFC 3263 §4.3), and when none is left end TRANSACTION_FAILED (408 for
   a timeout, 503 for a 503 or a transport error, §8.1.3.1).
   Any other final ends the call REJECTED, ``by_remote``. Redirects (3xx) are not followed:
   the trunk is the one place we send calls to. At most :data:`MAX_INVITES` INVITEs are sent.
4. Hang-up and ring timeout before the answer: before any 1xx we only remember it (§9.1
   forbids CANCEL then) and send the CANCEL when a 1xx comes; after one we CANCEL (same
   Request-URI, Call-ID, From, To, CSeq number, Via branch and Route as the INVITE). The call
   then ends on the final response: 487 ends it CANCELLED (or RING_TIMEOUT) with that status;
   any other non-2xx too, never resent (no challenge answered, no next target after CANCEL);
   a 2xx is ACKed and BYEd. Without a final within 64*T1 of the hang-up (§9.1) the call ends
   with 408 and its INVITE transaction is abandoned.
5. After the answer: a retransmitted 2xx gets the same ACK again; a 2xx with another To tag
   (another fork, §13.2.2.4) is ACKed and BYEd at once, never a second call. The INVITE
   transaction stays in RFC 6026's Accepted state for Timer M to pass those 2xx on; a call
   that ACKed a 2xx lingers 64*T1 after it ends to ACK late retransmissions.
6. The transitions are a table over ``call_state.py``, starting from the established-session
   rows of :class:`~relay.sip.usage.invite_session.InviteSession`.

Size: about 400 lines, a sixth of them this docstring; the INVITE's requests and the fork table
already live apart (``invite_request.py``, ``forks.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from relay.sip.address import Address, TransportFailure
from relay.sip.dialog import Dialog, DialogId
from relay.sip.digest import Credentials, DigestSession, Retry
from relay.sip.errors import LocalProtocolError, RemoteProtocolError
from relay.sip.sdp.codecs import resolve_preference
from relay.sip.sdp.description import SessionDescription
from relay.sip.sdp.media_session import MediaSession, supported_codecs
from relay.sip.sdp.offer_answer import AnswerError, NegotiatedMedia
from relay.sip.syntax.message import Request, Response
from relay.sip.transaction.layer import ClientTransaction, ServerTransaction, Usage
from relay.sip.usage.call_state import CallEndReason, CallInput, CallState
from relay.sip.usage.forks import Fork, Forks
from relay.sip.usage.invite_request import build_cancel, dialog_before_answer, resubmit
from relay.sip.usage.invite_session import (
    CallAnswered,
    CallEvent,
    CallProgress,
    InviteSession,
    Transitions,
)
from relay.sip.usage.leg import Leg
from relay.sip.usage.reinvite import parse_sdp_body
from relay.sip.usage.session_timer import negotiate_as_uac

__all__ = ["MAX_INVITES", "OutgoingCall"]

MAX_INVITES = 16
"""Most INVITEs one call sends: the first, challenges answered, next targets tried."""
TIMEOUT, UNAVAILABLE = 408, 503  # RFC 3261 §8.1.3.1: a timeout is a 408, a transport error a 503

P, E, C, T = CallState.PROCEEDING, CallState.EARLY, CallState.CONFIRMED, CallState.TERMINATED
I = CallInput  # noqa: E741 - the table reads like the RFC's figures


@dataclass(frozen=True, slots=True)
class _Resend:
    """Send the INVITE again to ``target_index`` with ``credentials`` (rule 3)."""

    target_index: int
    credentials: Retry


@dataclass(frozen=True, slots=True)
class _Unanswered:
    """End the call before any answer (rules 3 and 4)."""

    reason: CallEndReason
    by_remote: bool
    status: int | None


@dataclass(frozen=True, slots=True)
class _Answer:
    """A 2xx that answers the call (rule 2)."""

    fork: Fork
    response: Response
    media: MediaSession
    negotiated: NegotiatedMedia


class OutgoingCall(InviteSession):
    """One INVITE we send and the call it becomes (rules 1 to 6).

    Created by ``usage/dial.py``'s ``place_call``; the application reads ``call_id``, ``state``,
    ``request`` and ``target``, and calls :meth:`hang_up` (and ``send_info`` once answered).
    """

    def __init__(
        self,
        invite: Request,
        *,
        leg: Leg,
        targets: Sequence[Address],
        bind: Callable[[Dialog, Usage], None],
        emit: Callable[[CallEvent], None],
        offer: SessionDescription,
        preference: Sequence[str],
        credentials: Credentials | None,
        ring_timeout_s: float,
        now: float,
    ) -> None:
        if not targets:
            raise LocalProtocolError("an outgoing call needs at least one target")
        super().__init__(leg, emit=emit)
        self.request = invite
        """The INVITE as last sent."""
        self.target = targets[0]
        """Where the current INVITE went."""
        self._targets = tuple(targets)
        self._index = 0
        self._offer = offer
        self._preference = tuple(preference) or supported_codecs(offer)
        try:
            resolve_preference(self._preference)
        except ValueError as err:
            raise LocalProtocolError(
                f"an outgoing call needs codecs sipline supports: {err}"
            ) from None
        self._digest = None if credentials is None else DigestSession(credentials, leg.ids)
        self._forks = Forks(leg, bind, self)
        self._invites, self._sent_at = 1, now
        self._ring_deadline: float | None = now + ring_timeout_s
        self._ending: CallEndReason | None = None  # our hang-up or ring timeout (rule 4)
        self._give_up_at: float | None = None
        self._cancel_sent = False
        self.transport_failure: TransportFailure | None = None  # the current INVITE's (rule 3)
        self._tx = leg.layer.send_request(invite, self.target, now, owner=self)

    @property
    def digest(self) -> DigestSession | None:
        """The call's credentials: they answer challenges to its REFER too."""
        return self._digest

    # --- what the endpoint feeds in, beyond the session's ---------------------------------

    def receive_request(self, request: Request, tx: ServerTransaction, now: float) -> bool:
        """Take a request in the call's dialog; those of a fork we ended are not ours (481)."""
        answered = self.dialog.id
        if answered.remote_tag and DialogId.of_request(request) != answered:
            return False
        return super().receive_request(request, tx, now)

    def receive_response(
        self, response: Response, tx: ClientTransaction | None, now: float
    ) -> bool:
        """Take a response to our INVITE, our CANCEL, or a request within the dialog."""
        if tx is not None and tx.request.method == "CANCEL":
            return True  # the CANCEL's own answer changes nothing: the INVITE's final does
        ours = self._names_our_invite(response)
        if tx is self._tx or (tx is None and ours and response.status >= 200):
            if ours:
                self._on_invite_response(response, now)
            return True  # a response to a CSeq we did not send: dropped
        return super().receive_response(response, tx, now)

    def transaction_failed(self, tx: ServerTransaction | ClientTransaction, now: float) -> None:
        """Take Timer B or a transport error of our INVITE (rule 3), or of another request."""
        if tx is not self._tx:
            if tx.request.method != "CANCEL":  # our 64*T1 bound covers a failed CANCEL
                super().transaction_failed(tx, now)
            return
        if self._state in (P, E):
            self.transport_failure = self._tx.failure
            timed_out = now >= self._sent_at + self.leg.timers.B
            plan = self._after_failure(TIMEOUT if timed_out else UNAVAILABLE)
            self._handle(I.RESEND if isinstance(plan, _Resend) else I.INVITE_FAILED, now, plan)

    def _names_our_invite(self, response: Response) -> bool:
        sent, cseq = self.request, response.cseq
        ids = (response.call_id, response.from_.tag, cseq.number, cseq.method)
        return ids == (sent.call_id, sent.from_.tag, sent.cseq.number, "INVITE")

    def _on_invite_response(self, response: Response, now: float) -> None:
        status = response.status
        if status < 200:
            self._handle(I.RECV_PROVISIONAL, now, response)
        elif status >= 300:
            if self._state in (P, E):
                plan = self._after_final(response)
                self._handle(I.RESEND if isinstance(plan, _Resend) else I.RECV_FINAL, now, plan)
        elif self._state in (C, T):
            self._handle(I.RECV_2XX, now, response)
        else:
            self._on_answer(response, now)

    # --- deciding (rules 2 to 4) ----------------------------------------------------------

    def _on_answer(self, response: Response, now: float) -> None:
        fork = self._forks.confirmed(self.request, response, self._tx.destination, answer=True)
        if self._ending is not None:
            self._handle(I.RECV_2XX_AFTER_HANG_UP, now, (fork, response))
            return
        answered = self._read_answer(response)
        if not fork.usable or answered is None:
            reason = CallEndReason.MEDIA_FAILED if fork.usable else CallEndReason.TRANSACTION_FAILED
            self._handle(I.RECV_2XX_UNUSABLE, now, (fork, response, reason))
            return
        media, negotiated = answered
        self._handle(I.RECV_2XX, now, _Answer(fork, response, media, negotiated))

    def _read_answer(self, message: Response) -> tuple[MediaSession, NegotiatedMedia] | None:
        """Read the SDP of ``message`` as the answer to our offer; ``None`` if unusable."""
        answer = parse_sdp_body(message)
        if answer is None:
            return None
        try:
            return MediaSession(self._offer, None, self._preference).answered(answer)
        except AnswerError:
            return None

    def _after_final(self, response: Response) -> _Resend | _Unanswered:
        status = response.status
        if self._ending is not None:
            return _Unanswered(self._ending, False, status)
        if status in (401, 407):
            digest = self._digest
            verdict = None if digest is None else digest.on_response(response, self.request)
            if isinstance(verdict, Retry) and self._invites < MAX_INVITES:
                return _Resend(self._index, verdict)
            return _Unanswered(CallEndReason.REJECTED, True, status)
        if status == UNAVAILABLE:
            return self._after_failure(status)
        return _Unanswered(CallEndReason.REJECTED, True, status)

    def _after_failure(self, status: int) -> _Resend | _Unanswered:
        """Move on to the next target after a 503, a timeout or a transport error."""
        if self._ending is not None:
            return _Unanswered(self._ending, False, status)
        following = self._index + 1
        if following < len(self._targets) and self._invites < MAX_INVITES:
            held = () if self._digest is None else self._digest.authorization_headers(self.request)
            return _Resend(following, Retry(held))
        return _Unanswered(CallEndReason.TRANSACTION_FAILED, False, status)

    # --- time -----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """Return the earliest deadline: ring timeout, CANCEL bound, session, lingering."""
        deadlines = [super().get_timer()]
        if self._state in (P, E):
            deadlines += [self._ring_deadline, self._give_up_at]
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        """Fire what is due: the ring timeout, the CANCEL bound, then the session's timers."""
        ring, give_up = self._ring_deadline, self._give_up_at
        if self._state in (P, E) and ring is not None and ring <= now:
            self._handle(I.RING_TIMEOUT, now, None)
        if self._state in (P, E) and give_up is not None and give_up <= now:
            self._handle(I.CANCEL_TIMEOUT, now, None)
        super().handle_timer(now)

    def _terminate(self, now: float) -> None:
        self._ring_deadline = self._give_up_at = None
        if self._forks.acked():  # ACK the 2xx again if it is retransmitted (rule 5)
            self._linger_until = now + 64 * self.leg.timers.T1
        else:
            self.finished = True

    # --- actions --------------------------------------------------------------------------

    def _provisional(self, now: float, response: Response) -> None:
        if response.status > 100:
            self._forks.early(self.request, response, self._tx.destination)
            answered = self._read_answer(response)
            early = None if answered is None else answered[1]
            self._emit(CallProgress(self, response.status, response.reason, early))
        if self._ending is not None:
            self._send_cancel(now)

    def _begin_ending(self, reason: CallEndReason, now: float) -> None:
        if self._ending is None:
            self._ending = reason
            self._ring_deadline = None
            self._give_up_at = now + 64 * self.leg.timers.T1  # §9.1
        if self._state is E:
            self._send_cancel(now)

    def _on_hang_up(self, now: float, _: object) -> None:
        self._begin_ending(CallEndReason.CANCELLED, now)

    def _on_ring_timeout(self, now: float, _: object) -> None:
        self._begin_ending(CallEndReason.RING_TIMEOUT, now)

    def _send_cancel(self, now: float) -> None:
        if not self._cancel_sent:
            self._cancel_sent = True
            cancel = build_cancel(self.request)
            self.leg.layer.send_request(cancel, self._tx.destination, now, owner=self)

    def _gave_up(self, now: float, _: object) -> None:
        self.leg.layer.abandon(self._tx)
        self._end(self._ending or CallEndReason.CANCELLED, by_remote=False, status=TIMEOUT)

    def _resend(self, now: float, plan: _Resend) -> None:
        self._index, self.transport_failure = plan.target_index, None
        self.target = self._targets[plan.target_index]
        layer, retry = self.leg.layer, plan.credentials
        self.request = resubmit(self.request, layer, target=self.target, credentials=retry)
        self.leg.dialog = dialog_before_answer(self.request, self.target)
        self._invites += 1
        self._sent_at = now
        self._tx = layer.send_request(self.request, self.target, now, owner=self)

    def _unanswered(self, now: float, plan: _Unanswered) -> None:
        self._end(plan.reason, by_remote=plan.by_remote, status=plan.status)

    def _answered(self, now: float, answer: _Answer) -> None:
        self.leg = answer.fork.leg
        ack = answer.fork.send_ack(answer.response.cseq.number)
        timer = negotiate_as_uac(answer.response)
        self._start_session(answer.media, timer, now, peer=answer.response,
                            negotiated=answer.negotiated)  # fmt: skip
        self._emit(CallAnswered(self, ack, answer.negotiated))

    def _ack_and_bye(self, now: float, fork: Fork, response: Response) -> None:
        fork.send_ack(response.cseq.number)
        with contextlib.suppress(RemoteProtocolError):
            fork.leg.send("BYE", now, owner=self)

    def _answered_unusable(self, now: float, arg: tuple[Fork, Response, CallEndReason]) -> None:
        fork, response, reason = arg
        self.leg = fork.leg
        self._ack_and_bye(now, fork, response)
        self._end(reason, by_remote=False)

    def _answered_after_hang_up(self, now: float, arg: tuple[Fork, Response]) -> None:
        fork, response = arg
        self.leg = fork.leg
        self._ack_and_bye(now, fork, response)
        reason = self._ending if self._ending is CallEndReason.RING_TIMEOUT else CallEndReason.BYE
        self._end(reason, by_remote=False)

    def _absorb_2xx(self, now: float, response: Response) -> None:
        """ACK a retransmitted 2xx again; ACK and BYE another fork's (rule 5)."""
        known = self._forks.get(response.to.tag or "")
        if known is not None and known.ack is not None:
            known.send_ack(response.cseq.number)
            return
        fork = self._forks.confirmed(self.request, response, self._tx.destination, answer=False)
        if fork.kept:
            self._ack_and_bye(now, fork, response)
        else:
            fork.send_ack(response.cseq.number)

    _TRANSITIONS: ClassVar[Transitions] = {
        **InviteSession._SESSION_TRANSITIONS,
        (P, I.HANG_UP): (_on_hang_up, P),  # remembered: no CANCEL before a 1xx (§9.1)
        (E, I.HANG_UP): (_on_hang_up, E),
        (P, I.RING_TIMEOUT): (_on_ring_timeout, P),
        (E, I.RING_TIMEOUT): (_on_ring_timeout, E),
        (C, I.RING_TIMEOUT): (None, C),
        (T, I.RING_TIMEOUT): (None, T),
        (P, I.RECV_PROVISIONAL): (_provisional, E),
        (E, I.RECV_PROVISIONAL): (_provisional, E),
        (C, I.RECV_PROVISIONAL): (None, C),  # late, or from another fork: nothing to do
        (T, I.RECV_PROVISIONAL): (None, T),
        (P, I.RECV_2XX): (_answered, C),
        (E, I.RECV_2XX): (_answered, C),
        (C, I.RECV_2XX): (_absorb_2xx, C),
        (T, I.RECV_2XX): (_absorb_2xx, T),
        (P, I.RECV_2XX_AFTER_HANG_UP): (_answered_after_hang_up, T),
        (E, I.RECV_2XX_AFTER_HANG_UP): (_answered_after_hang_up, T),
        (P, I.RECV_2XX_UNUSABLE): (_answered_unusable, T),
        (E, I.RECV_2XX_UNUSABLE): (_answered_unusable, T),
        (P, I.RECV_FINAL): (_unanswered, T),
        (E, I.RECV_FINAL): (_unanswered, T),
        (P, I.INVITE_FAILED): (_unanswered, T),
        (E, I.INVITE_FAILED): (_unanswered, T),
        (P, I.RESEND): (_resend, P),
        (E, I.RESEND): (_resend, P),
        (P, I.CANCEL_TIMEOUT): (_gave_up, T),
        (E, I.CANCEL_TIMEOUT): (_gave_up, T),
        (P, I.RECV_BYE): (InviteSession._answer_bye, P),  # §15: not the callee's to send yet
        (E, I.RECV_BYE): (InviteSession._answer_bye, E),
    }
