"""Powertools Logger, Metrics and Tracer, created once; secrets redacted from every log line.

Logs are JSON lines keyed by ``call_id`` and ``agent_id`` where known (``logger.append_keys``);
metrics are CloudWatch EMF (``InviteAccepted``, ``InviteRejected`` by ``reason``, ``EventsApplied``,
...); tracing is X-Ray, disabled locally with ``POWERTOOLS_TRACE_DISABLED=1``.
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = "sipline-control-plane"
NAMESPACE = "sipline"
REDACTED = "***"
_SECRET_KEY = re.compile(r"pass(word)?|secret|authorization|api[-_]?key|signature|ciphertext", re.I)


def redact(value: Any) -> Any:
    """Return ``value`` with every secret-looking key's value replaced, recursively."""
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter, with secrets redacted before serialization."""

    def serialize(self, log: Any) -> str:
        return super().serialize(redact(log) if isinstance(log, dict) else log)


logger = Logger(service=SERVICE, logger_formatter=RedactingFormatter())
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


def count(name: str, value: float = 1, **dimensions: str) -> None:
    """Add ``value`` to the metric ``name``; with dimensions it is published at once, alone."""
    if not dimensions:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        return
    with single_metric(
        name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE
    ) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)


def flush() -> None:
    """Publish the metrics gathered during a request (nothing when there are none)."""
    if metrics.metric_set:
        metrics.flush_metrics()
