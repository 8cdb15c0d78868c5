"""RTCP packets: SR, RR, SDES and BYE in compound packets (RFC 3550 §6).

Theory of operation:

1. A datagram is a compound packet: RTCP packets back to back, each with a 4-byte header whose
   length field counts 32-bit words minus one (RFC 3550 §6.4.1). `parse_compound` walks them;
   `serialize_compound` joins ``bytes(packet)`` of each.
2. SR, RR, SDES and BYE are typed; any other packet type (APP, RTPFB, PSFB, XR, …) is kept as
   `RtcpUnknown` with its count and body, so a compound packet from baresip or linphone
   round-trips even when it carries feedback we do not act on.
3. The first packet of a compound is not required to be an SR or RR: RFC 5506 reduced-size RTCP
   lifts that rule, and a receiver loses nothing by being lenient here.
4. SDES values and the BYE reason are kept as bytes: RFC 3550 §6.5 says UTF-8, peers do not
   always comply, and one bad CNAME must not cost us the report blocks beside it.
5. Padding (the P bit) of an SR, RR, SDES or BYE is accepted and dropped: it is meaningful only
   under SRTCP encryption, which is undone before parsing. Everything else round-trips:
   ``serialize_compound(parse_compound(data)) == data`` for input with unpadded typed packets,
   minimal SDES termination and BYE reason padding (what every sender we know writes).
6. NTP timestamps (RFC 3550 §4) are wall-clock values, so the caller passes them in;
   `ntp_timestamp` converts Unix seconds and `compact_ntp` takes the middle 32 bits that
   the LSR field of a report block echoes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self, TypeVar

RTCP_VERSION = 2  # RFC 3550 §6.4.1
RTCP_HEADER_LENGTH = 4  # RFC 3550 §6.4.1: V, P, RC, PT, length
PT_SR = 200  # RFC 3550 §12.1
PT_RR = 201  # RFC 3550 §12.1
PT_SDES = 202  # RFC 3550 §12.1
PT_BYE = 203  # RFC 3550 §12.1
SENDER_INFO_LENGTH = 20  # RFC 3550 §6.4.1: NTP (8), RTP timestamp, packet and octet counts
REPORT_BLOCK_LENGTH = 24  # RFC 3550 §6.4.1
MAX_COUNT = 31  # RFC 3550 §6.4.1: "reception report count (RC): 5 bits"
SDES_END = 0  # RFC 3550 §6.5
SDES_CNAME = 1  # RFC 3550 §6.5.1
NTP_UNIX_OFFSET_S = 2_208_988_800  # RFC 5905 §6: seconds from 1900-01-01 to 1970-01-01

_HEADER = struct.Struct("!BBH")
_SSRC = struct.Struct("!I")
_SENDER_INFO = struct.Struct("!IQIII")
_REPORT_BLOCK = struct.Struct("!IIIIII")


class RtcpParseError(ValueError):
    """A datagram is not a well-formed compound RTCP packet; the message says where."""


def ntp_timestamp(unix_s: float) -> int:
    """Return the 64-bit NTP timestamp (RFC 3550 §4) of a Unix time in seconds."""
    return round((unix_s + NTP_UNIX_OFFSET_S) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def compact_ntp(ntp: int) -> int:
    """Return the middle 32 bits of a 64-bit NTP timestamp (the LSR of RFC 3550 §6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


def is_rtcp(data: bytes) -> bool:
    """Return whether a datagram on a multiplexed port is RTCP (RFC 5761 §4: PT 192..223)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int
    """Lost since the previous report, as a fixed-point fraction of 256."""
    packets_lost: int
    """Cumulative number lost: signed, 24 bits, clamped by the sender."""
    highest_sequence: int
    """Extended highest sequence number received: cycles in the high 16 bits."""
    jitter: int
    """Interarrival jitter in timestamp units."""
    last_sr: int = 0
    """Middle 32 bits of the NTP timestamp of the last SR from this source, 0 if none."""
    delay_since_last_sr: int = 0
    """Delay since that SR in units of 1/65536 s."""

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> Self:
        """Parse the 24-byte block at ``offset`` (the caller checked the length)."""
        ssrc, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        return cls(
            ssrc=ssrc, fraction_lost=lost >> 24, packets_lost=cumulative,
            highest_sequence=highest, jitter=jitter, last_sr=lsr, delay_since_last_sr=dlsr,
        )

    def __bytes__(self) -> bytes:
        lost = (self.fraction_lost & 0xFF) << 24 | (self.packets_lost & 0xFFFFFF)
        return _REPORT_BLOCK.pack(
            self.ssrc, lost, self.highest_sequence, self.jitter, self.last_sr,
            self.delay_since_last_sr,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReport:
    """An SR: sender info plus reception reports (RFC 3550 §6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""
    """Profile-specific extension after the report blocks (RFC 3550 §6.4.1)."""

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse a datagram holding exactly one SR."""
        return _parse_single(cls, data)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> Self:
        need = 4 + SENDER_INFO_LENGTH + count * REPORT_BLOCK_LENGTH
        if len(body) < need:
            raise RtcpParseError(
                f"RTCP SR too short for {count} report blocks: {len(body)} bytes, need {need}"
            )
        ssrc, ntp, rtp, packets, octets = _SENDER_INFO.unpack_from(body)
        start = 4 + SENDER_INFO_LENGTH
        return cls(
            ssrc=ssrc, ntp_timestamp=ntp, rtp_timestamp=rtp, packet_count=packets,
            octet_count=octets, reports=_parse_blocks(body, start, count), extension=body[need:],
        )

    def __bytes__(self) -> bytes:
        info = _SENDER_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )
        blocks = b"".join(bytes(block) for block in self.reports)
        return _packet(PT_SR, len(self.reports), info + blocks + self.extension)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverReport:
    """An RR: reception reports from a participant that is not sending (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse a datagram holding exactly one RR."""
        return _parse_single(cls, data)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> Self:
        need = 4 + count * REPORT_BLOCK_LENGTH
        if len(body) < need:
            raise RtcpParseError(
                f"RTCP RR too short for {count} report blocks: {len(body)} bytes, need {need}"
            )
        (ssrc,) = _SSRC.unpack_from(body)
        return cls(ssrc=ssrc, reports=_parse_blocks(body, 4, count), extension=body[need:])

    def __bytes__(self) -> bytes:
        blocks = b"".join(bytes(block) for block in self.reports)
        return _packet(PT_RR, len(self.reports), _SSRC.pack(self.ssrc) + blocks + self.extension)


@dataclass(frozen=True, slots=True)
class SdesItem:
    """One SDES item: its type (1 = CNAME … 8 = PRIV) and value (RFC 3550 §6.5)."""

    type: int
    value: bytes


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """The items describing one SSRC or CSRC (RFC 3550 §6.5)."""

    ssrc: int
    items: tuple[SdesItem, ...]

    @property
    def cname(self) -> str | None:
        """Return the CNAME (RFC 3550 §6.5.1), decoded leniently, or None."""
        for item in self.items:
            if item.type == SDES_CNAME:
                return item.value.decode("utf-8", errors="replace")
        return None

    def __bytes__(self) -> bytes:
        parts = [_SSRC.pack(self.ssrc)]
        length = 4
        for item in self.items:
            if not 0 < item.type <= 0xFF or len(item.value) > 0xFF:
                raise ValueError(f"SDES item must have type 1..255 and <= 255 bytes: {item!r}")
            parts.append(bytes((item.type, len(item.value))) + item.value)
            length += 2 + len(item.value)
        # At least one null octet ends the list, then nulls up to a 32-bit boundary (§6.5).
        parts.append(bytes(4 - length % 4))
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """An SDES packet (RFC 3550 §6.5)."""

    chunks: tuple[SdesChunk, ...]

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse a datagram holding exactly one SDES packet."""
        return _parse_single(cls, data)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> Self:
        chunks = []
        offset = 0
        for index in range(count):
            chunk, offset = _parse_chunk(body, offset, index)
            chunks.append(chunk)
        return cls(tuple(chunks))

    def __bytes__(self) -> bytes:
        return _packet(PT_SDES, len(self.chunks), b"".join(bytes(c) for c in self.chunks))


@dataclass(frozen=True, slots=True)
class Goodbye:
    """A BYE: these sources are leaving, optionally saying why (RFC 3550 §6.6)."""

    sources: tuple[int, ...]
    reason: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse a datagram holding exactly one BYE."""
        return _parse_single(cls, data)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> Self:
        end = count * 4
        if len(body) < end:
            raise RtcpParseError(
                f"RTCP BYE too short for {count} sources: {len(body)} bytes, need {end}"
            )
        sources = struct.unpack_from(f"!{count}I", body)
        reason = b""
        if len(body) > end:
            length = body[end]
            if len(body) < end + 1 + length:
                raise RtcpParseError(
                    f"RTCP BYE reason truncated: {length} bytes announced,"
                    f" {len(body) - end - 1} present"
                )
            reason = body[end + 1 : end + 1 + length]
        return cls(tuple(sources), reason)

    def __bytes__(self) -> bytes:
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason:
            if len(self.reason) > 0xFF:
                raise ValueError(f"BYE reason must be <= 255 bytes, got {len(self.reason)}")
            body += bytes((len(self.reason),)) + self.reason
            body += bytes(-len(body) % 4)
        return _packet(PT_BYE, len(self.sources), body)


@dataclass(frozen=True, slots=True)
class RtcpUnknown:
    """An RTCP packet of a type we do not interpret (APP, RTPFB, PSFB, XR, …), kept verbatim."""

    packet_type: int
    count: int
    """The 5-bit field after the P bit (a count or, for feedback, the FMT)."""
    body: bytes
    """Everything after the header, padding included when ``padded``."""
    padded: bool = False

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse a datagram holding exactly one packet of an uninterpreted type."""
        return _parse_single(cls, data)

    def __bytes__(self) -> bytes:
        return _packet(self.packet_type, self.count, self.body, padded=self.padded)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Goodbye | RtcpUnknown
_T = TypeVar("_T")
_TYPED: dict[int, type[SenderReport | ReceiverReport | SourceDescription | Goodbye]] = {
    PT_SR: SenderReport,
    PT_RR: ReceiverReport,
    PT_SDES: SourceDescription,
    PT_BYE: Goodbye,
}


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Parse every RTCP packet of a compound packet (RFC 3550 §6.1).

    Raises:
        RtcpParseError: if a header is short or not version 2, a length overruns the
            datagram, or a body does not hold what its header announces.
    """
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        packet, offset = _parse_one(data, offset)
        packets.append(packet)
    if not packets:
        raise RtcpParseError("RTCP packet too short: 0 bytes, need at least 4")
    return packets


def serialize_compound(packets: Iterable[RtcpPacket]) -> bytes:
    """Serialize packets into one compound packet."""
    return b"".join(bytes(packet) for packet in packets)


def _parse_one(data: bytes, offset: int) -> tuple[RtcpPacket, int]:
    remaining = len(data) - offset
    if remaining < RTCP_HEADER_LENGTH:
        raise RtcpParseError(
            f"RTCP packet too short: {remaining} bytes, need at least {RTCP_HEADER_LENGTH}"
        )
    first, packet_type, words = _HEADER.unpack_from(data, offset)
    if first >> 6 != RTCP_VERSION:
        raise RtcpParseError(f"RTCP version must be {RTCP_VERSION}, got {first >> 6}")
    size = (words + 1) * 4
    if size > remaining:
        raise RtcpParseError(f"RTCP length field says {size} bytes, only {remaining} remain")
    end = offset + size
    count = first & 0x1F
    padded = bool(first & 0x20)
    typed = _TYPED.get(packet_type)
    if typed is None:
        return RtcpUnknown(packet_type, count, data[offset + RTCP_HEADER_LENGTH : end], padded), end
    body_end = end
    if padded:
        padding = data[end - 1]
        if padding == 0 or padding > size - RTCP_HEADER_LENGTH:
            raise RtcpParseError(f"RTCP padding count {padding} does not fit a {size}-byte packet")
        body_end -= padding
    return typed._from_body(count, data[offset + RTCP_HEADER_LENGTH : body_end]), end


def _parse_single(cls: type[_T], data: bytes) -> _T:
    packet, end = _parse_one(data, 0)
    if not isinstance(packet, cls):
        raise RtcpParseError(f"expected an RTCP {cls.__name__}, got {type(packet).__name__}")
    if end != len(data):
        raise RtcpParseError(f"expected one RTCP packet, {len(data) - end} bytes follow it")
    return packet


def _parse_blocks(body: bytes, start: int, count: int) -> tuple[ReportBlock, ...]:
    return tuple(
        ReportBlock.parse(body, start + index * REPORT_BLOCK_LENGTH) for index in range(count)
    )


def _parse_chunk(body: bytes, offset: int, index: int) -> tuple[SdesChunk, int]:
    if len(body) < offset + 4:
        raise RtcpParseError(f"RTCP SDES chunk {index} truncated: no SSRC")
    (ssrc,) = _SSRC.unpack_from(body, offset)
    offset += 4
    items: list[SdesItem] = []
    while True:
        if offset >= len(body):
            raise RtcpParseError(f"RTCP SDES chunk {index} truncated: no END item")
        item_type = body[offset]
        if item_type == SDES_END:
            # Skip the END octet and the nulls up to the next 32-bit boundary.
            offset += 1 + (-(offset + 1) % 4)
            return SdesChunk(ssrc, tuple(items)), offset
        if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
            raise RtcpParseError(f"RTCP SDES chunk {index} item {len(items)} truncated")
        length = body[offset + 1]
        items.append(SdesItem(item_type, body[offset + 2 : offset + 2 + length]))
        offset += 2 + length


def _packet(packet_type: int, count: int, body: bytes, *, padded: bool = False) -> bytes:
    if not 0 <= count <= MAX_COUNT:
        raise ValueError(f"RTCP count must be 0..{MAX_COUNT}, got {count}")
    if len(body) % 4:
        raise ValueError(f"RTCP body must be a multiple of 4 bytes, got {len(body)}")
    first = 0xA0 | count if padded else 0x80 | count
    return _HEADER.pack(first, packet_type, len(body) // 4) + body
