"""CI runs Hypothesis derandomized, so a red CI means a regression; local runs keep exploring."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import settings

CONFTEST = Path(__file__).resolve().parent / "conftest.py"
PROBE = (
    "import runpy, sys; runpy.run_path(sys.argv[1]);"
    "from hypothesis import settings; s = settings.default;"
    "print(s.derandomize, s.database is None)"
)


def loaded_under(environ: dict[str, str]) -> str:
    """Return what the tests' conftest loads under ``environ``: derandomize, no database."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(CONFTEST)],
        env=environ, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_ci_true_selects_the_derandomized_profile_without_a_database() -> None:
    assert loaded_under({**os.environ, "CI": "true"}) == "True True"


def test_a_local_run_explores_and_keeps_its_example_database() -> None:
    environ = {k: v for k, v in os.environ.items() if k != "CI"}
    assert loaded_under(environ) == "False False"


def test_the_ci_profile_prints_a_blob_to_reproduce_a_failure() -> None:
    assert settings.get_profile("ci").print_blob is True
