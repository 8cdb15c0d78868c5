"""JitterBuffer: order, duplicates, gaps, lateness, resets, bounds and adaptive delay (sans-I/O)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.media.jitter import Gap, JitterBuffer
from relay.media.rtp import RtpPacket
from tests.support.pcap import read_udp

VECTORS = Path(__file__).resolve().parents[4] / "tests" / "vectors" / "rtp"
SAMPLES = 160  # 20 ms at 8 kHz
SSRC = 0xCAFE


def packet(index: int, *, start: int = 0, ts_start: int = 0, ssrc: int = SSRC, marker: bool = False) -> RtpPacket:
    return RtpPacket(
        payload_type=0,
        sequence_number=(start + index) % 65536,
        timestamp=(ts_start + index * SAMPLES) % 2**32,
        ssrc=ssrc,
        payload=bytes([index % 256]),
        marker=marker,
    )


def drain(buffer: JitterBuffer, now: float) -> list[RtpPacket | Gap]:
    out: list[RtpPacket | Gap] = []
    while (item := buffer.pop(now)) is not None:
        out.append(item)
    return out


def assert_accounted(buffer: JitterBuffer) -> None:
    s = buffer.stats
    assert s.received == (
        s.played + s.duplicates + s.late + s.discarded + s.flushed + s.rejected + len(buffer)
    )


# --- the ordering law --------------------------------------------------------------------------


@given(
    start=st.integers(0, 0xFFFF),
    ts_start=st.integers(0, 2**32 - 1),
    count=st.integers(1, 60),
    data=st.data(),
)
def test_any_arrival_order_within_capacity_plays_in_sequence_with_gaps_where_missing(
    start: int, ts_start: int, count: int, data: st.DataObject
) -> None:
    present = data.draw(st.sets(st.integers(0, count - 1), min_size=1), label="present")
    duplicates = data.draw(st.lists(st.sampled_from(sorted(present)), max_size=10), label="dups")
    arrivals = data.draw(st.permutations([*present, *duplicates]), label="arrivals")
    buffer = JitterBuffer(8000, capacity=64, max_timestamp_jump_ms=100_000)

    for index in arrivals:
        buffer.push(packet(index, start=start, ts_start=ts_start), now=0.0)
    out = drain(buffer, now=1e6)

    first, last = min(present), max(present)
    assert [item.sequence_number for item in out] == [
        (start + i) % 65536 for i in range(first, last + 1)
    ]
    for i, item in zip(range(first, last + 1), out, strict=True):
        if i in present:
            assert isinstance(item, RtpPacket) and item.payload == bytes([i % 256])
        else:
            assert isinstance(item, Gap)
            assert item.timestamp == (ts_start + i * SAMPLES) % 2**32
            assert item.samples == SAMPLES or len(present) < 2
    assert buffer.stats.played == len(present)
    assert buffer.stats.duplicates == len(duplicates)
    assert buffer.stats.concealed == last - first + 1 - len(present)
    assert_accounted(buffer)


@settings(max_examples=50)
@given(
    seed=st.integers(0, 2**32),
    start=st.integers(0, 0xFFFF),
    max_jitter_ms=st.integers(0, 120),
    loss=st.floats(0, 0.2),
)
def test_a_jittery_lossy_stream_in_real_time_plays_in_order_without_duplicates(
    seed: int, start: int, max_jitter_ms: int, loss: float
) -> None:
    rng = random.Random(seed)
    arrivals = sorted(
        (i * 0.020 + rng.uniform(0, max_jitter_ms / 1000), i)
        for i in range(300)
        if rng.random() >= loss or i == 0
    )
    buffer = JitterBuffer(8000)
    out: list[RtpPacket | Gap] = []
    now, next_arrival = 0.0, 0
    while now < 8.0:
        while next_arrival < len(arrivals) and arrivals[next_arrival][0] <= now:
            buffer.push(packet(arrivals[next_arrival][1], start=start), now)
            next_arrival += 1
        out.extend(drain(buffer, now))
        now += 0.005
    seqs = [item.sequence_number for item in out]
    steps = [(b - a) % 65536 for a, b in zip(seqs, seqs[1:], strict=False)]
    assert set(steps) <= {1, 2}  # in order, no duplicate; a slot is skipped only when discarded
    assert steps.count(2) == buffer.stats.discarded
    played = {item.sequence_number for item in out if isinstance(item, RtpPacket)}
    pushed = {(start + i) % 65536 for _, i in arrivals}
    assert played <= pushed
    assert len(played) == buffer.stats.played
    assert buffer.stats.played + buffer.stats.late + buffer.stats.discarded == len(arrivals)
    assert_accounted(buffer)
    assert buffer.playout_delay_ms <= 200 + 20 + 1e-6


# --- timing --------------------------------------------------------------------------------------


def test_a_steady_stream_plays_each_packet_the_minimum_delay_after_it_arrives() -> None:
    buffer = JitterBuffer(8000, min_delay_ms=20)
    assert buffer.get_timer() is None
    played = []
    for i in range(5):
        now = i * 0.020
        buffer.push(packet(i), now)
        played.append([p.sequence_number for p in drain(buffer, now)])
        assert buffer.get_timer() == pytest.approx(now + 0.020)  # packet i, 20 ms after arrival
    assert played == [[], [0], [1], [2], [3]]
    assert buffer.pop(now=0.0999) is None
    assert buffer.pop(now=0.1000) == packet(4)
    assert (buffer.target_delay_ms, buffer.jitter_ms) == (20, 0)


def test_a_missing_packet_becomes_a_gap_once_its_slot_has_passed() -> None:
    buffer = JitterBuffer(8000, min_delay_ms=20)
    for i in (0, 1, 3):
        buffer.push(packet(i), now=i * 0.020)
    assert [p.sequence_number for p in drain(buffer, 0.040)] == [0, 1]
    assert buffer.get_timer() == pytest.approx(0.060)  # slot 2 comes 20 ms after slot 1
    assert buffer.pop(0.059) is None
    gap = buffer.pop(0.060)
    assert gap == Gap(sequence_number=2, timestamp=2 * SAMPLES, samples=SAMPLES)
    assert buffer.pop(0.060) is None
    assert [p.sequence_number for p in drain(buffer, 0.080)] == [3]


def test_released_on_arrival_in_order_packets_leave_at_once_and_missing_ones_wait() -> None:
    buffer = JitterBuffer(8000, min_delay_ms=40, release_on_arrival=True)
    for i in (0, 1):
        buffer.push(packet(i), now=i * 0.020)
        assert buffer.get_timer() == i * 0.020  # due at once, not 40 ms later
        assert [p.sequence_number for p in drain(buffer, i * 0.020)] == [i]
    buffer.push(packet(3), now=0.060)
    # Packet 3 is here but 2 is not: 2 is waited for until its slot, the 40 ms floor after
    # when it should have come.
    assert buffer.get_timer() == pytest.approx(0.080) and drain(buffer, 0.079) == []
    assert [item.sequence_number for item in drain(buffer, 0.080)] == [2, 3]
    assert buffer.playout_time(4 * SAMPLES) == pytest.approx(0.120)
    assert_accounted(buffer)


def test_released_on_arrival_the_delay_comes_down_without_dropping_audio() -> None:
    rng = random.Random(1)
    buffer = JitterBuffer(8000, min_delay_ms=0, max_delay_ms=160, release_on_arrival=True)
    run_stream(buffer, rng, 0, 500, jitter_ms=100)
    high = buffer.playout_delay_ms
    run_stream(buffer, rng, 500, 1500, jitter_ms=0)
    assert buffer.playout_delay_ms < high - 40 and buffer.stats.discarded == 0


def test_running_dry_returns_none_rather_than_inventing_gaps() -> None:
    buffer = JitterBuffer(8000)
    buffer.push(packet(0), now=0.0)
    assert len(drain(buffer, 1.0)) == 1
    assert drain(buffer, 5.0) == []
    assert buffer.get_timer() is None
    assert buffer.stats.concealed == 0


def test_a_packet_after_its_slot_was_concealed_is_late_and_delays_playout() -> None:
    buffer = JitterBuffer(8000, min_delay_ms=20)
    for i in (0, 1, 3):
        buffer.push(packet(i), now=i * 0.020)
    assert len(drain(buffer, 0.060)) == 3  # 0, 1, gap 2
    delay_before = buffer.playout_delay_ms
    buffer.push(packet(2), now=0.130)  # 90 ms after it was sent
    assert buffer.stats.late == 1
    assert buffer.playout_delay_ms > delay_before
    assert [item.sequence_number for item in drain(buffer, 10.0)] == [3]
    assert_accounted(buffer)


def test_a_retransmitted_packet_already_played_is_a_duplicate_not_late() -> None:
    buffer = JitterBuffer(8000)
    for i in range(3):
        buffer.push(packet(i), now=i * 0.020)
    drain(buffer, 1.0)
    buffer.push(packet(1), now=1.0)
    assert (buffer.stats.duplicates, buffer.stats.late) == (1, 0)


# --- wraparound, resets, bounds ---------------------------------------------------------------


def test_sequence_and_timestamp_wraps_play_in_order() -> None:
    buffer = JitterBuffer(8000)
    for i in [0, 2, 1, 4, 3, 5]:
        buffer.push(packet(i, start=65533, ts_start=2**32 - 2 * SAMPLES), now=0.0)
    assert [p.sequence_number for p in drain(buffer, 1.0)] == [65533, 65534, 65535, 0, 1, 2]


def test_an_ssrc_change_flushes_and_starts_again() -> None:
    buffer = JitterBuffer(8000)
    for i in range(3):
        buffer.push(packet(i), now=0.0)
    buffer.push(packet(0, start=9000, ssrc=0xBEEF), now=0.01)
    assert (buffer.stats.resets, buffer.stats.flushed) == (1, 3)
    assert drain(buffer, 1.0) == [packet(0, start=9000, ssrc=0xBEEF)]
    assert_accounted(buffer)


def test_a_sequence_jump_is_believed_only_when_the_next_packet_follows_it() -> None:
    buffer = JitterBuffer(8000)
    buffer.push(packet(0), now=0.0)
    buffer.push(packet(20000), now=0.02)  # a stray: held, not believed
    buffer.push(packet(1), now=0.02)
    assert buffer.stats.rejected == 1
    buffer.push(packet(30000), now=0.04)
    buffer.push(packet(30001), now=0.06)  # confirmed: the sender restarted
    assert buffer.stats.resets == 1
    out = [p.sequence_number for p in drain(buffer, 1.0)]
    assert out == [30000, 30001]
    assert buffer.stats.flushed == 2
    assert_accounted(buffer)


def test_a_timestamp_jump_with_contiguous_sequence_numbers_resets_playout() -> None:
    buffer = JitterBuffer(8000, max_timestamp_jump_ms=1000)
    buffer.push(packet(0), now=0.0)
    buffer.push(packet(1), now=0.02)
    jumped = RtpPacket(payload_type=0, sequence_number=2, timestamp=8000 * 3600, ssrc=SSRC)
    buffer.push(jumped, now=0.04)
    assert buffer.stats.resets == 1
    assert buffer.get_timer() == pytest.approx(0.04 + 0.020)
    assert drain(buffer, 0.06) == [jumped]


def test_a_marker_on_an_empty_buffer_starts_a_talkspurt_without_concealing_the_silence() -> None:
    buffer = JitterBuffer(8000)
    for i in range(3):
        buffer.push(packet(i), now=i * 0.02)
    drain(buffer, 1.0)
    # 2 s of silence suppression: 100 slots skipped in timestamp, 5 in sequence (DTMF, say)
    spurt = RtpPacket(payload_type=0, sequence_number=8, timestamp=102 * SAMPLES, ssrc=SSRC,
                      marker=True)
    buffer.push(spurt, now=2.5)
    assert drain(buffer, 2.5 + 0.020) == [spurt]
    assert buffer.stats.concealed == 0


def test_memory_stays_bounded_under_a_flood_of_random_sequence_numbers() -> None:
    rng = random.Random(4)
    buffer = JitterBuffer(8000, capacity=32)
    for i in range(20_000):
        seq = rng.randrange(65536)
        buffer.push(RtpPacket(payload_type=0, sequence_number=seq, timestamp=seq * SAMPLES,
                              ssrc=SSRC), now=i * 0.001)
        assert len(buffer) <= 32 + 1
        if i % 7 == 0:
            drain(buffer, i * 0.001)
    assert_accounted(buffer)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="need 0 <= min_delay_ms <= max_delay_ms, got 50, 20"):
        JitterBuffer(8000, min_delay_ms=50, max_delay_ms=20)
    with pytest.raises(ValueError, match="capacity must be at least 2, got 1"):
        JitterBuffer(8000, capacity=1)


# --- adaptation --------------------------------------------------------------------------------


def run_stream(buffer: JitterBuffer, rng: random.Random, first: int, count: int, jitter_ms: float) -> None:
    for i in range(first, first + count):
        now = i * 0.020 + rng.uniform(0, jitter_ms / 1000)
        buffer.push(packet(i), now)
        drain(buffer, now)


def test_target_delay_follows_the_jitter_within_bounds_and_comes_back_down() -> None:
    rng = random.Random(1)
    buffer = JitterBuffer(8000, min_delay_ms=20, max_delay_ms=160)
    run_stream(buffer, rng, 0, 250, jitter_ms=0)
    assert buffer.target_delay_ms == 20
    run_stream(buffer, rng, 250, 500, jitter_ms=100)
    assert 60 < buffer.target_delay_ms <= 160
    high = buffer.playout_delay_ms
    assert high > 60
    run_stream(buffer, rng, 750, 1500, jitter_ms=0)
    assert buffer.target_delay_ms == 20
    assert buffer.playout_delay_ms < high - 40
    assert buffer.stats.discarded > 0  # latency comes down by dropping a frame now and then


def test_delay_never_exceeds_the_maximum_even_for_very_late_packets() -> None:
    buffer = JitterBuffer(8000, min_delay_ms=20, max_delay_ms=100)
    for i in range(100):
        delay = 0.5 if i % 10 == 5 else 0.0
        buffer.push(packet(i), i * 0.020 + delay)
        drain(buffer, i * 0.020)
        assert buffer.playout_delay_ms <= 100 + 1e-6


# --- a real capture ---------------------------------------------------------------------------


def test_sipp_g711a_capture_plays_out_completely_at_its_30_ms_ptime() -> None:
    datagrams = read_udp(VECTORS / "g711a.pcap")
    t0 = datagrams[0].time_s
    buffer = JitterBuffer(8000)
    out: list[RtpPacket | Gap] = []
    for datagram in datagrams:
        now = datagram.time_s - t0
        buffer.push(RtpPacket.parse(datagram.payload), now)
        out.extend(drain(buffer, now))
    out.extend(drain(buffer, 100.0))
    assert len(out) == 236 and all(isinstance(item, RtpPacket) for item in out)
    assert buffer.stats.played == 236


def test_a_gap_in_the_g711a_capture_is_sized_by_its_30_ms_packets() -> None:
    datagrams = read_udp(VECTORS / "g711a.pcap")[:20]
    t0 = datagrams[0].time_s
    buffer = JitterBuffer(8000)
    dropped = RtpPacket.parse(datagrams[10].payload)
    for index, datagram in enumerate(datagrams):
        if index != 10:
            buffer.push(RtpPacket.parse(datagram.payload), datagram.time_s - t0)
    gaps = [item for item in drain(buffer, 100.0) if isinstance(item, Gap)]
    assert gaps == [Gap(dropped.sequence_number, dropped.timestamp, 240)]
