"""Opus: round trip, FEC and PLC, encoder settings, bad packets (no golden bytes)."""

from __future__ import annotations

import numpy as np
import pytest

from relay.media.codecs import OPUS
from relay.media.codecs.opus import OpusDecoder, OpusEncoder
from tests.unit.relay.media.codecs.audio_checks import (
    dominant_frequency_hz,
    frames,
    read_wav,
    round_trip,
    snr_db,
)

FRAME_BYTES = OPUS.frame_bytes  # 960 samples at 48 kHz
START_UP = 4800  # 100 ms


def _sweep_48k() -> np.ndarray:
    """Return 1 s of a speech-band sweep at 48 kHz (Opus's FEC is SILK, for speech)."""
    t = np.arange(48000) / 48000
    phase = 2 * np.pi * (200 * t + 1400 * t**2)
    return (8000 * np.sin(phase)).astype("<i2")


def test_encoder_has_fec_on_and_dtx_off() -> None:
    encoder = OpusEncoder()
    assert encoder.fec and not encoder.dtx
    assert encoder.packet_loss_percent == 10


def test_packet_loss_percentage_is_configurable_and_bounded() -> None:
    encoder = OpusEncoder(packet_loss_percent=25)
    assert encoder.packet_loss_percent == 25
    encoder.packet_loss_percent = 3
    assert encoder.packet_loss_percent == 3
    with pytest.raises(ValueError, match="^packet loss must be 0-100 %, got 101$"):
        encoder.packet_loss_percent = 101


def test_fmtp_caps_the_bit_rate_and_can_turn_fec_off() -> None:
    assert OpusEncoder.from_fmtp("maxaveragebitrate=12000;useinbandfec=1").fec
    assert not OpusEncoder.from_fmtp("useinbandfec=0").fec
    low = OpusEncoder.from_fmtp("maxaveragebitrate=8000")
    high = OpusEncoder.from_fmtp(None)
    _, samples = read_wav("sine_1khz_48k.wav")
    pcm = samples.tobytes()
    low_bytes = sum(len(low.encode(f)) for f in frames(pcm, FRAME_BYTES))
    high_bytes = sum(len(high.encode(f)) for f in frames(pcm, FRAME_BYTES))
    assert low_bytes < high_bytes


def test_a_1_khz_tone_survives_at_its_frequency() -> None:
    rate_hz, samples = read_wav("sine_1khz_48k.wav")
    decoded = round_trip(OpusEncoder(), OpusDecoder(), samples.tobytes(), FRAME_BYTES)
    assert len(decoded) == len(samples)
    assert dominant_frequency_hz(decoded[START_UP:], rate_hz) == pytest.approx(1000, abs=1)
    assert snr_db(samples, decoded, max_lag=960, skip=START_UP) > 15


def test_decoder_takes_packets_of_other_durations() -> None:
    encoder, decoder = OpusEncoder(), OpusDecoder()
    assert len(decoder.decode(encoder.encode(bytes(2 * 2880)))) == 2 * 2880  # 60 ms
    assert len(decoder.decode(encoder.encode(bytes(2 * 480)))) == 2 * 480  # 10 ms


def test_encoder_rejects_a_length_that_is_no_opus_frame() -> None:
    with pytest.raises(
        ValueError, match="^Opus encodes 2.5-60 ms frames at 48 kHz, got 100 samples$"
    ):
        OpusEncoder().encode(bytes(200))


@pytest.mark.parametrize("payload", [b"", b"\xff\xff\xff"])
def test_decoder_rejects_broken_packets(payload: bytes) -> None:
    with pytest.raises(ValueError, match="Opus"):
        OpusDecoder().decode(payload)


def _lose_one_packet(*, use_fec: bool) -> float:
    """Return the SNR of a lost 20 ms frame as rebuilt by FEC or by PLC."""
    samples = _sweep_48k()
    encoder = OpusEncoder(packet_loss_percent=20)
    packets = [encoder.encode(f) for f in frames(samples.tobytes(), FRAME_BYTES)]
    reference, decoder = OpusDecoder(), OpusDecoder()
    lost = 25
    expected = b"".join(reference.decode(p) for p in packets[: lost + 1])[-FRAME_BYTES:]
    for packet in packets[:lost]:
        decoder.decode(packet)
    rebuilt = decoder.conceal(960, next_payload=packets[lost + 1] if use_fec else None)
    assert len(rebuilt) == FRAME_BYTES
    want = np.frombuffer(expected, dtype="<i2").astype(float)
    got = np.frombuffer(rebuilt, dtype="<i2").astype(float)
    return float(10 * np.log10(np.sum(want**2) / (np.sum((want - got) ** 2) + 1e-9)))


def test_fec_from_the_next_packet_rebuilds_a_loss_better_than_plc() -> None:
    fec_snr, plc_snr = _lose_one_packet(use_fec=True), _lose_one_packet(use_fec=False)
    assert fec_snr > plc_snr + 3
    assert fec_snr > 5


def test_concealment_returns_exactly_the_samples_asked_for() -> None:
    decoder = OpusDecoder()
    decoder.decode(OpusEncoder().encode(bytes(FRAME_BYTES)))
    assert len(decoder.conceal(1000)) == 2000  # rounded up to 2.5 ms steps, then trimmed
    assert decoder.conceal(0) == b""
