"""A transfer as the API shows it, derived from its request record and the call's events (pure).

Theory of operation (``docs/api.md``, "The Transfer object"). The control plane stores one
:class:`TransferRecord` per request (what was decided, and a warm transfer's reported outcome);
the relay reports what happened on the wire as call events carrying ``transferId``
(``chalicelib/contracts.py``). :func:`derive` replays both in time order (edge time; the outcome
at the control plane's time), through this table, to the Transfer's ``status``:

========================================  ==============================================
what happened                             status
========================================  ==============================================
recorded                                  ``requested``
``ringing`` on the transfer leg           ``ringing``
``answered`` on the transfer leg          ``answered`` (``answered`` time set)
``agent_joined`` on the transfer leg      ``briefing`` (warm: the bot briefs the operator)
outcome ``accepted: true``                ``accepted``
outcome ``accepted: false``               ``declined`` (over)
``refer_succeeded``                       ``referred`` (over)
``refer_failed``                          ``failed`` (over), but not for ``TRY_REFER``: the
                                          relay falls back to the bridge
``bridged``                               ``bridged`` (over)
``leg_ended`` on the transfer leg         ``failed`` (over), ``sipStatus`` and ``reason`` of it
the call ended first                      ``cancelled`` (over)
the control plane could not send it       ``failed`` (over), reason ``command_not_sent``
no event :data:`START_TIMEOUT_S` after    ``failed`` (over), reason ``relay_did_not_start``
being recorded
========================================  ==============================================

A status that is over stays: later events change nothing but ``sipStatus``. ``ended`` is when
the transfer was over (for ``bridged`` and ``referred``: when the caller was handed over; the
legs may bill on, ``docs/billing.md``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from chalicelib.contracts import CallEvent, CallEventType, LegRole
from chalicelib.models import ApiModel

START_TIMEOUT_S = 30.0
"""A transfer the relay has not started (no event of it) this long after the request is failed:
the relay takes a command within a second; none may ever come (no relay that can transfer)."""
OVER = frozenset({"declined", "referred", "bridged", "failed", "cancelled"})
Status = Literal[
    "requested",
    "ringing",
    "answered",
    "briefing",
    "accepted",
    "declined",
    "referred",
    "bridged",
    "failed",
    "cancelled",
]


class TransferRecord(ApiModel):
    """One transfer request as stored (no secret: the password went into the command only)."""

    transfer_id: str
    call_id: str
    sequence: int = Field(ge=1, description="1 for the call's first transfer, then 2...")
    created: datetime
    tool_name: str
    kind: Literal["cold", "warm"]
    method: Literal["REFER", "INVITE", "BRIDGE", "TRY_REFER"]
    target: str
    accepted: bool | None = None
    """A warm transfer's outcome, as the operator leg's bot reported it."""
    outcome_reason: str | None = None
    outcome_at: datetime | None = None
    failed_reason: str | None = None
    """Set by the control plane when the command could not be sent."""
    failed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TransferState:
    """The derived part of a Transfer."""

    status: Status
    sip_status: int | None
    reason: str | None
    answered: datetime | None
    ended: datetime | None

    @property
    def over(self) -> bool:
        return self.status in OVER


@dataclass
class _Replay:
    record: TransferRecord
    status: Status = "requested"
    sip_status: int | None = None
    reason: str | None = None
    answered: datetime | None = None
    ended: datetime | None = None

    def end(self, status: Status, at: datetime, reason: str | None = None) -> None:
        if self.status in OVER:
            return
        self.status, self.ended = status, at
        if reason is not None:
            self.reason = reason

    def apply(self, event: CallEvent) -> None:
        if event.sip_status is not None:
            self.sip_status = event.sip_status
        if self.status in OVER:
            return
        on_leg = event.leg_role is LegRole.TRANSFER_TARGET
        match event.type:
            case CallEventType.RINGING if on_leg and self.status == "requested":
                self.status = "ringing"
            case CallEventType.ANSWERED if on_leg:
                self.status, self.answered = "answered", event.occurred_at
            case CallEventType.AGENT_JOINED if on_leg:
                self.status = "briefing"
            case CallEventType.REFER_SUCCEEDED:
                self.end("referred", event.occurred_at)
            case CallEventType.REFER_FAILED if self.record.method != "TRY_REFER":
                self.end("failed", event.occurred_at, event.detail or "refer_failed")
            case CallEventType.BRIDGED:
                self.end("bridged", event.occurred_at)
            case CallEventType.LEG_ENDED if on_leg:
                why = event.detail or (event.reason.value if event.reason else None)
                self.end("failed", event.occurred_at, why)

    def outcome(self) -> None:
        record = self.record
        if record.outcome_at is None or record.accepted is None:
            return
        if record.accepted:
            if self.status not in OVER:
                self.status = "accepted"
        else:
            self.end("declined", record.outcome_at, record.outcome_reason)


def derive(
    record: TransferRecord,
    events: Iterable[CallEvent],
    *,
    call_ended: datetime | None,
    now: datetime,
) -> TransferState:
    """The transfer's status, SIP status, reason and times (the module's table)."""
    replay = _Replay(record)
    if record.failed_reason is not None:
        replay.end("failed", record.failed_at or record.created, record.failed_reason)
        return _state(replay)
    mine = sorted(
        (e for e in events if e.transfer_id == record.transfer_id),
        key=lambda e: (e.occurred_at, e.event_id),
    )
    outcome_done = False
    for event in mine:
        if not outcome_done and record.outcome_at and record.outcome_at <= event.occurred_at:
            replay.outcome()
            outcome_done = True
        replay.apply(event)
    if not outcome_done:
        replay.outcome()
    if call_ended is not None:
        replay.end("cancelled", call_ended, "call_ended")
    started_by = record.created + timedelta(seconds=START_TIMEOUT_S)
    if not mine and replay.status == "requested" and now >= started_by:
        replay.end("failed", started_by, "relay_did_not_start")
    return _state(replay)


def _state(replay: _Replay) -> TransferState:
    return TransferState(
        status=replay.status,
        sip_status=replay.sip_status,
        reason=replay.reason,
        answered=replay.answered,
        ended=replay.ended,
    )


def view(record: TransferRecord, state: TransferState) -> dict[str, Any]:
    """The Transfer object (``docs/api.md``)."""
    return {
        "transferId": record.transfer_id,
        "toolName": record.tool_name,
        "kind": record.kind,
        "method": record.method,
        "target": record.target,
        "status": state.status,
        "sipStatus": state.sip_status,
        "reason": state.reason,
        "created": _iso(record.created),
        "answered": _iso(state.answered),
        "ended": _iso(state.ended),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
