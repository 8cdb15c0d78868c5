"""The demo agent behind a real AgentBridge: it greets (espeak-ng or a tone), then echoes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from relay.bridge.agent_ws import AgentBridge, BridgeStopped
from relay.bridge.demo_agent import (
    AGENT_PATH,
    DemoAgent,
    greeting_text,
    start_server,
    tone_ulaw,
    wav_pcm16,
)
from relay.media.codecs.g711 import ulaw_decode
from tests.integration.relay.bridge.harness import FakeMediaPort, bridge, run, until


def dominant_hz(ulaw: bytes) -> float:
    samples = np.frombuffer(ulaw_decode(ulaw), dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / 8000)[int(np.argmax(spectrum))])


def rms(ulaw: bytes) -> float:
    samples = np.frombuffer(ulaw_decode(ulaw), dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


@asynccontextmanager
async def demo(agent: DemoAgent) -> AsyncIterator[str]:
    async with start_server(agent, "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}{AGENT_PATH}"


async def greet_then_echo(agent: DemoAgent) -> tuple[bytes, bytes, AgentBridge]:
    """Return (greeting heard, echo heard, bridge) for one call to the demo agent."""
    port = FakeMediaPort()
    async with demo(agent) as url:
        under_test = bridge(url, port)
        task = asyncio.create_task(under_test.run())
        await until(lambda: bool(port.pending_marks), timeout_s=10)  # the greeting and its mark
        greeting = port.play_out(len(port.queued))
        await until(lambda: under_test.counters.marks_echoed == 1)
        caller = tone_ulaw(0.2, frequency_hz=1000.0)
        await port.feed(caller[n : n + 160] for n in range(0, len(caller), 160))
        await until(lambda: len(port.queued) == len(caller))
        echo = port.play_out(len(port.queued))
        under_test.stop()
        assert await task == BridgeStopped()
    return greeting, echo, under_test


def test_the_demo_agent_greets_with_speech_then_echoes_the_caller() -> None:
    async def scenario() -> None:
        greeting, echo, _ = await greet_then_echo(DemoAgent(echo_delay_s=0.05))
        assert len(greeting) > 2 * 8000  # several seconds of speech at 8 kHz
        assert rms(greeting) > 500
        assert echo == tone_ulaw(0.2, frequency_hz=1000.0)

    run(scenario)


def test_without_espeak_ng_the_demo_agent_greets_with_a_tone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        greeting, echo, _ = await greet_then_echo(
            DemoAgent(echo_delay_s=0.05, espeak="/nonexistent/espeak-ng")
        )
        assert greeting == tone_ulaw()
        assert abs(dominant_hz(greeting) - 440) < 5
        assert abs(dominant_hz(echo) - 1000) < 5

    demo_logger = logging.getLogger("sipline.relay.bridge.demo_agent")
    demo_logger.addHandler(caplog.handler)  # "sipline" is Powertools': it does not propagate
    try:
        with caplog.at_level(logging.WARNING, logger=demo_logger.name):
            run(scenario)
    finally:
        demo_logger.removeHandler(caplog.handler)
    assert "greeting with a tone" in caplog.text


def test_the_demo_agent_answers_only_on_its_path() -> None:
    async def scenario() -> None:
        async with demo(DemoAgent()) as url:
            with pytest.raises(InvalidStatus) as refused:
                await connect(url.replace(AGENT_PATH, "/other"), open_timeout=2)
        assert refused.value.response.status_code == 404

    run(scenario)


def test_the_greeting_names_the_customer_from_the_template_context() -> None:
    assert greeting_text({"customer_name": "  Bob \n Smith "}).startswith("Hello Bob Smith, this")
    assert greeting_text({}).startswith("Hello, this is the sipline demo agent.")
    assert greeting_text({"customer_name": 7}).startswith("Hello, this")
    assert len(greeting_text({"customer_name": "x" * 500})) < 150


def test_wav_pcm16_reads_espeaks_streamed_wav_with_bogus_sizes() -> None:
    header = (
        b"RIFF\xff\xff\xff\x7fWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x22\x56\x00\x00"
        b"\x44\xac\x00\x00\x02\x00\x10\x00data\x00\xf0\xff\x7f"
    )
    assert wav_pcm16(header + b"\x01\x00\x02\x00\x03") == (22050, b"\x01\x00\x02\x00")
    with pytest.raises(ValueError, match="not a RIFF WAVE file"):
        wav_pcm16(b"nope")
