"""What every codec offers: `CodecSpec`, the `Encoder`/`Decoder` protocols, fade concealment.

PCM is 16-bit signed little-endian mono at the codec's sample rate (`CodecSpec.sample_rate_hz`),
passed as `bytes`. Payloads are RTP payloads as they go on the wire. Codec objects keep state
(predictors, filter memories, the last frame for concealment), so each call direction gets its
own encoder and decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

FRAME_MS = 20  # our packetization time (RFC 3551 §4.2: 20 ms default for frame-based codecs)
CONCEAL_FADE_MS = 60  # repeated audio fades to silence over this long (ITU-T G.711 App. I: 60 ms)

Pcm16 = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """One codec as SDP names it and as the media path frames it."""

    name: str
    """Encoding name as in the SDP rtpmap (RFC 8866 §6.6), e.g. ``PCMU`` or ``opus``."""
    payload_type: int | None
    """Static RTP payload type (RFC 3551 §6), or None for a dynamic one (96-127)."""
    clock_rate_hz: int
    """RTP timestamp clock rate, as in the rtpmap; G.722's is 8000 (RFC 3551 §4.5.2)."""
    sample_rate_hz: int
    """Rate of the PCM the encoder takes and the decoder gives."""
    channels: int
    """Channel count in the rtpmap; opus says 2 even for mono (RFC 7587 §7). PCM is mono."""
    samples_per_frame: int
    """PCM samples in one 20 ms frame at `sample_rate_hz`."""
    default_fmtp: str | None = None
    """Format parameters we offer (the a=fmtp value), or None."""

    @property
    def rtpmap(self) -> str:
        """Return the a=rtpmap encoding part, e.g. ``PCMU/8000`` or ``opus/48000/2``."""
        base = f"{self.name}/{self.clock_rate_hz}"
        return base if self.channels == 1 else f"{base}/{self.channels}"

    @property
    def timestamp_increment(self) -> int:
        """Return how far the RTP timestamp advances per 20 ms frame."""
        return self.clock_rate_hz * FRAME_MS // 1000

    @property
    def frame_bytes(self) -> int:
        """Return the size of one 20 ms frame of PCM16."""
        return self.samples_per_frame * 2


class Encoder(Protocol):
    """Turns PCM16 at the codec's sample rate into RTP payloads."""

    def encode(self, pcm: bytes) -> bytes:
        """Encode one frame (normally 20 ms) of PCM16 and return the RTP payload."""
        ...


class Decoder(Protocol):
    """Turns RTP payloads into PCM16 at the codec's sample rate, and fills gaps."""

    def decode(self, payload: bytes) -> bytes:
        """Decode one RTP payload and return its PCM16.

        Raises:
            ValueError: the payload is malformed for this codec (drop and count it).
        """
        ...

    def conceal(self, samples: int, *, next_payload: bytes | None = None) -> bytes:
        """Return `samples` samples of PCM16 standing in for a lost packet.

        Args:
            samples: how many samples the lost packet held.
            next_payload: the packet after the loss, if already received; Opus recovers
                the lost audio from its in-band FEC (RFC 7587 §3.3), others ignore it.
        """
        ...


def parse_fmtp(fmtp: str | None) -> dict[str, str]:
    """Parse an a=fmtp value (``"minptime=10;useinbandfec=1"``) into lowercase keys."""
    params: dict[str, str] = {}
    for item in (fmtp or "").split(";"):
        key, _, value = item.strip().partition("=")
        if key:
            params[key.strip().lower()] = value.strip()
    return params


def pcm16_samples(pcm: bytes) -> Pcm16:
    """View PCM16 bytes as samples without copying.

    Raises:
        ValueError: the buffer holds half a sample.
    """
    if len(pcm) % 2:
        raise ValueError(f"PCM16 must be whole 16-bit samples, got {len(pcm)} bytes")
    return np.frombuffer(pcm, dtype="<i2")


class FadeConcealer:
    """Conceal losses by repeating the last decoded audio while fading it to silence.

    A simple form of ITU-T G.711 Appendix I: the last `samples` of good audio are repeated,
    attenuated linearly to zero over `CONCEAL_FADE_MS`; longer losses give silence. The next
    good frame resets the fade. Used by the waveform codecs (G.711, G.722), whose decoders
    have no concealment of their own.
    """

    def __init__(self, sample_rate_hz: int) -> None:
        """Create a concealer for PCM at `sample_rate_hz`."""
        self._fade_samples = sample_rate_hz * CONCEAL_FADE_MS // 1000
        self._last: Pcm16 = np.zeros(0, dtype=np.int16)
        self._faded = 0  # samples concealed since the last good frame

    def remember(self, pcm: Pcm16) -> None:
        """Keep the latest good audio (no copy: decoders hand over fresh arrays)."""
        self._last = pcm
        self._faded = 0

    def conceal(self, samples: int) -> bytes:
        """Return `samples` samples of faded repetition (silence once the fade is done)."""
        if samples < 0:
            raise ValueError(f"cannot conceal {samples} samples")
        start = self._faded
        self._faded += samples
        if start >= self._fade_samples or len(self._last) == 0:
            return bytes(2 * samples)
        position = start + np.arange(samples)
        source = self._last[position % len(self._last)].astype(np.float32)
        gain = 1.0 - position.astype(np.float32) / self._fade_samples
        np.clip(gain, 0.0, 1.0, out=gain)
        return (source * gain).astype("<i2").tobytes()
