"""G.722 at 64 kbit/s over the PyPI ``G722`` package (ITU-T G.722; RFC 3551 §4.5.2).

G.722 samples at 16 kHz but its RTP clock runs at 8000 Hz, an error in the original RFC 1890
kept for compatibility (RFC 3551 §4.5.2): a 20 ms frame is 320 samples and 160 bytes, and the
RTP timestamp still advances by 160. `CodecSpec.timestamp_increment` carries that difference.

The encoder and decoder are ADPCM with state, so each object wraps its own ``G722.G722``.
"""

from __future__ import annotations

import G722 as _g722  # the PyPI package (a C extension); the registry imports us lazily
import numpy as np

from relay.media.codecs.base import FadeConcealer, pcm16_samples

SAMPLE_RATE_HZ = 16000
BIT_RATE_BPS = 64000  # mode 1 (G.722 §1.2); 56/48 kbit/s modes are not used over RTP
SAMPLES_PER_FRAME = 320  # 20 ms
PAYLOAD_BYTES_PER_FRAME = 160  # two samples per byte at 64 kbit/s


class G722Encoder:
    """G.722 64 kbit/s encoder: PCM16 at 16 kHz in, 1 byte per 2 samples out."""

    def __init__(self) -> None:
        """Create an encoder with fresh ADPCM state."""
        self._codec = _g722.G722(SAMPLE_RATE_HZ, BIT_RATE_BPS)

    def encode(self, pcm: bytes) -> bytes:
        """Encode PCM16 at 16 kHz (an even number of samples) to a G.722 payload."""
        samples = pcm16_samples(pcm)
        if len(samples) % 2:
            raise ValueError(f"G.722 encodes sample pairs, got {len(samples)} samples")
        return bytes(self._codec.encode(samples))


class G722Decoder:
    """G.722 64 kbit/s decoder with repeat-and-fade concealment."""

    def __init__(self) -> None:
        """Create a decoder with fresh ADPCM state."""
        self._codec = _g722.G722(SAMPLE_RATE_HZ, BIT_RATE_BPS)
        self._concealer = FadeConcealer(SAMPLE_RATE_HZ)

    def decode(self, payload: bytes) -> bytes:
        """Decode a G.722 payload to PCM16 at 16 kHz (two samples per byte)."""
        pcm = np.frombuffer(self._codec.decode(payload), dtype=np.int16)
        self._concealer.remember(pcm)
        return pcm.tobytes()

    def conceal(self, samples: int, *, next_payload: bytes | None = None) -> bytes:
        """Repeat the last audio, fading to silence over 60 ms.

        The ADPCM state is left as it was: G.722 Appendix III/IV concealment, which also
        adapts the decoder state, is not in the library.
        """
        return self._concealer.conceal(samples)
