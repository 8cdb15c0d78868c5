"""The endpoint as the transports see it: bytes in, datagrams and events out (RFC 3261 §8.2, §18)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import event as observe
from hypothesis import strategies as st

from relay.ids import SeededIdSource
from relay.sip.address import Address, Transport
from relay.sip.endpoint import SipEndpoint
from relay.sip.events import BadRequestRejected, IncomingCallReceived, ParseErrorDropped
from relay.sip.sdp.description import SessionDescription
from relay.sip.sdp.offer_answer import Answer, NoCommonCodec, negotiate
from relay.sip.syntax.message import Response
from relay.sip.syntax.parser import parse_message
from relay.sip.transaction.timers import Timers
from relay.sip.usage.incoming import CallState
from relay.sip.usage.invite_session import CallEnded
from tests.unit.relay.harness import (
    CONNECTION_ID,
    Action,
    UacUasPair,
    answer_for,
    uac_offer,
)

UAS = Address("192.0.2.1", 5060)
CALLER = Address("198.51.100.7", 5062)


def endpoint() -> SipEndpoint:
    return SipEndpoint(
        {Transport.UDP: UAS, Transport.TCP: Address("192.0.2.1", 5060, Transport.TCP)},
        user_agent="sipline-test",
        timers=Timers(),
        ids=SeededIdSource(1),
    )


def request(
    method: str = "OPTIONS",
    *,
    via: str = "SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKabc123",
    cseq: str | None = None,
    to_tag: str = "",
    extra: str = "",
    body: str = "",
) -> bytes:
    cseq = cseq or f"1 {method}"
    to = "<sip:sales@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:sales@192.0.2.1 SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@198.51.100.7>;tag=1928301774\r\n"
        f"To: {to}\r\n"
        "Call-ID: a84b4c76e66710@198.51.100.7\r\n"
        f"CSeq: {cseq}\r\n"
        "Contact: <sip:alice@198.51.100.7:5062>\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    return text.encode()


def sent(core: SipEndpoint) -> list[tuple[Response, Address]]:
    out = []
    for data, address in core.datagrams_to_send():
        message = parse_message(data)
        assert isinstance(message, Response)
        out.append((message, address))
    return out


def negotiate_pcmu(offer: SessionDescription) -> Answer | NoCommonCodec:
    return negotiate(
        offer,
        preference=("PCMU", "PCMA"),
        local_address="192.0.2.1",
        local_port=30000,
        session_id=7,
        session_version=7,
    )


def events(core: SipEndpoint) -> list[object]:
    found = []
    while (event := core.next_event()) is not None:
        found.append(event)
    return found


# --- out-of-dialog requests ---------------------------------------------------------------


def test_options_gets_200_with_allow_accept_and_supported() -> None:
    core = endpoint()
    core.receive_datagram(request("OPTIONS"), CALLER, 0.0)
    ((response, address),) = sent(core)
    assert response.status == 200
    assert (
        response.headers.get("Allow")
        == "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY"
    )
    assert response.headers.get("Accept") == (
        "application/sdp, application/dtmf-relay, application/dtmf, message/sipfrag"
    )
    assert response.headers.get("Supported") == "timer"
    assert response.to.tag is not None
    assert address == CALLER


def test_a_method_sip_defines_but_we_do_not_handle_gets_405_with_allow() -> None:
    core = endpoint()
    core.receive_datagram(request("SUBSCRIBE"), CALLER, 0.0)
    ((response, _),) = sent(core)
    assert (response.status, response.reason) == (405, "Method Not Allowed")
    assert (
        response.headers.get("Allow")
        == "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY"
    )


def test_an_unknown_method_gets_501_with_allow() -> None:
    core = endpoint()
    core.receive_datagram(request("FROBNICATE"), CALLER, 0.0)
    ((response, _),) = sent(core)
    assert (response.status, response.reason) == (501, "Not Implemented")
    assert "INVITE" in (response.headers.get("Allow") or "")


def test_a_request_for_an_unknown_dialog_gets_481() -> None:
    core = endpoint()
    core.receive_datagram(request("BYE", to_tag="nosuch"), CALLER, 0.0)
    ((response, _),) = sent(core)
    assert response.status == 481


def test_a_bye_without_to_tag_gets_481() -> None:
    core = endpoint()
    core.receive_datagram(request("BYE"), CALLER, 0.0)
    assert sent(core)[0][0].status == 481


def test_a_cancel_matching_no_invite_gets_481() -> None:
    core = endpoint()
    core.receive_datagram(request("CANCEL"), CALLER, 0.0)
    assert sent(core)[0][0].status == 481


def test_an_ack_matching_nothing_is_dropped_silently() -> None:
    core = endpoint()
    core.receive_datagram(request("ACK", to_tag="x"), CALLER, 0.0)
    assert core.datagrams_to_send() == [] and events(core) == []


# --- bad input ------------------------------------------------------------


def test_cseq_method_mismatch_gets_a_stateless_400_with_the_reason() -> None:
    core = endpoint()
    core.receive_datagram(request("INVITE", cseq="1 BYE"), CALLER, 0.0)
    ((response, address),) = sent(core)
    assert (response.status, response.reason) == (
        400, "CSeq method BYE does not match request method INVITE",
    )  # fmt: skip
    assert address == CALLER
    assert core.counters.stateless_errors_sent == 1
    assert events(core) == [
        BadRequestRejected(CALLER, 400, "CSeq method BYE does not match request method INVITE")
    ]


def test_an_unsupported_require_gets_420_with_unsupported() -> None:
    core = endpoint()
    core.receive_datagram(request("OPTIONS", extra="Require: 100rel\r\n"), CALLER, 0.0)
    ((response, _),) = sent(core)
    assert (response.status, response.headers.get("Unsupported")) == (420, "100rel")


def test_a_garbage_datagram_is_dropped_and_counted() -> None:
    core = endpoint()
    core.receive_datagram(b"\x16\x03\x01\x02\x00garbage", CALLER, 0.0)
    assert core.datagrams_to_send() == []
    assert core.counters.dropped_unparseable == 1
    assert events(core) == [
        ParseErrorDropped(CALLER, "Missing empty line after the header section")
    ]


def test_a_keepalive_is_ignored_and_counted() -> None:
    core = endpoint()
    core.receive_datagram(b"\r\n\r\n", CALLER, 0.0)
    assert core.datagrams_to_send() == [] and core.counters.keepalives == 1


def test_an_unsolicited_response_is_dropped() -> None:
    core = endpoint()
    data = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnope\r\n"
    data += b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n\r\n"
    core.receive_datagram(data, CALLER, 0.0)
    assert core.datagrams_to_send() == [] and events(core) == []


def test_a_response_with_two_vias_is_dropped_and_counted() -> None:
    core = endpoint()
    data = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa\r\n"
    data += b"Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb\r\n"
    data += b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n\r\n"
    core.receive_datagram(data, CALLER, 0.0)
    assert core.counters.responses_dropped == 1
    assert events(core) == [
        ParseErrorDropped(CALLER, "Response carries more than one Via header field value")
    ]


def test_invite_without_contact_gets_400() -> None:
    core = endpoint()
    data = request("INVITE").replace(b"Contact: <sip:alice@198.51.100.7:5062>\r\n", b"")
    core.receive_datagram(data, CALLER, 0.0)
    ((response, _),) = sent(core)
    assert (response.status, response.reason) == (400, "Missing Contact header field in INVITE")


def test_invite_with_a_malformed_session_expires_gets_400_naming_it() -> None:
    core = endpoint()
    core.receive_datagram(request("INVITE", extra="Session-Expires: soon\r\n"), CALLER, 0.0)
    ((response, _),) = sent(core)
    assert (response.status, response.reason) == (
        400, "Invalid Session-Expires header field: 'soon'",
    )  # fmt: skip


def test_invite_with_a_body_that_is_not_sdp_gets_415_with_accept() -> None:
    core = endpoint()
    core.receive_datagram(
        request("INVITE", extra="Content-Type: text/plain\r\n", body="hello"), CALLER, 0.0
    )
    ((response, _),) = sent(core)
    assert (response.status, response.headers.get("Accept")) == (415, "application/sdp")


def test_invite_with_malformed_sdp_gets_400_naming_it() -> None:
    core = endpoint()
    core.receive_datagram(
        request("INVITE", extra="Content-Type: application/sdp\r\n", body="v=0\r\nbogus\r\n"),
        CALLER,
        0.0,
    )
    ((response, _),) = sent(core)
    assert response.status == 400 and response.reason.startswith("Malformed SDP body")


def test_a_merged_invite_by_another_path_gets_482() -> None:
    core = endpoint()
    sdp = "Content-Type: application/sdp\r\n"
    core.receive_datagram(request("INVITE", extra=sdp, body=str(uac_offer())), CALLER, 0.0)
    other = "SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKother"
    core.receive_datagram(
        request("INVITE", via=other, extra=sdp, body=str(uac_offer())), CALLER, 0.1
    )
    statuses = [response.status for response, _ in sent(core)]
    assert statuses == [100, 482]


# --- where responses go (RFC 3261 §18.2.2, RFC 3581) --------------------------------------


def test_responses_go_to_received_and_rport_behind_a_nat() -> None:
    core = endpoint()
    via = "SIP/2.0/UDP 10.0.0.5:5062;rport;branch=z9hG4bKnat"
    nat = Address("203.0.113.9", 40111)
    core.receive_datagram(request("OPTIONS", via=via), nat, 0.0)
    ((response, address),) = sent(core)
    assert address == Address("203.0.113.9", 40111)
    assert response.top_via.received == "203.0.113.9" and response.top_via.rport == 40111


def test_without_rport_responses_go_to_received_and_the_sent_by_port() -> None:
    core = endpoint()
    via = "SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKnat"
    core.receive_datagram(request("OPTIONS", via=via), Address("203.0.113.9", 40111), 0.0)
    ((_, address),) = sent(core)
    assert address == Address("203.0.113.9", 5070)


def test_responses_to_a_tcp_request_leave_on_its_connection() -> None:
    core = endpoint()
    source = Address("198.51.100.7", 50123, Transport.TCP, connection_id=42)
    via = "SIP/2.0/TCP 198.51.100.7:5062;branch=z9hG4bKtcp"
    core.receive_message(parse_message(request("OPTIONS", via=via)), source, 0.0)
    ((_, address),) = sent(core)
    assert address == source


def test_a_failed_connection_sends_the_response_again_by_via() -> None:
    core = endpoint()
    source = Address("198.51.100.7", 50123, Transport.TCP, connection_id=42)
    via = "SIP/2.0/TCP 198.51.100.7:5062;branch=z9hG4bKtcp"
    core.receive_message(parse_message(request("OPTIONS", via=via)), source, 0.0)
    core.datagrams_to_send()
    core.transport_error(source, 0.0)
    ((response, address),) = sent(core)
    assert response.status == 200
    assert address == Address("198.51.100.7", 5062, Transport.TCP)


def test_an_invite_over_tcp_gets_every_response_on_the_connection() -> None:
    pair = UacUasPair(transport=Transport.TCP)
    call = pair.establish()
    call.hang_up(now=pair.now)
    pair.run(until=100)
    from_uas = [d for d in pair.wire if not d.to_uas]
    assert all(d.destination.connection_id == CONNECTION_ID for d in from_uas)
    assert [d.label for d in from_uas] == ["100 INVITE", "180 INVITE", "200 INVITE", "BYE"]
    assert call.state is CallState.TERMINATED
    assert pair.uas.get_timer() is None


def test_after_the_connection_is_lost_our_bye_goes_by_address() -> None:
    pair = UacUasPair(transport=Transport.TCP)
    call = pair.establish()
    pair.uas.connection_lost(CONNECTION_ID, pair.now)
    call.hang_up(now=pair.now)
    pair.pump()
    bye = pair.wire[-2]
    assert bye.label == "BYE"
    assert bye.destination == Address("192.0.2.10", 5062, Transport.TCP)


def test_a_call_behind_a_nat_is_answered_and_hung_up_through_it() -> None:
    pair = UacUasPair(nat=Address("203.0.113.9", 40111))
    call = pair.establish()
    assert call.state is CallState.CONFIRMED and call.dialog.symmetric
    call.hang_up(now=pair.now)
    pair.run(until=60)
    assert pair.labels()[-2:] == ["BYE", "200 BYE"] and pair.lost == []
    assert all(
        (d.destination.host, d.destination.port) == ("203.0.113.9", 40111)
        for d in pair.wire
        if not d.to_uas
    )
    assert pair.uac.state == "terminated"


def test_a_tcp_request_with_a_udp_via_is_still_answered_on_its_connection() -> None:
    core = endpoint()
    source = Address("198.51.100.7", 50123, Transport.TCP, connection_id=42)
    core.receive_message(parse_message(request("OPTIONS")), source, 0.0)
    ((_, address),) = sent(core)
    assert address == source


# --- Hypothesis ---------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fates=st.lists(st.sampled_from(list(Action)), max_size=40),
    hang_up_first=st.booleans(),
    transport=st.sampled_from([Transport.UDP, Transport.TCP]),
)
def test_any_drop_duplicate_reorder_of_a_basic_call_ends_cleanly(
    fates: list[Action], hang_up_first: bool, transport: Transport
) -> None:
    fate_iter = iter(fates)
    pair = UacUasPair(transport=transport)
    pair.policy = lambda _: next(fate_iter, Action.DELIVER)
    pair.uac.invite(0.0)
    pair.run(until=0.2)
    for event in list(pair.events):
        if isinstance(event, IncomingCallReceived):
            event.call.ringing(now=pair.now)
            event.call.accept(answer_for(event.call), now=pair.now)
    pair.run(until=10)
    if hang_up_first:
        for call in pair.uas.usages:
            call.hang_up(now=pair.now)
    elif pair.uac.dialog is not None:
        pair.uac.send("BYE", pair.now)
    pair.run(until=4000)

    calls = [e.call for e in pair.events if isinstance(e, IncomingCallReceived)]
    for ending in pair.events:
        if isinstance(ending, CallEnded):
            observe(f"ended: {ending.reason}")
    for call in calls:  # over, or established on both sides
        assert call.state in (CallState.TERMINATED, CallState.CONFIRMED)
        if call.state is CallState.CONFIRMED:
            observe("still established")
            assert pair.uac.state == "confirmed"
    pair.policy = None  # the network heals; the application hangs up what is left
    for call in pair.uas.usages:
        call.hang_up(now=pair.now)
    pair.run(until=pair.now + 100)
    assert all(call.state is CallState.TERMINATED for call in calls)
    assert len([e for e in pair.events if isinstance(e, CallEnded)]) == len(calls)
    assert pair.uas.usages == [] and pair.uas.get_timer() is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    core = endpoint()
    core.receive_datagram(data, CALLER, 0.0)
    core.datagrams_to_send()
    events(core)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_mutated_invite_never_raises(data: st.DataObject) -> None:
    valid = bytearray(
        request("INVITE", extra="Content-Type: application/sdp\r\n", body=str(uac_offer()))
    )
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(valid) - 1))
        valid[position] = data.draw(st.sampled_from(b';:,<>"\r\n =@0a\x00\xff'))
    core = endpoint()
    core.receive_datagram(bytes(valid), CALLER, 0.0)
    core.receive_datagram(bytes(valid), CALLER, 0.1)
    core.handle_timer(100.0)
    core.datagrams_to_send()
    for event in events(core):
        if isinstance(event, IncomingCallReceived):
            offer = event.offer
            if offer is not None and isinstance(negotiate_pcmu(offer), NoCommonCodec):
                event.call.reject(488, now=0.2)
            else:
                event.call.accept(answer_for(event.call), now=0.2)
    core.handle_timer(200.0)
    core.datagrams_to_send()
