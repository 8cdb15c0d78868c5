"""AMR-WB (G.722.2) over Debian's libvo-amrwbenc0 and libopencore-amrwb0, via ctypes.

PyAV can decode AMR-WB but not encode it (TOOLING §5), so we bind the two C libraries that
Debian ships: VisualOn's encoder (``E_IF_*``) and opencore's decoder (``D_IF_*``). Both speak
the storage format of RFC 4867 §5.3 (a ``0 FT(4) Q 00`` header byte, then the speech bits in
sensitivity order, padded to octets). This module converts between that and the RTP payload
of RFC 4867 §4, in either mode:

1. Octet-aligned (``octet-align=1``, §4.4): a CMR byte, a ToC byte per frame
   (``F FT(4) Q P P``), then each frame padded to whole octets. Our ToC byte is the storage
   header; our CMR is 15 (no request).
2. Bandwidth-efficient (the default when fmtp omits octet-align, §4.3): the 4-bit CMR, 6-bit
   ToC entries (``F FT(4) Q``) and the frames' bits follow one another with no padding
   until the end of the payload.

Interleaving and CRCs (§4.4.1-§4.4.2.1) are not supported; we never offer them. We send one
20 ms frame per packet at a fixed mode (the highest the peer's ``mode-set`` allows), no DTX,
and ignore the peer's CMR. Decoders accept several frames per packet and any frame type.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import weakref

import numpy as np

from relay.media.codecs.base import parse_fmtp, pcm16_samples

SAMPLE_RATE_HZ = 16000  # RFC 4867 §8.2: the RTP clock rate is 16000
SAMPLES_PER_FRAME = 320  # 20 ms
DEFAULT_MODE = 8  # 23.85 kbit/s, the best quality; every AMR-WB decoder takes modes 0-8
NO_REQUEST_CMR = 15  # RFC 4867 §4.3.1: no mode request
SPEECH_LOST = 14  # frame type for a frame lost in transit (RFC 4867 §4.3.2)
NO_DATA = 15
MAX_STORAGE_BYTES = 61  # header + 477 bits of mode 8
# Speech bits per frame type (3GPP TS 26.201 Table 2; RFC 4867 §3.6): modes 0-8, SID,
# 10-13 reserved for future use, SPEECH_LOST and NO_DATA carry none.
FRAME_BITS: dict[int, int] = {
    0: 132, 1: 177, 2: 253, 3: 285, 4: 317, 5: 365, 6: 397, 7: 461, 8: 477,
    9: 40, SPEECH_LOST: 0, NO_DATA: 0,
}  # fmt: skip

_ENCODER_SONAMES = ("libvo-amrwbenc.so.0", "vo-amrwbenc")
_DECODER_SONAMES = ("libopencore-amrwb.so.0", "opencore-amrwb")


def _open(names: tuple[str, ...]) -> ctypes.CDLL:
    soname, short = names
    try:
        return ctypes.CDLL(soname)
    except OSError:
        found = ctypes.util.find_library(short)
        if found is None:
            raise
        return ctypes.CDLL(found)


@functools.cache
def _libraries() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    """Load and type both libraries once.

    Raises:
        OSError: either library is not installed.
    """
    enc, dec = _open(_ENCODER_SONAMES), _open(_DECODER_SONAMES)
    enc.E_IF_init.restype = ctypes.c_void_p
    enc.E_IF_init.argtypes = []
    enc.E_IF_encode.restype = ctypes.c_int
    enc.E_IF_encode.argtypes = [
        ctypes.c_void_p, ctypes.c_int16, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int16
    ]  # fmt: skip
    enc.E_IF_exit.argtypes = [ctypes.c_void_p]
    dec.D_IF_init.restype = ctypes.c_void_p
    dec.D_IF_init.argtypes = []
    dec.D_IF_decode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
    dec.D_IF_exit.argtypes = [ctypes.c_void_p]
    return enc, dec


def libraries_load() -> bool:
    """Return whether both the encoder and the decoder library load here."""
    try:
        _libraries()
    except OSError:
        return False
    return True


def highest_allowed_mode(fmtp: str | None, preferred: int = DEFAULT_MODE) -> int:
    """Return `preferred`, or the highest mode of the fmtp's ``mode-set`` below it (§8.1)."""
    allowed = parse_fmtp(fmtp).get("mode-set")
    if not allowed:
        return preferred
    modes = {int(m) for m in allowed.split(",") if m.strip().isdigit() and int(m) <= 8}
    if not modes:
        raise ValueError(f"mode-set names no AMR-WB mode: {allowed!r}")
    return max((m for m in modes if m <= preferred), default=min(modes))


def is_octet_aligned(fmtp: str | None) -> bool:
    """Return whether the fmtp selects octet-aligned mode (RFC 4867 §8.1)."""
    return parse_fmtp(fmtp).get("octet-align") == "1"


def _to_storage(frame_type: int, quality: int, speech: int, bits: int) -> bytes:
    """Build a storage-format frame from a frame type and its speech bits as an integer."""
    size = -(-bits // 8)
    body = (speech << (8 * size - bits)).to_bytes(size, "big") if bits else b""
    return bytes([frame_type << 3 | quality << 2]) + body


def _frame_bits(frame_type: int) -> int:
    try:
        return FRAME_BITS[frame_type]
    except KeyError:
        raise ValueError(f"AMR-WB frame type {frame_type} is reserved") from None


def pack_payload(storage: bytes, *, octet_aligned: bool) -> bytes:
    """Turn one storage-format frame into an RTP payload with CMR 15 (RFC 4867 §4.3, §4.4)."""
    header = storage[0]
    if octet_aligned:
        return bytes([NO_REQUEST_CMR << 4, header & 0x7C]) + storage[1:]
    frame_type, quality = header >> 3 & 0x0F, header >> 2 & 1
    bits = _frame_bits(frame_type)
    body = storage[1:]
    speech = int.from_bytes(body, "big") >> (8 * len(body) - bits) if bits else 0
    total = 10 + bits
    padding = -total % 8
    value = ((NO_REQUEST_CMR << 6 | frame_type << 1 | quality) << bits | speech) << padding
    return value.to_bytes((total + padding) // 8, "big")


def unpack_payload(payload: bytes, *, octet_aligned: bool) -> list[bytes]:
    """Split an RTP payload into storage-format frames, one per ToC entry.

    Raises:
        ValueError: the payload is truncated or names a reserved frame type.
    """
    if octet_aligned:
        return _unpack_octet_aligned(payload)
    return _unpack_bandwidth_efficient(payload)


def _unpack_octet_aligned(payload: bytes) -> list[bytes]:
    position = 1  # skip the CMR byte
    toc: list[int] = []
    while True:
        if position >= len(payload):
            raise ValueError("AMR-WB payload ends inside its table of contents")
        entry = payload[position]
        position += 1
        toc.append(entry)
        if not entry & 0x80:
            break
    frames = []
    for entry in toc:
        size = -(-_frame_bits(entry >> 3 & 0x0F) // 8)
        if position + size > len(payload):
            raise ValueError("AMR-WB payload is shorter than its table of contents says")
        frames.append(bytes([entry & 0x7C]) + payload[position : position + size])
        position += size
    return frames


def _unpack_bandwidth_efficient(payload: bytes) -> list[bytes]:
    total = 8 * len(payload)
    value = int.from_bytes(payload, "big")

    def read(offset: int, width: int) -> int:
        if offset + width > total:
            raise ValueError("AMR-WB payload is shorter than its table of contents says")
        return value >> (total - offset - width) & ((1 << width) - 1)

    offset = 4  # skip the CMR
    toc: list[tuple[int, int]] = []
    more = True
    while more:
        entry = read(offset, 6)
        offset += 6
        more = bool(entry & 0x20)
        toc.append((entry >> 1 & 0x0F, entry & 1))
    frames = []
    for frame_type, quality in toc:
        bits = _frame_bits(frame_type)
        frames.append(_to_storage(frame_type, quality, read(offset, bits) if bits else 0, bits))
        offset += bits
    return frames


class AmrWbEncoder:
    """AMR-WB encoder: 20 ms of 16 kHz PCM16 in, one RTP payload out."""

    def __init__(self, *, mode: int = DEFAULT_MODE, octet_aligned: bool = False) -> None:
        """Create an encoder sending `mode` (0-8) in the given payload format."""
        if mode not in range(9):
            raise ValueError(f"AMR-WB modes are 0-8, got {mode}")
        self._enc = _libraries()[0]
        self._state = self._enc.E_IF_init()
        if not self._state:
            raise MemoryError("E_IF_init failed")
        weakref.finalize(self, self._enc.E_IF_exit, self._state)
        self._mode = mode
        self._octet_aligned = octet_aligned
        self._out = ctypes.create_string_buffer(MAX_STORAGE_BYTES)

    @classmethod
    def from_fmtp(cls, fmtp: str | None) -> AmrWbEncoder:
        """Create an encoder for the peer's a=fmtp (``octet-align``, ``mode-set``)."""
        return cls(mode=highest_allowed_mode(fmtp), octet_aligned=is_octet_aligned(fmtp))

    def encode(self, pcm: bytes) -> bytes:
        """Encode exactly 320 samples (20 ms at 16 kHz) to an RTP payload."""
        if len(pcm16_samples(pcm)) != SAMPLES_PER_FRAME:
            raise ValueError(f"AMR-WB encodes 320-sample frames, got {len(pcm) // 2}")
        speech = (ctypes.c_char * len(pcm)).from_buffer_copy(pcm)  # the C side is not const
        size = self._enc.E_IF_encode(self._state, self._mode, speech, self._out, 0)
        return pack_payload(self._out.raw[:size], octet_aligned=self._octet_aligned)


class AmrWbDecoder:
    """AMR-WB decoder to 16 kHz PCM16, concealing with the codec's own error concealment."""

    def __init__(self, *, octet_aligned: bool = False) -> None:
        """Create a decoder for the given payload format."""
        self._dec = _libraries()[1]
        self._state = self._dec.D_IF_init()
        if not self._state:
            raise MemoryError("D_IF_init failed")
        weakref.finalize(self, self._dec.D_IF_exit, self._state)
        self._octet_aligned = octet_aligned

    @classmethod
    def from_fmtp(cls, fmtp: str | None) -> AmrWbDecoder:
        """Create a decoder for the negotiated a=fmtp (``octet-align``)."""
        return cls(octet_aligned=is_octet_aligned(fmtp))

    def decode(self, payload: bytes) -> bytes:
        """Decode every frame of an RTP payload to PCM16 at 16 kHz (320 samples each).

        Raises:
            ValueError: the payload is malformed.
        """
        return self._decode_storage(unpack_payload(payload, octet_aligned=self._octet_aligned))

    def conceal(self, samples: int, *, next_payload: bytes | None = None) -> bytes:
        """Decode SPEECH_LOST frames, so the decoder extrapolates then mutes (TS 26.191)."""
        if samples <= 0:
            return b""
        count = -(-samples // SAMPLES_PER_FRAME)
        lost = bytes([SPEECH_LOST << 3 | 1 << 2])
        return self._decode_storage([lost] * count)[: 2 * samples]

    def _decode_storage(self, frames: list[bytes]) -> bytes:
        out = np.empty(SAMPLES_PER_FRAME * len(frames), dtype=np.int16)
        address = out.ctypes.data
        for index, frame in enumerate(frames):
            # opencore may read the full mode-8 length whatever the frame type: pad to it.
            self._dec.D_IF_decode(
                self._state, frame.ljust(MAX_STORAGE_BYTES, b"\0"), address + 640 * index, 0
            )
        return out.tobytes()
