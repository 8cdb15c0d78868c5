"""The codec registry: specs as SDP needs them, availability, fresh objects per call."""

from __future__ import annotations

import numpy as np
import pytest

from relay.media import codecs
from relay.media.codecs import (
    AMR_WB,
    G722,
    KNOWN_CODECS,
    OPUS,
    PCMA,
    PCMU,
    CodecSpec,
    UnsupportedCodecError,
    available_codecs,
    get_decoder,
    get_encoder,
    get_spec,
)
from relay.media.codecs.opus import OpusEncoder
from tests.unit.relay.media.codecs.audio_checks import dominant_frequency_hz

TONE_HZ = 1000


def _tone(spec: CodecSpec, frames: int) -> bytes:
    n = np.arange(spec.samples_per_frame * frames)
    return (8000 * np.sin(2 * np.pi * TONE_HZ * n / spec.sample_rate_hz)).astype("<i2").tobytes()


def test_specs_carry_the_rfc_values() -> None:
    assert (PCMU.payload_type, PCMU.rtpmap, PCMU.timestamp_increment) == (0, "PCMU/8000", 160)
    assert (PCMA.payload_type, PCMA.rtpmap, PCMA.samples_per_frame) == (8, "PCMA/8000", 160)
    assert (G722.payload_type, G722.rtpmap, G722.sample_rate_hz) == (9, "G722/8000", 16000)
    assert G722.timestamp_increment == 160 and G722.samples_per_frame == 320
    assert (OPUS.payload_type, OPUS.rtpmap, OPUS.timestamp_increment) == (None, "opus/48000/2", 960)
    assert OPUS.default_fmtp == "minptime=10;useinbandfec=1"
    assert (AMR_WB.payload_type, AMR_WB.rtpmap, AMR_WB.frame_bytes) == (None, "AMR-WB/16000", 640)


def test_names_match_case_insensitively() -> None:
    assert get_spec("pcmu") is PCMU
    assert get_spec("OPUS") is OPUS
    assert get_spec("amr-wb") is AMR_WB


def test_an_unknown_codec_is_reported_by_name() -> None:
    with pytest.raises(UnsupportedCodecError, match="^unknown codec 'iLBC'$"):
        get_encoder("iLBC")
    with pytest.raises(UnsupportedCodecError, match="^unknown codec 'G7221'$"):
        get_decoder("G7221")


def test_the_libraries_installed_here_give_every_known_codec() -> None:
    # CI installs G722, opuslib + libopus0, libvo-amrwbenc0 + libopencore-amrwb0
    names = [spec.name for spec in available_codecs()]
    assert names == ["opus", "G722", "AMR-WB", "PCMU", "PCMA"]


def test_a_codec_whose_library_fails_is_not_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fmtp: str | None) -> codecs.Encoder:
        raise OSError("libopus.so.0: cannot open shared object file")

    monkeypatch.setitem(codecs._FACTORIES, "opus", (broken, codecs._FACTORIES["opus"][1]))
    codecs._availability.cache_clear()
    try:
        assert OPUS not in available_codecs()
        assert PCMU in available_codecs()
        with pytest.raises(UnsupportedCodecError, match="^codec 'opus' is not available here"):
            get_encoder("opus")
    finally:
        monkeypatch.undo()
        codecs._availability.cache_clear()
    assert OPUS in available_codecs()


@pytest.mark.parametrize("spec", available_codecs(), ids=lambda s: s.name)
def test_every_available_codec_carries_a_tone_both_ways(spec: CodecSpec) -> None:
    encoder, decoder = get_encoder(spec.name), get_decoder(spec.name)
    pcm = _tone(spec, 25)
    decoded = b"".join(
        decoder.decode(encoder.encode(pcm[i : i + spec.frame_bytes]))
        for i in range(0, len(pcm), spec.frame_bytes)
    )
    assert len(decoded) == len(pcm)
    samples = np.frombuffer(decoded, dtype="<i2")[spec.samples_per_frame * 5 :]
    assert dominant_frequency_hz(samples, spec.sample_rate_hz) == pytest.approx(TONE_HZ, abs=3)
    assert len(decoder.conceal(spec.samples_per_frame)) == spec.frame_bytes


@pytest.mark.parametrize("spec", available_codecs(), ids=lambda s: s.name)
def test_each_request_gives_a_new_codec_object(spec: CodecSpec) -> None:
    assert get_encoder(spec.name) is not get_encoder(spec.name)
    assert get_decoder(spec.name) is not get_decoder(spec.name)


def test_fmtp_reaches_the_codec() -> None:
    encoder = get_encoder("AMR-WB", fmtp="octet-align=1; mode-set=0,1,2")
    assert len(encoder.encode(bytes(640))) == 2 + 32  # octet-aligned mode 2: 253 bits
    opus = get_encoder("opus", fmtp="useinbandfec=0")
    assert isinstance(opus, OpusEncoder) and not opus.fec


def test_known_codecs_exclude_what_nothing_here_can_encode() -> None:
    assert {spec.name for spec in KNOWN_CODECS}.isdisjoint({"iLBC", "G7221", "G729"})
