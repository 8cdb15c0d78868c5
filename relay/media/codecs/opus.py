"""Opus over ``opuslib`` and Debian's ``libopus0`` (RFC 6716; RTP payload RFC 7587).

We encode mono at 48 kHz in 20 ms frames with in-band FEC on, tuned by the expected packet
loss, and DTX off (a silent caller must still send packets, or our media-inactivity timer
and the peer's would fire). Decoding accepts any packet duration up to 120 ms and yields
48 kHz mono. A lost packet is rebuilt from the FEC carried in the next one when the jitter
buffer has it (``conceal(..., next_payload=...)``), otherwise by the decoder's PLC.
"""

from __future__ import annotations

import opuslib
import opuslib.api.ctl
import opuslib.api.encoder
import opuslib.api.info

from relay.media.codecs.base import parse_fmtp, pcm16_samples

SAMPLE_RATE_HZ = 48000  # RFC 7587 §4.1: the RTP clock is always 48 kHz
SAMPLES_PER_FRAME = 960  # 20 ms
ENCODER_FRAME_SAMPLES = frozenset({120, 240, 480, 960, 1920, 2880})  # 2.5-60 ms (RFC 6716 §2.1.4)
MAX_PACKET_SAMPLES = 5760  # 120 ms, the longest Opus packet (RFC 6716 §3.2.5)
PLC_GRANULE_SAMPLES = 120  # 2.5 ms: concealment and FEC sizes are multiples (opus_decode)
DEFAULT_BITRATE_BPS = 32000  # wideband speech with room for the FEC copy
MIN_BITRATE_BPS = 6000  # RFC 7587 §6.1: maxaveragebitrate ranges 6000-510000
DEFAULT_PACKET_LOSS_PERCENT = 10
MAX_PAYLOAD_BYTES = 4000  # the output buffer libopus documents as always enough


class OpusEncoder:
    """Opus encoder: 20 ms of 48 kHz mono PCM16 in, one RTP payload out."""

    def __init__(
        self,
        *,
        bitrate_bps: int = DEFAULT_BITRATE_BPS,
        packet_loss_percent: int = DEFAULT_PACKET_LOSS_PERCENT,
        fec: bool = True,
    ) -> None:
        """Create a VoIP-tuned encoder.

        Args:
            bitrate_bps: target bit rate (the peer's ``maxaveragebitrate`` caps it).
            packet_loss_percent: expected loss; more makes FEC spend more bits.
            fec: whether to carry in-band FEC (the previous frame, coarsely, RFC 7587 §3.3).
        """
        self._encoder = opuslib.Encoder(SAMPLE_RATE_HZ, 1, opuslib.APPLICATION_VOIP)
        self._encoder.bitrate = bitrate_bps
        self._encoder.signal = opuslib.SIGNAL_VOICE
        # opuslib's `inband_fec` setter drops its value, so set FEC (and DTX) by ctl directly.
        self._ctl(opuslib.api.ctl.set_inband_fec, int(fec))
        self._ctl(opuslib.api.ctl.set_dtx, 0)
        self.packet_loss_percent = packet_loss_percent

    @classmethod
    def from_fmtp(
        cls, fmtp: str | None, *, packet_loss_percent: int = DEFAULT_PACKET_LOSS_PERCENT
    ) -> OpusEncoder:
        """Create an encoder for the peer's a=fmtp (RFC 7587 §6.1).

        ``maxaveragebitrate`` caps our bit rate; ``useinbandfec=0`` (the peer will not use
        FEC) turns FEC off so its bits go to the audio. Other parameters change nothing we
        send: we always send mono, constant frame length, no DTX.
        """
        params = parse_fmtp(fmtp)
        bitrate_bps = DEFAULT_BITRATE_BPS
        if params.get("maxaveragebitrate", "").isdigit():
            bitrate_bps = max(MIN_BITRATE_BPS, min(bitrate_bps, int(params["maxaveragebitrate"])))
        return cls(
            bitrate_bps=bitrate_bps,
            packet_loss_percent=packet_loss_percent,
            fec=params.get("useinbandfec") != "0",
        )

    @property
    def fec(self) -> bool:
        """Return whether in-band FEC is on."""
        return bool(self._ctl(opuslib.api.ctl.get_inband_fec))

    @property
    def dtx(self) -> bool:
        """Return whether DTX is on (never, by design)."""
        return bool(self._ctl(opuslib.api.ctl.get_dtx))

    @property
    def packet_loss_percent(self) -> int:
        """Return the loss the encoder plans its FEC for."""
        value: int = self._encoder.packet_loss_perc
        return value

    @packet_loss_percent.setter
    def packet_loss_percent(self, percent: int) -> None:
        """Set the expected loss (0-100), e.g. from RTCP receiver reports."""
        if not 0 <= percent <= 100:
            raise ValueError(f"packet loss must be 0-100 %, got {percent}")
        self._encoder.packet_loss_perc = percent

    def encode(self, pcm: bytes) -> bytes:
        """Encode PCM16 at 48 kHz (2.5, 5, 10, 20, 40 or 60 ms of it) to an Opus payload.

        Raises:
            ValueError: the PCM is not one of those frame lengths.
        """
        samples = len(pcm16_samples(pcm))
        if samples not in ENCODER_FRAME_SAMPLES:
            raise ValueError(f"Opus encodes 2.5-60 ms frames at 48 kHz, got {samples} samples")
        try:
            payload: bytes = opuslib.api.encoder.encode(
                self._encoder.encoder_state, pcm, samples, MAX_PAYLOAD_BYTES
            )
        except opuslib.OpusError as error:
            raise ValueError(f"Opus encode failed: {_describe(error)}") from error
        return payload

    def _ctl(self, request: object, value: int | None = None) -> int:
        result: int = opuslib.api.encoder.encoder_ctl(self._encoder.encoder_state, request, value)
        return result


class OpusDecoder:
    """Opus decoder to 48 kHz mono, with FEC recovery and PLC."""

    def __init__(self) -> None:
        """Create a decoder with fresh state."""
        self._decoder = opuslib.Decoder(SAMPLE_RATE_HZ, 1)

    def decode(self, payload: bytes) -> bytes:
        """Decode one Opus payload (up to 120 ms) to PCM16 at 48 kHz.

        Raises:
            ValueError: libopus rejects the packet (empty, or corrupt).
        """
        if not payload:
            raise ValueError("empty Opus payload")
        return self._run(payload, MAX_PACKET_SAMPLES, fec=False)

    def conceal(self, samples: int, *, next_payload: bytes | None = None) -> bytes:
        """Rebuild `samples` lost samples from `next_payload`'s FEC, else by PLC.

        libopus conceals in 2.5 ms steps, so the count is rounded up to one and the
        output trimmed. Without FEC in `next_payload` libopus falls back to PLC itself.
        """
        if samples <= 0:
            return b""
        granules = -(-samples // PLC_GRANULE_SAMPLES)
        size = min(granules * PLC_GRANULE_SAMPLES, MAX_PACKET_SAMPLES)
        if next_payload:
            pcm = self._run(next_payload, size, fec=True)
        else:
            pcm = self._run(b"", size, fec=False)  # length 0 asks libopus for PLC
        pcm = pcm[: 2 * samples]
        return pcm + bytes(2 * samples - len(pcm))

    def _run(self, data: bytes, frame_samples: int, *, fec: bool) -> bytes:
        try:
            pcm: bytes = self._decoder.decode(data, frame_samples, decode_fec=fec)
        except opuslib.OpusError as error:
            raise ValueError(f"Opus decode failed: {_describe(error)}") from error
        return pcm


def _describe(error: Exception) -> str:
    # OpusError.__str__ itself fails when opuslib built it from a message, not a code.
    code = getattr(error, "code", None)
    if isinstance(code, int):
        text: bytes = opuslib.api.info.strerror(code)
        return text.decode(errors="replace")
    return repr(error.args)
