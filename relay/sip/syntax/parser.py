"""Bytes to messages: datagrams (:func:`parse_message`) and streams (:class:`StreamFramer`).

Theory of operation (RFC 3261 §7, §18.3):

1. A message is a start line, header fields, an empty line and a body. Parsing runs in two
   stages. *Framing* splits the header section into lines, undoes folding (§7.3.1),
   canonicalizes names and reads Content-Length; an error here means the byte stream cannot
   be cut into messages. *Checking* parses the start line and the fields every message
   needs (Via, From, To, Call-ID, CSeq; only once each, CSeq's method matching the request
   method); an error here concerns one message, which the caller may answer.
2. A datagram holds one message: a Content-Length larger than the body is an error (400),
   a smaller one truncates the body, none means "to the end" (§18.3).
3. On a stream Content-Length is mandatory and the framer caps the header section (513)
   and the declared body (413) before buffering them. CRLF CRLF between messages is an
   RFC 5626 keep-alive ping (answer with a single CRLF pong); a lone CRLF is a pong.
   After a framing error the framer is ``broken``: close the connection.
4. :func:`parse_message` raises only :class:`SipParseError`, whatever the input. Typed
   header fields beyond the five above are parsed lazily; :func:`validate_request` parses
   them all and applies the RFC 3261 / RFC 4475 acceptance rules, raising a
   :class:`SipParseError` with the status to answer (see ``message.error_response``).

Size: a little over 400 lines: the datagram parser, the stream framer and the acceptance checks
share the header-section reader.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from relay.sip.errors import SipParseError
from relay.sip.syntax import abnf
from relay.sip.syntax.headers import CSeq, Headers, canonical_name
from relay.sip.syntax.message import SIP_VERSION, Request, Response
from relay.sip.syntax.uri import AbsoluteUri, SipUri, parse_uri

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "PingReceived",
    "PongReceived",
    "StreamFramer",
    "is_keepalive",
    "parse_message",
    "validate_request",
    "validate_response",
]

DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_MAX_BODY_BYTES = 64 * 1024
_MANDATORY = ("To", "From", "CSeq", "Call-ID", "Via")  # RFC 3261 §8.1.1
_SINGLE = ("To", "From", "CSeq", "Call-ID", "Max-Forwards")  # RFC 4475 §3.3.8
_METHOD = re.compile(abnf.METHOD)
_VERSION = re.compile(abnf.SIP_VERSION)
_STATUS = re.compile(abnf.STATUS_CODE)
_DIGITS = re.compile(r"[0-9]{1,10}")
_CALL_ID = re.compile(abnf.CALL_ID)
_SDP_ACCEPTED = frozenset({"application/sdp", "application/*", "*/*"})


@dataclass(frozen=True, slots=True)
class PingReceived:
    """A CRLF CRLF keep-alive arrived on a stream: write ``b"\\r\\n"`` back (RFC 5626 §3.5.1)."""


@dataclass(frozen=True, slots=True)
class PongReceived:
    """A single CRLF arrived on a stream: the answer to our own ping (RFC 5626 §3.5.1)."""


@dataclass(frozen=True, slots=True)
class _Head:
    start_line: str
    fields: tuple[tuple[str, str], ...]
    content_length: int | None


def parse_message(data: bytes) -> Request | Response:
    """Parse one SIP message from a datagram (RFC 3261 §7, §18.3).

    Raises:
        SipParseError: and nothing else, whatever ``data`` holds. Its ``headers``,
            ``is_request`` and ``method`` are set when the header section was readable.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipParseError("Missing empty line after the header section")
    head = _frame_head(data[:end])
    body = data[end + 4 :]
    length = head.content_length
    message = _check(head, body if length is None else body[:length])
    if length is not None and length > len(body):
        err = SipParseError(
            f"Content-Length {length} exceeds the {len(body)} body bytes received",
            header="Content-Length",
        )
        raise _with_context(err, message.headers, head.start_line)
    return message


def is_keepalive(data: bytes) -> bool:
    """Return whether a datagram is only CR/LF/NUL/whitespace, as UAs send to keep NAT open."""
    return bool(data) and not data.strip(b"\r\n\x00 \t")


def _frame_head(head: bytes) -> _Head:
    lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        if "\r" in line or "\n" in line:
            raise SipParseError("Bare CR or LF in the header section")
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipParseError("Continuation line before the first header field")
            name, value = fields[-1]
            fields[-1] = (name, (value + " " + line.strip(" \t")).strip(" \t"))
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"Malformed header field line: {line[:40]!r}")
        fields.append((canonical_name(name.rstrip(" \t")), value.strip(" \t")))
    lengths = [value for name, value in fields if name == "Content-Length"]
    if lengths:
        fields = [field for field in fields if field[0] != "Content-Length"]
    try:
        content_length = _content_length(lengths)
    except SipParseError as err:
        raise _with_context(err, Headers._trusted(tuple(fields)), lines[0]) from None
    return _Head(lines[0], tuple(fields), content_length)


def _content_length(values: list[str]) -> int | None:
    if not values:
        return None
    if len(values) > 1:
        raise SipParseError("Multiple Content-Length header fields", header="Content-Length")
    if not _DIGITS.fullmatch(values[0]):
        raise SipParseError(
            f"Invalid Content-Length header field: {values[0][:20]!r}", header="Content-Length"
        )
    return int(values[0])


def _check(head: _Head, body: bytes) -> Request | Response:
    headers = Headers._trusted(head.fields)
    try:
        if head.start_line.startswith("SIP/"):
            message: Request | Response = _response(head.start_line, headers, body)
        else:
            message = _request(head.start_line, headers, body)
        _check_fields(headers)
    except SipParseError as err:
        raise _with_context(err, headers, head.start_line) from None
    if isinstance(message, Request) and message.cseq.method != message.method:
        mismatch = SipParseError(
            f"CSeq method {message.cseq.method} does not match request method {message.method}",
            header="CSeq",
        )
        raise _with_context(mismatch, headers, head.start_line)
    return message


def _with_context(err: SipParseError, headers: Headers, start_line: str) -> SipParseError:
    err.headers = headers
    err.is_request = not start_line.startswith("SIP/")
    if err.is_request:
        err.method = start_line.partition(" ")[0] or None
    return err


def _request(start_line: str, headers: Headers, body: bytes) -> Request:
    parts = start_line.split(" ")
    if len(parts) != 3 or not _METHOD.fullmatch(parts[0]):
        raise SipParseError(f"Malformed request line: {start_line[:80]!r}")
    _check_version(parts[2], start_line)
    try:
        uri = parse_uri(parts[1])
    except SipParseError:
        raise SipParseError(f"Malformed Request-URI: {parts[1][:80]!r}") from None
    return Request(parts[0], uri, headers=headers, body=body)


def _response(start_line: str, headers: Headers, body: bytes) -> Response:
    parts = start_line.split(" ", 2)
    _check_version(parts[0], start_line)
    if len(parts) < 2 or not _STATUS.fullmatch(parts[1]):
        raise SipParseError(f"Malformed status line: {start_line[:80]!r}")
    return Response(int(parts[1]), parts[2] if len(parts) == 3 else "", headers=headers, body=body)


def _check_version(version: str, start_line: str) -> None:
    if version.upper() == SIP_VERSION:
        return
    if _VERSION.fullmatch(version):
        raise SipParseError(f"Unsupported SIP version: {version}", status_hint=505)
    raise SipParseError(f"Malformed start line: {start_line[:80]!r}")


def _check_fields(headers: Headers) -> None:
    for name in _MANDATORY:
        if name not in headers:
            raise SipParseError(f"Missing mandatory header field: {name}", header=name)
    for name in _SINGLE:
        if headers.count(name) > 1:
            raise SipParseError(f"Multiple {name} header fields", header=name)
    headers.typed("CSeq", CSeq.parse)


class StreamFramer:
    """Cut a TCP/TLS byte stream into SIP messages and keep-alives (RFC 3261 §18.3).

    Feed bytes as they arrive with :meth:`feed`, then drain :meth:`next_event` (or iterate)
    until it returns ``None``. Events are :class:`Request`, :class:`Response`,
    :class:`PingReceived` and :class:`PongReceived`. A :class:`SipParseError` from
    :meth:`next_event` concerns one message; when :attr:`broken` is then true the stream
    cannot be resynchronized and the same error is raised again on every call.
    """

    def __init__(
        self,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        """Create an empty framer with the given caps (defaults 16 KiB and 64 KiB)."""
        self._buffer = bytearray()
        self._max_header_bytes = max_header_bytes
        self._max_body_bytes = max_body_bytes
        self._scanned = 0
        self._head: _Head | None = None
        self._head_size = 0
        self._error: SipParseError | None = None

    @property
    def broken(self) -> bool:
        """Return whether a framing error made the stream unusable (close the connection)."""
        return self._error is not None

    @property
    def buffered_bytes(self) -> int:
        """Return the number of bytes received but not yet consumed."""
        return len(self._buffer)

    @property
    def message_begun(self) -> bool:
        """Return whether unconsumed bytes begin a message (not just a CRLF CRLF ping's start)."""
        return bool(self._buffer) and not b"\r\n\r\n".startswith(bytes(self._buffer[:4]))

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buffer += data

    def __iter__(self) -> Iterator[Request | Response | PingReceived | PongReceived]:
        """Yield events until more bytes are needed."""
        while (event := self.next_event()) is not None:
            yield event

    def next_event(self) -> Request | Response | PingReceived | PongReceived | None:
        """Return the next complete event, or ``None`` when more bytes are needed.

        Raises:
            SipParseError: a malformed or oversized message (``status_hint`` 400, 413, 505,
                513...). Check :attr:`broken` to decide whether to close the connection.
        """
        if self._error is not None:
            raise self._error
        if self._head is None:
            if self._buffer.startswith(b"\r\n"):
                return self._keepalive()
            try:
                if not self._read_head():
                    return None
            except SipParseError as err:
                self._error = err
                raise
        return self._read_body()

    def _keepalive(self) -> PingReceived | PongReceived | None:
        buffer = self._buffer
        if buffer.startswith(b"\r\n\r\n"):
            del buffer[:4]
            return PingReceived()
        if len(buffer) >= 3 and buffer[2] != 0x0D:
            del buffer[:2]
            return PongReceived()
        return None  # "\r\n" or "\r\n\r": the rest of a ping may follow

    def _read_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n", max(self._scanned - 3, 0))
        if end < 0 or end > self._max_header_bytes:
            if len(self._buffer) > self._max_header_bytes:
                raise SipParseError(
                    f"Header section exceeds {self._max_header_bytes} bytes", status_hint=513
                )
            self._scanned = len(self._buffer)
            return False
        head = _frame_head(bytes(self._buffer[:end]))
        if head.content_length is None:
            missing = SipParseError(
                "Missing Content-Length header field (mandatory on streams)",
                header="Content-Length",
            )
            raise _with_context(missing, Headers._trusted(head.fields), head.start_line)
        if head.content_length > self._max_body_bytes:
            too_large = SipParseError(
                f"Content-Length {head.content_length} exceeds the limit of "
                f"{self._max_body_bytes} bytes",
                status_hint=413,
                header="Content-Length",
            )  # the headers ride along so that the caller can answer 413 before closing
            raise _with_context(too_large, Headers._trusted(head.fields), head.start_line)
        self._head, self._head_size = head, end + 4
        return True

    def _read_body(self) -> Request | Response | None:
        head = self._head
        assert head is not None and head.content_length is not None
        total = self._head_size + head.content_length
        if len(self._buffer) < total:
            return None
        body = bytes(self._buffer[self._head_size : total])
        del self._buffer[:total]
        self._head, self._scanned = None, 0
        return _check(head, body)


def validate_request(
    request: Request,
    *,
    supported: frozenset[str] = frozenset(),
    accept: frozenset[str] | None = None,
    forwarding: bool = False,
) -> None:
    """Apply the acceptance rules a UAS checks before handling a request.

    Parses every typed field (From, To, Via, Contact, Route, Record-Route, Max-Forwards)
    and enforces RFC 3261 §8.2.1-§8.2.3, §16.3 and §19.1.1 as exercised by RFC 4475 §3.

    Args:
        request: a request from :func:`parse_message` or :class:`StreamFramer`.
        supported: option tags we implement; others in Require get 420 (§8.2.2.3).
        accept: body media types we take; ``None`` skips the check, else 415 (§8.2.3).
        forwarding: whether we would forward it (a proxy); Max-Forwards 0 then gets 483.

    Raises:
        SipParseError: with ``status_hint``, ``response_headers`` and ``request`` set, ready
            for ``message.error_response``.
    """
    try:
        _validate_uri(request)
        _validate_fields(request)
        _validate_routing(request, forwarding)
        _validate_extensions(request, supported)
        _validate_body(request, accept)
    except SipParseError as err:
        err.request, err.headers, err.is_request = request, request.headers, True
        err.method = request.method
        raise


def validate_response(response: Response) -> None:
    """Check what a UAC needs of a response; drop it when this raises (RFC 3261 §8.1.3.3).

    Raises:
        SipParseError: more than one Via, or a malformed From, To or Via.
    """
    if len(response.vias) != 1:
        raise SipParseError("Response carries more than one Via header field value", header="Via")
    _ = response.from_, response.to


def _validate_uri(request: Request) -> None:
    uri = request.uri
    if isinstance(uri, AbsoluteUri):
        raise SipParseError(f"Unsupported URI scheme: {uri.scheme}", status_hint=416)
    if uri.headers:
        raise SipParseError("Request-URI must not contain headers")


def _validate_fields(request: Request) -> None:
    if not _CALL_ID.fullmatch(request.call_id):
        raise SipParseError("Invalid Call-ID header field", header="Call-ID")
    _ = request.from_, request.to, request.vias, request.contacts, request.max_forwards
    _ = request.routes, request.record_routes
    date = request.headers.get("Date")
    if date is not None and not date.endswith("GMT"):
        raise SipParseError("Invalid Date header field: time zone must be GMT", header="Date")


def _validate_routing(request: Request, forwarding: bool) -> None:
    if request.top_via.branch == "z9hG4bK":
        raise SipParseError(
            "Via branch holds the magic cookie but no transaction identifier", header="Via"
        )
    if forwarding and request.max_forwards == 0:
        raise SipParseError("Max-Forwards exhausted", status_hint=483, header="Max-Forwards")
    to_uri = request.to.uri
    if request.method == "REGISTER" and not (
        isinstance(to_uri, SipUri) and to_uri.scheme in ("sip", "sips")
    ):
        raise SipParseError("To of a REGISTER must be a SIP or SIPS URI", header="To")


def _validate_extensions(request: Request, supported: frozenset[str]) -> None:
    if request.method in ("ACK", "CANCEL"):
        return
    unknown = [tag for tag in request.headers.get_all("Require") if tag.lower() not in supported]
    if unknown:
        listed = ", ".join(unknown)
        raise SipParseError(
            f"Unsupported option tags in Require: {listed}",
            status_hint=420,
            header="Require",
            response_headers=(("Unsupported", listed),),
        )


def _validate_body(request: Request, accept: frozenset[str] | None) -> None:
    content_type = request.content_type
    if request.body and content_type is None:
        raise SipParseError("Missing Content-Type header field for a non-empty body")
    if request.body and accept is not None and content_type not in accept:
        raise SipParseError(
            f"Unsupported Content-Type: {content_type}",
            status_hint=415,
            header="Content-Type",
            response_headers=(("Accept", ", ".join(sorted(accept))),),
        )
    offered = request.headers.get_all("Accept")
    if (
        request.method == "INVITE"
        and "Accept" in request.headers
        and not any(
            value.partition(";")[0].strip(" \t").lower() in _SDP_ACCEPTED for value in offered
        )
    ):
        raise SipParseError(
            "Accept header field excludes application/sdp",
            status_hint=406,
            header="Accept",
            response_headers=(("Accept", "application/sdp"),),
        )
