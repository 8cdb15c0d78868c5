"""The IP guard's cache: advisory, fresh or silent (fail open to the webhook).

The refresher that keeps it fresh runs on a real event loop with real timers:
tests/integration/relay/control/test_allowlist_refresher.py."""

from __future__ import annotations

from chalicelib.contracts import AllowlistSnapshot
from relay.control.webhooks import AllowlistCache


def snapshot(*cidrs: str, version: int = 1) -> AllowlistSnapshot:
    return AllowlistSnapshot(allowed_cidr_ranges=list(cidrs), version=version)


def test_an_empty_cache_cannot_tell_so_the_guard_lets_the_invite_through() -> None:
    assert AllowlistCache().allowed("198.51.100.7", now=0.0) is None


def test_a_fresh_cache_admits_inside_and_refuses_outside_the_ranges() -> None:
    cache = AllowlistCache(max_age_s=60)
    cache.update(snapshot("203.0.113.0/24"), now=100.0)
    assert cache.allowed("203.0.113.10", now=130.0) is True
    assert cache.allowed("198.51.100.7", now=130.0) is False
    assert cache.allowed("::ffff:203.0.113.10", now=130.0) is True
    assert cache.allowed("not an address", now=130.0) is False


def test_a_fetched_empty_list_admits_nobody_like_the_control_plane() -> None:
    cache = AllowlistCache()
    cache.update(snapshot(), now=0.0)
    assert cache.allowed("203.0.113.10", now=1.0) is False


def test_a_stale_cache_cannot_tell_any_more() -> None:
    cache = AllowlistCache(max_age_s=60)
    cache.update(snapshot("203.0.113.0/24"), now=100.0)
    assert cache.allowed("198.51.100.7", now=160.0) is False
    assert cache.allowed("198.51.100.7", now=160.5) is None


def test_refresh_is_due_at_once_then_every_interval_and_on_demand() -> None:
    cache = AllowlistCache(refresh_interval_s=15)
    assert cache.next_refresh_at(now=5.0) == 5.0
    cache.update(snapshot("203.0.113.0/24"), now=10.0)
    assert cache.next_refresh_at(now=11.0) == 25.0
    cache.request_refresh()
    assert cache.next_refresh_at(now=11.0) == 11.0


def test_update_says_whether_the_version_changed() -> None:
    cache = AllowlistCache()
    assert cache.update(snapshot("203.0.113.0/24", version=1), now=0.0) is True
    assert cache.update(snapshot("203.0.113.0/24", version=1), now=1.0) is False
    assert cache.update(snapshot("198.51.100.0/24", version=2), now=2.0) is True
