"""G.711 μ-law and A-law: golden vectors, audioop equality, the round-trip law, concealment."""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.media.codecs import g711
from relay.media.codecs.g711 import PcmaDecoder, PcmaEncoder, PcmuDecoder, PcmuEncoder
from tests.unit.relay.media.codecs.audio_checks import VECTORS, read_wav, snr_db


def _load_audioop() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ImportError:  # Python 3.13+: the golden files still hold audioop's output
            return None


audioop = _load_audioop()
T = TypeVar("T", bound=Callable[..., Any])

def needs_audioop(test: T) -> T:
    """Compare with audioop (Python 3.11/3.12; on 3.13+ install audioop-lts): fail if absent."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        assert audioop is not None, "audioop is gone (Python 3.13+): pip install audioop-lts"
        return test(*args, **kwargs)

    return functools.wraps(test)(checked)  # type: ignore[return-value]

EVERY_SAMPLE = np.arange(-32768, 32768, dtype="<i2").tobytes()
EVERY_CODE = bytes(range(256))
LAWS = {
    "pcmu": (g711.ulaw_encode, g711.ulaw_decode),
    "pcma": (g711.alaw_encode, g711.alaw_decode),
}


@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize("signal", ["sine_1khz_8k", "sweep_100_3800hz_8k"])
def test_encoding_a_signal_gives_the_golden_bytes(law: str, signal: str) -> None:
    _, samples = read_wav(f"{signal}.wav")
    encode, _ = LAWS[law]
    assert encode(samples.tobytes()) == (VECTORS / f"{signal}.{law}").read_bytes()


@pytest.mark.parametrize("law", LAWS)
def test_encoding_every_16_bit_sample_gives_the_golden_bytes(law: str) -> None:
    encode, _ = LAWS[law]
    assert encode(EVERY_SAMPLE) == (VECTORS / f"every_sample.{law}").read_bytes()


@pytest.mark.parametrize("law", LAWS)
def test_decoding_every_code_gives_the_golden_samples(law: str) -> None:
    _, decode = LAWS[law]
    assert decode(EVERY_CODE) == (VECTORS / f"every_code_{law}.s16le").read_bytes()


@needs_audioop
def test_tables_equal_audioop_for_every_input() -> None:
    assert audioop is not None
    assert g711.ulaw_encode(EVERY_SAMPLE) == audioop.lin2ulaw(EVERY_SAMPLE, 2)
    assert g711.alaw_encode(EVERY_SAMPLE) == audioop.lin2alaw(EVERY_SAMPLE, 2)
    assert g711.ulaw_decode(EVERY_CODE) == audioop.ulaw2lin(EVERY_CODE, 2)
    assert g711.alaw_decode(EVERY_CODE) == audioop.alaw2lin(EVERY_CODE, 2)


@pytest.mark.parametrize("law", LAWS)
@given(payload=st.binary(max_size=400))
def test_decode_encode_decode_is_decode(law: str, payload: bytes) -> None:
    encode, decode = LAWS[law]
    assert decode(encode(decode(payload))) == decode(payload)


@pytest.mark.parametrize("law", LAWS)
@given(pcm=st.binary(max_size=400).filter(lambda b: len(b) % 2 == 0))
def test_encoding_gives_one_byte_per_sample(law: str, pcm: bytes) -> None:
    encode, _ = LAWS[law]
    assert len(encode(pcm)) == len(pcm) // 2


@pytest.mark.parametrize("law", LAWS)
def test_decoded_sine_keeps_g711_quality(law: str) -> None:
    _, samples = read_wav("sine_1khz_8k.wav")
    encode, decode = LAWS[law]
    decoded = np.frombuffer(decode(encode(samples.tobytes())), dtype="<i2")
    assert snr_db(samples, decoded, max_lag=0) > 30  # G.711 is ~38 dB on a loud sine


def test_silence_encodes_to_the_standard_idle_codes() -> None:
    silence = bytes(320)
    assert g711.ulaw_encode(silence) == b"\xff" * 160  # positive zero (G.711 Table 2a)
    assert g711.alaw_encode(silence) == b"\xd5" * 160  # 0x80 with even bits inverted


@pytest.mark.parametrize("encoder", [PcmuEncoder(), PcmaEncoder()])
def test_encoding_half_a_sample_is_rejected(encoder: PcmuEncoder | PcmaEncoder) -> None:
    with pytest.raises(ValueError, match="^PCM16 must be whole 16-bit samples, got 3 bytes$"):
        encoder.encode(b"\x00\x01\x02")


@pytest.mark.parametrize("decoder_class", [PcmuDecoder, PcmaDecoder])
def test_concealment_repeats_the_last_frame_and_fades_to_silence(
    decoder_class: type[PcmuDecoder] | type[PcmaDecoder],
) -> None:
    decoder = decoder_class()
    _, samples = read_wav("sine_1khz_8k.wav")
    encode = g711.ulaw_encode if decoder_class is PcmuDecoder else g711.alaw_encode
    last = np.frombuffer(decoder.decode(encode(samples[:160].tobytes())), dtype="<i2")
    concealed = [np.frombuffer(decoder.conceal(160), dtype="<i2") for _ in range(4)]
    rms = [float(np.sqrt(np.mean(c.astype(float) ** 2))) for c in concealed]
    assert 0 < rms[1] < rms[0] < float(np.sqrt(np.mean(last.astype(float) ** 2)))
    assert rms[2] < rms[1] and rms[3] == 0.0  # 60 ms of fade, then silence
    assert abs(int(concealed[0][0]) - int(last[0])) <= 1  # it starts as the last frame did


def test_a_good_frame_after_concealment_restarts_the_fade() -> None:
    decoder = PcmuDecoder()
    frame = g711.ulaw_encode(read_wav("sine_1khz_8k.wav")[1][:160].tobytes())
    decoder.decode(frame)
    for _ in range(4):
        decoder.conceal(160)
    decoder.decode(frame)
    assert any(decoder.conceal(160))


def test_concealment_before_any_audio_is_silence() -> None:
    assert PcmaDecoder().conceal(160) == bytes(320)
