"""How a call ended, and what it costs, from its events: a pure function (docs/webhooks.md, call events).

Theory of operation, over the canonical timeline of :func:`chalicelib.billing.ordered_events`
(deduplicated by ``event_id``, ordered by ``(occurred_at, event_id)``):

1. **Joined** is the first ``AGENT_JOINED``.
2. **Ended** is :func:`chalicelib.billing.call_ended_at`: the first ``REFER_SUCCEEDED``, or the
   moment every started leg (``INVITE_RECEIVED``/``INVITE_SENT`` seen) has a ``LEG_ENDED``.
   While the call is active, ``ended``, ``end_reason`` and ``termination_reason`` are ``None``.
3. **The caller leg** is the leg whose events carry ``leg_role=CALLER`` (the incoming caller or
   the outgoing call's callee), else the first leg seen. Its ``LEG_ENDED`` explains the ending.
4. **End reason**, first rule that applies: the agent never joined -> ``unjoined``; a
   ``REFER_SUCCEEDED`` or a ``BRIDGED`` -> ``transferred``; an ``AGENT_LEFT`` with reason
   ``error`` (the agent's media WebSocket failed) -> ``connection_error``; a call that only the
   control plane's ``CALL_CLOSED`` ended (no relay reported its end) -> ``system_error``;
   otherwise the caller
   leg's end reason through :data:`END_REASONS` (``remote_hangup`` -> ``hangup``,
   ``local_hangup`` -> ``agent_hangup``, ...). A caller leg with no ``LEG_ENDED`` (a lost event)
   -> ``system_error``.
5. **SIP termination reason** (:func:`termination_reason_for`), from the caller leg's end:
   ``REFER_SUCCEEDED`` or ``referred`` -> REFERRED; ``error`` -> ERROR; ``timeout`` -> TIMEOUT;
   a hang-up after the answer -> NORMAL; otherwise the final SIP status (:data:`STATUS_REASONS`,
   any other 3xx-6xx -> UNKNOWN); a hang-up before the answer without a status -> CANCELED.
   A ``LEG_ENDED`` without a reason reads as ``rejected`` when it carries a 3xx-6xx status, else
   as ``remote_hangup``.
6. **Bill** is :func:`chalicelib.billing.bill` over the same events (``until`` is passed through
   and affects only the bill).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from chalicelib.billing import (
    Bill,
    bill,
    call_ended_at,
    first_at,
    ordered_events,
    reported_end_at,
)
from chalicelib.contracts import CallEvent, CallEventType, LegEndReason, LegRole


class EndReason(StrEnum):
    """Why a call ended, from the agent's point of view."""

    UNJOINED = "unjoined"
    HANGUP = "hangup"
    AGENT_HANGUP = "agent_hangup"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    SYSTEM_ERROR = "system_error"
    TRANSFERRED = "transferred"


class SipTerminationReason(StrEnum):
    """How the caller leg ended, in SIP terms."""

    NORMAL = "SIP_TERMINATION_NORMAL"
    INVALID_NUMBER = "SIP_TERMINATION_INVALID_NUMBER"
    TIMEOUT = "SIP_TERMINATION_TIMEOUT"
    DESTINATION_UNAVAILABLE = "SIP_TERMINATION_DESTINATION_UNAVAILABLE"
    BUSY = "SIP_TERMINATION_BUSY"
    CANCELED = "SIP_TERMINATION_CANCELED"
    REJECTED = "SIP_TERMINATION_REJECTED"
    REFERRED = "SIP_TERMINATION_REFERRED"
    ERROR = "SIP_TERMINATION_ERROR"
    UNKNOWN = "SIP_TERMINATION_UNKNOWN"


END_REASONS: dict[LegEndReason, EndReason] = {
    LegEndReason.REMOTE_HANGUP: EndReason.HANGUP,
    LegEndReason.LOCAL_HANGUP: EndReason.AGENT_HANGUP,
    LegEndReason.TIMEOUT: EndReason.TIMEOUT,
    LegEndReason.ERROR: EndReason.SYSTEM_ERROR,
    LegEndReason.REFERRED: EndReason.TRANSFERRED,
    LegEndReason.REJECTED: EndReason.HANGUP,  # the far end refused; not seen once answered
}
"""The call's end reason from its caller leg's end reason (rule 4)."""

STATUS_REASONS: dict[int, SipTerminationReason] = {
    404: SipTerminationReason.INVALID_NUMBER,  # Not Found
    484: SipTerminationReason.INVALID_NUMBER,  # Address Incomplete
    604: SipTerminationReason.INVALID_NUMBER,  # Does Not Exist Anywhere
    408: SipTerminationReason.TIMEOUT,  # Request Timeout
    480: SipTerminationReason.TIMEOUT,  # Temporarily Unavailable (no answer)
    486: SipTerminationReason.BUSY,  # Busy Here
    600: SipTerminationReason.BUSY,  # Busy Everywhere
    487: SipTerminationReason.CANCELED,  # Request Terminated
    502: SipTerminationReason.DESTINATION_UNAVAILABLE,  # Bad Gateway
    503: SipTerminationReason.DESTINATION_UNAVAILABLE,  # Service Unavailable
    504: SipTerminationReason.DESTINATION_UNAVAILABLE,  # Server Time-out
    401: SipTerminationReason.REJECTED,  # Unauthorized: our credentials were refused
    403: SipTerminationReason.REJECTED,  # Forbidden
    407: SipTerminationReason.REJECTED,  # Proxy Authentication Required: refused, likewise
    603: SipTerminationReason.REJECTED,  # Decline
}
"""Final SIP statuses with a termination reason of their own (RFC 3261 §21); any other 3xx-6xx
is UNKNOWN (302, 488, 500, ...): the status itself is in the call's SIP details."""

_HANGUPS = frozenset({LegEndReason.REMOTE_HANGUP, LegEndReason.LOCAL_HANGUP})


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """A call's summary: when the agent joined, when and why it ended, and its bill."""

    joined: datetime | None
    """The first ``AGENT_JOINED``, if any."""
    ended: datetime | None
    """When the call is over (every started leg ended, or REFER succeeded); ``None`` if active."""
    end_reason: EndReason | None
    """Why the call ended; ``None`` while active."""
    termination_reason: SipTerminationReason | None
    """How the caller leg ended in SIP terms; ``None`` while active."""
    bill: Bill


def summarize(events: Iterable[CallEvent], *, until: datetime | None = None) -> CallOutcome:
    """Summarize a call from its events (rules 1-6 of the module docstring).

    Args:
        events: the call's events, in any order, possibly duplicated.
        until: passed to :func:`chalicelib.billing.bill` to bill an active call so far.
    """
    timeline = ordered_events(events)
    ended = call_ended_at(timeline)
    active = ended is None
    return CallOutcome(
        joined=first_at(timeline, CallEventType.AGENT_JOINED),
        ended=ended,
        end_reason=None if active else _end_reason(timeline),
        termination_reason=None if active else _termination_reason(timeline),
        bill=bill(timeline, until=until),
    )


def termination_reason_for(
    reason: LegEndReason | None, sip_status: int | None, *, answered: bool
) -> SipTerminationReason:
    """Map one leg's end to a SIP termination reason (rule 5).

    Args:
        reason: the ``LEG_ENDED`` reason (``None`` if the edge sent none).
        sip_status: the ``LEG_ENDED`` final status, if any.
        answered: whether the leg saw ``ANSWERED`` before it ended.
    """
    reason = _effective_reason(reason, sip_status)
    if reason is LegEndReason.REFERRED:
        return SipTerminationReason.REFERRED
    if reason is LegEndReason.ERROR:
        return SipTerminationReason.ERROR
    if reason is LegEndReason.TIMEOUT:
        return SipTerminationReason.TIMEOUT
    if answered and reason in _HANGUPS:
        return SipTerminationReason.NORMAL
    if sip_status is not None and _is_final_failure(sip_status):
        return STATUS_REASONS.get(sip_status, SipTerminationReason.UNKNOWN)
    if reason is LegEndReason.REJECTED:
        return SipTerminationReason.REJECTED
    return SipTerminationReason.CANCELED  # hung up (either side) before the answer


def _end_reason(timeline: Sequence[CallEvent]) -> EndReason:
    """Return why an ended call ended (rule 4)."""
    if first_at(timeline, CallEventType.AGENT_JOINED) is None:
        return EndReason.UNJOINED
    if reported_end_at(timeline) is None:  # only the control plane's CALL_CLOSED ended it
        return EndReason.SYSTEM_ERROR
    if any(e.type in (CallEventType.REFER_SUCCEEDED, CallEventType.BRIDGED) for e in timeline):
        return EndReason.TRANSFERRED
    if any(e.type is CallEventType.AGENT_LEFT and e.reason is LegEndReason.ERROR for e in timeline):
        return EndReason.CONNECTION_ERROR
    end = _caller_leg_end(timeline)
    if end is None:
        return EndReason.SYSTEM_ERROR
    return END_REASONS[_effective_reason(end.reason, end.sip_status)]


def _termination_reason(timeline: Sequence[CallEvent]) -> SipTerminationReason:
    """Return how an ended call's caller leg ended in SIP terms (rule 5)."""
    if first_at(timeline, CallEventType.REFER_SUCCEEDED) is not None:
        return SipTerminationReason.REFERRED
    end = _caller_leg_end(timeline)
    if end is None:
        return SipTerminationReason.ERROR
    answered = any(e.type is CallEventType.ANSWERED and e.leg_id == end.leg_id for e in timeline)
    return termination_reason_for(end.reason, end.sip_status, answered=answered)


def _caller_leg_end(timeline: Sequence[CallEvent]) -> CallEvent | None:
    """Return the caller leg's first ``LEG_ENDED`` (rule 3), if any."""
    leg_id = _caller_leg_id(timeline)
    return next(
        (e for e in timeline if e.type is CallEventType.LEG_ENDED and e.leg_id == leg_id), None
    )


def _caller_leg_id(timeline: Sequence[CallEvent]) -> str | None:
    """Return the leg marked ``CALLER``, else the first leg seen."""
    legs = [e for e in timeline if e.leg_id is not None]
    marked = next((e for e in legs if e.leg_role is LegRole.CALLER), None)
    first = marked or next(iter(legs), None)
    return None if first is None else first.leg_id


def _effective_reason(reason: LegEndReason | None, sip_status: int | None) -> LegEndReason:
    """Read a missing end reason from the status: a failure is REJECTED, else a remote hang-up."""
    if reason is not None:
        return reason
    if sip_status is not None and _is_final_failure(sip_status):
        return LegEndReason.REJECTED
    return LegEndReason.REMOTE_HANGUP


def _is_final_failure(sip_status: int) -> bool:
    """Return whether ``sip_status`` is a final non-2xx response (3xx-6xx)."""
    return 300 <= sip_status <= 699
