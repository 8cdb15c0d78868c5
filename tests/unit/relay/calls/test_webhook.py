"""The INVITE webhook's body (``relay/calls/webhook.py``) against docs/webhooks.md's example.

The INVITE is written here as the example describes it (its source, headers and offer); the
expected body is the docs' JSON.
"""

from __future__ import annotations

from chalicelib.contracts import dump
from relay.calls.webhook import invite_webhook
from relay.sip.address import Address, Transport
from relay.sip.sdp.description import SessionDescription
from relay.sip.syntax.message import Request
from relay.sip.syntax.parser import parse_message

SDP = (
    "v=0\r\n"
    "o=carrier 1 1 IN IP4 91.200.160.14\r\n"
    "s=-\r\n"
    "c=IN IP4 91.200.160.14\r\n"
    "t=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
)


def invite(display_name: bytes = b'"Alice Caller"') -> Request:
    head = (
        b"INVITE sip:sales@sip.localhost SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 91.200.160.14:5060;branch=z9hG4bK776asdhds\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: " + display_name + b" <sip:+15551234567@carrier.example>;tag=a73kszlfl\r\n"
        b"To: <sip:sales@sip.localhost>\r\n"
        b"Call-ID: 3848276298220188511@carrier.example\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:alice@91.200.160.14:5060>\r\n"
        b'P-Asserted-Identity: "Alice" <sip:+15550001111@carrier.example>\r\n'
        b"X-Customer-Name: Bob\r\n"
        b'X-Complex-Value: {"subkey": "value"}\r\n'
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP.encode()
    )
    request = parse_message(head)
    assert isinstance(request, Request)
    return request


SOURCE = Address("91.200.160.14", 5060, Transport.UDP)


def test_the_body_is_the_docs_example() -> None:
    """docs/webhooks.md, Request: InviteWebhook (all but ``headers``, which hold every header)."""
    body = dump(invite_webhook(invite(), SOURCE, SessionDescription.parse(SDP), "edge-1"))
    headers = body.pop("headers")
    assert body == {
        "sourceIp": "91.200.160.14",
        "sourcePort": 5060,
        "transport": "udp",
        "requestUri": "sip:sales@sip.localhost",
        "fromUri": "sip:+15551234567@carrier.example",
        "fromDisplayName": "Alice Caller",
        "fromTag": "a73kszlfl",
        "toUri": "sip:sales@sip.localhost",
        "sipCallId": "3848276298220188511@carrier.example",
        "offeredCodecs": ["PCMU/8000", "PCMA/8000", "telephone-event/8000"],
        "registrationId": None,
        "edgeId": "edge-1",
    }
    docs_headers = [
        ["Via", "SIP/2.0/UDP 91.200.160.14:5060;branch=z9hG4bK776asdhds"],
        ["P-Asserted-Identity", '"Alice" <sip:+15550001111@carrier.example>'],
        ["X-Customer-Name", "Bob"],
        ["X-Complex-Value", '{"subkey": "value"}'],
    ]
    assert [h for h in headers if h in docs_headers] == docs_headers  # in arrival order
    assert [name for name, _ in headers][:2] == ["Via", "Max-Forwards"]


def test_a_late_offer_offers_no_codecs() -> None:
    """docs/webhooks.md: ``offeredCodecs`` "Codecs of the SDP offer"; an INVITE without one: []."""
    assert invite_webhook(invite(), SOURCE, None, "edge-1").offered_codecs == []


def test_bytes_that_are_not_utf8_arrive_as_replacement_characters() -> None:
    """docs/relay.md, Bytes that are not UTF-8: ``"Caf\\xc3\\xa9 caf\\xe9"`` reaches the control
    plane as ``Café caf�``."""
    request = invite(display_name=b'"Caf\xc3\xa9 caf\xe9"')
    webhook = invite_webhook(request, SOURCE, None, "edge-1")
    assert webhook.from_display_name == "Café caf\ufffd"


def test_the_source_is_the_packets_and_its_transport_is_named_as_the_contract_names_it() -> None:
    """docs/webhooks.md: ``sourceIp`` is the packet's ("never taken from a header"); ``transport``
    is ``udp`` | ``tcp`` | ``tls``."""
    source = Address("203.0.113.9", 5061, Transport.TLS, connection_id=4)
    body = dump(invite_webhook(invite(), source, None, ""))
    assert (body["sourceIp"], body["sourcePort"], body["transport"]) == ("203.0.113.9", 5061, "tls")
