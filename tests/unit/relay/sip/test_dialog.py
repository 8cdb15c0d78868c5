"""Dialog state and in-dialog requests (RFC 3261 §12)."""

from __future__ import annotations

import pytest

from relay.ids import SeededIdSource
from relay.sip.address import Address, Transport
from relay.sip.dialog import Dialog, DialogId, target_address
from relay.sip.errors import RemoteProtocolError
from relay.sip.syntax.headers import Via
from relay.sip.syntax.message import Request, make_response
from relay.sip.syntax.parser import parse_message
from relay.sip.syntax.uri import NameAddr, SipUri

SOURCE = Address("198.51.100.7", 5062)
OURS = NameAddr(uri=SipUri(host="192.0.2.1", port=5060))
VIA = Via.parse("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnew;rport")


def invite(*, record_route: str = "", contact: str = "<sip:alice@198.51.100.7:5062>") -> Request:
    text = (
        "INVITE sips:sales@192.0.2.1 SIP/2.0\r\n"
        "Via: SIP/2.0/TLS 198.51.100.7:5062;branch=z9hG4bKone\r\n"
        'From: "Alice" <sip:alice@198.51.100.7>;tag=ft\r\n'
        "To: <sip:sales@192.0.2.1>\r\n"
        "Call-ID: call-1\r\n"
        "CSeq: 314 INVITE\r\n"
        + (f"Record-Route: {record_route}\r\n" if record_route else "")
        + (f"Contact: {contact}\r\n" if contact else "")
        + "\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def uas(request: Request | None = None, source: Address = SOURCE) -> Dialog:
    return Dialog.as_uas(request or invite(), local_tag="lt", local_contact=OURS, source=source)


def test_the_uas_dialog_takes_ids_route_set_target_and_remote_cseq_from_the_invite() -> None:
    dialog = uas(invite(record_route="<sip:p1.example;lr>, <sip:p2.example;lr>"))
    assert dialog.id == DialogId("call-1", "lt", "ft")
    assert [str(r.uri) for r in dialog.route_set] == ["sip:p1.example;lr", "sip:p2.example;lr"]
    assert str(dialog.remote_target) == "sip:alice@198.51.100.7:5062"
    assert (dialog.remote_seq, dialog.local_seq) == (314, None)
    assert str(dialog.local_uri) == "<sip:sales@192.0.2.1>;tag=lt"
    assert not dialog.secure  # sips over UDP is not secure; over TLS it is
    assert uas(source=Address("198.51.100.7", 5061, Transport.TLS)).secure


def test_a_uas_dialog_needs_a_contact() -> None:
    with pytest.raises(RemoteProtocolError, match="Missing Contact header field in INVITE"):
        uas(invite(contact=""))


def test_dialog_id_of_a_request_reads_the_local_tag_from_to() -> None:
    bye = parse_message(
        b"BYE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKb\r\nFrom: <sip:a@b>;tag=ft\r\n"
        b"To: <sip:c@d>;tag=lt\r\nCall-ID: call-1\r\nCSeq: 315 BYE\r\n\r\n"
    )
    assert isinstance(bye, Request)
    assert DialogId.of_request(bye) == DialogId("call-1", "lt", "ft")


def test_in_dialog_request_with_loose_routing_keeps_the_remote_target() -> None:
    dialog = uas(invite(record_route="<sip:p1.example;lr>, <sip:p2.example;lr>"))
    cseq = dialog.next_cseq(SeededIdSource(0))
    bye = dialog.build_request("BYE", via=VIA, cseq=cseq)
    assert str(bye.uri) == "sip:alice@198.51.100.7:5062"
    assert bye.headers.get_all("Route") == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    assert str(bye.to) == '"Alice" <sip:alice@198.51.100.7>;tag=ft'
    assert str(bye.from_) == "<sip:sales@192.0.2.1>;tag=lt"
    assert str(bye.cseq) == f"{cseq} BYE" and 0 < cseq < 2**31
    assert "Contact" not in bye.headers
    assert dialog.next_hop() == SipUri(host="p1.example", params=(("lr", None),))


def test_in_dialog_request_with_strict_routing_puts_the_route_in_the_request_uri() -> None:
    dialog = uas(invite(record_route="<sip:strict.example>, <sip:p2.example;lr>"))
    reinvite = dialog.build_request("INVITE", via=VIA, cseq=1)
    assert str(reinvite.uri) == "sip:strict.example"
    assert reinvite.headers.get_all("Route") == [
        "<sip:p2.example;lr>",
        "<sip:alice@198.51.100.7:5062>",
    ]
    assert reinvite.headers.get("Contact") == "<sip:192.0.2.1:5060>"  # a target refresh


def test_the_local_cseq_increments() -> None:
    dialog = uas()
    first = dialog.next_cseq(SeededIdSource(0))
    assert dialog.next_cseq(SeededIdSource(0)) == first + 1


def test_a_lower_remote_cseq_is_out_of_order_and_ack_cancel_are_not_checked() -> None:
    dialog = uas()
    older = invite()
    lower = Request("INFO", older.uri, headers=older.headers.with_replaced("CSeq", "100 INFO"))
    higher = Request("INFO", older.uri, headers=older.headers.with_replaced("CSeq", "400 INFO"))
    ack = Request("ACK", older.uri, headers=older.headers.with_replaced("CSeq", "314 ACK"))
    assert not dialog.accept_cseq(lower)
    assert dialog.accept_cseq(higher) and dialog.remote_seq == 400
    assert dialog.accept_cseq(ack) and dialog.remote_seq == 400


def test_a_target_refresh_replaces_the_remote_target() -> None:
    dialog = uas()
    response = make_response(invite(), 200, extra_headers=(("Contact", "<sip:alice@203.0.113.5>"),))
    dialog.refresh_target(response)
    assert str(dialog.remote_target) == "sip:alice@203.0.113.5"
    broken = make_response(invite(), 200, extra_headers=(("Contact", "<sip:bad host>"),))
    dialog.refresh_target(broken)
    assert str(dialog.remote_target) == "sip:alice@203.0.113.5"


def test_the_uac_dialog_reverses_record_route_and_keeps_the_local_cseq() -> None:
    request = invite()
    response = make_response(
        request,
        200,
        to_tag="theirs",
        extra_headers=(
            ("Record-Route", "<sip:p2.example;lr>, <sip:p1.example;lr>"),
            ("Contact", "<sip:sales@192.0.2.1:5060>"),
        ),
    )
    dialog = Dialog.as_uac(request, response)
    assert dialog.id == DialogId("call-1", "ft", "theirs")
    assert [str(r.uri.host) for r in dialog.route_set] == ["p1.example", "p2.example"]
    assert dialog.local_seq == 314 and str(dialog.remote_target) == "sip:sales@192.0.2.1:5060"
    assert dialog.secure


def test_target_address_honours_transport_sips_maddr_and_default_ports() -> None:
    assert target_address(SipUri(host="h.example")) == Address("h.example", 5060)
    tcp = SipUri(host="h.example", port=5080, params=(("transport", "TCP"),))
    assert target_address(tcp) == Address("h.example", 5080, Transport.TCP)
    assert target_address(SipUri(scheme="sips", host="h.example")) == Address(
        "h.example", 5061, Transport.TLS
    )
    maddr = SipUri(host="h.example", params=(("maddr", "192.0.2.9"),))
    assert target_address(maddr) == Address("192.0.2.9", 5060)
    with pytest.raises(RemoteProtocolError, match="cannot route to tel:"):
        target_address(SipUri(scheme="tel", host="", user="+15551234"))


def test_requests_reuse_a_live_stream_flow_when_there_is_no_route_set() -> None:
    flow = Address("198.51.100.7", 50000, Transport.TCP, connection_id=4)
    dialog = uas(source=flow)
    assert dialog.destination() == flow
    dialog.flow = Address("198.51.100.7", 50000, Transport.TCP)
    assert dialog.destination() == Address("198.51.100.7", 5062, Transport.TCP)
    routed = uas(invite(record_route="<sip:p1.example;lr>"), source=flow)
    assert routed.destination() == Address("p1.example", 5060, Transport.TCP)


def test_a_peer_behind_a_nat_gets_our_requests_on_its_udp_flow() -> None:
    nat = Address("203.0.113.9", 40111)
    private = invite(contact="<sip:alice@198.51.100.7:5062>")  # Via and Contact: 198.51.100.7
    dialog = uas(private, source=nat)
    assert dialog.symmetric and dialog.destination() == nat
    public = invite(contact="<sip:alice@203.0.113.9:40111>")
    assert not uas(public, source=nat).symmetric
    assert not uas(private, source=SOURCE).symmetric  # no NAT in the way
    proxied = invite(record_route="<sip:p1.example;lr>")
    assert not uas(proxied, source=nat).symmetric


def _uac(record_route: str) -> Dialog:
    """Our INVITE to trunk.test, sent to 192.0.2.50:5061 over TLS, and its 200 OK."""
    sent = parse_message(
        b"INVITE sips:+15551234567@trunk.test SIP/2.0\r\n"
        b"Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bKuac\r\n"
        b"From: <sip:agent@192.0.2.1>;tag=ours\r\nTo: <sips:+15551234567@trunk.test>\r\n"
        b"Call-ID: call-2\r\nCSeq: 1 INVITE\r\nContact: <sips:agent@192.0.2.1:5061>\r\n\r\n"
    )
    assert isinstance(sent, Request)
    contact = "<sip:+15551234567@192.0.2.60:5061;transport=tls>"
    ok = make_response(
        sent, 200, to_tag="theirs", extra_headers=[("Record-Route", record_route), ("Contact", contact)]
    )
    flow = Address("192.0.2.50", 5061, Transport.TLS, server_name="trunk.test")
    return Dialog.as_uac(sent, ok, source=flow)


@pytest.mark.parametrize(
    ("record_route", "destination"),
    [
        # the server that proved trunk.test names itself by address: it proves trunk.test again
        ("<sip:192.0.2.50:5061;transport=tls;lr>",
         Address("192.0.2.50", 5061, Transport.TLS, server_name="trunk.test")),
        # any other next hop proves its own URI's host (RFC 5922 §4)
        ("<sip:192.0.2.50:5062;transport=tls;lr>", Address("192.0.2.50", 5062, Transport.TLS)),
        ("<sip:edge2.trunk.test;transport=tls;lr>", Address("edge2.trunk.test", 5061, Transport.TLS)),
        ("<sip:192.0.2.50:5061;transport=tcp;lr>", Address("192.0.2.50", 5061, Transport.TCP)),
    ],
)  # fmt: skip
def test_a_tls_next_hop_at_the_flow_address_keeps_the_name_the_flow_proved(
    record_route: str, destination: Address
) -> None:
    dialog = _uac(record_route)
    assert dialog.destination() == destination
    assert dialog.destination().tls_name == (destination.server_name or destination.host)
