"""Measuring test tones: the dominant frequency of a stretch of audio, and where a tone starts.

Frequencies come from a Hann-windowed FFT with parabolic interpolation of the peak bin, so a
one-second stretch is accurate to well under 1 Hz for a clean sine.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from relay.media.codecs.g711 import ulaw_decode

SILENCE_RMS = 200.0  # PCM16: about -44 dBFS; μ-law's idle code decodes to 0 or ±2..8
WINDOW_S = 0.020


def pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float64)


def ulaw_samples(payload: bytes) -> np.ndarray:
    """Decode μ-law bytes to samples (PCM16 scale)."""
    return pcm16(ulaw_decode(payload))


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Return a 16-bit WAV's first channel as samples, and its rate."""
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2, f"{path.name}: {wav.getsampwidth() * 8}-bit, want 16"
        channels, rate = wav.getnchannels(), wav.getframerate()
        samples = pcm16(wav.readframes(wav.getnframes()))
    return samples[::channels], rate


def dominant_frequency(samples: np.ndarray, rate_hz: int) -> float:
    """Return the frequency of the strongest spectral peak of ``samples``, in Hz."""
    assert len(samples) >= rate_hz // 10, f"only {len(samples)} samples"
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0.0
    peak = int(np.argmax(spectrum))
    shift = 0.0
    if 0 < peak < len(spectrum) - 1:
        left, centre, right = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
        denominator = left - 2 * centre + right
        shift = 0.5 * (left - right) / denominator if denominator else 0.0
    return float((peak + shift) * rate_hz / len(samples))


def rms_windows(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """RMS of each consecutive 20 ms window."""
    size = int(rate_hz * WINDOW_S)
    usable = len(samples) // size * size
    windows = samples[:usable].reshape(-1, size)
    return np.asarray(np.sqrt(np.mean(windows**2, axis=1)))


def sounding(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """The samples of the 20 ms windows that are not silent, concatenated."""
    size = int(rate_hz * WINDOW_S)
    loud = rms_windows(samples, rate_hz) > SILENCE_RMS
    usable = len(loud) * size
    return np.asarray(samples[:usable].reshape(-1, size)[loud].ravel())
