"""SDP line values: one frozen type per field or attribute we read, sans-I/O.

Theory of operation:

1. Each type parses the value of one line (the text after ``x=``, or after
   ``a=name:``) with ``parse(value)`` and prints it back with ``str()``.
   ``parse`` raises a bare `ValueError` whose text is the reason; the session
   parser in `relay.sip.sdp.description` wraps it in `SdpParseError` with the line.
2. An `Attribute` is the raw ``a=<name>[:<value>]`` line (RFC 8866 §5.13), kept
   verbatim so unknown attributes survive a round trip; `RtpMap`, `Fmtp` and
   `RtcpAttribute` are typed reads of the attributes negotiation relies on.
3. `check_attribute` is what the parser calls on every ``a=`` line: it checks
   the attributes whose meaning we rely on and lets every other one through.
4. `STATIC_PAYLOAD_TYPES` is RFC 3551 §6, tables 4 and 5, used when an
   ``m=`` line lists a static payload type without an ``a=rtpmap``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Self

MAX_PAYLOAD_TYPE = 127  # RFC 3550 §5.1: PT is a 7-bit field
MAX_PORT = 65535
NULL_ADDRESS_IPV4 = "0.0.0.0"  # RFC 2543 hold, RFC 3264 §8.4
_MAX_QUOTED_LINE = 80  # keep error messages short on hostile input


class SdpParseError(ValueError):
    """The text is not a session description we can read (RFC 8866 §5).

    The message names the 1-based line number and quotes the line. A SIP UAS
    answers such an offer with ``status_hint`` (400, RFC 3261 §21.4.1).
    """

    status_hint = 400

    def __init__(self, reason: str, *, line_number: int | None = None, line: str = "") -> None:
        self.reason = reason
        self.line_number = line_number
        self.line = line
        if line_number is None:
            super().__init__(reason)
        else:
            quoted = line if len(line) <= _MAX_QUOTED_LINE else line[:_MAX_QUOTED_LINE] + "..."
            super().__init__(f"line {line_number}: {reason}: {quoted!r}")


@dataclass(frozen=True, slots=True)
class Origin:
    """The ``o=`` line: who made the session and which version it is (RFC 8866 §5.2)."""

    username: str
    session_id: int
    session_version: int
    address: str
    net_type: str = "IN"
    address_type: str = "IP4"

    @classmethod
    def parse(cls, value: str) -> Self:
        """Parse ``<username> <sess-id> <sess-version> <nettype> <addrtype> <address>``."""
        fields = value.split()
        if len(fields) != 6:
            raise ValueError("o= needs 6 fields")
        username, session_id, session_version, net_type, address_type, address = fields
        if not (is_number(session_id) and is_number(session_version)):
            raise ValueError("o= session id and version must be numbers")
        return cls(username, int(session_id), int(session_version), address, net_type, address_type)

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.net_type} {self.address_type} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """A ``c=`` line: where media goes (RFC 8866 §5.7)."""

    address: str
    net_type: str = "IN"
    address_type: str = "IP4"

    @classmethod
    def parse(cls, value: str) -> Self:
        """Parse ``<nettype> <addrtype> <connection-address>``."""
        fields = value.split()
        if len(fields) != 3:
            raise ValueError("c= needs '<nettype> <addrtype> <address>'")
        net_type, address_type, address = fields
        return cls(address, net_type, address_type)

    @property
    def is_null(self) -> bool:
        """True for ``c=IN IP4 0.0.0.0``, the RFC 2543 way to put a call on hold."""
        return self.address_type == "IP4" and self.address == NULL_ADDRESS_IPV4

    def __str__(self) -> str:
        return f"{self.net_type} {self.address_type} {self.address}"


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """A ``b=<bwtype>:<bandwidth>`` line, e.g. ``b=AS:64`` (RFC 8866 §5.8)."""

    bandwidth_type: str
    bandwidth: int

    @classmethod
    def parse(cls, value: str) -> Self:
        """Parse ``<bwtype>:<bandwidth>``."""
        bandwidth_type, _, bandwidth = value.partition(":")
        if not bandwidth_type or not is_number(bandwidth):
            raise ValueError("b= needs '<bwtype>:<bandwidth>'")
        return cls(bandwidth_type, int(bandwidth))

    def __str__(self) -> str:
        return f"{self.bandwidth_type}:{self.bandwidth}"


@dataclass(frozen=True, slots=True)
class Timing:
    """A ``t=`` line and the ``r=`` lines that follow it (RFC 8866 §5.9, §5.10)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> Self:
        """Parse ``<start-time> <stop-time>`` (repeats are added by the caller)."""
        fields = value.split()
        if len(fields) != 2 or not all(is_number(f) for f in fields):
            raise ValueError("t= needs '<start time> <stop time>'")
        return cls(int(fields[0]), int(fields[1]))


class Direction(StrEnum):
    """The media direction attributes (RFC 8866 §6.7, RFC 3264 §5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        """True when the side that wrote this direction sends media."""
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        """True when the side that wrote this direction receives media."""
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, *, sends: bool, receives: bool) -> Direction:
        """Return the direction that sends and/or receives as asked."""
        return _BY_FLAGS[(sends, receives)]


_BY_FLAGS = {
    (True, True): Direction.SENDRECV,
    (True, False): Direction.SENDONLY,
    (False, True): Direction.RECVONLY,
    (False, False): Direction.INACTIVE,
}
DIRECTION_NAMES = frozenset(d.value for d in Direction)


@dataclass(frozen=True, slots=True)
class Attribute:
    """One ``a=`` line: a property (``a=rtcp-mux``) when ``value`` is None, else a value."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


class AttributeView:
    """Typed reads over an ``attributes`` tuple: the base of session and media descriptions."""

    __slots__ = ()
    attributes: tuple[Attribute, ...]

    def attribute_values(self, name: str) -> tuple[str | None, ...]:
        """Return the value of every ``a=<name>`` line, in order (names are case-sensitive)."""
        return tuple(a.value for a in self.attributes if a.name == name)

    def has_attribute(self, name: str) -> bool:
        """Return True when at least one ``a=<name>`` line is present."""
        return any(a.name == name for a in self.attributes)

    @property
    def direction(self) -> Direction | None:
        """The direction attribute written at this level, or None (RFC 8866 §6.7)."""
        for attribute in self.attributes:
            if attribute.name in DIRECTION_NAMES:
                return Direction(attribute.name)
        return None


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding name>/<clock rate>[/<channels>]`` (RFC 8866 §6.6)."""

    payload_type: int
    encoding_name: str
    clock_rate_hz: int
    channels: int = 1

    @classmethod
    def parse(cls, value: str) -> Self:
        """Parse an rtpmap value such as ``96 opus/48000/2``.

        Raises:
            ValueError: naming what is wrong.
        """
        payload_type_text, _, encoding = value.strip().partition(" ")
        parts = encoding.strip().split("/")
        if not 2 <= len(parts) <= 3 or not parts[0]:
            raise ValueError("rtpmap needs '<pt> <encoding>/<clock rate>[/<channels>]'")
        channels = _positive_int(parts[2], "rtpmap channels") if len(parts) == 3 else 1
        return cls(
            payload_type=payload_type(payload_type_text),
            encoding_name=parts[0],
            clock_rate_hz=_positive_int(parts[1], "rtpmap clock rate"),
            channels=channels,
        )

    def to_attribute(self) -> Attribute:
        """Return this mapping as an ``a=rtpmap`` attribute (channels only when not 1)."""
        return Attribute("rtpmap", str(self))

    def __str__(self) -> str:
        suffix = "" if self.channels == 1 else f"/{self.channels}"
        return f"{self.payload_type} {self.encoding_name}/{self.clock_rate_hz}{suffix}"


@dataclass(frozen=True, slots=True)
class Fmtp:
    """``a=fmtp:<format> <format specific parameters>`` (RFC 8866 §6.15)."""

    format: str
    parameters: str

    @classmethod
    def parse(cls, value: str) -> Self:
        """Parse an fmtp value such as ``96 useinbandfec=1``.

        Raises:
            ValueError: when the format is missing.
        """
        fmt, _, parameters = value.strip().partition(" ")
        if not fmt:
            raise ValueError("fmtp needs '<format> <parameters>'")
        return cls(format=fmt, parameters=parameters.strip())

    def to_attribute(self) -> Attribute:
        """Return this as an ``a=fmtp`` attribute."""
        return Attribute("fmtp", f"{self.format} {self.parameters}")


def fmtp_parameters(parameters: str | None) -> dict[str, str]:
    """Split ``key=value;key=value`` fmtp text; names are lower-cased (RFC 7587 §6.1).

    An item without ``=`` (``0-15`` for telephone-event) maps to the empty string.
    """
    result: dict[str, str] = {}
    for item in (parameters or "").split(";"):
        name, _, value = item.strip().partition("=")
        if name:
            result[name.strip().lower()] = value.strip()
    return result


@dataclass(frozen=True, slots=True)
class RtcpAttribute:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 §2.1)."""

    port: int
    address: str | None = None

    @classmethod
    def parse(cls, value: str) -> Self:
        """Parse an rtcp value such as ``53021 IN IP4 126.16.64.4``.

        Raises:
            ValueError: when the port or the address part is malformed.
        """
        fields = value.split()
        if len(fields) not in (1, 4):
            raise ValueError("rtcp needs '<port> [IN <addrtype> <address>]'")
        return cls(port=port_number(fields[0]), address=fields[3] if len(fields) == 4 else None)


def is_number(text: str) -> bool:
    """True for ASCII digits only: ``str.isdigit`` also accepts ``²``, which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def payload_type(text: str) -> int:
    """Parse an RTP payload type number, 0-127 (RFC 3550 §5.1).

    Raises:
        ValueError: when ``text`` is not such a number.
    """
    if not is_number(text) or int(text) > MAX_PAYLOAD_TYPE:
        raise ValueError(f"payload type must be 0-{MAX_PAYLOAD_TYPE}")
    return int(text)


def port_number(text: str) -> int:
    """Parse a transport port, 0-65535 (RFC 8866 §5.14).

    Raises:
        ValueError: when ``text`` is not such a number.
    """
    if not is_number(text) or int(text) > MAX_PORT:
        raise ValueError("port must be 0-65535")
    return int(text)


def check_attribute(attribute: Attribute) -> None:
    """Check the value of an attribute whose meaning negotiation relies on.

    Raises:
        ValueError: naming what is wrong; other attributes always pass.
    """
    checker = _CHECKERS.get(attribute.name)
    if checker is not None:
        checker(attribute.value or "")


def _check_duration(value: str) -> None:
    try:
        duration = float(value)
    except ValueError:
        raise ValueError("packet time must be a number of milliseconds") from None
    if not 0 < duration < 1e6:
        raise ValueError("packet time must be a number of milliseconds")


def _positive_int(text: str, what: str) -> int:
    if not is_number(text) or int(text) == 0:
        raise ValueError(f"{what} must be a positive integer")
    return int(text)


_CHECKERS: Mapping[str, Callable[[str], object]] = {
    "rtpmap": RtpMap.parse,
    "fmtp": Fmtp.parse,
    "rtcp": RtcpAttribute.parse,
    "ptime": _check_duration,
    "maxptime": _check_duration,
}

# RFC 3551 §6, table 4 (audio) and table 5 (video). G722's clock is 8000 by
# an error frozen into RFC 1890 and kept for compatibility (RFC 3551 §4.5.2).
STATIC_PAYLOAD_TYPES: Mapping[int, RtpMap] = {
    rtpmap.payload_type: rtpmap
    for rtpmap in (
        RtpMap(0, "PCMU", 8000),
        RtpMap(3, "GSM", 8000),
        RtpMap(4, "G723", 8000),
        RtpMap(5, "DVI4", 8000),
        RtpMap(6, "DVI4", 16000),
        RtpMap(7, "LPC", 8000),
        RtpMap(8, "PCMA", 8000),
        RtpMap(9, "G722", 8000),
        RtpMap(10, "L16", 44100, 2),
        RtpMap(11, "L16", 44100),
        RtpMap(12, "QCELP", 8000),
        RtpMap(13, "CN", 8000),
        RtpMap(14, "MPA", 90000),
        RtpMap(15, "G728", 8000),
        RtpMap(16, "DVI4", 11025),
        RtpMap(17, "DVI4", 22050),
        RtpMap(18, "G729", 8000),
        RtpMap(25, "CelB", 90000),
        RtpMap(26, "JPEG", 90000),
        RtpMap(28, "nv", 90000),
        RtpMap(31, "H261", 90000),
        RtpMap(32, "MPV", 90000),
        RtpMap(33, "MP2T", 90000),
        RtpMap(34, "H263", 90000),
    )
}
