"""G.722: round-trip quality, frequency, sizes and per-object state (no golden bytes)."""

from __future__ import annotations

import numpy as np
import pytest

from relay.media.codecs import G722
from relay.media.codecs.g722 import G722Decoder, G722Encoder
from tests.unit.relay.media.codecs.audio_checks import (
    band_energy_db,
    dominant_frequency_hz,
    frames,
    read_wav,
    round_trip,
    snr_db,
)

FRAME_BYTES = G722.frame_bytes  # 320 samples at 16 kHz
START_UP = 1600  # 100 ms for the ADPCM predictors to settle


def test_a_20_ms_frame_is_160_bytes_and_the_rtp_clock_moves_160() -> None:
    payload = G722Encoder().encode(bytes(FRAME_BYTES))
    assert len(payload) == 160
    assert len(G722Decoder().decode(payload)) == FRAME_BYTES
    assert (G722.clock_rate_hz, G722.sample_rate_hz, G722.timestamp_increment) == (8000, 16000, 160)


def test_a_1_khz_tone_survives_with_high_snr() -> None:
    rate_hz, samples = read_wav("sine_1khz_16k.wav")
    decoded = round_trip(G722Encoder(), G722Decoder(), samples.tobytes(), FRAME_BYTES)
    assert dominant_frequency_hz(decoded[START_UP:], rate_hz) == pytest.approx(1000, abs=1)
    assert snr_db(samples, decoded, max_lag=64, skip=START_UP) > 40


def test_a_wideband_sweep_survives_above_telephone_band() -> None:
    rate_hz, samples = read_wav("sweep_50_7500hz_16k.wav")
    decoded = round_trip(G722Encoder(), G722Decoder(), samples.tobytes(), FRAME_BYTES)
    assert snr_db(samples, decoded, max_lag=64, skip=START_UP) > 15
    # the last 30 ms of the sweep is above 6.5 kHz: G.722 carries it (G.711 could not)
    tail = decoded[-480:]
    assert band_energy_db(tail, rate_hz, 6500, 8000) > -1
    assert dominant_frequency_hz(tail, rate_hz) > 6500


def test_each_encoder_has_its_own_state() -> None:
    _, samples = read_wav("sweep_50_7500hz_16k.wav")
    pcm = samples.tobytes()
    alone = [G722Encoder().encode(frame) for frame in frames(pcm, FRAME_BYTES)][:10]
    first, second = G722Encoder(), G722Encoder()
    interleaved = []
    for frame in list(frames(pcm, FRAME_BYTES))[:10]:
        second.encode(bytes(FRAME_BYTES))  # another call's traffic in between
        interleaved.append(first.encode(frame))
    continuous = G722Encoder()
    expected = [continuous.encode(frame) for frame in list(frames(pcm, FRAME_BYTES))[:10]]
    assert interleaved == expected
    assert alone[1:] != expected[1:]  # fresh state per frame would differ: state is kept


def test_an_odd_number_of_samples_is_rejected() -> None:
    with pytest.raises(ValueError, match="^G.722 encodes sample pairs, got 3 samples$"):
        G722Encoder().encode(bytes(6))


def test_concealment_fades_the_last_frame() -> None:
    _, samples = read_wav("sine_1khz_16k.wav")
    decoder = G722Decoder()
    payload = G722Encoder().encode(samples[:320].tobytes())
    decoder.decode(payload)
    first = np.frombuffer(decoder.conceal(320), dtype="<i2")
    assert len(first) == 320 and np.any(first)
    for _ in range(2):
        decoder.conceal(320)
    assert decoder.conceal(320) == bytes(640)
