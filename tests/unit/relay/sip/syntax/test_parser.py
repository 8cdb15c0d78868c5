"""parse_message for datagrams, StreamFramer for streams, validate_request's policies."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.sip.errors import SipParseError
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.parser import (
    PingReceived,
    PongReceived,
    StreamFramer,
    is_keepalive,
    parse_message,
    validate_request,
)

# What a softphone (baresip-like) sends: compact forms, a folded line, SDP.
INVITE = (
    b"INVITE sip:agent@sipline.example;transport=udp SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1b2;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:agent@sipline.example>\r\n"
    b'f: "Alice" <sip:alice@example.com>;tag=9fxced76sl\r\n'
    b"i: 3848276298220188511@192.0.2.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"m: <sip:alice@192.0.2.10:5060;transport=udp>\r\n"
    b"Allow: INVITE,ACK,BYE,\r\n CANCEL,OPTIONS\r\n"
    b"c: application/sdp\r\n"
    b"l: 23\r\n"
    b"\r\n"
    b"v=0\r\no=- 1 1 IN IP4 x\r\n"
)
OPTIONS = (
    b"OPTIONS sip:agent@sipline.example SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bKo1\r\n"
    b"To: <sip:agent@sipline.example>\r\nFrom: <sip:a@b>;tag=1\r\n"
    b"Call-ID: o1\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def _error(data: bytes) -> SipParseError:
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    return caught.value


def test_softphone_invite_parses_with_compact_forms_and_folding() -> None:
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    assert request.call_id == "3848276298220188511@192.0.2.10"
    assert request.from_.tag == "9fxced76sl" and request.top_via.rport_requested
    assert request.headers.get_all("Allow") == ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"]
    assert request.content_type == "application/sdp"
    assert request.body == b"v=0\r\no=- 1 1 IN IP4 x\r\n"
    assert "Content-Length" not in request.headers


def test_datagram_body_is_truncated_to_content_length_or_runs_to_the_end() -> None:
    assert parse_message(INVITE + b"trailing junk").body == b"v=0\r\no=- 1 1 IN IP4 x\r\n"
    without_length = INVITE.replace(b"l: 23\r\n", b"")
    assert parse_message(without_length + b"more").body == b"v=0\r\no=- 1 1 IN IP4 x\r\nmore"


def test_datagram_shorter_than_content_length_is_a_400() -> None:
    error = _error(INVITE[:-3])
    assert (error.status_hint, error.message, error.header) == (
        400,
        "Content-Length 23 exceeds the 20 body bytes received",
        "Content-Length",
    )
    assert error.is_request and error.method == "INVITE" and error.headers is not None


@pytest.mark.parametrize(
    ("data", "message", "status"),
    [
        (b"", "Missing empty line after the header section", 400),
        (b"\r\n\r\n", "Malformed request line: ''", 400),
        (OPTIONS.replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"), "Unsupported SIP version: SIP/3.0", 505),
        (OPTIONS.replace(b"SIP/2.0\r\nVia", b"HTTP/1.1\r\nVia"), "Malformed start line: "
         "'OPTIONS sip:agent@sipline.example HTTP/1.1'", 400),
        (OPTIONS.replace(b"Call-ID: o1\r\n", b""), "Missing mandatory header field: Call-ID", 400),
        (OPTIONS.replace(b"Call-ID: o1", b"Call-ID: o1\r\ni: o2"), "Multiple Call-ID header fields",
         400),
        (OPTIONS.replace(b"CSeq: 7 OPTIONS", b"CSeq: 7 BYE"),
         "CSeq method BYE does not match request method OPTIONS", 400),
        (OPTIONS.replace(b"Content-Length: 0", b"Content-Length: five"),
         "Invalid Content-Length header field: 'five'", 400),
        (OPTIONS.replace(b"To:", b"To"), "Invalid header field name: 'To <sip'", 400),
        (OPTIONS.replace(b"Call-ID: o1", b"Call-ID o1"), "Malformed header field line: 'Call-ID o1'",
         400),
        (OPTIONS.replace(b"To:", b" To:"), "Missing mandatory header field: To", 400),
        (OPTIONS.replace(b"\r\nVia", b"\r\n Via"), "Continuation line before the first header field",
         400),
        (OPTIONS.replace(b"\r\nTo", b"\nTo"), "Bare CR or LF in the header section", 400),
        (b"SIP/2.0 99 Low\r\n\r\n", "Malformed status line: 'SIP/2.0 99 Low'", 400),
    ],
)  # fmt: skip
def test_malformed_datagram_raises_the_exact_error(data: bytes, message: str, status: int) -> None:
    error = _error(data)
    assert (error.message, error.status_hint) == (message, status)


def test_keepalive_datagrams_are_recognised() -> None:
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\x00\x00\x00\x00")
    assert not is_keepalive(b"") and not is_keepalive(OPTIONS)


def test_response_parses_with_an_empty_reason_phrase() -> None:
    response = parse_message(
        OPTIONS.replace(b"OPTIONS sip:agent@sipline.example SIP/2.0", b"SIP/2.0 200")
    )
    assert isinstance(response, Response) and (response.status, response.reason) == (200, "")


def test_framer_yields_messages_and_keepalives_in_order() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n\r\n" + INVITE + b"\r\n" + OPTIONS)
    events = list(framer)
    assert events[0] == PingReceived() and events[2] == PongReceived()
    assert isinstance(events[1], Request) and events[1].method == "INVITE"
    assert isinstance(events[3], Request) and events[3].method == "OPTIONS"
    assert framer.buffered_bytes == 0 and framer.next_event() is None


def test_framer_waits_for_the_rest_of_a_possible_ping() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n")
    assert framer.next_event() is None
    framer.feed(b"\r\n")
    assert framer.next_event() == PingReceived()


def test_framer_requires_content_length_on_streams_and_then_breaks() -> None:
    framer = StreamFramer()
    framer.feed(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
    with pytest.raises(SipParseError, match=r"^Missing Content-Length header field \(mandatory"):
        framer.next_event()
    assert framer.broken
    with pytest.raises(SipParseError, match="^Missing Content-Length"):
        framer.next_event()


def test_framer_caps_header_section_with_513_before_it_ends() -> None:
    framer = StreamFramer(max_header_bytes=64)
    framer.feed(b"INVITE sip:a@b SIP/2.0\r\nSubject: " + b"x" * 60)
    with pytest.raises(SipParseError) as caught:
        framer.next_event()
    assert (caught.value.status_hint, caught.value.message) == (
        513,
        "Header section exceeds 64 bytes",
    )


def test_framer_caps_declared_body_with_413_before_buffering_it() -> None:
    framer = StreamFramer(max_body_bytes=100)
    framer.feed(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 101"))
    with pytest.raises(SipParseError) as caught:
        framer.next_event()
    assert (caught.value.status_hint, caught.value.message) == (
        413,
        "Content-Length 101 exceeds the limit of 100 bytes",
    )
    assert framer.broken


def test_framer_survives_a_message_level_error_and_reads_the_next_message() -> None:
    framer = StreamFramer()
    framer.feed(OPTIONS.replace(b"CSeq: 7 OPTIONS", b"CSeq: 7 BYE") + OPTIONS)
    with pytest.raises(SipParseError, match="^CSeq method BYE does not match"):
        framer.next_event()
    assert not framer.broken
    event = framer.next_event()
    assert isinstance(event, Request) and event.cseq.method == "OPTIONS"


def _parse_and_validate(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError:
        return
    if isinstance(message, Request):
        with contextlib.suppress(SipParseError):
            validate_request(message)


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_any_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    _parse_and_validate(data)


_MUTATIONS = st.sampled_from([b" ", b"\r\n", b":", b";", b",", b"<", b">", b'"', b"\\", b"\x00",
                              b"\xff", b"%", b"@", b"[", b"0", b"\t"])  # fmt: skip


@settings(max_examples=300)
@given(st.integers(0, len(INVITE)), st.lists(_MUTATIONS, min_size=1, max_size=4))
def test_mutated_invites_raise_only_sip_parse_error(position: int, inserted: list[bytes]) -> None:
    data = INVITE[:position] + b"".join(inserted) + INVITE[position:]
    _parse_and_validate(data)


@given(st.lists(st.integers(1, 60), min_size=1, max_size=40))
def test_any_chunking_of_a_stream_yields_the_same_messages(sizes: list[int]) -> None:
    stream = b"\r\n\r\n" + INVITE + OPTIONS + INVITE
    expected = [
        PingReceived(),
        parse_message(INVITE),
        parse_message(OPTIONS),
        parse_message(INVITE),
    ]
    framer, offset = StreamFramer(), 0
    events: list[Request | Response | PingReceived | PongReceived] = []
    for size in sizes * (len(stream) // sum(sizes) + 1):
        framer.feed(stream[offset : offset + size])
        offset += size
        events.extend(framer)
    assert events == expected


def test_require_with_a_supported_option_passes_and_proxy_require_is_ignored() -> None:
    request = parse_message(
        OPTIONS.replace(b"Call-ID", b"Require: Timer\r\nProxy-Require: foo\r\nCall-ID")
    )
    assert isinstance(request, Request)
    validate_request(request, supported=frozenset({"timer"}))


def test_body_without_content_type_is_refused() -> None:
    request = parse_message(INVITE.replace(b"c: application/sdp\r\n", b""))
    assert isinstance(request, Request)
    with pytest.raises(
        SipParseError, match="^Missing Content-Type header field for a non-empty body$"
    ):
        validate_request(request)


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_any_bytes_on_a_stream_raise_only_sip_parse_error(chunks: list[bytes]) -> None:
    framer = StreamFramer(max_header_bytes=512, max_body_bytes=512)
    for chunk in chunks:
        framer.feed(chunk)
        while not framer.broken:
            try:
                if framer.next_event() is None:
                    break
            except SipParseError:
                continue
