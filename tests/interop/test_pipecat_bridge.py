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
from collections.abc import Iterator

import numpy as np
import pytest
from aiohttp import web
from fastapi import FastAPI, WebSocket
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer

from chalicelib.contracts import MediaEndpoint
from relay.bridge.agent_ws import AgentBridge, AgentLeft, AgentLeftReason, BridgeSettings
from relay.bridge.twilio_framing import CallInfo, StreamIdentity
from relay.media.codecs.g711 import ulaw_decode, ulaw_encode
from tests.integration.relay.bridge.harness import LOCAL_EGRESS, FakeMediaPort, run, until
from tests.interop.pipecat_bot import (
    PIPELINE_RATE_HZ,
    Bot,
    BotRecord,
    run_echo_pipeline,
    serve_bot,
    serve_http,
)

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
        await run_echo_pipeline(websocket, record, serializer)

    return app


@pytest.fixture
def hang_up_recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A Twilio-REST-shaped HTTP server on 127.0.0.1 that records the hang-up requests."""
    requests: list[dict[str, str]] = []

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

    path = "/2010-04-01/Accounts/{account}/Calls/{call}.json"
    with serve_http([("POST", path, hang_up)]) as base_url:
        yield base_url, requests


@pytest.fixture
def pipecat_bot(hang_up_recorder: tuple[str, list[dict[str, str]]]) -> Iterator[Bot]:
    """Run the bot under uvicorn on 127.0.0.1 in a thread; stop it at the end."""
    record = BotRecord()
    with serve_bot(bot_app(record, hang_up_recorder[0]), record) as bot:
        yield bot


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
            settings=BridgeSettings(
                connect_timeout_s=5.0, close_timeout_s=2.0, egress=LOCAL_EGRESS
            ),
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
    assert len(record.audio_in) >= 1.8 * PIPELINE_RATE_HZ * 2  # the 2 s tone (less resampler lag)
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
            "direction": "incoming",
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
