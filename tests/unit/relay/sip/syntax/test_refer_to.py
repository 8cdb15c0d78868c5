"""Refer-To and Replaces, against the examples of RFC 3515 §2.1 and RFC 3891 §6.1."""

from __future__ import annotations

import pytest

from relay.sip.errors import LocalProtocolError, SipParseError
from relay.sip.syntax.refer_to import (
    MAX_EMBEDDED_HEADERS,
    MAX_REFER_TO_CHARS,
    format_refer_to,
    parse_refer_to,
    replaces_value,
)
from relay.sip.syntax.uri import AbsoluteUri, SipUri

# RFC 3515 §2.1's example of a Refer-To embedding Replaces (RFC 3891's syntax).
RFC3515_REPLACES = (
    "<sip:dave@denver.example.org?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345"
    "%3Bfrom-tag%3D5FFE-3994>"
)


def test_a_refer_to_with_replaces_is_written_as_rfc_3515_shows_it() -> None:
    replaces = replaces_value("12345@192.168.118.3", to_tag="12345", from_tag="5FFE-3994")

    value = format_refer_to(SipUri.parse("sip:dave@denver.example.org"), [("Replaces", replaces)])

    assert value == RFC3515_REPLACES


def test_a_replaces_value_is_written_as_rfc_3891_shows_it() -> None:
    # RFC 3891 §6.1: "Replaces: 12adf2f34456gs5;to-tag=12345;from-tag=54321;early-only"
    value = replaces_value("12adf2f34456gs5", to_tag="12345", from_tag="54321", early_only=True)

    assert value == "12adf2f34456gs5;to-tag=12345;from-tag=54321;early-only"


def test_a_received_refer_to_gives_its_target_and_its_decoded_headers() -> None:
    refer_to = parse_refer_to(RFC3515_REPLACES)

    assert refer_to.uri == SipUri.parse("sip:dave@denver.example.org")
    assert refer_to.header("replaces") == "12345@192.168.118.3;to-tag=12345;from-tag=5FFE-3994"


@pytest.mark.parametrize(
    ("value", "expected"),
    [  # RFC 3515 §2.1's other examples
        ("sip:alice@atlanta.example.com", "sip:alice@atlanta.example.com"),
        (
            "<sip:carol@cleveland.example.org;method=SUBSCRIBE>",
            "sip:carol@cleveland.example.org;method=SUBSCRIBE",
        ),
        ("http://www.ietf.org", "http://www.ietf.org"),
    ],
)
def test_rfc_3515_refer_to_examples_parse(value: str, expected: str) -> None:
    refer_to = parse_refer_to(value)

    assert str(refer_to.uri) == expected and refer_to.headers == ()
    assert isinstance(refer_to.uri, AbsoluteUri) == expected.startswith("http")


def test_a_written_refer_to_reads_back_the_headers_it_was_given() -> None:
    headers = [("X-Case", "42 & more; a=b"), ("Replaces", "a@b;to-tag=1;from-tag=2")]

    value = format_refer_to(SipUri.parse("sip:ops@192.0.2.9:5070"), headers)

    assert parse_refer_to(value).headers == tuple(headers)


def test_a_target_that_already_embeds_headers_or_a_bad_name_is_our_error() -> None:
    with pytest.raises(LocalProtocolError):
        format_refer_to(SipUri.parse("sip:a@b?X-A=1"))
    with pytest.raises(LocalProtocolError):
        format_refer_to(SipUri.parse("sip:a@b"), [("X A", "1")])


def test_a_refer_to_beyond_the_bounds_is_refused_naming_the_header() -> None:
    long = "<sip:" + "a" * MAX_REFER_TO_CHARS + "@example.com>"
    many = (
        "<sip:a@example.com?" + "&".join(f"X-{n}=1" for n in range(MAX_EMBEDDED_HEADERS + 1)) + ">"
    )

    with pytest.raises(SipParseError) as too_long:
        parse_refer_to(long)
    with pytest.raises(SipParseError) as too_many:
        parse_refer_to(many)

    assert too_long.value.message == f"Refer-To longer than {MAX_REFER_TO_CHARS} characters"
    assert too_many.value.message == (
        f"Refer-To embeds more than {MAX_EMBEDDED_HEADERS} header fields"
    )
    assert too_long.value.header == too_many.value.header == "Refer-To"
