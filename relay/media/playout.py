"""Pacing audio into 20 ms frames toward each side of a call (sans-I/O).

- `AgentFeed` (caller -> agent) pulls the caller's audio out of the jitter buffer and cuts it
  into frames in the agent's format:

  1. A frame leaves as soon as its 20 ms of audio have left the jitter buffer (which releases
     in-order packets on arrival: ``release_on_arrival``), so in-order audio reaches the agent
     when it arrives, whatever the packet duration: with 30 ms packets, frames leave 0, 30, 40,
     60, 90, 100 ms... Frames are never closer than ``MIN_INTERVAL_S``: audio that piled up (a
     caller of `pop_frame` that stalled, a burst after a network stall) is caught up at 2x.
  2. Audio the next frame still needs is *expected* at the jitter buffer's playout time of the
     first missing sample (for a frame that ends inside the next, longer packet: that packet's
     time, so the wait follows the packet duration). If a later packet is buffered, the jitter
     buffer says when the missing one is given up (a `Gap`, concealed by the decoder).
  3. If nothing is buffered ``FILL_GRACE_S`` (the jitter allowance) after the expected time (a
     burst loss, a stalled or paused sender, hold), the frame is filled: decoder concealment for
     ``CONCEAL_FILL_MS``, then silence. The expected time moves 20 ms per fill, so the agent
     keeps getting one frame every 20 ms.
  4. The RTP timestamp reached by filling is remembered: a `Gap` the fill already covered is
     skipped, and a late packet's covered part is dropped (unless its marker bit starts a new
     talkspurt, or it is far off: then the timeline restarts from it). So a fill never adds
     delay, and a burst of late audio never reaches the agent as a burst of frames.
  5. What waits in the feed is bounded by ``MAX_FIFO_MS``; the wait for missing audio by
     ``MAX_SLIP_S``.

- `PlayoutQueue` (agent -> caller) holds the agent's audio, any size, until the 20 ms RTP sender
  takes it, with the marks placed between its bytes; it is bounded in duration, and ``clear``
  empties it at once (barge-in). ``drop_frame`` drops one frame from its head; the marks it
  passes count as played, in order.

- `StandingLag` (agent -> caller) tells when the queue *stands*: a real-time agent whose audio
  was held up once (our event loop stalled, the caller's audio reached it in a burst and it
  answered the burst at once) keeps feeding the queue at exactly the rate it drains, so the
  delay it caught would last the rest of the call. Over a window of ``LAG_WINDOW_S``, it asks:

  1. the agent's audio kept coming, no gap between arrivals over ``LAG_MAX_GAP_S``;
  2. at about real time: ``LAG_MIN_RATE`` to ``LAG_MAX_RATE`` of the window's duration;
  3. and after every tick of the window, at least a frame more stayed queued than the *floor*:
     the least queued after any tick since the first, which is the audio held from before the
     answer (a greeting queued while ringing) until the queue has once run dry.

  Then the whole frames that stood through the window (the least queued above the floor after
  any of its ticks) are dropped from the head of the queue at once, and the window restarts. A
  tick that leaves less (3), a gap (1), `clear`, and hold (nothing is sent) restart it at once,
  and a rate out of bounds at its end: so a lag is given back ``LAG_WINDOW_S`` after it began to
  stand, in one cut (a 40 ms lag after a short stall as well as 1.3 s after a long one), and
  less than a frame stands after it (the lag is then under 20 ms). An agent
  ahead of real time (Pipecat sends at 2x, with pauses between utterances) fails 1 or 2 in
  every window; a real-time agent with ordinary jitter leaves the queue empty after its frame
  goes, failing 3.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from relay.media.codecs import CodecSpec
from relay.media.jitter import Gap, JitterBuffer
from relay.media.pipeline import AgentFormat, ReceivePath
from relay.media.rtp import RtpPacket
from relay.media.seq import timestamp_diff

FRAME_S = 0.020
TIMER_SLACK_S = 1e-4  # a timer may fire this early (float rounding, loop clock resolution)
FILL_GRACE_S = 0.010  # how late past its expected time missing audio may still come
MAX_SLIP_S = 0.200  # the jitter buffer's default maximum delay; also covers 120 ms packets
CONCEAL_FILL_MS = 60  # G.711 Appendix I fades over 60 ms; after that, plain silence
MIN_INTERVAL_S = FRAME_S / 2
MAX_FIFO_MS = 140  # one frame plus the longest Opus packet (120 ms)
RECENT_PAYLOADS = 8  # kept by sequence number, for the Opus FEC of a lost packet
PARTIAL_FRAME_WAIT_TICKS = 2
"""Ticks a partial frame at the end of the agent's audio waits for more before it is padded."""
MAX_PENDING_MARKS = 256
LAG_WINDOW_S = 2.0
LAG_MAX_GAP_S = 0.080  # four frames: a real-time agent's jitter, not a pause between turns
LAG_MIN_RATE = 0.8
LAG_MAX_RATE = 1.25


@dataclass(slots=True)
class AgentFeedStats:
    """What became of the caller's audio on its way to the agent."""

    frames: int = 0
    filled_frames: int = 0
    """Frames of concealment or silence because no caller audio was buffered."""
    gaps_concealed: int = 0
    gaps_already_filled: int = 0
    late_trimmed_bytes: int = 0
    """Agent audio of late packets dropped because a fill had already stood in for it."""
    decode_errors: int = 0
    overflow_bytes: int = 0


class AgentFeed:
    """Caller audio out of a jitter buffer, as 20 ms agent frames (see the module docstring)."""

    def __init__(self, jitter: JitterBuffer, path: ReceivePath, codec: CodecSpec) -> None:
        """Feed from ``jitter`` through ``path``; ``codec`` gives the RTP clock."""
        self.jitter, self.path, self.codec = jitter, path, codec
        self.stats = AgentFeedStats()
        agent = path.agent
        self._frame_bytes = agent.frame_bytes
        self._sample_bytes = agent.bytes_per_sample
        self._max_bytes = agent.duration_bytes(MAX_FIFO_MS)
        self._max_trim_units = round(codec.clock_rate_hz * MAX_SLIP_S)
        self._silence = bytes((agent.silence_byte,))
        self._units_per_byte = codec.clock_rate_hz / (agent.sample_rate_hz * agent.bytes_per_sample)
        self._fifo = bytearray()
        self._last_at: float | None = None  # when the last frame left
        self._expected_ts: int | None = None  # the RTP timestamp the fifo's audio reaches
        self._filled_ms = 0.0
        self._recent: dict[int, bytes] = {}

    def remember(self, packet: RtpPacket) -> None:
        """Keep a pushed packet's payload for a while: FEC of the packet before it (Opus)."""
        recent = self._recent
        recent[packet.sequence_number] = packet.payload
        if len(recent) > RECENT_PAYLOADS:
            del recent[next(iter(recent))]

    def pop_frame(self, now: float) -> bytes | None:
        """Return the next frame as soon as it may leave, else None; call until None."""
        last = self._last_at
        if last is not None and now + TIMER_SLACK_S < last + MIN_INTERVAL_S:
            return None
        frame = self._take(now)
        if frame is None:
            return None
        self._last_at = now
        self.stats.frames += 1
        return frame

    def get_timer(self) -> float | None:
        """Return when `pop_frame` may next give a frame, or None until the caller's audio."""
        last = self._last_at
        paced = None if last is None else last + MIN_INTERVAL_S
        if len(self._fifo) >= self._frame_bytes:
            return paced
        at = self.jitter.get_timer()
        expected = self._expected_at()
        if at is None or (expected is not None and at > expected + MAX_SLIP_S):
            at = None if expected is None else expected + FILL_GRACE_S
        return at if paced is None or at is None else max(at, paced)

    def _expected_at(self) -> float | None:
        """Return when the audio the next frame still needs should be here (point 2)."""
        last, expected = self._last_at, self._expected_ts
        if last is None or expected is None:
            return None
        at = self.jitter.playout_time(expected)
        if at is None:  # the jitter buffer was reset: the next packet restarts the timeline
            return last + FRAME_S
        return min(max(at, last), last + MAX_SLIP_S)

    def _take(self, now: float) -> bytes | None:
        need, fifo = self._frame_bytes, self._fifo
        while len(fifo) < need:
            item = self.jitter.pop(now + TIMER_SLACK_S)
            if item is None:
                break
            self._play(item)
        if len(fifo) < need:
            expected = self._expected_at()
            if expected is None or now + TIMER_SLACK_S < expected + FILL_GRACE_S:
                return None
            buffered = self.jitter.get_timer()
            if buffered is not None and buffered <= expected + MAX_SLIP_S:
                return None  # audio is on its way: wait for it rather than conceal it
            self._fill(need - len(fifo))
        frame = bytes(fifo[:need])
        del fifo[:need]
        return frame

    def _play(self, item: RtpPacket | Gap) -> None:
        expected = self._expected_ts
        covered = 0 if expected is None else timestamp_diff(expected, item.timestamp)
        if isinstance(item, Gap):
            if covered >= item.samples:
                self.stats.gaps_already_filled += 1
                return
            samples = item.samples * self.codec.sample_rate_hz // self.codec.clock_rate_hz
            next_payload = self._recent.get((item.sequence_number + 1) & 0xFFFF)
            audio = self.path.conceal(samples, next_payload)
            self.stats.gaps_concealed += 1
        else:
            try:
                audio = self.path.audio(item.payload)
            except ValueError:
                self.stats.decode_errors += 1
                return
            self._filled_ms = 0.0
            if item.marker or covered > self._max_trim_units:
                covered = 0  # a new talkspurt, or a jump: restart the timeline here
        units = round(len(audio) * self._units_per_byte)
        if covered >= units > 0:  # a fill already stood in for all of it: the timeline stays
            self.stats.late_trimmed_bytes += len(audio)
            return
        self._expected_ts = (item.timestamp + units) & 0xFFFFFFFF
        if covered > 0:
            trim = min(len(audio), round(covered / self._units_per_byte))
            trim -= trim % self._sample_bytes
            audio = audio[trim:]
            self.stats.late_trimmed_bytes += trim
        self._fifo += audio
        excess = len(self._fifo) - self._max_bytes
        if excess > 0:
            del self._fifo[:excess]
            self.stats.overflow_bytes += excess

    def _fill(self, missing: int) -> None:
        agent = self.path.agent
        if self._filled_ms < CONCEAL_FILL_MS:
            samples = missing // agent.bytes_per_sample
            audio = self.path.conceal(samples * self.codec.sample_rate_hz // agent.sample_rate_hz)
            audio = audio[:missing] + self._silence * (missing - len(audio))
        else:
            audio = self.path.silence(missing)
        self._filled_ms += FRAME_S * 1000
        self.stats.filled_frames += 1
        if self._expected_ts is not None:
            units = round(missing * self._units_per_byte)
            self._expected_ts = (self._expected_ts + units) & 0xFFFFFFFF
        self._fifo += audio


class PlayoutQueue:
    """The agent's audio waiting to be sent, with its marks; bounded in duration."""

    def __init__(self, agent: AgentFormat, *, max_ms: int) -> None:
        """Queue up to ``max_ms`` of audio in ``agent``'s format."""
        self.agent = agent
        self.frame_bytes = agent.frame_bytes
        self.max_bytes = agent.duration_bytes(max_ms)
        self._buffer = bytearray()
        self._read = 0  # bytes taken since the start: positions of marks count from here
        self._marks: deque[tuple[int, str]] = deque()
        self._played: list[str] = []
        self._idle_ticks = 0

    @property
    def queued_ms(self) -> float:
        """Return how much audio is waiting, in milliseconds."""
        return len(self._buffer) / self.agent.bytes_per_sample / self.agent.sample_rate_hz * 1000

    @property
    def queued_bytes(self) -> int:
        """Return how much audio is waiting, in bytes."""
        return len(self._buffer)

    def push(self, audio: bytes) -> int:
        """Queue ``audio`` (any size); return how many bytes were dropped for lack of room."""
        room = self.max_bytes - len(self._buffer)
        accepted = audio if len(audio) <= room else audio[: max(room, 0)]
        self._buffer += accepted
        if accepted:
            self._idle_ticks = 0
        return len(audio) - len(accepted)

    def mark(self, name: str) -> bool:
        """Place a mark after the audio queued so far (played at once if nothing is queued).

        Returns:
            False when ``MAX_PENDING_MARKS`` are already waiting: the mark is dropped.
        """
        if not self._buffer:
            self._played.append(name)
        elif len(self._marks) < MAX_PENDING_MARKS:
            self._marks.append((self._read + len(self._buffer), name))
        else:
            return False
        return True

    def clear(self) -> list[str]:
        """Drop every queued byte; return the marks that will now never be reached, in order."""
        self._read += len(self._buffer)
        self._buffer.clear()
        pending = [name for _, name in self._marks]
        self._marks.clear()
        return pending

    def ready(self) -> bool:
        """Return whether a frame can leave without waiting: a whole one, or a part a mark ends."""
        size = len(self._buffer)
        return size >= self.frame_bytes or (size > 0 and self._mark_due(size))

    def pop_frame(self) -> bytes | None:
        """Return the next 20 ms frame, or None (send silence).

        A partial frame is held for more audio, unless a mark follows it or no audio came for
        `PARTIAL_FRAME_WAIT_TICKS` ticks: then it is padded with silence and sent.
        """
        size = len(self._buffer)
        if size >= self.frame_bytes:
            frame = bytes(self._buffer[: self.frame_bytes])
        elif size and (self._mark_due(size) or self._idle_ticks >= PARTIAL_FRAME_WAIT_TICKS):
            pad = bytes((self.agent.silence_byte,)) * (self.frame_bytes - size)
            frame = bytes(self._buffer) + pad
        else:
            self._idle_ticks += 1
            return None
        self._take(min(size, self.frame_bytes))
        return frame

    def drop_frame(self) -> bool:
        """Drop the next whole frame unsent (a standing lag); return False if none is queued.

        The marks it passes are played, in order, as if it had been sent.
        """
        if len(self._buffer) < self.frame_bytes:
            return False
        self._take(self.frame_bytes)
        return True

    def _take(self, size: int) -> None:
        del self._buffer[:size]
        self._read += size
        while self._marks and self._marks[0][0] <= self._read:
            self._played.append(self._marks.popleft()[1])

    def played_marks(self) -> list[str]:
        """Return (and forget) the marks whose audio has all been taken."""
        played, self._played = self._played, []
        return played

    def _mark_due(self, size: int) -> bool:
        return bool(self._marks) and self._marks[0][0] <= self._read + size


class StandingLag:
    """When the playout queue stands, fed at real time: a lag to give back (module docstring)."""

    def __init__(self, agent: AgentFormat) -> None:
        """Watch a queue of ``agent``'s audio."""
        self._bytes_per_s = agent.sample_rate_hz * agent.bytes_per_sample
        self._frame_bytes = agent.frame_bytes
        self._floor: int | None = None  # the least queued after any tick so far (point 3)
        self._start: float | None = None  # the window's start; None until audio arrives
        self._last_at = 0.0  # the last arrival
        self._arrived = 0  # bytes that arrived after the window's start
        self._stood: int | None = None  # the least queued above the floor after a window's tick

    def restart(self, now: float | None = None) -> None:
        """Start a new window at ``now`` (None: at the next arrival)."""
        self._start, self._arrived, self._stood = now, 0, None

    def arrived(self, size: int, now: float) -> None:
        """Record ``size`` bytes of the agent's audio queued at ``now``."""
        if self._start is None or now - self._last_at > LAG_MAX_GAP_S:
            self.restart(now)
        else:
            self._arrived += size
        self._last_at = now

    def ticked(self, queued: int, now: float) -> int:
        """Record what stayed ``queued`` after a tick sent at ``now``; return frames to drop."""
        floor = self._floor = queued if self._floor is None else min(self._floor, queued)
        if self._start is None:
            return 0
        stood = queued - floor
        if stood < self._frame_bytes:  # no frame stood: the window starts over
            self.restart(now)
            return 0
        self._stood = stood if self._stood is None else min(self._stood, stood)
        elapsed = now - self._start
        if elapsed < LAG_WINDOW_S:
            return 0
        rate = self._arrived / (elapsed * self._bytes_per_s)
        frames = self._stood // self._frame_bytes
        self.restart(now)
        steady = now - self._last_at <= LAG_MAX_GAP_S and LAG_MIN_RATE <= rate <= LAG_MAX_RATE
        return frames if steady else 0
