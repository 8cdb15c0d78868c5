"""INVITEs per source: token buckets in a bounded table, time as an argument (relay/rate_limit.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.rate_limit import RateLimit, SourceRateLimiter, source_key

DEFAULTS = RateLimit()


def admitted(limiter: SourceRateLimiter, host: str, times: list[float]) -> list[float]:
    return [now for now in times if limiter.take(host, now) is None]


def test_the_documented_defaults_are_a_burst_of_20_and_5_per_second() -> None:
    assert (DEFAULTS.burst, DEFAULTS.rate_per_s, DEFAULTS.max_sources) == (20, 5.0, 10_000)


def test_a_burst_passes_then_the_next_invite_waits_for_a_token() -> None:
    limiter = SourceRateLimiter(RateLimit(rate_per_s=5.0, burst=20))

    assert admitted(limiter, "203.0.113.10", [0.0] * 20) == [0.0] * 20
    assert limiter.take("203.0.113.10", 0.0) == 1  # a token in 0.2 s: Retry-After is whole seconds
    assert limiter.take("203.0.113.10", 0.2) is None
    assert limiter.take("203.0.113.10", 0.2) == 1


def test_retry_after_says_when_the_next_token_comes() -> None:
    limiter = SourceRateLimiter(RateLimit(rate_per_s=0.1, burst=1))

    assert limiter.take("203.0.113.10", 0.0) is None
    assert limiter.take("203.0.113.10", 0.0) == 10
    assert limiter.take("203.0.113.10", 7.5) == 3  # 2.5 s to go, rounded up
    assert limiter.take("203.0.113.10", 10.0) is None


def test_sources_have_their_own_buckets() -> None:
    limiter = SourceRateLimiter(RateLimit(rate_per_s=1.0, burst=1))

    assert limiter.take("203.0.113.10", 0.0) is None
    assert limiter.take("203.0.113.11", 0.0) is None
    assert limiter.take("203.0.113.10", 0.0) == 1


def test_an_ipv6_source_is_counted_by_its_slash_64_and_a_mapped_ipv4_as_ipv4() -> None:
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:bbbb::2")
    assert source_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:203.0.113.10") == "203.0.113.10"
    assert source_key("not-an-address") == "not-an-address"


def test_rotating_source_addresses_never_grows_the_table_past_its_bound() -> None:
    limiter = SourceRateLimiter(RateLimit(max_sources=100))

    for n in range(10_000):
        limiter.take(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", now=n * 1e-6)

    assert len(limiter) == 100


def test_the_least_recently_used_source_is_forgotten_first() -> None:
    limiter = SourceRateLimiter(RateLimit(rate_per_s=0.001, burst=1, max_sources=2))
    limiter.take("203.0.113.1", 0.0)
    limiter.take("203.0.113.2", 0.0)
    limiter.take("203.0.113.1", 1.0)  # refused, but now the most recently used

    limiter.take("203.0.113.3", 2.0)  # forgets .2, not .1

    # remembered: 3 s at 0.001 token/s refilled 0.003 of a token, 997 s short of a whole one
    assert limiter.take("203.0.113.1", 3.0) == 997
    assert limiter.take("203.0.113.2", 3.0) is None  # forgotten: a full bucket again


def test_a_clock_stepping_back_refills_nothing() -> None:
    limiter = SourceRateLimiter(RateLimit(rate_per_s=1.0, burst=1))
    limiter.take("203.0.113.10", 100.0)

    assert limiter.take("203.0.113.10", 50.0) == 1
    assert limiter.take("203.0.113.10", 100.5) == 1


def test_a_limit_without_room_is_refused() -> None:
    with pytest.raises(ValueError, match="positive rate"):
        RateLimit(rate_per_s=0.0)
    with pytest.raises(ValueError, match="positive rate"):
        RateLimit(burst=0)


@given(
    rate=st.sampled_from([0.5, 1.0, 5.0, 20.0]),
    burst=st.integers(min_value=1, max_value=30),
    gaps=st.lists(st.floats(min_value=0.0, max_value=2.0), max_size=200),
)
def test_over_any_span_a_source_gets_at_most_the_burst_plus_the_rate_times_the_span(
    rate: float, burst: int, gaps: list[float]
) -> None:
    limiter = SourceRateLimiter(RateLimit(rate_per_s=rate, burst=burst))
    times, now = [], 0.0
    for gap in gaps:
        now += gap
        times.append(now)

    passed = admitted(limiter, "203.0.113.10", times)

    for i, start in enumerate(passed):  # passed[i..j] are the INVITEs let through in a span
        for j in range(i, len(passed)):
            assert j - i + 1 <= burst + rate * (passed[j] - start) + 1e-9
