"""DTMF over RTP: RFC 4733 telephone-event payloads, a receiver and a sender (sans-I/O).

Theory of operation (receiver):

1. An event is identified by its SSRC and RTP timestamp, which is the instant the event began
   and stays the same in every packet about it (RFC 4733 §2.3.1). The marker bit is not used:
   many carriers omit it, and a lost first packet would lose the digit.
2. A digit is emitted once, when the first packet with the End bit arrives (its duration is then
   known); the two retransmissions of that packet (§2.5.1.4) and any straggling update find the
   key already done and are counted as duplicates. Two presses of the same key have different
   timestamps, so they are two digits.
3. If the End packets are all lost, the digit is emitted anyway: when a packet for another event
   arrives, or when no packet for it has arrived for ``end_timeout_ms`` (see `get_timer`).
4. An event longer than the 16-bit duration field is sent in segments, each starting where the
   previous one ended (§2.5.1.3): a segment that continues the same digit is not a new digit.
5. Events 16 and up (flash, tones) and payloads that are not 4 bytes are counted and ignored.

Output follows the cores' convention: `DtmfReceiver.receive` queues, `next_event` drains.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Self

from relay.media.rtp import RtpPacket, RtpPacketizer
from relay.media.seq import timestamp_diff

DTMF_DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2: events 0-9, 10 = *, 11 = #, 12-15 = A-D
KEYPAD_DIGITS = frozenset(DTMF_DIGITS[:12])
"""The twelve keys of a phone keypad (events 0-11): the digits Twilio's framing can carry."""
TELEPHONE_EVENT_LENGTH = 4  # RFC 4733 §2.3
MAX_DURATION = 0xFFFF  # RFC 4733 §2.3.5: 16 bits
MAX_VOLUME = 63  # RFC 4733 §2.3.4: 0 to -63 dBm0, 6 bits
END_PACKET_COUNT = 3  # RFC 4733 §2.5.1.4: "sent a total of three times"
DEFAULT_VOLUME = 10  # -10 dBm0, what SIPp's captures and most phones send
RECENT_EVENTS = 32  # event keys remembered to recognise duplicates

_EVENT = struct.Struct("!BBH")


class DtmfParseError(ValueError):
    """A telephone-event payload is malformed; the message says how."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """The 4-byte telephone-event payload (RFC 4733 §2.3)."""

    event: int
    end: bool = False
    volume: int = DEFAULT_VOLUME
    """Power level as a positive number of -dBm0 (0..63)."""
    duration: int = 0
    """Duration so far, in timestamp units."""

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse a payload of exactly 4 bytes.

        Raises:
            DtmfParseError: if the payload is not 4 bytes long.
        """
        if len(data) != TELEPHONE_EVENT_LENGTH:
            raise DtmfParseError(
                f"telephone-event payload must be {TELEPHONE_EVENT_LENGTH} bytes, got {len(data)}"
            )
        event, flags, duration = _EVENT.unpack(data)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def __bytes__(self) -> bytes:
        if not 0 <= self.volume <= MAX_VOLUME:
            raise ValueError(f"telephone-event volume must be 0..{MAX_VOLUME}, got {self.volume}")
        flags = self.volume | 0x80 if self.end else self.volume
        try:
            return _EVENT.pack(self.event, flags, self.duration)
        except struct.error as exc:
            raise ValueError(f"telephone-event field out of range: {exc}") from exc

    @property
    def digit(self) -> str | None:
        """Return the DTMF digit this event stands for, or None for other events."""
        return DTMF_DIGITS[self.event] if self.event < len(DTMF_DIGITS) else None


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A caller pressed a key."""

    digit: str
    """One of 0-9, *, #, A-D."""
    ssrc: int
    timestamp: int
    """RTP timestamp at which the event began."""
    duration_ms: float
    end_received: bool
    """False when no End packet arrived and the digit was emitted by timeout or supersession."""


@dataclass(slots=True)
class DtmfReceiverStats:
    """Counters of what the receiver saw (each packet counted once)."""

    received: int = 0
    malformed: int = 0
    ignored: int = 0
    """Valid events that are not DTMF digits (16 and up)."""
    duplicates: int = 0
    """Packets about an event already emitted (End retransmissions, stragglers)."""


@dataclass(slots=True)
class _Pending:
    ssrc: int
    timestamp: int
    """Timestamp of the current segment (the key)."""
    start: int
    """Timestamp of the first segment: when the key press began."""
    event: int
    duration: int
    """Duration of the earlier segments plus the current one."""
    segment_duration: int
    last_at: float


class DtmfReceiver:
    """Turn telephone-event packets into digits, each exactly once (see module doc)."""

    def __init__(self, clock_rate_hz: int = 8000, *, end_timeout_ms: int = 500) -> None:
        """Decode events whose timestamps run at ``clock_rate_hz``."""
        self.clock_rate_hz = clock_rate_hz
        self.end_timeout_s = end_timeout_ms / 1000
        self.stats = DtmfReceiverStats()
        self._pending: _Pending | None = None
        self._done: deque[tuple[int, int]] = deque(maxlen=RECENT_EVENTS)
        self._last_done: _Pending | None = None
        self._events: deque[DtmfReceived] = deque()

    def receive(self, packet: RtpPacket, now: float) -> None:
        """Take a telephone-event packet that arrived at ``now`` (monotonic seconds)."""
        self.stats.received += 1
        try:
            event = TelephoneEvent.parse(packet.payload)
        except DtmfParseError:
            self.stats.malformed += 1
            return
        if event.digit is None:
            self.stats.ignored += 1
            return
        key = (packet.ssrc, packet.timestamp)
        if key in self._done:
            self.stats.duplicates += 1
            return
        pending = self._pending
        if pending is None or (pending.ssrc, pending.timestamp) != key:
            pending = self._start(packet, event, now)
            if pending is None:
                self.stats.duplicates += 1
                return
        pending.duration += event.duration - pending.segment_duration
        pending.segment_duration = event.duration
        pending.last_at = now
        if event.end:
            self._emit(end_received=True)

    def next_event(self) -> DtmfReceived | None:
        """Return the next digit received, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """Return when an event without an End packet will be given up on, or None."""
        if self._pending is None:
            return None
        return self._pending.last_at + self.end_timeout_s

    def handle_timer(self, now: float) -> None:
        """Emit the pending digit if its End packets never came."""
        timer = self.get_timer()
        if timer is not None and now >= timer:
            self._emit(end_received=False)

    def _start(self, packet: RtpPacket, event: TelephoneEvent, now: float) -> _Pending | None:
        pending, last = self._pending, self._last_done
        if pending is not None and _continues(pending, packet, event.event):
            # The next segment of a long event (RFC 4733 §2.5.1.3): the same key press.
            self._done.append((pending.ssrc, pending.timestamp))
            pending.timestamp = packet.timestamp
            pending.segment_duration = 0
            return pending
        if pending is None and last is not None and _continues(last, packet, event.event):
            # The same, after a sender that set the End bit on the earlier segment.
            self._done.append((packet.ssrc, packet.timestamp))
            last.timestamp = packet.timestamp
            return None
        if pending is not None:
            self._emit(end_received=False)  # superseded: its End packets were lost
        self._pending = _Pending(
            packet.ssrc, packet.timestamp, packet.timestamp, event.event, 0, 0, now
        )
        return self._pending

    def _emit(self, *, end_received: bool) -> None:
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        self._last_done = pending
        self._done.append((pending.ssrc, pending.timestamp))
        self._events.append(
            DtmfReceived(
                digit=DTMF_DIGITS[pending.event],
                ssrc=pending.ssrc,
                timestamp=pending.start,
                duration_ms=pending.duration * 1000 / self.clock_rate_hz,
                end_received=end_received,
            )
        )


def _continues(previous: _Pending, packet: RtpPacket, event: int) -> bool:
    return (
        previous.segment_duration == MAX_DURATION
        and previous.event == event
        and previous.ssrc == packet.ssrc
        and timestamp_diff(packet.timestamp, previous.timestamp) == MAX_DURATION
    )


def event_durations(total: int, step: int) -> list[int]:
    """Return the duration field of each packet of one event, one packet every ``step`` units.

    Each update carries the duration so far, up to the end of its packet interval (RFC 4733
    §2.5.1.2); the last, with the End bit, carries ``total`` and is sent three times in all
    (§2.5.1.4).
    """
    return [*range(step, total, step), *([total] * END_PACKET_COUNT)]


class DtmfSender:
    """Build the RFC 4733 packets of one digit on an outgoing stream."""

    def __init__(
        self,
        packetizer: RtpPacketizer,
        *,
        payload_type: int,
        clock_rate_hz: int = 8000,
        packet_interval_ms: int = 50,
        volume: int = DEFAULT_VOLUME,
    ) -> None:
        """Send on ``packetizer``'s stream with the negotiated telephone-event payload type.

        ``clock_rate_hz`` must be the stream's RTP clock (telephone-event/8000 with G.711).
        """
        self.packetizer = packetizer
        self.payload_type = payload_type
        self.clock_rate_hz = clock_rate_hz
        self.packet_interval_ms = packet_interval_ms
        self.volume = volume

    def packets(self, digit: str, *, duration_ms: int = 100) -> list[RtpPacket]:
        """Return the packets for ``digit``, to send one every ``packet_interval_ms``.

        The first packet carries the marker bit (RFC 4733 §2.5.1.2), updates carry the duration
        so far, and the final packet, with the End bit, is sent three times (§2.5.1.4); all
        share the timestamp at which the event began, while sequence numbers keep counting
        (§2.5.1.6). Afterwards the packetizer's timestamp has moved past the event, so audio
        resumes where the tone ended.

        Raises:
            ValueError: if ``digit`` is not a DTMF digit, or the duration does not fit one
                segment.
        """
        event = DTMF_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
        if event < 0:
            raise ValueError(f"not a DTMF digit: {digit!r} (expected one of {DTMF_DIGITS})")
        total = self.clock_rate_hz * duration_ms // 1000
        step = self.clock_rate_hz * self.packet_interval_ms // 1000
        if not 0 < total <= MAX_DURATION or step <= 0:
            raise ValueError(f"duration_ms must give 1..{MAX_DURATION} samples, got {total}")
        start = self.packetizer.timestamp
        packets = []
        for index, duration in enumerate(event_durations(total, step)):
            payload = TelephoneEvent(
                event=event, end=duration == total, volume=self.volume, duration=duration
            )
            packets.append(
                self.packetizer.stamp(
                    bytes(payload),
                    payload_type=self.payload_type,
                    timestamp=start,
                    marker=index == 0,
                )
            )
        self.packetizer.advance(total)
        return packets
