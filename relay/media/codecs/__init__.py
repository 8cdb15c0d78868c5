"""The codec registry: what we can speak, by SDP name, and fresh codec objects per call.

A codec is offered only if its libraries load here and it can both encode and decode
(`available_codecs`), so SDP never names a codec we could not carry both ways. Names match
case-insensitively, as SDP encoding names do (RFC 4855 §3). Codec modules with native
dependencies (G722, opuslib/libopus0, libvo-amrwbenc0/libopencore-amrwb0) are imported only
when first asked for, so a missing library removes that codec rather than the relay.

iLBC and G.722.1 are not here: no library on this platform can encode them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from relay.media.codecs.base import FRAME_MS, CodecSpec, Decoder, Encoder

__all__ = [
    "AMR_WB",
    "FRAME_MS",
    "G722",
    "KNOWN_CODECS",
    "OPUS",
    "PCMA",
    "PCMU",
    "CodecSpec",
    "Decoder",
    "Encoder",
    "UnsupportedCodecError",
    "available_codecs",
    "get_decoder",
    "get_encoder",
    "get_spec",
    "is_available",
]

PCMU = CodecSpec("PCMU", 0, 8000, 8000, 1, 160)  # RFC 3551 §4.5.14, Table 4
PCMA = CodecSpec("PCMA", 8, 8000, 8000, 1, 160)
G722 = CodecSpec("G722", 9, 8000, 16000, 1, 320)  # clock 8000, audio 16 kHz: RFC 3551 §4.5.2
OPUS = CodecSpec("opus", None, 48000, 48000, 2, 960, "minptime=10;useinbandfec=1")  # RFC 7587
AMR_WB = CodecSpec("AMR-WB", None, 16000, 16000, 1, 320, "max-red=0")  # RFC 4867 §8.2

KNOWN_CODECS: tuple[CodecSpec, ...] = (OPUS, G722, AMR_WB, PCMU, PCMA)
"""Every codec this module knows, best quality first; `available_codecs` filters it."""


class UnsupportedCodecError(LookupError):
    """The codec is unknown, or its library does not load here."""


def _pcmu_encoder(fmtp: str | None) -> Encoder:
    from relay.media.codecs.g711 import PcmuEncoder

    return PcmuEncoder()


def _pcmu_decoder(fmtp: str | None) -> Decoder:
    from relay.media.codecs.g711 import PcmuDecoder

    return PcmuDecoder()


def _pcma_encoder(fmtp: str | None) -> Encoder:
    from relay.media.codecs.g711 import PcmaEncoder

    return PcmaEncoder()


def _pcma_decoder(fmtp: str | None) -> Decoder:
    from relay.media.codecs.g711 import PcmaDecoder

    return PcmaDecoder()


def _g722_encoder(fmtp: str | None) -> Encoder:
    from relay.media.codecs.g722 import G722Encoder

    return G722Encoder()


def _g722_decoder(fmtp: str | None) -> Decoder:
    from relay.media.codecs.g722 import G722Decoder

    return G722Decoder()


def _opus_encoder(fmtp: str | None) -> Encoder:
    from relay.media.codecs.opus import OpusEncoder

    return OpusEncoder.from_fmtp(fmtp)


def _opus_decoder(fmtp: str | None) -> Decoder:
    from relay.media.codecs.opus import OpusDecoder

    return OpusDecoder()


def _amrwb_encoder(fmtp: str | None) -> Encoder:
    from relay.media.codecs.amrwb import AmrWbEncoder

    return AmrWbEncoder.from_fmtp(fmtp)


def _amrwb_decoder(fmtp: str | None) -> Decoder:
    from relay.media.codecs.amrwb import AmrWbDecoder

    return AmrWbDecoder.from_fmtp(fmtp)


_FACTORIES: dict[str, tuple[Callable[[str | None], Encoder], Callable[[str | None], Decoder]]] = {
    "pcmu": (_pcmu_encoder, _pcmu_decoder),
    "pcma": (_pcma_encoder, _pcma_decoder),
    "g722": (_g722_encoder, _g722_decoder),
    "opus": (_opus_encoder, _opus_decoder),
    "amr-wb": (_amrwb_encoder, _amrwb_decoder),
}
_SPECS = {spec.name.lower(): spec for spec in KNOWN_CODECS}


def get_spec(name: str) -> CodecSpec:
    """Return the spec of a codec we know, by SDP encoding name (any case).

    Raises:
        UnsupportedCodecError: we do not know the codec.
    """
    try:
        return _SPECS[name.lower()]
    except KeyError:
        raise UnsupportedCodecError(f"unknown codec {name!r}") from None


def _probe(spec: CodecSpec) -> bool:
    """Return whether `spec` loads and survives one encode-decode round trip of silence."""
    make_encoder, make_decoder = _FACTORIES[spec.name.lower()]
    silence = bytes(spec.frame_bytes)
    try:
        payload = make_encoder(spec.default_fmtp).encode(silence)
        pcm = make_decoder(spec.default_fmtp).decode(payload)
    # Any failure means "not here": ImportError for a missing wheel, OSError from ctypes,
    # and opuslib raises a bare Exception when it cannot find libopus.
    except Exception:
        return False
    return len(pcm) == len(silence)


@functools.cache
def _availability() -> dict[str, bool]:
    return {spec.name.lower(): _probe(spec) for spec in KNOWN_CODECS}


def is_available(name: str) -> bool:
    """Return whether the codec is known and can encode and decode here."""
    return _availability().get(name.lower(), False)


def available_codecs() -> tuple[CodecSpec, ...]:
    """Return the codecs we can both encode and decode here, in `KNOWN_CODECS` order."""
    return tuple(spec for spec in KNOWN_CODECS if is_available(spec.name))


def _factories(
    name: str,
) -> tuple[Callable[[str | None], Encoder], Callable[[str | None], Decoder]]:
    spec = get_spec(name)
    if not is_available(spec.name):
        supported = ", ".join(s.name for s in available_codecs())
        raise UnsupportedCodecError(
            f"codec {spec.name!r} is not available here (supported: {supported})"
        )
    return _FACTORIES[spec.name.lower()]


def get_encoder(name: str, *, fmtp: str | None = None) -> Encoder:
    """Return a new encoder for one call direction.

    Args:
        name: SDP encoding name, any case (``PCMU``, ``opus``, ``AMR-WB``).
        fmtp: the negotiated a=fmtp value of the peer's offer or answer, if any.

    Raises:
        UnsupportedCodecError: the codec is unknown or unavailable here.
    """
    return _factories(name)[0](fmtp)


def get_decoder(name: str, *, fmtp: str | None = None) -> Decoder:
    """Return a new decoder for one call direction (see `get_encoder`)."""
    return _factories(name)[1](fmtp)
