"""CI runs Hypothesis derandomized, so a red CI means a regression; local runs keep exploring."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import settings

CONFTEST = Path(__file__).resolve().parent / "conftest.py"
PROBE = (
    "import runpy, sys; runpy.run_path(sys.argv[1]);"
    "from hypothesis import HealthCheck, settings; s = settings.default;"
    "print(s.derandomize, s.database is None, s.deadline is None,"
    " HealthCheck.too_slow in s.suppress_health_check)"
)
TESTS = CONFTEST.parent
RANDOMNESS = {"derandomize", "database", "phases"}
"""Settings a test may not override: they decide which examples run, or from where."""


def loaded_under(environ: dict[str, str]) -> str:
    """Return what the tests' conftest loads under ``environ``: derandomize, no database."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(CONFTEST)],
        env=environ, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_ci_true_selects_the_derandomized_profile_without_a_database_or_deadline() -> None:
    assert loaded_under({**os.environ, "CI": "true"}) == "True True True True"


def test_a_local_run_explores_and_keeps_its_example_database() -> None:
    environ = {k: v for k, v in os.environ.items() if k != "CI"}
    assert loaded_under(environ) == "False False False False"


def test_the_ci_profile_prints_a_blob_to_reproduce_a_failure() -> None:
    assert settings.get_profile("ci").print_blob is True


def overrides(source: str) -> list[str]:
    """Return what in ``source`` would take a test out of the ``ci`` profile's randomness.

    ``settings(...)`` with a keyword of `RANDOMNESS`, ``@seed``, ``@reproduce_failure``, and
    choosing or making a profile (one profile for the whole run, chosen in tests/conftest.py).
    """
    found: list[tuple[int, int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        where = (node.lineno, node.col_offset)
        if name == "settings":
            found += [
                (*where, f"settings({k.arg}=...)") for k in node.keywords if k.arg in RANDOMNESS
            ]
        elif name in ("seed", "reproduce_failure", "load_profile", "register_profile"):
            found.append((*where, f"{name}(...)"))
    return [f"line {line}: {what}" for line, _, what in sorted(found)]


def test_no_test_overrides_the_profiles_randomness() -> None:
    offenders = {
        str(path.relative_to(TESTS)): found
        for path in sorted(TESTS.rglob("*.py"))
        if path != CONFTEST and (found := overrides(path.read_text()))
    }
    assert offenders == {}


def test_the_override_check_finds_what_it_forbids() -> None:
    source = (
        "@settings(max_examples=5, derandomize=False)\n@seed(1)\ndef test_x(): ...\n"
        "s = hypothesis.settings(database=None)\nsettings.load_profile('dev')\n"
        "@settings(max_examples=300, deadline=None)\ndef test_y(): ...\n"
    )
    assert [what for _, what in (line.split(": ", 1) for line in overrides(source))] == [
        "settings(derandomize=...)",
        "seed(...)",
        "settings(database=...)",
        "load_profile(...)",
    ]
