"""The one normalisation of an outgoing call's ``to`` and of a SIP server address (docs/api.md)."""

from __future__ import annotations

import pytest

from chalicelib.sip_uri import normalize_server, normalize_target, validate_target


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        # The spec's examples ("sip:username@domain, sip:+15551234567@carrier.com") and its
        # transport table ("sip:<destination>@<sip_domain>:5060;transport=tcp") stay as written.
        ("sip:username@domain", "sip:username@domain"),
        ("sip:+15551234567@carrier.com", "sip:+15551234567@carrier.com"),
        ("sip:dest@host:5060;transport=tcp", "sip:dest@host:5060;transport=tcp"),
        ("sip:dest@host:5060;transport=tls", "sip:dest@host:5060;transport=tls"),
        ("sips:dest@host", "sips:dest@host"),
        # The seed docs' Twilio example has no scheme: it becomes sip:.
        ("+15551234567@trunkname.pstn.twilio.com", "sip:+15551234567@trunkname.pstn.twilio.com"),
        ("dest@host:5060;transport=tcp", "sip:dest@host:5060;transport=tcp"),
        ("SIPS:dest@host", "sips:dest@host"),
        ("  <sip:dest@host>  ", "sip:dest@host"),
    ],
)
def test_a_target_is_normalised_to_the_sip_uri_that_is_stored_and_dialled(
    text: str, normal: str
) -> None:
    assert normalize_target(text) == normal
    assert validate_target(text) == normal


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tel:+15551234567", "'tel:+15551234567' is not a SIP URI like sip:user@host"),
        ("+15551234567", "'+15551234567' is not a SIP URI like sip:user@host"),
        ("alice:secret@host", "'alice:secret@host' is not a SIP URI like sip:user@host"),
        ("a@host;transport=sctp", "'a@host;transport=sctp' names transport 'sctp'"),
    ],
)
def test_other_forms_are_refused_quoting_what_was_given(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        validate_target(text)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "uri"),
    [
        ("pbx.example.com", "sip:pbx.example.com"),
        ("pbx.example.com:5080", "sip:pbx.example.com:5080"),
        ("[2001:db8::1]:5060", "sip:[2001:db8::1]:5060"),
        ("2001:db8::1", "sip:[2001:db8::1]"),
        ("<sip:pbx.example.com;transport=tcp;lr>", "sip:pbx.example.com;transport=tcp;lr"),
    ],
)
def test_a_server_address_is_normalised_to_a_sip_uri(text: str, uri: str) -> None:
    assert normalize_server(text) == uri
