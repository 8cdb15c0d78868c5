"""SIP requests and responses as frozen values, their serialization and §8.2.6 responses.

Theory of operation:

1. :class:`Request` and :class:`Response` are immutable; ``bytes(message)`` serializes with
   CRLF line ends and a ``Content-Length`` computed from the body (RFC 3261 §7.5, §20.14).
   ``Content-Length`` is framing: it is never stored in ``headers``.
2. The accessors (``call_id``, ``cseq``, ``from_``, ``to``, ``vias``...) parse their header
   field lazily and cache it on the message's :class:`Headers`; a malformed field raises
   :class:`SipParseError` on access. Messages from ``parse_message`` always carry the five
   mandatory fields (Via, From, To, Call-ID, CSeq); for them only the typed parse can fail.
3. :func:`make_response` builds a response as RFC 3261 §8.2.6 says (copy Via, From, To,
   Call-ID, CSeq; add a To tag). :func:`error_response` turns a :class:`SipParseError` into
   the stateless response it calls for, or ``None`` when the message must be dropped.
4. The round-trip law ``parse_message(bytes(m)) == m`` holds for every message built from
   valid parts: names are canonical and values stripped at construction.
"""

from __future__ import annotations

import re
from dataclasses import KW_ONLY, dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from relay.sip.errors import LocalProtocolError, SipParseError
from relay.sip.syntax.headers import CSeq, Headers, Via, parse_max_forwards
from relay.sip.syntax.uri import AbsoluteUri, NameAddr, SipUri

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

T = TypeVar("T")

__all__ = [
    "REASON_PHRASES",
    "Request",
    "Response",
    "build_request",
    "error_response",
    "make_response",
]

SIP_VERSION = "SIP/2.0"  # RFC 3261 §7.1

# RFC 3261 §21, RFC 3262 (Not acceptable here...), RFC 3265/6665, RFC 4028, RFC 3329.
REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service", 400: "Bad Request",
    401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required",
    408: "Request Timeout", 410: "Gone", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    420: "Bad Extension", 421: "Extension Required", 422: "Session Interval Too Small",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip

_parse_from = partial(NameAddr.parse, header="From")
_parse_to = partial(NameAddr.parse, header="To")
_parse_contact = partial(NameAddr.parse, header="Contact")
_parse_route = partial(NameAddr.parse, header="Route")
_parse_record_route = partial(NameAddr.parse, header="Record-Route")
_RESPONSE_COPIED = ("Via", "From", "To", "Call-ID", "CSeq")  # RFC 3261 §8.2.6.2
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


class _Accessors:
    """Typed, cached views of the header fields both message kinds share."""

    __slots__ = ()
    headers: Headers

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"Missing mandatory header field: {name}", header=name)
        return value

    def _typed(self, name: str, parser: Callable[[str], T]) -> T:
        value = self.headers.typed(name, parser)
        if value is None:
            raise SipParseError(f"Missing mandatory header field: {name}", header=name)
        return value

    @property
    def call_id(self) -> str:
        """Return the Call-ID (RFC 3261 §20.8)."""
        return self._required("Call-ID")

    @property
    def cseq(self) -> CSeq:
        """Return the parsed CSeq (RFC 3261 §20.16)."""
        return self._typed("CSeq", CSeq.parse)

    @property
    def from_(self) -> NameAddr:
        """Return the parsed From (RFC 3261 §20.20)."""
        return self._typed("From", _parse_from)

    @property
    def to(self) -> NameAddr:
        """Return the parsed To (RFC 3261 §20.39)."""
        return self._typed("To", _parse_to)

    @property
    def vias(self) -> tuple[Via, ...]:
        """Return every Via element, topmost first (RFC 3261 §20.42)."""
        return self.headers.typed_all("Via", Via.parse)

    @property
    def top_via(self) -> Via:
        """Return the topmost Via."""
        vias = self.vias
        if not vias:
            raise SipParseError("Missing mandatory header field: Via", header="Via")
        return vias[0]

    @property
    def branch(self) -> str | None:
        """Return the top Via's branch: the transaction key (RFC 3261 §17.2.3)."""
        return self.top_via.branch

    @property
    def contacts(self) -> tuple[NameAddr, ...]:
        """Return the Contact values; ``()`` for none and for the wildcard ``*`` (§10.2.2)."""
        if self.headers.get("Contact") == "*":
            return ()
        return self.headers.typed_all("Contact", _parse_contact)

    @property
    def routes(self) -> tuple[NameAddr, ...]:
        """Return the Route values in order (RFC 3261 §20.34)."""
        return self.headers.typed_all("Route", _parse_route)

    @property
    def record_routes(self) -> tuple[NameAddr, ...]:
        """Return the Record-Route values in order (RFC 3261 §20.30)."""
        return self.headers.typed_all("Record-Route", _parse_record_route)

    @property
    def max_forwards(self) -> int | None:
        """Return Max-Forwards, or ``None`` when absent (RFC 2543 peers omit it)."""
        return self.headers.typed("Max-Forwards", parse_max_forwards)

    @property
    def content_type(self) -> str | None:
        """Return the media type of the body, lower-cased, without parameters."""
        value = self.headers.get("Content-Type")
        return None if value is None else value.partition(";")[0].strip(" \t").lower()


def _check_headers(headers: Headers) -> None:
    if "Content-Length" in headers:
        raise LocalProtocolError("Content-Length is computed from the body; do not set it")


def _serialize(start_line: str, headers: Headers, body: bytes) -> bytes:
    lines = [start_line]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body


@dataclass(frozen=True, slots=True)
class Request(_Accessors):
    """A SIP request (RFC 3261 §7.1)."""

    method: str
    uri: SipUri | AbsoluteUri
    _: KW_ONLY
    headers: Headers
    body: bytes = b""

    def __post_init__(self) -> None:
        """Refuse a stored Content-Length (it is derived from ``body``)."""
        _check_headers(self.headers)

    def __bytes__(self) -> bytes:
        """Serialize: request line, header fields, Content-Length, CRLF, body."""
        return _serialize(f"{self.method} {self.uri} {SIP_VERSION}", self.headers, self.body)


@dataclass(frozen=True, slots=True)
class Response(_Accessors):
    """A SIP response (RFC 3261 §7.2)."""

    status: int
    reason: str
    _: KW_ONLY
    headers: Headers
    body: bytes = b""

    def __post_init__(self) -> None:
        """Refuse a stored Content-Length and a status outside 100-699."""
        _check_headers(self.headers)
        if not 100 <= self.status <= 699:
            raise LocalProtocolError(f"Status code out of range: {self.status}")

    def __bytes__(self) -> bytes:
        """Serialize: status line, header fields, Content-Length, CRLF, body."""
        return _serialize(f"{SIP_VERSION} {self.status} {self.reason}", self.headers, self.body)


def build_request(
    method: str,
    uri: SipUri | AbsoluteUri,
    *,
    via: Via,
    from_: NameAddr,
    to: NameAddr,
    call_id: str,
    cseq: int,
    max_forwards: int = 70,
    contact: NameAddr | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """Build a request with the mandatory fields in the customary order (RFC 3261 §8.1.1).

    Raises:
        LocalProtocolError: a body without ``content_type`` (RFC 3261 §20.15), or bad fields.
    """
    if body and content_type is None:
        raise LocalProtocolError("A request with a body needs a Content-Type")
    fields = [
        ("Via", str(via)),
        ("Max-Forwards", str(max_forwards)),
        ("From", str(from_)),
        ("To", str(to)),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
    ]
    if contact is not None:
        fields.append(("Contact", str(contact)))
    fields.extend(extra_headers)
    if content_type is not None:
        fields.append(("Content-Type", content_type))
    return Request(method, uri, headers=Headers(fields), body=body)


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build the response to ``request`` as RFC 3261 §8.2.6 prescribes.

    Via (all, in order), From, To, Call-ID and CSeq are copied; ``to_tag`` is added to To
    unless the request's To already has a tag (§8.2.6.2: give one for every response but
    100); a 100 copies Timestamp (§8.2.6.1). ``reason`` defaults to the standard phrase.
    """
    fields = _copied_fields(request.headers, to_tag, request.to.tag is not None)
    if status == 100 and "Timestamp" in request.headers:
        fields.append(("Timestamp", request.headers.get("Timestamp") or ""))
    fields.extend(extra_headers)
    phrase = reason if reason is not None else REASON_PHRASES.get(status, "Unknown")
    return Response(status, phrase, headers=Headers(fields), body=body)


def _copied_fields(headers: Headers, to_tag: str | None, has_tag: bool) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for name in _RESPONSE_COPIED:
        for name_, value in headers:
            if name_ != name:
                continue
            if name == "To" and to_tag is not None and not has_tag:
                value = f"{value};tag={to_tag}"
            fields.append((name, value))
    return fields


def error_response(error: SipParseError, *, to_tag: str) -> Response | None:
    """Return the stateless response a parse or validation error calls for, or ``None``.

    Usage by a transport::

        try:
            message = parse_message(datagram)
            if isinstance(message, Request):
                validate_request(message)
        except SipParseError as err:
            reply = error_response(err, to_tag=ids.tag())
            if reply is not None:
                send(bytes(reply), reply.top_via.response_address())
            # else: drop, count, debug-log

    ``None`` means drop: the message was a response, an ACK (never answered, §17), or its
    header section was too broken to find a Via to answer to. The reason phrase is the
    error's message, made printable ASCII.
    """
    headers = error.headers if error.request is None else error.request.headers
    if not error.is_request or headers is None or error.method == "ACK" or "Via" not in headers:
        return None
    has_tag = _has_tag(headers)
    fields = _copied_fields(headers, to_tag, has_tag)
    fields.extend(error.response_headers)
    reason = " ".join(_UNPRINTABLE.sub(" ", error.message).split())[:120] or "Bad Request"
    return Response(error.status_hint, reason, headers=Headers(fields))


def _has_tag(headers: Headers) -> bool:
    try:
        to = headers.typed("To", _parse_to)
    except SipParseError:
        return True  # a malformed To is echoed untouched rather than made worse
    return to is None or to.tag is not None
