"""PolyphaseResampleStream, the call path's resampler: frequency, delay, aliasing, chunking."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.media.resample import SUPPORTED_RATES_HZ, PolyphaseResampleStream
from tests.unit.relay.media.codecs.audio_checks import dominant_frequency_hz

PAIRS = list(itertools.permutations(SUPPORTED_RATES_HZ, 2))


def _tone(rate_hz: int, frequency_hz: float, seconds: float = 1.0) -> np.ndarray:
    n = np.arange(int(rate_hz * seconds))
    return (12000 * np.sin(2 * np.pi * frequency_hz * n / rate_hz)).astype("<i2")


def _run(stream: PolyphaseResampleStream, pcm: np.ndarray, chunk: int) -> np.ndarray:
    data = pcm.tobytes()
    out = b"".join(stream.process(data[i : i + 2 * chunk]) for i in range(0, len(data), 2 * chunk))
    return np.frombuffer(out, dtype="<i2")


@pytest.mark.parametrize(("from_hz", "to_hz"), PAIRS)
def test_20_ms_in_is_20_ms_out_and_the_tone_is_where_the_delay_says(
    from_hz: int, to_hz: int
) -> None:
    stream = PolyphaseResampleStream(from_hz, to_hz)
    out = _run(stream, _tone(from_hz, 1000), from_hz // 50)
    assert len(out) == to_hz
    assert stream.delay_ms <= 2.0  # the budget: issue 4 wants < 5 ms added at p99
    t = np.arange(len(out)) / to_hz - stream.delay_ms / 1000
    ideal = 12000 * np.sin(2 * np.pi * 1000 * t)
    assert np.abs(out[to_hz // 50 :] - ideal[to_hz // 50 :]).max() < 6  # a few LSB


@pytest.mark.parametrize(("from_hz", "to_hz"), PAIRS)
def test_a_tone_keeps_its_frequency(from_hz: int, to_hz: int) -> None:
    out = _run(PolyphaseResampleStream(from_hz, to_hz), _tone(from_hz, 700), from_hz // 50)
    assert dominant_frequency_hz(out[to_hz // 10 :], to_hz) == pytest.approx(700, abs=0.5)


@pytest.mark.parametrize(("from_hz", "to_hz"), [(16000, 8000), (48000, 8000), (48000, 16000)])
def test_downsampling_rejects_what_would_alias(from_hz: int, to_hz: int) -> None:
    out = _run(PolyphaseResampleStream(from_hz, to_hz), _tone(from_hz, to_hz * 0.75), 960)
    assert np.sqrt(np.mean(out[to_hz // 10 :].astype(float) ** 2)) < 12000 * 10 ** (-55 / 20)


def test_telephone_band_is_flat_to_3_4_khz() -> None:
    out = _run(PolyphaseResampleStream(16000, 8000), _tone(16000, 3400), 320)
    level = np.sqrt(np.mean(out[800:].astype(float) ** 2)) / (12000 / np.sqrt(2))
    assert 20 * np.log10(level) > -0.5


@pytest.mark.parametrize("frequency_hz", [300, 1000, 2000, 3000, 3400])
def test_the_8_to_16_to_8_khz_round_trip_keeps_telephone_speech_within_1_db(
    frequency_hz: int,
) -> None:
    up = _run(PolyphaseResampleStream(8000, 16000), _tone(8000, frequency_hz), 160)
    back = _run(PolyphaseResampleStream(16000, 8000), up, 320)
    level = np.sqrt(np.mean(back[800:].astype(float) ** 2)) / (12000 / np.sqrt(2))
    assert abs(20 * np.log10(level)) < 1.0
    assert dominant_frequency_hz(back[800:], 8000) == pytest.approx(frequency_hz, abs=0.5)


@settings(max_examples=40, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    chunks=st.lists(st.integers(1, 500), min_size=1, max_size=30),
)
def test_any_chunking_gives_the_same_samples(pair: tuple[int, int], chunks: list[int]) -> None:
    from_hz, to_hz = pair
    pcm = _tone(from_hz, 440, 0.2)
    whole = np.frombuffer(PolyphaseResampleStream(from_hz, to_hz).process(pcm.tobytes()), "<i2")
    stream, parts, offset = PolyphaseResampleStream(from_hz, to_hz), [], 0
    for size in itertools.cycle(chunks):
        if offset >= len(pcm):
            break
        parts.append(stream.process(pcm[offset : offset + size].tobytes()))
        offset += size
    streamed = np.frombuffer(b"".join(parts), "<i2")
    assert len(streamed) == len(whole)
    assert np.abs(streamed.astype(int) - whole).max() <= 1  # float rounding, no clicks


def test_equal_rates_pass_through_and_bad_input_is_refused() -> None:
    assert PolyphaseResampleStream(16000, 16000).process(b"\x01\x02") == b"\x01\x02"
    assert str(PolyphaseResampleStream(8000, 48000)) == "resample 8k->48k"
    with pytest.raises(ValueError, match="unsupported sample rate 11025 Hz"):
        PolyphaseResampleStream(11025, 8000)
    with pytest.raises(ValueError, match="whole 16-bit samples"):
        PolyphaseResampleStream(8000, 16000).process(b"\x00")
