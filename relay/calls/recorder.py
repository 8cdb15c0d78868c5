"""A call leg's events (contract 2): ids, order and time, put once on every event.

Theory of operation
===================

Every transition of a call is one :class:`~chalicelib.contracts.CallEvent`, handed to the
call's ``record`` dependency (the outbox, which delivers it at least once; the control plane
keeps each ``eventId`` once). A :class:`LegEvents` belongs to one SIP leg and stamps what every
event of it shares (docs/relay.md, Call events):

- ``eventId`` is ``<callId>:<legId>:<n>``, ``n`` counting the leg's events from 1, so a
  redelivered event keeps its id and the leg's events sort in the order they happened;
- ``legId`` is the leg's (16 hex digits, one per SIP dialog), ``legRole`` its role;
- ``transferId`` names the transfer an event belongs to: every event of a transfer target's
  leg, and the ``refer_*`` events of the caller's;
- ``occurredAt`` is the relay's wall clock in UTC, or the instant given (``invite_received``
  carries the time the INVITE arrived, not the time it was accepted).

An incoming call has no call id until the control plane accepts it: until ``call_id`` is set,
nothing is recorded (a rejected INVITE records nothing: there is no call).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from chalicelib.clock import utc_now
from chalicelib.contracts import CallEvent, CallEventType, LegEndReason, LegRole


class LegEvents:
    """Records the events of one leg (see the module docstring)."""

    def __init__(
        self,
        record: Callable[[CallEvent], None],
        *,
        leg_id: str,
        role: LegRole,
        call_id: str | None = None,
        transfer_id: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._record = record
        self._clock = clock
        self.leg_id = leg_id
        self.role = role
        self.call_id = call_id
        """The call the events name; ``None``: not a call (yet), nothing is recorded."""
        self.transfer_id = transfer_id
        """The transfer every event of this leg belongs to (a transfer target's leg), or ``None``."""
        self.count = 0
        """Events recorded so far (the ``n`` of the last ``eventId``)."""

    def record(
        self,
        kind: CallEventType,
        *,
        at: datetime | None = None,
        reason: LegEndReason | None = None,
        detail: str | None = None,
        sip_status: int | None = None,
        transfer_id: str | None = None,
    ) -> None:
        """Record one event of ``kind`` (nothing while there is no call id).

        ``transfer_id`` names the transfer an event of the caller's leg belongs to (``refer_*``);
        a transfer target's leg stamps its own on every event.
        """
        if self.call_id is None:
            return
        self.count += 1
        self._record(
            CallEvent(
                event_id=f"{self.call_id}:{self.leg_id}:{self.count}",
                type=kind,
                occurred_at=at or self._clock(),
                call_id=self.call_id,
                leg_id=self.leg_id,
                leg_role=self.role,
                reason=reason,
                detail=detail,
                sip_status=sip_status,
                transfer_id=transfer_id or self.transfer_id,
            )
        )
