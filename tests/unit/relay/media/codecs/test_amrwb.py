"""AMR-WB: RFC 4867 payload packing, the C libraries' round trip, concealment."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.media.codecs import amrwb
from relay.media.codecs.amrwb import (
    FRAME_BITS,
    AmrWbDecoder,
    AmrWbEncoder,
    pack_payload,
    unpack_payload,
)
from tests.unit.relay.media.codecs.audio_checks import (
    dominant_frequency_hz,
    read_wav,
    round_trip,
    snr_db,
)


def _require_libraries(test: T) -> T:
    """Fail (never skip) when the Debian codec libraries are missing: CI must install them."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        assert amrwb.libraries_load(), "needs Debian libvo-amrwbenc0 and libopencore-amrwb0"
        return test(*args, **kwargs)

    return functools.wraps(test)(checked)  # type: ignore[return-value]


needs_libraries = _require_libraries
MODES = list(range(9))
T = TypeVar("T", bound=Callable[..., Any])


def _storage(frame_type: int, quality: int, speech: int) -> bytes:
    bits = FRAME_BITS[frame_type]
    size = -(-bits // 8)
    body = (speech << (8 * size - bits)).to_bytes(size, "big") if bits else b""
    return bytes([frame_type << 3 | quality << 2]) + body


def test_bandwidth_efficient_packing_follows_rfc_4867_section_4_3() -> None:
    storage = _storage(0, 1, (1 << 132) - 1)  # mode 0 (6.60 kbit/s), every speech bit set
    # CMR 1111 | F 0 | FT 0000 | Q 1 | 132 ones | 2 bits of padding
    expected = bytes([0xF0, 0x7F]) + b"\xff" * 15 + bytes([0xFC])
    assert pack_payload(storage, octet_aligned=False) == expected


def test_octet_aligned_packing_follows_rfc_4867_section_4_4() -> None:
    storage = _storage(0, 1, (1 << 132) - 1)
    # CMR byte 1111 0000 | ToC F 0, FT 0000, Q 1, P 00 | speech padded to 17 octets
    expected = bytes([0xF0, 0x04]) + b"\xff" * 16 + bytes([0xF0])
    assert pack_payload(storage, octet_aligned=True) == expected


@given(
    frame_type=st.sampled_from(sorted(FRAME_BITS)),
    quality=st.integers(0, 1),
    seed=st.integers(0, 2**477 - 1),
    octet_aligned=st.booleans(),
)
def test_pack_then_unpack_gives_the_storage_frame_back(
    frame_type: int, quality: int, seed: int, octet_aligned: bool
) -> None:
    storage = _storage(frame_type, quality, seed % (1 << FRAME_BITS[frame_type]))
    payload = pack_payload(storage, octet_aligned=octet_aligned)
    assert unpack_payload(payload, octet_aligned=octet_aligned) == [storage]


@given(payload=st.binary(max_size=80), octet_aligned=st.booleans())
def test_unpacking_any_bytes_raises_only_value_error(payload: bytes, octet_aligned: bool) -> None:
    try:
        frames = unpack_payload(payload, octet_aligned=octet_aligned)
    except ValueError:
        return
    assert all(frame[0] >> 3 & 0x0F in FRAME_BITS for frame in frames)


def test_two_frames_in_one_bandwidth_efficient_payload_unpack_in_order() -> None:
    first, second = _storage(2, 1, 12345), _storage(amrwb.NO_DATA, 1, 0)
    # CMR | F 1, FT 2, Q 1 | F 0, FT 15 (NO_DATA), Q 1 | mode 2's 253 bits | padding
    bits = "1111" + "1" + "0010" + "1" + "0" + "1111" + "1" + format(12345, "0253b")
    bits += "0" * (-len(bits) % 8)
    payload = int(bits, 2).to_bytes(len(bits) // 8, "big")
    assert unpack_payload(payload, octet_aligned=False) == [first, second]


@pytest.mark.parametrize(
    ("payload", "octet_aligned", "message"),
    [
        (b"\xf0", True, "^AMR-WB payload ends inside its table of contents$"),
        (b"\xf0\x44\x00", True, "^AMR-WB payload is shorter than its table of contents says$"),
        (b"\xf0\x7f\xff", False, "^AMR-WB payload is shorter than its table of contents says$"),
        (b"\xf0\x54", True, "^AMR-WB frame type 10 is reserved$"),
    ],
)
def test_malformed_payloads_are_rejected_with_the_reason(
    payload: bytes, octet_aligned: bool, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        unpack_payload(payload, octet_aligned=octet_aligned)


def test_mode_set_picks_the_highest_allowed_mode() -> None:
    assert amrwb.highest_allowed_mode(None) == 8
    assert amrwb.highest_allowed_mode("mode-set=0,1,2; octet-align=1") == 2
    assert amrwb.is_octet_aligned("mode-set=0,1,2; octet-align=1")
    assert not amrwb.is_octet_aligned("mode-change-capability=2")
    with pytest.raises(ValueError, match="^mode-set names no AMR-WB mode: '9'$"):
        amrwb.highest_allowed_mode("mode-set=9")


@needs_libraries
@pytest.mark.parametrize("octet_aligned", [False, True])
@pytest.mark.parametrize("mode", [0, 2, 8])
def test_a_1_khz_tone_survives_every_mode_and_format(mode: int, octet_aligned: bool) -> None:
    rate_hz, samples = read_wav("sine_1khz_16k.wav")
    encoder = AmrWbEncoder(mode=mode, octet_aligned=octet_aligned)
    decoder = AmrWbDecoder(octet_aligned=octet_aligned)
    decoded = round_trip(encoder, decoder, samples.tobytes(), 640)
    assert len(decoded) == len(samples)
    assert dominant_frequency_hz(decoded[1600:], rate_hz) == pytest.approx(1000, abs=2)
    if mode == 8:
        assert snr_db(samples, decoded, max_lag=640, skip=1600) > 12


@needs_libraries
@pytest.mark.parametrize("mode", MODES)
def test_payload_sizes_match_rfc_4867_for_every_mode(mode: int) -> None:
    payload = AmrWbEncoder(mode=mode).encode(bytes(640))
    assert len(payload) == -(-(10 + FRAME_BITS[mode]) // 8)
    octet = AmrWbEncoder(mode=mode, octet_aligned=True).encode(bytes(640))
    assert len(octet) == 2 + -(-FRAME_BITS[mode] // 8)


@needs_libraries
def test_a_40_ms_packet_decodes_to_640_samples() -> None:
    encoder = AmrWbEncoder(octet_aligned=True)
    _, samples = read_wav("sine_1khz_16k.wav")
    first, second = (
        encoder.encode(samples[:320].tobytes()),
        encoder.encode(samples[320:640].tobytes()),
    )
    payload = bytes([0xF0, first[1] | 0x80, second[1]]) + first[2:] + second[2:]
    assert len(AmrWbDecoder(octet_aligned=True).decode(payload)) == 1280


@needs_libraries
def test_concealment_extrapolates_then_mutes() -> None:
    _, samples = read_wav("sine_1khz_16k.wav")
    encoder, decoder = AmrWbEncoder(), AmrWbDecoder()
    for start in range(0, 3200, 320):
        decoder.decode(encoder.encode(samples[start : start + 320].tobytes()))
    concealed = [np.frombuffer(decoder.conceal(320), dtype="<i2") for _ in range(5)]
    rms = [float(np.sqrt(np.mean(c.astype(float) ** 2))) for c in concealed]
    assert rms[0] > 100 and rms[-1] < rms[0] / 10
    assert len(decoder.conceal(100)) == 200


@needs_libraries
def test_encoders_keep_separate_state() -> None:
    _, samples = read_wav("sweep_50_7500hz_16k.wav")
    first, second, alone = AmrWbEncoder(), AmrWbEncoder(), AmrWbEncoder()
    for start in range(0, 3200, 320):
        frame = samples[start : start + 320].tobytes()
        second.encode(bytes(640))
        assert first.encode(frame) == alone.encode(frame)


@needs_libraries
def test_encoder_takes_only_20_ms_frames() -> None:
    with pytest.raises(ValueError, match="^AMR-WB encodes 320-sample frames, got 160$"):
        AmrWbEncoder().encode(bytes(320))
    with pytest.raises(ValueError, match="^AMR-WB modes are 0-8, got 9$"):
        AmrWbEncoder(mode=9)
