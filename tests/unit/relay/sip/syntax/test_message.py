"""Request/Response values: serialization, the round-trip law and RFC 3261 §8.2.6 replies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.sip.errors import LocalProtocolError, SipParseError
from relay.sip.syntax.headers import CSeq, Headers, Via
from relay.sip.syntax.message import Request, Response, build_request, error_response, make_response
from relay.sip.syntax.parser import parse_message, validate_request
from relay.sip.syntax.uri import NameAddr, SipUri

SDP = (
    b"v=0\r\no=- 3913 3913 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 7078 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def _invite(**overrides: object) -> Request:
    fields: dict[str, object] = {
        "via": Via(transport="UDP", host="192.0.2.10", port=5062, params=(("branch", "z9hG4bK1"),)),
        "from_": NameAddr(
            uri=SipUri(user="alice", host="example.com"), display="Alice", params=(("tag", "a1"),)
        ),
        "to": NameAddr(uri=SipUri(user="agent", host="sipline.example")),
        "call_id": "c0ffee@192.0.2.10",
        "cseq": 20,
        "contact": NameAddr(uri=SipUri(user="alice", host="192.0.2.10", port=5062)),
        "body": SDP,
        "content_type": "application/sdp",
    }
    fields.update(overrides)
    return build_request("INVITE", SipUri(user="agent", host="sipline.example"), **fields)  # type: ignore[arg-type]


def test_built_invite_serializes_with_crlf_and_a_computed_content_length() -> None:
    wire = bytes(_invite())
    head, _, body = wire.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"INVITE sip:agent@sipline.example SIP/2.0",
        b"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1",
        b"Max-Forwards: 70",
        b'From: "Alice" <sip:alice@example.com>;tag=a1',
        b"To: <sip:agent@sipline.example>",
        b"Call-ID: c0ffee@192.0.2.10",
        b"CSeq: 20 INVITE",
        b"Contact: <sip:alice@192.0.2.10:5062>",
        b"Content-Type: application/sdp",
        b"Content-Length: %d" % len(SDP),
    ]
    assert body == SDP


def test_parsing_what_we_serialize_gives_the_same_message_back() -> None:
    invite = _invite()
    parsed = parse_message(bytes(invite))
    assert parsed == invite
    assert isinstance(parsed, Request)
    assert parsed.cseq == CSeq(20, "INVITE") and parsed.branch == "z9hG4bK1"
    assert parsed.content_type == "application/sdp"
    validate_request(parsed, accept=frozenset({"application/sdp"}))


_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
_TOKEN = st.text(st.sampled_from("abcdefXYZ0123456789-.!%*_+`'~"), min_size=1, max_size=10)


@given(
    display=st.none() | _TEXT,
    tag=_TOKEN,
    call_id=_TOKEN,
    cseq=st.integers(0, 2**32 - 1),
    body=st.binary(max_size=64),
    subject=_TEXT,
    method=st.sampled_from(["INVITE", "OPTIONS", "BYE", "MESSAGE", "X-ODD"]),
)
def test_round_trip_law_holds_for_any_request_we_build(
    display: str | None, tag: str, call_id: str, cseq: int, body: bytes, subject: str, method: str
) -> None:
    request = build_request(
        method,
        SipUri(user="u", host="example.com", params=(("transport", "tcp"),)),
        via=Via(transport="TCP", host="h.example.com", params=(("branch", f"z9hG4bK{tag}"),)),
        from_=NameAddr(uri=SipUri(host="example.com"), display=display, params=(("tag", tag),)),
        to=NameAddr(uri=SipUri(user="to", host="example.com")),
        call_id=call_id,
        cseq=cseq,
        extra_headers=[("Subject", subject)],
        body=body,
        content_type="application/octet-stream" if body else None,
    )
    assert parse_message(bytes(request)) == request
    assert parse_message(bytes(request)).from_ == request.from_


@given(status=st.integers(100, 699), reason=_TEXT.map(str.strip), body=st.binary(max_size=32))
def test_round_trip_law_holds_for_any_response_we_build(
    status: int, reason: str, body: bytes
) -> None:
    response = make_response(_invite(), status, reason, to_tag="t9", body=body)
    assert parse_message(bytes(response)) == response


def test_content_length_cannot_be_set_by_hand() -> None:
    with pytest.raises(LocalProtocolError, match="^Content-Length is computed from the body"):
        Request("BYE", SipUri(host="x"), headers=Headers([("l", "0")]))
    with pytest.raises(LocalProtocolError, match="^Status code out of range: 99$"):
        Response(99, "Odd", headers=Headers())
    with pytest.raises(LocalProtocolError, match="^A request with a body needs a Content-Type$"):
        _invite(content_type=None)


def test_response_copies_via_from_to_callid_cseq_and_adds_the_to_tag() -> None:
    invite = parse_message(
        bytes(_invite()).replace(
            b"Max-Forwards", b"Via: SIP/2.0/UDP proxy.example;branch=z9hG4bK2\r\nMax-Forwards"
        )
    )
    assert isinstance(invite, Request)
    ringing = make_response(invite, 180, to_tag="b7", extra_headers=[("Contact", "<sip:me@x>")])
    assert (ringing.status, ringing.reason) == (180, "Ringing")
    assert list(ringing.headers) == [
        ("Via", "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1"),
        ("Via", "SIP/2.0/UDP proxy.example;branch=z9hG4bK2"),
        ("From", '"Alice" <sip:alice@example.com>;tag=a1'),
        ("To", "<sip:agent@sipline.example>;tag=b7"),
        ("Call-ID", "c0ffee@192.0.2.10"),
        ("CSeq", "20 INVITE"),
        ("Contact", "<sip:me@x>"),
    ]
    assert ringing.to.tag == "b7"


def test_response_keeps_an_existing_to_tag_and_100_copies_timestamp() -> None:
    tagged = _invite(
        to=NameAddr(uri=SipUri(host="sipline.example"), params=(("tag", "keep"),)),
        extra_headers=[("Timestamp", "54.2")],
    )
    assert make_response(tagged, 200, to_tag="new").to.tag == "keep"
    trying = make_response(tagged, 100)
    assert trying.headers.get("Timestamp") == "54.2" and trying.reason == "Trying"


def test_parse_error_on_a_request_becomes_a_stateless_400_with_its_reason() -> None:
    wire = bytes(_invite()).replace(b"CSeq: 20 INVITE", b"CSeq: 20 BYE")
    with pytest.raises(SipParseError) as caught:
        parse_message(wire)
    reply = error_response(caught.value, to_tag="z1")
    assert reply is not None
    assert (reply.status, reply.reason) == (
        400,
        "CSeq method BYE does not match request method INVITE",
    )
    assert reply.to.tag == "z1" and reply.cseq == CSeq(20, "BYE")


def test_validation_error_carries_the_request_and_its_extra_reply_headers() -> None:
    invite = _invite(extra_headers=[("Require", "100rel, timer")])
    with pytest.raises(SipParseError) as caught:
        validate_request(invite, supported=frozenset({"timer"}))
    assert caught.value.request is invite
    reply = error_response(caught.value, to_tag="z2")
    assert reply is not None and reply.status == 420
    assert reply.headers.get("Unsupported") == "100rel"


def test_no_reply_to_responses_acks_or_messages_without_a_readable_via() -> None:
    response = bytes(make_response(_invite(), 200, to_tag="t")).replace(b"CSeq: 20", b"CSeq: x")
    ack = (
        bytes(_invite()).replace(b"INVITE sip", b"ACK sip").replace(b"CSeq: 20 INVITE", b"CSeq: 2")
    )
    for wire in (response, ack, b"INVITE sip:a@b SIP/2.0\r\nbroken line\r\n\r\n"):
        with pytest.raises(SipParseError) as caught:
            parse_message(wire)
        assert error_response(caught.value, to_tag="t") is None


def test_reason_phrase_of_an_error_reply_is_printable_ascii() -> None:
    error = SipParseError("Bad \x00thing: é\r\nInjected: yes")
    error.is_request, error.headers = True, Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bKx")])
    reply = error_response(error, to_tag="t")
    assert reply is not None and reply.reason == "Bad thing: Injected: yes"
