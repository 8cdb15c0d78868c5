"""The reaper: closes the calls no relay will end, through the path relay events take.

Run every minute by the scheduled Lambda in ``app.py`` (and by ``make dev``, see
``scripts/reaper.py``), and by ``DELETE /api/calls/{id}`` for the one call it names.

1. It reads the relays' latest heartbeats once, then every open call (GSI2 lists only those),
   and asks :func:`chalicelib.liveness.verdict` about each.
2. A call to close gets one ``call_closed`` event with a deterministic id (``<callId>:closed``),
   applied by :func:`chalicelib.events.apply_batch` exactly as a relay's batch is: stored once by
   its id, then the call is recomputed from all its events (``refresh_call``). A second run, a
   retried run or two concurrent runs find the id taken and change nothing twice.
3. The call is a pure function of its events, so what a late relay event does is fixed by
   ``chalicelib/billing.py`` rule 6: the close instant bounds every clock, and events that
   occurred after it count for nothing (``docs/billing.md``).
4. Then it deletes the relays' own command queues (``docs/relay.md``, Commands) whose relay has
   not been heard from for ``SIPLINE_EDGE_QUEUE_ABANDON_S`` and which are at least that old (a
   relay that crashed cannot delete its own): :func:`delete_abandoned_queues`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from chalicelib.call_models import Call
from chalicelib.commands import edge_queue_name, queue_name_of
from chalicelib.contracts import (
    CallEvent,
    CallEventBatch,
    CallEventType,
    EdgeHeartbeat,
    EdgeHeartbeatResult,
    LegEndReason,
)
from chalicelib.events import apply_batch
from chalicelib.liveness import Closing, ReaperBounds, RelayView, verdict
from chalicelib.observability import logger
from chalicelib.services import Services
from chalicelib.store import keys


@dataclass
class ReapResult:
    """What one run did."""

    examined: int = 0
    closed: Counter[str] = field(default_factory=Counter)
    """Calls closed, by rule."""
    finished: bool = True
    """False when the run stopped early (out of time); the next run carries on."""
    queues_deleted: list[str] = field(default_factory=list)
    """Abandoned relay command queues deleted (step 4)."""


def closed_event(call_id: str, closing: Closing) -> CallEvent:
    """The ``call_closed`` event the control plane writes for ``closing`` (one id per call)."""
    detail = f"{closing.rule}: {closing.detail}" if closing.detail else str(closing.rule)
    return CallEvent(
        event_id=f"{call_id}:closed",
        type=CallEventType.CALL_CLOSED,
        occurred_at=closing.at,
        call_id=call_id,
        reason=LegEndReason.ERROR,
        detail=detail[:500],
    )


def close_call(services: Services, call_id: str, closing: Closing) -> Call:
    """Write the call's ``call_closed`` event through the events path; return the call after it."""
    apply_batch(services, CallEventBatch(events=[closed_event(call_id, closing)]), from_edge=False)
    call = services.store.get_call(call_id).value
    logger.warning(
        "call closed by the control plane",
        extra={"call_id": call_id, "rule": str(closing.rule), "end_reason": call.end_reason},
    )
    return call


def relay_view(services: Services) -> RelayView:
    """The relays' latest heartbeats, as the rules read them."""
    return RelayView.of(services.store.heartbeats.latest())


def verdict_now(
    services: Services,
    call: Call,
    relays: RelayView,
    bounds: ReaperBounds | None = None,
    *,
    hang_up: bool = False,
) -> Closing | None:
    """Ask :func:`chalicelib.liveness.verdict` about ``call`` at the services' clock."""

    def events() -> list[CallEvent]:
        return services.store.list_events(keys.call_pk(call.call_id))

    return verdict(call, events, relays, services.clock(), bounds, hang_up=hang_up)


def reap(
    services: Services,
    bounds: ReaperBounds | None = None,
    *,
    time_left: Callable[[], bool] = lambda: True,
) -> ReapResult:
    """Close every open call that no relay will end (see the module docstring).

    Args:
        time_left: asked before each call; False stops the run (the Lambda's time is up).
    """
    result = ReapResult()
    relays = relay_view(services)
    for call in services.store.iter_open_calls():
        if not time_left():
            result.finished = False
            break
        result.examined += 1
        closing = verdict_now(services, call, relays, bounds)
        if closing is not None:  # GSI reads are eventually consistent: ask again on the item
            closing = verdict_now(
                services, services.store.get_call(call.call_id).value, relays, bounds
            )
        if closing is not None:
            close_call(services, call.call_id, closing)
            result.closed[str(closing.rule)] += 1
    if result.finished and time_left():
        result.queues_deleted = delete_abandoned_queues(services, relays, services.clock())
    return result


def delete_abandoned_queues(services: Services, relays: RelayView, now: datetime) -> list[str]:
    """Delete the relay queues (step 4) whose relay was last heard from (its latest heartbeat,
    matched by the queue it announced or the name its edge id gives) more than
    ``edge_queue_abandon_s`` ago, and that were created before that; return their URLs."""
    if services.edge_queues is None:
        return []
    limit = services.settings.edge_queue_abandon_s
    prefix = services.settings.edge_queue_prefix
    last_heard: dict[str, datetime] = {}
    for stored in relays.heartbeats.values():
        names = {edge_queue_name(prefix, stored.heartbeat.edge_id)}
        if stored.heartbeat.command_queue_url:
            names.add(queue_name_of(stored.heartbeat.command_queue_url))
        for name in names:
            last_heard[name] = max(last_heard.get(name, stored.received_at), stored.received_at)
    deleted: list[str] = []
    for queue in services.edge_queues.list():
        heard = max(last_heard.get(queue_name_of(queue.url), queue.created), queue.created)
        if (now - heard).total_seconds() > limit:
            services.edge_queues.delete(queue.url)
            deleted.append(queue.url)
            logger.warning("abandoned relay command queue deleted", extra={"queue": queue.url})
    return deleted


def record_heartbeat(services: Services, heartbeat: EdgeHeartbeat) -> EdgeHeartbeatResult:
    """Keep a relay's heartbeat (``POST /webhooks/sip/heartbeat``), unless a newer one is kept."""
    return EdgeHeartbeatResult(stored=services.store.heartbeats.save(heartbeat, services.clock()))
