"""The asyncio side of one call's media: a UDP socket pair driving a `CallMedia` core.

The I/O shell of the sans-I/O media core (``relay/media``), beside the SIP transports. It is
thin on purpose: datagrams go to the core with the loop's clock (``time.monotonic()`` on
asyncio's loop; a test's loop may simulate it), one
``loop.call_at`` follows the core's `CallMedia.get_timer` (so the send grid, kept in the core,
never drifts), and what the core returns is sent, or handed to the agent bridge.

`RtpSession` offers the bridge's ``MediaPort`` shape: ``listen`` (a `MediaListener` gets each
20 ms frame of caller audio, each played mark and each digit, called from the datagram or timer
callback that produced it), ``play``, ``mark``, ``clear``. Nothing waits on a queue: a frame goes
from the caller's datagram to the agent's socket in one callback, with no task switch (about
150 calls per core this way, ``bench/relay_calls.py``). Agent audio is
serviced at once too, so the core can send it without waiting for its next tick. The session
creates no task, and `RtpSession.close` cancels the timer, closes both sockets, waits for them
to be gone and gives the ports back. The agent's digits for the caller go in with `send_dtmf`;
those the core wants sent as SIP INFO come out through ``info_dtmf``, set by the call.

The port pairs and their sockets are `relay.transport.rtp_ports`' (`RtpPortAllocator`,
`RtpPortsExhausted`, importable from here too); `MediaListener` is the bridge's
(``relay/bridge/media_port.py``), the one shape both sides agree on.

For transfers, `start_hold_music` / `stop_hold_music` put a loop in the agent's place toward
this leg, and `divert` hands the leg to a bridge with another leg (``relay/bridge/sip_bridge.py``):
each accepted packet goes to the bridge's sink from the datagram callback that brought it, and
`send_bridged` sends the bridge's packets for this leg at once (no queue, no task).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from chalicelib.contracts import MediaFraming
from relay.bridge.media_port import MediaListener
from relay.ids import IdSource
from relay.media.call_media import CallMedia, DtmfInfoDue, MarkPlayed, MediaTimedOut
from relay.media.dtmf import DTMF_DIGITS, DtmfReceived
from relay.media.hold_music import HoldClip
from relay.media.rtcp import is_rtcp
from relay.media.rtp import RtpPacket
from relay.sip.sdp.offer_answer import NegotiatedMedia
from relay.transport.rtp_ports import RtpPortAllocator, RtpPortsExhausted, RtpSocket

__all__ = ["MediaListener", "RtpPortAllocator", "RtpPortsExhausted", "RtpSession"]

logger = logging.getLogger("sipline.relay.media")

HELD_OUTPUT = 300
"""What waits while no listener is attached: 1 s of frames plus marks and digits; oldest go first."""
_T = TypeVar("_T")


REARM_TOLERANCE_S = 0.001
"""A timer within this of the core's next deadline stays as it is."""

MAX_BEFORE_START_BYTES = 30 * 8000 * 2
"""Agent audio held while the caller rings: 30 s at the largest framing rate we hold for (16-bit 8 kHz)."""


class RtpSession:
    """One call's RTP and RTCP sockets around a `CallMedia`; the agent bridge's media port."""

    _rtp: RtpSocket
    _rtcp: RtpSocket

    def __init__(self, allocator: RtpPortAllocator) -> None:
        """Prepare a session; `open` binds its ports."""
        self._allocator = allocator
        self._loop = asyncio.get_running_loop()
        self.local_port = 0
        self.media: CallMedia | None = None
        self.ignored_datagrams = 0
        """Datagrams that arrived before `start`, or after the session failed or closed."""
        self._timer: asyncio.Handle | None = None
        self._timer_when = 0.0
        self._last_now = 0.0
        self._listener: MediaListener | None = None
        self._held: deque[tuple[Callable[[MediaListener, Any], None], Any]] = deque(
            maxlen=HELD_OUTPUT
        )
        self.held_dropped = 0
        """Output (mostly caller frames) that fell out of the hold while no listener was attached."""
        self._ended: asyncio.Future[str] = self._loop.create_future()
        self._closed = False
        self._before_start: list[tuple[str, bytes | str]] = []
        self._stopped = False  # closed, or failed: no more processing
        self.info_dtmf: Callable[[str, int], None] | None = None
        """Sends a digit and its duration in ms as SIP INFO (without telephone-event)."""
        self._sink: Callable[[RtpPacket, float], None] | None = None

    @classmethod
    async def open(cls, allocator: RtpPortAllocator) -> RtpSession:
        """Bind a port pair; the SDP can now name ``local_port``."""
        session = cls(allocator)
        session.local_port, session._rtp, session._rtcp = await allocator.bind(session._sockets)
        return session

    def _sockets(self) -> tuple[RtpSocket, RtpSocket]:
        return RtpSocket(self._on_rtp), RtpSocket(self._on_rtcp)

    def start(
        self, negotiated: NegotiatedMedia, framing: MediaFraming, *, ids: IdSource, **options: Any
    ) -> CallMedia:
        """Start the media once offer and answer agree; ``options`` go to `CallMedia`.

        Raises:
            RuntimeError: the media already started (a re-INVITE goes to `update`).
        """
        if self.media is not None:
            raise RuntimeError("RTP session already started; apply a re-INVITE with update()")
        now = self._clock()
        self.media = CallMedia(
            negotiated, framing, ids=ids, now=now, wall_clock_offset_s=time.time() - now, **options
        )
        pending, self._before_start = self._before_start, []
        for kind, value in pending:  # what the agent sent while the caller was still ringing
            if kind == "play":
                self.media.play(value, now)  # type: ignore[arg-type]
            else:
                self.media.mark(value)  # type: ignore[arg-type]
        self._service()
        return self.media

    def update(self, negotiated: NegotiatedMedia) -> None:
        """Apply a re-INVITE's offer/answer (hold, resume, new address or codec)."""
        if self.media is not None:
            self.media.update(negotiated, self._clock())
            self._service()

    # --- the bridge's MediaPort ------------------------------------------------------------

    def listen(self, listener: MediaListener | None) -> None:
        """Send the media output to ``listener`` from now on; what was held goes to it first.

        None detaches: output is held (bounded by ``HELD_OUTPUT``, oldest dropped) until the
        next listener.
        """
        self._listener = listener
        while listener is not None and self._held and self._listener is listener:
            deliver, value = self._held.popleft()
            deliver(listener, value)

    def play(self, audio: bytes) -> int:
        """Queue agent audio (any size) for the caller; return the bytes dropped (queue full).

        The core is serviced at once: audio that finds the sender idle goes out now rather than
        at the next tick. Before the media starts (the caller is still ringing: nothing is sent
        before the answer), the audio waits, up to ``MAX_BEFORE_START_BYTES``, and plays from the
        answer on.
        """
        if self.media is None:
            held = sum(len(v) for kind, v in self._before_start if kind == "play")
            if held + len(audio) > MAX_BEFORE_START_BYTES:
                return len(audio)
            self._before_start.append(("play", audio))
            return 0
        if self._stopped:
            return 0
        dropped = self.media.play(audio, self._clock())
        self._guard(None)
        return dropped

    def mark(self, name: str) -> None:
        """Place a mark after the audio queued so far."""
        if self.media is None:
            self._before_start.append(("mark", name))
        elif not self._stopped:
            self.media.mark(name)
            self._guard(None)

    def clear(self) -> None:
        """Drop the queued agent audio at once (barge-in)."""
        if self.media is None:
            marks = [v for kind, v in self._before_start if kind == "mark" and isinstance(v, str)]
            self._before_start.clear()
            for name in marks:  # cleared marks count as played, as after the start
                self._output(_mark_played, name)
            return
        if not self._stopped:
            self.media.clear()
            self._guard(None)

    def send_dtmf(self, digits: str, duration_ms: int) -> bool:
        """Queue the agent's digits for the caller; False when refused (queue full, no media)."""
        if self.media is None or self._stopped:
            return False  # before the answer (or after the end) there is no one to send to
        accepted = self.media.send_dtmf(digits, duration_ms)
        self._guard(None)
        return accepted

    def inject_dtmf(self, digit: str) -> None:
        """Report a digit that came another way (SIP INFO) as if it had come over RTP."""
        if len(digit) == 1 and digit.upper() in DTMF_DIGITS:
            self._output(_dtmf, digit.upper())
        else:
            logger.debug("not a DTMF digit: %r", digit)

    # --- transfers -------------------------------------------------------------------------

    def start_hold_music(self, clip: HoldClip | None) -> bool:
        """Loop ``clip`` toward this leg in the agent's place (None: silence); False before start."""
        if self.media is None or self._stopped:
            return False
        self.media.start_hold_music(clip)
        self._guard(None)
        return True

    def stop_hold_music(self) -> None:
        """Give the agent its place toward this leg back."""
        if self.media is not None and not self._stopped:
            self.media.stop_hold_music()
            self._guard(None)

    def divert(self, sink: Callable[[RtpPacket, float], None] | None) -> bool:
        """Give each accepted packet, with the time, to ``sink`` (a bridge); None undoes it.

        Returns False when there is no media to divert (not started, or ended).
        """
        if self.media is None or self._stopped:
            return False
        self._sink = sink
        self.media.divert(sink is not None)
        self._guard(None)
        return True

    def send_bridged(self, packet: RtpPacket) -> None:
        """Send a bridge's packet, stamped for this leg, now (dropped while the leg is on hold)."""
        if self.media is not None and not self._stopped:
            datagram = self.media.bridged(packet)
            if datagram is not None:
                self._send(*datagram)

    async def wait_ended(self) -> str:
        """Return why the media ended: ``media_timeout``, ``internal_error`` or ``closed``."""
        return await asyncio.shield(self._ended)

    async def close(self) -> None:
        """Send our RTCP BYE, stop the timer, close both sockets and give the ports back."""
        if self._closed:
            return
        self._closed = self._stopped = True
        if self.media is not None and (bye := self.media.goodbye()) is not None:
            self._send(*bye)
        if self._timer is not None:
            self._timer.cancel()
        self._listener = self._sink = None
        self._held.clear()
        await asyncio.gather(self._rtp.close(), self._rtcp.close())
        self._allocator.release(self.local_port)
        self._end("closed")

    # --- callbacks -------------------------------------------------------------------------

    def _on_rtp(self, data: bytes, source: tuple[str, int]) -> None:
        if self.media is None or self._stopped:
            self.ignored_datagrams += 1
        else:
            self._guard(partial(self.media.receive_rtp, data, source))

    def _on_rtcp(self, data: bytes, source: tuple[str, int]) -> None:
        if self.media is None or self._stopped:
            self.ignored_datagrams += 1
        else:
            self._guard(partial(self.media.receive_rtcp, data, source))

    def _on_timer(self) -> None:
        # A timer that fires has come due, even if a coarse loop clock says otherwise.
        self._last_now = max(self._last_now, self._timer_when)
        self._timer = None
        self._guard(None)

    def _clock(self) -> float:
        """Return the core's time: the loop's (``time.monotonic()``), never going back.

        A timer that fires counts as due even if the clock says a hair less (a loop with a
        coarser clock, uvloop's whole milliseconds, would otherwise make the core re-arm it at
        once and spin until the clock turns).
        """
        now = self._loop.time()  # the clock its timers are armed on
        if now < self._last_now:
            return self._last_now
        self._last_now = now
        return now

    def _guard(self, step: Callable[[float], None] | None) -> None:
        try:
            if step is not None:
                step(self._clock())
            self._service()
        except Exception:  # a task root: a broken call ends, the relay does not
            logger.exception("RTP session failed; ending its media")
            self._stopped = True
            self._end("internal_error")

    def _service(self) -> None:
        media, now = self.media, self._clock()
        if media is None or self._stopped:
            return
        media.handle_timer(now)
        for data, destination in media.rtp_to_send(now):
            self._send(data, destination)
        sink = self._sink
        while sink is not None and (packet := media.next_diverted()) is not None:
            sink(packet, now)  # to the other leg, in this callback
        listener = self._listener
        while (frame := media.next_agent_frame(now)) is not None:
            if listener is not None:
                listener.caller_audio(frame)  # the hot path: straight to the agent's socket
            else:
                self._output(_caller_audio, frame)
        self._drain_events()
        self._arm(media.get_timer())

    def _send(self, data: bytes, destination: tuple[str, int]) -> None:
        muxed = self.media is not None and self.media.rtcp_mux
        (self._rtcp if is_rtcp(data) and not muxed else self._rtp).send(data, destination)

    def _drain_events(self) -> None:
        assert self.media is not None
        while (event := self.media.next_event()) is not None:
            if isinstance(event, MarkPlayed):
                self._output(_mark_played, event.name)
            elif isinstance(event, DtmfReceived):
                self._output(_dtmf, event.digit)
            elif isinstance(event, MediaTimedOut):
                self._end("media_timeout")
            elif isinstance(event, DtmfInfoDue):
                if self.info_dtmf is None:
                    logger.warning("digit for the caller dropped: no telephone-event, no INFO")
                else:
                    self.info_dtmf(event.digit, event.duration_ms)

    def _output(self, deliver: Callable[[MediaListener, _T], None], value: _T) -> None:
        if self._listener is not None:
            deliver(self._listener, value)
        elif not self._closed:
            self.held_dropped += len(self._held) == self._held.maxlen
            self._held.append((deliver, value))

    def _arm(self, when: float | None) -> None:
        """Have one timer at ``when``: moved when the core's next deadline moves.

        Later as well as earlier: audio that arrives on time pushes the core's deadlines on,
        and a timer left at the old time would wake the loop for nothing once a frame per call.
        """
        timer = self._timer
        if when is None or (timer is not None and abs(self._timer_when - when) < REARM_TOLERANCE_S):
            return
        if timer is not None:
            timer.cancel()
        # (uvloop returns a plain Handle, with no when(), for a time already past)
        self._timer, self._timer_when = self._loop.call_at(when, self._on_timer), when

    def _end(self, reason: str) -> None:
        if not self._ended.done():
            self._ended.set_result(reason)


def _caller_audio(listener: MediaListener, frame: bytes) -> None:
    listener.caller_audio(frame)


def _mark_played(listener: MediaListener, name: str) -> None:
    listener.mark_played(name)


def _dtmf(listener: MediaListener, digit: str) -> None:
    listener.dtmf(digit)
