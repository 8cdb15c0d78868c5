"""Every in-process benchmark of ``make bench`` still runs: a small run of each exits 0 and prints
the machine it ran on (bench/machine.py). A benchmark that rots (an API it calls changed) fails
here, not months later when someone wants its figure. Figures are not checked: timing claims live
in bench/README.md, measured, never asserted in a test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SMALL_RUNS = {
    "routing": ["--sizes", "1", "20"],
    "context": ["--sizes", "10"],
    "sip_parser": ["--iterations", "200", "--repeats", "1"],
    "rtp": ["--packets", "2000"],
    "codecs": ["--seconds", "0.2"],
    "media": ["--seconds", "1"],
    "rtp_pacing": ["--repeats", "1"],
    "cold_start": ["--runs", "1"],
    "bridge_path": ["--seconds", "0.05"],
}

LOAD = {"sip_load", "relay_calls", "outgoing", "transfer"}
"""``make bench-load``'s benchmarks (SIPp, dumpcap): not run here; the small runs of
bench/outgoing.py and bench/transfer.py are tests/interop/test_bench_outgoing.py and
tests/interop/test_bench_transfer.py."""


def test_every_benchmark_of_make_bench_is_run_here() -> None:
    makefile = (ROOT / "Makefile").read_text()
    in_make = {
        line.split("bench.")[1].split()[0] for line in makefile.splitlines() if "-m bench." in line
    }
    assert in_make - LOAD == set(SMALL_RUNS)


@pytest.mark.parametrize("name", sorted(SMALL_RUNS))
def test_a_small_run_of_the_benchmark_completes(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *SMALL_RUNS[name]],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "platform" in result.stdout and "python" in result.stdout, result.stdout[-2000:]
