"""A command queue name of its own for each test, on a moto server the session shares."""

from __future__ import annotations

import hashlib
import re

MAX_BASE = 60
"""SQS allows 80 characters; the base leaves room for the digest and a ``-dlq`` suffix."""


def queue_name(test_name: str) -> str:
    """Return a valid SQS queue name unique to ``test_name``.

    A long test name cut to fit would be shared by its parametrizations, and a relay of the
    previous one, whose last long poll outlives it by up to its wait time, would take the next
    one's command (a CI run failed that way).
    """
    digest = hashlib.sha256(test_name.encode()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '-', test_name)[:MAX_BASE]}-{digest}"
