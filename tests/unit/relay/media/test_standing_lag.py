"""A lag that stands while a real-time agent feeds the queue is given back; nothing else is cut.

Simulated time only: `play_chunks` does what the asyncio adapter does, at given times.
"""

from __future__ import annotations

import random

import pytest

from relay.media.call_media import MarkPlayed
from relay.media.pipeline import agent_format
from relay.media.playout import LAG_WINDOW_S, PlayoutQueue, StandingLag
from relay.sip.sdp.fields import Direction
from tests.unit.relay.media.test_call_media import (
    TWILIO,
    Run,
    drive,
    make,
    negotiated,
    play_chunks,
    service,
)
from tests.unit.relay.media.test_latency import SILENCE, sent_rtp

Chunks = list[tuple[float, bytes]]


def frame(index: int) -> bytes:
    """Return a 20 ms μ-law frame told apart from every other (and from silence)."""
    return bytes([index % 250, index // 250 % 250]) * 80


def real_time(start: float, count: int, jitter_s: float, seed: int, first: int = 0) -> Chunks:
    rng = random.Random(seed)
    return [(start + 0.02 * k + rng.uniform(0, jitter_s), frame(first + k)) for k in range(count)]


STALL_AT = 1.4037


def echo_after_stall(seed: int, seconds: float = 8.0) -> Chunks:
    """An echo agent: one frame per 20 ms, 0-3 ms late; a 50 ms stall of ours at ``STALL_AT``.

    The caller's frames that piled up during the stall reach it at once, and it answers them
    at once: three frames together, then one per 20 ms again.
    """
    before = real_time(0.1037, 66, 0.003, seed)  # the last one at STALL_AT
    burst = [(STALL_AT + 0.05, frame(66 + k)) for k in range(3)]
    return before + burst + real_time(STALL_AT + 0.07, int(seconds * 50), 0.003, seed, first=69)


def pipecat(seed: int, seconds: float) -> Chunks:
    """Utterances of 1-5 s as 40 ms chunks every 20 ms (2x real time), 0.5-2 s apart."""
    rng = random.Random(seed)
    chunks: Chunks = []
    at, index = 0.1, 0
    while at < seconds:
        for _ in range(rng.randint(25, 125)):
            chunks.append((at + rng.uniform(0, 0.003), frame(index) + frame(index + 1)))
            at, index = at + 0.02, index + 2
        at += rng.uniform(0.5, 2.0)
    return chunks


def delays_s(run: Run, chunks: Chunks) -> list[tuple[float, float]]:
    """Return (sent at, how long after its arrival) for each frame of agent audio sent."""
    arrived = {}
    for at, audio in chunks:
        for k in range(0, len(audio), 160):
            arrived[audio[k : k + 160]] = at
    return [(t, t - arrived[p.payload]) for t, p in sent_rtp(run) if p.payload != SILENCE]


def sent_audio(run: Run) -> list[bytes]:
    return [p.payload for _, p in sent_rtp(run) if p.payload != SILENCE]


def frames_of(chunks: Chunks) -> list[bytes]:
    audio = b"".join(c for _, c in chunks)
    return [audio[k : k + 160] for k in range(0, len(audio), 160)]


def is_subsequence(short: list[bytes], long: list[bytes]) -> bool:
    items = iter(long)
    return all(any(x == y for y in items) for x in short)


@pytest.mark.parametrize("seed", range(4))
def test_an_echo_agent_after_a_stall_gets_its_lag_back_within_a_few_seconds(seed: int) -> None:
    chunks = echo_after_stall(seed)
    media = make()
    run = play_chunks(media, chunks, chunks[-1][0] + 0.1)
    delays = delays_s(run, chunks)
    assert max(d for t, d in delays if t < STALL_AT) <= 0.010  # sent on arrival
    assert max(d for t, d in delays if t < STALL_AT + 1.0) >= 0.035  # then the stall's lag
    # It stands until a window has seen it, one frame goes, and less than a frame is left.
    assert min(d for t, d in delays if STALL_AT + 0.1 < t < STALL_AT + LAG_WINDOW_S) >= 0.030
    assert max(d for t, d in delays if t > STALL_AT + LAG_WINDOW_S + 0.5) <= 0.020 + 1e-9
    assert 1 <= media.stats.lag_frames_dropped <= 2
    sent = sent_audio(run)
    assert len(sent) == len(frames_of(chunks)) - media.stats.lag_frames_dropped
    assert is_subsequence(sent, frames_of(chunks))  # the rest in order
    assert run.events == []


def test_a_longer_standing_lag_is_given_back_in_one_cut() -> None:
    burst = [(0.1037, frame(k)) for k in range(6)]  # 100 ms stood
    chunks = burst + real_time(0.1237, 600, 0.003, 1, first=6)
    media = make()
    run = play_chunks(media, chunks, chunks[-1][0] + 0.1)
    delays = delays_s(run, chunks)
    assert max(d for t, d in delays if t > 10.0) <= 0.020 + 1e-9
    assert media.stats.lag_frames_dropped == 4  # what stood past a frame
    drops = [t for (t, d), (_, e) in zip(delays, delays[1:], strict=False) if e < d - 0.010]
    assert drops and max(drops) < 0.1037 + LAG_WINDOW_S + 0.2  # all of it, one window in


@pytest.mark.parametrize("seed", range(4))
def test_a_pipecat_agent_at_twice_real_time_is_never_cut(seed: int) -> None:
    chunks = pipecat(seed, 30.0)
    media = make()
    run = play_chunks(media, chunks, chunks[-1][0] + 10.0)
    assert media.stats.lag_frames_dropped == 0
    assert sent_audio(run) == frames_of(chunks)


@pytest.mark.parametrize(("seed", "chunk_ms"), [(0, 20), (1, 20), (2, 30), (3, 40)])
def test_a_real_time_agent_with_jitter_is_never_cut(seed: int, chunk_ms: int) -> None:
    rng = random.Random(seed)
    frames = [frame(k) for k in range(1500)]  # 30 s
    per_chunk = chunk_ms // 20
    chunks = [
        (0.1 + k * chunk_ms / 1000 + rng.uniform(0, 0.008), b"".join(frames[i : i + per_chunk]))
        for k, i in enumerate(range(0, len(frames), per_chunk))
    ]
    media = make()
    run = play_chunks(media, chunks, chunks[-1][0] + 0.2)
    assert media.stats.lag_frames_dropped == 0
    assert sent_audio(run) == frames


def test_a_greeting_held_while_ringing_is_not_lag() -> None:
    # Queued before the first tick (`RtpSession.start` plays what came while ringing), then the
    # agent goes on at real time: the queue stands at the greeting's length, by the agent's will.
    greeting = [(0.0, b"".join(frame(k) for k in range(100)))]
    chunks = greeting + real_time(0.02, 400, 0.003, 0, first=100)
    media = make()
    run = play_chunks(media, chunks, chunks[-1][0] + 2.2)
    assert media.stats.lag_frames_dropped == 0
    assert sent_audio(run) == frames_of(chunks)


def test_a_stall_after_a_held_greeting_gives_back_only_the_stall() -> None:
    greeting = [(0.0, b"".join(frame(k) for k in range(50)))]
    before = real_time(0.02, 150, 0.0, 0, first=50)  # real time, 1 s behind the greeting
    stall = [(3.0205, frame(200 + k)) for k in range(3)]  # then 40 ms more
    after = real_time(3.0405, 300, 0.003, 1, first=203)
    chunks = greeting + before + stall + after
    media = make()
    play_chunks(media, chunks, chunks[-1][0] + 1.2)
    assert media.stats.lag_frames_dropped in (1, 2)


def test_on_hold_a_standing_queue_drops_nothing() -> None:
    media = make()
    media.update(negotiated(direction=Direction.RECVONLY), 0.0)
    chunks = echo_after_stall(0, seconds=6.0)
    play_chunks(media, chunks, chunks[-1][0] + 0.1)
    assert media.stats.lag_frames_dropped == 0
    assert media.stats.frames_discarded_on_hold == len(frames_of(chunks))


def test_marks_after_dropped_audio_are_reported_played_in_order() -> None:
    chunks = echo_after_stall(2)
    media = make()
    run = Run()
    for index, (at, audio) in enumerate(chunks):
        drive(media, at - 1e-9, run=run)
        media.play(audio, at)
        media.mark(f"m{index}")
        service(media, at, run)
    drive(media, chunks[-1][0] + 0.2, run=run)
    assert media.stats.lag_frames_dropped >= 1
    assert run.events == [MarkPlayed(f"m{k}") for k in range(len(chunks))]


def test_a_dropped_frame_passes_its_marks_in_order() -> None:
    queue = PlayoutQueue(agent_format(TWILIO), max_ms=1000)
    queue.push(frame(0))
    queue.mark("a")
    queue.push(frame(1)[:80])
    queue.mark("b")
    queue.push(frame(1)[80:] + frame(2))
    queue.mark("c")
    assert queue.drop_frame() and queue.played_marks() == ["a"]
    assert queue.drop_frame() and queue.played_marks() == ["b"]
    assert queue.pop_frame() == frame(2) and queue.played_marks() == ["c"]
    assert not queue.drop_frame() and queue.queued_bytes == 0


def test_the_window_asks_for_steady_real_time_arrivals_and_a_standing_frame() -> None:
    def window(rate: float, gap_s: float = 0.0, queued: int = 320) -> int:
        lag = StandingLag(agent_format(TWILIO))
        lag.ticked(0, 0.0)  # the queue was once empty: the floor is 0
        dropped, at = 0, 0.0
        for k in range(int(LAG_WINDOW_S * 50) + 1):
            at = k * 0.02 + (gap_s if k > 50 else 0.0)
            lag.arrived(round(160 * rate), at)
            dropped = lag.ticked(queued, at)
        return dropped

    assert window(1.0) == 2  # the two frames that stood
    assert window(1.0, queued=200) == 1  # whole frames only
    assert window(0.8) and window(1.25)
    assert not window(0.7) and not window(1.3) and not window(2.0)
    assert not window(1.0, gap_s=0.1)  # restarted at the gap: too short yet
    assert not window(1.0, queued=159)  # less than a frame stood
