"""Per-call CPU, latency and memory of the pure media core (`relay.media.call_media.CallMedia`).

    .venv/bin/python -m bench.media [--seconds 20] [--latency-only] [--jitter-min-delay-ms N]

One `CallMedia` is driven exactly as `relay.transport.rtp_session` drives it, in simulated time: a
caller sends a 20 ms packet every 20 ms (with 0-3 ms of network jitter), each arrival is followed
by a service pass (``handle_timer``, ``rtp_to_send``, ``next_agent_frame`` until None, the
events, ``get_timer``), and so is every timer the core asks for and every ``play`` of the agent,
which sends 20 ms of audio every 20 ms (with 0-8 ms of jitter). Only the core's own work is timed
(``time.perf_counter`` around the loop, the arrivals built beforehand); sockets, the event loop
and the WebSocket are not in these figures.

1. **Per-call CPU**, G.711 μ-law to a Twilio-framed agent (the default call): µs per 20 ms of
   call, both directions, median and best of ``REPEATS`` runs, turned into "calls per core":
   one second of CPU divided by what one second of call costs.
2. **Each codec path**, the same loop for every codec x agent framing.
3. **Added latency** in simulated time, p50 and p99: RTP arrival -> the agent frame that holds
   the packet's first sample (complete: loss-free runs), and agent audio -> the RTP packet that
   carries its first sample; under jittery senders both ways (caller network jitter, agent
   chunks late by 0-8 ms), and with 30 ms caller packets (SIPp's captures). Whatever the jitter
   buffer waits for counts. The resampler's group delay (audio delay inside the frames) is
   printed apart. ``--latency-only`` prints this section alone: run against an older checkout
   of ``relay/`` it gives the "before" figures of ``bench/README.md``.
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
from dataclasses import dataclass

import numpy as np

from bench.machine import banner
from chalicelib.contracts import MediaFraming
from relay.ids import SeededIdSource
from relay.media.call_media import CallMedia
from relay.media.codecs import available_codecs, get_encoder, get_spec
from relay.media.pipeline import agent_format
from relay.media.resample import PolyphaseResampleStream, ResampleStream
from relay.media.rtcp import is_rtcp
from relay.media.rtp import RtpPacketizer
from relay.sip.sdp.fields import Direction
from relay.sip.sdp.offer_answer import NegotiatedMedia

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


def traffic(
    codec: str, framing: MediaFraming, seconds: float, jitter_s: float = 0.003, *,
    agent_jitter_s: float = 0.008, ptime_ms: int = 20,
) -> Traffic:  # fmt: skip
    """Build ``seconds`` of a tone-and-noise caller stream and of real-time agent audio."""
    rng = random.Random(4)
    spec = get_spec(codec)
    encoder = get_encoder(spec.name)
    packetizer = RtpPacketizer(ssrc=0x5EED, sequence_number=65000, timestamp=2**32 - 16000)
    per_packet = spec.samples_per_frame * ptime_ms // 20
    count = int(seconds * 1000 / ptime_ms)
    n = np.arange(per_packet * count)
    noise = np.random.default_rng(4).normal(0, 500, len(n))
    pcm = (6000 * np.sin(2 * np.pi * 440 * n / spec.sample_rate_hz) + noise).astype("<i2")
    arrivals = []
    for k in range(count):
        frame = pcm[k * per_packet : (k + 1) * per_packet].tobytes()
        packet = packetizer.packetize(
            encoder.encode(frame), payload_type=PAYLOAD_TYPES[spec.name],
            samples=spec.timestamp_increment * ptime_ms // 20,
        )  # fmt: skip
        arrivals.append((k * ptime_ms / 1000 + rng.uniform(0, jitter_s), bytes(packet)))
    agent = agent_format(framing)  # real time: chunk k comes 0 to agent_jitter_s after k * 20 ms
    chunks = [
        (0.0071 + k * FRAME_S + rng.uniform(0, agent_jitter_s), bytes([0x55]) * agent.frame_bytes)
        for k in range(int(seconds / FRAME_S))
    ]
    return Traffic(arrivals, chunks)


@dataclass
class Record:
    """What a run gave out: agent frames, and when RTP packets of audio and of silence left."""

    frames: list[tuple[float, bytes]]
    audio_sent_at: list[float]
    silence_sent_at: list[float]


def service(media: CallMedia, now: float, record: Record | None) -> None:
    """Do what `RtpSession._service` does after a datagram, a timer or the agent's audio."""
    media.handle_timer(now)
    silence = media.stats.silence_sent
    sent = sum(not is_rtcp(data) for data, _ in media.rtp_to_send(now))
    if record is not None:
        silence = media.stats.silence_sent - silence
        record.audio_sent_at += [now] * (sent - silence)
        record.silence_sent_at += [now] * silence
    while (frame := media.next_agent_frame(now)) is not None:
        if record is not None:
            record.frames.append((now, frame))
    while media.next_event() is not None:
        pass


def drive(media: CallMedia, flow: Traffic, record: Record | None = None) -> None:
    """Feed ``flow`` to ``media`` with every timer in between, in simulated time."""
    events = sorted(
        [(t, 0, d) for t, d in flow.arrivals] + [(t, 1, d) for t, d in flow.agent_chunks]
    )
    for at, kind, data in events:
        timer = media.get_timer()
        while timer is not None and timer <= at:
            service(media, timer, record)
            timer = media.get_timer()
        if kind == 0:
            media.receive_rtp(data, CALLER, at)
        else:
            media.play(data, at)
        service(media, at, record)  # the adapter services after play() too


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


@dataclass
class Latency:
    """Added latency each way (ms, per packet or chunk after the first second) and what it cost."""

    ingress_ms: list[float]
    egress_ms: list[float]
    filter_ms: tuple[float, float]
    concealed: int
    """Agent frames filled or gaps concealed: caller audio the agent did not get."""
    agent_gaps: int
    """Silence packets sent between two of the agent's: its audio split by a gap."""


def latencies_ms(
    codec: str, framing: MediaFraming, *, jitter_s: float, agent_jitter_s: float = 0.008,
    ptime_ms: int = 20, jitter_min_delay_ms: int = 0,
) -> Latency:  # fmt: skip
    """Run 20 s of a call both ways and measure the latency each way adds."""
    flow = traffic(codec, framing, 20.0, jitter_s, agent_jitter_s=agent_jitter_s, ptime_ms=ptime_ms)
    media = CallMedia(
        negotiated(codec), framing, ids=SeededIdSource(1), now=0.0,
        jitter_min_delay_ms=jitter_min_delay_ms,
    )  # fmt: skip
    record = Record([], [], [])
    drive(media, flow, record)
    # Frame k holds samples from k * 20 ms on, and packet m's first sample is in frame
    # m * ptime / 20 (exact while no audio is lost). Agent chunk k is the k-th audio packet.
    ingress = []
    for m, (arrived, _) in enumerate(flow.arrivals):
        k = m * ptime_ms // 20
        if k < len(record.frames):
            ingress.append((record.frames[k][0] - arrived) * 1000)
    egress = [
        (sent - at) * 1000
        for (at, _), sent in zip(flow.agent_chunks, record.audio_sent_at, strict=False)
    ]
    first, last = record.audio_sent_at[0], record.audio_sent_at[-1]
    gaps = sum(first < t < last for t in record.silence_sent_at)
    feed = media.feed_stats
    concealed = feed.filled_frames + feed.gaps_concealed
    _, receive_filter_ms, send_filter_ms = media.delays_ms
    return Latency(ingress[50:], egress[50:], (receive_filter_ms, send_filter_ms), concealed, gaps)


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


LATENCY_CASES = [
    # codec, framing, caller ptime, caller jitter, agent jitter, label
    ("PCMU", MediaFraming.TWILIO, 20, 0.0, 0.0, "no jitter either way"),
    ("PCMU", MediaFraming.TWILIO, 20, 0.003, 0.008, "caller 0-3 ms, agent 0-8 ms jitter"),
    ("PCMU", MediaFraming.TWILIO, 20, 0.005, 0.008, "caller 0-5 ms, agent 0-8 ms jitter"),
    ("PCMU", MediaFraming.TWILIO, 20, 0.010, 0.008, "caller 0-10 ms, agent 0-8 ms jitter"),
    ("PCMA", MediaFraming.TWILIO, 30, 0.005, 0.008, "30 ms caller packets, 0-5 ms jitter"),
    ("PCMU", MediaFraming.TWILIO, 20, 0.030, 0.020, "caller 0-30 ms (reorders), agent 0-20 ms"),
    ("PCMU", MediaFraming.PCM16K, 20, 0.003, 0.008, "resampling 8k <-> 16k, 0-3/0-8 ms"),
    ("opus", MediaFraming.PCM48K, 20, 0.003, 0.008, "opus <-> pcm48k, 0-3/0-8 ms"),
]


def print_latencies(jitter_min_delay_ms: int) -> None:
    """Print section 3: added latency each way, p50 / p99, for each of ``LATENCY_CASES``."""
    print(f"3. Added latency, simulated (ms): p50 / p99; jitter_min_delay_ms={jitter_min_delay_ms}")
    print("   (concealed: caller audio filled or concealed for the agent, in 20 ms frames or")
    print("   packets; gaps: silence packets sent between two of the agent's)")
    for codec, framing, ptime_ms, jitter_s, agent_jitter_s, label in LATENCY_CASES:
        result = latencies_ms(
            codec, framing, jitter_s=jitter_s, agent_jitter_s=agent_jitter_s,
            ptime_ms=ptime_ms, jitter_min_delay_ms=jitter_min_delay_ms,
        )  # fmt: skip
        ingress, egress = result.ingress_ms, result.egress_ms
        print(
            f"   {codec}/{framing.value:<7} RTP->agent {_pct(ingress, 50):5.1f} / "
            f"{_pct(ingress, 99):5.1f} (concealed {result.concealed:3})   agent->RTP "
            f"{_pct(egress, 50):5.1f} / {_pct(egress, 99):5.1f} (gaps {result.agent_gaps:3})"
            f"   filters +{result.filter_ms[0]:.1f}/+{result.filter_ms[1]:.1f}   ({label})"
        )


def main() -> None:
    """Print the machine, then the four sections of the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="simulated call per run")
    parser.add_argument("--latency-only", action="store_true", help="section 3 alone")
    parser.add_argument(
        "--jitter-min-delay-ms", type=int, default=0, help="the jitter buffer's floor (section 3)"
    )
    args = parser.parse_args()
    print(banner("Media core: per-call CPU, latency, memory (pure path, simulated time)"))
    if args.latency_only:
        print_latencies(args.jitter_min_delay_ms)
        return

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

    print()
    print_latencies(args.jitter_min_delay_ms)

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
