"""What the SIP endpoint tells the application: past-tense facts, drained with ``next_event()``.

:data:`Event` is every one of them: the endpoint's own (below) and the calls' events, defined
beside the INVITE session that raises them (``usage/invite_session.py``: ``CallAnswered``,
``CallEnded``...), and the transfers' events beside the REFER usages (``usage/refer.py``:
``ReferAccepted``... ``ReferFailed``; ``usage/refer_server.py``: ``ReferReceived``). Every :class:`IncomingCallReceived` is followed, sooner or later, by exactly
one ``CallEnded`` for the same call; the events in between say what happened to it. Events
name the call they concern, so the application answers on the object it was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from relay.sip.address import Address
from relay.sip.sdp.description import SessionDescription
from relay.sip.stateless import Refusal
from relay.sip.syntax.message import Request
from relay.sip.usage.incoming import IncomingCall
from relay.sip.usage.invite_session import CallEvent
from relay.sip.usage.refer import ReferEvent
from relay.sip.usage.refer_server import ReferReceived

__all__ = [
    "BadRequestRejected",
    "Event",
    "IncomingCallReceived",
    "InviteRefused",
    "ParseErrorDropped",
]


@dataclass(frozen=True, slots=True)
class IncomingCallReceived:
    """A new INVITE arrived; 100 Trying is already sent. Answer on ``call``."""

    call: IncomingCall
    request: Request
    """The INVITE, its top Via stamped with received/rport."""
    offer: SessionDescription | None
    """The caller's SDP offer, or ``None`` for a late offer (the 200 must then offer)."""


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
    | CallEvent
    | ReferEvent
    | ReferReceived
    | ParseErrorDropped
    | BadRequestRejected
    | InviteRefused
)
