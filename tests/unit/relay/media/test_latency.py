"""Added latency each way: audio leaves on arrival, and nothing is lost or bunched for it.

Simulated time only: `drive` and `play_chunks` do what the asyncio adapter does, at given times.
"""

from __future__ import annotations

import random
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.media.call_media import MarkPlayed
from relay.media.pacing import MAX_LEAD_S, MIN_SPACING_S
from relay.media.playout import MIN_INTERVAL_S, TIMER_SLACK_S
from relay.media.rtcp import SenderReport, is_rtcp, parse_compound
from relay.media.rtp import RtpPacket
from relay.sip.sdp.fields import Direction
from tests.unit.relay.media.test_call_media import (
    Caller,
    Run,
    drive,
    make,
    negotiated,
    play_chunks,
    service,
)

SILENCE = b"\xff" * 160  # μ-law: a Twilio agent's audio passes through to PCMU untouched


def chunk(index: int, size: int = 160) -> bytes:
    return bytes([index % 100 + 1]) * size  # never 0xff: told apart from silence


def sent_rtp(run: Run) -> list[tuple[float, RtpPacket]]:
    return [(t, RtpPacket.parse(d)) for t, d, _ in run.sent if not is_rtcp(d)]


def leads_s(packets: list[tuple[float, RtpPacket]]) -> np.ndarray:
    """How far each packet left ahead of the RTP clock the first packet set."""
    t0, ts0 = packets[0][0], packets[0][1].timestamp
    return np.array([(p.timestamp - ts0) % 2**32 / 8000 - (t - t0) for t, p in packets])


# --- agent -> caller ---------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    phase=st.floats(0, 0.02),
    jitter=st.lists(st.floats(0, 0.008), min_size=60, max_size=60),
    chunk_ms=st.sampled_from([20, 30, 40]),
)
def test_a_real_time_agent_with_jitter_is_sent_on_arrival_without_gaps(
    phase: float, jitter: list[float], chunk_ms: int
) -> None:
    size = chunk_ms * 8
    chunks = [(0.1 + phase + k * chunk_ms / 1000 + j, chunk(k, size)) for k, j in enumerate(jitter)]
    run = play_chunks(make(), chunks, 0.2 + len(chunks) * chunk_ms / 1000)
    packets = sent_rtp(run)
    audio = [(i, t, p) for i, (t, p) in enumerate(packets) if p.payload != SILENCE]
    assert b"".join(p.payload for _, _, p in audio) == b"".join(c for _, c in chunks)
    first = audio[0][0]
    assert [i for i, _, _ in audio] == list(range(first, first + len(audio)))  # no gap
    # The packet with each chunk's first sample leaves when the chunk arrives, or the spacing
    # after the packet before it: nothing waits for a grid.
    for k, (at, _) in enumerate(chunks):
        index, sent_at, _ = audio[k * chunk_ms // 20]
        expected = max(at, packets[index - 1][0] + MIN_SPACING_S)
        assert sent_at == pytest.approx(expected, abs=TIMER_SLACK_S + 1e-9)
    if chunk_ms == 20:  # chunks never come within the spacing of each other: p99 is 0
        assert all(audio[k][1] == at for k, (at, _) in enumerate(chunks) if k)
    steps = {(b.timestamp - a.timestamp) % 2**32 for (_, a), (_, b) in pairwise(packets)}
    assert steps == {160}  # continuous: to the phone, a packet a little early or late
    assert np.abs(leads_s(packets)).max() <= MAX_LEAD_S + 1e-9


@pytest.mark.parametrize("seed", range(5))
def test_audio_an_agent_sends_ahead_of_real_time_is_paced_at_20_ms(seed: int) -> None:
    rng = random.Random(seed)
    # Pipecat-style: 40 ms chunks every 20 ms (twice real time), a little jitter.
    chunks = [(0.1037 + 0.02 * k + rng.uniform(0, 0.003), chunk(k, 320)) for k in range(25)]
    run = play_chunks(make(), chunks, 1.5)
    packets = sent_rtp(run)
    audio = [(t, p) for t, p in packets if p.payload != SILENCE]
    assert b"".join(p.payload for _, p in audio) == b"".join(c for _, c in chunks)
    steps = np.diff([t for t, _ in audio])
    assert np.allclose(steps[2:], 0.02, atol=TIMER_SLACK_S)  # queued ahead: the grid paces it
    # Before that, the second chunk may find the queue empty and go early, as a real-time
    # agent's would; never closer than the spacing, nor beyond the lead.
    assert len(audio) == 50 and steps.min() >= MIN_SPACING_S - 1e-9
    assert leads_s(packets).max() <= MAX_LEAD_S + 1e-9


def test_an_agent_faster_than_real_time_is_never_sent_more_than_the_lead_ahead() -> None:
    chunks = [(0.1 + 0.015 * k, chunk(k)) for k in range(100)]  # 20 ms every 15 ms
    run = play_chunks(make(), chunks, 3.0)
    packets = sent_rtp(run)
    assert leads_s(packets).max() <= MAX_LEAD_S + 1e-9
    assert [p.payload for _, p in packets if p.payload != SILENCE] == [c for _, c in chunks]


def test_many_agent_turns_leave_the_rtp_clock_on_real_time() -> None:
    rng = random.Random(3)
    chunks, at = [], 0.1
    for turn in range(30):  # real-time turns of 10 to 40 chunks, each at a random grid phase
        at += rng.uniform(0.3, 0.8)
        for k in range(rng.randint(10, 40)):
            chunks.append((at + 0.02 * k + rng.uniform(0, 0.008), chunk(turn)))
        at += 0.02 * 40
    media = make(wall_clock_offset_s=1_800_000_000.0)
    run = play_chunks(media, chunks, at + 1.0)
    packets = sent_rtp(run)
    leads = leads_s(packets)
    assert np.abs(leads).max() <= MAX_LEAD_S + 1e-9
    assert abs(leads[-1]) < 1e-6  # a second of silence gave every early start back
    reports = [(t, parse_compound(d)[0]) for t, d, _ in run.sent if is_rtcp(d)]
    assert len(reports) >= 5
    for t, report in reports:  # the SR's RTP timestamp tells the time the packets keep
        assert isinstance(report, SenderReport)
        last_t, last = max(((pt, p) for pt, p in packets if pt <= t), key=lambda x: x[0])
        expected = last.timestamp + (t - last_t) * 8000
        assert abs((report.rtp_timestamp - expected + 2**31) % 2**32 - 2**31) <= 8000 * 0.011


def test_a_mark_after_audio_sent_on_arrival_is_reported_at_once() -> None:
    media = make()
    run = drive(media, 0.013 - 1e-9)
    media.play(chunk(0), 0.013)
    media.mark("hello")
    service(media, 0.013, run)
    assert run.events == [MarkPlayed("hello")]
    assert [(t, p.payload) for t, p in sent_rtp(run)][-1] == (0.013, chunk(0))


def test_on_hold_agent_audio_is_discarded_on_the_grid_and_nothing_is_sent() -> None:
    media = make()
    media.update(negotiated(direction=Direction.RECVONLY), 0.0)
    chunks = [(0.013 + 0.02 * k, chunk(k)) for k in range(10)]
    run = play_chunks(media, chunks, 0.5)
    assert sent_rtp(run) == [] and media.stats.frames_discarded_on_hold == 10


# --- caller -> agent ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    jitter=st.lists(st.floats(0, 0.005), min_size=60, max_size=60),
    ptime_ms=st.sampled_from([20, 30, 40, 60]),
    codec=st.sampled_from(["PCMA", "PCMU"]),
)
def test_packets_of_any_ptime_with_jitter_reach_the_agent_on_arrival_with_nothing_filled(
    jitter: list[float], ptime_ms: int, codec: str
) -> None:
    caller = Caller(codec, ptime_ms=ptime_ms)
    arrivals = [(0.1 + k * ptime_ms / 1000 + j, caller.next()) for k, j in enumerate(jitter)]
    media = make(codec)
    run = drive(media, arrivals[-1][0] + ptime_ms / 1000, arrivals)
    s = media.feed_stats
    assert (s.filled_frames, s.gaps_concealed, s.late_trimmed_bytes) == (0, 0, 0)
    assert media.jitter_stats.played == 60 and len(run.frames) == 60 * ptime_ms // 20
    # Each frame leaves when the packet that completes it arrives, or 10 ms after the frame
    # before it (a longer packet holds several frames): never later.
    frames_per_packet = ptime_ms / 20
    last = -1.0
    for index, (t, _) in enumerate(run.frames):
        arrived = arrivals[int((index + 1) / frames_per_packet - 1e-9)][0]
        assert t == pytest.approx(max(arrived, last + MIN_INTERVAL_S), abs=TIMER_SLACK_S + 1e-9)
        last = t


def test_a_caller_that_stops_gets_fills_one_frame_per_20_ms_after_a_grace() -> None:
    caller = Caller()
    arrivals = [(0.013 + 0.02 * k + 0.004 * (k % 2), caller.next()) for k in range(10)]
    run = drive(make(), 1.0, arrivals)
    times = np.array([t for t, _ in run.frames])
    assert np.allclose(times[:10], [t for t, _ in arrivals])
    assert times[10] - (0.013 + 0.2) <= 0.010 + 0.004 + TIMER_SLACK_S  # the allowance
    assert np.allclose(np.diff(times[10:]), 0.02)
