"""When the next RTP packet toward the caller leaves (sans-I/O).

The sender sends one packet per 20 ms *tick*: the agent's next frame, or silence when none is
ready (carriers hang up on RTP inactivity). A fixed grid would make agent audio wait for the
next tick (0-20 ms, 10 on average); `SendPacer` moves the grid to the agent's audio instead:

1. **Paced.** Audio that was already queued at the last tick (an agent ahead of real time,
   such as Pipecat sending at 2x) leaves on the grid, ``anchor + k * 20 ms``, with no drift.
2. **At once.** Audio that arrives while the sender waits for it (silence going out, or an
   empty queue after the last frame) leaves at once, and the grid is re-anchored there. The
   RTP timestamps stay continuous (+ one frame per packet), so the receiver sees a packet a
   little early, which its jitter buffer absorbs. Limits: at least ``MIN_SPACING_S`` after the
   previous packet, and never more than ``MAX_LEAD_S`` ahead of the timestamps' nominal clock:
   room for a real-time agent's phase (up to a frame) and jitter (``FLOW_JITTER_S``), while an
   agent running ahead of real time reaches it and is paced from there on (point 1).
3. **Grace.** A tick that finds no frame right after agent audio waits up to ``FLOW_JITTER_S``
   for the next chunk of a real-time agent, sent at once (re-anchored) if it comes; else
   silence goes out, and the grid stays where it was. When part of a frame is queued, the
   chunk that completes it is due that much later (an agent sending 30 ms chunks leaves 10 ms
   after each second frame, and its next chunk comes 10 ms after the tick): the grace grows by
   it, up to one frame.
4. **Back to the clock.** Points 2 and 3 move the packets off the timestamps' nominal clock
   (``lead_s``: positive when early). Each silence tick moves the grid ``RELAX_S`` back toward
   it, so the RTP clock does not drift from real time over many agent turns.

`CallMedia` asks `next_at` when the next tick is due, sends it, and reports it with `sent`.
"""

from __future__ import annotations

from relay.media.playout import FRAME_S

MIN_SPACING_S = 0.005
FLOW_JITTER_S = 0.010
"""How early or late a real-time agent's chunk may come and still leave on arrival."""
MAX_LEAD_S = FRAME_S + FLOW_JITTER_S
RELAX_S = 0.001  # per silence tick: 15 ms of lead is given back in 300 ms of silence


class SendPacer:
    """The send grid of one stream, moved to the agent's audio (see the module docstring)."""

    def __init__(self, now: float) -> None:
        """Start the grid at ``now``: the first tick is due then."""
        self._anchor, self._ticks = now, 0  # tick k is due at anchor + k * 20 ms
        self._last_at: float | None = None
        self.lead_s = 0.0
        """How far the packets run ahead of the timestamps' nominal clock (point 4)."""
        self._flowing = False  # the last tick carried agent audio
        self._waiting = True  # no frame was ready after the last tick: new audio goes at once

    @property
    def due_at(self) -> float:
        """Return when the next tick is due on the grid: the time its RTP timestamp stands for."""
        return self._anchor + self._ticks * FRAME_S

    def next_at(self, *, ready: bool, partial_s: float = 0.0) -> float:
        """Return when the next tick goes.

        Args:
            ready: a frame of agent audio is ready to go.
            partial_s: how much audio is queued, when less than a frame.
        """
        due = self.due_at
        if not ready:
            return due + min(FLOW_JITTER_S + partial_s, FRAME_S) if self._flowing else due
        if not self._waiting:
            return due
        at = due - (MAX_LEAD_S - self.lead_s)
        last = self._last_at
        return min(max(at, self._anchor if last is None else last + MIN_SPACING_S), due)

    def sent(self, now: float, *, audio: bool, waiting: bool) -> None:
        """Record the tick sent at ``now``.

        Args:
            audio: it carried agent audio (not silence, nor a tick on hold).
            waiting: no further frame is ready: audio that comes next leaves at once.
        """
        if audio and self._waiting:  # it came while we waited: it left on arrival
            self.lead_s += self.due_at - now
            self._anchor, self._ticks = now, 1
        else:
            self._ticks += 1
            if not audio:
                relax = min(max(self.lead_s, -RELAX_S), RELAX_S)
                self._anchor += relax
                self.lead_s -= relax
        self._flowing, self._waiting, self._last_at = audio, waiting, now

    def timestamp_at(self, now: float, next_timestamp: int, clock_rate_hz: int) -> int:
        """Return the RTP timestamp that stands for ``now`` (an SR's, RFC 3550 §6.4.1).

        Args:
            next_timestamp: the timestamp the next tick carries: it stands for `due_at`.
        """
        return (next_timestamp + round((now - self.due_at) * clock_rate_hz)) & 0xFFFFFFFF

    def skip(self, ticks: int) -> None:
        """Drop ``ticks`` ticks that our caller stalled through."""
        self._ticks += ticks

    def interrupt(self) -> None:
        """Forget the flow: the queue was cleared, the next audio is a new utterance."""
        self._flowing, self._waiting = False, True
