"""The media of one call, sans-I/O: caller RTP in, agent frames out; agent audio in, paced RTP out.

Theory of operation:

1. **Source** (`relay.media.source`): the first packet latches the caller's address (symmetric
   RTP: we send where their packets come from, so NAT works) and SSRC; a new SSRC is accepted on
   the marker bit or after ``source_switch_after_s`` of quiet, a new address only after that
   quiet; a re-INVITE that moves the remote's media re-opens the latch. A per-call token bucket
   cuts a flood before parsing. Every refusal is counted.
2. **Receive**: audio goes into the `JitterBuffer`, which lets in-order packets out on arrival
   and waits only for missing ones (its adaptive target delay, over ``jitter_min_delay_ms``);
   telephone-event packets bypass it into the `DtmfReceiver` (each digit once).
   `relay.media.playout.AgentFeed` cuts the audio into 20 ms frames in the agent's format as
   soon as it is here, concealing losses and filling silence.
3. **Send** (`relay.media.sender.RtpSender`): `play` queues the agent's audio (bounded), `mark`
   and `clear` act on the queue, `send_dtmf` queues the agent's digits, and ``rtp_to_send(now)``
   sends one 20 ms packet per tick (codec silence when the queue is empty), paced, with a
   standing lag given back, and the digits first (RFC 4733 events on the audio stream, or a
   `DtmfInfoDue` event per digit for the call to send as SIP INFO). Marks are reported once the
   audio before them is sent.
4. **Hold**: when the negotiated direction does not send, ticks still run (the RTP timestamp
   keeps time, queued audio and marks are consumed, no lag is dropped) but nothing is sent; the
   first packet after resuming has the marker bit. While the remote holds the call, the
   inactivity timer is off; otherwise no accepted RTP for ``inactivity_timeout_s`` gives one
   `MediaTimedOut`.
5. **RTCP** (`relay.media.reports`) goes to RTP port + 1 (the RTP port with ``rtcp_mux``), or
   to where the caller's RTCP comes from.
6. **Transfers.** `start_hold_music` gives the agent's place toward this leg to a loop
   (`RtpSender`, point 6), `stop_hold_music` gives it back. `divert` hands the leg to a bridge
   with another leg (``relay/bridge/sip_bridge.py``): accepted packets (audio and
   telephone-events, after the source latch and the rate limit) queue for `next_diverted`
   instead of reaching the agent (so only SIP INFO digits reach the listener), the agent's queue
   is cleared, its later audio dropped (``agent_bytes_dropped_bridged``), and the sender stops;
   the bridge's packets, stamped with this leg's packetizer, leave through `bridged`. RTCP and
   the inactivity timer go on. Undiverting starts the codec chains afresh.

What the core reports, its events and counters, is `relay.media.call_events`' (importable from
here too). Both directions share the source latch, the negotiated codec and hold state, the RTP
packetizer (one SSRC and clock for RTP and RTCP) and the one timer this core exposes.

Size: over 400 lines, because everything that touches what the two directions share (the latch,
the packetizer, the timer) is here; each part's logic is in its own module (source, sender,
playout, reports, hold_music), and what stays is the wiring.
"""

from __future__ import annotations

from collections import deque

from chalicelib.contracts import MediaFraming
from relay.ids import IdSource
from relay.media.call_events import CallMediaStats, MarkPlayed, MediaEvent, MediaTimedOut
from relay.media.codecs import get_decoder, get_encoder, get_spec
from relay.media.dtmf import DtmfReceiver
from relay.media.dtmf_playout import DtmfInfoDue, DtmfPlayout
from relay.media.hold_music import HoldClip
from relay.media.jitter import JitterBuffer, JitterBufferStats
from relay.media.pipeline import ReceivePath, SendPath, agent_format
from relay.media.playout import TIMER_SLACK_S, AgentFeed, AgentFeedStats
from relay.media.reports import RtcpReporter
from relay.media.rtcp import is_rtcp
from relay.media.rtp import RTP_HEADER_LENGTH, RtpPacket, RtpPacketizer, RtpParseError
from relay.media.sender import RtpSender
from relay.media.source import Address, SourceLatch, SourceVerdict, TokenBucket
from relay.media.stats import ReceptionStatistics
from relay.sip.sdp.offer_answer import NegotiatedMedia

__all__ = [
    "CallMedia",
    "CallMediaStats",
    "DtmfInfoDue",
    "MarkPlayed",
    "MediaEvent",
    "MediaTimedOut",
]

MAX_EVENTS = 256
MAX_DIVERTED = 64  # packets waiting for the bridge: drained after each datagram, so a few at most
NO_ADDRESS = "0.0.0.0"  # RFC 3264 §8.4: never send there


class CallMedia:
    """One call's media core (see the module docstring)."""

    def __init__(
        self,
        negotiated: NegotiatedMedia,
        agent_framing: MediaFraming,
        *,
        ids: IdSource,
        now: float,
        inactivity_timeout_s: float = 30.0,
        jitter_min_delay_ms: int = 0,
        jitter_max_delay_ms: int = 200,
        source_switch_after_s: float = 0.5,
        max_playout_ms: int = 30_000,
        max_packets_per_s: int = 250,
        rtcp_mux: bool = False,
        wall_clock_offset_s: float = 0.0,
    ) -> None:
        """Set up both directions for ``negotiated``; ``now`` anchors the send grid.

        Args:
            jitter_min_delay_ms: the least time a missing caller packet is waited for before it
                is concealed (the jitter buffer's floor; in-order audio is never held back).
            max_packets_per_s: RTP and RTCP datagrams accepted per second (burst: a fifth of
                it); the rest of a flood is dropped before parsing.
            wall_clock_offset_s: Unix time minus ``now``, for the NTP timestamps of RTCP.

        Raises:
            UnsupportedCodecError: the negotiated codec cannot be carried here.
        """
        self.stats = CallMediaStats()
        self.inactivity_timeout_s = inactivity_timeout_s
        self.rtcp_mux = rtcp_mux
        self._jitter_delays_ms = (jitter_min_delay_ms, jitter_max_delay_ms)
        self._agent = agent_format(agent_framing)
        packetizer = RtpPacketizer.from_ids(ids)
        self.reporter = RtcpReporter(
            packetizer, ids=ids, now=now, wall_clock_offset_s=wall_clock_offset_s
        )
        self._events: deque[MediaEvent] = deque()
        self._sender = RtpSender(
            self._agent,
            packetizer,
            now=now,
            max_playout_ms=max_playout_ms,
            stats=self.stats,
            emit=self._emit,
        )
        self._bucket = TokenBucket(max_packets_per_s, max(10, max_packets_per_s / 5), now=now)
        self._latch = SourceLatch(source_switch_after_s, last_heard_at=now)
        self._rtcp_source: Address | None = None
        self._reception: ReceptionStatistics | None = None
        self._idle_since = now
        self._timed_out = False
        self._negotiated = negotiated
        self._diverted: deque[RtpPacket] | None = None
        self._inactivity_on = self._inactivity_armed(negotiated)
        self._set_codec(negotiated)

    def _set_codec(self, negotiated: NegotiatedMedia) -> None:
        spec = self._spec = get_spec(negotiated.codec)
        fmtp = negotiated.fmtp
        low, high = self._jitter_delays_ms
        self._jitter = JitterBuffer(
            spec.clock_rate_hz, min_delay_ms=low, max_delay_ms=high, release_on_arrival=True
        )
        self._receive = ReceivePath(spec, get_decoder(spec.name, fmtp=fmtp), self._agent)
        self._feed = AgentFeed(self._jitter, self._receive, spec)
        self._send = SendPath(spec, get_encoder(spec.name, fmtp=fmtp), self._agent)
        self._dtmf = DtmfReceiver(negotiated.clock_rate_hz)

    def __str__(self) -> str:
        n = self._negotiated
        jitter = f"jitter({self._jitter.target_delay_ms:.0f}ms)"
        receive = f"rtp({n.codec}/{n.receive_payload_type}) -> {jitter} -> {self._receive}"
        return f"{receive} | {self._send} -> rtp({n.codec}/{n.payload_type})"

    @property
    def dtmf_out(self) -> DtmfPlayout:
        """Return the agent's digits for the caller (`send_dtmf`); ``stats`` say what became of them."""
        return self._sender.dtmf_out

    @property
    def jitter_stats(self) -> JitterBufferStats:
        """Return the jitter buffer's accounting of every audio packet (RTCP: `reporter`)."""
        return self._jitter.stats

    @property
    def feed_stats(self) -> AgentFeedStats:
        """Return what became of the caller's audio on its way to the agent."""
        return self._feed.stats

    @property
    def source_counts(self) -> dict[SourceVerdict, int]:
        """Return how many packets each source verdict got: foreign SSRC or address, changes."""
        return self._latch.counts

    @property
    def delays_ms(self) -> tuple[float, float, float]:
        """Return the jitter buffer's target and the receive and send chains' filter delays."""
        return self._jitter.target_delay_ms, self._receive.delay_ms, self._send.delay_ms

    @property
    def destination(self) -> Address | None:
        """Return where RTP goes: the caller's latched source, else the SDP address."""
        if self._latch.address is not None:
            return self._latch.address
        n = self._negotiated
        return None if n.remote_address == NO_ADDRESS else (n.remote_address, n.remote_port)

    # --- caller -> agent -------------------------------------------------------------------

    def receive_rtp(self, data: bytes, source: Address, now: float) -> None:
        """Take a datagram that arrived on the RTP port (RTCP too, when multiplexed)."""
        self.stats.rtp_received += 1
        if is_rtcp(data):
            self.receive_rtcp(data, source, now)
            return
        if not self._bucket.take(now):
            self.stats.rate_limited += 1
            return
        if len(data) < RTP_HEADER_LENGTH:
            self.stats.short += 1
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError:
            self.stats.malformed += 1
            return
        n = self._negotiated
        is_audio = packet.payload_type == n.receive_payload_type
        if not is_audio and packet.payload_type != n.receive_telephone_event_payload_type:
            self.stats.unknown_payload_type += 1
        elif not packet.payload:
            self.stats.empty_payload += 1
        elif self._accept_source(packet, source, now):
            self._take(packet, now, is_audio=is_audio)

    def _accept_source(self, packet: RtpPacket, source: Address, now: float) -> bool:
        previous = self._latch.ssrc
        verdict = self._latch.check(packet.ssrc, source, marker=packet.marker, now=now)
        if verdict.accepted and packet.ssrc != previous:
            self._reception = ReceptionStatistics(packet.ssrc, self._spec.clock_rate_hz)
        return verdict.accepted

    def _take(self, packet: RtpPacket, now: float, *, is_audio: bool) -> None:
        self.stats.rtp_accepted += 1
        if self._reception is not None:
            self._reception.receive(packet, now)
        if self._diverted is not None:
            if len(self._diverted) == MAX_DIVERTED:
                self._diverted.popleft()
                self.stats.bridged_dropped += 1
            self._diverted.append(packet)
            return  # the bridge's, telephone-events too (it forwards them or makes them INFO)
        if not is_audio:
            self._dtmf.receive(packet, now)
            self._drain_dtmf()
            return
        self._jitter.push(packet, now)
        if self._spec.name == "opus":
            self._feed.remember(packet)

    def next_agent_frame(self, now: float) -> bytes | None:
        """Return the next 20 ms frame in the agent's format once it is due, else None.

        Call it until it returns None whenever `get_timer` fires (`AgentFeed` paces it).
        """
        return None if self._diverted is not None else self._feed.pop_frame(now)

    # --- agent -> caller -------------------------------------------------------------------

    def play(self, audio: bytes, now: float) -> int:
        """Queue agent audio of any size in the agent's format; return the bytes dropped.

        Call `rtp_to_send` right after: audio the sender was waiting for leaves at once.
        """
        if self._diverted is not None:  # a bridge has the leg: no agent is heard
            self.stats.agent_bytes_dropped_bridged += len(audio)
            return 0
        return self._sender.play(audio, now)

    def mark(self, name: str) -> None:
        """Place a mark after the audio queued so far; `MarkPlayed` follows once it is sent."""
        self._sender.mark(name)

    def clear(self) -> None:
        """Drop all queued agent audio at once (barge-in); pending marks are reported cleared."""
        self._sender.clear()

    def send_dtmf(self, digits: str, duration_ms: int) -> bool:
        """Queue digits for the caller (`DtmfPlayout`); False when refused (queue full).

        RFC 4733 events on the next ticks when telephone-event was negotiated, else a
        `DtmfInfoDue` event per digit. Call `rtp_to_send` after, as after `play`.
        """
        return self._sender.dtmf_out.queue(digits, duration_ms)

    def rtp_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Return the datagrams due by ``now``: RTP ticks (see `RtpSender`), RTCP when due."""
        out: list[tuple[bytes, Address]] = []
        sender, n = self._sender, self._negotiated
        if self._diverted is None:
            sender.send_due(out, now, media=n, destination=self._sends_to(), path=self._send)
        if now + TIMER_SLACK_S >= self.reporter.next_report_at:
            destination = self._rtcp_destination()
            next_timestamp = sender.packetizer.timestamp
            at = sender.pacer.timestamp_at(now, next_timestamp, self._spec.clock_rate_hz)
            if self._diverted is not None:  # the bridge's packets keep the clock, not the grid
                at = next_timestamp
            report = self.reporter.report(self._reception, now, rtp_timestamp=at)
            if destination is not None:  # rescheduled above, sent or not
                out.append((report, destination))
                self.stats.rtcp_sent += 1
        return out

    # --- transfers: hold music, a bridge to another leg ------------------------------------

    def start_hold_music(self, clip: HoldClip | None) -> None:
        """Play ``clip`` looped toward this leg in the agent's place (None: silence)."""
        self._sender.start_music(clip)

    def stop_hold_music(self) -> None:
        """Give the agent its place toward this leg back."""
        self._sender.stop_music()

    @property
    def negotiated(self) -> NegotiatedMedia:
        """Return the offer/answer in force (a re-INVITE may replace it)."""
        return self._negotiated

    @property
    def packetizer(self) -> RtpPacketizer:
        """Return this leg's outgoing stream: its SSRC, next sequence number and timestamp."""
        return self._sender.packetizer

    @property
    def diverted(self) -> bool:
        """Return whether a bridge has this leg (`divert`)."""
        return self._diverted is not None

    def divert(self, on: bool) -> None:
        """Hand this leg to a bridge (point 6), or take it back from one."""
        if on and self._diverted is None:
            self._diverted = deque()
            self.clear()
        elif not on and self._diverted is not None:
            self._diverted = None
            self._set_codec(self._negotiated)  # fresh chains: what they held is stale
            self._sender.new_talkspurt()

    def next_diverted(self) -> RtpPacket | None:
        """Return the next accepted packet for the bridge, or None."""
        return self._diverted.popleft() if self._diverted else None

    def bridged(self, packet: RtpPacket) -> tuple[bytes, Address] | None:
        """Return a bridge's packet for this leg and where it goes (None on hold: not sent)."""
        destination = self._sends_to()
        if destination is None:
            return None
        self.stats.bridged_sent += 1
        return bytes(packet), destination

    def _sends_to(self) -> Address | None:
        """Return where RTP goes now: None on hold (the direction does not send) or no address."""
        return self.destination if self._negotiated.direction.sends else None

    # --- RTCP ------------------------------------------------------------------------------

    def receive_rtcp(self, data: bytes, source: Address, now: float) -> None:
        """Take a datagram from the RTCP port (or demultiplexed from the RTP port)."""
        latched = self._latch.address
        if not self._bucket.take(now):
            self.stats.rate_limited += 1
        elif latched is not None and source[0] != latched[0]:
            self.stats.rtcp_foreign += 1
        elif self.reporter.receive(data, self._reception, now):
            self._rtcp_source = source

    def goodbye(self) -> tuple[bytes, Address] | None:
        """Return an RTCP BYE for our stream and where to send it (RFC 3550 §6.6), at hang-up."""
        destination = self._rtcp_destination()
        return None if destination is None else (self.reporter.goodbye(), destination)

    def _rtcp_destination(self) -> Address | None:
        if self._rtcp_source is not None:
            return self._rtcp_source
        rtp = self.destination
        if rtp is None or self.rtcp_mux:
            return rtp
        return (rtp[0], rtp[1] + 1)

    # --- control, timers, events -----------------------------------------------------------

    def update(self, negotiated: NegotiatedMedia, now: float) -> None:
        """Apply a new offer/answer (re-INVITE): hold or resume, a new address, a new codec."""
        old, self._negotiated = self._negotiated, negotiated
        if (negotiated.codec, negotiated.fmtp) != (old.codec, old.fmtp):
            self._set_codec(negotiated)
        moved = (negotiated.remote_address, negotiated.remote_port)
        if moved != (old.remote_address, old.remote_port):
            self._latch.reset()
            self._rtcp_source = None
        if self._inactivity_armed(negotiated) and not self._inactivity_on:
            self._idle_since = now
        self._inactivity_on = self._inactivity_armed(negotiated)

    def next_event(self) -> MediaEvent | None:
        """Return the next event (`DtmfReceived`, `MarkPlayed`, `MediaTimedOut`, `DtmfInfoDue`)."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float:
        """Return when to call `handle_timer`, `rtp_to_send` and `next_agent_frame` next."""
        timer = self.reporter.next_report_at
        feed = None
        if self._diverted is None:
            timer = min(timer, self._sender.next_tick_at(sends=self._sends_to() is not None))
            feed = self._feed.get_timer()
        for other in (feed, self._dtmf.get_timer()):
            if other is not None and other < timer:
                timer = other
        if self._inactivity_on and not self._timed_out:
            timer = min(timer, self._inactivity_deadline())
        return timer

    def handle_timer(self, now: float) -> None:
        """Give up on DTMF End packets that never came; detect media inactivity."""
        if self._dtmf.get_timer() is not None:
            self._dtmf.handle_timer(now)
            self._drain_dtmf()
        if not self._inactivity_on or self._timed_out:
            return
        deadline = self._inactivity_deadline()
        if now + TIMER_SLACK_S >= deadline:
            self._timed_out = True
            self._emit(MediaTimedOut(now - deadline + self.inactivity_timeout_s))

    @staticmethod
    def _inactivity_armed(negotiated: NegotiatedMedia) -> bool:
        return negotiated.direction.receives and not negotiated.held_by_remote

    def _inactivity_deadline(self) -> float:
        return max(self._latch.last_heard_at, self._idle_since) + self.inactivity_timeout_s

    def _drain_dtmf(self) -> None:
        while (digit := self._dtmf.next_event()) is not None:
            self._emit(digit)

    def _emit(self, event: MediaEvent) -> None:
        if len(self._events) >= MAX_EVENTS:
            self.stats.events_dropped += 1
            return
        self._events.append(event)
