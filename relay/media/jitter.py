"""An adaptive jitter buffer: packets in at arrival, frames or gaps out at playout time (sans-I/O).

Theory of operation:

1. Packets are keyed by their extended sequence number (`relay.media.seq.extend`), so order
   survives the 16-bit wrap. The buffer only accepts sequence numbers in
   ``[next, next + capacity)``, where ``next`` is the next one to play: memory is bounded by
   construction, whatever the peer sends.
2. Playout time is ``timestamp / clock_rate_hz + offset``. ``offset`` is set when playout is
   anchored (the first packet, a reset, or a marker bit starting a talkspurt on an empty buffer)
   so that that packet waits the *target delay*: four times the RFC 3550 A.8 interarrival jitter,
   clamped to ``[min_delay_ms, max_delay_ms]``.
3. The offset adapts. A packet that arrives after its slot was concealed (*late*) raises it at
   once, so the next one is in time. Every ``ADAPT_WINDOW_S`` the smallest and largest transit
   times seen are compared with it: if every packet waited at least one frame more than the
   target needs, one frame is discarded at the next pop (latency only drops by dropping audio;
   no time-stretching here); if the jitter grew, the offset grows to match. Sender clock drift is
   absorbed the same way.
4. ``pop(now)`` returns the next packet once it is due, a `Gap` once a missing packet's slot has
   passed and a later packet is buffered (the decoder conceals it), or None: nothing is due, or
   the buffer ran dry (the sender paused or stopped; the caller decides what silence means).
   Call it until it returns None; `get_timer` says when to call it next. With
   ``release_on_arrival`` the next packet in sequence leaves as soon as it is here: the target
   delay then only says how long a *missing* packet is waited for (reordering), so in-order
   audio is never held back; lowering the delay (point 3) then drops no audio.
5. A packet whose sequence number is already buffered or was just played is a *duplicate*; one
   whose slot passed is *late*. A sequence number far from the stream (a jump of ``capacity`` or
   more ahead, or more than ``MAX_MISORDER`` behind) is believed only when the next packet follows
   it (RFC 3550 A.1's restart rule); then, as on an SSRC change or a timestamp that jumps by more
   than ``max_timestamp_jump_ms`` from where its sequence number puts it, the buffer resets:
   buffered packets are flushed and playout is anchored again.
6. Every packet pushed is accounted for exactly once in `JitterBufferStats`.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.media.rtp import RtpPacket
from relay.media.seq import MAX_MISORDER, extend, seq_diff, timestamp_diff

_TS_HALF = 1 << 31
_TS_MASK = (1 << 32) - 1

JITTER_MULTIPLE = 4  # target delay = 4 x the RFC 3550 A.8 jitter (mean deviation), clamped
JITTER_GAIN = 1 / 16  # RFC 3550 A.8
ADAPT_WINDOW_S = 2.0
"""How often the offset is re-evaluated against the transit times seen."""
DEFAULT_FRAME_MS = 20  # until two consecutive packets show the real packet duration
MAX_FRAME_MS = 200  # a larger timestamp step between consecutive packets is not a frame
HISTORY_BITS = 64  # how many played slots are remembered to tell duplicates from late packets
_HISTORY_MASK = (1 << HISTORY_BITS) - 1


@dataclass(frozen=True, slots=True)
class Gap:
    """A packet that did not arrive in time: conceal ``samples`` samples here."""

    sequence_number: int
    timestamp: int
    """Estimated from the next packet buffered and the packet duration seen so far."""
    samples: int


@dataclass(slots=True)
class JitterBufferStats:
    """What happened to every packet pushed: ``received`` is the sum of the rest + buffered."""

    received: int = 0
    played: int = 0
    concealed: int = 0
    """Gaps returned (slots with no packet); not part of the sum above."""
    duplicates: int = 0
    late: int = 0
    discarded: int = 0
    """Dropped to bring the delay down (point 3)."""
    flushed: int = 0
    """Still buffered when the buffer reset."""
    rejected: int = 0
    """Far-off sequence numbers that no following packet confirmed."""
    resets: int = 0


class JitterBuffer:
    """Reorder, de-duplicate and pace one RTP stream; conceal what is missing (see module doc)."""

    def __init__(
        self,
        clock_rate_hz: int,
        *,
        min_delay_ms: int = 20,
        max_delay_ms: int = 200,
        capacity: int = 64,
        max_timestamp_jump_ms: int = 1000,
        release_on_arrival: bool = False,
    ) -> None:
        """Create an empty buffer for a stream whose timestamps run at ``clock_rate_hz``.

        Args:
            release_on_arrival: let the next packet in sequence leave at once instead of at its
                playout time (point 4): for a consumer that wants audio soonest, not smoothly.

        Raises:
            ValueError: if the delays are negative or inverted, or ``capacity`` < 2.
        """
        if not 0 <= min_delay_ms <= max_delay_ms:
            raise ValueError(
                f"need 0 <= min_delay_ms <= max_delay_ms, got {min_delay_ms}, {max_delay_ms}"
            )
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, got {capacity}")
        self.clock_rate_hz = clock_rate_hz
        self.min_delay_s = min_delay_ms / 1000
        self.max_delay_s = max_delay_ms / 1000
        self.capacity = capacity
        self.max_timestamp_jump_s = max_timestamp_jump_ms / 1000
        self.release_on_arrival = release_on_arrival
        self.stats = JitterBufferStats()
        self._pushed_at = 0.0  # the latest arrival: a buffered packet is here since then
        self._jitter_s = 0.0
        self._samples_per_packet = clock_rate_hz * DEFAULT_FRAME_MS // 1000
        self._clear()

    def _clear(self) -> None:
        self._packets: dict[int, RtpPacket] = {}
        self._next: int | None = None
        self._max_ext = 0
        self._ssrc: int | None = None
        self._started = False
        self._history = 0
        self._wild: RtpPacket | None = None
        self._discard_pending = False
        self._ts_base = 0  # extended timestamps count from here
        self._ts_ref = 0  # the latest extended timestamp, to extend the next one against
        self._offset_s = 0.0
        self._base_transit_s = 0.0
        self._last_transit_s: float | None = None
        self._last_ext = -2  # the previous arrival, to measure the packet duration
        self._last_timestamp = 0
        self._window_start = 0.0
        self._window_min_transit_s = float("inf")
        self._window_max_transit_s = float("-inf")

    @property
    def target_delay_ms(self) -> float:
        """Return the delay the observed jitter asks for, within [min, max] ms."""
        return self._target_s() * 1000

    @property
    def playout_delay_ms(self) -> float:
        """Return how long a packet with the smallest recent transit time waits to be played."""
        return (self._offset_s - self._base_transit_s) * 1000

    @property
    def jitter_ms(self) -> float:
        """Return the RFC 3550 A.8 interarrival jitter estimate in milliseconds."""
        return self._jitter_s * 1000

    def __len__(self) -> int:
        """Return how many packets are held (including one awaiting confirmation)."""
        return len(self._packets) + (self._wild is not None)

    def push(self, packet: RtpPacket, now: float) -> None:
        """Take a packet that arrived at ``now`` (monotonic seconds)."""
        self.stats.received += 1
        self._pushed_at = now
        head = self._next
        if head is None or packet.ssrc != self._ssrc:
            if head is not None:
                self._reset()
            self._anchor(packet, now)
            return
        delta = seq_diff(packet.sequence_number, head)
        ext = head + delta
        if 0 <= delta < self.capacity:
            self._accept(packet, ext, now)
        elif delta < 0 and not self._started and self._max_ext - ext < self.capacity:
            self._accept(packet, ext, now)  # still priming: an earlier packet arrived
        elif -MAX_MISORDER <= delta < 0:
            self._refuse_behind(packet, head, ext, now)
        else:
            self._far_off(packet, now)

    def pop(self, now: float) -> RtpPacket | Gap | None:
        """Return the next packet or gap whose playout time has come, else None."""
        while self._next is not None:
            packet = self._packets.get(self._next)
            if packet is None:
                return self._pop_gap(now)
            if now < self._due(packet.timestamp) and not self.release_on_arrival:
                return None
            del self._packets[self._next]
            self._advance(played=True)
            if self._discard_pending and self._packets:
                self._discard_pending = False
                self.stats.discarded += 1
                continue
            self.stats.played += 1
            return packet
        return None

    def get_timer(self) -> float | None:
        """Return when `pop` will next have something, or None while nothing is buffered."""
        if self._next is None or not self._packets:
            return None
        packet = self._packets.get(self._next)
        if packet is None:
            return self._gap_due()[0]
        due = self._due(packet.timestamp)
        return min(due, self._pushed_at) if self.release_on_arrival else due

    def playout_time(self, timestamp: int) -> float | None:
        """Return when audio at RTP ``timestamp`` is due to play, or None before any packet."""
        return None if self._next is None else self._due(timestamp)

    # --- arrival ---------------------------------------------------------------------------

    def _accept(self, packet: RtpPacket, ext: int, now: float) -> None:
        if ext in self._packets:
            self.stats.duplicates += 1
            return
        if self._wild is not None:
            self._wild = None
            self.stats.rejected += 1
        ref = self._ts_ref
        ts_ext = ref + ((packet.timestamp - ref + _TS_HALF) & _TS_MASK) - _TS_HALF
        transit = now - (ts_ext - self._ts_base) / self.clock_rate_hz
        wait = self._offset_s - transit
        jump_s = self.max_timestamp_jump_s
        if wait > self.max_delay_s + jump_s or wait < -jump_s:
            self._reset()  # the timestamp jumped: this packet starts a new timeline
            self._anchor(packet, now)
            return
        if packet.marker and self._started and not self._packets:
            self._anchor(packet, now)  # a talkspurt on an empty buffer: adapt for free
            return
        self._ts_ref = ts_ext
        self._packets[ext] = packet
        if self._next is None or ext < self._next:
            self._next = ext  # priming: an earlier packet arrived
        if ext > self._max_ext:
            self._max_ext = ext
        self._observe(ext, packet.timestamp, transit, now)

    def _refuse_behind(self, packet: RtpPacket, head: int, ext: int, now: float) -> None:
        age = head - 1 - ext
        if age < HISTORY_BITS and self._history >> age & 1:
            self.stats.duplicates += 1
            return
        self.stats.late += 1
        ts_ext = extend(packet.timestamp, self._ts_ref, bits=32)
        transit = now - (ts_ext - self._ts_base) / self.clock_rate_hz
        # Fast attack: move playout so that a packet this late would have been in time.
        self._offset_s = min(max(self._offset_s, transit), self._max_offset())
        self._observe(ext, packet.timestamp, transit, now)

    def _far_off(self, packet: RtpPacket, now: float) -> None:
        wild = self._wild
        if wild is not None and packet.sequence_number == (wild.sequence_number + 1) & 0xFFFF:
            self._wild = None
            self._reset()  # two in a row: the sender restarted (RFC 3550 A.1)
            self._anchor(wild, now)
            assert self._next is not None
            self._accept(packet, self._next + 1, now)
            return
        if wild is not None:
            self.stats.rejected += 1
        self._wild = packet

    def _anchor(self, packet: RtpPacket, now: float) -> None:
        if self._next is None:
            self._ssrc = packet.ssrc
            self._next = self._max_ext = packet.sequence_number
            self._ts_base = self._ts_ref = packet.timestamp
            self._window_start = now
        else:  # a talkspurt starts: skip the slots before it, nothing there to conceal
            self._ts_ref = extend(packet.timestamp, self._ts_ref, bits=32)
            ext = self._next + seq_diff(packet.sequence_number, self._next)
            skipped = min(ext - self._next, HISTORY_BITS)
            self._history = (self._history << skipped) & _HISTORY_MASK
            self._next = self._max_ext = ext
        transit = now - (self._ts_ref - self._ts_base) / self.clock_rate_hz
        self._offset_s = transit + self._target_s()
        self._base_transit_s = transit
        self._packets[self._next] = packet
        self._observe(self._next, packet.timestamp, transit, now)

    def _observe(self, ext: int, timestamp: int, transit: float, now: float) -> None:
        if self._last_transit_s is not None:
            self._jitter_s += (abs(transit - self._last_transit_s) - self._jitter_s) * JITTER_GAIN
        self._last_transit_s = transit
        if ext == self._last_ext + 1:
            step = timestamp_diff(timestamp, self._last_timestamp)
            if 0 < step <= self.clock_rate_hz * MAX_FRAME_MS // 1000:
                self._samples_per_packet = step
        self._last_ext, self._last_timestamp = ext, timestamp
        if transit < self._window_min_transit_s:
            self._window_min_transit_s = transit
        if transit > self._window_max_transit_s:
            self._window_max_transit_s = transit
        if now - self._window_start >= ADAPT_WINDOW_S:
            self._adapt(now)

    def _adapt(self, now: float) -> None:
        frame_s = self._samples_per_packet / self.clock_rate_hz
        base = self._window_min_transit_s
        desired = base + self._target_s()
        slack = self._offset_s - self._window_max_transit_s  # what the latest packet waited
        if self._offset_s > desired + frame_s and slack > frame_s:
            self._offset_s -= frame_s
            self._discard_pending = not self.release_on_arrival  # else nothing waits that long
        elif self._offset_s < desired:
            self._offset_s = desired
        self._base_transit_s = base
        self._window_start = now
        self._window_min_transit_s = float("inf")
        self._window_max_transit_s = float("-inf")

    def _reset(self) -> None:
        self.stats.resets += 1
        self.stats.flushed += len(self._packets)
        if self._wild is not None:
            self.stats.rejected += 1
        self._clear()

    # --- playout ---------------------------------------------------------------------------

    def _target_s(self) -> float:
        return min(self.max_delay_s, max(self.min_delay_s, JITTER_MULTIPLE * self._jitter_s))

    def _max_offset(self) -> float:
        return min(self._window_min_transit_s, self._base_transit_s) + self.max_delay_s

    def _due(self, timestamp: int) -> float:
        ref = self._ts_ref  # extend(timestamp, ref, bits=32), inlined: this runs per pop
        ts_ext = ref + ((timestamp - ref + _TS_HALF) & _TS_MASK) - _TS_HALF
        return (ts_ext - self._ts_base) / self.clock_rate_hz + self._offset_s

    def _gap_due(self) -> tuple[float, int, RtpPacket]:
        assert self._next is not None
        ext = self._next + 1
        while ext not in self._packets:
            ext += 1
        later = self._packets[ext]
        missing_samples = (ext - self._next) * self._samples_per_packet
        due = self._due(later.timestamp) - missing_samples / self.clock_rate_hz
        return due, (later.timestamp - missing_samples) & 0xFFFFFFFF, later

    def _pop_gap(self, now: float) -> Gap | None:
        if not self._packets:
            return None  # ran dry: nothing says a packet is missing rather than not yet sent
        due, timestamp, _ = self._gap_due()
        if now < due:
            return None
        assert self._next is not None
        gap = Gap(self._next & 0xFFFF, timestamp, self._samples_per_packet)
        self._advance(played=False)
        self.stats.concealed += 1
        return gap

    def _advance(self, *, played: bool) -> None:
        assert self._next is not None
        self._history = ((self._history << 1) | played) & _HISTORY_MASK
        self._next += 1
        self._started = True
