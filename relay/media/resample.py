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


# --- the call path's resampler: a short polyphase FIR, a couple of ms of delay -------------

FIR_HALF_WIDTH = 16
"""Zero crossings of the kernel on each side, counted at the lower rate: the delay is
``FIR_HALF_WIDTH / lower_rate_hz`` (2 ms at 8 kHz, 1 ms at 16 kHz)."""
FIR_KAISER_BETA = 5.65  # about 60 dB down in the stopband (Kaiser: beta = 0.1102 (A - 8.7))
FIR_CUTOFF = 0.975
"""Cutoff as a fraction of the lower rate's Nyquist: 3.9 kHz at 8 kHz. With the transition band
the kernel length allows, 8 kHz audio is flat to about 3.4 kHz and what would alias is 60 dB down
above 4.4 kHz; the 4.0-4.4 kHz sliver folds onto 3.6-4.0 kHz, where telephone speech has little."""
_PLAN_CACHE_SIZE = 8


class PolyphaseResampleStream:
    """Convert a continuous PCM16 mono stream by a rational ratio with a short FIR, chunk by chunk.

    The call path's resampler (`ResampleStream` is for quality work): a Kaiser-windowed sinc
    split into ``L`` phases, applied directly (no blocks), so every output sample leaves as soon
    as the input it needs has arrived. It adds a constant `delay_ms` (the kernel's group delay:
    2 ms when one side is 8 kHz, 1 ms at 16 kHz) and holds no audio back: ``n`` input samples
    give ``n * to_rate_hz / from_rate_hz`` output samples (rounded, the remainder carried), so a
    20 ms chunk in is a 20 ms chunk out. The state between chunks is the last few input
    samples and the position in the phase cycle.
    """

    def __init__(self, from_rate_hz: int, to_rate_hz: int) -> None:
        """Create a stream; one per call direction.

        Raises:
            ValueError: a rate is not one of `SUPPORTED_RATES_HZ`.
        """
        _check_rate(from_rate_hz)
        _check_rate(to_rate_hz)
        self.from_rate_hz = from_rate_hz
        self.to_rate_hz = to_rate_hz
        common = np.gcd(from_rate_hz, to_rate_hz)
        self._up = to_rate_hz // int(common)  # L
        self._down = from_rate_hz // int(common)  # M
        self._phases = _kernel_phases(self._up, self._down)
        self._taps = self._phases.shape[1]
        self._history = np.zeros(self._taps - 1, dtype=np.float32)
        self._next_output = 0  # n, reduced into [0, L)
        self._consumed = 0  # input samples consumed, reduced along with n (so b(n) - I holds)
        self._plans: dict[tuple[int, int, int], _Plan] = {}

    def __str__(self) -> str:
        return f"resample {_khz(self.from_rate_hz)}->{_khz(self.to_rate_hz)}"

    @property
    def delay_ms(self) -> float:
        """Return the group delay the filter adds, in milliseconds (0 when rates are equal)."""
        if self._up == self._down:
            return 0.0
        high_rate_hz = self._up * self.from_rate_hz
        return float((self._up * self._taps - 1) / 2 / high_rate_hz * 1000)

    def process(self, pcm: bytes) -> bytes:
        """Convert the next chunk (any whole number of samples).

        Raises:
            ValueError: half a sample.
        """
        samples = pcm16_samples(pcm)
        if self._up == self._down:
            return bytes(pcm)
        x = np.concatenate((self._history, samples.astype(np.float32)))
        plan = self._plan(len(samples))
        out = np.empty(plan.count, dtype=np.float32)
        taps, step = self._taps, self._down
        for first, start, count, phase in plan.parts:
            if step == 1:  # consecutive windows: a correlation, one C loop
                out[first :: self._up] = np.correlate(x[start : start + count + taps - 1], phase)
            else:  # every M-th window: gather the rows, then one matrix-vector product
                rows = np.ndarray((count, taps), np.float32, x, start * 4, (step * 4, 4))
                out[first :: self._up] = np.ascontiguousarray(rows) @ phase
        self._history = x[len(x) - taps + 1 :]
        self._advance(len(samples), plan.count)
        np.rint(out, out=out)
        np.clip(out, -32768, 32767, out=out)
        return out.astype("<i2").tobytes()

    def reset(self) -> None:
        """Forget the history (as if silence had been fed for a while), keeping the phase."""
        self._history[:] = 0

    def _advance(self, consumed: int, produced: int) -> None:
        n = self._next_output + produced
        cycles = n // self._up
        self._next_output = n - cycles * self._up
        self._consumed += consumed - cycles * self._down

    def _plan(self, length: int) -> _Plan:
        key = (length, self._next_output, self._consumed)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.clear()
            plan = self._plans[key] = _make_plan(
                self._phases, self._up, self._down, self._next_output, self._consumed, length
            )
        return plan


class _Plan:
    """Which windows each phase reads for one chunk: computed once per chunk shape."""

    __slots__ = ("count", "parts")

    def __init__(self, count: int, parts: list[tuple[int, int, int, np.ndarray]]) -> None:
        self.count = count
        self.parts = parts


def _make_plan(
    phases: np.ndarray, up: int, down: int, n0: int, consumed: int, length: int
) -> _Plan:
    # Output n reads inputs up to b(n) = floor(n * M / L) with phase p = n * M mod L; its window
    # starts at index b(n) - consumed of the history-prefixed chunk. Outputs run while their
    # newest input is in hand: n * M < (consumed + length) * L.
    end = -(-(consumed + length) * up // down)
    count = max(0, end - n0)
    parts = []
    for first in range(min(up, count)):
        n = n0 + first
        outputs = len(range(first, count, up))
        parts.append((first, n * down // up - consumed, outputs, phases[n * down % up]))
    return _Plan(count, parts)


def _kernel_phases(up: int, down: int) -> np.ndarray:
    """Return the L phases of the windowed-sinc prototype, each reversed and summing to 1."""
    ratio = max(up, down)
    taps = -(-2 * FIR_HALF_WIDTH * ratio // up)
    length = taps * up
    centre = (length - 1) / 2
    cutoff = FIR_CUTOFF / (2 * ratio)  # cycles per sample at the up-sampled rate
    position = np.arange(length) - centre
    prototype = np.sinc(2 * cutoff * position) * np.kaiser(length, FIR_KAISER_BETA)
    phases = prototype.reshape(taps, up).T  # phases[p][j] = h[p + j L]
    phases = phases / phases.sum(axis=1, keepdims=True)
    return np.ascontiguousarray(phases[:, ::-1], dtype=np.float32)


def _khz(rate_hz: int) -> str:
    return f"{rate_hz // 1000}k"
