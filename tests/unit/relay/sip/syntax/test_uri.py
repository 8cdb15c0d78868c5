"""SipUri, AbsoluteUri and NameAddr: parsing, formatting and RFC 3261 §19.1.4 comparison."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.sip.errors import SipParseError
from relay.sip.syntax.uri import AbsoluteUri, NameAddr, SipUri, parse_uri


def test_full_sip_uri_parses_into_its_parts() -> None:
    uri = SipUri.parse("sips:alice:secret@Atlanta.example.com:5061;transport=TCP;lr?Subject=hi")
    assert uri == SipUri(
        scheme="sips",
        user="alice",
        password="secret",
        host="Atlanta.example.com",
        port=5061,
        params=(("transport", "TCP"), ("lr", None)),
        headers=(("Subject", "hi"),),
    )
    assert uri.transport == "tcp"
    assert uri.param("LR") == ""


def test_ipv6_host_keeps_its_brackets_and_port() -> None:
    uri = SipUri.parse("sip:bob@[2001:db8::10]:5070;maddr=[2001:db8::1]")
    assert (uri.host, uri.port) == ("[2001:db8::10]", 5070)
    assert str(uri) == "sip:bob@[2001:db8::10]:5070;maddr=[2001:db8::1]"


def test_user_is_percent_decoded_and_reescaped_on_output() -> None:
    uri = SipUri.parse("sip:%61lice%20smith@example.com")
    assert uri.user == "alice smith"
    assert str(uri) == "sip:alice%20smith@example.com"


def test_user_may_hold_semicolons_and_question_marks() -> None:
    uri = SipUri.parse("sip:user;par=u%40example.net@example.com")
    assert (uri.user, uri.host, uri.params) == ("user;par=u@example.net", "example.com", ())


def test_tel_uri_keeps_number_and_parameters() -> None:
    uri = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+1-201-555-0123", "")
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://example.com", "Not a SIP URI: 'http://example.com'"),
        ("sip:", "Malformed host in URI: 'sip:'"),
        ("sip:alice@exa mple.com", "Malformed host in URI: 'sip:alice@exa mple.com'"),
        ("sip:example.com:99999", "Port out of range in URI: 'sip:example.com:99999'"),
        ("sip:a b@example.com", "Malformed user part in URI: 'sip:a b@example.com'"),
        ("sip:[1:2:3]", "Malformed IPv6 reference in URI: 'sip:[1:2:3]'"),
        ("sip:example.com;=x", "Malformed parameter in URI: 'sip:example.com;=x'"),
        ("sip:example.com?noequals", "Malformed header in URI: 'sip:example.com?noequals'"),
        ("tel:call-me", "Malformed tel URI: 'tel:call-me'"),
    ],
)
def test_malformed_sip_uri_is_rejected_with_a_precise_message(text: str, message: str) -> None:
    with pytest.raises(SipParseError) as caught:
        SipUri.parse(text)
    assert caught.value.message == message


def test_other_schemes_parse_as_opaque_absolute_uris() -> None:
    assert parse_uri("urn:service:sos") == AbsoluteUri(scheme="urn", opaque="service:sos")
    assert isinstance(parse_uri("SIP:alice@example.com"), SipUri)
    with pytest.raises(SipParseError, match="^Malformed URI: '<sip:x>'$"):
        parse_uri("<sip:x>")


# RFC 3261 §19.1.4: pairs that are equivalent...
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
]  # fmt: skip

# ... and pairs that are not.
NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:alice@example.com", "sips:alice@example.com"),
]


@pytest.mark.parametrize(("left", "right"), EQUIVALENT)
def test_rfc3261_equivalent_uris_compare_equivalent(left: str, right: str) -> None:
    assert SipUri.parse(left).equivalent(SipUri.parse(right))
    assert SipUri.parse(right).equivalent(SipUri.parse(left))


@pytest.mark.parametrize(("left", "right"), NOT_EQUIVALENT)
def test_rfc3261_different_uris_do_not_compare_equivalent(left: str, right: str) -> None:
    assert not SipUri.parse(left).equivalent(SipUri.parse(right))


_TOKENS = st.text(st.sampled_from("abcXYZ019-._!~*'"), min_size=1, max_size=8)
_HOSTS = st.one_of(
    st.lists(st.text("abcz09-", min_size=1, max_size=6), min_size=1, max_size=3).map(".".join),
    st.sampled_from(["192.0.2.1", "[2001:db8::1]", "[::1]"]),
)
_URIS = st.builds(
    SipUri,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.none() | st.text(min_size=1, max_size=10),
    host=_HOSTS,
    port=st.none() | st.integers(0, 65535),
    params=st.lists(st.tuples(_TOKENS, st.none() | _TOKENS), max_size=3).map(tuple),
    headers=st.lists(st.tuples(_TOKENS, _TOKENS), max_size=2).map(tuple),
)


@given(_URIS)
def test_built_uri_survives_format_then_parse(uri: SipUri) -> None:
    assert SipUri.parse(str(uri)) == uri
    assert SipUri.parse(str(uri)).equivalent(uri)


def test_name_addr_with_quoted_display_name_and_tag() -> None:
    value = NameAddr.parse('"Alice \\"A\\" Smith" <sip:alice@example.com>;tag=1928301774')
    assert value.display == 'Alice "A" Smith'
    assert value.tag == "1928301774"
    assert str(value) == '"Alice \\"A\\" Smith" <sip:alice@example.com>;tag=1928301774'


def test_a_latin1_display_name_parses_and_serializes_to_the_same_bytes() -> None:
    """Older PBXs quote Latin-1 display names: a byte that is not UTF-8 (E9) is kept as the
    parser's surrogate escape (abnf.py rule 4), and goes back out as the very same byte."""
    raw = b'"caf\xe9 Caf\xc3\xa9" <sip:pbx@example.com>;tag=1'
    value = NameAddr.parse(raw.decode("utf-8", "surrogateescape"))
    assert value.display == "caf\udce9 Café"
    assert str(value).encode("utf-8", "surrogateescape") == raw


@pytest.mark.parametrize(
    "text",
    ["caf\udce9 <sip:pbx@example.com>", '"x" <sip:caf\udce9@example.com>', "<sip:a@b>;t=\udce9"],
)
def test_bytes_that_are_not_utf8_are_still_refused_outside_quoted_strings(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


def test_addr_spec_parameters_are_header_parameters() -> None:
    value = NameAddr.parse("sip:bob@example.com;user=phone;tag=x", header="To")
    assert isinstance(value.uri, SipUri) and value.uri.params == ()
    assert value.params == (("user", "phone"), ("tag", "x"))


def test_unquoted_display_name_tokens_are_joined_by_single_spaces() -> None:
    value = NameAddr.parse("Bob   Smith<sip:bob@example.com>")
    assert value.display == "Bob Smith"


def test_with_tag_replaces_an_existing_tag() -> None:
    value = NameAddr.parse("<sip:a@example.com>;tag=old;x=1").with_tag("new")
    assert value.params == (("x", "1"), ("tag", "new"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"Bob <sip:bob@example.com>', "Unterminated quoted display name in To header field"),
        ('"Bob" sip:bob@example.com', "Missing <URI> after display name in To header field"),
        ("Bob, Jr <sip:bob@example.com>", "Invalid display name in To header field"),
        ("<sip:bob@example.com", "Missing '>' in To header field"),
        ("< sip:bob@example.com>", "Whitespace inside <URI> in To header field"),
        ("sip:bob@example.com?x=y", "URI in To header field must be enclosed in <>"),
        ("<sip:bob@example.com>;;", "Malformed parameter in To header field: ';;'"),
        ("<bad uri>", "Whitespace inside <URI> in To header field"),
        ("<sip:bob@exa>mple.com>x", "Malformed parameter in To header field: 'mple.com>x'"),
        ("<:nothing>", "Invalid URI in To header field: Malformed URI: ':nothing'"),
    ],
)
def test_malformed_name_addr_names_its_header(text: str, message: str) -> None:
    with pytest.raises(SipParseError) as caught:
        NameAddr.parse(text, header="To")
    assert (caught.value.message, caught.value.header) == (message, "To")
