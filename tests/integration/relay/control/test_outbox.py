"""The event outbox: batched, spooled, retried until acknowledged, and replayed after a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chalicelib.contracts import CallEvent, CallEventBatch, CallEventBatchResult, CallEventType
from relay.control.outbox import EventOutbox, SpoolLocked
from relay.control.webhooks import ControlPlaneClient, ControlPlaneUnavailable, RequestRefused
from tests.integration.relay.control.fake_control_plane import SECRET, FakeControlPlane, Reply

ROOT = Path(__file__).resolve().parents[4]
START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def event(n: int, call_id: str = "call-1") -> CallEvent:
    return CallEvent(
        event_id=f"ev-{n:04d}",
        type=CallEventType.RINGING,
        occurred_at=START + timedelta(milliseconds=n),
        call_id=call_id,
        leg_id="leg-1",
    )


def segments(spool: Path) -> list[str]:
    return sorted(p.name for p in spool.glob("segment-*.jsonl")) if spool.exists() else []


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


def bounded(coroutine: object, timeout_s: float = 20.0) -> None:
    asyncio.run(asyncio.wait_for(coroutine, timeout_s))  # type: ignore[arg-type]


class GatedSender:
    """Acknowledges batches only once ``gate`` is set; remembers them."""

    def __init__(self, *, refuse: str | None = None, fail_times: int = 0) -> None:
        self.gate = asyncio.Event()
        self.refuse = refuse
        self.fail_times = fail_times
        self.batches: list[list[str]] = []

    async def post_events(self, batch: CallEventBatch) -> CallEventBatchResult:
        await self.gate.wait()
        ids = [e.event_id for e in batch.events]
        if self.fail_times:
            self.fail_times -= 1
            raise ControlPlaneUnavailable("scripted outage", retry_after_s=5)
        if self.refuse in ids:
            raise RequestRefused("400: invalid event", retry_after_s=5, status=400)
        self.batches.append(ids)
        return CallEventBatchResult(applied=len(ids), duplicates=0, unknown=0)

    @property
    def delivered(self) -> list[str]:
        return [i for batch in self.batches for i in batch]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "spool"


def test_recorded_events_are_batched_delivered_once_and_the_spool_emptied(spool: Path) -> None:
    async def main() -> None:
        plane = FakeControlPlane()
        await plane.start()
        async with ControlPlaneClient(plane.url, SECRET) as client:
            outbox = EventOutbox(client, spool, batch_window_s=0.05)
            outbox.start()
            for n in range(250):
                outbox.record(event(n))
            assert await outbox.drain(10) == 0
        await plane.stop()
        assert sorted(plane.applied) == [f"ev-{n:04d}" for n in range(250)]
        assert all(len(batch) <= 100 for batch in plane.batches)
        assert outbox.stats.delivered == 250 and outbox.stats.retries == 0
        assert segments(spool) == []

    bounded(main())


def test_a_full_batch_goes_out_without_waiting_for_the_window(spool: Path) -> None:
    async def main() -> None:
        sender = GatedSender()
        sender.gate.set()
        outbox = EventOutbox(sender, spool, max_batch=5, batch_window_s=60)
        async with outbox:
            for n in range(5):
                outbox.record(event(n))
            await wait_until(lambda: len(sender.delivered) == 5)
        assert sender.batches == [[f"ev-{n:04d}" for n in range(5)]]

    bounded(main())


def test_delivery_is_retried_until_the_control_plane_acknowledges(spool: Path) -> None:
    failures = iter(range(3))

    def script(path: str) -> Reply | None:
        if path.endswith("/events") and next(failures, None) is not None:
            return Reply(500, b"flaky")
        return None

    async def main() -> None:
        plane = FakeControlPlane(script=script)
        await plane.start()
        async with ControlPlaneClient(plane.url, SECRET) as client:
            outbox = EventOutbox(client, spool, batch_window_s=0.01, backoff_base_s=0.001)
            outbox.start()
            for n in range(40):
                outbox.record(event(n))
            assert await outbox.drain(10) == 0
        await plane.stop()
        assert outbox.stats.retries == 3
        assert sorted(plane.applied) == [f"ev-{n:04d}" for n in range(40)]
        assert segments(spool) == []

    bounded(main())


def test_backoff_is_exponential_capped_and_jittered(spool: Path) -> None:
    delays: list[float] = []
    jitter = iter([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])

    async def record_sleep(seconds: float) -> None:
        delays.append(seconds)

    async def main() -> None:
        sender = GatedSender(fail_times=6)
        sender.gate.set()
        outbox = EventOutbox(
            sender,
            spool,
            backoff_base_s=0.2,
            backoff_cap_s=2.0,
            max_attempts=10,  # more than the 6 failures: the event is never parked here
            random_source=lambda: next(jitter),
            sleep=record_sleep,
        )
        outbox.start()
        outbox.record(event(1))
        assert await outbox.drain(5) == 0

    bounded(main())
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 1.0])


def test_a_refused_event_is_isolated_and_the_others_are_delivered(spool: Path) -> None:
    async def main() -> None:
        sender = GatedSender(refuse="ev-0006")
        sender.gate.set()
        outbox = EventOutbox(sender, spool, max_batch=10, batch_window_s=60)
        outbox.start()
        for n in range(10):
            outbox.record(event(n))
        assert await outbox.drain(5) == 0
        assert sorted(sender.delivered) == [f"ev-{n:04d}" for n in range(10) if n != 6]
        assert (outbox.stats.refused, outbox.stats.delivered) == (1, 9)
        assert segments(spool) == []

    bounded(main())


def test_events_survive_a_restart_while_the_control_plane_is_down(spool: Path) -> None:
    async def main() -> None:
        plane = FakeControlPlane()  # not started: nothing listens on its port
        async with ControlPlaneClient(plane.url, SECRET) as client:
            first = EventOutbox(client, spool, batch_window_s=0.01, backoff_base_s=0.01)
            first.start()
            for n in range(30):
                first.record(event(n))
            await wait_until(lambda: first.stats.retries >= 2)
            await first.close()
            assert segments(spool) == ["segment-00000001.jsonl"]
            assert plane.applied == {}

            await plane.start()
            second = EventOutbox(client, spool, batch_window_s=0.01, backoff_base_s=0.01)
            second.start()
            assert second.stats.replayed == 30
            assert await second.drain(10) == 0
        await plane.stop()
        assert sorted(plane.applied) == [f"ev-{n:04d}" for n in range(30)]
        assert segments(spool) == []

    bounded(main())


_KILLED_RELAY = """
import asyncio, sys
from pathlib import Path
from tests.integration.relay.control.test_outbox import event
from relay.control.outbox import EventOutbox, SpoolLocked
from relay.control.webhooks import ControlPlaneClient

async def main() -> None:
    client = ControlPlaneClient(sys.argv[1], "secret")
    outbox = EventOutbox(client, Path(sys.argv[2]), backoff_base_s=30)
    outbox.start()
    for n in range(25):
        outbox.record(event(n))
    print("recorded", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_events_survive_the_relay_process_being_killed(spool: Path) -> None:
    plane = FakeControlPlane()  # down while the relay runs
    relay = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED_RELAY), plane.url, str(spool)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
    )
    try:
        assert relay.stdout is not None
        assert relay.stdout.readline() == b"recorded\n"
    finally:
        relay.send_signal(signal.SIGKILL)
        relay.wait(timeout=10)
        relay.stdout.close()  # type: ignore[union-attr]

    async def main() -> None:
        await plane.start()
        async with ControlPlaneClient(plane.url, SECRET) as client:
            outbox = EventOutbox(client, spool, batch_window_s=0.01)
            outbox.start()
            assert await outbox.drain(10) == 0
        await plane.stop()

    bounded(main())
    assert sorted(plane.applied) == [f"ev-{n:04d}" for n in range(25)]
    assert segments(spool) == []


def test_segments_rotate_and_each_is_deleted_once_acknowledged(spool: Path) -> None:
    async def main() -> None:
        sender = GatedSender()
        outbox = EventOutbox(sender, spool, max_batch=10, batch_window_s=60, segment_max_events=10)
        outbox.start()
        for n in range(35):
            outbox.record(event(n))
        assert len(segments(spool)) == 4
        sender.gate.set()
        await wait_until(lambda: len(sender.delivered) >= 20)
        await wait_until(lambda: len(segments(spool)) <= 2)
        assert await outbox.drain(5) == 0
        assert segments(spool) == []

    bounded(main())


def test_a_full_spool_keeps_new_events_in_memory_and_counts_them(spool: Path) -> None:
    async def main() -> None:
        sender = GatedSender()
        outbox = EventOutbox(sender, spool, max_spool_bytes=1000)
        outbox.start()
        for n in range(20):
            outbox.record(event(n))
        spooled = sum(len(p.read_bytes().splitlines()) for p in spool.glob("segment-*"))
        assert 0 < spooled < 20
        assert outbox.stats.not_spooled == 20 - spooled
        sender.gate.set()
        assert await outbox.drain(5) == 0
        assert len(sender.delivered) == 20

    bounded(main())


def test_a_full_memory_queue_refuses_new_events(spool: Path) -> None:
    async def main() -> None:
        sender = GatedSender()
        sender.gate.set()
        outbox = EventOutbox(sender, spool, max_pending_events=5)
        for n in range(8):
            outbox.record(event(n))
        assert outbox.stats.dropped == 3
        outbox.start()
        assert await outbox.drain(5) == 0
        assert sender.delivered == [f"ev-{n:04d}" for n in range(5)]

    bounded(main())


def test_a_torn_last_line_is_skipped_on_replay(spool: Path) -> None:
    spool.mkdir()
    lines = [event(n).model_dump_json(by_alias=True) for n in range(3)]
    torn = lines[2][: len(lines[2]) // 2]
    (spool / "segment-00000007.jsonl").write_text(f"{lines[0]}\n{lines[1]}\n{torn}")

    async def main() -> None:
        sender = GatedSender()
        sender.gate.set()
        outbox = EventOutbox(sender, spool)
        outbox.start()
        assert (outbox.stats.replayed, outbox.stats.corrupt_lines) == (2, 1)
        outbox.record(event(9))
        assert await outbox.drain(5) == 0
        assert sender.delivered == ["ev-0000", "ev-0001", "ev-0009"]
        assert segments(spool) == []

    bounded(main())


def test_drain_gives_up_in_time_and_leaves_the_rest_spooled(spool: Path) -> None:
    async def main() -> None:
        sender = GatedSender()  # never acknowledges
        outbox = EventOutbox(sender, spool)
        outbox.start()
        for n in range(5):
            outbox.record(event(n))
        assert await outbox.drain(0.2) == 5
        outbox.record(event(5))  # after close: spooled for the next start only
        lines = [line for p in spool.glob("segment-*") for line in p.read_bytes().splitlines()]
        assert len(lines) == 6

        again = GatedSender()
        again.gate.set()
        successor = EventOutbox(again, spool)
        successor.start()
        assert await successor.drain(5) == 0
        assert sorted(again.delivered) == [f"ev-{n:04d}" for n in range(6)]

    bounded(main())


def test_max_batch_beyond_the_contract_is_refused(spool: Path) -> None:
    with pytest.raises(ValueError, match="max_batch must be from 1 to 500"):
        EventOutbox(GatedSender(), spool, max_batch=501)


def test_two_live_outboxes_cannot_share_a_spool(spool: Path) -> None:
    async def main() -> None:
        first = EventOutbox(GatedSender(), spool)
        first.open()
        with pytest.raises(SpoolLocked, match="is in use by another process"):
            EventOutbox(GatedSender(), spool).open()
        await first.close()
        second = EventOutbox(GatedSender(), spool)
        second.open()
        await second.close()

    bounded(main())


def test_the_calls_with_undelivered_events_are_known_until_acknowledged(spool: Path) -> None:
    """The heartbeat lists them, so the reaper never closes a call whose events are on the way."""

    async def main() -> None:
        sender = GatedSender()
        outbox = EventOutbox(sender, spool, batch_window_s=0.01)
        outbox.start()
        outbox.record(event(1, "call-a"))
        outbox.record(event(2, "call-b"))
        assert outbox.undelivered_call_ids() == {"call-a", "call-b"}
        sender.gate.set()
        assert await outbox.drain(5) == 0
        assert outbox.undelivered_call_ids() == set()

    bounded(main())


def test_an_outage_of_more_than_a_thousand_failed_posts_does_not_stop_delivery(spool: Path) -> None:
    """The backoff's 2 ** attempts overflowed a float after 1,024 failures (8.5 h at the 30 s
    cap) and the outbox task died: no event was delivered again until a restart."""

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        sender = GatedSender(fail_times=1100)
        sender.gate.set()
        outbox = EventOutbox(sender, spool, max_attempts=2000, sleep=no_wait)
        outbox.start()
        outbox.record(event(1))
        assert await outbox.drain(10) == 0
        assert sender.delivered == ["ev-0001"]

    bounded(main())
