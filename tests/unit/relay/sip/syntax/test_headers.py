"""Headers (names, compact forms, comma lists, immutability) and the Via / CSeq parsers."""

from __future__ import annotations

import pytest

from relay.sip.errors import LocalProtocolError, SipParseError
from relay.sip.syntax.headers import (
    COMPACT_FORMS,
    CSeq,
    Headers,
    Via,
    canonical_name,
    parse_max_forwards,
    split_values,
)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("v", "Via"), ("VIA", "Via"), ("i", "Call-ID"), ("call-id", "Call-ID"), ("cseq", "CSeq"),
     ("m", "Contact"), ("l", "Content-Length"), ("k", "Supported"), ("x-custom", "x-custom")],
)  # fmt: skip
def test_names_are_canonical_whatever_their_spelling(name: str, canonical: str) -> None:
    assert canonical_name(name) == canonical


def test_every_compact_form_expands_to_a_full_name() -> None:
    assert all(len(full) > 1 for full in COMPACT_FORMS.values())
    assert canonical_name("e") == "Content-Encoding" and canonical_name("o") == "Event"


def test_a_name_that_is_not_a_token_is_rejected() -> None:
    with pytest.raises(SipParseError, match=r"^Invalid header field name: 'Bad Name'$"):
        canonical_name("Bad Name")


def test_lookup_is_case_insensitive_and_keeps_wire_order() -> None:
    headers = Headers([("v", "SIP/2.0/UDP a"), ("From", "<sip:x@y>"), ("VIA", "SIP/2.0/TCP b")])
    assert list(headers) == [
        ("Via", "SIP/2.0/UDP a"),
        ("From", "<sip:x@y>"),
        ("Via", "SIP/2.0/TCP b"),
    ]
    assert headers.get("via") == "SIP/2.0/UDP a"
    assert headers.get_all("V") == ["SIP/2.0/UDP a", "SIP/2.0/TCP b"]
    assert "from" in headers and "f" in headers and "To" not in headers
    assert headers.count("Via") == 2


def test_comma_lists_split_but_not_inside_quotes_or_angle_brackets() -> None:
    headers = Headers(
        [
            ("Contact", '"Doe, John" <sip:j@a.com;x=a,b>;q=0.5, <sip:k@b.com>'),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("Allow", "INVITE, ACK,,BYE"),
        ]
    )
    assert headers.get_all("Contact") == ['"Doe, John" <sip:j@a.com;x=a,b>;q=0.5', "<sip:k@b.com>"]
    assert headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert headers.get_all("Allow") == ["INVITE", "ACK", "BYE"]


def test_split_values_handles_escaped_quotes_and_unbalanced_input() -> None:
    assert split_values('"a \\" , b", c') == ['"a \\" , b"', "c"]
    assert split_values('"never closed, x') == ['"never closed, x']
    assert split_values("") == []


def test_headers_are_immutable_values_with_copying_edits() -> None:
    headers = Headers([("To", "<sip:a@b>"), ("Via", "SIP/2.0/UDP h")])
    edited = headers.with_prepended("Via", "SIP/2.0/UDP p").with_replaced("to", "<sip:c@d>")
    assert list(edited) == [("Via", "SIP/2.0/UDP p"), ("To", "<sip:c@d>"), ("Via", "SIP/2.0/UDP h")]
    assert list(headers.without("via").with_added("Subject", " hi ")) == [
        ("To", "<sip:a@b>"),
        ("Subject", "hi"),
    ]
    assert headers == Headers([("t", "<sip:a@b>"), ("v", "SIP/2.0/UDP h")])
    assert hash(headers) == hash(Headers(list(headers)))


def test_header_injection_through_a_value_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="^Header field Subject value contains CR or LF$"):
        Headers([("Subject", "hi\r\nVia: SIP/2.0/UDP evil")])
    with pytest.raises(LocalProtocolError, match="^Invalid header field name: 'X:Y'$"):
        Headers([("X:Y", "z")])


def test_typed_values_are_parsed_once_and_cached() -> None:
    calls: list[str] = []

    def parse(value: str) -> int:
        calls.append(value)
        return len(value)

    headers = Headers([("Subject", "four"), ("Allow", "A, BB")])
    assert headers.typed("Subject", parse) == 4 and headers.typed("subject", parse) == 4
    assert headers.typed_all("Allow", parse) == (1, 2)
    assert headers.typed("Absent", parse) is None
    assert calls == ["four", "A", "BB"]


def test_via_with_whitespace_around_every_separator_parses() -> None:
    via = Via.parse("SIP  /   2.0 /udp   host.example.com : 5062 ; branch = z9hG4bKabc ;rport")
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0",
        "UDP",
        "host.example.com",
        5062,
    )
    assert via.branch == "z9hG4bKabc"
    assert via.rport_requested and via.rport is None
    assert str(via) == "SIP/2.0/UDP host.example.com:5062;branch=z9hG4bKabc;rport"


def test_via_stamp_adds_received_and_fills_rport_per_rfc3581() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport")
    stamped = via.stamped("192.0.2.7", 40001)
    assert str(stamped) == (
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=40001;received=192.0.2.7"
    )
    assert stamped.rport == 40001 and stamped.received == "192.0.2.7"
    assert stamped.response_address() == ("192.0.2.7", 40001)


def test_via_stamp_leaves_a_matching_numeric_sent_by_alone() -> None:
    via = Via.parse("SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK1")
    assert via.stamped("192.0.2.7", 5070) == via
    assert via.response_address() == ("192.0.2.7", 5070)
    assert Via.parse("SIP/2.0/UDP a.example.com;maddr=239.1.1.1").response_address() == (
        "239.1.1.1",
        5060,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SIP/2.0/UDP", "Invalid Via header field: 'SIP/2.0/UDP'"),
        ("SIP/2.0 UDP host", "Invalid Via header field: 'SIP/2.0 UDP host'"),
        ("SIP/2.0/UDP host:70000", "Via port out of range: 70000"),
        ("SIP/2.0/UDP host;branch=a b", "Malformed parameter in Via header field: 'b'"),
        ("SIP/2.0/UDP 192.0.2.15;;", "Malformed parameter in Via header field: ';;'"),
    ],
)
def test_malformed_via_is_rejected_naming_via(text: str, message: str) -> None:
    with pytest.raises(SipParseError) as caught:
        Via.parse(text)
    assert (caught.value.message, caught.value.header) == (message, "Via")


def test_cseq_parses_number_and_method_with_any_lws() -> None:
    assert CSeq.parse(" 0009   INVITE ") == CSeq(9, "INVITE")
    assert str(CSeq(4294967295, "BYE")) == "4294967295 BYE"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("INVITE", "Invalid CSeq header field: 'INVITE'"),
        ("-1 INVITE", "Invalid CSeq header field: '-1 INVITE'"),
        ("4294967296 INVITE", "CSeq sequence number exceeds 2**32-1"),
        ("12345678901 INVITE", "Invalid CSeq header field: '12345678901 INVITE'"),
    ],
)
def test_malformed_cseq_is_rejected_naming_cseq(text: str, message: str) -> None:
    with pytest.raises(SipParseError) as caught:
        CSeq.parse(text)
    assert (caught.value.message, caught.value.header) == (message, "CSeq")


def test_max_forwards_accepts_0_to_255_only() -> None:
    assert parse_max_forwards("0068") == 68
    with pytest.raises(SipParseError, match=r"^Invalid Max-Forwards header field: '300'$"):
        parse_max_forwards("300")
    with pytest.raises(SipParseError, match=r"^Invalid Max-Forwards header field: '٣'$"):
        parse_max_forwards("٣")
