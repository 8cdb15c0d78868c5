"""A stock-shaped Pipecat Twilio bot for the interop tests, and the threads that serve it.

The bot is what ``docs/agents.md`` shows ("A minimal Pipecat bot"): ``FastAPIWebsocketTransport``
with ``TwilioFrameSerializer`` under uvicorn on 127.0.0.1, in a thread with its own event loop.
Its pipeline echoes the caller's audio (keeping a copy) and records DTMF; ``#`` ends it, as a
bot's "goodbye" would, and the serializer's ``auto_hang_up`` then posts the Twilio-style REST
hang-up to the ``base_url`` the test gives. When the other side hangs up (the relay sends
``stop`` and closes the socket), ``on_client_disconnected`` cancels the worker, as Pipecat's own
telephony examples do: without it the pipeline would outlive the call. No cloud service is involved.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

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
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.workers.runner import WorkerRunner

PIPELINE_RATE_HZ = 16000  # what a real bot runs at: the serializer resamples 8 <-> 16 kHz
START_TIMEOUT_S = 10


@dataclass
class BotRecord:
    """What the bot saw (written from the bot's thread, read from the test's)."""

    start: dict[str, Any] = field(default_factory=dict)
    audio_in: bytearray = field(default_factory=bytearray)
    digits: list[str] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


@dataclass
class Bot:
    url: str
    record: BotRecord


class AudioEcho(FrameProcessor):
    """Keep every input audio frame and send it back out as output audio."""

    def __init__(self, record: BotRecord) -> None:
        super().__init__()
        self._record = record

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self._record.audio_in += frame.audio
            echo = OutputAudioRawFrame(
                audio=frame.audio, sample_rate=frame.sample_rate, num_channels=frame.num_channels
            )
            await self.push_frame(echo)
        else:
            await self.push_frame(frame, direction)


class DtmfRecorder(FrameProcessor):
    """Record DTMF digits; ``#`` ends the pipeline."""

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


async def run_echo_pipeline(
    websocket: WebSocket,
    record: BotRecord,
    serializer: TwilioFrameSerializer,
    say_first: OutputAudioRawFrame | None = None,
) -> None:
    """Run the echo pipeline on an accepted socket until it ends (``#`` or the socket closes);
    ``say_first`` is audio the bot speaks as it starts (a greeting, a briefing)."""
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

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport: Any, websocket: Any) -> None:
        await worker.cancel()  # the call ended (the relay sent stop and closed): so does the bot

    if say_first is not None:
        await worker.queue_frame(say_first)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
    record.finished.set()


def twilio_bot_app(record: BotRecord, control_url: str) -> FastAPI:
    """The bot of docs/agents.md ("A minimal Pipecat bot"), instrumented: it keeps the ``start``
    message, then runs the echo pipeline; its serializer hangs up through ``control_url``."""
    app = FastAPI()

    @app.websocket("/ws")
    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_json()  # connected
        start = (await websocket.receive_json())["start"]
        record.start = start
        record.connected.set()
        serializer = TwilioFrameSerializer(
            stream_sid=start["streamSid"],
            call_sid=start["callSid"],
            account_sid=start["accountSid"],
            auth_token=start["customParameters"]["auth_token"],
            base_url=control_url,
        )
        await run_echo_pipeline(websocket, record, serializer)

    return app


@contextmanager
def serve_bot(app: FastAPI, record: BotRecord) -> Iterator[Bot]:
    """Serve the bot's app (route ``/ws``) under uvicorn on 127.0.0.1 in a thread."""
    pipecat_logger.remove()
    pipecat_logger.add(sys.stderr, level="WARNING")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="websockets-sansio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextmanager
def serve_http(routes: list[tuple[str, str, Handler]]) -> Iterator[str]:
    """Serve aiohttp ``routes`` (method, path, handler) on 127.0.0.1 in a thread; yield the URL."""
    ready = threading.Event()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        app = web.Application()
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
        loop.close()
