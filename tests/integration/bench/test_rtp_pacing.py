"""bench/rtp_pacing.py on a perfect clock prints the perfect figures its README quotes as such."""

from __future__ import annotations

import pytest

from bench import rtp_pacing
from tests.support.virtual_time import run_in_virtual_time


def test_on_a_simulated_clock_the_benchmark_measures_no_lateness_and_no_drift() -> None:
    [burst], [grid] = run_in_virtual_time(lambda: rtp_pacing.measure(1))

    assert burst.mark_s == pytest.approx(0.985, abs=1e-9)  # the figure it compares against
    assert (burst.mean_gap_s, burst.max_gap_s) == pytest.approx((0.02, 0.02), abs=1e-9)
    assert grid.packets == 151  # grid points 0 .. 3.0 s (the sleep's end meets the last one)
    assert (grid.p50_s, grid.p99_s, grid.max_s, grid.drift_s) == pytest.approx((0,) * 4, abs=1e-9)
