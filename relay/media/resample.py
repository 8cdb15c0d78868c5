"""PCM16 sample-rate conversion between the wire and the agent (8, 16, 24, 48 kHz) by soxr.

Each call direction owns a `ResampleStream`: the filter keeps its history across chunks, so
chunk boundaries add no clicks, and the output over time equals converting the whole signal
at once. Equal rates pass through untouched.

Latency: libsoxr filters in blocks, so a stream holds audio back and releases it in bursts.
Fed 20 ms chunks at "MQ", the audio held back swings between about 10 and 118 ms for
8 <-> 16 kHz, 16 and 92 ms for 8 -> 48 kHz, 5 and 38 ms for 16 <-> 48 kHz ("HQ": up to
175 ms); `bench.codecs` prints the figures. A paced sender needs that much queued. "MQ" is
the default: flat to 3.7 kHz at 8 kHz ("LQ" is 8 dB down at 3.4 kHz, cutting telephone
speech), stopband 80 dB down (all 16-bit audio needs), and never more held back than "HQ".
"""

from __future__ import annotations

import numpy as np
import soxr

from relay.media.codecs.base import pcm16_samples

SUPPORTED_RATES_HZ = (8000, 16000, 24000, 48000)
DEFAULT_QUALITY = "MQ"
QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


def _check_rate(rate_hz: int) -> None:
    if rate_hz not in SUPPORTED_RATES_HZ:
        supported = ", ".join(map(str, SUPPORTED_RATES_HZ))
        raise ValueError(f"unsupported sample rate {rate_hz} Hz (supported: {supported})")


class ResampleStream:
    """Convert a continuous PCM16 mono stream from one rate to another, chunk by chunk."""

    def __init__(
        self, from_rate_hz: int, to_rate_hz: int, *, quality: str = DEFAULT_QUALITY
    ) -> None:
        """Create a stream; one per call direction.

        Args:
            from_rate_hz: input rate, one of `SUPPORTED_RATES_HZ`.
            to_rate_hz: output rate, one of `SUPPORTED_RATES_HZ`.
            quality: soxr recipe, one of `QUALITIES` (see the module docstring).

        Raises:
            ValueError: a rate or the quality is not supported.
        """
        _check_rate(from_rate_hz)
        _check_rate(to_rate_hz)
        if quality not in QUALITIES:
            known = ", ".join(QUALITIES)
            raise ValueError(f"unknown resampler quality {quality!r} (one of {known})")
        self.from_rate_hz = from_rate_hz
        self.to_rate_hz = to_rate_hz
        self._stream: soxr.ResampleStream | None = None
        if from_rate_hz != to_rate_hz:
            self._stream = soxr.ResampleStream(
                from_rate_hz, to_rate_hz, 1, dtype="int16", quality=quality
            )
        self._flushed = False

    @property
    def pending_samples(self) -> float:
        """Return how many output samples the filter holds back right now."""
        return 0.0 if self._stream is None else float(self._stream.delay())

    def process(self, pcm: bytes) -> bytes:
        """Convert the next chunk (any whole number of samples); may return less, or nothing.

        Raises:
            ValueError: half a sample, or the stream was already flushed.
        """
        samples = pcm16_samples(pcm)
        if self._flushed:
            raise ValueError("resample stream already flushed")
        if self._stream is None:
            return bytes(pcm)
        return _convert(self._stream, samples, last=False)

    def flush(self) -> bytes:
        """Return the audio still held back, at the end of the stream; no input may follow."""
        if self._flushed or self._stream is None:
            self._flushed = True
            return b""
        self._flushed = True
        return _convert(self._stream, np.zeros(0, dtype=np.int16), last=True)


def _convert(stream: soxr.ResampleStream, samples: np.ndarray, *, last: bool) -> bytes:
    converted: np.ndarray = stream.resample_chunk(samples, last=last)
    return converted.astype("<i2", copy=False).tobytes()


def resample(
    pcm: bytes, from_rate_hz: int, to_rate_hz: int, *, quality: str = DEFAULT_QUALITY
) -> bytes:
    """Convert a whole PCM16 signal at once (tests, prompts, files); not for streams."""
    stream = ResampleStream(from_rate_hz, to_rate_hz, quality=quality)
    return stream.process(pcm) + stream.flush()
