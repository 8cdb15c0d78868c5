"""Hold music decoding, looping and caching (relay/media/hold_music.py), on files FFmpeg made."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from relay.media.hold_music import (
    CLIP_RATE_HZ,
    DEFAULT_ASSET,
    HoldClip,
    HoldMusicCache,
    HoldMusicRefused,
    decode_hold_music,
    default_hold_music,
)
from scripts.make_hold_music import wav_bytes
from tests.support.audio_files import mp3_tone, ogg_opus_tone, tone_file, wav_tone
from tests.unit.relay.media.codecs.audio_checks import dominant_frequency_hz


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


def test_the_default_loop_is_the_scripts_output_small_and_six_seconds_long() -> None:
    committed = DEFAULT_ASSET.read_bytes()
    assert len(committed) < 200_000
    made = wav_bytes()
    with wave.open(io.BytesIO(committed)) as a, wave.open(io.BytesIO(made)) as b:
        assert a.getparams() == b.getparams()
        old, new = samples(a.readframes(a.getnframes())), samples(b.readframes(b.getnframes()))
    # Same samples; one LSB of slack for another platform's libm rounding a sine differently.
    assert np.max(np.abs(old.astype(int) - new.astype(int))) <= 1
    clip = default_hold_music()
    assert clip.source == "default" and clip.duration_s == pytest.approx(6.0)
    pcm = samples(clip.pcm)
    assert np.max(np.abs(pcm)) > 4000  # audible, not silence
    assert abs(int(pcm[0])) < 300 and abs(int(pcm[-1])) < 300  # loops without a click


@pytest.mark.parametrize(
    ("make", "rate_hz"),
    [
        (lambda: mp3_tone(frequency_hz=440, rate_hz=44100, layout="stereo"), 44100),
        (lambda: mp3_tone(frequency_hz=440, rate_hz=22050, layout="mono"), 22050),
        (lambda: wav_tone(frequency_hz=440, rate_hz=8000, layout="mono"), 8000),
        (lambda: wav_tone(frequency_hz=440, rate_hz=48000, layout="stereo"), 48000),
    ],
    ids=["mp3-44k-stereo", "mp3-22k-mono", "wav-8k-mono", "wav-48k-stereo"],
)
def test_mp3_and_wav_decode_to_16_khz_mono_keeping_the_tone(make: object, rate_hz: int) -> None:
    clip = decode_hold_music(make(), source="https://example.com")  # type: ignore[operator]
    assert clip.duration_s == pytest.approx(2.0, abs=0.06)  # mp3 adds its encoder's padding
    pcm = samples(clip.pcm)
    assert dominant_frequency_hz(pcm[4000:28000], CLIP_RATE_HZ) == pytest.approx(440, abs=1)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<html><body>Not found</body></html>", "not an mp3 or WAV file"),
        (b"", "not an mp3 or WAV file"),
        (b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk", "the wav file does not decode"),
        (b"ID3" + bytes(200), "the mp3 file"),
    ],
    ids=["html", "empty", "broken-wav", "id3-no-frames"],
)
def test_what_is_not_mp3_or_wav_audio_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(HoldMusicRefused, match=reason):
        decode_hold_music(data, source="x")


def test_an_ogg_opus_file_is_refused_even_when_it_is_audio() -> None:
    with pytest.raises(HoldMusicRefused, match="^not an mp3 or WAV file$"):
        decode_hold_music(ogg_opus_tone(), source="x")


def test_a_wav_file_in_a_codec_outside_the_list_is_refused() -> None:
    adpcm = tone_file("wav", "adpcm_ms", rate_hz=8000, layout="mono")
    with pytest.raises(HoldMusicRefused, match="audio coded as adpcm_ms is not accepted"):
        decode_hold_music(adpcm, source="x")


def test_a_file_longer_than_the_bound_is_refused_not_cut() -> None:
    with pytest.raises(HoldMusicRefused, match="longer than 1 s"):
        decode_hold_music(wav_tone(seconds=2.0), source="x", max_duration_s=1)


@pytest.mark.parametrize("rate_hz", [8000, 16000, 48000])
def test_a_player_gives_20_ms_frames_at_the_codecs_rate_with_the_tone(rate_hz: int) -> None:
    clip = decode_hold_music(wav_tone(frequency_hz=600, rate_hz=16000), source="x")
    player = clip.player(rate_hz)
    frames = [player.next_frame() for _ in range(50)]
    assert {len(f) for f in frames} == {rate_hz // 50 * 2}
    pcm = samples(b"".join(frames[5:]))
    assert dominant_frequency_hz(pcm, rate_hz) == pytest.approx(600, abs=2)


def test_the_loop_wraps_from_the_end_to_the_start_with_no_gap() -> None:
    ramp = np.arange(1000, dtype="<i2")  # 1000 samples: not a whole number of 320-sample frames
    player = HoldClip(ramp.tobytes(), "x").player(CLIP_RATE_HZ)
    played = samples(b"".join(player.next_frame() for _ in range(7)))  # 2240 samples
    assert np.array_equal(played, np.tile(ramp, 3)[:2240])


def clip(size_bytes: int) -> HoldClip:
    return HoldClip(bytes(size_bytes), "x")


def test_the_cache_evicts_the_least_recently_used_beyond_its_count() -> None:
    cache = HoldMusicCache(max_clips=2, max_bytes=10_000)
    cache.put("a", clip(100), now=0)
    cache.put("b", clip(100), now=0)
    assert cache.get("a", now=1) is not None  # a is now the most recently used
    cache.put("c", clip(100), now=2)
    assert cache.get("b", now=3) is None
    assert cache.get("a", now=3) is not None and cache.get("c", now=3) is not None
    assert len(cache) == 2 and cache.bytes == 200


def test_the_cache_evicts_by_bytes_and_keeps_no_clip_larger_than_its_bound() -> None:
    cache = HoldMusicCache(max_clips=10, max_bytes=1000)
    cache.put("a", clip(600), now=0)
    cache.put("b", clip(600), now=0)
    assert cache.get("a", now=0) is None and cache.bytes == 600
    cache.put("huge", clip(1001), now=0)
    assert cache.get("huge", now=0) is None and cache.get("b", now=0) is not None


def test_a_cached_clip_expires_after_the_ttl() -> None:
    cache = HoldMusicCache(ttl_s=60)
    cache.put("a", clip(10), now=100)
    assert cache.get("a", now=159.9) is not None
    assert cache.get("a", now=160) is None and cache.bytes == 0
