"""bench/outgoing.py still runs: a small run exits 0, prints the machine, and every call it placed
succeeded at its one small rate, outgoing and incoming.

The benchmark needs SIPp (the callee and the incoming caller) and dumpcap (the capture it times
the INVITE with), third-party software: so its small run is an interop test, as the in-process
benchmarks' small runs are in tests/integration/bench/. Figures are not checked: timing claims
live in bench/README.md, measured, never asserted in a test. That the calls succeeded is not a
timing: a benchmark whose calls fail measures nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.stack import require

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
SMALL_RUN = ["--rates", "5", "--step-s", "2", "--latency-calls", "10", "--latency-rate", "10"]


def test_a_small_run_of_the_outgoing_benchmark_completes(tmp_path: Path) -> None:
    for tool in ("sipp", "dumpcap", "timeout"):
        require(tool)
    figures = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.outgoing", *SMALL_RUN, "--json", str(figures)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]
    assert "platform" in result.stdout and "python" in result.stdout, result.stdout[-2000:]
    measured = json.loads(figures.read_text())
    latency, [outgoing], [incoming] = (
        measured["latency"],
        measured["outgoing"],
        measured["incoming"],
    )
    assert latency["calls"] == 10 and latency["failed"] == 0, latency
    assert latency["dial_invite_ms"]["n"] == 10 and latency["ok_start_ms"]["n"] == 10, latency
    assert outgoing["failed"] == 0 and outgoing["no_start"] == 0, outgoing
    assert incoming["failed"] == 0, incoming
