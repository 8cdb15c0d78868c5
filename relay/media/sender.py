"""The agent-to-caller half of a call's media, sans-I/O: one RTP packet per 20 ms send tick.

Theory of operation:

1. **Queue.** `RtpSender.play` queues the agent's audio in a bounded `PlayoutQueue` (what is
   beyond ``max_playout_ms`` is dropped and counted); `RtpSender.mark` places a mark after it,
   reported (`MarkPlayed`) once the audio before it has been sent; `RtpSender.clear` drops the
   queue at once (barge-in), its marks reported as cleared.
2. **Ticks.** `RtpSender.send_due` sends one packet per tick that is due. An empty queue sends
   codec silence: many PBXs and carriers hang up on RTP inactivity, and NAT pinholes close,
   while the agent listens. `relay.media.pacing.SendPacer` says when ticks go: agent audio that
   arrives while the sender waits for it leaves at once (call ``send_due`` right after
   ``play``), audio queued ahead of real time on a 20 ms grid. A caller of ours that stalled for
   over ``MAX_SEND_CATCH_UP_S`` skips the missed ticks (the RTP clock moves on) rather than
   bursting them.
3. **Standing lag.** A lag that stands while the agent feeds the queue at real time
   (`relay.media.playout.StandingLag`: a real-time agent after any hiccup) is given back in
   whole 20 ms frames, dropped from the head of the queue (``lag_frames_dropped``); an agent
   ahead of real time is never cut.
4. **Hold.** With no destination (the negotiated direction does not send, or there is no
   address) ticks still run: the RTP timestamp keeps time, queued audio and marks are consumed,
   no lag is dropped, nothing is sent; the first packet after resuming has the marker bit.
5. **Agent DTMF** (`relay.media.dtmf_playout`): each tick asks the digits' playout first. RFC
   4733 events go on the audio stream (same SSRC and sequence space, the timestamp of the
   event's first tick) while agent audio waits, and the pause after a digit carries codec
   silence; without a negotiated telephone-event a digit comes out as a `DtmfInfoDue` event for
   the call to send as SIP INFO, and audio goes on.

6. **Hold music** (`relay.media.hold_music`): `RtpSender.start_music` gives the agent's place
   to a loop (or to silence, with no clip) until `RtpSender.stop_music`. Audio the agent had
   queued before plays out first (the "please hold" before a transfer); agent audio that comes
   after is dropped and counted, its marks reported at once as cleared. Each tick with no agent
   frame then carries the loop's next 20 ms at the codec's rate, encoded with the leg's encoder
   on the same grid as silence would have gone.

`relay.media.call_media.CallMedia` owns one sender, shares its `RtpPacketizer` with the RTCP
reporter (one SSRC, one clock), and hands each call the negotiated media, the destination and
the codec's `SendPath` as they are now (a re-INVITE may change any of them between ticks).
"""

from __future__ import annotations

from collections.abc import Callable

from relay.media.call_events import CallMediaStats, MarkPlayed, MediaEvent
from relay.media.dtmf_playout import QUIET, DtmfInfoDue, DtmfPlayout, EventPacket
from relay.media.hold_music import HoldClip, HoldMusicPlayer
from relay.media.pacing import SendPacer
from relay.media.pipeline import AgentFormat, SendPath
from relay.media.playout import FRAME_S, TIMER_SLACK_S, PlayoutQueue, StandingLag
from relay.media.rtp import RtpPacket, RtpPacketizer
from relay.media.source import Address
from relay.sip.sdp.offer_answer import NegotiatedMedia

__all__ = ["MAX_SEND_CATCH_UP_S", "RtpSender"]

MAX_SEND_CATCH_UP_S = 0.100  # a longer stall of our caller skips send ticks instead of bursting


class RtpSender:
    """One call's agent audio, marks and digits on their way to the caller (module docstring)."""

    def __init__(
        self,
        agent: AgentFormat,
        packetizer: RtpPacketizer,
        *,
        now: float,
        max_playout_ms: int,
        stats: CallMediaStats,
        emit: Callable[[MediaEvent], None],
    ) -> None:
        """Send with ``packetizer`` on a grid anchored at ``now``; count in ``stats``.

        ``emit`` queues an event on the owning core's bounded queue.
        """
        self.packetizer = packetizer
        self.pacer = SendPacer(now)
        self.dtmf_out = DtmfPlayout()
        """The agent's digits for the caller; its ``stats`` say what became of them."""
        self._playout = PlayoutQueue(agent, max_ms=max_playout_ms)
        self._lag = StandingLag(agent)
        self._marker_next = True
        self._stats = stats
        self._emit = emit
        self.music: HoldClip | None = None
        self.agent_paused = False
        """Hold music (or its silence) has the agent's place (point 6)."""
        self._music_player: HoldMusicPlayer | None = None

    def start_music(self, clip: HoldClip | None) -> None:
        """Give the agent's place to ``clip``, looped (None: silence), until `stop_music`."""
        self.music, self.agent_paused, self._music_player = clip, True, None

    def stop_music(self) -> None:
        """Give the agent its place back: its next audio plays as before."""
        self.music, self.agent_paused, self._music_player = None, False, None

    def new_talkspurt(self) -> None:
        """Set the marker bit on the next packet: another source (a bridge) sent in this stream."""
        self._marker_next = True

    def play(self, audio: bytes, now: float) -> int:
        """Queue agent audio of any size in the agent's format; return the bytes dropped."""
        if self.agent_paused:
            self._stats.agent_bytes_dropped_on_music += len(audio)
            return 0  # not the queue's bound: the agent is on hold, not too fast
        self._stats.playout_dropped_bytes += (dropped := self._playout.push(audio))
        self._lag.arrived(len(audio) - dropped, now)
        return dropped

    def mark(self, name: str) -> None:
        """Place a mark after the audio queued so far; `MarkPlayed` follows once it is sent."""
        if self.agent_paused:
            self._emit(MarkPlayed(name, cleared=True))
            return
        self._stats.marks_dropped += not self._playout.mark(name)
        self._collect_marks()

    def clear(self) -> None:
        """Drop all queued agent audio at once (barge-in); pending marks are reported cleared."""
        for name in self._playout.clear():
            self._emit(MarkPlayed(name, cleared=True))
        self.pacer.interrupt()
        self._lag.restart()

    def next_tick_at(self, *, sends: bool) -> float:
        """Return when the next tick is due (``sends``: there is somewhere to send to)."""
        ready = sends and self._playout.ready() and not self.dtmf_out.holds_audio
        return self.pacer.next_at(ready=ready, partial_s=self._playout.queued_ms / 1000)

    def send_due(
        self,
        out: list[tuple[bytes, Address]],
        now: float,
        *,
        media: NegotiatedMedia,
        destination: Address | None,
        path: SendPath,
    ) -> None:
        """Append the RTP of every tick due by ``now`` to ``out``.

        ``destination`` is None while nothing is to be sent (hold, or no address yet).
        """
        increment = path.codec.timestamp_increment
        pacer = self.pacer
        late = now - pacer.due_at
        if late > MAX_SEND_CATCH_UP_S:  # our caller stalled: skip ticks rather than burst
            skipped = int(late / FRAME_S)
            self.packetizer.advance(skipped * increment)
            pacer.skip(skipped)
            self._stats.send_ticks_skipped += skipped
        while now + TIMER_SLACK_S >= self.next_tick_at(sends=destination is not None):
            audio = self._tick(out, now, media, destination, path)
            pacer.sent(now, audio=audio, waiting=not self._playout.ready())

    def _tick(
        self,
        out: list[tuple[bytes, Address]],
        now: float,
        media: NegotiatedMedia,
        destination: Address | None,
        path: SendPath,
    ) -> bool:
        """Send (or, on hold, skip) one packet; return whether it carried agent audio."""
        increment, stats = path.codec.timestamp_increment, self._stats
        if destination is None:
            frame = self._playout.pop_frame()
            self._collect_marks()
            self._lag.restart()  # on hold: a standing queue is no lag the caller hears
            self.packetizer.advance(increment)
            self._marker_next = True
            stats.frames_discarded_on_hold += frame is not None
            return False
        if (digit := self._dtmf_packet(media, path, increment)) is not None:
            out.append((bytes(digit), destination))
            stats.rtp_sent += 1
            return False
        frame = self._playout.pop_frame()
        for _ in range(self._lag.ticked(self._playout.queued_bytes, now)):
            stats.lag_frames_dropped += self._playout.drop_frame()
        self._collect_marks()
        if frame is None and self.music is not None:
            payload = path.pcm(self._music_frame(path))
            stats.music_sent += 1
        elif frame is None:
            payload = path.silence()
            stats.silence_sent += 1
        else:
            payload = path.frame(frame)
        packet = self.packetizer.packetize(
            payload, payload_type=media.payload_type, samples=increment, marker=self._marker_next
        )
        self._marker_next = False
        out.append((bytes(packet), destination))
        stats.rtp_sent += 1
        return frame is not None

    def _music_frame(self, path: SendPath) -> bytes:
        """Return the loop's next 20 ms at the codec's rate (a new codec gets a new player)."""
        player, rate_hz = self._music_player, path.codec.sample_rate_hz
        if player is None or player.sample_rate_hz != rate_hz:
            assert self.music is not None
            player = self._music_player = self.music.player(rate_hz)
        return player.next_frame()

    def _dtmf_packet(
        self, media: NegotiatedMedia, path: SendPath, increment: int
    ) -> RtpPacket | None:
        """Return this tick's packet when it is the agent's digits' (audio waits meanwhile)."""
        packetizer = self.packetizer
        tick = self.dtmf_out.tick(
            packetizer.timestamp,
            payload_type=media.telephone_event_payload_type,
            clock_rate_hz=media.clock_rate_hz,
            samples=increment,
        )
        if tick is None:
            return None
        if isinstance(tick, DtmfInfoDue):  # sent as SIP INFO; audio goes on as usual
            self._emit(tick)
            return None
        if tick is QUIET:
            return packetizer.packetize(
                path.silence(), payload_type=media.payload_type, samples=increment
            )
        assert isinstance(tick, EventPacket)
        packet = packetizer.stamp(
            tick.payload,
            payload_type=tick.payload_type,
            timestamp=tick.timestamp,
            marker=tick.marker,
        )
        packetizer.advance(increment)  # the RTP clock runs on under the event
        return packet

    def _collect_marks(self) -> None:
        for name in self._playout.played_marks():
            self._emit(MarkPlayed(name))
