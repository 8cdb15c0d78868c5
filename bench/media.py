"""Per-call CPU, latency and memory of the pure media core (`relay.media.call_media.CallMedia`).

    .venv/bin/python -m bench.media [--seconds 20]

One `CallMedia` is driven exactly as `relay.media.rtp_session` drives it, in simulated time: a
caller sends a 20 ms packet every 20 ms (with 0-3 ms of network jitter), each arrival is followed
by a service pass (``handle_timer``, ``rtp_to_send``, ``next_agent_frame`` until None, the
events, ``get_timer``), and so is every timer the core asks for; the agent sends 20 ms of audio
every 20 ms. Only the core's own work is timed (``time.perf_counter`` around the loop, the
arrivals built beforehand); sockets, the event loop and the WebSocket are not in these figures.

1. **Per-call CPU**, G.711 μ-law to a Twilio-framed agent (the default call): µs per 20 ms of
   call, both directions, median and best of ``REPEATS`` runs, turned into "calls per core":
   one second of CPU divided by what one second of call costs.
2. **Each codec path**, the same loop for every codec x agent framing.
3. **Added latency** in simulated time: RTP arrival -> the agent frame that carries the packet
   (the frame whose first sample is the packet's first, loss-free run), and agent audio ->
   the RTP packet that carries its first sample, p50 and p99. The jitter buffer's hold (20 ms
   minimum by default) is shown both ways; the core with the hold at 0 ms shows what the core
   itself adds. The resampler's group delay (audio delay inside the frames) is printed apart.
4. **Resamplers**, 20 ms chunks: the call path's `PolyphaseResampleStream` against the soxr
   `ResampleStream` ("MQ"), µs per chunk and the delay each adds (soxr's swings with its
   blocks: the max over one second is shown).
5. **Memory per call**, by tracemalloc, after 10 s of traffic.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.machine import banner
from chalicelib.contracts import MediaFraming
from relay.ids import SeededIdSource
from relay.media.call_media import CallMedia
from relay.media.codecs import available_codecs, get_encoder, get_spec
from relay.media.pipeline import agent_format
from relay.media.resample import PolyphaseResampleStream, ResampleStream
from relay.media.rtp import RtpPacketizer
from relay.sip.offer_answer import NegotiatedMedia
from relay.sip.sdp_fields import Direction

FRAME_S = 0.020
REPEATS = 7
CALLER = ("198.51.100.7", 40000)
PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8, "G722": 9, "opus": 111, "AMR-WB": 98}
FRAMINGS = (MediaFraming.TWILIO, MediaFraming.PCM16K, MediaFraming.PCM48K)


def negotiated(codec: str) -> NegotiatedMedia:
    """Return what SDP would have agreed for a call with ``codec``."""
    spec = get_spec(codec)
    pt = PAYLOAD_TYPES[spec.name]
    return NegotiatedMedia(
        codec=spec.name, payload_type=pt, clock_rate_hz=spec.clock_rate_hz, channels=spec.channels,
        fmtp=None, ptime_ms=20, telephone_event_payload_type=101, remote_address=CALLER[0],
        remote_port=CALLER[1], direction=Direction.SENDRECV, receive_payload_type=pt,
        receive_telephone_event_payload_type=101, held_by_remote=False,
    )  # fmt: skip


@dataclass
class Traffic:
    """A caller's datagrams with their arrival times, and the agent's 20 ms chunks."""

    arrivals: list[tuple[float, bytes]]
    agent_chunks: list[tuple[float, bytes]]


def traffic(codec: str, framing: MediaFraming, seconds: float, jitter_s: float = 0.003) -> Traffic:
    """Build ``seconds`` of a tone-and-noise caller stream and of agent audio."""
    rng = random.Random(4)
    spec = get_spec(codec)
    encoder = get_encoder(spec.name)
    packetizer = RtpPacketizer(ssrc=0x5EED, sequence_number=65000, timestamp=2**32 - 16000)
    count = int(seconds / FRAME_S)
    n = np.arange(spec.samples_per_frame * count)
    noise = np.random.default_rng(4).normal(0, 500, len(n))
    pcm = (6000 * np.sin(2 * np.pi * 440 * n / spec.sample_rate_hz) + noise).astype("<i2")
    arrivals = []
    for k in range(count):
        frame = pcm[k * spec.samples_per_frame : (k + 1) * spec.samples_per_frame].tobytes()
        packet = packetizer.packetize(
            encoder.encode(frame), payload_type=PAYLOAD_TYPES[spec.name],
            samples=spec.timestamp_increment,
        )  # fmt: skip
        arrivals.append((k * FRAME_S + rng.uniform(0, jitter_s), bytes(packet)))
    agent = agent_format(framing)  # real time, each chunk anywhere within its 20 ms
    chunks = [
        (k * FRAME_S + rng.uniform(0.0001, FRAME_S - 0.0001), bytes([0x55]) * agent.frame_bytes)
        for k in range(count)
    ]
    return Traffic(arrivals, chunks)


def service(media: CallMedia, now: float, out: list[tuple[float, bytes]] | None) -> None:
    """Do what `RtpSession._service` does after a datagram or a timer."""
    media.handle_timer(now)
    media.rtp_to_send(now)
    while (frame := media.next_agent_frame(now)) is not None:
        if out is not None:
            out.append((now, frame))
    while media.next_event() is not None:
        pass


def drive(
    media: CallMedia, flow: Traffic, frames: list[tuple[float, bytes]] | None = None,
    sent: Callable[[float, list[tuple[bytes, tuple[str, int]]]], None] | None = None,
) -> None:  # fmt: skip
    """Feed ``flow`` to ``media`` with every timer in between, in simulated time."""
    events = sorted(
        [(t, 0, d) for t, d in flow.arrivals] + [(t, 1, d) for t, d in flow.agent_chunks]
    )
    for at, kind, data in events:
        timer = media.get_timer()
        while timer is not None and timer <= at:
            if sent is not None:
                sent(timer, media.rtp_to_send(timer))
            service(media, timer, frames)
            timer = media.get_timer()
        if kind == 0:
            media.receive_rtp(data, CALLER, at)
            service(media, at, frames)
        else:
            media.play(data, at)  # the adapter's play() does no more


def per_20ms_us(codec: str, framing: MediaFraming, seconds: float) -> tuple[float, float]:
    """Return the median and best µs of core CPU per 20 ms of call, both directions."""
    flow = traffic(codec, framing, seconds)
    drive(CallMedia(negotiated(codec), framing, ids=SeededIdSource(1), now=0.0), flow)  # warm-up
    samples = []
    for _ in range(REPEATS):
        media = CallMedia(negotiated(codec), framing, ids=SeededIdSource(1), now=0.0)
        started = time.perf_counter()
        drive(media, flow)
        samples.append((time.perf_counter() - started) / len(flow.arrivals) * 1e6)
    return statistics.median(samples), min(samples)


def latencies_ms(
    codec: str, framing: MediaFraming, *, jitter_min_delay_ms: int, jitter_s: float
) -> tuple[list[float], list[float], tuple[float, float]]:
    """Return per-packet ingress and egress latencies and the chains' filter delays, in ms."""
    flow = traffic(codec, framing, 20.0, jitter_s)
    media = CallMedia(
        negotiated(codec), framing, ids=SeededIdSource(1), now=0.0,
        jitter_min_delay_ms=jitter_min_delay_ms,
    )  # fmt: skip
    frames: list[tuple[float, bytes]] = []
    packets_at: list[float] = []
    drive(media, flow, frames, lambda t, out: packets_at.extend(t for d, _ in out if d[1] < 192))
    # Loss-free and in order: frame k carries packet k; agent chunk k leaves in the first
    # packet sent at or after its arrival (the queue is empty between chunks).
    ingress = [(r - a) * 1000 for (r, _), (a, _) in zip(frames, flow.arrivals, strict=False)]
    egress = []
    index = 0
    for at, _ in flow.agent_chunks:
        while index < len(packets_at) and packets_at[index] < at:
            index += 1
        if index < len(packets_at):
            egress.append((packets_at[index] - at) * 1000)
    _, receive_filter_ms, send_filter_ms = media.delays_ms
    return ingress[50:], egress[50:], (receive_filter_ms, send_filter_ms)


def memory_per_call_kb(calls: int = 50) -> float:
    """Return the heap one G.711/Twilio call holds after 10 s of traffic."""
    flow = traffic("PCMU", MediaFraming.TWILIO, 10.0)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    media = []
    for _ in range(calls):
        core = CallMedia(negotiated("PCMU"), MediaFraming.TWILIO, ids=SeededIdSource(1), now=0.0)
        drive(core, flow)
        media.append(core)
    grown = tracemalloc.take_snapshot().compare_to(before, "filename")
    tracemalloc.stop()
    return sum(stat.size_diff for stat in grown) / calls / 1024


def resampler_figures(from_hz: int, to_hz: int) -> tuple[float, float, float, float]:
    """Return µs per 20 ms chunk and delay in ms: FIR, then soxr (its worst over 1 s)."""
    chunk = bytes(from_hz // 50 * 2)
    fir, sox = PolyphaseResampleStream(from_hz, to_hz), ResampleStream(from_hz, to_hz)
    costs = []
    for stream in (fir, sox):
        started = time.perf_counter()
        for _ in range(2000):
            stream.process(chunk)
        costs.append((time.perf_counter() - started) / 2000 * 1e6)
    sox, held_ms = ResampleStream(from_hz, to_hz), 0.0
    for _ in range(50):
        sox.process(chunk)
        held_ms = max(held_ms, sox.pending_samples / to_hz * 1000)
    return costs[0], fir.delay_ms, costs[1], held_ms


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    """Print the machine, then the four sections of the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="simulated call per run")
    args = parser.parse_args()
    print(banner("Media core: per-call CPU, latency, memory (pure path, simulated time)"))

    median, best = per_20ms_us("PCMU", MediaFraming.TWILIO, args.seconds)
    print("1. G.711 μ-law caller <-> Twilio-framed agent, both directions")
    for label, us in (("median", median), ("best", best)):
        share = us * 50 / 1e6
        print(
            f"   {label:>6}: {us:6.1f} µs per 20 ms of call = {share * 100:.3f} % of a core"
            f" -> {1 / share:,.0f} calls per core (core only; target 300 for the whole relay)"
        )

    print("\n2. Each codec path, µs per 20 ms of call (both directions), median of runs")
    codecs = [spec.name for spec in available_codecs()]
    print("   " + f"{'codec':<8}" + "".join(f"{f.value:>10}" for f in FRAMINGS))
    for codec in codecs:
        row = [per_20ms_us(codec, framing, min(args.seconds, 5.0))[0] for framing in FRAMINGS]
        print("   " + f"{codec:<8}" + "".join(f"{us:10.1f}" for us in row))

    print("\n3. Added latency, simulated (ms): p50 / p99")
    cases = [
        ("PCMU", MediaFraming.TWILIO, 0, 0.0, "no network jitter: what the core itself adds"),
        ("PCMU", MediaFraming.TWILIO, 0, 0.003, "default config, 0-3 ms network jitter"),
        ("PCMU", MediaFraming.TWILIO, 0, 0.010, "default config, 0-10 ms network jitter"),
        ("PCMU", MediaFraming.TWILIO, 20, 0.003, "jitter_min_delay_ms=20, 0-3 ms jitter"),
        ("PCMU", MediaFraming.PCM16K, 0, 0.0, "resampling 8k <-> 16k, no jitter"),
        ("opus", MediaFraming.PCM48K, 0, 0.0, "opus <-> pcm48k, no jitter"),
    ]
    for codec, framing, hold_ms, jitter_s, label in cases:
        ingress, egress, (receive_ms, send_ms) = latencies_ms(
            codec, framing, jitter_min_delay_ms=hold_ms, jitter_s=jitter_s
        )
        print(
            f"   {codec}/{framing.value:<7} RTP->agent {_pct(ingress, 50):5.1f} / "
            f"{_pct(ingress, 99):5.1f}   agent->RTP {_pct(egress, 50):5.1f} / "
            f"{_pct(egress, 99):5.1f}   filters +{receive_ms:.1f}/+{send_ms:.1f}   ({label})"
        )

    print("\n4. Resamplers, per 20 ms chunk: FIR µs (delay ms) | soxr MQ µs (delay up to ms)")
    for from_hz, to_hz in ((8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000)):
        fir_us, fir_ms, sox_us, sox_ms = resampler_figures(from_hz, to_hz)
        print(
            f"   {f'{from_hz // 1000}k->{to_hz // 1000}k':<8} {fir_us:6.1f} ({fir_ms:.1f})"
            f"  |  {sox_us:6.1f} ({sox_ms:.0f})"
        )

    print(f"\n5. Memory: {memory_per_call_kb():.1f} KiB per G.711/Twilio call after 10 s")


if __name__ == "__main__":
    main()
