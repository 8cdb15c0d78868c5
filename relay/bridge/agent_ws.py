"""The agent bridge: one WebSocket client per call, pumping audio both ways (contract 4).

Theory of operation:

1. **Connect.** :meth:`AgentBridge.run` dials the agent's media endpoint with bounded retries
   (``BridgeSettings``: at most ``max_attempts`` attempts, each bounded by
   ``attempt_timeout_s``, all within ``connect_timeout_s``) while the caller hears ringing.
   Each attempt resolves the URL's host once, checks every address against the deployment's
   egress policy (``chalicelib/egress.py``: no loopback, private, link-local or metadata
   address unless allowed) and connects the socket to a checked address; the ``Host`` header
   and TLS still name the host. A refused address or a redirect (3xx, never followed) ends the
   attempts at once. The call's glue awaits :meth:`AgentBridge.connected` and answers the
   caller once it is ``True``; ``False`` means the agent could not be reached (or the call
   was stopped first).
2. **Open.** The bridge sends ``connected`` and ``start`` (call id, caller, callee and the
   template context in ``customParameters``), then listens to the media core
   (:meth:`MediaPort.listen`): each 20 ms frame of caller audio, each played mark and each
   DTMF digit is framed and written to the socket in the callback that produced it, so
   message order is ``sequenceNumber`` order and no task runs per frame (the relay's CPU per
   call is mostly this path: ``bench/relay_calls.py``). The agent's messages are applied as
   websockets parses them, in the callback that read their bytes (``_AgentConnection``):
   ``media`` to :meth:`MediaPort.play`, ``mark`` to :meth:`MediaPort.mark`, ``clear`` to
   :meth:`MediaPort.clear`, ``dtmf`` to ``send_dtmf`` (:mod:`relay.bridge.agent_dtmf`). Waking a reader task instead put each echo one loop iteration
   behind, 9-10 ms at 100 calls, when the callers' RTP comes in one burst per 20 ms. One task
   waits for the socket to close (and reads, should an agent ever fragment a message) and one
   for :meth:`AgentBridge.stop`.
3. **Bounds.** Agent audio is handed to the media core at once: it paces playout and bounds
   its queue, and the bridge counts what it reports dropped. Marks beyond
   ``max_pending_marks`` are dropped and counted. Caller audio that finds more than
   ``outbox_media_frames`` frames' worth of bytes still unsent in the socket's write buffer (an
   agent that does not read) is dropped and counted; its sequence number is skipped, as with
   Twilio, so the agent can see the gap. Marks and digits are always written. Messages over
   ``max_message_bytes`` close the socket (1009) and end the call. websockets' pings keep the
   socket alive and end the call when the agent stops answering them.
4. **End.** The first of these decides the :data:`BridgeOutcome`: the agent closes the socket
   (:class:`AgentLeft`, which ends the call); :meth:`AgentBridge.stop`, when the caller hung
   up (:class:`BridgeStopped`: the bridge sends what is queued, then ``stop``, then closes);
   or a bug in a task (:class:`BridgeFailed`, logged, the socket closed with 1011). Bad agent
   input (invalid JSON, unknown events, bad payloads) is counted and never ends the call.

:class:`MediaPort` is the seam to the per-call media core, which owns RTP, codecs, resampling,
the paced playout queue and mark bookkeeping; audio crosses it in the framing's format
(μ-law 8 kHz, or s16le PCM at 16/48 kHz for the HD framing).

Size: about 600 lines, a third of them docstrings: the connection, its reading and writing
callbacks and the outcome types share one socket and one state, and splitting the outcome types
out would leave them far from the only code that makes them. The pinned, checked connect is
already apart (``relay/transport/egress.py``); issue 9's restructuring of the call layer is where
this module is to be split further.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.connection import broadcast
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Event, State
from websockets.uri import parse_uri

from chalicelib.contracts import MediaEndpoint, MediaFraming
from chalicelib.egress import EgressPolicy, TargetRefused
from relay.bridge.agent_dtmf import AgentDigits, DtmfPort
from relay.bridge.hd_framing import HdFraming
from relay.bridge.twilio_framing import (
    AgentCommand,
    CallInfo,
    ClearAudio,
    PlaceMark,
    PlayAudio,
    StreamIdentity,
    TwilioFraming,
    custom_parameters,
)
from relay.transport.egress import AsyncResolver, connect_checked, loop_resolver, resolve_checked

logger = logging.getLogger("sipline.relay.bridge")

USER_AGENT = "sipline-relay"


class MediaListener(Protocol):
    """What the media core calls with its output; called from I/O callbacks, so it is quick."""

    def caller_audio(self, frame: bytes) -> None:
        """Take 20 ms of caller audio for the agent."""
        ...

    def mark_played(self, name: str) -> None:
        """Take the name of a mark whose audio has been played (or cleared)."""
        ...

    def dtmf(self, digit: str) -> None:
        """Take a DTMF digit the caller pressed."""
        ...


class MediaPort(DtmfPort, Protocol):
    """What the bridge needs from the per-call media core; audio is in the framing's format."""

    def listen(self, listener: MediaListener | None) -> None:
        """Deliver caller audio, played marks and digits to ``listener``; None stops that."""
        ...

    def play(self, audio: bytes) -> int:
        """Queue agent audio (any length) for paced playout to the caller.

        The media core bounds its queue (an agent may send far faster than real time; Pipecat
        sends at twice real time, so its lead grows by half of each utterance's length).

        Returns:
            How many bytes of agent audio were dropped to stay within that bound.
        """
        ...

    def mark(self, name: str) -> None:
        """Place a mark after the audio queued so far; report it once that has been played."""
        ...

    def clear(self) -> None:
        """Drop all queued agent audio at once; the marks among it count as played."""
        ...


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """Bounds of one agent bridge (defaults suit production; tests shrink them)."""

    connect_timeout_s: float = 8.0
    """Total time for all connection attempts, while the caller hears ringing."""
    attempt_timeout_s: float = 3.0
    """One attempt: TCP, TLS and the HTTP upgrade."""
    max_attempts: int = 6
    retry_delays_s: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    """Pause after failed attempt n (the last repeats)."""
    ping_interval_s: float | None = 10.0
    ping_timeout_s: float | None = 10.0
    close_timeout_s: float = 2.0
    """Bound on sending the final messages and on the closing handshake."""
    max_message_bytes: int = 1 << 20
    """Largest agent message (1 MiB: about a minute of base64 μ-law); larger closes with 1009."""
    max_pending_marks: int = 1000
    outbox_media_frames: int = 50
    """Caller audio (1 s of frames) that may wait unsent for a slow agent; beyond it, dropped."""
    use_env_proxy: bool = False
    """Honour HTTP(S)_PROXY for the agent connection (off: agents are dialled directly). The
    host's addresses are still checked, but the proxy connects by name: its egress rules apply."""
    egress: EgressPolicy = EgressPolicy()
    """Where agents may be (``SIPLINE_ALLOWED_PRIVATE_TARGETS``); the default: public only."""


@dataclass(slots=True)
class BridgeCounters:
    """What one bridge did, for call events and metrics."""

    connect_attempts: int = 0
    media_frames_out: int = 0
    media_frames_dropped: int = 0
    """Caller frames dropped because the agent did not read them in time (or the socket closed)."""
    agent_audio_bytes: int = 0
    agent_audio_dropped_bytes: int = 0
    """Agent audio the media core dropped because it ran too far ahead of playout."""
    marks_in: int = 0
    marks_echoed: int = 0
    marks_dropped: int = 0
    clears: int = 0
    dtmf_out: int = 0
    bad_dtmf: int = 0


class AgentLeftReason(StrEnum):
    """Why the agent's socket closed."""

    AGENT_CLOSED = "agent_closed"
    """The agent sent a close frame (the code says why)."""
    CONNECTION_LOST = "connection_lost"
    """The connection dropped without a closing handshake."""
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    """The agent stopped answering pings."""
    MESSAGE_TOO_BIG = "message_too_big"
    """The agent sent a message over ``max_message_bytes``."""
    PROTOCOL_ERROR = "protocol_error"
    """The agent broke the WebSocket protocol (e.g. a text frame that is not UTF-8)."""


@dataclass(frozen=True, slots=True)
class AgentLeft:
    """The agent's socket closed: the call ends."""

    reason: AgentLeftReason
    close_code: int | None = None
    close_reason: str = ""


@dataclass(frozen=True, slots=True)
class AgentUnreachable:
    """No connection could be opened within the bounds: the call ends (or is rejected)."""

    attempts: int
    error: str


@dataclass(frozen=True, slots=True)
class BridgeStopped:
    """:meth:`AgentBridge.stop` was called (the caller hung up): ``stop`` was sent."""


@dataclass(frozen=True, slots=True)
class BridgeFailed:
    """A bridge task failed (a bug): the call ends with reason ``internal_error``."""

    reason: str = "internal_error"


BridgeOutcome = AgentLeft | AgentUnreachable | BridgeStopped | BridgeFailed


def framing_for(framing: MediaFraming, identity: StreamIdentity) -> TwilioFraming:
    """Return the sans-I/O framing named by the media endpoint."""
    if framing is MediaFraming.PCM16K:
        return HdFraming(identity, sample_rate_hz=16000)
    if framing is MediaFraming.PCM48K:
        return HdFraming(identity, sample_rate_hz=48000)
    return TwilioFraming(identity)


def agent_left(closed: ConnectionClosed) -> AgentLeft:
    """Classify how the socket closed, from websockets' record of the close frames."""
    sent = closed.sent
    if sent is not None and not closed.rcvd_then_sent:  # we closed first: the agent misbehaved
        if sent.code == CloseCode.MESSAGE_TOO_BIG:
            return AgentLeft(AgentLeftReason.MESSAGE_TOO_BIG, sent.code, sent.reason)
        if sent.code == CloseCode.INTERNAL_ERROR and "keepalive" in sent.reason:
            return AgentLeft(AgentLeftReason.KEEPALIVE_TIMEOUT, sent.code, sent.reason)
        if sent.code != CloseCode.NORMAL_CLOSURE:
            return AgentLeft(AgentLeftReason.PROTOCOL_ERROR, sent.code, sent.reason)
    if closed.rcvd is not None:
        return AgentLeft(AgentLeftReason.AGENT_CLOSED, closed.rcvd.code, closed.rcvd.reason)
    return AgentLeft(AgentLeftReason.CONNECTION_LOST, CloseCode.ABNORMAL_CLOSURE)


class _AgentConnection(ClientConnection):
    """websockets' client connection, handing each whole data message to ``on_message`` at once.

    A complete (unfragmented) text or binary frame goes to ``on_message`` as it is parsed,
    instead of into the queue ``recv()`` reads, so it is applied without a task switch. The
    first fragmented message switches that off for good: from then on every message goes
    through ``recv()``, in order. Text that is not UTF-8 fails the connection with 1007, as
    ``recv()`` would.
    """

    on_message: Callable[[str | bytes], None] | None = None

    def process_event(self, event: Event) -> None:
        handler = self.on_message
        if handler is None or not isinstance(event, Frame) or event.opcode not in _DATA:
            super().process_event(event)
            return
        if not event.fin:  # a fragmented message: recv() assembles it and all that follows
            self.on_message = None
            super().process_event(event)
            return
        if event.opcode is Opcode.BINARY:
            handler(bytes(event.data))
            return
        try:
            text = bytes(event.data).decode()
        except UnicodeDecodeError as exc:
            self.set_connection_exc(exc)
            self.protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            self.send_data()
            return
        handler(text)


_DATA = (Opcode.TEXT, Opcode.BINARY)


def _is_permanent(status: int) -> bool:
    """Tell whether an HTTP refusal of the upgrade is worth no retry (3xx; 4xx but 408 and 429)."""
    return 300 <= status < 500 and status not in (408, 429)


class AgentBridge:
    """One call's WebSocket to its agent; run it in the call's ``TaskGroup``."""

    def __init__(
        self,
        endpoint: MediaEndpoint,
        port: MediaPort,
        *,
        identity: StreamIdentity,
        call: CallInfo,
        settings: BridgeSettings | None = None,
        resolve: AsyncResolver = loop_resolver,
    ) -> None:
        """Prepare the bridge; nothing happens until :meth:`run`.

        Args:
            endpoint: the agent's media endpoint (URL and framing) from the INVITE decision.
            port: the call's media core.
            identity: the stream's Twilio SIDs (``call_sid``/``account_sid`` are what a bot's
                REST hang-up names).
            call: what ``start.customParameters`` tells the agent.
            settings: bounds; the defaults suit production.
            resolve: DNS for the endpoint's host (tests inject one).
        """
        self.endpoint = endpoint
        self._resolve = resolve
        self.settings = settings or BridgeSettings()
        self.framing = framing_for(endpoint.framing, identity)
        self.counters = BridgeCounters()
        self._port = port
        self._call = call
        self._stop = asyncio.Event()
        self._opened = asyncio.Event()
        self._is_connected = False
        self._connection: ClientConnection | None = None
        """The open socket the media callbacks write to; None before and after the session."""
        self._outcome: asyncio.Future[BridgeOutcome] | None = None
        self._pending_marks = 0
        self.digits = AgentDigits(port, call.call_id)
        """The agent's ``dtmf`` messages for the caller, and their counters."""

    async def connected(self) -> bool:
        """Wait until the agent is connected and ``start`` sent (``True``) or it never will be."""
        await self._opened.wait()
        return self._is_connected

    def stop(self) -> None:
        """End the bridge: send ``stop`` and close the socket (the caller hung up)."""
        self._stop.set()

    async def run(self) -> BridgeOutcome:
        """Connect, pump audio until the agent leaves or :meth:`stop`; return what ended it.

        Cancelling it closes the socket without ``stop``: call :meth:`stop` for a hang-up.
        """
        try:
            connection = await self._connect_unless_stopped()
            if not isinstance(connection, ClientConnection):
                return connection
            try:
                return await self._session(connection)
            finally:  # a no-op after _close; when cancelled, the relay is "going away"
                await connection.close(CloseCode.GOING_AWAY)
        finally:
            self._opened.set()

    async def _connect_unless_stopped(self) -> ClientConnection | BridgeOutcome:
        async with asyncio.TaskGroup() as group:
            attempt = group.create_task(self._guarded_connect())
            stopped = group.create_task(self._stop.wait())
            await asyncio.wait((attempt, stopped), return_when=asyncio.FIRST_COMPLETED)
            attempt.cancel()
            stopped.cancel()
        if attempt.cancelled():
            return BridgeStopped()
        result = attempt.result()
        if isinstance(result, ClientConnection) and self._stop.is_set():
            await result.close()
            return BridgeStopped()
        return result

    async def _guarded_connect(self) -> ClientConnection | BridgeOutcome:
        try:
            return await self._connect()
        except Exception:
            logger.exception("agent bridge failed to connect for call %s", self._call.call_id)
            return BridgeFailed()

    async def _connect(self) -> ClientConnection | AgentUnreachable:
        settings = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.connect_timeout_s
        error = "no attempt made"
        for attempt in range(settings.max_attempts):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self.counters.connect_attempts += 1
            try:
                return await self._open(min(settings.attempt_timeout_s, remaining))
            except InvalidURI as invalid:
                return AgentUnreachable(self.counters.connect_attempts, str(invalid))
            except TargetRefused as refused:
                logger.warning("agent %s refused: %s", self.endpoint.url, refused)
                return AgentUnreachable(self.counters.connect_attempts, f"refused: {refused}")
            except InvalidStatus as refused:
                status = refused.response.status_code
                error = f"HTTP {status}" + (" (not followed)" if 300 <= status < 400 else "")
                if _is_permanent(status):
                    return AgentUnreachable(self.counters.connect_attempts, error)
                logger.info("agent %s refused the upgrade (%s)", self.endpoint.url, error)
            except (OSError, TimeoutError, InvalidHandshake) as failure:
                error = f"{type(failure).__name__}: {failure}"
                logger.info("agent %s not reachable (%s)", self.endpoint.url, error)
            if attempt + 1 == settings.max_attempts:
                break  # pauses come between attempts (docs/agents.md), not after the last
            delay = settings.retry_delays_s[min(attempt, len(settings.retry_delays_s) - 1)]
            await asyncio.sleep(max(0.0, min(delay, deadline - loop.time())))
        return AgentUnreachable(self.counters.connect_attempts, error)

    async def _open(self, timeout_s: float) -> ClientConnection:
        """One attempt: resolve and check, connect to a checked address, then the upgrade.

        The socket is ours, so websockets cannot follow a redirect (it refuses, on a socket it
        did not open) and never resolves the host again.
        """
        settings = self.settings
        try:
            uri = parse_uri(self.endpoint.url)
        except ValueError as error:  # urllib's own, e.g. "Invalid IPv6 URL"
            raise InvalidURI(self.endpoint.url, str(error)) from None
        async with asyncio.timeout(timeout_s):
            addresses = await resolve_checked(settings.egress, uri.host, uri.port, self._resolve)
            sock = None if settings.use_env_proxy else await connect_checked(addresses, uri.port)
            try:
                return await connect(
                    self.endpoint.url,
                    sock=sock,
                    open_timeout=None,  # bounded with the lookup and TCP by the timeout above
                    ping_interval=settings.ping_interval_s,
                    ping_timeout=settings.ping_timeout_s,
                    close_timeout=settings.close_timeout_s,
                    max_size=settings.max_message_bytes,
                    compression=None,  # audio does not compress; deflate would only cost CPU
                    proxy=True if settings.use_env_proxy else None,
                    user_agent_header=USER_AGENT,
                    create_connection=_AgentConnection,
                )
            except ValueError as error:  # websockets will not follow a redirect on our socket
                if sock is not None:
                    sock.close()
                if isinstance(error.__cause__, InvalidStatus):
                    raise error.__cause__ from None
                raise
            except BaseException:
                if sock is not None:
                    sock.close()  # websockets closes what it wrapped; this covers the rest
                raise

    async def _session(self, connection: ClientConnection) -> BridgeOutcome:
        # The agent's messages are applied from the first (an agent that speaks as soon as it
        # has ``start`` is not split between recv()'s queue and the callback, out of order).
        outcome: asyncio.Future[BridgeOutcome] = asyncio.get_running_loop().create_future()
        self._outcome = outcome
        self._connection = connection
        if isinstance(connection, _AgentConnection):
            connection.on_message = self._on_message
        try:
            try:
                await connection.send(self.framing.connected())
                await connection.send(self.framing.start(custom_parameters(self._call)))
            except ConnectionClosed as closed:
                return agent_left(closed)
            self._is_connected = True
            self._opened.set()
            logger.info("agent %s connected for call %s", self.endpoint.url, self._call.call_id)
            result = await self._pump(connection, outcome)
        finally:
            if isinstance(connection, _AgentConnection):
                connection.on_message = None
            self._connection = None
        await self._close(connection, result)
        logger.info("agent bridge for call %s ended: %s", self._call.call_id, result)
        return result

    async def _pump(
        self, connection: ClientConnection, outcome: asyncio.Future[BridgeOutcome]
    ) -> BridgeOutcome:
        self._port.listen(self)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._guard(work))
                    for work in (self._read(connection), self._until_stopped())
                ]
                result = await outcome
                for task in tasks:
                    task.cancel()
        finally:
            self._port.listen(None)
        return result

    # --- MediaListener: the media core's output, written to the socket at once -------------

    def caller_audio(self, frame: bytes) -> None:
        """Send one frame of caller audio as a ``media`` message, unless the agent lags."""
        connection = self._connection
        if connection is None:
            return
        try:
            message = self.framing.media(frame)  # takes a sequence number even if dropped
            unsent = connection.transport.get_write_buffer_size()
            if unsent + len(message) > self.settings.outbox_media_frames * len(message):
                self.counters.media_frames_dropped += 1
                return
            self.counters.media_frames_out += 1
            self._send_now(connection, message)
        except Exception:
            self._fail("caller audio")

    def mark_played(self, name: str) -> None:
        """Echo a mark whose audio the caller has heard."""
        connection = self._connection
        if connection is None:
            return
        try:
            self._pending_marks = max(0, self._pending_marks - 1)
            self.counters.marks_echoed += 1
            self._send_now(connection, self.framing.mark(name))
        except Exception:
            self._fail("mark")

    def dtmf(self, digit: str) -> None:
        """Send a digit the caller pressed (one the framing cannot carry is counted)."""
        connection = self._connection
        if connection is None:
            return
        try:
            message = self.framing.dtmf(digit)
        except ValueError:
            self.counters.bad_dtmf += 1
            logger.warning("media core reported DTMF %r; not sent to the agent", digit)
            return
        try:
            self.counters.dtmf_out += 1
            self._send_now(connection, message)
        except Exception:
            self._fail("dtmf")

    @staticmethod
    def _send_now(connection: ClientConnection, message: str | bytes) -> None:
        """Write one message now, in call order (websockets' ``broadcast``: no await, no task).

        A socket that is closing is skipped; how it closed is the read task's to report.
        """
        if connection.protocol.state is State.OPEN:
            broadcast((connection,), message)

    def _fail(self, what: str) -> None:
        logger.exception("agent bridge failed on %s for call %s", what, self._call.call_id)
        self._connection = None
        self._decide(BridgeFailed())

    def _decide(self, outcome: BridgeOutcome) -> None:
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(outcome)

    async def _guard(self, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            logger.exception("agent bridge task failed for call %s", self._call.call_id)
            self._decide(BridgeFailed())

    async def _close(self, connection: ClientConnection, outcome: BridgeOutcome) -> None:
        if isinstance(outcome, BridgeStopped):
            try:
                async with asyncio.timeout(self.settings.close_timeout_s):
                    await connection.send(self.framing.stop())
            except (ConnectionClosed, TimeoutError):
                logger.info("agent for call %s missed the stop message", self._call.call_id)
        if isinstance(outcome, BridgeFailed):
            await connection.close(CloseCode.INTERNAL_ERROR, "internal error")
        else:
            await connection.close()

    async def _until_stopped(self) -> None:
        await self._stop.wait()
        self._decide(BridgeStopped())

    async def _read(self, connection: ClientConnection) -> None:
        while True:
            try:
                message = await connection.recv()
            except ConnectionClosed as closed:
                self._decide(agent_left(closed))
                return
            self._apply(self.framing.receive(message))

    def _on_message(self, message: str | bytes) -> None:
        """Apply one agent message as it is parsed (``_AgentConnection``)."""
        if self._connection is None:
            return
        try:
            self._apply(self.framing.receive(message))
        except Exception:
            self._fail("an agent message")

    def _apply(self, command: AgentCommand | None) -> None:
        counters = self.counters
        if isinstance(command, PlayAudio):
            counters.agent_audio_bytes += len(command.audio)
            counters.agent_audio_dropped_bytes += self._port.play(command.audio)
        elif isinstance(command, PlaceMark):
            counters.marks_in += 1
            if self._pending_marks >= self.settings.max_pending_marks:
                counters.marks_dropped += 1
                return
            self._pending_marks += 1
            self._port.mark(command.name)
        elif isinstance(command, ClearAudio):
            counters.clears += 1
            self._port.clear()
        elif command is not None:
            self.digits.apply(command)
