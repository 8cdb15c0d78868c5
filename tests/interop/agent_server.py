"""A scriptable test agent: a WebSocket server speaking the Twilio Media Streams framing.

It runs in a thread with its own event loop on 127.0.0.1. An agent's media endpoint names what
it should do in its URL, ``ws://127.0.0.1:PORT/<name>?<behaviour>``:

- ``accept_delay_s``: hold the HTTP upgrade that long (the relay keeps the caller ringing);
- ``tone_hz`` (and ``tone_after_s``, ``tone_s``): send a sine tone as outbound ``media``,
  paced in real time in 20 ms chunks, starting ``tone_after_s`` after ``start``;
- ``close_after_s``: close the socket that long after ``start`` (the relay must hang up); the
  session's events get ``agent_closing`` just before;
- ``digits`` (and ``digits_after_s``): send them to the caller in one ``dtmf`` message (the
  sipline extension, docs/agents.md) that long after ``start``.

Every connection is recorded as an :class:`AgentSession` under its name: the ``start``
message, each inbound ``media`` payload (μ-law) with its arrival wall-clock time, ``dtmf``
digits, ``transfer`` messages, ``stop``, and the close. Every upgrade request is counted under its name too
(:meth:`AgentServer.upgrade_requests`), also those given up on before the answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from relay.media.codecs.g711 import ulaw_encode

SAMPLE_RATE_HZ = 8000
CHUNK_SAMPLES = 160  # 20 ms
CHUNK_S = CHUNK_SAMPLES / SAMPLE_RATE_HZ
TONE_AMPLITUDE = 8000


@dataclass
class AgentSession:
    """What one call's WebSocket carried (written by the server thread)."""

    name: str
    params: dict[str, str]
    connected_at: float = 0.0
    start: dict[str, Any] | None = None
    media: list[tuple[float, bytes]] = field(default_factory=list)
    """Inbound caller audio: (arrival ``time.time()``, 160 bytes of μ-law) per message."""
    dtmf: list[str] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    """``transfer`` messages (the sipline extension, docs/agents.md): their ``transfer`` part."""
    events: list[str] = field(default_factory=list)
    tone_started_at: float | None = None
    stopped: bool = False
    closed: threading.Event = field(default_factory=threading.Event)

    @property
    def caller_audio(self) -> bytes:
        return b"".join(payload for _, payload in self.media)

    @property
    def custom_parameters(self) -> dict[str, str]:
        assert self.start is not None, "no start message"
        params: dict[str, str] = self.start["start"]["customParameters"]
        return params


def tone_chunk(frequency_hz: float, index: int) -> bytes:
    """Return the ``index``-th 20 ms chunk of a continuous sine tone, as μ-law."""
    n = np.arange(index * CHUNK_SAMPLES, (index + 1) * CHUNK_SAMPLES)
    samples = TONE_AMPLITUDE * np.sin(2 * np.pi * frequency_hz * n / SAMPLE_RATE_HZ)
    return ulaw_encode(samples.astype("<i2").tobytes())


class AgentServer:
    """The test agent (see the module docstring); use as a context manager."""

    def __init__(self) -> None:
        self.port = 0
        self._sessions: dict[str, list[AgentSession]] = {}
        self._upgrades: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Server | None = None

    def __enter__(self) -> AgentServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def url(self, name: str, **behaviour: float | str) -> str:
        query = urlencode(behaviour)
        return f"ws://127.0.0.1:{self.port}/{name}" + (f"?{query}" if query else "")

    def sessions(self, name: str) -> list[AgentSession]:
        with self._lock:
            return list(self._sessions.get(name, []))

    def upgrade_requests(self, name: str) -> int:
        """Return how many WebSocket upgrades to ``name`` were asked for (answered or not)."""
        with self._lock:
            return self._upgrades.get(name, 0)

    def wait_sessions(
        self, name: str, count: int = 1, timeout_s: float = 10.0
    ) -> list[AgentSession]:
        """Wait until ``count`` connections to ``name`` have started; return them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sessions = [s for s in self.sessions(name) if s.start is not None]
            if len(sessions) >= count:
                return sessions
            time.sleep(0.05)
        raise AssertionError(f"agent {name!r}: {len(self.sessions(name))} sessions, wanted {count}")

    async def _serve(self) -> None:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request, compression=None
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        parts = urlsplit(request.path)
        with self._lock:
            name = parts.path.strip("/")
            self._upgrades[name] = self._upgrades.get(name, 0) + 1
        delay = float(dict(parse_qsl(parts.query)).get("accept_delay_s", 0))
        if delay:
            await asyncio.sleep(delay)
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        parts = urlsplit(connection.request.path)
        session = AgentSession(parts.path.strip("/"), dict(parse_qsl(parts.query)), time.time())
        with self._lock:
            self._sessions.setdefault(session.name, []).append(session)
        tasks: list[asyncio.Task[None]] = []
        try:
            async for message in connection:
                event = json.loads(message)
                self._record(session, event)
                if event["event"] == "start":
                    tasks = self._behave(session, connection, event["streamSid"])
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()
            session.closed.set()

    @staticmethod
    def _record(session: AgentSession, event: dict[str, Any]) -> None:
        kind = event["event"]
        session.events.append(kind)
        if kind == "start":
            session.start = event
        elif kind == "media":
            payload = base64.b64decode(event["media"]["payload"])
            session.media.append((time.time(), payload))
        elif kind == "dtmf":
            session.dtmf.append(event["dtmf"]["digit"])
        elif kind == "transfer":
            session.transfers.append(event["transfer"])
        elif kind == "stop":
            session.stopped = True

    def _behave(
        self, session: AgentSession, connection: ServerConnection, stream_sid: str
    ) -> list[asyncio.Task[None]]:
        params = {key: float(value) for key, value in session.params.items() if key != "digits"}
        tasks = []
        if "digits" in session.params:
            digits = {"digits": session.params["digits"]}
            tasks.append(
                asyncio.create_task(
                    self._send_after(
                        connection, stream_sid, params.get("digits_after_s", 0), digits
                    )
                )
            )
        if "tone_hz" in params:
            tasks.append(asyncio.create_task(self._tone(session, connection, stream_sid, params)))
        if "close_after_s" in params:
            tasks.append(
                asyncio.create_task(self._close_after(session, connection, params["close_after_s"]))
            )
        return tasks

    @staticmethod
    async def _tone(
        session: AgentSession,
        connection: ServerConnection,
        stream_sid: str,
        params: dict[str, float],
    ) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(params.get("tone_after_s", 0.0))
        chunks = round(params.get("tone_s", 30.0) / CHUNK_S)
        session.tone_started_at = time.time()
        began = loop.time()
        for index in range(chunks):
            payload = base64.b64encode(tone_chunk(params["tone_hz"], index)).decode()
            message = {"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}
            try:
                await connection.send(json.dumps(message))
            except ConnectionClosed:
                return
            await asyncio.sleep(max(0.0, began + (index + 1) * CHUNK_S - loop.time()))

    @staticmethod
    async def _send_after(
        connection: ServerConnection, stream_sid: str, delay_s: float, dtmf: dict[str, str]
    ) -> None:
        await asyncio.sleep(delay_s)
        message = {"event": "dtmf", "streamSid": stream_sid, "dtmf": dtmf}
        with contextlib.suppress(ConnectionClosed):
            await connection.send(json.dumps(message))

    @staticmethod
    async def _close_after(
        session: AgentSession, connection: ServerConnection, delay_s: float
    ) -> None:
        await asyncio.sleep(delay_s)
        session.events.append("agent_closing")
        await connection.close()
