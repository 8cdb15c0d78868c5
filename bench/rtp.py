"""Per-packet cost of the pure media core: RTP parse/serialize, statistics, jitter buffer.

``python -m bench.rtp`` runs each stage over a stream of ``PACKETS`` distinct 20 ms PCMU packets
(172-byte datagrams, as a phone sends them) and prints the median time per packet over
``REPEATS`` runs, then what one G.711 call costs in this core at 50 packets/s each way:

- receive path: ``RtpPacket.parse`` + ``ReceptionStatistics.receive`` + ``JitterBuffer.push``
  and ``pop`` (arrivals every 20 ms with up to 3 ms of jitter, popped at each arrival);
- send path: ``RtpPacketizer.packetize`` + ``bytes(packet)``.

The figure that matters is the share of one core per call (issue 4 targets about 0.3 % for a
whole bridged call, codecs, sockets and WebSocket included): this core must stay a small part of
it. Shared machines are noisy; compare stages within one run rather than across runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from bench.machine import banner
from relay.media.dtmf import DtmfReceiver, DtmfSender
from relay.media.jitter import JitterBuffer
from relay.media.rtp import RtpPacket, RtpPacketizer
from relay.media.stats import ReceptionStatistics

PACKETS = 20_000
REPEATS = 7
PACKETS_PER_S = 50  # 20 ms ptime
SAMPLES = 160  # 20 ms at 8 kHz
CLOCK_RATE_HZ = 8000


def _stream(count: int) -> tuple[list[bytes], list[RtpPacket], list[float]]:
    rng = random.Random(3)
    packetizer = RtpPacketizer(ssrc=0x5EED, sequence_number=65000, timestamp=2**32 - 8000)
    payload = bytes(range(160))
    packets = [packetizer.packetize(payload, payload_type=0, samples=SAMPLES) for _ in range(count)]
    arrivals = [i * 0.020 + rng.uniform(0, 0.003) for i in range(count)]
    return [bytes(p) for p in packets], packets, arrivals


def per_packet_us(run: Callable[[], int]) -> tuple[float, float]:
    """Return the median and the best microseconds per packet of ``run`` over ``REPEATS`` runs.

    ``run`` returns how many packets it handled. The best run is the least disturbed by other
    processes on a shared machine; the median is what a busy relay sees.
    """
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        handled = run()
        samples.append((time.perf_counter() - started) / handled)
    return statistics.median(samples) * 1e6, min(samples) * 1e6


def measure(count: int) -> dict[str, tuple[float, float]]:
    """Return (median, best) microseconds per packet for each stage."""
    datagrams, packets, arrivals = _stream(count)
    parse = RtpPacket.parse

    def run_parse() -> int:
        for data in datagrams:
            parse(data)
        return count

    def run_serialize() -> int:
        for packet in packets:
            bytes(packet)
        return count

    def run_send() -> int:
        packetizer = RtpPacketizer(ssrc=1, sequence_number=0, timestamp=0)
        payload = datagrams[0][12:]
        for _ in range(count):
            bytes(packetizer.packetize(payload, payload_type=0, samples=SAMPLES))
        return count

    def run_stats() -> int:
        stats = ReceptionStatistics(0x5EED, CLOCK_RATE_HZ)
        for packet, now in zip(packets, arrivals, strict=True):
            stats.receive(packet, now)
        return count

    def run_jitter() -> int:
        buffer = JitterBuffer(CLOCK_RATE_HZ)
        for packet, now in zip(packets, arrivals, strict=True):
            buffer.push(packet, now)
            while buffer.pop(now) is not None:
                pass
        return count

    def run_receive() -> int:
        stats = ReceptionStatistics(0x5EED, CLOCK_RATE_HZ)
        buffer = JitterBuffer(CLOCK_RATE_HZ)
        for data, now in zip(datagrams, arrivals, strict=True):
            packet = parse(data)
            stats.receive(packet, now)
            buffer.push(packet, now)
            while buffer.pop(now) is not None:
                pass
        return count

    sender = DtmfSender(RtpPacketizer(ssrc=1, sequence_number=0, timestamp=0), payload_type=101)
    events = [p for _ in range(count // 20) for p in sender.packets("5", duration_ms=100)]

    def run_dtmf() -> int:
        receiver = DtmfReceiver()
        for index, packet in enumerate(events):
            receiver.receive(packet, index * 0.05)
            receiver.next_event()
        return len(events)

    return {
        "RtpPacket.parse": per_packet_us(run_parse),
        "bytes(RtpPacket)": per_packet_us(run_serialize),
        "send: packetize + bytes": per_packet_us(run_send),
        "ReceptionStatistics.receive": per_packet_us(run_stats),
        "JitterBuffer push + pop": per_packet_us(run_jitter),
        "receive: parse + stats + jitter": per_packet_us(run_receive),
        "DtmfReceiver.receive (event pkts)": per_packet_us(run_dtmf),
    }


def main() -> None:
    """Print the machine, the per-packet costs and the per-call share of a core."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=PACKETS)
    args = parser.parse_args()
    print(banner("RTP media core: per-packet cost"))
    figures = measure(args.packets)
    width = max(len(name) for name in figures)
    print(f"  {'µs per packet':<{width}}  {'median':>7}  {'best':>7}")
    for name, (median_us, best_us) in figures.items():
        print(f"  {name:<{width}}  {median_us:7.2f}  {best_us:7.2f}")
    print()
    for label, pick in (("median", 0), ("best", 1)):
        receive_us = figures["receive: parse + stats + jitter"][pick]
        send_us = figures["send: packetize + bytes"][pick]
        per_call_us_per_s = PACKETS_PER_S * (receive_us + send_us)
        share = per_call_us_per_s / 1e6
        print(
            f"  one G.711 call, 50 pkt/s each way ({label}): {per_call_us_per_s:.0f} µs/s"
            f" = {share * 100:.3f} % of a core, {1 / share:,.0f} calls per core for this stage"
        )


if __name__ == "__main__":
    main()
