"""The relay's heartbeat sender against the fake control plane on 127.0.0.1: signed, periodic,
counting failures (the heartbeat's content: tests/unit/relay/control/test_heartbeat.py)."""

from __future__ import annotations

import asyncio

from relay.control.heartbeat import HeartbeatSender
from relay.control.webhooks import ControlPlaneClient
from tests.integration.relay.control.fake_control_plane import SECRET, FakeControlPlane, Reply


def test_heartbeats_are_signed_sent_at_once_and_then_periodically() -> None:
    held = {"call-1"}

    async def main() -> FakeControlPlane:
        plane = FakeControlPlane()
        await plane.start()
        async with ControlPlaneClient(plane.url, SECRET) as client:
            sender = HeartbeatSender(client, "edge-1", lambda: set(held), interval_s=0.05)
            task = asyncio.create_task(sender.run())
            async with asyncio.timeout(5):
                while len(plane.heartbeats) < 1:
                    await asyncio.sleep(0.005)
                held.add("call-2")
                while len(plane.heartbeats) < 3:
                    await asyncio.sleep(0.005)
            task.cancel()
        await plane.stop()
        return plane

    plane = asyncio.run(main())
    assert plane.heartbeats[0].call_ids == ["call-1"]
    assert plane.heartbeats[-1].call_ids == ["call-1", "call-2"]
    assert {h.edge_id for h in plane.heartbeats} == {"edge-1"}


def test_a_failed_heartbeat_is_counted_and_the_next_one_still_goes() -> None:
    answers = iter([Reply(503, b"down")])

    async def main() -> HeartbeatSender:
        plane = FakeControlPlane(script=lambda path: next(answers, None))
        await plane.start()
        async with ControlPlaneClient(plane.url, SECRET) as client:
            sender = HeartbeatSender(client, "edge-1", set, interval_s=0.01)
            assert await sender.beat() is False
            assert await sender.beat() is True
        await plane.stop()
        return sender

    sender = asyncio.run(main())
    assert (sender.failures, sender.sent) == (1, 1)


def test_the_relay_queue_is_announced_and_a_wake_sends_a_heartbeat_at_once() -> None:
    """docs/relay.md, Commands: the heartbeat names the relay's own queue once it exists, and a
    (re)made queue is announced without waiting for the interval (an hour here)."""
    queue: list[str] = []

    async def main() -> FakeControlPlane:
        plane = FakeControlPlane()
        await plane.start()
        async with ControlPlaneClient(plane.url, SECRET) as client:
            sender = HeartbeatSender(
                client, "edge-1", set, interval_s=3600, queue_url=lambda: next(iter(queue), None)
            )
            task = asyncio.create_task(sender.run())
            async with asyncio.timeout(5):
                while len(plane.heartbeats) < 1:
                    await asyncio.sleep(0.005)
                queue.append("https://sqs.example/1/sipline-edge-edge-1")
                sender.wake()
                while len(plane.heartbeats) < 2:
                    await asyncio.sleep(0.005)
            task.cancel()
        await plane.stop()
        return plane

    plane = asyncio.run(main())
    assert [h.command_queue_url for h in plane.heartbeats] == [
        None,
        "https://sqs.example/1/sipline-edge-edge-1",
    ]
