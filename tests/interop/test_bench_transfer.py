"""bench/transfer.py still runs: a small run exits 0, prints the machine, and every transfer it
asked for was carried out (REFERs succeeded, bridged calls bridged) and seen on the wire.

The benchmark needs SIPp (callers, the REFER's transferee, the bridged target) and dumpcap (the
captures it times the REFER, the INVITE and the bridged frames with), third-party software: so
its small run is an interop test, as bench/outgoing.py's is. Figures are not checked: timing
claims live in bench/README.md, measured, never asserted in a test. That the transfers happened
and were each measured is not a timing: a benchmark whose transfers fail measures nothing.
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
SMALL_RUN = ["--refers", "4", "--bridged", "2", "--probes", "1", "--window-s", "1"]


def test_a_small_run_of_the_transfer_benchmark_completes(tmp_path: Path) -> None:
    for tool in ("sipp", "dumpcap", "sox", "timeout"):
        require(tool)
    figures = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.transfer", *SMALL_RUN, "--json", str(figures)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]
    assert "platform" in result.stdout and "python" in result.stdout, result.stdout[-2000:]
    measured = json.loads(figures.read_text())
    assert (measured["refer_sent"], measured["refer_succeeded"]) == (4, 4), measured
    assert measured["refer_sipp_rc"] == 0, measured
    assert measured["command_refer_ms"]["n"] == 4, measured
    assert (measured["bridged_sent"], measured["bridged_done"]) == (3, 3), measured
    assert measured["command_invite_ms"]["n"] == 3, measured
    assert measured["caller_target_ms"]["n"] > 0 and measured["target_caller_ms"]["n"] > 0
    assert set(measured["cpu"]) == {"agent", "bridged"}, measured
