"""Digits the agent sends to the caller, one 20 ms send tick at a time (sans-I/O).

Theory of operation:

1. **Queue.** `DtmfPlayout.queue` takes a string of digits with one tone duration; it holds at
   most ``max_pending`` digits (those not yet finished), and a string that would go beyond is
   refused whole: the caller never hears half of what the agent meant. Digits wait, in order,
   for the send ticks of `relay.media.sender.RtpSender`, which asks `DtmfPlayout.tick`
   before it takes agent audio; ``None`` means "send audio as usual".
2. **RFC 4733** (when the remote negotiated ``telephone-event``). A digit is one event on the
   audio stream: same SSRC and sequence space, the RTP timestamp of the tick on which it began
   in every packet (§2.3.1), one packet per tick (the audio packetization interval, §2.5.1.2),
   the marker bit on the first, the duration so far in each, and the End bit on the last,
   which goes three times in all (§2.5.1.4; the durations are `relay.media.dtmf.
   event_durations`'). The RTP clock keeps running: each tick still moves the timestamp on by
   one frame. Agent audio waits meanwhile (it is held, not dropped) and so does it during the
   pause that follows each digit, whose ticks carry codec silence (`QUIET`): ``PAUSE_MS`` from
   the end of one tone to the start of the next, End retransmissions included.
3. **SIP INFO** (no ``telephone-event`` in the remote's SDP). The first tick of a digit returns
   a `DtmfInfoDue`, which the call turns into an INFO request (``application/dtmf-relay``,
   see ``relay/calls/dtmf.py``); the next digit is due after the tone's duration and the
   pause, so a far end sees them one by one. Audio is not held: INFO is out of band.
4. The way is chosen per digit, on its first tick, from the payload type negotiated then: a
   re-INVITE that adds or removes ``telephone-event`` changes the way of the next digit, never
   of one under way.

Digits wait while the call is on hold (no ticks are sent then) and are not touched by the
agent's ``clear`` (which drops audio). Bounds of what the agent may ask are checked at the
agent's framing (``relay/bridge/agent_dtmf.py``); this module checks its own arguments again
because it is the one that would build a wrong packet.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from relay.media.dtmf import (
    DEFAULT_VOLUME,
    DTMF_DIGITS,
    END_PACKET_COUNT,
    MAX_DURATION,
    TelephoneEvent,
    event_durations,
)

MAX_PENDING_DIGITS = 64
"""Digits one call may have waiting (and the one playing); more is refused whole."""
PAUSE_MS = 100
"""From the end of one tone to the start of the next (ITU-T Q.24's minimum pause is 40 ms)."""
MIN_DURATION_MS = 40  # ITU-T Q.24: the shortest tone every receiver must accept
MAX_DURATION_MS = 1000
"""One 16-bit duration field holds 1,000 ms even at 48 kHz (65,535 / 48,000 = 1.36 s), so no
digit needs the long-event segments of RFC 4733 §2.5.1.3."""


class Quiet(Enum):
    """A tick of the pause between digits: send codec silence (agent audio still waits)."""

    QUIET = "quiet"


QUIET = Quiet.QUIET


@dataclass(frozen=True, slots=True)
class EventPacket:
    """A telephone-event payload to send on this tick instead of audio."""

    payload: bytes
    payload_type: int
    timestamp: int
    """The RTP timestamp of the tick on which the event began."""
    marker: bool


@dataclass(frozen=True, slots=True)
class DtmfInfoDue:
    """A digit is due and the remote has no telephone-event: send it as a SIP INFO."""

    digit: str
    duration_ms: int


DtmfTick = EventPacket | Quiet | DtmfInfoDue


@dataclass(slots=True)
class DtmfPlayoutStats:
    """What became of the agent's digits."""

    queued: int = 0
    refused: int = 0
    """Digits refused because the queue was full."""
    sent_rtp: int = 0
    sent_info: int = 0


class DtmfPlayout:
    """The agent's digits for one call, played out on the send ticks (see the module doc)."""

    def __init__(self, *, max_pending: int = MAX_PENDING_DIGITS, volume: int = DEFAULT_VOLUME):
        """Hold at most ``max_pending`` digits; send tones at ``volume`` (-dBm0)."""
        self.max_pending = max_pending
        self.volume = volume
        self.stats = DtmfPlayoutStats()
        self._digits: deque[tuple[str, int]] = deque()
        self._ticks: deque[DtmfTick | None] = deque()
        """What the remaining ticks of the digit under way carry."""

    @property
    def pending(self) -> int:
        """Return how many digits are waiting or playing."""
        return len(self._digits) + bool(self._ticks)

    @property
    def holds_audio(self) -> bool:
        """Return whether the next tick is the playout's, not agent audio's (RFC 4733 only)."""
        if self._ticks:
            return self._ticks[0] is not None
        return bool(self._digits)  # a digit starts on the next tick (perhaps over INFO)

    def queue(self, digits: str, duration_ms: int) -> bool:
        """Queue ``digits`` (0-9, *, #, A-D) with tones of ``duration_ms``; False if refused.

        Raises:
            ValueError: a digit or the duration is out of range (the framing checks first).
        """
        if not digits or any(d not in DTMF_DIGITS for d in digits):
            raise ValueError(f"DTMF digits must be of {DTMF_DIGITS}")
        if not MIN_DURATION_MS <= duration_ms <= MAX_DURATION_MS:
            raise ValueError(f"duration_ms must be {MIN_DURATION_MS}..{MAX_DURATION_MS}")
        if self.pending + len(digits) > self.max_pending:
            self.stats.refused += len(digits)
            return False
        self._digits.extend((digit, duration_ms) for digit in digits)
        self.stats.queued += len(digits)
        return True

    def tick(
        self, timestamp: int, *, payload_type: int | None, clock_rate_hz: int, samples: int
    ) -> DtmfTick | None:
        """Return what this send tick carries, or None for agent audio as usual.

        Args:
            timestamp: the RTP timestamp this tick stands for (the packetizer's next).
            payload_type: the negotiated telephone-event payload type, None without one.
            clock_rate_hz: the stream's RTP clock (the telephone-event's, RFC 4733 §2.3.1).
            samples: timestamp units per tick.
        """
        if not self._ticks:
            if not self._digits:
                return None
            digit, duration_ms = self._digits.popleft()
            self._ticks.extend(
                self._start(digit, duration_ms, timestamp, payload_type, clock_rate_hz, samples)
            )
        return self._ticks.popleft()

    def _start(
        self,
        digit: str,
        duration_ms: int,
        timestamp: int,
        payload_type: int | None,
        clock_rate_hz: int,
        samples: int,
    ) -> list[DtmfTick | None]:
        tick_ms = samples * 1000 // clock_rate_hz
        pause_ticks = -(-PAUSE_MS // tick_ms)
        if payload_type is None:
            self.stats.sent_info += 1
            idle = -(-(duration_ms + PAUSE_MS) // tick_ms) - 1
            return [DtmfInfoDue(digit, duration_ms), *[None] * idle]
        self.stats.sent_rtp += 1
        total = min(clock_rate_hz * duration_ms // 1000, MAX_DURATION)
        durations = event_durations(total, samples)
        event = DTMF_DIGITS.index(digit)
        packets: list[DtmfTick | None] = []
        for index, duration in enumerate(durations):
            payload = TelephoneEvent(
                event=event, end=duration == total, volume=self.volume, duration=duration
            )
            packets.append(EventPacket(bytes(payload), payload_type, timestamp, index == 0))
        # the End retransmissions (all but the first End packet) fall in the pause
        packets.extend([QUIET] * max(0, pause_ticks - (END_PACKET_COUNT - 1)))
        return packets
