"""The CPU cost of each codec and of resampling, per 20 ms frame.

    .venv/bin/python -m bench.codecs [--seconds 0.3]

Each codec encodes and decodes a 1 kHz-plus-sweep signal one 20 ms frame per call, as the
relay does, through the registry (`get_encoder`/`get_decoder`), on one core. Figures are the
best of five runs (the least disturbed), in µs per frame. Resampling is timed the same way,
20 ms in per call through a `ResampleStream`, and the audio the stream holds back (libsoxr
works in blocks) is printed as the min-max over one second.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from bench.machine import banner
from relay.media.codecs import CodecSpec, available_codecs, get_decoder, get_encoder
from relay.media.resample import DEFAULT_QUALITY, ResampleStream

RESAMPLE_PAIRS = [(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000), (16000, 48000),
                  (48000, 16000), (24000, 8000), (8000, 24000)]  # fmt: skip
RUNS = 5


def _signal(rate_hz: int, frames: int) -> list[bytes]:
    """Return `frames` 20 ms frames of a tone plus a sweep, as PCM16."""
    samples = rate_hz // 50
    t = np.arange(samples * frames) / rate_hz
    sweep = np.sin(2 * np.pi * (100 * t + 0.45 * rate_hz / 2 * t**2 / t[-1]))
    pcm = (6000 * np.sin(2 * np.pi * 1000 * t) + 4000 * sweep).astype("<i2").tobytes()
    return [pcm[i * 2 * samples : (i + 1) * 2 * samples] for i in range(frames)]


def _per_call_us(work: Callable[[bytes], object], inputs: list[bytes], seconds: float) -> float:
    """Return the best-of-`RUNS` time of one call to `work`, in µs."""
    for item in inputs[:20]:
        work(item)  # warm up
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < seconds / RUNS / 4:
        work(inputs[calls % len(inputs)])
        calls += 1
    count = max(calls * 4, len(inputs))
    best = float("inf")
    for _ in range(RUNS):
        begin = time.perf_counter_ns()
        for index in range(count):
            work(inputs[index % len(inputs)])
        best = min(best, (time.perf_counter_ns() - begin) / count / 1000)
    return best


def codec_costs(spec: CodecSpec, seconds: float) -> tuple[float, float, float, int]:
    """Return encode µs, decode µs, conceal µs per frame and mean payload bytes."""
    frames = _signal(spec.sample_rate_hz, 50)
    encoder = get_encoder(spec.name)
    payloads = [encoder.encode(frame) for frame in frames]
    encode_us = _per_call_us(get_encoder(spec.name).encode, frames, seconds)
    decode_us = _per_call_us(get_decoder(spec.name).decode, payloads, seconds)
    # Conceal right after a good frame (the costly case: a fade, or PLC), less the decode.
    decoder = get_decoder(spec.name)

    def decode_then_conceal(payload: bytes) -> None:
        decoder.decode(payload)
        decoder.conceal(spec.samples_per_frame)

    conceal_us = _per_call_us(decode_then_conceal, payloads, seconds) - decode_us
    return encode_us, decode_us, max(conceal_us, 0.0), sum(map(len, payloads)) // len(payloads)


def resample_cost(from_hz: int, to_hz: int, seconds: float) -> tuple[float, float, float]:
    """Return µs per 20 ms chunk, and the min and max ms held back over one second."""
    frames = _signal(from_hz, 50)
    stream = ResampleStream(from_hz, to_hz)
    cost = _per_call_us(stream.process, frames, seconds)
    stream, produced, held_ms = ResampleStream(from_hz, to_hz), 0, []
    for index, frame in enumerate(frames, start=1):
        produced += len(stream.process(frame)) // 2
        held_ms.append((index * to_hz // 50 - produced) / to_hz * 1000)
    steady = held_ms[10:]
    return cost, min(steady), max(steady)


def main(argv: list[str] | None = None) -> None:
    """Print the machine, then codec and resampler costs."""
    parser = argparse.ArgumentParser(description="codec and resampler cost per 20 ms frame")
    parser.add_argument("--seconds", type=float, default=0.3, help="time per measurement")
    args = parser.parse_args(argv)
    print(banner("codec cost per 20 ms frame (one core, best of 5)"))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"  load average {load} (figures inflate when other work shares the cores)\n")
    print(f"{'codec':<8} {'rate':>6} {'bytes':>5} {'encode µs':>10} {'decode µs':>10} "
          f"{'conceal µs':>11}")  # fmt: skip
    for spec in available_codecs():
        encode_us, decode_us, conceal_us, size = codec_costs(spec, args.seconds)
        print(f"{spec.name:<8} {spec.sample_rate_hz:>6} {size:>5} {encode_us:>10.1f} "
              f"{decode_us:>10.1f} {conceal_us:>11.1f}")  # fmt: skip
    print()
    print(f"resampling, soxr quality {DEFAULT_QUALITY}, 20 ms per call")
    print(f"{'from → to':<16} {'µs/frame':>9} {'held back ms (min-max)':>24}")
    for from_hz, to_hz in RESAMPLE_PAIRS:
        cost, low, high = resample_cost(from_hz, to_hz, args.seconds)
        pair = f"{from_hz // 1000}k → {to_hz // 1000}k"
        print(f"{pair:<16} {cost:>9.1f} {f'{low:.1f}-{high:.1f}':>24}")


if __name__ == "__main__":
    main()
