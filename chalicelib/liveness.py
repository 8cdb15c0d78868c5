"""Whether an open call will still be ended by a relay, or must be closed by the control plane.

Pure: the call, its stored events, the relays' latest heartbeats and ``now`` are arguments. The
reaper (``chalicelib/reaper.py``) and ``DELETE /api/calls/{id}`` ask :func:`verdict`; the rules
are documented in ``docs/billing.md`` ("Calls no relay will end").

A relay is *fresh* while its latest heartbeat was received at most ``heartbeat_stale_s`` ago. The
first rule that applies closes the call:

1. **Ceiling.** ``now`` is past ``created + joinTimeout + maxDuration + ceiling_margin_s``: the
   relay should have ended it long ago, whatever it says.
2. **Deaf control plane.** When no relay at all is fresh, the control plane cannot tell a dead
   relay from heartbeats that do not reach it: nothing else closes a call (a hang-up does not wait
   for this: the caller of ``DELETE`` wants the call ended anyway).
3. **Held.** A fresh relay lists the call (it holds it, or has undelivered events for it): open.
4. **Relay silent.** The relay bound to the call (``edgeId``, from the INVITE webhook) is not
   fresh: it died, and its calls with it.
5. **Not held.** The bound relay is fresh, listed every call it holds (``complete``), and its
   heartbeat arrived more than ``listing_grace_s`` after the call was created, without the call:
   the relay dropped it (its decision timed out, or it restarted).
6. **Never joined.** No relay is bound to the call (an outgoing call whose ``dial`` nobody took,
   or a relay that sends no heartbeats) and no agent joined within ``joinTimeout +
   delivery_margin_s`` of its creation. A hang-up closes such a call at once.

The close instant (:attr:`Closing.at`) is the last evidence that the call was up: the latest of
its creation, its latest event and the latest heartbeat listing it (never past the ceiling), so
a reaped call bills no time there is no evidence for. A heartbeat that lists a call only for its
undelivered events gives the call's end (``endedAt``) as its evidence, not its own time: a call
that ended, and whose end the control plane never received, is not billed past its end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from chalicelib.billing import first_at, ordered_events
from chalicelib.call_models import Call
from chalicelib.contracts import CallEvent, CallEventType
from chalicelib.store.heartbeats import StoredHeartbeat


@dataclass(frozen=True, slots=True)
class ReaperBounds:
    """The bounds of the rules (defaults documented in ``docs/billing.md``)."""

    heartbeat_stale_s: float = 120.0
    """A relay whose latest heartbeat is older is dead (relays beat every 15 s)."""
    listing_grace_s: float = 60.0
    """A heartbeat this long after a call's creation must list it (covers the decision's round
    trip and a heartbeat's own delivery, 10 s at most)."""
    delivery_margin_s: float = 120.0
    """Added to ``joinTimeout`` for the agent's ``agent_joined`` event to arrive."""
    ceiling_margin_s: float = 300.0
    """Added to ``joinTimeout + maxDuration`` before a call is closed whatever the relays say."""


class CloseRule(StrEnum):
    """Why the control plane closed a call (the ``detail`` of its ``call_closed`` event)."""

    MAX_DURATION = "max_duration_exceeded"
    RELAY_SILENT = "relay_silent"
    NOT_HELD = "relay_does_not_hold_it"
    NEVER_JOINED = "never_joined"


@dataclass(frozen=True, slots=True)
class Closing:
    """The control plane's decision to close a call."""

    rule: CloseRule
    at: datetime
    """The close instant: the last evidence the call was up."""
    detail: str


@dataclass(frozen=True)
class RelayView:
    """The relays' latest heartbeats, indexed by the calls they list."""

    heartbeats: Mapping[str, StoredHeartbeat]
    listed_by: Mapping[str, tuple[StoredHeartbeat, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, heartbeats: Mapping[str, StoredHeartbeat]) -> RelayView:
        """Index ``heartbeats`` (edge id -> latest) by call id."""
        listed: dict[str, list[StoredHeartbeat]] = {}
        for stored in heartbeats.values():
            for call_id in stored.heartbeat.call_ids:
                listed.setdefault(call_id, []).append(stored)
        return cls(heartbeats, {call_id: tuple(hbs) for call_id, hbs in listed.items()})


def verdict(
    call: Call,
    events: Callable[[], Iterable[CallEvent]],
    relays: RelayView,
    now: datetime,
    bounds: ReaperBounds | None = None,
    *,
    hang_up: bool = False,
) -> Closing | None:
    """Return how to close ``call`` now (rules 1-6 of the module docstring), or None to leave it.

    Args:
        events: reads the call's stored events (called only when a rule needs them).
        hang_up: the account asked to end the call (``DELETE``): rule 2 does not hold it back,
            and rule 6 closes it at once.
    """
    if call.ended is not None:
        return None
    bounds = bounds or ReaperBounds()
    join = timedelta(seconds=call.join_timeout_s)
    ceiling = call.created + join + timedelta(seconds=call.max_duration_s)
    listing = relays.listed_by.get(call.call_id, ())
    if now >= ceiling + timedelta(seconds=bounds.ceiling_margin_s):
        return _closing(CloseRule.MAX_DURATION, call, events, listing, ceiling, "")

    if not hang_up and not any(fresh(s, now, bounds) for s in relays.heartbeats.values()):
        return None
    if any(fresh(s, now, bounds) for s in listing):
        return None
    bound = relays.heartbeats.get(call.edge_id) if call.edge_id else None
    if bound is not None:
        if not fresh(bound, now, bounds):
            detail = f"relay {call.edge_id} silent since {bound.received_at.isoformat()}"
            return _closing(CloseRule.RELAY_SILENT, call, events, listing, ceiling, detail)
        grace = timedelta(seconds=bounds.listing_grace_s)
        if bound.heartbeat.complete and bound.received_at > call.created + grace:
            detail = f"relay {call.edge_id} does not list it"
            return _closing(CloseRule.NOT_HELD, call, events, listing, ceiling, detail)
        return None
    timeline = ordered_events(events())
    joined = first_at(timeline, CallEventType.AGENT_JOINED) is not None
    waited = now >= call.created + join + timedelta(seconds=bounds.delivery_margin_s)
    if hang_up or (waited and not joined):
        detail = "no relay holds it" if hang_up else "no agent joined and no relay holds it"
        return _closing(CloseRule.NEVER_JOINED, call, lambda: timeline, listing, ceiling, detail)
    return None


def fresh(stored: StoredHeartbeat, now: datetime, bounds: ReaperBounds | None = None) -> bool:
    """Whether the relay of ``stored`` is alive: its heartbeat arrived at most
    ``heartbeat_stale_s`` ago."""
    limit = (bounds or ReaperBounds()).heartbeat_stale_s
    return (now - stored.received_at).total_seconds() <= limit


def holder(
    call: Call, relays: RelayView, now: datetime, bounds: ReaperBounds | None = None
) -> StoredHeartbeat | None:
    """The live relay holding ``call``: the one bound to it (``edgeId``) if fresh, else a fresh
    relay listing it; None when no live relay is known to hold it."""
    bound = relays.heartbeats.get(call.edge_id) if call.edge_id else None
    if bound is not None and fresh(bound, now, bounds):
        return bound
    listing = relays.listed_by.get(call.call_id, ())
    return next((s for s in listing if fresh(s, now, bounds)), None)


def closing_for(
    rule: CloseRule,
    call: Call,
    events: Callable[[], Iterable[CallEvent]],
    relays: RelayView,
    detail: str,
) -> Closing:
    """Close ``call`` by ``rule`` at the last evidence it was up (as :func:`verdict` does)."""
    ceiling = call.created + timedelta(seconds=call.join_timeout_s + call.max_duration_s)
    listing = relays.listed_by.get(call.call_id, ())
    return _closing(rule, call, events, listing, ceiling, detail)


def _closing(
    rule: CloseRule,
    call: Call,
    events: Callable[[], Iterable[CallEvent]],
    listing: Iterable[StoredHeartbeat],
    ceiling: datetime,
    detail: str,
) -> Closing:
    """Close at the last evidence the call was up, never past its ceiling."""
    evidence = [call.created, *(e.occurred_at for e in ordered_events(events()))]
    evidence += [stored.heartbeat.evidence(call.call_id) for stored in listing]
    return Closing(rule, min(max(evidence), ceiling), detail)
