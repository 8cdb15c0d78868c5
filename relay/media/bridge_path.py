"""One direction of a bridge between two SIP legs, sans-I/O: leg A's packets, stamped for leg B.

A transfer that bridges (a cold transfer by INVITE, a warm one by BRIDGE or a failed REFER)
joins the caller's leg and the target's leg in the relay. Each direction is one `BridgePath`:
a packet the source leg accepted (``CallMedia.divert``: after its source latch and rate limit)
goes in, packets for the target leg come out, at once, in the callback that brought it. Nothing
waits here beyond what a codec change needs to cut whole 20 ms frames.

Theory of operation:

1. **Passthrough** when both legs speak the same codec (for AMR-WB, with the same format
   parameters: octet-aligned or not changes the payload). The payload goes on untouched; the
   header is the target leg's (RFC 3550 §7.1, a translator that re-stamps): its SSRC, the source's
   sequence number plus an offset and its timestamp plus an offset, both fixed when the source is
   first seen (or its SSRC changes: the marker bit then tells the target of the new talkspurt).
   The offsets start where the target leg's own stream was (its packetizer: music or silence went
   before), so the target sees one stream, and a loss or a reordering upstream stays visible as
   the same gap or order downstream, for its jitter buffer to handle.
2. **Transcoding** otherwise: decode with the source's codec, resample (the call path's polyphase
   resampler, a couple of ms of delay, no audio held back), cut into 20 ms frames at the target's
   rate and encode with the target's codec. A packet older than the last one decoded is dropped
   (a stateful decoder cannot go back), a payload that does not decode too, each counted. The
   output timestamps follow the input's, converted between the two RTP clocks (G.722's is 8000
   for 16 kHz audio, RFC 3551 §4.5.2; opus' 48000, RFC 7587 §4.1), so a loss upstream is a
   timestamp gap downstream; sequence numbers are the target stream's own, consecutive.
3. **DTMF** (RFC 4733): a telephone-event goes on as a telephone-event when the target leg
   negotiated one, with its payload type, the mapped timestamp (the event's start) and its
   duration converted to the target's clock. Without it, the path's own `DtmfReceiver` turns
   the events into digits (each once, on its End packet), which `take_digits` hands to the
   bridge to send as SIP INFO (``relay/bridge/sip_bridge.py``). The other way, a digit that
   reached the source leg as SIP INFO becomes the target's telephone-events (`digit_packets`,
   all at once: the bridge has no clock to pace them by) or SIP INFO again.

Each output packet is built by the target leg's `RtpPacketizer` (its SSRC, its counts for RTCP),
whose next sequence number and timestamp are moved past what was forwarded, so that the leg's
own sender continues the stream without a jump back once the bridge ends.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from relay.media.codecs import CodecSpec, get_decoder, get_encoder, get_spec
from relay.media.dtmf import DtmfParseError, DtmfReceiver, DtmfSender, TelephoneEvent
from relay.media.resample import PolyphaseResampleStream
from relay.media.rtp import RtpPacket, RtpPacketizer
from relay.media.seq import seq_diff, seq_lt, timestamp_diff
from relay.sip.sdp.offer_answer import NegotiatedMedia

__all__ = ["BridgePath", "BridgePathStats", "is_passthrough"]

MAX_DURATION = 0xFFFF  # RFC 4733 §2.3: 16-bit duration field
MAX_PENDING_DIGITS = 32


@dataclass(slots=True)
class BridgePathStats:
    """What became of the packets one direction of a bridge was given."""

    forwarded: int = 0
    """Packets out (a transcoded packet may give none or several)."""
    events_forwarded: int = 0
    events_not_negotiated: int = 0
    """Telephone-events the target did not negotiate: sent as SIP INFO by the bridge instead."""
    late_dropped: int = 0
    decode_errors: int = 0
    partial_dropped_samples: int = 0
    """Audio short of a frame thrown away at a gap in the source's timestamps (transcoding)."""


def is_passthrough(source: NegotiatedMedia, target: NegotiatedMedia) -> bool:
    """Tell whether payloads can go from one leg to the other untouched (rule 1)."""
    if source.codec.lower() != target.codec.lower():
        return False
    return source.codec.lower() != "amr-wb" or (
        source.fmtp_parameters() == target.fmtp_parameters()
    )


class BridgePath:
    """Source leg's accepted packets in, target leg's packets out (see the module docstring)."""

    def __init__(
        self, source: NegotiatedMedia, target: NegotiatedMedia, packetizer: RtpPacketizer
    ) -> None:
        """Bridge ``source``'s packets to ``target``, stamped by the target leg's ``packetizer``.

        Raises:
            UnsupportedCodecError: a codec that must be transcoded is not available here.
        """
        self.source, self.target = source, target
        self.passthrough = is_passthrough(source, target)
        self.stats = BridgePathStats()
        self._packetizer = packetizer
        self._source_ssrc: int | None = None
        self._seq_offset = 0
        self._ts_in = self._ts_out = 0  # the anchor: a source timestamp and the one it maps to
        self._marker_next = True
        self._last_seq: int | None = None
        if not self.passthrough:
            self._transcoder = _Transcoder(source, target)
        self._digits_in = DtmfReceiver(source.clock_rate_hz)
        self._digits: deque[tuple[str, int]] = deque(maxlen=MAX_PENDING_DIGITS)

    def take_digits(self) -> list[tuple[str, int]]:
        """Return the digits (and their ms) to send as SIP INFO: the target has no telephone-event."""
        digits = list(self._digits)
        self._digits.clear()
        return digits

    def digit_packets(self, digit: str, duration_ms: int) -> list[RtpPacket]:
        """Return the target's telephone-events for a digit (empty: the target has none)."""
        target_type = self.target.telephone_event_payload_type
        if target_type is None:
            return []
        sender = DtmfSender(
            self._packetizer,
            payload_type=target_type,
            clock_rate_hz=self.target.clock_rate_hz,
            packet_interval_ms=20,
        )
        packets = sender.packets(digit, duration_ms=duration_ms)
        self.stats.events_forwarded += len(packets)
        return packets

    def forward(self, packet: RtpPacket, now: float) -> list[RtpPacket]:
        """Return the target leg's packets for one of the source leg's, which came at ``now``."""
        if packet.ssrc != self._source_ssrc:
            self._anchor(packet)
        if packet.payload_type == self.source.receive_telephone_event_payload_type:
            return self._event(packet, now)
        if self.passthrough:
            return [self._restamp(packet, self.target.payload_type, packet.payload)]
        if self._last_seq is not None and not seq_lt(self._last_seq, packet.sequence_number):
            self.stats.late_dropped += 1
            return []
        self._last_seq = packet.sequence_number
        try:
            frames = self._transcoder.frames(packet.payload, self._map(packet.timestamp))
        except ValueError:
            self.stats.decode_errors += 1
            return []
        self.stats.partial_dropped_samples = self._transcoder.partial_dropped_samples
        return [self._stamp(payload, self.target.payload_type, ts) for payload, ts in frames]

    def _anchor(self, packet: RtpPacket) -> None:
        """Start (again) from this source packet: offsets to where the target stream is now."""
        self._source_ssrc = packet.ssrc
        self._seq_offset = seq_diff(self._packetizer.sequence_number, packet.sequence_number)
        self._ts_in, self._ts_out = packet.timestamp, self._packetizer.timestamp
        self._marker_next, self._last_seq = True, None
        if not self.passthrough:
            self._transcoder.restart()

    def _map(self, timestamp: int) -> int:
        """Return the target timestamp of a source one (the clocks may differ)."""
        delta = timestamp_diff(timestamp, self._ts_in)
        ratio = self.target.clock_rate_hz / self.source.clock_rate_hz
        return (self._ts_out + round(delta * ratio)) & 0xFFFFFFFF

    def _event(self, packet: RtpPacket, now: float) -> list[RtpPacket]:
        target_type = self.target.telephone_event_payload_type
        if target_type is None:
            self.stats.events_not_negotiated += 1
            self._digits_in.receive(packet, now)
            while (digit := self._digits_in.next_event()) is not None:
                self._digits.append((digit.digit, round(digit.duration_ms)))
            return []
        try:
            event = TelephoneEvent.parse(packet.payload)
        except DtmfParseError:
            self.stats.decode_errors += 1
            return []
        ratio = self.target.clock_rate_hz / self.source.clock_rate_hz
        duration = min(MAX_DURATION, round(event.duration * ratio))
        payload = bytes(
            TelephoneEvent(event=event.event, end=event.end, volume=event.volume, duration=duration)
        )
        self.stats.events_forwarded += 1
        if self.passthrough:
            return [self._restamp(packet, target_type, payload)]
        return [self._stamp(payload, target_type, self._map(packet.timestamp), packet.marker)]

    def _restamp(self, packet: RtpPacket, payload_type: int, payload: bytes) -> RtpPacket:
        """Rule 1: the source's sequence and timestamp plus the offsets, in the target's SSRC."""
        packetizer = self._packetizer
        ahead = packetizer.sequence_number
        packetizer.sequence_number = (packet.sequence_number + self._seq_offset) & 0xFFFF
        out = self._stamp(payload, payload_type, self._map(packet.timestamp), packet.marker)
        if seq_lt(packetizer.sequence_number, ahead):  # a reordered packet: the stream stays ahead
            packetizer.sequence_number = ahead
        return out

    def _stamp(
        self, payload: bytes, payload_type: int, timestamp: int, marker: bool = False
    ) -> RtpPacket:
        packetizer = self._packetizer
        packet = packetizer.stamp(
            payload,
            payload_type=payload_type,
            timestamp=timestamp,
            marker=marker or self._marker_next,
        )
        self._marker_next = False
        following = (timestamp + self.target_increment) & 0xFFFFFFFF
        if timestamp_diff(following, packetizer.timestamp) > 0:
            packetizer.timestamp = following
        self.stats.forwarded += 1
        return packet

    @property
    def target_increment(self) -> int:
        """Return the target's timestamp units in 20 ms."""
        return self.target.clock_rate_hz // 50


class _Transcoder:
    """Source payloads -> PCM -> target rate -> 20 ms target payloads, with their timestamps."""

    def __init__(self, source: NegotiatedMedia, target: NegotiatedMedia) -> None:
        self._in: CodecSpec = get_spec(source.codec)
        self._out: CodecSpec = get_spec(target.codec)
        self._decoder = get_decoder(self._in.name, fmtp=source.fmtp)
        self._encoder = get_encoder(self._out.name, fmtp=target.fmtp)
        self._resampler = PolyphaseResampleStream(self._in.sample_rate_hz, self._out.sample_rate_hz)
        self._units_per_sample = self._out.clock_rate_hz / self._out.sample_rate_hz
        self._buffer = bytearray()
        self._buffer_ts: int | None = None  # the target timestamp of the buffer's first sample
        self.partial_dropped_samples = 0

    def restart(self) -> None:
        """Forget the buffered audio (a new source stream)."""
        self.partial_dropped_samples += len(self._buffer) // 2
        self._buffer.clear()
        self._buffer_ts = None

    def frames(self, payload: bytes, timestamp: int) -> list[tuple[bytes, int]]:
        """Return the whole target frames a source payload (at ``timestamp``, mapped) completes.

        Raises:
            ValueError: the payload does not decode.
        """
        pcm = self._resampler.process(self._decoder.decode(payload))
        expected = self._expected_ts()
        if (
            expected is None
            or abs(timestamp_diff(expected, timestamp)) >= self._out.timestamp_increment
        ):
            self.restart()  # a gap (loss, a pause): start a new frame at this packet
            self._buffer_ts = timestamp
        self._buffer += pcm
        out: list[tuple[bytes, int]] = []
        size = self._out.frame_bytes
        while len(self._buffer) >= size:
            assert self._buffer_ts is not None
            out.append((self._encoder.encode(bytes(self._buffer[:size])), self._buffer_ts))
            del self._buffer[:size]
            self._buffer_ts = (self._buffer_ts + self._out.timestamp_increment) & 0xFFFFFFFF
        return out

    def _expected_ts(self) -> int | None:
        """Return the timestamp the next source audio should carry (after what is buffered)."""
        if self._buffer_ts is None:
            return None
        buffered = round(len(self._buffer) // 2 * self._units_per_sample)
        return (self._buffer_ts + buffered) & 0xFFFFFFFF
