"""Hypothesis profiles: CI is deterministic, local runs keep exploring.

``CI=true`` (set by CI, and by ``.ci/run``) selects ``ci``: examples derived from each test's
name, no example database, and a blob printed with any failure so it can be reproduced. A
counterexample found anywhere becomes an ``@example`` on its test, so CI keeps checking it.
Nor does ``ci`` hold a test to wall-clock time (no per-example deadline, no too-slow health
check): on a loaded machine those fail by luck, and speed is a benchmark's business. A test
may tune its own examples (``max_examples``, its own ``deadline``) but never its randomness
or database: tests/test_hypothesis_profile.py checks every test file for that.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    print_blob=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", print_blob=True)


def hypothesis_profile(environ: Mapping[str, str]) -> str:
    """Return the profile for an environment: ``ci`` when ``CI`` is set true, else ``dev``."""
    return "ci" if environ.get("CI", "").strip().lower() in ("true", "1", "yes") else "dev"


settings.load_profile(hypothesis_profile(os.environ))
