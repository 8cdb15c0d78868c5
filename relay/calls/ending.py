"""How a call ends: the reasons, the wait for the first of them, and the events that say so.

Theory of operation
===================

Once answered, a call runs until the first of five things happens (:func:`until_the_end`):

1. the SIP side ends it (the far end's BYE, a session-timer expiry, an ACK that never came):
   ``CallSignals.ended``; the SIP leg is already over, there is nothing to hang up;
2. the agent leaves (its WebSocket closes or breaks): the bridge task returns;
3. the media ends (no RTP from the far end for 30 s while not on hold);
4. the API hangs up (a ``hangup`` command), or the relay shuts down (``relay/drain.py``);
5. ``maxDuration`` runs out, counted from the answer (the billed time).

:func:`record_the_end` then records it (docs/relay.md, How a call ends): ``agent_left`` with
the :data:`AgentEnd` as ``detail`` (``reason: error`` unless the end is a normal one), then, for
2 to 5, hangs the SIP leg up and records ``leg_ended`` ``local_hangup`` (``timeout`` for 3 and
5); for 1, ``leg_ended`` from the SIP side's own reason (:func:`sip_leg_end`).

A call the relay's shutdown ends (``CallSignals.shutting_down``) is recorded ``relay_shutdown``:
``agent_left`` without ``reason: error`` (the agent's connection did not fail), then
``leg_ended`` ``error`` (the call failed for a reason of sipline's own: the control plane reads
``system_error``, as for a call whose relay died), and its BYE carries
:data:`SHUTDOWN_REASON` (RFC 3326). Before that, shutdown was recorded as ``api_hang_up``, which
told the customer the API had hung up when nobody had.

The ``detail`` strings are contract: they reach the control plane in events and stand in the
docs, so :class:`EndDetail` keeps them as they always were. The agent's own reasons
(``agent_closed``, ``connection_lost``...) are the bridge's ``AgentLeftReason``, defined once
there; :data:`AgentEnd` is either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from chalicelib.contracts import CallEventType, LegEndReason
from relay.bridge.agent_ws import AgentLeft, AgentLeftReason
from relay.calls.deps import CallSignals
from relay.calls.recorder import LegEvents
from relay.sip.locate import LocateFailure
from relay.sip.reason import reason_header
from relay.sip.usage.call_state import CallEndReason
from relay.sip.usage.invite_session import CallEnded
from relay.transport.rtp_session import RtpSession


class EndDetail(StrEnum):
    """Why a call ended, on our side of it: the ``detail`` of its last events."""

    CALLER_HUNG_UP = "caller_hung_up"
    """The SIP side ended the call while it ran (``agent_left``)."""
    API_HANG_UP = "api_hang_up"
    """``DELETE /api/calls/{id}``, or the agent's Twilio-style hang-up."""
    RELAY_SHUTDOWN = "relay_shutdown"
    """The relay shut down (SIGTERM) while the call ran: after the drain deadline, or at once."""
    MEDIA_TIMEOUT = "media_timeout"
    """No RTP from the far end for 30 s while not on hold."""
    MAX_DURATION = "max_duration"
    """The call template's ``maxDuration`` ran out."""
    BRIDGE_ENDED = "ended"
    """The agent's bridge ended without the agent leaving (it failed)."""
    INTERNAL_ERROR = "internal_error"
    """A bug in the call's task (``leg_ended`` ``error``)."""
    AGENT_UNREACHABLE = "agent_unreachable"
    """The agent's WebSocket could not be opened in time (480 before the answer)."""
    RTP_PORTS_EXHAUSTED = "rtp_ports_exhausted"
    """No RTP port pair was free (503 before the answer)."""
    CREDENTIALS_UNAVAILABLE = "credentials_unavailable"
    """An outgoing call's password could not be decrypted: no INVITE was sent."""
    DESTINATION_INVALID = "destination_invalid"
    """An outgoing call's ``to`` is not a SIP URI the relay can call (484, no INVITE)."""
    DESTINATION_NOT_FOUND = "destination_not_found"
    """An outgoing call's domain does not exist in DNS (604, no INVITE)."""
    DESTINATION_UNAVAILABLE = "destination_unavailable"
    """DNS did not answer, or every address is refused by the egress policy (503, no INVITE)."""
    DIAL_REFUSED = "dial_refused"
    """The SIP layer refused to send the INVITE: a ``from`` it cannot carry, a TLS target
    without the relay's TLS listener (no INVITE)."""
    TLS_VERIFICATION_FAILED = "tls_verification_failed"
    """Every target of an outgoing call failed, the last because its TLS certificate is not
    trusted or does not name the domain dialled (503, ``relay/sip/locate.py`` rule 9)."""
    CANCEL_UNANSWERED = "cancel_unanswered"
    """Our CANCEL of an outgoing call did not end its INVITE in time (``error``)."""
    TRANSFERRED = "transferred"
    """A cold transfer handed the caller on (REFER accepted and succeeded, or the target
    answered): the agent leaves, the rest is ``transfer_cold.py``'s."""
    BRIDGED_LEG_ENDED = "bridged_leg_ended"
    """The other leg of a bridged transfer ended, so we hung this one up."""
    CALL_ENDED = "call_ended"
    """The call ended while its transfer's second leg was ringing: we cancelled it."""


AgentEnd = EndDetail | AgentLeftReason
"""The ``detail`` of ``agent_left``: ours, or the agent's own reason for leaving."""

NORMAL_ENDS: frozenset[AgentEnd] = frozenset(
    {AgentLeftReason.AGENT_CLOSED, EndDetail.API_HANG_UP, EndDetail.MEDIA_TIMEOUT,
     EndDetail.MAX_DURATION, EndDetail.RELAY_SHUTDOWN, EndDetail.TRANSFERRED}
)  # fmt: skip
"""Ends recorded without ``reason: error`` (the caller leaving is recorded apart)."""
TIMED_OUT: frozenset[AgentEnd] = frozenset({EndDetail.MEDIA_TIMEOUT, EndDetail.MAX_DURATION})
"""Ends whose ``leg_ended`` says ``timeout`` rather than ``local_hangup``."""
SHUTDOWN_REASON = reason_header(503, "relay shutting down")
"""The Reason (RFC 3326) of a BYE the relay's shutdown sends."""
NO_BOUND_S = 365 * 24 * 3600.0
"""A call without ``maxDuration`` waits this long: for ever, as far as a call is concerned."""

_SIP_END_REASONS = {
    CallEndReason.CANCELLED: LegEndReason.REMOTE_HANGUP,
    CallEndReason.REJECTED: LegEndReason.REJECTED,
    CallEndReason.ACK_TIMEOUT: LegEndReason.TIMEOUT,
    CallEndReason.SESSION_EXPIRED: LegEndReason.TIMEOUT,
    CallEndReason.REQUEST_FAILED: LegEndReason.ERROR,
    CallEndReason.TRANSACTION_FAILED: LegEndReason.ERROR,
    CallEndReason.MEDIA_FAILED: LegEndReason.ERROR,
    CallEndReason.RING_TIMEOUT: LegEndReason.TIMEOUT,
}


LOCATE_ENDS: dict[LocateFailure, tuple[int, EndDetail]] = {
    LocateFailure.INVALID: (484, EndDetail.DESTINATION_INVALID),
    LocateFailure.NOT_FOUND: (604, EndDetail.DESTINATION_NOT_FOUND),
    LocateFailure.UNAVAILABLE: (503, EndDetail.DESTINATION_UNAVAILABLE),
    LocateFailure.REFUSED: (503, EndDetail.DESTINATION_UNAVAILABLE),
}
"""``leg_ended``'s ``sipStatus`` and ``detail`` when ``to`` cannot be located (``outgoing.py``'s table; a transfer's second leg too)."""

UNANSWERED_ENDS: dict[CallEndReason, LegEndReason] = {
    CallEndReason.REJECTED: LegEndReason.REJECTED,
    CallEndReason.CANCELLED: LegEndReason.LOCAL_HANGUP,
    CallEndReason.RING_TIMEOUT: LegEndReason.TIMEOUT,
    CallEndReason.TRANSACTION_FAILED: LegEndReason.REJECTED,
}
"""``leg_ended``'s ``reason`` when the INVITE ended without an answer (``outgoing.py``'s table; a transfer's second leg too)."""


@dataclass(frozen=True, slots=True)
class Ending:
    """How a running call ended: on the SIP side (``sip``), or on ours for ``detail``."""

    detail: AgentEnd
    sip: CallEnded | None = None


def agent_left_reason(detail: AgentEnd) -> LegEndReason | None:
    """The ``reason`` of ``agent_left``: none for a normal end, else ``error``."""
    return None if detail in NORMAL_ENDS else LegEndReason.ERROR


def local_leg_end(detail: AgentEnd) -> LegEndReason:
    """The ``reason`` of ``leg_ended`` when we hung up for ``detail``."""
    if detail is EndDetail.RELAY_SHUTDOWN:
        return LegEndReason.ERROR
    return LegEndReason.TIMEOUT if detail in TIMED_OUT else LegEndReason.LOCAL_HANGUP


def hang_up_detail(signals: CallSignals) -> EndDetail:
    """Why ``hang_up_requested`` was set: the relay's shutdown, or the API."""
    return EndDetail.RELAY_SHUTDOWN if signals.shutting_down else EndDetail.API_HANG_UP


def bye_headers(signals: CallSignals) -> tuple[tuple[str, str], ...]:
    """The extra headers of our BYE: the shutdown's Reason, or none."""
    return (SHUTDOWN_REASON,) if signals.shutting_down else ()


def sip_leg_end(ended: CallEndReason, *, by_remote: bool) -> LegEndReason:
    """``leg_ended``'s ``reason`` when the SIP side ended the leg (its ``detail``: ``ended``)."""
    if ended is CallEndReason.BYE:
        return LegEndReason.REMOTE_HANGUP if by_remote else LegEndReason.LOCAL_HANGUP
    return _SIP_END_REASONS.get(ended, LegEndReason.ERROR)


def max_duration_s(max_duration: float | None) -> float:
    """How long a call may run after its answer (``None``: no bound)."""
    return NO_BOUND_S if max_duration is None else max_duration


async def until_the_end(
    signals: CallSignals,
    session: RtpSession,
    agent: asyncio.Task[Any],
    max_duration: float | None,
    transferred: asyncio.Future[Any] | None = None,
) -> Ending:
    """Wait for the first of the five ends (see the module docstring); cancel the other waits.

    ``transferred`` (a cold transfer's hand-over, ``transfer_cold.py``) is a sixth: it wins
    over any end that came at the same time, which the transfer then handles.
    """
    media_ended = asyncio.ensure_future(session.wait_ended())
    hang_up = asyncio.ensure_future(signals.hang_up_requested.wait())
    out_of_time = asyncio.ensure_future(asyncio.sleep(max_duration_s(max_duration)))
    waits: set[asyncio.Future[Any]] = {agent, signals.ended, media_ended, hang_up, out_of_time}
    if transferred is not None:
        waits.add(transferred)
    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for waiter in (media_ended, hang_up, out_of_time):
        waiter.cancel()
    if transferred is not None and transferred.done():
        return Ending(EndDetail.TRANSFERRED)
    if signals.ended in done:
        return Ending(EndDetail.CALLER_HUNG_UP, sip=signals.ended.result())
    if media_ended in done:
        return Ending(EndDetail.MEDIA_TIMEOUT)
    if hang_up in done:
        return Ending(hang_up_detail(signals))
    if out_of_time in done:
        return Ending(EndDetail.MAX_DURATION)
    outcome = agent.result()
    return Ending(outcome.reason if isinstance(outcome, AgentLeft) else EndDetail.BRIDGE_ENDED)


def record_sip_end(events: LegEvents, ended: CallEnded) -> None:
    """Record ``leg_ended`` for a leg the SIP side ended."""
    events.record(
        CallEventType.LEG_ENDED,
        reason=sip_leg_end(ended.reason, by_remote=ended.by_remote),
        detail=ended.reason,
        sip_status=ended.status,
    )


def record_the_end(events: LegEvents, ending: Ending, hang_up: Callable[[], None]) -> None:
    """Record how the call ended, hanging the SIP leg up first when it is still up."""
    if ending.sip is not None:
        events.record(CallEventType.AGENT_LEFT, detail=ending.detail)
        record_sip_end(events, ending.sip)
        return
    events.record(
        CallEventType.AGENT_LEFT, detail=ending.detail, reason=agent_left_reason(ending.detail)
    )
    hang_up()
    events.record(
        CallEventType.LEG_ENDED, reason=local_leg_end(ending.detail), detail=ending.detail
    )
