"""Loss, fraction lost and interarrival jitter (RFC 3550 A.3, A.8) against hand-computed values."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from relay.media.rtcp import ReportBlock, SenderReport, compact_ntp, ntp_timestamp, parse_compound
from relay.media.rtp import RtpPacket
from relay.media.seq import SeqStatus
from relay.media.stats import ReceptionStatistics, round_trip_time_s
from tests.support.pcap import read_udp

VECTORS = Path(__file__).resolve().parents[4] / "tests" / "vectors" / "rtp"
SSRC = 0x1234
SAMPLES = 160  # 20 ms at 8 kHz


def packet(seq: int, timestamp: int) -> RtpPacket:
    return RtpPacket(
        payload_type=0, sequence_number=seq % 65536, timestamp=timestamp % 2**32, ssrc=SSRC
    )


def feed_with_delays(
    stats: ReceptionStatistics, delays_ms: Sequence[float], *, ts_base: int = 0
) -> list[int]:
    jitters = []
    for index, delay_ms in enumerate(delays_ms):
        stats.receive(packet(index, ts_base + index * SAMPLES), index * 0.020 + delay_ms / 1000)
        jitters.append(stats.jitter)
    return jitters


def test_jitter_follows_the_rfc_3550_a8_estimator_by_hand() -> None:
    # Transit in samples: p0 probation; p1 0 (first, no D); p2 80 (D=80); p3 0 (D=80); p4 0 (D=0);
    # p5 240 (D=240). Q4: 0+80-0=80 -> 5; 80+80-5=155 -> 9; 155+0-10=145 -> 9; 145+240-9=376 -> 23.
    stats = ReceptionStatistics(SSRC, 8000)
    assert feed_with_delays(stats, [0, 0, 10, 0, 0, 30]) == [0, 0, 5, 9, 9, 23]
    assert stats.jitter_s == pytest.approx(376 / 16 / 8000)


def test_jitter_is_unchanged_when_the_timestamp_wraps() -> None:
    delays = [0, 0, 10, 0, 0, 30, 5, 0, 20]
    plain = feed_with_delays(ReceptionStatistics(SSRC, 8000), delays)
    wrapped = feed_with_delays(ReceptionStatistics(SSRC, 8000), delays, ts_base=2**32 - 3 * SAMPLES)
    assert wrapped == plain


def test_a_steady_stream_has_zero_jitter_and_zero_loss() -> None:
    stats = ReceptionStatistics(SSRC, 8000)
    feed_with_delays(stats, [7.0] * 50)
    block = stats.report_block(1.0)
    assert block is not None
    assert (block.jitter, block.packets_lost, block.fraction_lost) == (0, 0, 0)
    assert block.highest_sequence == 49


def test_cumulative_and_fraction_lost_over_two_intervals() -> None:
    stats = ReceptionStatistics(SSRC, 8000)
    lost = {10, 11, 50, 77}
    for seq in range(60):
        if seq not in lost:
            stats.receive(packet(seq, seq * SAMPLES), seq * 0.02)
    first = stats.report_block(1.2)
    # base is seq 1 (seq 0 was probation): expected 59, received 56, lost 3; 3*256 // 59 = 13
    assert first is not None
    assert (first.packets_lost, first.fraction_lost, first.highest_sequence) == (3, 13, 59)
    for seq in range(60, 100):
        if seq not in lost:
            stats.receive(packet(seq, seq * SAMPLES), seq * 0.02)
    second = stats.report_block(2.0)
    # interval: expected 40, received 39, lost 1; 256 // 40 = 6
    assert second is not None
    assert (second.packets_lost, second.fraction_lost, second.highest_sequence) == (4, 6, 99)
    assert (stats.expected, stats.received, stats.cumulative_lost) == (99, 95, 4)


def test_duplicates_make_the_loss_negative_and_the_fraction_zero() -> None:
    stats = ReceptionStatistics(SSRC, 8000)
    for seq in [0, 1, 2, 2, 3]:
        stats.receive(packet(seq, seq * SAMPLES), seq * 0.02)
    block = stats.report_block(0.1)
    assert block is not None
    assert (block.packets_lost, block.fraction_lost) == (-1, 0)


def test_cumulative_loss_is_clamped_to_24_signed_bits() -> None:
    stats = ReceptionStatistics(SSRC, 8000, min_sequential=1)
    seq = 0
    for _ in range(2800):  # 2800 jumps of 2999 lost packets each: 8.4 million > 0x7FFFFF
        stats.receive(packet(seq, 0), 0.0)
        seq += 3000 - 1
    block = stats.report_block(0.0)
    assert block is not None
    assert block.packets_lost == 0x7FFFFF
    assert stats.cumulative_lost > 0x7FFFFF
    assert block.highest_sequence == stats.expected - 1  # base 0: extended max + 1 = expected


def test_nothing_to_report_while_the_source_is_on_probation() -> None:
    stats = ReceptionStatistics(SSRC, 8000)
    assert stats.report_block(0.0) is None
    assert stats.receive(packet(5, 0), 0.0) is SeqStatus.PROBATION
    assert stats.report_block(0.0) is None
    assert stats.received == 0


def test_report_echoes_the_last_sr_and_the_delay_since_it() -> None:
    stats = ReceptionStatistics(SSRC, 8000)
    feed_with_delays(stats, [0, 0, 0])
    sr = SenderReport(
        ssrc=SSRC, ntp_timestamp=0xB705_2000_1234_5678, rtp_timestamp=0, packet_count=3,
        octet_count=480,
    )
    stats.receive_sender_report(sr, now=10.0)
    block = stats.report_block(now=11.5)
    assert block is not None
    assert block.last_sr == 0x2000_1234
    assert block.delay_since_last_sr == 98304  # 1.5 s in 1/65536 s


def test_round_trip_time_matches_the_example_of_rfc_3550_section_6_4_1() -> None:
    # RFC 3550 §6.4.1 figure: A=0xb710:8000 (46864.500 s), LSR=0xb705:2000 (46853.125 s),
    # DLSR=0x0005:4000 (5.250 s): A-LSR-DLSR = 0x0006:2000 = 6.125 s
    block = ReportBlock(
        ssrc=1, fraction_lost=0, packets_lost=0, highest_sequence=0, jitter=0,
        last_sr=0xB705_2000, delay_since_last_sr=0x0005_4000,
    )
    assert round_trip_time_s(block, 0xB710_8000 << 16) == 6.125
    unanswered = ReportBlock(ssrc=1, fraction_lost=0, packets_lost=0, highest_sequence=0, jitter=0)
    assert round_trip_time_s(unanswered, 0xB710_8000 << 16) is None


def test_round_trip_time_from_a_real_baresip_exchange_is_a_loopback_delay() -> None:
    peer_sr = parse_compound((VECTORS / "baresip_rtcp_sr_sdes_peer.bin").read_bytes())[0]
    answer = parse_compound((VECTORS / "baresip_rtcp_sr_sdes_with_lsr.bin").read_bytes())[0]
    assert isinstance(peer_sr, SenderReport) and isinstance(answer, SenderReport)
    block = answer.reports[0]
    assert block.ssrc == peer_sr.ssrc
    assert block.last_sr == compact_ntp(peer_sr.ntp_timestamp)
    arrival_unix_s = 1795611475.279752  # pcap time of the answer on the loopback capture
    rtt = round_trip_time_s(block, ntp_timestamp(arrival_unix_s))
    assert rtt is not None and 0 <= rtt < 0.005


def test_jitter_of_the_sipp_g711a_capture_agrees_with_tshark() -> None:
    # `tshark -r g711a.pcap -q -d udp.port==2006,rtp -z rtp,streams` (Wireshark 4.0.17):
    # 236 packets, 0 lost, max jitter 0.829 ms, mean jitter 0.350 ms.
    datagrams = read_udp(VECTORS / "g711a.pcap")
    stats = ReceptionStatistics(0xDEE0EE8F, 8000)
    jitters_ms = []
    for datagram in datagrams:
        assert stats.receive(RtpPacket.parse(datagram.payload), datagram.time_s) in (
            SeqStatus.VALID, SeqStatus.PROBATION
        )
        jitters_ms.append(stats.jitter_s * 1000)
    assert max(jitters_ms) == pytest.approx(0.829, abs=0.03)
    assert sum(jitters_ms) / len(jitters_ms) == pytest.approx(0.350, abs=0.03)
    assert (stats.expected, stats.received, stats.cumulative_lost) == (235, 235, 0)
