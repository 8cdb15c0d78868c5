"""The relay's EMF line (``relay/metrics.py``), parsed as CloudWatch would: the embedded metric
format's ``_aws.CloudWatchMetrics[0]`` with ``Namespace``, ``Dimensions`` and ``Metrics``, the
dimension and metric values at the top level (the EMF specification). The names are the deploy
contract's (docs/relay.md, Metrics): the CDK app's alarms and autoscaling read them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.contracts import CallEvent, CallEventType, LegEndReason, LegRole
from relay.metrics import EmfReporter, FailedLegs, Sample


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _values(line: dict[str, Any]) -> dict[str, float]:
    [directive] = line["_aws"]["CloudWatchMetrics"]
    values = {}
    for metric in directive["Metrics"]:
        assert metric["Unit"] == "Count"
        raw = line[metric["Name"]]
        values[metric["Name"]] = raw[0] if isinstance(raw, list) else raw
    return values


def test_a_line_carries_the_contracts_names(capsys: pytest.CaptureFixture[str]) -> None:
    now = Sample(active_calls=7, spool_backlog=3, calls_failed_total=2, invites_refused_total=5)
    EmfReporter(lambda: now, "prod").emit()
    [line] = _lines(capsys.readouterr().out)
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "sipline"
    assert [sorted(d) for d in directive["Dimensions"]] == [["service", "stage"]]
    assert (line["service"], line["stage"]) == ("sipline-relay", "prod")
    assert isinstance(line["_aws"]["Timestamp"], int)
    assert _values(line) == {
        "ActiveCalls": 7, "CallsFailed": 2, "SpoolBacklog": 3, "InvitesRefused": 5
    }  # fmt: skip


def test_gauges_are_read_now_and_counts_since_the_last_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    samples = iter(
        [
            Sample(active_calls=4, spool_backlog=10, calls_failed_total=1, invites_refused_total=2),
            Sample(active_calls=1, spool_backlog=0, calls_failed_total=1, invites_refused_total=9),
        ]
    )
    reporter = EmfReporter(lambda: next(samples), "dev")
    reporter.emit()
    reporter.emit()
    first, second = (_values(line) for line in _lines(capsys.readouterr().out))
    assert first == {"ActiveCalls": 4, "CallsFailed": 1, "SpoolBacklog": 10, "InvitesRefused": 2}
    assert second == {"ActiveCalls": 1, "CallsFailed": 0, "SpoolBacklog": 0, "InvitesRefused": 7}


def _leg_ended(reason: LegEndReason, detail: str) -> CallEvent:
    return CallEvent(
        eventId=f"c:l:{detail}",
        type=CallEventType.LEG_ENDED,
        occurredAt=datetime(2026, 12, 6, tzinfo=UTC),
        callId="c",
        legId="l",
        legRole=LegRole.CALLER,
        reason=reason,
        detail=detail,
    )


def test_calls_failed_counts_error_ends_but_not_the_shutdowns() -> None:
    """relay/metrics.py: ``CallsFailed`` counts legs ended ``error``, not ``relay_shutdown``."""
    recorded: list[CallEvent] = []
    failed = FailedLegs()
    record = failed.counting(recorded.append)
    record(_leg_ended(LegEndReason.ERROR, "internal_error"))
    record(_leg_ended(LegEndReason.ERROR, "agent_unreachable"))
    record(_leg_ended(LegEndReason.ERROR, "relay_shutdown"))
    record(_leg_ended(LegEndReason.REMOTE_HANGUP, "bye"))
    record(_leg_ended(LegEndReason.REJECTED, "destination_not_found"))
    assert failed.total == 2
    assert len(recorded) == 5  # every event still recorded
