"""RTP and telephone-event packets read from the RFCs' layouts, independently of relay/media.

Tests of what the relay sends parse its datagrams here, so a bug shared by the relay's
packetizer and its parser cannot hide itself.

RFC 3550 §5.1, the fixed header (12 bytes, no CSRC or extension in what the relay sends)::

    V=2|P|X|CC |M|     PT      |       sequence number         |
    |                           timestamp                       |
    |                             SSRC                          |

RFC 4733 §2.3, the telephone-event payload (4 bytes)::

    |     event     |E|R| volume    |          duration             |
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2, Table 7: events 0-15


@dataclass(frozen=True)
class Rtp:
    """The fields of an RTP header (RFC 3550 §5.1) and its payload."""

    version: int
    marker: bool
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes


@dataclass(frozen=True)
class Event:
    """A telephone-event payload (RFC 4733 §2.3)."""

    digit: str
    end: bool
    volume: int
    duration: int


def parse_rtp(data: bytes) -> Rtp:
    """Parse a datagram with the 12-byte fixed header and no CSRCs or extension."""
    first, second, sequence, timestamp, ssrc = struct.unpack("!BBHII", data[:12])
    assert first & 0x3F == 0, "the relay sends no padding, extension or CSRC"
    return Rtp(first >> 6, bool(second & 0x80), second & 0x7F, sequence, timestamp, ssrc, data[12:])


def parse_event(payload: bytes) -> Event:
    """Parse a 4-byte telephone-event payload."""
    assert len(payload) == 4, payload
    event, flags, duration = struct.unpack("!BBH", payload)
    return Event(DIGITS[event], bool(flags & 0x80), flags & 0x3F, duration)
