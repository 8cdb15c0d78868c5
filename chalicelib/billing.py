"""Call and SIP minutes from a call's events: a pure function (docs/billing.md).

Theory of operation. The spec ("SIP Billing"): "SIP minutes are billed per-deciminute (i.e. six
second increments), rounded up to the nearest deciminute. Unlike call minutes, SIP minutes are
billed when SIP infrastructure is active, not just while your agent is connected to a user. In
particular, outgoing calls are billed from the start of the call, not the point at which your
user answers." Its "Transfers" paragraph adds that a second leg bills "at double the normal rate
while both calls are active", that bridged legs "continue billing even after the agent leaves the
call", and that on a successful REFER "all infrastructure is removed from the call, so the SIP
clock stops immediately". From those sentences:

1. **Canonical timeline.** Events are deduplicated by ``event_id`` (the first occurrence wins) and
   ordered by ``(occurred_at, event_id)``, so at-least-once delivery, duplicated or reordered
   batches never change a result (:func:`ordered_events`, shared with ``call_outcome``).
2. **SIP clock, per leg** (legs are told apart by ``leg_id``). An outgoing leg (the outgoing
   call's callee, any transfer target) starts at its ``INVITE_SENT``, so ring time is SIP time;
   an incoming leg starts at its ``ANSWERED``. A leg stops at its ``LEG_ENDED``. The first
   ``REFER_SUCCEEDED`` (on any leg) stops every leg at that instant. SIP seconds are the sum over
   legs: two legs up bill double. ``BRIDGED`` changes nothing: bridged legs bill until they end.
3. **Call (agent) clock.** It runs from ``AGENT_JOINED`` to ``AGENT_LEFT``, and never past the
   end of the call (:func:`call_ended_at`: the first ``REFER_SUCCEEDED``, or the moment every
   started leg has ended). A rejoin after a leave opens a new span.
4. **Open clocks and ``until``.** A clock with no stop event runs to the *horizon*: ``until`` when
   given (an active call billed "so far"), else the latest ``occurred_at`` in the batch, so a
   batch never bills time it has no evidence for. ``until`` also caps every clock: events after
   it bill nothing past it.
5. **Rounding.** Each total (not each leg) is rounded up separately to whole deciminutes (6 s):
   0 stays 0, 0.001 s bills 6. Durations are exact integer microseconds until the final division.
6. **A closed call.** The control plane writes ``CALL_CLOSED`` when no relay will report a call's
   end (its reaper, ``chalicelib/reaper.py``). The timeline stops at the first one: events that
   occurred after it are kept in storage but count for nothing, so no clock runs past the close
   and a late relay event can neither reopen the call nor move its end (``docs/billing.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from chalicelib.contracts import CallEvent, CallEventType

DECIMINUTE_S = 6  # spec "SIP Billing": billed per deciminute, rounded up
_MICROSECOND = timedelta(microseconds=1)
_MICROS_PER_S = 1_000_000
_LEG_STARTS = frozenset({CallEventType.INVITE_RECEIVED, CallEventType.INVITE_SENT})


@dataclass(frozen=True, slots=True)
class Bill:
    """What a call costs in call (agent) time and SIP-infrastructure time."""

    call_seconds: float
    """Raw agent-connected time."""
    sip_seconds: float
    """Raw SIP-infrastructure time, summed over legs (two legs up count double)."""
    billed_call_seconds: int
    """``call_seconds`` rounded up to a multiple of :data:`DECIMINUTE_S` (0 stays 0)."""
    billed_sip_seconds: int
    """``sip_seconds`` rounded up to a multiple of :data:`DECIMINUTE_S` (0 stays 0)."""

    @property
    def minutes(self) -> float:
        """Return billed call minutes, an exact number of deciminutes (e.g. 1.3)."""
        return _deciminutes(self.billed_call_seconds) / 10

    @property
    def sip_minutes(self) -> float:
        """Return billed SIP minutes, an exact number of deciminutes (e.g. 0.1)."""
        return _deciminutes(self.billed_sip_seconds) / 10


def ordered_events(events: Iterable[CallEvent]) -> list[CallEvent]:
    """Return the canonical timeline: deduplicated by ``event_id``, in time order.

    The first occurrence of an ``event_id`` wins; ties on ``occurred_at`` are broken by
    ``event_id``, so the result does not depend on the order or repetition of the input. Events
    that occurred after the first ``CALL_CLOSED`` are left out (rule 6).
    """
    unique: dict[str, CallEvent] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    timeline = sorted(unique.values(), key=lambda event: (event.occurred_at, event.event_id))
    closed = next((e for e in timeline if e.type is CallEventType.CALL_CLOSED), None)
    if closed is None:
        return timeline
    return [e for e in timeline if e.occurred_at <= closed.occurred_at]  # rule 6


def first_at(timeline: Sequence[CallEvent], kind: CallEventType) -> datetime | None:
    """Return the time of the first event of ``kind`` in ``timeline`` (any leg), if any."""
    return next((event.occurred_at for event in timeline if event.type is kind), None)


def call_ended_at(timeline: Sequence[CallEvent]) -> datetime | None:
    """Return when the call is over, or ``None`` while it is active.

    The call is over at the first ``REFER_SUCCEEDED`` or, failing that, once every started leg
    (``INVITE_RECEIVED`` or ``INVITE_SENT`` seen) has a ``LEG_ENDED``: at the last of those; or,
    failing both, at the ``CALL_CLOSED`` the control plane wrote (rule 6).

    Args:
        timeline: events as returned by :func:`ordered_events`.
    """
    reported = reported_end_at(timeline)
    return reported if reported is not None else first_at(timeline, CallEventType.CALL_CLOSED)


def reported_end_at(timeline: Sequence[CallEvent]) -> datetime | None:
    """Return when the relay's events say the call is over (``CALL_CLOSED`` aside), if they do."""
    referred_at = first_at(timeline, CallEventType.REFER_SUCCEEDED)
    if referred_at is not None:
        return referred_at
    started = {event.leg_id for event in timeline if event.type in _LEG_STARTS and event.leg_id}
    ends = _first_per_leg(timeline, CallEventType.LEG_ENDED)
    if not started or not started <= ends.keys():
        return None
    return max(ends[leg_id] for leg_id in started)


def bill(events: Iterable[CallEvent], *, until: datetime | None = None) -> Bill:
    """Bill a call from its events (rules 1-5 of the module docstring).

    Args:
        events: the call's events, in any order, possibly duplicated.
        until: bill an active call up to this instant; ``None`` stops open clocks at the
            latest event time in the batch.
    """
    timeline = ordered_events(events)
    if not timeline:
        return _rounded(0, 0)
    horizon = until if until is not None else timeline[-1].occurred_at
    return _rounded(_call_micros(timeline, horizon), _sip_micros(timeline, horizon))


def _sip_micros(timeline: Sequence[CallEvent], horizon: datetime) -> int:
    """Sum every leg's SIP clock, in microseconds (rule 2)."""
    invited = _first_per_leg(timeline, CallEventType.INVITE_SENT)
    answered = _first_per_leg(timeline, CallEventType.ANSWERED)
    ended = _first_per_leg(timeline, CallEventType.LEG_ENDED)
    referred_at = first_at(timeline, CallEventType.REFER_SUCCEEDED)
    total = 0
    for leg_id in invited.keys() | answered.keys():
        start = invited.get(leg_id) or answered[leg_id]
        total += _micros_between(start, _earliest(ended.get(leg_id), referred_at, horizon))
    return total


def _call_micros(timeline: Sequence[CallEvent], horizon: datetime) -> int:
    """Sum the agent's connected spans, in microseconds (rule 3)."""
    stop = _earliest(call_ended_at(timeline), horizon)
    total = 0
    for joined, left in _agent_spans(timeline):
        total += _micros_between(joined, _earliest(left, stop))
    return total


def _agent_spans(timeline: Sequence[CallEvent]) -> list[tuple[datetime, datetime | None]]:
    """Pair each ``AGENT_JOINED`` with the next ``AGENT_LEFT`` (``None`` while still joined)."""
    spans: list[tuple[datetime, datetime | None]] = []
    joined: datetime | None = None
    for event in timeline:
        if event.type is CallEventType.AGENT_JOINED and joined is None:
            joined = event.occurred_at
        elif event.type is CallEventType.AGENT_LEFT and joined is not None:
            spans.append((joined, event.occurred_at))
            joined = None
    if joined is not None:
        spans.append((joined, None))
    return spans


def _first_per_leg(timeline: Sequence[CallEvent], kind: CallEventType) -> dict[str, datetime]:
    """Map each leg to the time of its first event of ``kind``."""
    firsts: dict[str, datetime] = {}
    for event in timeline:
        if event.type is kind and event.leg_id is not None:
            firsts.setdefault(event.leg_id, event.occurred_at)
    return firsts


def _earliest(*instants: datetime | None) -> datetime:
    """Return the earliest of the given instants (at least one must be set)."""
    return min(instant for instant in instants if instant is not None)


def _micros_between(start: datetime, stop: datetime) -> int:
    """Return whole microseconds from ``start`` to ``stop``, 0 if ``stop`` is not later."""
    return max(0, (stop - start) // _MICROSECOND)


def _rounded(call_micros: int, sip_micros: int) -> Bill:
    """Build a :class:`Bill`, rounding each total up to whole deciminutes (rule 5)."""
    return Bill(
        call_seconds=call_micros / _MICROS_PER_S,
        sip_seconds=sip_micros / _MICROS_PER_S,
        billed_call_seconds=_round_up(call_micros),
        billed_sip_seconds=_round_up(sip_micros),
    )


def _round_up(micros: int) -> int:
    """Round a duration up to whole deciminutes, returned in seconds."""
    per_deciminute = DECIMINUTE_S * _MICROS_PER_S
    return -(-micros // per_deciminute) * DECIMINUTE_S


def _deciminutes(billed_seconds: int) -> int:
    """Return how many deciminutes ``billed_seconds`` (a multiple of 6) is."""
    return billed_seconds // DECIMINUTE_S
