"""An in-memory media core (:class:`FakeMediaPort`) and a scripted agent server on 127.0.0.1.

The fake keeps the agent's audio in one byte queue with marks at byte positions; the test
decides when audio "plays" (:meth:`FakeMediaPort.play_out`), or starts a 20 ms pacer
(:meth:`FakeMediaPort.pace_playout`). Caller audio is fed at a real 20 ms cadence by
:meth:`FakeMediaPort.feed`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from chalicelib.contracts import MediaEndpoint, MediaFraming
from chalicelib.egress import EgressPolicy
from relay.bridge.agent_ws import AgentBridge, BridgeSettings, MediaListener
from relay.bridge.twilio_framing import CallInfo, StreamIdentity
from scripts.localstack import LOCAL_PRIVATE_TARGETS

SCENARIO_TIMEOUT_S = 20.0
FRAME_S = 0.02

IDENTITY = StreamIdentity(
    stream_sid="MZ00000000000000000000000000000001",
    call_sid="call_7f3a",
    account_sid="AC0000000000000000000000000000000a",
)
CALL = CallInfo(
    call_id="call_7f3a",
    caller="+15550100",
    callee="+15550199",
    template_context={"customer_name": "Bob", "account": {"tier": "gold", "open_tickets": 2}},
    agent_id="agent_1",
)
LOCAL_EGRESS = EgressPolicy.from_setting(LOCAL_PRIVATE_TARGETS)
"""Agents in these tests listen on 127.0.0.1: allowed as ``make dev`` allows them."""
FAST = BridgeSettings(
    egress=LOCAL_EGRESS,
    connect_timeout_s=2.0,
    attempt_timeout_s=0.5,
    max_attempts=4,
    retry_delays_s=(0.05,),
    ping_interval_s=None,
    close_timeout_s=1.0,
)


def run(scenario: Callable[[], Awaitable[None]], timeout_s: float = SCENARIO_TIMEOUT_S) -> None:
    """Run an async scenario in a fresh loop, bounded by ``timeout_s``."""

    async def bounded() -> None:
        await asyncio.wait_for(scenario(), timeout_s)

    asyncio.run(bounded())


async def until(predicate: Callable[[], bool], timeout_s: float = 3.0) -> None:
    """Wait until ``predicate()`` holds, polling the loop; fail after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


class FakeMediaPort:
    """An in-memory :class:`~relay.bridge.agent_ws.MediaPort`."""

    def __init__(self, *, max_queued_bytes: int = 60 * 8000) -> None:
        self.max_queued_bytes = max_queued_bytes
        self.listener: MediaListener | None = None
        self.held: list[tuple[str, str | bytes]] = []  # output while no listener is attached
        self.queued = bytearray()
        self.pending_marks: list[tuple[int, str]] = []  # (end of the audio before it, name)
        self.received = bytearray()  # every byte the agent sent, dropped or not
        self.played = bytearray()  # what the caller heard
        self.digits_sent: list[tuple[str, int]] = []  # the agent's dtmf messages, as queued
        self.clears = 0
        self.dropped = 0
        self.fail_on_play = False

    # --- MediaPort ---

    def listen(self, listener: MediaListener | None) -> None:
        self.listener = listener
        held, self.held = self.held, []
        for kind, value in held:
            self._output(kind, value)

    def play(self, audio: bytes) -> int:
        if self.fail_on_play:
            raise RuntimeError("media core bug")
        self.received += audio
        self.queued += audio
        over = max(0, len(self.queued) - self.max_queued_bytes)  # drop the oldest
        if over:
            del self.queued[:over]
            self.dropped += over
            self._shift_marks(over)
        return over

    def mark(self, name: str) -> None:
        self.pending_marks.append((len(self.queued), name))
        self._report_played()

    def clear(self) -> None:
        self.clears += 1
        self.queued.clear()
        self.pending_marks = [(0, name) for _, name in self.pending_marks]
        self._report_played()

    def send_dtmf(self, digits: str, duration_ms: int) -> bool:
        self.digits_sent.append((digits, duration_ms))
        return True

    # --- test controls ---

    def play_out(self, nbytes: int) -> bytes:
        """Play ``nbytes`` of queued audio to the 'caller' and report the marks it passes."""
        chunk = bytes(self.queued[:nbytes])
        del self.queued[:nbytes]
        self.played += chunk
        self._shift_marks(len(chunk))
        return chunk

    async def pace_playout(self, frame_bytes: int) -> None:
        """Play one frame every 20 ms, forever (run it as a task)."""
        while True:
            await asyncio.sleep(FRAME_S)
            self.play_out(frame_bytes)

    async def feed(self, frames: Iterable[bytes], *, interval_s: float = FRAME_S) -> None:
        """Hand the bridge one caller frame every ``interval_s``, on a drift-free clock."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, frame in enumerate(frames):
            await asyncio.sleep(max(0.0, start + index * interval_s - loop.time()))
            self._output("audio", frame)

    def burst(self, frames: Iterable[bytes]) -> None:
        """Hand the bridge every frame at once (a caller far ahead of a stalled agent)."""
        for frame in frames:
            self._output("audio", frame)

    def press(self, *digits: str) -> None:
        for digit in digits:
            self._output("dtmf", digit)

    def _output(self, kind: str, value: str | bytes) -> None:
        listener = self.listener
        if listener is None:
            self.held.append((kind, value))
        elif kind == "audio":
            assert isinstance(value, bytes)
            listener.caller_audio(value)
        elif kind == "mark":
            assert isinstance(value, str)
            listener.mark_played(value)
        else:
            assert isinstance(value, str)
            listener.dtmf(value)

    def _shift_marks(self, nbytes: int) -> None:
        self.pending_marks = [(max(0, end - nbytes), name) for end, name in self.pending_marks]
        self._report_played()

    def _report_played(self) -> None:
        while self.pending_marks and self.pending_marks[0][0] == 0:
            self._output("mark", self.pending_marks.pop(0)[1])


class Agent:
    """A scripted agent: records what the relay sends; the test sends and closes at will."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.arrivals: list[tuple[float, str | bytes]] = []
        self.connection: ServerConnection | None = None
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.paths: list[str] = []

    async def handle(self, connection: ServerConnection) -> None:
        self.connection = connection
        self.paths.append(connection.request.path if connection.request else "")
        self.connected.set()
        loop = asyncio.get_running_loop()
        try:
            async for message in connection:
                self.arrivals.append((loop.time(), message))
                self.messages.put_nowait(message)
        except ConnectionClosed:
            pass
        self.close_code = connection.close_code
        self.closed.set()

    async def next(self, timeout_s: float = 3.0) -> str | bytes:
        return await asyncio.wait_for(self.messages.get(), timeout_s)

    async def next_json(self, timeout_s: float = 3.0) -> dict[str, Any]:
        message = await self.next(timeout_s)
        assert isinstance(message, str), f"expected a text frame, got {len(message)} bytes"
        decoded: dict[str, Any] = json.loads(message)
        return decoded

    async def next_event(self, event: str, timeout_s: float = 3.0) -> dict[str, Any]:
        """Return the next message whose ``event`` is ``event``, skipping others (media)."""
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.messages.get()
                if isinstance(message, str) and json.loads(message).get("event") == event:
                    decoded: dict[str, Any] = json.loads(message)
                    return decoded

    async def send(self, message: str | bytes | dict[str, Any]) -> None:
        assert self.connection is not None
        data = json.dumps(message) if isinstance(message, dict) else message
        await self.connection.send(data)

    def events(self) -> list[str]:
        return [
            json.loads(m).get("event", "?") if isinstance(m, str) else "binary"
            for _, m in self.arrivals
        ]


@asynccontextmanager
async def agent_server(agent: Agent, path: str = "/agent") -> AsyncIterator[str]:
    """Serve ``agent`` on 127.0.0.1 (ephemeral port); yield its ws:// URL."""
    async with serve(agent.handle, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}{path}"


def bridge(
    url: str,
    port: FakeMediaPort,
    *,
    framing: MediaFraming = MediaFraming.TWILIO,
    settings: BridgeSettings = FAST,
) -> AgentBridge:
    """Return an AgentBridge for the test call."""
    return AgentBridge(
        MediaEndpoint(url=url, framing=framing),
        port,
        identity=IDENTITY,
        call=CALL,
        settings=settings,
    )
