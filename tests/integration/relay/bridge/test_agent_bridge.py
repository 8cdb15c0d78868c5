"""AgentBridge against a scripted agent server on 127.0.0.1 and the in-memory media core."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import statistics
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace

import pytest
from websockets.asyncio.server import ServerConnection, serve

from chalicelib.contracts import MediaFraming
from relay.bridge.agent_ws import (
    AgentBridge,
    AgentLeft,
    AgentLeftReason,
    AgentUnreachable,
    BridgeFailed,
    BridgeOutcome,
    BridgeSettings,
    BridgeStopped,
)
from tests.integration.relay.bridge.harness import (
    FAST,
    IDENTITY,
    Agent,
    FakeMediaPort,
    agent_server,
    bridge,
    run,
    until,
)
from tests.support.virtual_time import run_in_virtual_time

SID = IDENTITY.stream_sid


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def media(data: bytes) -> dict[str, object]:
    return {"event": "media", "streamSid": SID, "media": {"payload": b64(data)}}


def mark(name: str) -> dict[str, object]:
    return {"event": "mark", "streamSid": SID, "mark": {"name": name}}


@asynccontextmanager
async def call(
    agent: Agent,
    port: FakeMediaPort,
    *,
    framing: MediaFraming = MediaFraming.TWILIO,
    settings: BridgeSettings = FAST,
) -> AsyncIterator[tuple[AgentBridge, asyncio.Task[BridgeOutcome]]]:
    """Connect a bridge to ``agent``, skip ``connected``/``start``; stop it at the end."""
    async with agent_server(agent) as url, asyncio.TaskGroup() as group:
        under_test = bridge(url, port, framing=framing, settings=settings)
        task = group.create_task(under_test.run())
        assert await under_test.connected()
        await agent.next_json()
        await agent.next_json()
        yield under_test, task
        under_test.stop()


def test_the_agent_gets_connected_then_start_with_the_call_and_its_template_context() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        async with agent_server(agent) as url:
            under_test = bridge(url, port)
            task = asyncio.create_task(under_test.run())
            assert await under_test.connected() is True
            connected, start = await agent.next_json(), await agent.next_json()
            under_test.stop()
            assert await task == BridgeStopped()
        assert agent.paths == ["/agent"]
        assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        assert start == {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "streamSid": SID,
                "accountSid": "AC0000000000000000000000000000000a",
                "callSid": "call_7f3a",
                "tracks": ["inbound"],
                "customParameters": {
                    "call_id": "call_7f3a",
                    "from_number": "+15550100",
                    "to_number": "+15550199",
                    "template_context": (
                        '{"customer_name":"Bob","account":{"tier":"gold","open_tickets":2}}'
                    ),
                    "direction": "incoming",
                    "agent_id": "agent_1",
                },
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": SID,
        }

    run(scenario)


def test_caller_audio_reaches_the_agent_as_one_media_message_every_20_ms() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        frames = [bytes([index]) * 160 for index in range(25)]
        async with call(agent, port):
            await port.feed(frames)
            received = [await agent.next_json() for _ in frames]
        assert [m["sequenceNumber"] for m in received] == [str(n) for n in range(2, 27)]
        assert [m["media"]["chunk"] for m in received] == [str(n) for n in range(1, 26)]
        assert [m["media"]["timestamp"] for m in received] == [str(20 * n) for n in range(25)]
        assert {m["media"]["track"] for m in received} == {"inbound"}
        assert [base64.b64decode(m["media"]["payload"]) for m in received] == frames
        times = [at for at, message in agent.arrivals if '"media"' in str(message)]
        gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        assert 0.015 < statistics.median(gaps) < 0.025
        assert 0.40 < times[-1] - times[0] < 0.70

    run(scenario)


def test_a_mark_is_echoed_only_once_the_audio_before_it_has_been_played() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        async with call(agent, port) as (under_test, _):
            await agent.send(media(b"\x7f" * 800))
            await agent.send(mark("m1"))
            await until(lambda: port.pending_marks == [(800, "m1")])
            port.play_out(400)
            await asyncio.sleep(0.1)
            assert "mark" not in agent.events()
            port.play_out(400)
            echoed = await agent.next_event("mark")
        assert echoed == {
            "event": "mark",
            "sequenceNumber": "2",
            "streamSid": SID,
            "mark": {"name": "m1"},
        }
        assert port.played == b"\x7f" * 800
        assert (under_test.counters.marks_in, under_test.counters.marks_echoed) == (1, 1)

    run(scenario)


def test_clear_flushes_the_queued_audio_at_once_and_returns_its_marks() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        async with call(agent, port) as (under_test, _):
            await agent.send(media(b"\x11" * 1600))
            await agent.send(mark("before-barge-in"))
            await agent.send({"event": "clear", "streamSid": SID})
            echoed = await agent.next_event("mark")
            assert echoed["mark"] == {"name": "before-barge-in"}
            assert (port.clears, bytes(port.queued), bytes(port.played)) == (1, b"", b"")
            assert under_test.counters.clears == 1

    run(scenario)


def test_dtmf_digits_reach_the_agent_in_order_and_a_bad_digit_is_counted() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        async with call(agent, port) as (under_test, _):
            port.press("1", "#", "x", "*")
            received = [await agent.next_event("dtmf") for _ in range(3)]
            assert under_test.counters.bad_dtmf == 1
        assert received[0] == {
            "event": "dtmf",
            "streamSid": SID,
            "sequenceNumber": "2",
            "dtmf": {"track": "inbound_track", "digit": "1"},
        }
        assert [m["dtmf"]["digit"] for m in received] == ["1", "#", "*"]
        assert [m["sequenceNumber"] for m in received] == ["2", "3", "4"]

    run(scenario)


def test_the_agents_digits_reach_the_media_and_bad_ones_are_counted_not_fatal() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        async with call(agent, port) as (under_test, task):
            dtmf = {"event": "dtmf", "streamSid": SID}
            await agent.send({**dtmf, "dtmf": {"digits": "1#", "durationMs": 120}})
            await agent.send({**dtmf, "dtmf": {"digits": "1" * 33}})
            await agent.send({**dtmf, "dtmf": {"digits": "12w"}})
            await agent.send({**dtmf, "dtmf": {}})
            await agent.send({**dtmf, "dtmf": {"digits": "*9"}})
            await until(lambda: len(port.digits_sent) == 2)
            assert port.digits_sent == [("1#", 120), ("*9", 100)]
            assert under_test.digits.counters.refused_invalid == 2
            assert under_test.framing.counters.invalid_messages == 1
            assert not task.done()

    run(scenario)


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (4000, "conversation over")])
def test_the_agent_closing_the_socket_ends_the_bridge_with_agent_left(
    code: int, reason: str
) -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        async with call(agent, port) as (_, task):
            assert agent.connection is not None
            await agent.connection.close(code, reason)
            outcome = await asyncio.wait_for(task, 3)
        assert outcome == AgentLeft(AgentLeftReason.AGENT_CLOSED, code, reason)

    run(scenario)


def test_a_dropped_connection_ends_the_bridge_as_connection_lost() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        async with call(agent, port) as (_, task):
            assert agent.connection is not None
            agent.connection.transport.abort()
            outcome = await asyncio.wait_for(task, 3)
        assert outcome == AgentLeft(AgentLeftReason.CONNECTION_LOST, 1006)

    run(scenario)


def test_stop_sends_stop_last_and_closes_the_socket_normally() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        async with call(agent, port) as (under_test, task):
            await port.feed([b"\xff" * 160] * 3)
            await until(lambda: len(agent.arrivals) == 5)  # connected, start, 3 media
            port.press("5")
            await agent.next_event("dtmf")
            under_test.stop()
            assert await asyncio.wait_for(task, 3) == BridgeStopped()
            await asyncio.wait_for(agent.closed.wait(), 3)
        stop = await agent.next_json()
        assert stop == {
            "event": "stop",
            "sequenceNumber": "6",
            "stop": {"accountSid": IDENTITY.account_sid, "callSid": IDENTITY.call_sid},
            "streamSid": SID,
        }
        assert agent.events()[-1] == "stop"
        assert agent.close_code == 1000

    run(scenario)


@contextmanager
def refused_url() -> Iterator[str]:
    """A URL whose port is bound (so nobody else takes it) but not listening: connects are refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"ws://127.0.0.1:{held.getsockname()[1]}/agent"


def test_an_agent_that_is_down_is_retried_a_bounded_number_of_times() -> None:
    async def scenario() -> None:
        with refused_url() as url:
            under_test = bridge(url, FakeMediaPort())
            loop = asyncio.get_running_loop()
            started = loop.time()
            outcome = await under_test.run()
            elapsed = loop.time() - started
        assert isinstance(outcome, AgentUnreachable)
        assert outcome.attempts == FAST.max_attempts == under_test.counters.connect_attempts
        assert "Connect" in outcome.error  # ConnectionRefusedError
        # Refused at once each time: only the pauses between the 4 attempts take time.
        assert elapsed == pytest.approx(3 * FAST.retry_delays_s[0], abs=1e-9)
        assert await under_test.connected() is False

    run_in_virtual_time(scenario)


@asynccontextmanager
async def black_hole() -> AsyncIterator[tuple[str, list[float]]]:
    """A TCP server that accepts and never answers the WebSocket upgrade; and when it accepted."""
    held: list[asyncio.StreamWriter] = []
    accepted: list[float] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(asyncio.get_running_loop().time())
        held.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/agent", accepted
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def test_an_agent_that_never_answers_the_upgrade_fails_within_the_total_bound() -> None:
    async def scenario() -> None:
        settings = replace(FAST, connect_timeout_s=1.0, attempt_timeout_s=0.3, max_attempts=10)
        async with black_hole() as (url, accepted):
            under_test = bridge(url, FakeMediaPort(), settings=settings)
            loop = asyncio.get_running_loop()
            started = loop.time()
            outcome = await under_test.run()
            elapsed = loop.time() - started
        assert isinstance(outcome, AgentUnreachable)
        assert "TimeoutError" in outcome.error
        # 0.3 s per attempt and 0.05 s between them: attempts start at 0, 0.35 and 0.7 s; the
        # third gets the 0.3 s left of the 1 s, and the total bound, not the 10 attempts, ends it.
        assert outcome.attempts == 3
        assert [t - started for t in accepted] == pytest.approx([0.0, 0.35, 0.7], abs=1e-9)
        assert elapsed == pytest.approx(settings.connect_timeout_s, abs=1e-9)

    run_in_virtual_time(scenario)


def test_stop_while_connecting_gives_up_at_once() -> None:
    async def scenario() -> None:
        async with black_hole() as (url, accepted):
            under_test = bridge(url, FakeMediaPort())
            task = asyncio.create_task(under_test.run())
            await asyncio.sleep(0.2)
            loop = asyncio.get_running_loop()
            stopped_at = loop.time()
            under_test.stop()
            assert await task == BridgeStopped()
            assert loop.time() == stopped_at  # no timer had to run out first
            assert accepted != []  # it was in the middle of an attempt
            assert await under_test.connected() is False

    run_in_virtual_time(scenario)


def test_an_agent_flooding_audio_is_capped_by_the_media_core_and_counted() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort(max_queued_bytes=8000)
        async with call(agent, port) as (under_test, task):
            for second in range(10):
                await agent.send(media(bytes([second]) * 8000))
            await until(lambda: len(port.received) == 80000)
            assert bytes(port.queued) == bytes([9]) * 8000  # the newest second survives
            assert under_test.counters.agent_audio_dropped_bytes == 72000
            assert under_test.counters.agent_audio_bytes == 80000
            assert not task.done()

    run(scenario)


def test_invalid_agent_messages_are_counted_and_ignored_and_the_call_goes_on() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        async with call(agent, port) as (under_test, task):
            for bad in (
                "not json {",
                '{"event": "dance"}',
                '{"event": "media"}',
                "[]",
                '{"event": "media", "media": {"payload": "***"}}',
            ):
                await agent.send(bad)
            await agent.send(media(b"\x01\x02"))
            await until(lambda: port.received == b"\x01\x02")
            counters = under_test.framing.counters
            assert (counters.invalid_json, counters.unknown_events) == (1, 1)
            assert (counters.invalid_messages, counters.bad_payloads) == (2, 1)
            assert (counters.messages_in, counters.dropped) == (6, 5)
            assert not task.done()

    run(scenario)


def test_a_gigantic_message_closes_the_socket_with_1009_and_ends_the_bridge() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        settings = replace(FAST, max_message_bytes=4096)
        async with call(agent, port, settings=settings) as (_, task):
            await agent.send(media(b"\x00" * 10000))
            outcome = await asyncio.wait_for(task, 3)
        assert isinstance(outcome, AgentLeft)
        assert (outcome.reason, outcome.close_code) == (AgentLeftReason.MESSAGE_TOO_BIG, 1009)

    run(scenario)


@asynccontextmanager
async def silent_agent() -> AsyncIterator[str]:
    """Completes the WebSocket upgrade (RFC 6455 §4.2.2), then never answers a ping."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        accept_key = base64.b64encode(hashlib.sha1(key + guid).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key + b"\r\n\r\n"
        )
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/agent"
    finally:
        for writer in held:
            writer.close()
        server.close()


def test_an_agent_that_stops_answering_pings_ends_the_bridge_with_keepalive_timeout() -> None:
    async def scenario() -> None:
        settings = BridgeSettings(
            ping_interval_s=0.1,
            ping_timeout_s=0.2,
            close_timeout_s=0.3,
            retry_delays_s=(0.05,),
            egress=FAST.egress,
        )
        async with silent_agent() as url:
            under_test = bridge(url, FakeMediaPort(), settings=settings)
            task = asyncio.create_task(under_test.run())
            assert await under_test.connected()
            outcome = await asyncio.wait_for(task, 3)
        assert isinstance(outcome, AgentLeft)
        assert (outcome.reason, outcome.close_code) == (AgentLeftReason.KEEPALIVE_TIMEOUT, 1011)

    run(scenario)


def test_a_failing_media_core_ends_the_bridge_with_internal_error_not_the_process() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        port.fail_on_play = True
        async with call(agent, port) as (_, task):
            await agent.send(media(b"\x00" * 160))
            outcome = await asyncio.wait_for(task, 3)
            await asyncio.wait_for(agent.closed.wait(), 3)
        assert outcome == BridgeFailed("internal_error")
        assert agent.close_code == 1011

    run(scenario)


def test_the_hd_framing_sends_binary_s16le_frames_and_plays_binary_audio() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        async with agent_server(agent) as url:
            under_test = bridge(url, port, framing=MediaFraming.PCM16K)
            task = asyncio.create_task(under_test.run())
            assert await under_test.connected()
            await agent.next_json()
            start = await agent.next_json()
            frames = [bytes([n, 0]) * 320 for n in range(3)]
            await port.feed(frames)
            received = [await agent.next() for _ in frames]
            await agent.send(b"\x01\x00" * 160)
            await agent.send(b"\x01\x00\x02")  # half a sample: dropped
            await agent.send(mark("hd"))
            await until(lambda: port.pending_marks == [(320, "hd")])
            port.play_out(320)
            echoed = await agent.next_event("mark")
            under_test.stop()
            assert await task == BridgeStopped()
        assert start["start"]["mediaFormat"] == {
            "encoding": "pcm_s16le",
            "sampleRate": 16000,
            "channels": 1,
        }
        assert received == frames
        assert port.played == b"\x01\x00" * 160
        assert under_test.framing.counters.bad_payloads == 1
        assert echoed["sequenceNumber"] == "5"  # start 1, three audio frames 2-4

    run(scenario)


def test_cancelling_the_bridge_closes_the_socket() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        async with agent_server(agent) as url:
            under_test = bridge(url, port)
            task = asyncio.create_task(under_test.run())
            assert await under_test.connected()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(agent.closed.wait(), 3)
        assert agent.close_code == 1001  # going away
        assert "stop" not in agent.events()

    run(scenario)


def test_an_agent_that_stops_reading_loses_caller_audio_not_memory_and_still_gets_digits() -> None:
    async def scenario() -> None:
        reading = asyncio.Event()

        async def stalled(connection: ServerConnection) -> None:
            await connection.recv()  # connected
            await connection.recv()  # start
            reading.set()
            await asyncio.sleep(30)  # then never reads again: TCP fills, then the relay's buffer

        port = FakeMediaPort()
        async with serve(stalled, "127.0.0.1", 0, compression=None, max_queue=1) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/agent"
            under_test = bridge(url, port, framing=MediaFraming.PCM48K)
            task = asyncio.create_task(under_test.run())
            assert await under_test.connected()
            await asyncio.wait_for(reading.wait(), 3)
            frame = bytes(1920)  # 20 ms at 48 kHz
            port.burst([frame] * 10_000)  # 19 MB at once: far more than the kernel buffers
            counters = under_test.counters
            assert counters.media_frames_dropped > 0
            assert counters.media_frames_out + counters.media_frames_dropped == 10_000
            buffered = _write_buffer(under_test)
            assert buffered <= 51 * (1920 + 14)  # about one second of frames, never the rest
            port.press("5")
            assert counters.dtmf_out == 1  # written even so: control messages are never dropped
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(scenario)


def _write_buffer(under_test: AgentBridge) -> int:
    connection = under_test._connection  # the bridge's socket, to read its write buffer
    assert connection is not None
    return connection.transport.get_write_buffer_size()


def test_a_fragmented_agent_message_is_assembled_and_later_messages_keep_their_order() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        async with call(agent, port):
            assert agent.connection is not None
            await agent.send(media(b"\x01" * 160))  # applied as it is parsed
            text = json.dumps(media(b"\x02" * 160))
            await agent.connection.send([text[:40], text[40:]])  # two frames: recv() assembles
            await agent.send(media(b"\x03" * 160))  # after it, in order
            await until(lambda: len(port.received) == 480)
        assert port.received == b"\x01" * 160 + b"\x02" * 160 + b"\x03" * 160

    run(scenario)


def test_a_text_frame_that_is_not_utf8_closes_with_1007_and_ends_the_bridge() -> None:
    async def scenario() -> None:
        agent, port = Agent(), FakeMediaPort()
        async with call(agent, port) as (_, task):
            assert agent.connection is not None
            await agent.connection.send(b'{"event":"media\xff"}', text=True)
            outcome = await asyncio.wait_for(task, 3)
        assert isinstance(outcome, AgentLeft)
        assert (outcome.reason, outcome.close_code) == (AgentLeftReason.PROTOCOL_ERROR, 1007)

    run(scenario)


def test_audio_an_agent_sends_the_moment_it_has_start_is_played_in_order() -> None:
    async def scenario() -> None:
        chunks = [bytes([n]) * 160 for n in range(1, 41)]

        async def eager(connection: ServerConnection) -> None:
            await connection.recv()  # connected
            await connection.recv()  # start
            for chunk in chunks:  # a greeting, all at once, before the relay's next await
                await connection.send(json.dumps(media(chunk)))
            await connection.wait_closed()

        port = FakeMediaPort()
        async with serve(eager, "127.0.0.1", 0, compression=None) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/agent"
            under_test = bridge(url, port)
            task = asyncio.create_task(under_test.run())
            assert await under_test.connected()
            await until(lambda: len(port.received) == 160 * len(chunks))
            assert port.received == b"".join(chunks)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(scenario)
