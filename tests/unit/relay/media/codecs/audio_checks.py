"""Signal measurements shared by the codec and resampler tests (no pytest fixtures here)."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np

VECTORS = Path(__file__).resolve().parents[4] / "vectors" / "audio"


def read_wav(name: str) -> tuple[int, np.ndarray]:
    """Return the sample rate and int16 samples of a mono 16-bit WAV vector."""
    with wave.open(str(VECTORS / name), "rb") as source:
        assert source.getnchannels() == 1 and source.getsampwidth() == 2
        rate_hz = source.getframerate()
        samples = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2")
    return rate_hz, samples


def frames(pcm: bytes, frame_bytes: int) -> Iterator[bytes]:
    """Yield whole frames of `pcm` (a trailing part frame is dropped)."""
    for start in range(0, len(pcm) - frame_bytes + 1, frame_bytes):
        yield pcm[start : start + frame_bytes]


def dominant_frequency_hz(samples: np.ndarray, rate_hz: int) -> float:
    """Return the strongest frequency, refined between FFT bins by a parabola."""
    windowed = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed)) + 1e-12
    peak = int(np.argmax(spectrum[1:-1])) + 1
    left, centre, right = np.log(spectrum[peak - 1 : peak + 2])
    offset = 0.5 * (left - right) / (left - 2 * centre + right)
    return float((peak + offset) * rate_hz / len(samples))


def band_energy_db(samples: np.ndarray, rate_hz: int, low_hz: float, high_hz: float) -> float:
    """Return the energy between two frequencies relative to the whole signal's, in dB."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate_hz)
    band = spectrum[(freqs >= low_hz) & (freqs <= high_hz)].sum()
    return float(10 * np.log10(band / spectrum.sum() + 1e-20))


def delay_samples(reference: np.ndarray, degraded: np.ndarray, max_lag: int) -> int:
    """Return the lag (0..max_lag) at which `degraded` best matches `reference`."""
    ref = reference.astype(np.float64)
    deg = degraded.astype(np.float64)
    length = min(len(ref), len(deg)) - max_lag
    scores = [float(np.dot(ref[:length], deg[lag : lag + length])) for lag in range(max_lag + 1)]
    return int(np.argmax(scores))


def snr_db(reference: np.ndarray, degraded: np.ndarray, *, max_lag: int, skip: int = 0) -> float:
    """Return the SNR of `degraded` against `reference` once aligned for codec delay.

    Args:
        max_lag: the largest codec delay to search, in samples.
        skip: samples to ignore at the start (codec start-up).
    """
    lag = delay_samples(reference[skip:], degraded[skip:], max_lag)
    length = min(len(reference), len(degraded) - lag) - skip
    ref = reference[skip : skip + length].astype(np.float64)
    deg = degraded[skip + lag : skip + lag + length].astype(np.float64)
    noise = np.sum((ref - deg) ** 2) + 1e-12
    return float(10 * np.log10(np.sum(ref**2) / noise))


def round_trip(encoder: object, decoder: object, pcm: bytes, frame_bytes: int) -> np.ndarray:
    """Encode `pcm` frame by frame, decode each payload, and return the decoded samples."""
    out = [decoder.decode(encoder.encode(frame)) for frame in frames(pcm, frame_bytes)]  # type: ignore[attr-defined]
    return np.frombuffer(b"".join(out), dtype="<i2")
