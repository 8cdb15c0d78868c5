"""The seam between the agent bridge and one call's media core, in both directions.

Theory of operation:

1. The bridge holds a :class:`MediaPort` (``relay/transport/rtp_session.py``'s ``RtpSession``
   in the relay; an in-memory core in tests and benchmarks) and drives it from the agent's
   messages: ``media`` to :meth:`MediaPort.play`, ``mark`` to :meth:`MediaPort.mark`, ``clear``
   to :meth:`MediaPort.clear`, ``dtmf`` to ``send_dtmf`` (:class:`relay.bridge.agent_dtmf.
   DtmfPort`). Audio crosses it in the framing's format (μ-law 8 kHz, or s16le PCM at 16/48 kHz
   for the HD framing); the core owns RTP, codecs, resampling, the paced playout queue and mark
   bookkeeping.
2. The other way, the core calls a :class:`MediaListener` (the bridge, once its socket is open)
   with each 20 ms frame of caller audio, each played mark and each digit the caller pressed,
   from the I/O callback that produced it: no queue and no task in between, so the listener
   must be quick. While no listener is attached the core holds its output (bounded), so nothing
   said between the answer and the agent's ``start`` is lost.

Both are ``Protocol`` s: the bridge and the media core import this module, not each other.
"""

from __future__ import annotations

from typing import Protocol

from relay.bridge.agent_dtmf import DtmfPort

__all__ = ["MediaListener", "MediaPort"]


class MediaListener(Protocol):
    """Who takes a call's media output (the agent bridge); called from I/O callbacks, so quick."""

    def caller_audio(self, frame: bytes) -> None:
        """Take 20 ms of caller audio in the agent's format."""
        ...

    def mark_played(self, name: str) -> None:
        """Take the name of a mark whose audio has been sent to the caller (or cleared)."""
        ...

    def dtmf(self, digit: str) -> None:
        """Take a digit the caller pressed (RFC 4733 or SIP INFO)."""
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
