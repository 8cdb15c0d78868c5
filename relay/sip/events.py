"""What the SIP endpoint tells the application: past-tense facts, drained with ``next_event()``.

Every :class:`IncomingCallReceived` is followed, sooner or later, by exactly one
:class:`CallEnded` for the same call; the events in between say what happened to it. Events
name the :class:`~relay.sip.usage.incoming.IncomingCall` they concern, so the application
answers on the object it was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, TypeAlias

from relay.sip.address import Address
from relay.sip.sdp.description import SessionDescription
from relay.sip.sdp.offer_answer import NegotiatedMedia
from relay.sip.stateless import Refusal
from relay.sip.syntax.message import Request

if TYPE_CHECKING:
    from relay.sip.usage.incoming import IncomingCall

__all__ = [
    "BadRequestRejected",
    "CallAnswered",
    "CallCancelled",
    "CallEndReason",
    "CallEnded",
    "Event",
    "IncomingCallReceived",
    "InfoReceived",
    "InviteRefused",
    "MediaUpdated",
    "ParseErrorDropped",
    "ReInviteReceived",
]


class CallEndReason(StrEnum):
    """Why a call ended, in SIP terms (the glue maps it to the events contract)."""

    CANCELLED = "cancelled"
    """The caller sent CANCEL before our final response (RFC 3261 §9.2)."""
    REJECTED = "rejected"
    """We answered the INVITE with 300-699 (the decision, a 503, a 488...)."""
    BYE = "bye"
    """A BYE ended it (``by_remote`` says whose)."""
    ACK_TIMEOUT = "ack_timeout"
    """Our 2xx was never acknowledged within 64*T1; we sent BYE (RFC 3261 §13.3.1.4)."""
    SESSION_EXPIRED = "session_expired"
    """No session refresh in time; we sent BYE (RFC 4028 §10)."""
    REQUEST_FAILED = "request_failed"
    """An in-dialog request of ours got 408 or 481 or timed out; we sent BYE (§12.2.1.2)."""
    TRANSACTION_FAILED = "transaction_failed"
    """The INVITE transaction failed (transport error) before a final response."""
    MEDIA_FAILED = "media_failed"
    """The ACK to our late-offer 2xx carried no usable answer; we sent BYE (§13.3.1.4)."""


@dataclass(frozen=True, slots=True)
class IncomingCallReceived:
    """A new INVITE arrived; 100 Trying is already sent. Answer on ``call``."""

    call: IncomingCall
    request: Request
    """The INVITE, its top Via stamped with received/rport."""
    offer: SessionDescription | None
    """The caller's SDP offer, or ``None`` for a late offer (the 200 must then offer)."""


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """The caller acknowledged our 2xx: the call is established (RFC 3261 §13.3.1.4)."""

    call: IncomingCall
    ack: Request
    media: NegotiatedMedia | None
    """The call's media: settled by the ACK's answer for a late offer, else what ``accept()``
    was told (``None`` if it was not told)."""


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """The caller cancelled before our final response; 487 and 200 (to CANCEL) are sent."""

    call: IncomingCall
    cancel: Request


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over; the last event about it."""

    call: IncomingCall
    reason: CallEndReason
    by_remote: bool
    """Whether the peer ended it (BYE, CANCEL) rather than we (reject, hang-up, a timer)."""
    status: int | None = None
    """The final response we sent when the call ended unanswered (487, the rejection...)."""


@dataclass(frozen=True, slots=True)
class ReInviteReceived:
    """The peer sent a re-INVITE or an UPDATE within the call, and we answered it."""

    call: IncomingCall
    request: Request
    status: int
    """What we answered: 200, 488 (no common codec), 491 or 500 (pending), 422..."""


@dataclass(frozen=True, slots=True)
class MediaUpdated:
    """Offer and answer agreed on new media within the call (hold, unhold, a new codec...)."""

    call: IncomingCall
    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class InfoReceived:
    """An INFO arrived within the call and was answered 200 (RFC 6086)."""

    call: IncomingCall
    request: Request
    content_type: str | None
    """E.g. ``application/dtmf-relay`` (``Signal=5`` / ``Duration=160`` lines)."""
    body: bytes


@dataclass(frozen=True, slots=True)
class ParseErrorDropped:
    """A message we could not parse, or could not answer, was dropped (and counted)."""

    source: Address | None
    """Where it came from; ``None`` for a field found malformed later, in a stored message."""
    reason: str


@dataclass(frozen=True, slots=True)
class BadRequestRejected:
    """A parseable but unacceptable request got a stateless error response (and was counted)."""

    source: Address
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class InviteRefused:
    """An INVITE was refused before any call existed, with one stateless response (and counted).

    The admission's refusal (the IP guard's 403, the rate limit's 503) or 481 for an INVITE
    naming a dialog that does not exist (``stateless.py``).
    """

    source: Address
    refusal: Refusal


Event: TypeAlias = (
    IncomingCallReceived
    | CallAnswered
    | CallCancelled
    | CallEnded
    | ReInviteReceived
    | MediaUpdated
    | InfoReceived
    | ParseErrorDropped
    | BadRequestRejected
    | InviteRefused
)
