"""Write the default hold music, ``relay/media/assets/hold.wav``: made here, never recorded.

A 6-second loop at 16 kHz, 16-bit mono (192 kB): four chords (Cmaj7, Am7, Fmaj7, G7), each an
arpeggio of soft bell-like tones (a sine with a quieter octave, a 5 ms attack and an exponential
decay). Every note has faded to silence before the loop ends, so it repeats without a click.
Nothing random: the same samples on every run (``tests/unit/relay/media/test_hold_music.py``
compares them with the committed file). Run ``python -m scripts.make_hold_music`` to rewrite it.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

RATE_HZ = 16000
BEAT_S = 0.375  # 160 beats per minute
PEAK = 0.25  # of full scale: about -12 dBFS, quiet under speech levels
OUTPUT = Path(__file__).resolve().parents[1] / "relay" / "media" / "assets" / "hold.wav"

# MIDI note numbers: each chord's arpeggio, one note per beat.
CHORDS = (
    (60, 64, 67, 71),  # Cmaj7
    (57, 60, 64, 67),  # Am7
    (53, 57, 60, 64),  # Fmaj7
    (55, 59, 62, 65),  # G7
)


def _note(midi: int, length: int) -> np.ndarray:
    frequency_hz = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(length) / RATE_HZ
    tone = np.sin(2 * np.pi * frequency_hz * t) + 0.3 * np.sin(4 * np.pi * frequency_hz * t)
    attack = np.minimum(1.0, t / 0.005)
    decay = np.exp(-t / 0.35)
    release = np.minimum(1.0, (length - 1 - np.arange(length)) / (0.02 * RATE_HZ))
    return np.asarray(tone * attack * decay * release)


def render() -> np.ndarray:
    """Return the loop's samples (int16)."""
    beat = int(BEAT_S * RATE_HZ)
    notes = [midi for chord in CHORDS for midi in chord]
    loop = np.zeros(beat * len(notes))
    ring = 2 * beat  # each note rings over the next one, then is gone
    for index, midi in enumerate(notes):
        start = index * beat
        length = min(ring, len(loop) - start)
        loop[start : start + length] += _note(midi, length)
    loop *= PEAK * 32767 / np.max(np.abs(loop))
    return np.rint(loop).astype("<i2")


def wav_bytes() -> bytes:
    """Return the WAV file's bytes."""
    out = io.BytesIO()
    with wave.open(out, "wb") as target:
        target.setnchannels(1)
        target.setsampwidth(2)
        target.setframerate(RATE_HZ)
        target.writeframes(render().tobytes())
    return out.getvalue()


def main() -> None:
    """Write the file."""
    OUTPUT.write_bytes(wav_bytes())
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
