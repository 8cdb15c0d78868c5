"""message/sipfrag status lines (RFC 3420), Event and Subscription-State (RFC 6665 §8.2).

Bodies and values are those of RFC 3515 §4.1's NOTIFYs (F3, F5) and §2.4.5's examples.
"""

from __future__ import annotations

import pytest

from relay.sip.errors import SipParseError
from relay.sip.syntax.sipfrag import (
    MAX_SIPFRAG_BYTES,
    EventHeader,
    SipFragStatus,
    SubscriptionState,
    format_sipfrag,
    is_sipfrag,
    parse_event,
    parse_sipfrag,
    parse_subscription_state,
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [  # RFC 3515 §2.4.5
        (b"SIP/2.0 100 Trying\r\n", SipFragStatus(100, "Trying")),
        (b"SIP/2.0 200 OK\r\n", SipFragStatus(200, "OK")),
        (b"SIP/2.0 503 Service Unavailable\r\n", SipFragStatus(503, "Service Unavailable")),
        (b"SIP/2.0 603 Declined\r\n", SipFragStatus(603, "Declined")),
        # RFC 3420 §2: a fragment may go on with header fields
        (
            b"SIP/2.0 603 Declined\r\nFrom: Alice <sip:alice@atlanta.com>\r\n",
            SipFragStatus(603, "Declined"),
        ),
        (b"SIP/2.0 200 OK", SipFragStatus(200, "OK")),  # the line without its CRLF
    ],
)
def test_a_sipfrag_gives_its_status_line(body: bytes, expected: SipFragStatus) -> None:
    assert parse_sipfrag(body) == expected


def test_a_written_sipfrag_reads_back() -> None:
    assert format_sipfrag(180, "Ringing") == b"SIP/2.0 180 Ringing\r\n"
    assert parse_sipfrag(format_sipfrag(180, "Ringing")) == SipFragStatus(180, "Ringing")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"INVITE sip:alice@atlanta.com SIP/2.0\r\n",
        b"SIP/2.0 99 Low\r\n",
        b"HTTP/1.1 200 OK",
        b"SIP/2.0 200 OK" + b"K" * 300,
        b"SIP/2.0 200 OK\r\n" + b"x" * MAX_SIPFRAG_BYTES,
    ],
)
def test_a_body_that_is_not_a_status_line_sipfrag_is_refused(body: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_sipfrag(body)


def test_the_sipfrag_type_is_recognised_with_its_version_parameter() -> None:
    assert is_sipfrag("message/sipfrag;version=2.0")  # RFC 3515 §4.1 F3
    assert is_sipfrag("Message/SipFrag")
    assert not is_sipfrag("application/sdp") and not is_sipfrag(None)


def test_event_and_subscription_state_values_of_rfc_3515_parse() -> None:
    assert parse_event("refer") == EventHeader("refer", None)
    assert parse_event("refer;id=93809824") == EventHeader("refer", "93809824")  # §4.2 F9
    assert parse_event("refer; id=93809824") == EventHeader("refer", "93809824")
    assert parse_subscription_state("active;expires=60") == SubscriptionState("active", None, 60)
    ended = parse_subscription_state("terminated;reason=noresource")  # §4.1 F5
    assert ended == SubscriptionState("terminated", "noresource", None) and ended.terminated


def test_linphones_malformed_reason_still_ends_the_subscription() -> None:
    # linphone 5.1's final NOTIFY to a REFER, as captured (tests/interop/transfer_peers.py).
    ended = parse_subscription_state("terminated;reason=reason=noresource")
    assert ended.terminated and ended.state == "terminated"


@pytest.mark.parametrize("value", ["", "refer id", "re fer;id=1"])
def test_a_malformed_event_is_refused(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_event(value)


@pytest.mark.parametrize("value", ["", "active;expires=soon", "active;expires=99999999999"])
def test_a_malformed_subscription_state_is_refused(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_subscription_state(value)
