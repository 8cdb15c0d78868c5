"""RTP packets: parse and serialize the fixed header and what follows it (RFC 3550 §5.1, §5.3.1).

``RtpPacket.parse(data)`` reads a datagram; ``bytes(packet)`` writes one. Every field the
header carries is kept (CSRCs, the header extension, the padding octets as received), so
``bytes(RtpPacket.parse(data)) == data`` for every datagram that parses. The parser runs once per
packet at 50 packets/s per direction per call, so it unpacks with precompiled ``struct.Struct``
objects and allocates nothing beyond the payload and the packet itself.

`RtpPacketizer` stamps outgoing payloads with one SSRC, consecutive sequence numbers and a
timestamp that advances by the samples each payload carries; its random starting values come from
an injected `IdSource` (RFC 3550 §5.1 asks for random initial sequence number and timestamp).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self, TypeVar

if TYPE_CHECKING:
    from relay.ids import IdSource

RTP_VERSION = 2  # RFC 3550 §5.1
RTP_HEADER_LENGTH = 12  # RFC 3550 §5.1: the fixed header
CSRC_LENGTH = 4  # RFC 3550 §5.1: each CSRC identifier is 32 bits
MAX_CSRC_COUNT = 15  # RFC 3550 §5.1: "CSRC count (CC): 4 bits"
EXTENSION_HEADER_LENGTH = 4  # RFC 3550 §5.3.1: 16-bit profile data + 16-bit length
MAX_PAYLOAD_TYPE = 127  # RFC 3550 §5.1: "payload type (PT): 7 bits"

_HEADER = struct.Struct("!BBHII")
_EXTENSION = struct.Struct("!HH")
_CSRCS = tuple(struct.Struct(f"!{count}I") for count in range(MAX_CSRC_COUNT + 1))
_PADDING_BIT = 0x20
_EXTENSION_BIT = 0x10
_MARKER_BIT = 0x80


class RtpParseError(ValueError):
    """A datagram is not a well-formed RTP packet; the message names the field."""


@dataclass(frozen=True, slots=True)
class RtpHeaderExtension:
    """The header extension of RFC 3550 §5.3.1, kept opaque (its meaning is the profile's)."""

    profile: int
    """The 16 bits "defined by profile" (0xBEDE for RFC 8285 one-byte extensions)."""
    data: bytes
    """The extension body; its length is a multiple of 4 octets."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpHeaderExtension | None = None
    padding: bytes = b""
    """The padding octets as received, the count octet last; empty when the P bit is clear."""

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse one RTP datagram.

        Raises:
            RtpParseError: if the datagram is shorter than its header says, is not version 2,
                or its padding count is impossible.
        """
        length = len(data)
        if length < RTP_HEADER_LENGTH:
            raise RtpParseError(
                f"RTP packet too short: {length} bytes, need at least {RTP_HEADER_LENGTH}"
            )
        first, second, sequence_number, timestamp, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpParseError(f"RTP version must be {RTP_VERSION}, got {first >> 6}")
        offset = RTP_HEADER_LENGTH
        csrc: tuple[int, ...] = ()
        csrc_count = first & 0x0F
        if csrc_count:
            offset += csrc_count * CSRC_LENGTH
            if length < offset:
                raise RtpParseError(
                    f"RTP packet too short for {csrc_count} CSRCs: {length} bytes, need {offset}"
                )
            csrc = _CSRCS[csrc_count].unpack_from(data, RTP_HEADER_LENGTH)
        extension = None
        if first & _EXTENSION_BIT:
            extension, offset = _parse_extension(data, offset)
        end = length
        padding = b""
        if first & _PADDING_BIT:
            count = data[-1]
            if count == 0 or count > length - offset:
                raise RtpParseError(
                    f"RTP padding count {count} does not fit the {length - offset} bytes"
                    " after the header"
                )
            end -= count
            padding = data[end:]
        return _build(
            cls, second & 0x7F, sequence_number, timestamp, ssrc, data[offset:end],
            bool(second & _MARKER_BIT), csrc, extension, padding,
        )

    def __bytes__(self) -> bytes:
        """Serialize the packet.

        Raises:
            ValueError: if a field does not fit its width on the wire.
        """
        csrc, extension, padding = self.csrc, self.extension, self.padding
        if self.payload_type > MAX_PAYLOAD_TYPE or self.payload_type < 0:
            raise ValueError(f"RTP payload type must be 0..127, got {self.payload_type}")
        first = 0x80 | len(csrc)
        if padding:
            first |= _PADDING_BIT
        if extension is not None:
            first |= _EXTENSION_BIT
        second = self.payload_type | _MARKER_BIT if self.marker else self.payload_type
        try:
            header = _HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc)
            if not (csrc or extension is not None or padding):
                return header + self.payload
            parts = [header]
            if csrc:
                parts.append(_CSRCS[len(csrc)].pack(*csrc))
            if extension is not None:
                parts.append(_serialize_extension(extension))
        except (struct.error, IndexError) as exc:
            raise ValueError(f"RTP header field out of range: {exc}") from exc
        parts.append(self.payload)
        parts.append(padding)
        return b"".join(parts)


# The generated __init__ of a frozen dataclass sets each field through object.__setattr__ with
# keyword arguments: 1.4 µs for nine fields, most of a parse. Setting the slots through their
# descriptors builds the same object (there is no __post_init__) in a third of the time.
_FIELDS = (
    "payload_type", "sequence_number", "timestamp", "ssrc", "payload", "marker", "csrc",
    "extension", "padding",
)
(
    _set_payload_type, _set_sequence_number, _set_timestamp, _set_ssrc, _set_payload,
    _set_marker, _set_csrc, _set_extension, _set_padding,
) = (vars(RtpPacket)[name].__set__ for name in _FIELDS)
_new = object.__new__
_P = TypeVar("_P", bound=RtpPacket)


def _build(
    cls: type[_P],
    payload_type: int,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool,
    csrc: tuple[int, ...],
    extension: RtpHeaderExtension | None,
    padding: bytes,
) -> _P:
    packet = _new(cls)
    _set_payload_type(packet, payload_type)
    _set_sequence_number(packet, sequence_number)
    _set_timestamp(packet, timestamp)
    _set_ssrc(packet, ssrc)
    _set_payload(packet, payload)
    _set_marker(packet, marker)
    _set_csrc(packet, csrc)
    _set_extension(packet, extension)
    _set_padding(packet, padding)
    return packet


def _parse_extension(data: bytes, offset: int) -> tuple[RtpHeaderExtension, int]:
    length = len(data)
    if length < offset + EXTENSION_HEADER_LENGTH:
        raise RtpParseError(
            f"RTP header extension truncated: {length} bytes,"
            f" need {offset + EXTENSION_HEADER_LENGTH}"
        )
    profile, words = _EXTENSION.unpack_from(data, offset)
    start = offset + EXTENSION_HEADER_LENGTH
    end = start + words * 4
    if length < end:
        raise RtpParseError(
            f"RTP header extension truncated: {words} words need {end} bytes, got {length}"
        )
    return RtpHeaderExtension(profile, data[start:end]), end


def _serialize_extension(extension: RtpHeaderExtension) -> bytes:
    words, remainder = divmod(len(extension.data), 4)
    if remainder:
        raise ValueError(
            f"RTP header extension length must be a multiple of 4, got {len(extension.data)}"
        )
    return _EXTENSION.pack(extension.profile, words) + extension.data


class RtpPacketizer:
    """Stamp outgoing payloads with an SSRC, sequence numbers and timestamps (RFC 3550 §5.1).

    One packetizer per outgoing stream: audio and RFC 4733 events of one stream share its
    SSRC and sequence space, so a `relay.media.dtmf.DtmfSender` draws from the same packetizer.
    It also counts what was sent, for the sender info of an SR (RFC 3550 §6.4.1).
    """

    __slots__ = ("octets_sent", "packets_sent", "sequence_number", "ssrc", "timestamp")

    def __init__(self, *, ssrc: int, sequence_number: int, timestamp: int) -> None:
        """Start a stream at the given SSRC, first sequence number and first timestamp."""
        self.ssrc = ssrc
        self.sequence_number = sequence_number
        """The sequence number the next packet will carry."""
        self.timestamp = timestamp
        """The timestamp the next payload will carry."""
        self.packets_sent = 0
        self.octets_sent = 0

    @classmethod
    def from_ids(cls, ids: IdSource) -> Self:
        """Start a stream with a random SSRC, sequence number and timestamp drawn from ``ids``."""
        return cls(ssrc=ids.bits(32), sequence_number=ids.bits(16), timestamp=ids.bits(32))

    def packetize(
        self, payload: bytes, *, payload_type: int, samples: int, marker: bool = False
    ) -> RtpPacket:
        """Return the next packet for ``payload``, then advance the timestamp by ``samples``."""
        packet = self.stamp(
            payload, payload_type=payload_type, timestamp=self.timestamp, marker=marker
        )
        self.advance(samples)
        return packet

    def stamp(
        self, payload: bytes, *, payload_type: int, timestamp: int, marker: bool = False
    ) -> RtpPacket:
        """Return the next packet with an explicit ``timestamp`` (RFC 4733 events hold theirs)."""
        packet = _build(
            RtpPacket, payload_type, self.sequence_number, timestamp & 0xFFFFFFFF, self.ssrc,
            payload, marker, (), None, b"",
        )
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        self.packets_sent = (self.packets_sent + 1) & 0xFFFFFFFF  # RFC 3550 §6.4.1 wraps
        self.octets_sent = (self.octets_sent + len(payload)) & 0xFFFFFFFF
        return packet

    def advance(self, samples: int) -> None:
        """Move the timestamp on by ``samples`` without sending (silence, RFC 3550 §5.1)."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
