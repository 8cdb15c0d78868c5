"""Timers A to M derived from T1, T2 and T4 (RFC 3261 Table 4, RFC 6026)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.sip.transaction.timers import Timers


def test_timers_default_to_rfc_3261_table_4_values() -> None:
    timers = Timers()

    assert (timers.T1, timers.T2, timers.T4) == (0.5, 4.0, 5.0)
    assert (timers.A, timers.E, timers.G) == (0.5, 0.5, 0.5)
    assert (timers.B, timers.F, timers.H) == (32.0, 32.0, 32.0)


def test_timer_d_is_32_seconds_on_unreliable_transports_and_zero_on_reliable_ones() -> None:
    assert Timers().D(reliable=False) == 32.0
    assert Timers().D(reliable=True) == 0.0


def test_timer_d_covers_the_servers_timer_h_window_when_t1_is_raised() -> None:
    timers = Timers(T1=1.0, T2=8.0)

    assert timers.D(reliable=False) == 64.0 == timers.H


def test_timers_i_j_k_are_zero_on_reliable_transports() -> None:
    timers = Timers()

    assert (timers.I(reliable=True), timers.J(reliable=True), timers.K(reliable=True)) == (0, 0, 0)
    assert timers.I(reliable=False) == 5.0
    assert timers.J(reliable=False) == 32.0
    assert timers.K(reliable=False) == 5.0


def test_rfc_6026_timers_l_and_m_are_64_t1() -> None:
    assert (Timers().L, Timers().M) == (32.0, 32.0)
    assert (Timers(T1=0.25).L, Timers(T1=0.25).M) == (16.0, 16.0)


def test_timers_are_frozen_values_not_global_settings() -> None:
    timers = Timers()

    with pytest.raises(dataclasses.FrozenInstanceError):
        timers.T1 = 1.0  # type: ignore[misc]
    assert Timers(T1=0.1) != timers


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"T1": 0.0}, "SIP timers must be positive"),
        ({"T4": -1.0}, "SIP timers must be positive"),
        ({"T1": 5.0, "T2": 4.0}, "T2 (4.0) must not be smaller than T1 (5.0)"),
    ],
)
def test_timers_reject_impossible_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Timers(**kwargs)


@given(t1=st.floats(0.001, 10.0), extra=st.floats(0.0, 10.0), t4=st.floats(0.001, 20.0))
def test_every_timer_scales_with_t1_and_t4(t1: float, extra: float, t4: float) -> None:
    timers = Timers(T1=t1, T2=t1 + extra, T4=t4)

    assert timers.A == timers.E == timers.G == t1
    assert timers.B == timers.F == timers.H == timers.L == timers.M == 64 * t1
    assert timers.D(reliable=False) >= max(32.0, timers.H)
    assert timers.I(reliable=False) == timers.K(reliable=False) == t4
    assert timers.J(reliable=False) == 64 * t1
