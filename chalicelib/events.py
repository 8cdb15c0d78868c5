"""Applying the edge's event batches (contract 2), idempotently.

1. The batch is checked whole before anything is written: an event must name a call or a
   registration, and be dated no later than :data:`MAX_CLOCK_SKEW` past the control plane's clock
   (an edge's clock may run ahead a little; a year 9999 event is refused, 400 naming it); the edge
   may not send ``call_closed`` (the control plane's own event).
2. Each event is stored once under its call or registration, keyed by ``eventId`` with a
   conditional put: a retried batch finds every id taken and changes nothing. Events naming a call
   or registration that does not exist are stored too (nothing is lost) and counted as unknown.
3. Each call the batch names (duplicates included, so that a retry repairs a call whose
   recompute failed) is recomputed from *all* its stored events, ordered by the edge's
   timestamps (``call_outcome.summarize``), and written with a version condition, retried when a
   concurrent batch wins the race. The call is a pure function of its events, so the order in which
   batches arrive does not matter. An event dated before the call's creation minus
   :data:`MAX_CLOCK_SKEW` counts as dated then (:func:`within_lifetime`): a call cannot bill time
   from before it existed (an answer dated 0001-01-01 billed 315 billion SIP seconds).
4. A registration's ``successful`` follows its latest status event, by edge time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from chalicelib.call_models import Call
from chalicelib.call_outcome import summarize
from chalicelib.contracts import CallEvent, CallEventBatch, CallEventBatchResult, CallEventType
from chalicelib.errors import InvalidInput, NotFound
from chalicelib.models import Registration
from chalicelib.observability import logger
from chalicelib.services import Services, retry_on_conflict
from chalicelib.store import keys

MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far an edge's event times may stray from the control plane's clock (docs/billing.md)."""

_STATUS_EVENTS = {
    CallEventType.REGISTRATION_SUCCEEDED: True,
    CallEventType.REGISTRATION_FAILED: False,
}


_CONTROL_PLANE_EVENTS = {CallEventType.CALL_CLOSED}
"""Written only by the control plane (``chalicelib/reaper.py``); the edge may not send them."""

_LEG_EVENTS = {
    CallEventType.INVITE_RECEIVED,
    CallEventType.INVITE_SENT,
    CallEventType.RINGING,
    CallEventType.ANSWERED,
    CallEventType.LEG_ENDED,
}


def _check(batch: CallEventBatch, now: datetime, *, from_edge: bool) -> None:
    latest = now + MAX_CLOCK_SKEW
    for index, event in enumerate(batch.events):
        if from_edge and event.type in _CONTROL_PLANE_EVENTS:
            raise InvalidInput(f"events[{index}].type", f"{event.type} is the control plane's own")
        if event.occurred_at > latest:
            raise InvalidInput(
                f"events[{index}].occurredAt",
                f"{event.occurred_at.isoformat()} is more than {_minutes(MAX_CLOCK_SKEW)} minutes"
                f" after the control plane's clock ({now.isoformat()})",
            )
        if event.type in _STATUS_EVENTS and not event.registration_id:
            raise InvalidInput(f"events[{index}].registrationId", f"required for {event.type}")
        if event.type not in _STATUS_EVENTS and not event.call_id:
            raise InvalidInput(f"events[{index}].callId", f"required for {event.type}")
        if event.type in _LEG_EVENTS and not event.leg_id:
            raise InvalidInput(f"events[{index}].legId", f"required for {event.type}")


def apply_batch(
    services: Services, batch: CallEventBatch, *, from_edge: bool = True
) -> CallEventBatchResult:
    """Store the batch's new events and bring the calls and registrations they name up to date.

    ``from_edge=False`` is the control plane's own path (the reaper): it may write ``CALL_CLOSED``.
    """
    _check(batch, services.clock(), from_edge=from_edge)
    applied = duplicates = unknown = 0
    calls: set[str] = set()
    registrations: set[str] = set()
    known: dict[str, bool] = {}
    for event in batch.events:
        pk = _owner_pk(event)
        if pk not in known:
            known[pk] = _exists(services, event)
        new = services.store.add_event(pk, event)  # kept even when unknown: nothing is lost
        if not known[pk]:
            unknown += 1
            continue
        applied += new
        duplicates += not new
        # Recomputed even for duplicates: a batch retried after a failed recompute repairs it.
        if event.type in _STATUS_EVENTS:
            registrations.add(event.registration_id or "")
        else:
            calls.add(event.call_id or "")
    for call_id in sorted(calls):
        refresh_call(services, call_id)
    for registration_id in sorted(registrations):
        _refresh_registration(services, registration_id)
    return CallEventBatchResult(applied=applied, duplicates=duplicates, unknown=unknown)


def _owner_pk(event: CallEvent) -> str:
    if event.type in _STATUS_EVENTS:
        return keys.registration_pk(event.registration_id or "")
    return keys.call_pk(event.call_id or "")


def _exists(services: Services, event: CallEvent) -> bool:
    try:
        if event.type in _STATUS_EVENTS:
            services.store.get_registration(event.registration_id or "")
        else:
            services.store.get_call(event.call_id or "")
    except NotFound:
        return False
    return True


def _minutes(span: timedelta) -> int:
    return int(span.total_seconds() // 60)


def within_lifetime(call: Call, events: Iterable[CallEvent]) -> list[CallEvent]:
    """Return ``events`` with any time before ``call.created - MAX_CLOCK_SKEW`` moved up to it."""
    earliest = call.created - MAX_CLOCK_SKEW
    return [
        e if e.occurred_at >= earliest else e.model_copy(update={"occurred_at": earliest})
        for e in events
    ]


def call_with_events(call: Call, events: Iterable[CallEvent]) -> Call:
    """Return ``call`` as its events say it is, times bounded by :func:`within_lifetime` (pure)."""
    stored = within_lifetime(call, events)
    outcome = summarize(stored)
    return call.model_copy(
        update={
            "joined": outcome.joined,
            "ended": outcome.ended,
            "end_reason": outcome.end_reason,
            "termination_reason": outcome.termination_reason,
            "billed_call_seconds": outcome.bill.billed_call_seconds,
            "billed_sip_seconds": outcome.bill.billed_sip_seconds,
            "events_applied": len({e.event_id for e in stored}),
        }
    )


def refresh_call(services: Services, call_id: str) -> Call:
    """Recompute a call from every stored event and save it (retried on a lost race)."""

    def attempt() -> Call:
        stored = services.store.get_call(call_id)
        events = services.store.list_events(keys.call_pk(call_id))
        call = call_with_events(stored.value, events)
        if call != stored.value:
            services.store.save_call(call, stored.version)
            logger.info(
                "call updated from events",
                extra={
                    "call_id": call_id,
                    "agent_id": call.agent_id,
                    "events": call.events_applied,
                    "end_reason": call.end_reason,
                },
            )
        return call

    return retry_on_conflict(attempt)


def registration_status(events: Iterable[CallEvent]) -> CallEvent | None:
    """Return the latest status event by edge time (ties broken by event id), if any."""
    status = [e for e in events if e.type in _STATUS_EVENTS]
    return max(status, key=lambda e: (e.occurred_at, e.event_id), default=None)


def _refresh_registration(services: Services, registration_id: str) -> Registration:
    def attempt() -> Registration:
        account_id, stored = services.store.get_registration(registration_id)
        latest = registration_status(
            services.store.list_events(keys.registration_pk(registration_id))
        )
        registration = stored.value
        if latest is not None and (
            registration.status_at is None or latest.occurred_at >= registration.status_at
        ):
            registration = registration.model_copy(
                update={"successful": _STATUS_EVENTS[latest.type], "status_at": latest.occurred_at}
            )
            services.store.save_registration(account_id, registration, stored.version)
        return registration

    return retry_on_conflict(attempt)
