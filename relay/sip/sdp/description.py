"""Session descriptions: parse and serialize SDP (RFC 8866), sans-I/O.

Theory of operation:

1. A description is a tree of frozen values: `SessionDescription` holds the
   session-level lines and a tuple of `MediaDescription` (RFC 8866 §5). The
   value of each line is a type from `relay.sip.sdp.fields`, re-exported here.
2. Every ``a=`` line is kept as an `Attribute`, in order, known or not, so an
   unknown attribute (``a=rtcp-fb``, ``a=ssrc``, ``a=label``) round-trips.
   Typed views (`MediaDescription.rtpmap`, ``.ptime_ms``, ``.direction``, …)
   are computed from those attributes: there is one source of truth.
3. Known attributes are checked while parsing, so a bad ``a=rtpmap`` fails with
   an `SdpParseError` naming its line rather than later, in negotiation.
4. Input may end lines with CRLF or a bare LF (RFC 8866 §5 asks parsers to be
   tolerant of LF); blank lines are skipped. Output always uses CRLF.
5. Lines are written in RFC 8866 §5 order whatever order they came in, so
   ``parse(str(sdp)) == sdp`` holds for every description, and
   ``str(parse(text)) == text`` for text already in that order with CRLF.
6. A payload type without ``a=rtpmap`` resolves through the static table of
   RFC 3551 §6 (G.722's RTP clock is 8000 although it samples at 16 kHz,
   RFC 3551 §4.5.2).
7. Hold is a stream whose effective direction is sendonly or inactive
   (RFC 3264 §8.4) or whose connection address is 0.0.0.0 (RFC 2543 hold).

Size: a little over 400 lines: the session and media descriptions and their parser/serializer
(the line types are in ``fields.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Self, TypeVar

from relay.sip.sdp.fields import (
    MAX_PAYLOAD_TYPE,
    STATIC_PAYLOAD_TYPES,
    Attribute,
    AttributeView,
    Bandwidth,
    Connection,
    Direction,
    Fmtp,
    Origin,
    RtcpAttribute,
    RtpMap,
    SdpParseError,
    Timing,
    check_attribute,
    is_number,
    port_number,
)

__all__ = [
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Bandwidth",
    "Connection",
    "Direction",
    "Fmtp",
    "MediaDescription",
    "Origin",
    "RtcpAttribute",
    "RtpMap",
    "SdpParseError",
    "SessionDescription",
    "Timing",
]

CRLF = "\r\n"


@dataclass(frozen=True, slots=True)
class MediaDescription(AttributeView):
    """One ``m=`` section and the lines under it (RFC 8866 §5.14)."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    number_of_ports: int | None = None
    information: str | None = None
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    encryption_key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The formats that are RTP payload types (0-127), in the offerer's preference order."""
        numbers = (f for f in self.formats if is_number(f) and len(f) <= 3)  # no 5000-digit ints
        return tuple(int(f) for f in numbers if int(f) <= MAX_PAYLOAD_TYPE)

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        """Return the mapping of a payload type: ``a=rtpmap`` first, then RFC 3551 §6."""
        for value in self.attribute_values("rtpmap"):
            rtpmap = RtpMap.parse(value or "")
            if rtpmap.payload_type == payload_type:
                return rtpmap
        return STATIC_PAYLOAD_TYPES.get(payload_type)

    @property
    def rtpmaps(self) -> tuple[RtpMap, ...]:
        """Mappings of the listed payload types, in format order; unmapped ones are skipped."""
        found = (self.rtpmap(pt) for pt in self.payload_types)
        return tuple(rtpmap for rtpmap in found if rtpmap is not None)

    def fmtp(self, payload_type: int) -> str | None:
        """Return the ``a=fmtp`` parameters of a payload type, or None (RFC 8866 §6.15)."""
        for value in self.attribute_values("fmtp"):
            fmtp = Fmtp.parse(value or "")
            if fmtp.format == str(payload_type):
                return fmtp.parameters
        return None

    @property
    def ptime_ms(self) -> int | None:
        """``a=ptime``: the packet duration this side wants to receive (RFC 8866 §6.4)."""
        return _first_duration_ms(self.attribute_values("ptime"))

    @property
    def maxptime_ms(self) -> int | None:
        """``a=maxptime``: the longest packet duration this side accepts (RFC 8866 §6.5)."""
        return _first_duration_ms(self.attribute_values("maxptime"))

    @property
    def rtcp(self) -> RtcpAttribute | None:
        """``a=rtcp``: a RTCP port other than RTP port + 1 (RFC 3605 §2.1)."""
        values = self.attribute_values("rtcp")
        return RtcpAttribute.parse(values[0] or "") if values else None

    @property
    def rtcp_mux(self) -> bool:
        """``a=rtcp-mux``: RTP and RTCP share one port (RFC 5761 §5.1.1)."""
        return self.has_attribute("rtcp-mux")

    def lines(self) -> Iterator[str]:
        """Yield this section's lines without line endings, in RFC 8866 §5 order."""
        port = self.port if self.number_of_ports is None else f"{self.port}/{self.number_of_ports}"
        yield " ".join((f"m={self.media}", str(port), self.proto, *self.formats))
        yield from _optional("i", self.information)
        yield from _optional("c", self.connection)
        yield from (f"b={b}" for b in self.bandwidths)
        yield from _optional("k", self.encryption_key)
        yield from (f"a={a}" for a in self.attributes)


@dataclass(frozen=True, slots=True)
class SessionDescription(AttributeView):
    """A whole SDP body (RFC 8866 §5): session-level lines, then media sections."""

    origin: Origin
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    timings: tuple[Timing, ...] = (Timing(),)
    zone_adjustments: str | None = None
    encryption_key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()

    @classmethod
    def parse(cls, text: str | bytes) -> Self:
        """Parse an SDP body; CRLF or LF line ends, unknown attributes kept.

        Raises:
            SdpParseError: naming the line number and text of the first bad line.
        """
        lines = _split_lines(text)
        starts = [i for i, line in enumerate(lines) if line.kind == "m"] + [len(lines)]
        s = _parse_session(lines[: starts[0]])
        return cls(
            origin=s.origin,
            session_name=s.session_name,
            information=s.information,
            uri=s.uri,
            emails=tuple(s.emails),
            phones=tuple(s.phones),
            connection=s.connection,
            bandwidths=tuple(s.bandwidths),
            timings=tuple(dataclasses.replace(t, repeats=tuple(r)) for t, r in s.timings),
            zone_adjustments=s.zone_adjustments,
            encryption_key=s.encryption_key,
            attributes=tuple(s.attributes),
            media=tuple(_parse_media(lines[a:b]) for a, b in itertools.pairwise(starts)),
        )

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """Return the media-level ``c=``, else the session-level one (RFC 8866 §5.7)."""
        return media.connection or self.connection

    def direction_for(self, media: MediaDescription) -> Direction:
        """Return the effective direction: media level, session level, else sendrecv.

        (RFC 3264 §5.1: a session-level direction applies to every stream.)
        """
        return media.direction or self.direction or Direction.SENDRECV

    def is_hold(self, media: MediaDescription) -> bool:
        """Return True when the writer of this SDP holds the stream.

        That is sendonly or inactive (RFC 3264 §8.4) or ``c=IN IP4 0.0.0.0``
        (RFC 2543 style, which RFC 3264 §8.4 still asks answerers to accept).
        """
        connection = self.connection_for(media)
        held = self.direction_for(media) in (Direction.SENDONLY, Direction.INACTIVE)
        return held or (connection is not None and connection.is_null)

    def with_version(self, session_version: int) -> Self:
        """Return a copy whose ``o=`` carries a new session version (RFC 3264 §8)."""
        origin = dataclasses.replace(self.origin, session_version=session_version)
        return dataclasses.replace(self, origin=origin)

    def lines(self) -> Iterator[str]:
        """Yield every line without line endings, in RFC 8866 §5 order."""
        yield f"v={self.version}"
        yield f"o={self.origin}"
        yield f"s={self.session_name}"
        yield from _optional("i", self.information)
        yield from _optional("u", self.uri)
        yield from (f"e={e}" for e in self.emails)
        yield from (f"p={p}" for p in self.phones)
        yield from _optional("c", self.connection)
        yield from (f"b={b}" for b in self.bandwidths)
        for timing in self.timings:
            yield f"t={timing.start} {timing.stop}"
            yield from (f"r={r}" for r in timing.repeats)
        yield from _optional("z", self.zone_adjustments)
        yield from _optional("k", self.encryption_key)
        yield from (f"a={a}" for a in self.attributes)
        for media in self.media:
            yield from media.lines()

    def __str__(self) -> str:
        return "".join(line + CRLF for line in self.lines())

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")


def _optional(kind: str, value: object | None) -> Iterator[str]:
    if value is not None:
        yield f"{kind}={value}"


def _first_duration_ms(values: tuple[str | None, ...]) -> int | None:
    return round(float(values[0] or "")) if values else None


# --- parsing: lines in, frozen values out ---------------------------------------

_T = TypeVar("_T")
_ONCE_PER_LEVEL = frozenset("vosiuczk")  # RFC 8866 §5: at most one of these per level


class _Line(NamedTuple):
    number: int
    kind: str
    value: str
    text: str

    def error(self, reason: str) -> SdpParseError:
        return SdpParseError(reason, line_number=self.number, line=self.text)

    def read(self, parse: Callable[[str], _T]) -> _T:
        """Parse this line's value, turning a ValueError into an SdpParseError."""
        try:
            return parse(self.value)
        except ValueError as exc:
            raise self.error(str(exc)) from None


@dataclass
class _Session:
    """Session-level values gathered while parsing, frozen by `SessionDescription.parse`."""

    origin: Origin = Origin("-", 0, 0, "0.0.0.0")
    session_name: str = "-"
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    timings: list[tuple[Timing, list[str]]] = field(default_factory=list)
    zone_adjustments: str | None = None
    encryption_key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


def _split_lines(text: str | bytes) -> list[_Line]:
    """Split into ``<type>=<value>`` lines; accept CRLF or LF, skip blank lines."""
    if isinstance(text, bytes):
        text = _decode(text)
    lines = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
            raise SdpParseError("expected '<type>=<value>'", line_number=number, line=line)
        lines.append(_Line(number, line[0], line[2:], line))
    if not lines:
        raise SdpParseError("empty session description")
    if lines[0].kind != "v":
        raise lines[0].error("SDP must begin with v=")
    return lines


def _decode(data: bytes) -> str:
    """Decode UTF-8 (RFC 8866 §5: the default charset); name the bad line on failure."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        number = data.count(b"\n", 0, exc.start) + 1
        line = data.split(b"\n")[number - 1].rstrip(b"\r").decode("utf-8", "replace")
        reason = f"not UTF-8 at byte {exc.start}"
        raise SdpParseError(reason, line_number=number, line=line) from None


def _parse_session(lines: Sequence[_Line]) -> _Session:
    s = _Session()
    for line in lines:
        _check_once(s.seen, line)
        match line.kind:
            case "v" if line.value != "0":
                raise line.error("unsupported SDP version (expected v=0)")
            case "v":
                pass
            case "o":
                s.origin = line.read(Origin.parse)
            case "s" | "i" | "u" | "z" | "k":
                setattr(s, _SESSION_TEXT[line.kind], line.value)
            case "e" | "p":
                (s.emails if line.kind == "e" else s.phones).append(line.value)
            case "c":
                s.connection = line.read(Connection.parse)
            case "b":
                s.bandwidths.append(line.read(Bandwidth.parse))
            case "t":
                s.timings.append((line.read(Timing.parse), []))
            case "r" if s.timings:
                s.timings[-1][1].append(line.value)
            case "r":
                raise line.error("r= must follow a t= line")
            case "a":
                s.attributes.append(_attribute(line))
            case _:
                raise line.error(f"{line.kind}= is not allowed here")
    missing = [kind for kind in "os" if kind not in s.seen]
    if missing:
        raise SdpParseError(f"missing {missing[0]}= line")
    return s


_SESSION_TEXT = {
    "s": "session_name",
    "i": "information",
    "u": "uri",
    "z": "zone_adjustments",
    "k": "encryption_key",
}


def _parse_media(lines: Sequence[_Line]) -> MediaDescription:
    media = lines[0].read(_media_field)
    seen: set[str] = set()
    bandwidths: list[Bandwidth] = []
    attributes: list[Attribute] = []
    for line in lines[1:]:
        _check_once(seen, line)
        match line.kind:
            case "i":
                media = dataclasses.replace(media, information=line.value)
            case "c":
                media = dataclasses.replace(media, connection=line.read(Connection.parse))
            case "b":
                bandwidths.append(line.read(Bandwidth.parse))
            case "k":
                media = dataclasses.replace(media, encryption_key=line.value)
            case "a":
                attributes.append(_attribute(line))
            case _:
                raise line.error(f"{line.kind}= is not allowed in a media description")
    return dataclasses.replace(media, bandwidths=tuple(bandwidths), attributes=tuple(attributes))


def _check_once(seen: set[str], line: _Line) -> None:
    if line.kind in _ONCE_PER_LEVEL and line.kind in seen:
        raise line.error(f"duplicate {line.kind}= line")
    seen.add(line.kind)


def _attribute(line: _Line) -> Attribute:
    name, colon, value = line.value.partition(":")
    if not name:
        raise line.error("a= needs an attribute name")
    attribute = Attribute(name, value if colon else None)
    line.read(lambda _: check_attribute(attribute))
    return attribute


def _media_field(value: str) -> MediaDescription:
    """Parse ``<media> <port>[/<number of ports>] <proto> <fmt> ...`` (RFC 8866 §5.14)."""
    fields = value.split()
    if len(fields) < 4:
        raise ValueError("m= needs '<media> <port> <proto> <fmt> ...'")
    media, port_text, proto, *formats = fields
    port, slash, count = port_text.partition("/")
    if slash and (not is_number(count) or int(count) == 0):
        raise ValueError("m= number of ports must be a positive integer")
    number_of_ports = int(count) if slash else None
    return MediaDescription(media, port_number(port), proto, tuple(formats), number_of_ports)
