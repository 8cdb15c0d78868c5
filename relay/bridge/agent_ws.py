"""The agent bridge: one WebSocket client per call, pumping audio both ways (contract 4).

Theory of operation:

1. **Connect.** :meth:`AgentBridge.run` dials the agent's media endpoint with bounded retries
   (:mod:`relay.bridge.connect`: each attempt to an address the egress policy allows, within
   the :class:`~relay.bridge.settings.BridgeSettings`) while the caller hears ringing, and gives
   up at once when :meth:`AgentBridge.stop` comes first. The call's glue awaits
   :meth:`AgentBridge.connected` and answers the caller once it is ``True``; ``False`` means the
   agent could not be reached (or the call was stopped first).
2. **Open.** The bridge sends ``connected`` and ``start`` (call id, caller, callee and the
   template context in ``customParameters``), then listens to the media core
   (:meth:`MediaPort.listen`, :mod:`relay.bridge.media_port`): each 20 ms frame of caller
   audio, each played mark and each DTMF digit is framed and written to the socket in the
   callback that produced it (:func:`~relay.bridge.agent_connection.send_now`), so message
   order is ``sequenceNumber`` order and no task runs per frame (the relay's CPU per call is
   mostly this path: ``bench/relay_calls.py``). The agent's messages are applied as websockets
   parses them, in the callback that read their bytes
   (:class:`~relay.bridge.agent_connection.AgentConnection`): ``media`` to
   :meth:`MediaPort.play`, ``mark`` to :meth:`MediaPort.mark`, ``clear`` to
   :meth:`MediaPort.clear`, ``dtmf`` to ``send_dtmf`` (:mod:`relay.bridge.agent_dtmf`). One
   task waits for the socket to close (and reads, should an agent ever fragment a message) and
   one for :meth:`AgentBridge.stop`.
3. **Bounds.** Agent audio is handed to the media core at once: it paces playout and bounds
   its queue, and the bridge counts what it reports dropped. Marks beyond
   ``max_pending_marks`` are dropped and counted. Caller audio that finds more than
   ``outbox_media_frames`` frames' worth of bytes still unsent in the socket's write buffer (an
   agent that does not read) is dropped and counted; its sequence number is skipped, as with
   Twilio, so the agent can see the gap. Marks and digits are always written. Messages over
   ``max_message_bytes`` close the socket (1009) and end the call. websockets' pings keep the
   socket alive and end the call when the agent stops answering them.
4. **End.** The first of these decides the :data:`~relay.bridge.outcome.BridgeOutcome`
   (:mod:`relay.bridge.outcome`): the agent closes the socket (:class:`AgentLeft`, which ends
   the call); :meth:`AgentBridge.stop`, when the caller hung up (:class:`BridgeStopped`: the
   bridge sends what is queued, then ``stop``, then closes); or a bug in a task
   (:class:`BridgeFailed`, logged, the socket closed with 1011). Bad agent input (invalid JSON,
   unknown events, bad payloads) is counted and never ends the call.

This module is the orchestration: one socket and the one state its callbacks share. What it
stands on is apart: the seam to the media core (:mod:`relay.bridge.media_port`), the bounds
(:mod:`relay.bridge.settings`), the connect attempts (:mod:`relay.bridge.connect`), the
in-callback reading and writing (:mod:`relay.bridge.agent_connection`), the outcome types
(:mod:`relay.bridge.outcome`) and the sans-I/O framings (:mod:`relay.bridge.twilio_framing`,
:mod:`relay.bridge.hd_framing`). Their public names are importable from here too, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from chalicelib.contracts import MediaEndpoint, MediaFraming
from relay.bridge.agent_connection import AgentConnection, send_now
from relay.bridge.agent_dtmf import AgentDigits
from relay.bridge.connect import USER_AGENT, connect_agent
from relay.bridge.hd_framing import HdFraming
from relay.bridge.media_port import MediaListener, MediaPort
from relay.bridge.outcome import (
    AgentLeft,
    AgentLeftReason,
    AgentUnreachable,
    BridgeCounters,
    BridgeFailed,
    BridgeOutcome,
    BridgeStopped,
    agent_left,
)
from relay.bridge.settings import BridgeSettings
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
from relay.bridge.twilio_messages import TransferEnd
from relay.transport.egress import AsyncResolver, loop_resolver

__all__ = [
    "USER_AGENT",
    "AgentBridge",
    "AgentLeft",
    "AgentLeftReason",
    "AgentUnreachable",
    "BridgeCounters",
    "BridgeFailed",
    "BridgeOutcome",
    "BridgeSettings",
    "BridgeStopped",
    "MediaListener",
    "MediaPort",
    "agent_left",
    "framing_for",
]

logger = logging.getLogger("sipline.relay.bridge")


def framing_for(framing: MediaFraming, identity: StreamIdentity) -> TwilioFraming:
    """Return the sans-I/O framing named by the media endpoint."""
    if framing is MediaFraming.PCM16K:
        return HdFraming(identity, sample_rate_hz=16000)
    if framing is MediaFraming.PCM48K:
        return HdFraming(identity, sample_rate_hz=48000)
    return TwilioFraming(identity)


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
            return await connect_agent(
                self.endpoint.url, self.settings, self.counters, self._resolve
            )
        except Exception:
            logger.exception("agent bridge failed to connect for call %s", self._call.call_id)
            return BridgeFailed()

    async def _session(self, connection: ClientConnection) -> BridgeOutcome:
        # The agent's messages are applied from the first (an agent that speaks as soon as it
        # has ``start`` is not split between recv()'s queue and the callback, out of order).
        outcome: asyncio.Future[BridgeOutcome] = asyncio.get_running_loop().create_future()
        self._outcome = outcome
        self._connection = connection
        if isinstance(connection, AgentConnection):
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
            if isinstance(connection, AgentConnection):
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
            send_now(connection, message)
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
            send_now(connection, self.framing.mark(name))
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
            send_now(connection, message)
        except Exception:
            self._fail("dtmf")

    def tell_transfer(
        self, transfer_id: str, status: TransferEnd, *, sip_status: int | None, reason: str | None
    ) -> bool:
        """Send the ``transfer`` message (a sipline extension); False when not connected."""
        connection = self._connection
        if connection is None:
            return False
        try:
            message = self.framing.transfer(
                transfer_id, status, sip_status=sip_status, reason=reason
            )
            send_now(connection, message)
        except Exception:
            self._fail("transfer")
            return False
        return True

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
        """Apply one agent message as it is parsed (``AgentConnection``)."""
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
