"""Powertools Logger, Metrics and Tracer, created once; secrets redacted from every log line.

Logs are JSON lines keyed by ``call_id`` and ``agent_id`` where known (``logger.append_keys``);
metrics are CloudWatch EMF (``InviteAccepted``, ``InviteRejected`` by ``reason``, ``EventsApplied``,
...); tracing is X-Ray, disabled locally with ``POWERTOOLS_TRACE_DISABLED=1``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit, single_metric

F = TypeVar("F", bound=Callable[..., Any])
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


class NoTracer:
    """Stands in for Powertools' Tracer while tracing is off.

    Powertools imports the X-Ray SDK even when ``POWERTOOLS_TRACE_DISABLED`` is set, which was a
    third of a cold start (about 230 ms, ``bench/cold_start.py``); this keeps it out.
    """

    def capture_method(self, method: F) -> F:
        return method


def tracing_enabled(env: Mapping[str, str]) -> bool:
    """Tracing is on unless ``POWERTOOLS_TRACE_DISABLED`` says otherwise (Powertools' rule)."""
    return env.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() not in ("1", "true")


def _make_tracer() -> Any:
    if not tracing_enabled(os.environ):
        return NoTracer()
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE)


logger = Logger(service=SERVICE, logger_formatter=RedactingFormatter())
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = _make_tracer()


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
