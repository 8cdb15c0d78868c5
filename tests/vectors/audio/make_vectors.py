"""Write the golden audio vectors of this folder (see README.md).

    .venv/bin/python tests/vectors/audio/make_vectors.py          # (re)write the files
    .venv/bin/python tests/vectors/audio/make_vectors.py --check  # compare, write nothing

Signals come from integer sample indices through ``math.sin``/``math.exp`` and ``round``, so
they do not depend on numpy. The G.711 encodings come from CPython's ``audioop`` (the Sun
reference G.711 code, in C), not from our tables, so the golden files are an independent
reference; audioop left the standard library in Python 3.13, so run this on 3.11 or 3.12 (or
with the ``audioop-lts`` package).
"""

from __future__ import annotations

import argparse
import audioop  # deprecated, gone in 3.13: used only to make the reference encodings
import io
import math
import sys
import wave
from collections.abc import Callable, Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
AMPLITUDE = 16384  # -6 dBFS: no clipping, loud enough to use most G.711 segments
DURATION_S = 1


def sine(rate_hz: int, frequency_hz: float) -> list[int]:
    """Return one second of a sine at `frequency_hz`."""
    return [
        round(AMPLITUDE * math.sin(2 * math.pi * frequency_hz * n / rate_hz))
        for n in range(rate_hz * DURATION_S)
    ]


def sweep(rate_hz: int, start_hz: float, end_hz: float) -> list[int]:
    """Return one second of an exponential sine sweep from `start_hz` to `end_hz`."""
    length = rate_hz * DURATION_S
    growth = math.log(end_hz / start_hz)
    scale = 2 * math.pi * start_hz * DURATION_S / growth
    return [
        round(AMPLITUDE * math.sin(scale * (math.exp(growth * n / length) - 1)))
        for n in range(length)
    ]


def pcm16(samples: Iterable[int]) -> bytes:
    """Pack samples as 16-bit little-endian PCM."""
    return b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


def wav(rate_hz: int, pcm: bytes) -> bytes:
    """Return a mono 16-bit WAV file holding `pcm`."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate_hz)
        out.writeframes(pcm)
    return buffer.getvalue()


def vectors() -> dict[str, bytes]:
    """Return every vector file's name and contents."""
    signals: dict[str, tuple[int, Callable[[], list[int]]]] = {
        "sine_1khz_8k": (8000, lambda: sine(8000, 1000)),
        "sine_1khz_16k": (16000, lambda: sine(16000, 1000)),
        "sine_1khz_48k": (48000, lambda: sine(48000, 1000)),
        "sweep_100_3800hz_8k": (8000, lambda: sweep(8000, 100, 3800)),
        "sweep_50_7500hz_16k": (16000, lambda: sweep(16000, 50, 7500)),
    }
    files: dict[str, bytes] = {}
    for name, (rate_hz, make) in signals.items():
        pcm = pcm16(make())
        files[f"{name}.wav"] = wav(rate_hz, pcm)
        if rate_hz == 8000:
            files[f"{name}.pcmu"] = audioop.lin2ulaw(pcm, 2)
            files[f"{name}.pcma"] = audioop.lin2alaw(pcm, 2)
    every_sample = pcm16(range(-32768, 32768))
    files["every_sample.pcmu"] = audioop.lin2ulaw(every_sample, 2)
    files["every_sample.pcma"] = audioop.lin2alaw(every_sample, 2)
    every_code = bytes(range(256))
    files["every_code_pcmu.s16le"] = audioop.ulaw2lin(every_code, 2)
    files["every_code_pcma.s16le"] = audioop.alaw2lin(every_code, 2)
    return files


def main(argv: list[str] | None = None) -> int:
    """Write the vectors, or with --check report any that differ from the files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; write nothing")
    args = parser.parse_args(argv)
    differing = []
    for name, data in vectors().items():
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                differing.append(name)
        else:
            path.write_bytes(data)
    for name in differing:
        print(f"differs: {name}", file=sys.stderr)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
