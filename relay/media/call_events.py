"""What one call's media core tells its owner: its events, and the counters of its datagrams.

Theory of operation: `relay.media.call_media.CallMedia` queues a `MediaEvent` whenever
something happened that its owner must act on, and the owner drains them with
``CallMedia.next_event`` after every call into the core (the sans-I/O output convention: the
core never calls back). The queue is bounded (``call_media.MAX_EVENTS``; beyond it an event is
counted in ``events_dropped``, not queued). Both halves of the core, the receiving side in
``call_media`` and the sending side (`relay.media.sender.RtpSender`), count what became of
each datagram in one `CallMediaStats`.

- `MarkPlayed`: the audio queued before an agent's mark has been sent (or cleared): the bridge
  echoes the mark.
- `MediaTimedOut`: no caller RTP for the inactivity timeout while the call was not on hold: the
  call ends (``media_timeout``).
- `relay.media.dtmf.DtmfReceived`: a digit the caller pressed (RFC 4733), once per digit.
- `relay.media.dtmf_playout.DtmfInfoDue`: an agent's digit to send as SIP INFO, the remote
  having negotiated no telephone-event.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.media.dtmf import DtmfReceived
from relay.media.dtmf_playout import DtmfInfoDue

__all__ = ["CallMediaStats", "MarkPlayed", "MediaEvent", "MediaTimedOut"]


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    """The audio queued before a mark has been sent to the caller (or cleared)."""

    name: str
    cleared: bool = False
    """True when `CallMedia.clear` dropped the audio before the mark instead."""


@dataclass(frozen=True, slots=True)
class MediaTimedOut:
    """No caller RTP arrived for the inactivity timeout, while the call was not on hold."""

    idle_s: float


MediaEvent = DtmfReceived | MarkPlayed | MediaTimedOut | DtmfInfoDue


@dataclass(slots=True)
class CallMediaStats:
    """Counters of one call's datagrams: each one received is accepted or in one drop reason.

    Packets refused for their source are in `CallMedia.source_counts`; what became of accepted
    audio is in `CallMedia.jitter_stats` and `CallMedia.feed_stats`.
    """

    rtp_received: int = 0
    """Datagrams given to `CallMedia.receive_rtp`; muxed RTCP moves on to `receive_rtcp`."""
    rtp_accepted: int = 0
    rate_limited: int = 0
    short: int = 0
    malformed: int = 0
    unknown_payload_type: int = 0
    empty_payload: int = 0
    rtp_sent: int = 0
    silence_sent: int = 0
    frames_discarded_on_hold: int = 0
    send_ticks_skipped: int = 0
    playout_dropped_bytes: int = 0
    lag_frames_dropped: int = 0
    """Frames of agent audio dropped unsent to give back a standing lag (`StandingLag`)."""
    marks_dropped: int = 0
    music_sent: int = 0
    """Packets of hold music (`RtpSender.start_music`)."""
    agent_bytes_dropped_on_music: int = 0
    """Agent audio that came while hold music had the agent's place: dropped, not queued."""
    bridged_sent: int = 0
    """Packets another leg's audio became while the leg was bridged (`CallMedia.divert`)."""
    agent_bytes_dropped_bridged: int = 0
    """Agent audio that came while a bridge had the leg (`CallMedia.divert`): dropped."""
    bridged_dropped: int = 0
    """Accepted packets of a bridged leg that the bridge did not take in time (oldest first)."""
    rtcp_foreign: int = 0
    """From another host than the latched RTP source; what is parsed is in `CallMedia.reporter`."""
    rtcp_sent: int = 0
    events_dropped: int = 0
