"""PCM16 resampling: frequencies kept, aliases rejected, chunking invisible, errors exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.media.resample import SUPPORTED_RATES_HZ, ResampleStream, resample
from tests.unit.relay.media.codecs.audio_checks import (
    band_energy_db,
    dominant_frequency_hz,
    read_wav,
    snr_db,
)

PAIRS = [(a, b) for a, b in itertools.permutations(SUPPORTED_RATES_HZ, 2)]


def _tone(rate_hz: int, frequency_hz: float, seconds: float = 1.0) -> np.ndarray:
    n = np.arange(int(rate_hz * seconds))
    return (12000 * np.sin(2 * np.pi * frequency_hz * n / rate_hz)).astype("<i2")


def _stream_in_chunks(stream: ResampleStream, pcm: bytes, chunk_bytes: int) -> bytes:
    out = [stream.process(pcm[i : i + chunk_bytes]) for i in range(0, len(pcm), chunk_bytes)]
    return b"".join(out) + stream.flush()


def _assert_same_audio(streamed: bytes, whole: bytes) -> None:
    """Same length, and no sample more than 2 LSB off: a click would be thousands."""
    # libsoxr's float blocks fall differently when fed in chunks, so rounding differs a little.
    a, b = (np.frombuffer(x, dtype="<i2").astype(int) for x in (streamed, whole))
    assert len(a) == len(b)
    assert np.max(np.abs(a - b)) <= 2


@pytest.mark.parametrize(("from_hz", "to_hz"), PAIRS)
def test_a_1_khz_tone_keeps_its_frequency_and_length(from_hz: int, to_hz: int) -> None:
    out = np.frombuffer(resample(_tone(from_hz, 1000).tobytes(), from_hz, to_hz), dtype="<i2")
    assert abs(len(out) - to_hz) <= 1
    assert dominant_frequency_hz(out, to_hz) == pytest.approx(1000, abs=0.5)


@pytest.mark.parametrize(("from_hz", "to_hz"), PAIRS)
def test_chunked_streaming_equals_converting_all_at_once(from_hz: int, to_hz: int) -> None:
    pcm = _tone(from_hz, 440).tobytes()
    whole = resample(pcm, from_hz, to_hz)
    frame_bytes = from_hz // 50 * 2  # 20 ms
    _assert_same_audio(_stream_in_chunks(ResampleStream(from_hz, to_hz), pcm, frame_bytes), whole)


@settings(max_examples=25, deadline=None)
@given(chunk_samples=st.lists(st.integers(1, 700), min_size=1, max_size=40))
def test_any_chunking_gives_the_same_audio(chunk_samples: list[int]) -> None:
    pcm = _tone(8000, 700, 0.5).tobytes()
    whole = resample(pcm, 8000, 48000)
    stream, out, offset = ResampleStream(8000, 48000), [], 0
    for size in itertools.cycle(chunk_samples):
        if offset >= len(pcm):
            break
        out.append(stream.process(pcm[offset : offset + 2 * size]))
        offset += 2 * size
    _assert_same_audio(b"".join(out) + stream.flush(), whole)


def test_the_8_to_16_khz_round_trip_keeps_telephone_audio() -> None:
    rate_hz, sweep = read_wav("sweep_100_3800hz_8k.wav")
    up = resample(sweep.tobytes(), 8000, 16000)
    back = np.frombuffer(resample(up, 16000, 8000), dtype="<i2")
    assert snr_db(sweep, back, max_lag=32, skip=800) > 30
    assert rate_hz == 8000


@pytest.mark.parametrize(("from_hz", "to_hz"), [(48000, 8000), (16000, 8000), (48000, 16000)])
def test_downsampling_rejects_what_would_alias(from_hz: int, to_hz: int) -> None:
    above_nyquist = _tone(from_hz, to_hz * 0.75)  # 6 kHz into 8 kHz would fold to 2 kHz
    out = np.frombuffer(resample(above_nyquist.tobytes(), from_hz, to_hz), dtype="<i2")
    steady = out[to_hz // 10 : -to_hz // 10].astype(float)  # skip the tone's on/off clicks
    assert np.sqrt(np.mean(steady**2)) < 12000 * 10 ** (-60 / 20)


def test_upsampling_adds_no_images_above_the_old_band() -> None:
    out = np.frombuffer(resample(_tone(8000, 3000).tobytes(), 8000, 48000), dtype="<i2")
    assert band_energy_db(out, 48000, 4500, 24000) < -60  # the 5 kHz image of 3 kHz


def test_equal_rates_pass_audio_through_untouched() -> None:
    pcm = _tone(16000, 1000, 0.02).tobytes()
    stream = ResampleStream(16000, 16000)
    assert stream.process(pcm) == pcm and stream.flush() == b""
    assert stream.pending_samples == 0


def test_a_stream_reports_the_audio_it_holds_back() -> None:
    """The hold-back, measured: 8 -> 16 kHz owes 2 output samples per input sample; what it owes
    and has not yet returned is held back, and the flush returns exactly that much. An impulse at
    input sample 400 peaks at output sample 800: the filter shifts nothing, so what is held back
    is the whole latency."""
    stream = ResampleStream(8000, 16000)
    impulse = np.zeros(4000, dtype="<i2")  # 0.5 s
    impulse[400] = 20000
    pcm, out = impulse.tobytes(), []
    owed = released = 0
    held: list[float] = []
    for start in range(0, len(pcm), 320):  # 20 ms chunks of 160 samples
        chunk = pcm[start : start + 320]
        owed += len(chunk) // 2 * 2  # 16 kHz out per 8 kHz in
        out.append(stream.process(chunk))
        released += len(out[-1]) // 2
        assert stream.pending_samples == owed - released
        held.append(stream.pending_samples)
    assert held[0] == 320  # the first 20 ms gives nothing out (libsoxr fills a block first)
    assert len(set(held)) > 2  # it swings as blocks are released, not a constant
    out.append(stream.flush())
    assert len(out[-1]) // 2 == owed - released == held[-1]
    assert int(np.argmax(np.abs(np.frombuffer(b"".join(out), dtype="<i2")))) == 800


@pytest.mark.parametrize("rate_hz", [11025, 44100, 0])
def test_unsupported_rates_are_rejected(rate_hz: int) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^unsupported sample rate {rate_hz} Hz \(supported: 8000, 16000, 24000, 48000\)$",
    ):
        ResampleStream(rate_hz, 16000)


def test_an_unknown_quality_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"^unknown resampler quality 'best' \(one of QQ, LQ"):
        ResampleStream(8000, 16000, quality="best")


def test_half_a_sample_is_rejected() -> None:
    with pytest.raises(ValueError, match="^PCM16 must be whole 16-bit samples, got 3 bytes$"):
        ResampleStream(8000, 16000).process(b"\x00\x00\x00")


def test_nothing_may_follow_a_flush() -> None:
    stream = ResampleStream(8000, 16000)
    stream.flush()
    with pytest.raises(ValueError, match="^resample stream already flushed$"):
        stream.process(bytes(320))
