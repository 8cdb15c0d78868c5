"""The relay's metrics for CloudWatch (``SIPLINE_METRICS=emf``): one EMF line a minute on stdout.

CloudWatch's embedded metric format (EMF) is a JSON log line that carries its own metric
definitions (``_aws.CloudWatchMetrics[0]``: ``Namespace``, ``Dimensions``, ``Metrics``); on ECS
the task's log driver ships stdout to CloudWatch Logs, which extracts the metrics: no agent, no
API call, no permission beyond the logs. The line is written by Powertools' EMF provider (the
control plane's library for the same job, ``chalicelib/observability.py``), imported only when
the setting is on, so ``python -m relay`` starts as fast as before without it. The provider is
used directly, with metric and dimension sets of its own: Powertools' ``Metrics`` class shares
one set between all its instances in a process, so another ``Metrics`` (the control plane's,
in a process that has both) could add to or change the relay's line.

Names are a contract with the CDK app's alarms and autoscaling (docs/relay.md, Metrics):
namespace :data:`NAMESPACE`, dimensions ``service`` = :data:`SERVICE` and ``stage`` =
``SIPLINE_STAGE``, and every :data:`INTERVAL_S`:

- ``ActiveCalls``: the calls running now (incoming and outgoing, from their INVITE to their
  last event); a gauge, the autoscaling target;
- ``CallsFailed``: legs ended with ``reason: error`` in the interval (a relay or system failure:
  ``internal_error``, ``agent_unreachable``, ``rtp_ports_exhausted``...), except those the
  relay's shutdown ended (``relay_shutdown``: every deploy would raise the alarm);
- ``SpoolBacklog``: events recorded and not yet acknowledged by the control plane; a gauge;
- ``InvitesRefused``: INVITEs answered 503 because the relay was starting or draining, or at
  ``SIPLINE_MAX_CALLS``, in the interval.

Counts are sampled from the service (:class:`Sample`, running totals since start); each line
carries the difference since the previous one. A last line is written at shutdown, so the
minute a relay stops is not lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.contracts import CallEvent, CallEventType, LegEndReason
from relay.calls.ending import EndDetail

__all__ = ["INTERVAL_S", "NAMESPACE", "SERVICE", "EmfReporter", "FailedLegs", "Sample"]

NAMESPACE = "sipline"
SERVICE = "sipline-relay"
INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class Sample:
    """The service's state at one instant: two gauges and two running totals."""

    active_calls: int
    spool_backlog: int
    calls_failed_total: int
    invites_refused_total: int


class FailedLegs:
    """Counts the legs that ended with ``reason: error``, but not by the shutdown."""

    def __init__(self) -> None:
        self.total = 0

    def counting(self, record: Callable[[CallEvent], None]) -> Callable[[CallEvent], None]:
        """Return ``record``, counting each failed leg's ``leg_ended`` on the way."""

        def counted(event: CallEvent) -> None:
            if (
                event.type is CallEventType.LEG_ENDED
                and event.reason is LegEndReason.ERROR
                and event.detail != EndDetail.RELAY_SHUTDOWN
            ):
                self.total += 1
            record(event)

        return counted


class EmfReporter:
    """Writes one EMF line per :meth:`emit` (every ``interval_s`` while :meth:`run` runs)."""

    def __init__(
        self, sample: Callable[[], Sample], stage: str, *, interval_s: float = INTERVAL_S
    ) -> None:
        from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
            AmazonCloudWatchEMFProvider,  # lazy: ~35 ms of imports, only when on
        )

        self._sample = sample
        self._interval_s = interval_s
        self._metrics: Any = AmazonCloudWatchEMFProvider(namespace=NAMESPACE, service=SERVICE)
        self._stage = stage
        self._last = Sample(0, 0, 0, 0)

    def emit(self) -> None:
        """Print one EMF line with the gauges now and the counts since the last line."""
        from aws_lambda_powertools.metrics import MetricUnit

        now, last = self._sample(), self._last
        self._last = now
        values = {
            "ActiveCalls": now.active_calls,
            "CallsFailed": now.calls_failed_total - last.calls_failed_total,
            "SpoolBacklog": now.spool_backlog,
            "InvitesRefused": now.invites_refused_total - last.invites_refused_total,
        }
        self._metrics.add_dimension(name="stage", value=self._stage)  # cleared by each flush
        for name, value in values.items():
            self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        self._metrics.flush_metrics()

    async def run(self) -> None:
        """Emit every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self._interval_s)
            self.emit()
