"""The Transfer object's status, derived from the call's events (chalicelib/transfer_status.py).

The timelines are the transfer vectors of ``tests/vectors/events`` (their README gives each one in
seconds from t=0); the edge tags a transfer's events with its ``transferId`` (REFER_*, BRIDGED and
the transfer leg's events), which the test adds as the contract says. The expected statuses are
the issue's words: a 2xx sipfrag ends sipline's part (``referred``); on answer the relay bridges
(``bridged``); TRY_REFER falls back to the bridge when the REFER fails; a REFER that fails without
fallback returns the caller to the agent (``failed``, with the sipfrag's status).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from chalicelib.contracts import CallEvent
from chalicelib.transfer_status import START_TIMEOUT_S, TransferRecord, derive, view
from tests.support.event_vectors import T0, vector_events

TRANSFER_ID = "xfer-1"
_TAGGED = {"refer_sent", "refer_accepted", "refer_succeeded", "refer_failed", "bridged"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def events(name: str) -> list[CallEvent]:
    """The vector's events as the edge would post them for transfer ``xfer-1``."""
    tagged: list[CallEvent] = []
    for raw in vector_events(name, "call-1", at=T0):
        if raw["type"] in _TAGGED or raw.get("legRole") == "transfer_target":
            raw = raw | {"transferId": TRANSFER_ID}
        tagged.append(CallEvent.model_validate(raw))
    return tagged


def record(method: str, created_s: float, kind: str = "warm", **fields: Any) -> TransferRecord:
    return TransferRecord(
        transfer_id=TRANSFER_ID,
        call_id="call-1",
        sequence=1,
        created=at(created_s),
        tool_name="coldTransfer" if kind == "cold" else "warmTransfer",
        kind=kind,
        method=method,
        target="sip:operator@pbx.example",
        **fields,
    )


# (vector, the transfer's record, status, sipStatus, answered s, ended s)
CASES = [
    ("refer_cold_transfer", record("REFER", 39.9, "cold"), "referred", 200, None, 46.0),
    ("bridged_cold_transfer", record("INVITE", 29.9, "cold"), "bridged", 200, 38.0, 38.2),
    (
        "refer_warm_transfer",
        record("REFER", 19.9, accepted=True, outcome_at=at(54)),
        "referred", 200, 25.0, 57.0,
    ),
    (
        "try_refer_warm_transfer_succeeded",
        record("TRY_REFER", 19.9, accepted=True, outcome_at=at(54)),
        "referred", 200, 25.0, 57.0,
    ),
    (
        "refer_warm_transfer_failed",
        record("REFER", 19.9, accepted=True, outcome_at=at(54)),
        "failed", 603, 25.0, 58.0,
    ),
    (
        "bridged_warm_transfer",
        record("BRIDGE", 19.9, accepted=True, outcome_at=at(54)),
        "bridged", 200, 25.0, 55.0,
    ),
    (
        "try_refer_warm_transfer_fallback",
        record("TRY_REFER", 19.9, accepted=True, outcome_at=at(54)),
        "bridged", 405, 25.0, 55.6,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("vector", "request_record", "status", "sip_status", "answered_s", "ended_s"),
    CASES,
    ids=[case[0] for case in CASES],
)
def test_each_transfer_vector_reads_as_the_issue_says(
    vector: str,
    request_record: TransferRecord,
    status: str,
    sip_status: int,
    answered_s: float | None,
    ended_s: float,
) -> None:
    state = derive(request_record, events(vector), call_ended=at(300), now=at(400))
    assert (state.status, state.sip_status) == (status, sip_status)
    assert state.answered == (None if answered_s is None else at(answered_s))
    assert state.ended == at(ended_s)
    assert state.over


def test_a_warm_transfer_goes_through_ringing_answered_briefing_accepted() -> None:
    timeline = events("refer_warm_transfer")
    warm = record("REFER", 19.9)
    seen = []
    for cut_s, outcome in ((20.2, None), (20.5, None), (25.5, None), (54.5, at(54))):
        cut = [e for e in timeline if e.occurred_at <= at(cut_s)]
        if cut_s == 25.5:  # the operator leg's agent WebSocket opened (the briefing bot)
            cut.append(
                CallEvent.model_validate(
                    {"eventId": "brief", "type": "agent_joined", "callId": "call-1",
                     "legId": "leg-xfer", "legRole": "transfer_target",
                     "transferId": TRANSFER_ID, "occurredAt": at(25.4).isoformat()}
                )
            )  # fmt: skip
        current = warm if outcome is None else record("REFER", 19.9, accepted=True, outcome_at=outcome)
        seen.append(derive(current, cut, call_ended=None, now=at(cut_s)).status)
    assert seen == ["requested", "ringing", "briefing", "accepted"]


def test_a_declined_warm_transfer_is_over_with_the_reason_the_bot_gave() -> None:
    cut = [e for e in events("refer_warm_transfer") if e.occurred_at <= at(30)]
    declined = record("REFER", 19.9, accepted=False, outcome_at=at(40), outcome_reason="busy")
    state = derive(declined, cut, call_ended=None, now=at(41))
    assert (state.status, state.reason, state.ended) == ("declined", "busy", at(40))


def test_a_target_that_rejects_the_invite_fails_the_transfer_with_its_status() -> None:
    leg = {"callId": "call-1", "legId": "leg-x", "legRole": "transfer_target",
           "transferId": TRANSFER_ID}  # fmt: skip
    timeline = [
        CallEvent.model_validate(leg | {"eventId": "1", "type": "invite_sent",
                                        "occurredAt": at(30).isoformat()}),
        CallEvent.model_validate(leg | {"eventId": "2", "type": "leg_ended", "sipStatus": 486,
                                        "reason": "rejected", "occurredAt": at(31).isoformat()}),
    ]  # fmt: skip
    state = derive(record("INVITE", 29.9, "cold"), timeline, call_ended=None, now=at(32))
    assert (state.status, state.sip_status, state.reason, state.ended) == (
        "failed", 486, "rejected", at(31)
    )


def test_a_call_that_ends_first_cancels_its_transfer() -> None:
    state = derive(record("REFER", 10), [], call_ended=at(12), now=at(13))
    assert (state.status, state.reason, state.ended) == ("cancelled", "call_ended", at(12))


def test_a_transfer_no_relay_starts_fails_after_the_start_timeout() -> None:
    waiting = derive(record("REFER", 10), [], call_ended=None, now=at(10 + START_TIMEOUT_S - 1))
    assert waiting.status == "requested" and not waiting.over
    late = derive(record("REFER", 10), [], call_ended=None, now=at(10 + START_TIMEOUT_S))
    assert (late.status, late.reason) == ("failed", "relay_did_not_start")


def test_events_of_another_transfer_change_nothing() -> None:
    other = [e.model_copy(update={"transfer_id": "xfer-2"}) for e in events("refer_cold_transfer")]
    state = derive(record("REFER", 39.9, "cold"), other, call_ended=None, now=at(45))
    assert state.status == "requested"


def test_the_view_is_the_documented_transfer_object() -> None:
    request = record("REFER", 39.9, "cold")
    shown = view(request, derive(request, events("refer_cold_transfer"), call_ended=None,
                                 now=at(50)))  # fmt: skip
    assert shown == {
        "transferId": TRANSFER_ID,
        "toolName": "coldTransfer",
        "kind": "cold",
        "method": "REFER",
        "target": "sip:operator@pbx.example",
        "status": "referred",
        "sipStatus": 200,
        "reason": None,
        "created": "2025-03-14T09:00:39.900000Z",
        "answered": None,
        "ended": "2025-03-14T09:00:46Z",
    }
