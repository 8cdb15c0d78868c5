"""A real Pipecat pipeline as the agent: FastAPIWebsocketTransport + TwilioFrameSerializer.

The bot runs as stock Pipecat bots do (``parse_telephony_websocket`` reads our ``connected`` and
``start``; ``TwilioFrameSerializer`` speaks the rest) under uvicorn on 127.0.0.1, in a thread
with its own event loop. Its pipeline echoes the caller's audio and records DTMF; ``#`` ends it.
No cloud service: ``auto_hang_up`` stays on, with ``base_url`` pointed at a local recorder, so
the test also pins down the REST hang-up a stock bot sends.

Our side is the real :class:`~relay.bridge.agent_ws.AgentBridge` with the in-memory media core.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import uvicorn
from aiohttp import web
from fastapi import FastAPI, WebSocket
from loguru import logger as pipecat_logger
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import (
    EndWorkerFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    OutputAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.workers.runner import WorkerRunner

from chalicelib.contracts import MediaEndpoint
from relay.bridge.agent_ws import AgentBridge, AgentLeft, AgentLeftReason, BridgeSettings
from relay.bridge.twilio_framing import CallInfo, StreamIdentity
from relay.media.codecs.g711 import ulaw_decode, ulaw_encode
from tests.integration.relay.bridge.harness import FakeMediaPort, run, until

pytestmark = pytest.mark.interop

AUTH_TOKEN = "per-call-secret"
IDENTITY = StreamIdentity(
    stream_sid="MZ5a1e0c9d2b7f4e3a8c6d0b1a2f3e4d5c",
    call_sid="call_pipecat_1",
    account_sid="AC7d0f1e2c3b4a5968778695a4b3c2d1e0",
)
CALL = CallInfo(
    call_id="call_pipecat_1",
    caller="+15550100",
    callee="+15550199",
    template_context={"customer_name": "Bob"},
)
TONE_HZ = 440.0
PIPELINE_RATE_HZ = 16000  # what a real bot runs at: the serializer resamples 8 <-> 16 kHz


@dataclass
class BotRecord:
    """What the bot saw (written from the bot's thread, read from the test's)."""

    start: dict[str, object] = field(default_factory=dict)
    audio_in_bytes: int = 0
    digits: list[str] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)


class AudioEcho(FrameProcessor):
    """Send every input audio frame back out as output audio."""

    def __init__(self, record: BotRecord) -> None:
        super().__init__()
        self._record = record

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self._record.audio_in_bytes += len(frame.audio)
            echo = OutputAudioRawFrame(
                audio=frame.audio, sample_rate=frame.sample_rate, num_channels=frame.num_channels
            )
            await self.push_frame(echo)
        else:
            await self.push_frame(frame, direction)


class DtmfRecorder(FrameProcessor):
    """Record DTMF digits; ``#`` ends the pipeline (EndFrame), as a bot's "goodbye" would."""

    def __init__(self, record: BotRecord) -> None:
        super().__init__()
        self._record = record

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, InputDTMFFrame):
            self._record.digits.append(frame.button.value)
            if frame.button is KeypadEntry.POUND:
                await self.push_frame(EndWorkerFrame())


def bot_app(record: BotRecord, hang_up_base_url: str) -> FastAPI:
    """Return the FastAPI app of a stock-shaped Pipecat Twilio bot."""
    app = FastAPI()

    @app.websocket("/ws")
    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        transport_type, call_data = await parse_telephony_websocket(websocket)
        assert transport_type == "twilio"
        record.start = {
            "stream_id": call_data.stream_id,
            "call_id": call_data.call_id,
            "from": call_data.from_number,
            "to": call_data.to_number,
            "body": dict(call_data.body),
        }
        serializer = TwilioFrameSerializer(
            stream_sid=call_data.stream_id,
            call_sid=call_data.call_id,
            account_sid=IDENTITY.account_sid,  # stock bots read TWILIO_ACCOUNT_SID
            auth_token=AUTH_TOKEN,  # ... and TWILIO_AUTH_TOKEN
            base_url=hang_up_base_url,  # the one change a bot needs to hang up through sipline
        )
        transport = FastAPIWebsocketTransport(
            websocket=websocket,
            params=FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                add_wav_header=False,
                serializer=serializer,
            ),
        )
        pipeline = Pipeline(
            [transport.input(), DtmfRecorder(record), AudioEcho(record), transport.output()]
        )
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(
                audio_in_sample_rate=PIPELINE_RATE_HZ, audio_out_sample_rate=PIPELINE_RATE_HZ
            ),
        )
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()
        record.finished.set()

    return app


@dataclass
class Bot:
    url: str
    record: BotRecord


@pytest.fixture
def hang_up_recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A Twilio-REST-shaped HTTP server on 127.0.0.1 that records the hang-up requests."""
    requests: list[dict[str, str]] = []
    ready = threading.Event()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def hang_up(request: web.Request) -> web.Response:
        requests.append(
            {
                "method": request.method,
                "path": request.path,
                "authorization": request.headers.get("Authorization", ""),
                "content_type": request.headers.get("Content-Type", ""),
                "body": (await request.read()).decode(),
            }
        )
        call_sid = request.match_info["call"]
        return web.json_response({"sid": call_sid, "status": "completed"})

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls/{call}.json", hang_up)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    yield base_url, requests
    loop.call_soon_threadsafe(stop.set)
    thread.join(5)
    loop.close()


@pytest.fixture
def pipecat_bot(hang_up_recorder: tuple[str, list[dict[str, str]]]) -> Iterator[Bot]:
    """Run the bot under uvicorn on 127.0.0.1 in a thread; stop it at the end."""
    pipecat_logger.remove()
    pipecat_logger.add(sys.stderr, level="WARNING")
    record = BotRecord()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        bot_app(record, hang_up_recorder[0]),
        log_level="warning",
        lifespan="off",
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield Bot(f"ws://127.0.0.1:{port}/ws", record)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        pipecat_logger.remove()
        pipecat_logger.add(sys.stderr)


def tone_frames(seconds: float) -> list[bytes]:
    count = int(seconds * 8000)
    pcm = (np.sin(2 * np.pi * TONE_HZ * np.arange(count) / 8000) * 8000).astype("<i2")
    ulaw = ulaw_encode(pcm.tobytes())
    return [ulaw[n : n + 160] for n in range(0, len(ulaw), 160)]


def dominant_hz(ulaw: bytes) -> float:
    samples = np.frombuffer(ulaw_decode(ulaw), dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / 8000)[int(np.argmax(spectrum))])


def test_a_pipecat_twilio_bot_hears_the_caller_echoes_takes_dtmf_and_hangs_up(
    pipecat_bot: Bot, hang_up_recorder: tuple[str, list[dict[str, str]]]
) -> None:
    record = pipecat_bot.record

    async def scenario() -> None:
        port = FakeMediaPort()
        bridge = AgentBridge(
            MediaEndpoint(url=pipecat_bot.url),
            port,
            identity=IDENTITY,
            call=CALL,
            settings=BridgeSettings(connect_timeout_s=5.0, close_timeout_s=2.0),
        )
        async with asyncio.TaskGroup() as group:
            run_bridge = group.create_task(bridge.run())
            assert await bridge.connected()
            playout = group.create_task(port.pace_playout(160))
            await port.feed(tone_frames(2.0))
            await until(lambda: len(port.played) >= 8000, timeout_s=5)  # 1 s echoed and played
            port.press("1", "2", "*")
            await until(lambda: record.digits == ["1", "2", "*"], timeout_s=5)
            port.press("#")
            outcome = await asyncio.wait_for(run_bridge, 10)
            playout.cancel()
        assert outcome == AgentLeft(AgentLeftReason.AGENT_CLOSED, 1000, "")
        assert abs(dominant_hz(bytes(port.played[-4000:])) - TONE_HZ) < 10
        assert bridge.framing.counters.dropped == 0
        assert bridge.counters.agent_audio_dropped_bytes == 0

    run(scenario, timeout_s=40)
    assert record.finished.wait(10)
    assert record.audio_in_bytes >= 1.8 * PIPELINE_RATE_HZ * 2  # the 2 s tone (less resampler lag)
    assert record.digits == ["1", "2", "*", "#"]
    assert record.start == {
        "stream_id": IDENTITY.stream_sid,
        "call_id": IDENTITY.call_sid,
        "from": "+15550100",
        "to": "+15550199",
        "body": {
            "call_id": "call_pipecat_1",
            "from_number": "+15550100",
            "to_number": "+15550199",
            "template_context": '{"customer_name":"Bob"}',
        },
    }
    credentials = base64.b64encode(f"{IDENTITY.account_sid}:{AUTH_TOKEN}".encode()).decode()
    assert hang_up_recorder[1] == [
        {
            "method": "POST",
            "path": f"/2010-04-01/Accounts/{IDENTITY.account_sid}/Calls/{IDENTITY.call_sid}.json",
            "authorization": f"Basic {credentials}",
            "content_type": "application/x-www-form-urlencoded",
            "body": "Status=completed",
        }
    ]
