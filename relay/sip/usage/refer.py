"""The transferor's REFER: a REFER sent in a call's dialog and the subscription it implies.

RFC 3515, RFC 6665 §4.1 (the subscriber), RFC 5589 §6-§7. Theory of operation
=============================================================================

1. :func:`send_refer` sends a REFER in the dialog of a confirmed
   :class:`~relay.sip.usage.invite_session.InviteSession` and returns the
   :class:`ReferSubscription` it creates, a usage bound to that dialog after the session (RFC
   5057: the dialog now carries two usages). The REFER has the dialog's next CSeq, its Route
   set, exactly one ``Refer-To`` (written with ``syntax/refer_to.py``), our Contact and the
   application's extra ``X-`` header fields (and ``Referred-By``, RFC 3892). A 401/407 is
   answered with the session's digest (``InviteSession.digest``: an outgoing call's
   credentials) and the REFER is sent again with CSeq + 1, at most :data:`MAX_REFERS` times.
2. The REFER's final response: a 2xx (202 Accepted) raises :class:`ReferAccepted`; a 300-699,
   a timeout (408) or a transport failure (503) raises :class:`ReferFailed` and ends the
   subscription (RFC 3261 §8.1.3.1's statuses for a response we make up ourselves).
3. NOTIFYs in the dialog (RFC 3515 §2.4.4-§2.4.6): a NOTIFY is ours when its ``Event`` is
   ``refer`` and its ``id`` is our REFER's CSeq number, or absent; any other NOTIFY is left
   to the dialog's other usages (none takes it: 481, RFC 6665 §4.1.3). Ours is answered 200,
   or 500 (CSeq out of order), 400 (no ``Subscription-State``, or a body that is not a
   sipfrag Status-Line), 415 (not ``message/sipfrag``). A 1xx sipfrag raises
   :class:`ReferProgress`; a 2xx one :class:`ReferSucceeded`; a 300-699 one
   :class:`ReferFailed` with that status. ``Subscription-State: terminated`` before any final
   sipfrag is a failure with 408. A NOTIFY before the REFER's 2xx means the REFER was accepted
   (RFC 6665 §4.1.2.4): :class:`ReferAccepted` comes first, with ``status`` ``None``.
4. Bound: without a final sipfrag ``notify_timeout_s`` after the REFER was sent, the transfer
   has failed (:class:`ReferFailed`, 408). Once it has an outcome the subscription is finished
   and forgotten: a later NOTIFY for it gets 481, which tells the notifier it is gone.
5. The states are a table, ``_TRANSITIONS[(state, input)] = (action, next state)``; inputs
   the RFC says to absorb (a 2xx after the outcome, a late timer) have explicit no-op rows.
Every subscription's events end with exactly one :class:`ReferSucceeded` or
:class:`ReferFailed`; each names the subscription, whose ``session`` is the call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from relay.sip.digest import DigestSession, Retry
from relay.sip.errors import LocalProtocolError, RemoteProtocolError, SipParseError
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.sipfrag import (
    SIPFRAG,
    SipFragStatus,
    is_sipfrag,
    parse_event,
    parse_sipfrag,
    parse_subscription_state,
)
from relay.sip.transaction.layer import ClientTransaction, ServerTransaction
from relay.sip.usage.call_state import CallState
from relay.sip.usage.invite_request import check_text, checked_extra_headers
from relay.sip.usage.invite_session import InviteSession
from relay.sip.usage.leg import Leg

if TYPE_CHECKING:
    from relay.sip.endpoint import SipEndpoint

__all__ = [
    "MAX_REFERS",
    "ReferAccepted",
    "ReferEvent",
    "ReferFailed",
    "ReferProgress",
    "ReferState",
    "ReferSubscription",
    "ReferSucceeded",
    "send_refer",
]

MAX_REFERS = 4
"""Most REFERs one transfer sends: the first and the ones answering challenges (rule 1)."""
TIMEOUT, UNAVAILABLE = 408, 503  # RFC 3261 §8.1.3.1


class ReferState(Enum):
    """Where a transfer stands (rule 5)."""

    REFERRING = "Referring"
    """The REFER is sent, nothing says it was accepted."""
    ACCEPTED = "Accepted"
    """A 2xx or a NOTIFY came; no final sipfrag yet."""
    TERMINATED = "Terminated"
    """The outcome is known (or the bound ran out)."""


class _Input(Enum):
    REFER_ACCEPTED = "2xx to REFER"
    REFER_FAILED = "REFER failed"
    NOTIFY_PROGRESS = "NOTIFY 1xx"
    NOTIFY_FINAL = "NOTIFY final"
    NOTIFY_TERMINATED = "NOTIFY terminated without a final"
    TIMEOUT = "notify timeout"


class _AboutCall:
    """What every transfer event has: the subscription, and through it the call."""

    __slots__ = ()
    subscription: ReferSubscription

    @property
    def session(self) -> InviteSession:
        """The call the REFER was sent in."""
        return self.subscription.session


@dataclass(frozen=True, slots=True)
class ReferAccepted(_AboutCall):
    """The far end accepted our REFER (202), or notified before answering it (rule 3)."""

    subscription: ReferSubscription
    status: int | None
    """The 2xx's status; ``None`` when a NOTIFY came before it (RFC 6665 §4.1.2.4)."""


@dataclass(frozen=True, slots=True)
class ReferProgress(_AboutCall):
    """A NOTIFY told a provisional status of the referred request (100 Trying, 180...)."""

    subscription: ReferSubscription
    status: int


@dataclass(frozen=True, slots=True)
class ReferSucceeded(_AboutCall):
    """A NOTIFY's sipfrag said 2xx: the transferee reached the target (RFC 5589 §6)."""

    subscription: ReferSubscription
    status: int


@dataclass(frozen=True, slots=True)
class ReferFailed(_AboutCall):
    """The transfer failed: REFER refused or unanswered, a failure sipfrag, or no outcome."""

    subscription: ReferSubscription
    status: int
    """The REFER's final response, the sipfrag's status, or 408/503 made up (rules 2-4)."""
    reason: str
    """Why, for the log and the agent: the reason phrase, or what was missing."""


ReferEvent: TypeAlias = ReferAccepted | ReferProgress | ReferSucceeded | ReferFailed
R, A, T = ReferState.REFERRING, ReferState.ACCEPTED, ReferState.TERMINATED
_Action: TypeAlias = Callable[[Any, Any], None]


class ReferSubscription:
    """One REFER we sent and the implicit subscription it created (rules 1 to 5)."""

    def __init__(
        self,
        session: InviteSession,
        *,
        leg: Leg,
        emit: Callable[[ReferEvent], None],
        refer_to: str,
        headers: Sequence[tuple[str, str]] = (),
        now: float,
        notify_timeout_s: float,
    ) -> None:
        if session.state is not CallState.CONFIRMED:
            raise LocalProtocolError(f"REFER needs a confirmed call, not {session.state.value}")
        check_text("Refer-To", refer_to)
        self.session = session
        self.leg = leg
        self.refer_to = refer_to
        self._headers = (
            ("Refer-To", refer_to),
            ("Contact", str(leg.dialog.local_contact)),
            *_checked(headers),
        )
        self._emit = emit
        self._digest: DigestSession | None = session.digest
        self._state = R
        self._deadline: float | None = now + notify_timeout_s
        self._timeout_s = notify_timeout_s
        self._refers = 0
        self.finished = False
        """Set once the outcome is known: the endpoint then forgets the subscription."""
        self._tx = self._send(now, ())

    @property
    def state(self) -> ReferState:
        """Where the transfer stands."""
        return self._state

    @property
    def id(self) -> str:
        """The subscription's id: the CSeq number of the REFER last sent (RFC 3515 §2.4.6)."""
        return str(self._tx.request.cseq.number)

    @property
    def request(self) -> Request:
        """The REFER as last sent."""
        return self._tx.request

    def _send(self, now: float, credentials: Sequence[tuple[str, str]]) -> ClientTransaction:
        self._refers += 1
        headers = (*self._headers, *credentials)
        try:
            return self.leg.send("REFER", now, owner=self, headers=headers)
        except RemoteProtocolError as err:
            raise LocalProtocolError(f"cannot send REFER: {err.message}") from None

    # --- what the endpoint feeds in (the Usage protocol) ---------------------------------

    def receive_request(self, request: Request, tx: ServerTransaction, now: float) -> bool:
        """Take a NOTIFY of this subscription (rule 3); leave any other request."""
        if request.method != "NOTIFY" or self._state is T or not self._names_us(request):
            return False
        tx.owner = self
        if not self.leg.dialog.accept_cseq(request):
            self.leg.respond(tx, 500, now, reason="CSeq Out Of Order")
            return True
        try:
            frag, terminated = self._read_notify(request)
        except SipParseError as err:
            accept = (("Accept", SIPFRAG),) if err.status_hint == 415 else ()
            self.leg.respond(tx, err.status_hint, now, reason=err.message, headers=accept)
            return True
        self.leg.respond(tx, 200, now)
        if self._state is R:
            self._emit(ReferAccepted(self, None))
        if frag.final:
            self._handle(_Input.NOTIFY_FINAL, frag)
        elif terminated:
            self._handle(_Input.NOTIFY_TERMINATED, frag)
        else:
            self._handle(_Input.NOTIFY_PROGRESS, frag)
        return True

    def _names_us(self, notify: Request) -> bool:
        value = notify.headers.get("Event")
        if value is None:
            return False
        try:
            event = parse_event(value)
        except SipParseError:
            return False
        return event.package == "refer" and event.id in (None, self.id)

    @staticmethod
    def _read_notify(notify: Request) -> tuple[SipFragStatus, bool]:
        """Return the NOTIFY's sipfrag status and whether it ends the subscription."""
        state = notify.headers.get("Subscription-State")
        if state is None:
            raise SipParseError("Missing Subscription-State header field")
        terminated = parse_subscription_state(state).terminated
        if not is_sipfrag(notify.content_type):
            raise SipParseError("Unsupported Media Type", status_hint=415)
        return parse_sipfrag(notify.body), terminated

    def receive_ack(self, ack: Request, now: float) -> bool:
        """ACKs are the INVITE session's, never ours."""
        return False

    def receive_response(
        self, response: Response, tx: ClientTransaction | None, now: float
    ) -> bool:
        """Take a response to our REFER (rules 1, 2); stray 2xx belong to the session."""
        if tx is None:
            return False
        if tx is not self._tx or response.status < 200:
            return True  # a 1xx, or the answer to a REFER already resent
        if self._digest is not None:
            verdict = self._digest.on_response(response, tx.request)
            if isinstance(verdict, Retry) and self._refers < MAX_REFERS and self._state is R:
                self._resend(verdict, now)
                return True
        if response.status < 300:
            self._handle(_Input.REFER_ACCEPTED, response.status)
        else:
            self._handle(_Input.REFER_FAILED, (response.status, response.reason))
        return True

    def _resend(self, retry: Retry, now: float) -> None:
        self.leg.touch(self)
        try:
            self._tx = self._send(now, retry.headers)
        except LocalProtocolError as err:  # the dialog's next hop became unroutable
            self._handle(_Input.REFER_FAILED, (UNAVAILABLE, err.message))

    def transaction_failed(self, tx: ServerTransaction | ClientTransaction, now: float) -> None:
        """Take Timer F or a transport failure of our REFER (rule 2)."""
        if tx is self._tx:
            failed = (TIMEOUT, "REFER timed out") if tx.failure is None else (
                UNAVAILABLE, f"REFER not sent: {tx.failure.value}")  # fmt: skip
            self._handle(_Input.REFER_FAILED, failed)

    def get_timer(self) -> float | None:
        """Return when the transfer fails for want of a final NOTIFY (rule 4)."""
        return self._deadline

    def handle_timer(self, now: float) -> None:
        """Fail the transfer when no final NOTIFY came in time (rule 4)."""
        if self._deadline is not None and self._deadline <= now:
            self._handle(_Input.TIMEOUT, None)

    # --- the table (rule 5) ---------------------------------------------------------------

    def _handle(self, event: _Input, arg: object) -> None:
        self.leg.touch(self)
        entry = self._TRANSITIONS.get((self._state, event))
        if entry is None:
            raise LocalProtocolError(f"REFER: {event.value} in state {self._state.value}")
        action, next_state = entry
        if action is not None:
            action(self, arg)
        self._state = next_state
        if next_state is T:
            self._deadline = None
            self.finished = True

    def _accepted(self, status: int) -> None:
        self._emit(ReferAccepted(self, status))

    def _failed(self, failure: tuple[int, str]) -> None:
        self._emit(ReferFailed(self, *failure))

    def _progress(self, frag: SipFragStatus) -> None:
        self._emit(ReferProgress(self, frag.status))

    def _final(self, frag: SipFragStatus) -> None:
        if frag.status < 300:
            self._emit(ReferSucceeded(self, frag.status))
        else:
            self._emit(ReferFailed(self, frag.status, frag.reason))

    def _ended_early(self, frag: SipFragStatus) -> None:
        reason = f"subscription terminated at {frag.status} {frag.reason}".rstrip()
        self._emit(ReferFailed(self, TIMEOUT, reason))

    def _timed_out(self, _: None) -> None:
        self._emit(ReferFailed(self, TIMEOUT, f"no final NOTIFY within {self._timeout_s:g} s"))

    _TRANSITIONS: ClassVar[dict[tuple[ReferState, _Input], tuple[_Action | None, ReferState]]] = {
        (R, _Input.REFER_ACCEPTED): (_accepted, A),
        (A, _Input.REFER_ACCEPTED): (None, A),  # a NOTIFY came first (rule 3)
        (T, _Input.REFER_ACCEPTED): (None, T),  # the outcome came first
        (R, _Input.REFER_FAILED): (_failed, T),
        (A, _Input.REFER_FAILED): (_failed, T),  # RFC 6665 §4.1.2.4: a failure ends it
        (T, _Input.REFER_FAILED): (None, T),
        (R, _Input.NOTIFY_PROGRESS): (_progress, A),
        (A, _Input.NOTIFY_PROGRESS): (_progress, A),
        (R, _Input.NOTIFY_FINAL): (_final, T),
        (A, _Input.NOTIFY_FINAL): (_final, T),
        (R, _Input.NOTIFY_TERMINATED): (_ended_early, T),
        (A, _Input.NOTIFY_TERMINATED): (_ended_early, T),
        (R, _Input.TIMEOUT): (_timed_out, T),
        (A, _Input.TIMEOUT): (_timed_out, T),
        (T, _Input.TIMEOUT): (None, T),
    }


def _checked(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return ``headers`` once each is an ``X-`` field or ``Referred-By`` without controls."""
    referred_by = [(n, v) for n, v in headers if n.lower() == "referred-by"]
    others = [(n, v) for n, v in headers if n.lower() != "referred-by"]
    for _, value in referred_by:
        check_text("Referred-By", value)
    return [*checked_extra_headers(others), *referred_by]


def send_refer(
    endpoint: SipEndpoint,
    session: InviteSession,
    refer_to: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    now: float,
    notify_timeout_s: float,
) -> ReferSubscription:
    """Send a REFER in ``session``'s dialog and return the subscription it starts (rule 1).

    ``refer_to`` is the whole ``Refer-To`` value (``syntax/refer_to.py``'s
    ``format_refer_to``); ``headers`` are extra ``X-`` fields or ``Referred-By``. The
    outcome comes as events from the endpoint's ``next_event`` (rules 2 to 4).

    Raises:
        LocalProtocolError: the call is not confirmed, a value cannot go on the wire, or the
            dialog's next hop is not routable.
    """
    dialog = session.dialog
    subscription = ReferSubscription(
        session, leg=endpoint.new_leg(dialog), emit=endpoint.emit, refer_to=refer_to,
        headers=headers, now=now, notify_timeout_s=notify_timeout_s,
    )  # fmt: skip
    endpoint.bind_dialog(dialog, subscription)
    return subscription
