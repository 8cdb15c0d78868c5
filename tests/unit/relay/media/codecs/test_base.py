"""Shared codec pieces: fmtp parsing, PCM16 views, repeat-and-fade concealment."""

from __future__ import annotations

import numpy as np
import pytest

from relay.media.codecs.base import CONCEAL_FADE_MS, FadeConcealer, parse_fmtp, pcm16_samples


def test_fmtp_parameters_parse_with_lowercase_keys() -> None:
    assert parse_fmtp("minptime=10; useinbandfec=1") == {"minptime": "10", "useinbandfec": "1"}
    assert parse_fmtp("Mode-Set=0,1,2;octet-align=1;") == {"mode-set": "0,1,2", "octet-align": "1"}
    assert parse_fmtp(None) == {} and parse_fmtp("") == {}


def test_pcm16_is_little_endian_and_whole_samples() -> None:
    assert pcm16_samples(b"\x01\x00\xff\xff").tolist() == [1, -1]
    with pytest.raises(ValueError, match="^PCM16 must be whole 16-bit samples, got 1 bytes$"):
        pcm16_samples(b"\x00")


def test_fade_continues_across_calls_and_reaches_silence() -> None:
    concealer = FadeConcealer(8000)
    concealer.remember(np.full(160, 1000, dtype=np.int16))
    fade_samples = 8 * CONCEAL_FADE_MS
    whole = np.frombuffer(b"".join(concealer.conceal(80) for _ in range(8)), dtype="<i2")
    assert whole[0] == 1000
    assert np.all(np.diff(whole[:fade_samples].astype(int)) <= 0)  # monotonic fade
    assert not np.any(whole[fade_samples:])


def test_fade_repeats_the_waveform_not_just_its_level() -> None:
    concealer = FadeConcealer(8000)
    last = np.arange(160, dtype=np.int16) * 10
    concealer.remember(last)
    out = np.frombuffer(concealer.conceal(20), dtype="<i2")
    assert np.allclose(out, last[:20], atol=20)


def test_negative_sample_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="^cannot conceal -1 samples$"):
        FadeConcealer(8000).conceal(-1)
