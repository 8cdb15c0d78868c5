"""Changing an established session: re-INVITE and UPDATE both ways, and session timers.

RFC 3261 §14, RFC 3311, RFC 4028. Theory of operation
=====================================================

1. From the 2xx on, :class:`SessionUpdates` owns the call's media state
   (:class:`~relay.sip.sdp.media_session.MediaSession`) and its session timer. The INVITE
   session (``invite_session.py``) hands it every re-INVITE and UPDATE once the call is
   confirmed, the ACKs that are not the INVITE's, and the responses to the requests it sent;
   it answers, and returns a :class:`~relay.sip.usage.call_state.CallEndReason` when the
   session must end with BYE. It knows the session only through what it is given: the leg,
   the usage that owns its requests, whether the peer allows UPDATE, and two callables for
   what it observed (a request answered, the media changed), which the session turns into
   its events.
2. A re-offer is answered automatically from the negotiated media: hold (sendonly/inactive)
   gets recvonly/inactive, unhold gets sendrecv, the codec in use stays first; no common codec
   gets 488 with a Warning and the session goes on unchanged (§14.2). A re-INVITE without SDP
   gets a fresh offer in the 2xx and its answer comes in the ACK; an UPDATE without SDP is a
   plain refresh (RFC 4028 §7.4). Every answered request refreshes the session timer.
3. Overlap (§14.1, §14.2, RFC 3311 §5.2): an INVITE while our INVITE is pending, or an offer
   while our offer is unanswered, gets 491; a request while the peer's previous re-INVITE
   still awaits its ACK gets 500 with a Retry-After of 0 to 10 s.
4. Our 2xx to a re-INVITE is resent until its ACK like the first one (§13.3.1.4); giving up
   ends nothing (the session lives on its old state).
5. When we refresh (RFC 4028 §10): at half the interval we send UPDATE if the peer allows
   it, else a re-INVITE offering our current SDP unchanged; the 2xx settles the interval. A
   491 retries after 0 to 2 s (we do not own the Call-ID, §14.1), a 422 retries at once with
   the larger Min-SE, a 405/501 to UPDATE retries with re-INVITE, and 408, 481 or no answer
   end the call (§12.2.1.2). Without a successful refresh the expiry ends the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

from relay.ids import IdSource
from relay.sip.errors import RemoteProtocolError, SipParseError
from relay.sip.sdp.description import SessionDescription
from relay.sip.sdp.fields import SdpParseError
from relay.sip.sdp.media_session import MediaSession
from relay.sip.sdp.offer_answer import AnswerError, NegotiatedMedia, NoCommonCodec
from relay.sip.syntax.message import Request, Response
from relay.sip.transaction.layer import ClientTransaction, ServerTransaction, Usage
from relay.sip.usage.call_state import CallEndReason
from relay.sip.usage.leg import SDP, Leg, UnacknowledgedAnswer
from relay.sip.usage.session_timer import (
    SessionTimer,
    SessionTimerTooSmall,
    negotiate_as_uas,
    raised_min_se,
    read_refresh_response,
    refresh_request_headers,
)

__all__ = ["SessionUpdates", "parse_sdp_body", "retry_after_s"]

MAX_RETRY_AFTER_S = 10  # RFC 3261 §14.2: "a randomly chosen value between 0 and 10 seconds"
GLARE_BACKOFF_STEPS = 200  # RFC 3261 §14.1: 0 to 2 s "in units of 10 ms"
GLARE_BACKOFF_STEP_S = 0.01
_SESSION_ENDING = frozenset({408, 481})  # RFC 3261 §12.2.1.2


def retry_after_s(ids: IdSource) -> int:
    """Return a Retry-After for a 500 to an overlapping request: 0 to 10 s (§14.2)."""
    return ids.bits(16) % (MAX_RETRY_AFTER_S + 1)


def parse_sdp_body(message: Request | Response) -> SessionDescription | None:
    """Return the message's SDP body, or ``None`` when it has none or it does not parse."""
    if not message.body or message.content_type != SDP:
        return None
    try:
        return SessionDescription.parse(message.body)
    except (SdpParseError, ValueError):
        return None


@dataclass(slots=True)
class _Incoming:
    """The peer's re-INVITE whose 2xx awaits its ACK."""

    answer: UnacknowledgedAnswer
    offered: bool
    """Whether our 2xx carried an offer (the ACK must then answer it)."""


@dataclass(slots=True)
class _Outgoing:
    """Our refresh in progress."""

    tx: ClientTransaction
    offered: bool
    """Whether it carried an offer (a re-INVITE)."""


class SessionUpdates:
    """The established session of one call: media, timers, re-INVITE and UPDATE (rules 1-5)."""

    def __init__(
        self,
        leg: Leg,
        media: MediaSession,
        timer: SessionTimer | None,
        now: float,
        *,
        owner: Usage,
        peer_allows_update: bool,
        on_answered: Callable[[Request, int], None],
        on_media: Callable[[NegotiatedMedia], None],
    ) -> None:
        """Take over the session established at ``now``.

        Args:
            owner: the usage that owns the refreshes we send (their responses go to it).
            peer_allows_update: whether the peer's ``Allow`` lists UPDATE (we refresh with it).
            on_answered: told every re-INVITE or UPDATE of the peer and the status we answered.
            on_media: told the media each time offer and answer agree on a change.
        """
        self._leg = leg
        self._owner = owner
        self._on_answered = on_answered
        self._on_media = on_media
        self.media = media
        self.negotiated: NegotiatedMedia | None = None
        self.timer = timer
        self._refreshed_at = now
        self._incoming: _Incoming | None = None
        self._outgoing: _Outgoing | None = None
        self._retry_at: float | None = None
        self._use_update = peer_allows_update
        self._last_ack: Request | None = None
        self._answered_media: NegotiatedMedia | None = None

    # --- the peer's requests (rules 2 to 4) -----------------------------------------------

    def receive(self, request: Request, tx: ServerTransaction, now: float) -> None:
        """Answer a re-INVITE or an UPDATE on the confirmed call."""
        self._answered_media = None
        status = self._answer(request, tx, now)
        self._on_answered(request, status)
        if self._answered_media is not None:
            self._media_changed(self._answered_media)

    def _answer(self, request: Request, tx: ServerTransaction, now: float) -> int:
        has_body = bool(request.body)
        if has_body and request.content_type != SDP:
            return self._respond(tx, 415, now, headers=(("Accept", SDP),))
        outgoing = self._outgoing
        if outgoing is not None and (
            (request.method == "INVITE" and outgoing.tx.request.method == "INVITE")
            or (has_body and outgoing.offered)
        ):
            return self._respond(tx, 491, now)
        if self._incoming is not None:
            retry = ("Retry-After", str(retry_after_s(self._leg.ids)))
            return self._respond(tx, 500, now, headers=(retry,))
        try:
            timer = negotiate_as_uas(request, self._leg.settings.session_timer)
        except SipParseError as err:
            return self._respond(tx, 400, now, reason=err.message)
        if isinstance(timer, SessionTimerTooSmall):
            return self._respond(tx, 422, now, headers=timer.headers)
        return self._offer_answer(request, tx, timer, now)

    def _offer_answer(
        self, request: Request, tx: ServerTransaction, timer: SessionTimer | None, now: float
    ) -> int:
        media = self.media
        sdp = b""
        offered = False
        if request.body:
            offer = parse_sdp_body(request)
            if offer is None:
                return self._respond(tx, 400, now, reason="Malformed SDP body")
            result = media.answer(offer)
            if isinstance(result, NoCommonCodec):
                warning = ("Warning", result.warning_header(self._leg.settings.user_agent))
                return self._respond(tx, result.status_code, now, headers=(warning,))
            media, answer = result
            sdp, self._answered_media = bytes(answer.sdp), answer.media
        elif request.method == "INVITE":
            media = media.fresh_offer()
            sdp, offered = bytes(media.local), True
        self.media = media
        self._leg.dialog.refresh_target(request)
        headers = timer.response_headers if timer is not None else ()
        response = self._leg.respond(tx, 200, now, headers=headers, sdp=sdp)
        self._restart_timer(timer, now)
        if request.method == "INVITE":
            answer_retry = UnacknowledgedAnswer.start(tx, response, self._leg.timers, now)
            self._incoming = _Incoming(answer_retry, offered)
        return 200

    def _respond(
        self,
        tx: ServerTransaction,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> int:
        self._leg.respond(tx, status, now, reason=reason, headers=headers)
        return status

    def receive_ack(self, ack: Request, now: float) -> bool:
        """Take the ACK to our 2xx to a re-INVITE; return whether it was one."""
        incoming = self._incoming
        if incoming is None or ack.cseq.number != incoming.answer.cseq:
            return False
        self._incoming = None
        if incoming.offered:
            answer = parse_sdp_body(ack)
            if answer is not None:
                try:
                    self.media, media = self.media.answered(answer)
                except AnswerError:
                    return True  # keep the old media; the peer may re-offer
                self._media_changed(media)
        return True

    def complete_late_offer(
        self, answer: SessionDescription | None, now: float
    ) -> NegotiatedMedia | None:
        """Read the ACK's answer to the offer in our first 2xx; ``None`` if unusable."""
        if answer is None:
            return None
        try:
            self.media, media = self.media.answered(answer)
        except AnswerError:
            return None
        self.negotiated = media
        return media

    def _media_changed(self, media: NegotiatedMedia) -> None:
        if media != self.negotiated:
            self.negotiated = media
            self._on_media(media)

    # --- our refreshes (rule 5) -----------------------------------------------------------

    def _refresh(self, now: float) -> CallEndReason | None:
        timer = self.timer
        assert timer is not None
        self._retry_at = None
        headers = (
            ("Supported", "timer"),
            *refresh_request_headers(timer.interval_s, self._leg.settings.session_timer),
        )
        try:
            if self._use_update:
                tx = self._leg.send("UPDATE", now, owner=self._owner, headers=headers)
                self._outgoing = _Outgoing(tx, offered=False)
            else:
                sdp = bytes(self.media.current_offer())
                tx = self._leg.send("INVITE", now, owner=self._owner, headers=headers, sdp=sdp)
                self._outgoing = _Outgoing(tx, offered=True)
        except RemoteProtocolError:
            return CallEndReason.REQUEST_FAILED
        return None

    def receive_response(
        self, response: Response, tx: ClientTransaction | None, now: float
    ) -> CallEndReason | None:
        """Take a response to our refresh; return a reason when the call must end."""
        if self._outgoing is None or tx is not self._outgoing.tx:
            last = self._last_ack
            if (
                last is not None
                and 200 <= response.status < 300
                and (response.cseq.method == "INVITE" and response.cseq.number == last.cseq.number)
            ):
                self._reack()  # a 2xx retransmitted after our ACK (§13.2.2.4)
            return None
        if response.status < 200:
            return None
        self._outgoing = None
        if response.status < 300:
            self._refreshed(response, tx, now)
            return None
        return self._refresh_failed(response, tx, now)

    def _refreshed(self, response: Response, tx: ClientTransaction, now: float) -> None:
        if tx.request.method == "INVITE":
            self._last_ack, _ = self._leg.send_ack(response.cseq.number)
            answer = parse_sdp_body(response)
            if answer is not None:
                try:
                    self.media, media = self.media.answered(answer)
                    self._media_changed(media)
                except AnswerError:
                    pass  # RFC 3264 §8: a bad answer leaves the old session in place
        if self.timer is not None:
            with contextlib.suppress(SipParseError):  # a malformed one keeps our timer
                self.timer = read_refresh_response(response, self.timer)
        self._leg.dialog.refresh_target(response)
        self._refreshed_at = now

    def _refresh_failed(
        self, response: Response, tx: ClientTransaction, now: float
    ) -> CallEndReason | None:
        status = response.status
        if status in _SESSION_ENDING:
            return CallEndReason.REQUEST_FAILED
        if status == 491:
            steps = self._leg.ids.bits(16) % (GLARE_BACKOFF_STEPS + 1)
            self._retry_at = now + steps * GLARE_BACKOFF_STEP_S
        elif status == 422 and self.timer is not None:
            interval = raised_min_se(response, self.timer.interval_s)
            self.timer = replace(self.timer, interval_s=interval)
            self._retry_at = now
        elif status in (405, 501) and tx.request.method == "UPDATE":
            self._use_update = False
            self._retry_at = now
        return None  # otherwise the session lives on until it expires

    def transaction_failed(self, tx: ClientTransaction) -> CallEndReason | None:
        """Take a timeout or transport failure; a failed refresh ends the call (§12.2.1.2)."""
        if self._outgoing is None or tx is not self._outgoing.tx:
            return None
        self._outgoing = None
        return CallEndReason.REQUEST_FAILED

    def _reack(self) -> None:
        if self._last_ack is not None:
            self._leg.layer.send_stateless(self._last_ack, self._leg.dialog.destination())

    def _restart_timer(self, timer: SessionTimer | None, now: float) -> None:
        if timer is not None:
            self.timer = timer
        self._refreshed_at = now

    # --- time -----------------------------------------------------------------------------

    def _refresh_due_at(self) -> float | None:
        if self.timer is None or self._outgoing is not None or self._incoming is not None:
            return None
        if self._retry_at is not None:
            return self._retry_at
        return self.timer.refresh_at(self._refreshed_at)

    def get_timer(self) -> float | None:
        """Return the earliest deadline: a refresh, the expiry, a 2xx retransmission."""
        deadlines = [self._refresh_due_at()]
        if self.timer is not None:
            deadlines.append(self.timer.expires_at(self._refreshed_at))
        if self._incoming is not None:
            deadlines.append(self._incoming.answer.deadline())
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> CallEndReason | None:
        """Fire what is due; return a reason when the session must end."""
        incoming = self._incoming
        if incoming is not None:
            incoming.answer.retransmit_if_due(self._leg.layer, self._leg.timers, now)
            if incoming.answer.given_up(now):
                self._incoming = None  # rule 4: the session lives on
        if self.timer is not None and self.timer.expires_at(self._refreshed_at) <= now:
            return CallEndReason.SESSION_EXPIRED
        due = self._refresh_due_at()
        if due is not None and due <= now:
            return self._refresh(now)
        return None
