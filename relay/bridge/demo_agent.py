"""A demo voice agent speaking the Twilio Media Streams framing: it greets, then echoes.

Run it with ``python -m relay.bridge.demo_agent`` (127.0.0.1:8765, path ``/agent``) and point
an agent's media endpoint at ``ws://127.0.0.1:8765/agent``. For each call:

1. On ``start`` it speaks "Hello <customer_name>, this is the sipline demo agent. Say something
   and I will repeat it." (the name from the template context in
   ``customParameters["template_context"]``), synthesized by espeak-ng and converted to 8 kHz
   μ-law with the relay's own resampler and G.711 tables. Without espeak-ng it plays a tone
   instead, and logs why.
2. It follows the greeting with a mark; once the relay echoes that mark (the greeting has been
   played), it sends every ``media`` chunk of the caller's back after ``echo_delay_s``.
3. DTMF digits are logged; ``*`` sends ``clear`` (drops the echo not yet played).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np
import soxr
from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from relay.bridge.twilio_framing import (
    MULAW_SAMPLE_RATE_HZ,
    RELAY_MESSAGE,
    AgentClear,
    AgentMark,
    AgentMedia,
    AgentMediaPayload,
    DtmfMessage,
    MarkMessage,
    MarkPayload,
    MediaMessage,
    StartMessage,
    StopMessage,
)
from relay.media.codecs.g711 import ulaw_encode
from relay.media.resample import SUPPORTED_RATES_HZ, resample

logger = logging.getLogger("sipline.relay.bridge.demo_agent")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
AGENT_PATH = "/agent"
GREETING = "Hello{name}, this is the sipline demo agent. Say something and I will repeat it."
GREETING_MARK = "greeting"
ESPEAK = "espeak-ng"
ESPEAK_TIMEOUT_S = 10.0
MAX_NAME_CHARS = 60
TONE_HZ = 440.0
CHUNK_BYTES = MULAW_SAMPLE_RATE_HZ  # the greeting goes out in 1 s messages


def greeting_text(template_context: Mapping[str, Any]) -> str:
    """Return the greeting, naming ``customer_name`` from the template context if it has one."""
    name = template_context.get("customer_name")
    if not isinstance(name, str) or not name.strip():
        return GREETING.format(name="")
    return GREETING.format(name=" " + " ".join(name.split())[:MAX_NAME_CHARS])


def wav_pcm16(wav: bytes) -> tuple[int, bytes]:
    """Return (sample rate, PCM16 mono) from a RIFF WAV file as espeak-ng writes to stdout.

    espeak-ng streaming to stdout leaves the RIFF and data sizes at 0x7ffff000-ish, so the data
    chunk is taken to run to the end of the input.

    Raises:
        ValueError: not a 16-bit mono PCM WAV.
    """
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("not a RIFF WAVE file")
    position, rate = 12, 0
    while position + 8 <= len(wav):
        chunk_id, size = (
            wav[position : position + 4],
            int.from_bytes(wav[position + 4 : position + 8], "little"),
        )
        body = position + 8
        if chunk_id == b"fmt ":
            channels = int.from_bytes(wav[body + 2 : body + 4], "little")
            rate = int.from_bytes(wav[body + 4 : body + 8], "little")
            bits = int.from_bytes(wav[body + 14 : body + 16], "little")
            if (channels, bits) != (1, 16):
                raise ValueError(f"want 16-bit mono, got {bits}-bit with {channels} channels")
        elif chunk_id == b"data" and rate:
            pcm = wav[body:]
            return rate, pcm[: len(pcm) - len(pcm) % 2]
        position = body + size + size % 2
    raise ValueError("no fmt and data chunks")


def pcm16_to_ulaw_8k(pcm: bytes, rate_hz: int) -> bytes:
    """Convert PCM16 mono at ``rate_hz`` to 8 kHz μ-law."""
    if rate_hz in SUPPORTED_RATES_HZ:
        narrow = resample(pcm, rate_hz, MULAW_SAMPLE_RATE_HZ)
    else:  # espeak-ng's 22,050 Hz is none of the relay's rates: soxr, as resample() uses
        samples = np.frombuffer(pcm, dtype="<i2")
        converted: np.ndarray = soxr.resample(samples, rate_hz, MULAW_SAMPLE_RATE_HZ)
        narrow = converted.astype("<i2").tobytes()
    return ulaw_encode(narrow)


def tone_ulaw(duration_s: float = 1.0, frequency_hz: float = TONE_HZ) -> bytes:
    """Return a sine tone at -12 dBFS as 8 kHz μ-law (the greeting without espeak-ng)."""
    count = int(duration_s * MULAW_SAMPLE_RATE_HZ)
    phase = 2 * math.pi * frequency_hz * np.arange(count) / MULAW_SAMPLE_RATE_HZ
    return ulaw_encode((np.sin(phase) * 8192).astype("<i2").tobytes())


async def synthesize(text: str, *, espeak: str = ESPEAK) -> bytes:
    """Speak ``text`` with espeak-ng as 8 kHz μ-law; a tone if espeak-ng is missing or fails."""
    try:
        process = await asyncio.create_subprocess_exec(
            espeak, "--stdout", "--stdin", "-v", "en", "-s", "160",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    except OSError as error:
        logger.warning("%s not available (%s): greeting with a tone", espeak, error)
        return tone_ulaw()
    try:
        async with asyncio.timeout(ESPEAK_TIMEOUT_S):
            wav, _ = await process.communicate(text.encode())
        rate_hz, pcm = wav_pcm16(wav)
        return pcm16_to_ulaw_8k(pcm, rate_hz)
    except (TimeoutError, ValueError) as error:
        if process.returncode is None:
            process.kill()
        logger.warning("%s failed (%s): greeting with a tone", espeak, error)
        return tone_ulaw()


@dataclass(slots=True)
class _Call:
    """One call's state on the demo agent."""

    stream_sid: str = ""
    greeted: bool = False


class DemoAgent:
    """The demo agent's per-connection behaviour (greet, then echo)."""

    def __init__(self, *, echo_delay_s: float = 0.5, espeak: str = ESPEAK) -> None:
        """Create the agent; ``espeak`` names the espeak-ng binary (tests point it elsewhere)."""
        self.echo_delay_s = echo_delay_s
        self.espeak = espeak

    async def handle(self, connection: ServerConnection) -> None:
        """Serve one call until ``stop`` or the socket closes."""
        call = _Call()
        echoes: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        tasks: list[asyncio.Task[None]] = []
        try:
            async with asyncio.TaskGroup() as group:
                tasks.append(group.create_task(self._echo(connection, call, echoes)))
                await self._receive(connection, call, echoes, group, tasks)
                for task in tasks:
                    task.cancel()
        except* ConnectionClosed:
            logger.info("call %s: the relay closed the socket", call.stream_sid or "?")

    async def _receive(
        self,
        connection: ServerConnection,
        call: _Call,
        echoes: asyncio.Queue[tuple[float, str]],
        group: asyncio.TaskGroup,
        tasks: list[asyncio.Task[None]],
    ) -> None:
        loop = asyncio.get_running_loop()
        async for raw in connection:
            try:
                message = RELAY_MESSAGE.validate_json(raw)
            except ValidationError:
                logger.warning("ignored a message the demo agent does not know: %.80r", raw)
                continue
            if isinstance(message, StartMessage):
                call.stream_sid = message.stream_sid
                context = _template_context(message.start.custom_parameters)
                tasks.append(group.create_task(self._greet(connection, call, context)))
            elif isinstance(message, MediaMessage) and call.greeted:
                echoes.put_nowait((loop.time() + self.echo_delay_s, message.media.payload))
            elif isinstance(message, MarkMessage) and message.mark.name == GREETING_MARK:
                call.greeted = True
            elif isinstance(message, DtmfMessage):
                logger.info("call %s: caller pressed %s", call.stream_sid, message.dtmf.digit)
                if message.dtmf.digit == "*":
                    await connection.send(
                        AgentClear(event="clear", stream_sid=call.stream_sid).to_json()
                    )
            elif isinstance(message, StopMessage):
                logger.info("call %s: stopped", call.stream_sid)
                return

    async def _greet(
        self, connection: ServerConnection, call: _Call, context: Mapping[str, Any]
    ) -> None:
        audio = await synthesize(greeting_text(context), espeak=self.espeak)
        for offset in range(0, len(audio), CHUNK_BYTES):
            await connection.send(_media(call.stream_sid, audio[offset : offset + CHUNK_BYTES]))
        mark = AgentMark(
            event="mark", stream_sid=call.stream_sid, mark=MarkPayload(name=GREETING_MARK)
        )
        await connection.send(mark.to_json())

    async def _echo(
        self, connection: ServerConnection, call: _Call, echoes: asyncio.Queue[tuple[float, str]]
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, payload = await echoes.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            media = AgentMedia(
                event="media", stream_sid=call.stream_sid, media=AgentMediaPayload(payload=payload)
            )
            await connection.send(media.to_json())


def _media(stream_sid: str, audio: bytes) -> str:
    payload = base64.b64encode(audio).decode("ascii")
    media = AgentMedia(
        event="media", stream_sid=stream_sid, media=AgentMediaPayload(payload=payload)
    )
    return media.to_json()


def _template_context(parameters: Mapping[str, str]) -> Mapping[str, Any]:
    try:
        context = json.loads(parameters.get("template_context", "{}"))
    except json.JSONDecodeError:
        return {}
    return context if isinstance(context, dict) else {}


def _only_agent_path(connection: ServerConnection, request: Request) -> Response | None:
    if request.path.split("?", 1)[0] != AGENT_PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, f"the demo agent is at {AGENT_PATH}\n")
    return None


def start_server(agent: DemoAgent, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> Server:
    """Return the demo agent's websockets server (use it with ``async with``; port 0 is fine)."""
    return serve(agent.handle, host, port, process_request=_only_agent_path, compression=None)


async def serve_forever(agent: DemoAgent, host: str, port: int) -> None:
    """Run the demo agent until cancelled."""
    async with start_server(agent, host, port) as server:
        for sock in server.sockets:
            logger.info("demo agent listening on ws://%s:%s%s", *sock.getsockname()[:2], AGENT_PATH)
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m relay.bridge.demo_agent [--host H] [--port P]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--echo-delay", type=float, default=0.5, help="seconds (default 0.5)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    agent = DemoAgent(echo_delay_s=args.echo_delay)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a developer stops it
        asyncio.run(serve_forever(agent, args.host, args.port))


if __name__ == "__main__":
    main()
