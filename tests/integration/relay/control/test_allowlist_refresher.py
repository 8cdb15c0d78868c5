"""The allowlist refresher on a real event loop: a failed fetch keeps the last snapshot, and a
refresh asked for comes before the interval (its retry waits on the loop's timer)."""

from __future__ import annotations

import asyncio

from chalicelib.contracts import AllowlistSnapshot
from relay.control.webhooks import AllowlistCache, AllowlistRefresher, ControlPlaneUnavailable


def snapshot(*cidrs: str, version: int = 1) -> AllowlistSnapshot:
    return AllowlistSnapshot(allowed_cidr_ranges=list(cidrs), version=version)


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
