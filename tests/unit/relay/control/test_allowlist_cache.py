"""The IP guard's cache: advisory, fresh or silent (fail open to the webhook)."""

from __future__ import annotations

import asyncio

from chalicelib.contracts import AllowlistSnapshot
from relay.control.webhooks import AllowlistCache, AllowlistRefresher, ControlPlaneUnavailable


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


class ScriptedClient:
    """Answers fetch_allowlist from a list: snapshots, or None for 'unavailable'."""

    def __init__(self, answers: list[AllowlistSnapshot | None]) -> None:
        self.answers = answers
        self.fetches = 0

    async def fetch_allowlist(self) -> AllowlistSnapshot:
        self.fetches += 1
        answer = self.answers.pop(0) if self.answers else None
        if answer is None:
            raise ControlPlaneUnavailable("scripted", retry_after_s=5)
        return answer


def test_refresher_keeps_the_last_snapshot_when_a_fetch_fails_and_refreshes_on_demand() -> None:
    async def main() -> None:
        now = [0.0]
        client = ScriptedClient(
            [snapshot("203.0.113.0/24"), None, snapshot("198.51.100.0/24", version=2)]
        )
        cache = AllowlistCache(refresh_interval_s=3600, max_age_s=7200)
        refresher = AllowlistRefresher(
            client,
            cache,
            clock=lambda: now[0],
            retry_s=0.01,
        )
        task = asyncio.create_task(refresher.run())
        while client.fetches < 1:
            await asyncio.sleep(0.001)
        assert cache.allowed("203.0.113.10", now=now[0]) is True
        refresher.refresh_soon()  # fails, keeps the old snapshot, retries after retry_s
        while client.fetches < 3:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        task.cancel()
        assert refresher.failures == 1
        assert cache.snapshot is not None and cache.snapshot.version == 2
        assert cache.allowed("203.0.113.10", now=now[0]) is False

    asyncio.run(asyncio.wait_for(main(), 5))
