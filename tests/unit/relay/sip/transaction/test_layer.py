"""Transaction matching, ownership, response routing and timers (RFC 3261 §17.1.3, §17.2.3, §18)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.ids import SeededIdSource
from relay.sip.address import Address, Transport
from relay.sip.syntax.headers import Headers, Via
from relay.sip.syntax.message import Request, Response, make_response
from relay.sip.syntax.parser import parse_message
from relay.sip.syntax.uri import SipUri
from relay.sip.syntax.via import response_destination
from relay.sip.transaction.deadlines import Deadlines
from relay.sip.transaction.layer import (
    ClientTransaction,
    RequestArrived,
    ResponseArrived,
    TransactionFailed,
    TransactionLayer,
    non_2xx_ack,
)
from relay.sip.transaction.machine import TransactionState
from relay.sip.transaction.match import TransactionKey, server_key
from relay.sip.transaction.timers import Timers

LOCAL = Address("192.0.2.1", 5060)
PEER = Address("198.51.100.7", 5062)
TIMERS = Timers()


def layer() -> TransactionLayer:
    return TransactionLayer(
        local_addresses={
            Transport.UDP: LOCAL,
            Transport.TCP: Address("192.0.2.1", 5060, Transport.TCP),
        },
        timers=TIMERS,
        ids=SeededIdSource(3),
    )


def request(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bKone",
    sent_by: str = "198.51.100.7:5062",
    cseq: int = 1,
    to_tag: str = "",
) -> Request:
    to = "<sip:sales@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:sales@192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by};branch={branch}\r\n"
        "From: <sip:alice@198.51.100.7>;tag=ft\r\n"
        f"To: {to}\r\n"
        "Call-ID: call-1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@198.51.100.7:5062>\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def drain(tx_layer: TransactionLayer) -> list[object]:
    events = []
    while (event := tx_layer.next_event()) is not None:
        events.append(event)
    return events


def sent(tx_layer: TransactionLayer) -> list[tuple[Request | Response, Address]]:
    return [(parse_message(data), address) for data, address in tx_layer.datagrams_to_send()]


# --- server side: matching (§17.2.3) ------------------------------------------------------


def test_a_new_request_creates_a_server_transaction_and_reaches_the_tu_once() -> None:
    txl = layer()
    txl.receive_request(request(), PEER, 0.0)
    txl.receive_request(request(), PEER, 0.1)  # retransmission
    events = drain(txl)
    assert len(events) == 1 and isinstance(events[0], RequestArrived)
    assert events[0].transaction is not None


def test_the_top_via_is_stamped_with_received_and_rport() -> None:
    txl = layer()
    txl.receive_request(request(sent_by="10.0.0.5:5062;rport"), Address("203.0.113.9", 40111), 0.0)
    (event,) = drain(txl)
    assert isinstance(event, RequestArrived)
    assert str(event.request.top_via) == (
        "SIP/2.0/UDP 10.0.0.5:5062;rport=40111;branch=z9hG4bKone;received=203.0.113.9"
    )


def test_the_key_is_branch_sent_by_and_method_with_ack_as_invite() -> None:
    assert server_key(request()) == TransactionKey("z9hG4bKone", "198.51.100.7:5062", "INVITE")
    assert server_key(request("ACK")).method == "INVITE"
    assert server_key(request(sent_by="other.example:5062")) != server_key(request())


def test_a_retransmission_is_answered_with_the_last_response_and_not_passed_up() -> None:
    txl = layer()
    txl.receive_request(request(), PEER, 0.0)
    (event,) = drain(txl)
    assert isinstance(event, RequestArrived) and event.transaction is not None
    txl.send_response(event.transaction, make_response(event.request, 100), 0.0)
    sent(txl)
    txl.receive_request(request(), PEER, 0.5)
    assert [m.status for m, _ in sent(txl)] == [100]
    assert drain(txl) == []


def test_an_ack_to_a_non_2xx_is_absorbed_by_its_transaction() -> None:
    txl = layer()
    txl.receive_request(request(), PEER, 0.0)
    (event,) = drain(txl)
    assert isinstance(event, RequestArrived) and event.transaction is not None
    txl.send_response(event.transaction, make_response(event.request, 486, to_tag="t"), 0.0)
    txl.receive_request(request("ACK", to_tag="t"), PEER, 0.1)
    assert drain(txl) == []
    assert event.transaction.state is TransactionState.CONFIRMED


def test_an_ack_to_a_2xx_has_its_own_branch_and_goes_up_without_a_transaction() -> None:
    txl = layer()
    txl.receive_request(request(), PEER, 0.0)
    (event,) = drain(txl)
    assert isinstance(event, RequestArrived) and event.transaction is not None
    txl.send_response(event.transaction, make_response(event.request, 200, to_tag="t"), 0.0)
    txl.receive_request(request("ACK", branch="z9hG4bKtwo", to_tag="t"), PEER, 0.1)
    (ack,) = drain(txl)
    assert isinstance(ack, RequestArrived) and ack.transaction is None


def test_an_ack_to_a_2xx_with_the_invites_branch_is_passed_up_by_the_accepted_state() -> None:
    txl = layer()
    txl.receive_request(request(), PEER, 0.0)
    (event,) = drain(txl)
    assert isinstance(event, RequestArrived) and event.transaction is not None
    txl.send_response(event.transaction, make_response(event.request, 200, to_tag="t"), 0.0)
    txl.receive_request(request("ACK", to_tag="t"), PEER, 0.1)  # RFC 2543 style: same branch
    (ack,) = drain(txl)
    assert isinstance(ack, RequestArrived) and ack.transaction is None
    assert ack.request.method == "ACK"


def test_a_udp_transport_error_reaches_the_server_transaction() -> None:
    txl = layer()
    txl.receive_request(request("OPTIONS"), PEER, 0.0)
    (event,) = drain(txl)
    assert isinstance(event, RequestArrived) and event.transaction is not None
    txl.send_response(event.transaction, make_response(event.request, 180, to_tag="t"), 0.0)
    txl.transport_error(PEER, 0.1)
    assert drain(txl) == [TransactionFailed(event.transaction, "transport error")]


def test_a_cancel_finds_the_invite_it_targets() -> None:
    txl = layer()
    txl.receive_request(request(), PEER, 0.0)
    (invite,) = drain(txl)
    txl.receive_request(request("CANCEL"), PEER, 0.1)
    (cancel,) = drain(txl)
    assert isinstance(cancel, RequestArrived) and cancel.transaction is not None
    assert cancel.transaction is not invite.transaction
    assert txl.find_invite(cancel.request) is invite.transaction
    assert txl.find_invite(request("CANCEL", branch="z9hG4bKzzz")) is None


def test_rfc_2543_requests_match_by_call_id_from_tag_and_cseq() -> None:
    txl = layer()
    old = request(branch="1234")  # no magic cookie
    txl.receive_request(old, PEER, 0.0)
    txl.receive_request(old, PEER, 0.5)
    assert len(drain(txl)) == 1
    assert server_key(old).branch == "rfc2543|call-1|ft|1"


def test_a_2xx_after_timer_l_is_still_sent_to_the_transaction_destination() -> None:
    txl = layer()
    txl.receive_request(request(), PEER, 0.0)
    (event,) = drain(txl)
    assert isinstance(event, RequestArrived) and event.transaction is not None
    ok = make_response(event.request, 200, to_tag="t")
    txl.send_response(event.transaction, ok, 0.0)
    txl.handle_timer(64 * TIMERS.T1)
    assert event.transaction.state is TransactionState.TERMINATED
    sent(txl)
    txl.send_response(event.transaction, ok, 33.0)
    assert [(m.status, a) for m, a in sent(txl)] == [(200, PEER)]


# --- where responses go (§18.2.2, RFC 3581) -----------------------------------------------


def test_response_destination_prefers_the_connection_then_received_and_rport() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.5:5062;rport=40111;received=203.0.113.9")
    assert response_destination(via, PEER) == Address("203.0.113.9", 40111)
    tcp_source = Address("203.0.113.9", 50000, Transport.TCP, connection_id=3)
    tcp_via = Via.parse("SIP/2.0/TCP 10.0.0.5:5062;received=203.0.113.9")
    assert response_destination(tcp_via, tcp_source) == tcp_source
    plain = Via.parse("SIP/2.0/UDP client.example")
    assert response_destination(plain, PEER) == Address("client.example", 5060)
    maddr = Via.parse("SIP/2.0/UDP client.example:5070;maddr=239.0.0.1")
    assert response_destination(maddr, PEER) == Address("239.0.0.1", 5070)
    tls = Via.parse("SIP/2.0/TLS client.example")
    assert response_destination(tls, PEER) == Address("client.example", 5061, Transport.TLS)


def test_a_lost_connection_sends_later_responses_by_via() -> None:
    txl = layer()
    source = Address("198.51.100.7", 50000, Transport.TCP, connection_id=9)
    message = parse_message(bytes(request()).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
    assert isinstance(message, Request)
    txl.receive_request(message, source, 0.0)
    (event,) = drain(txl)
    assert isinstance(event, RequestArrived) and event.transaction is not None
    txl.connection_lost(9)
    txl.send_response(event.transaction, make_response(event.request, 180, to_tag="t"), 0.1)
    ((_, address),) = sent(txl)
    assert address == Address("198.51.100.7", 5062, Transport.TCP)


# --- client side (§17.1.3) ----------------------------------------------------------------


def _client_request(txl: TransactionLayer, method: str = "BYE") -> Request:
    via = txl.new_via(Transport.UDP)
    fields = [
        ("Via", str(via)),
        ("From", "<sip:sales@192.0.2.1>;tag=a"),
        ("To", "<sip:alice@198.51.100.7>;tag=b"),
        ("Call-ID", "call-1"),
        ("CSeq", f"5 {method}"),
    ]
    return Request(method, SipUri(host="198.51.100.7", port=5062), headers=Headers(fields))


def test_new_via_carries_our_sent_by_a_fresh_branch_and_rport() -> None:
    txl = layer()
    first, second = txl.new_via(Transport.UDP), txl.new_via(Transport.UDP)
    assert (first.host, first.port, first.rport_requested) == ("192.0.2.1", 5060, True)
    assert first.branch != second.branch and (first.branch or "").startswith("z9hG4bK")
    assert txl.new_via(Transport.TCP).transport == "TCP"


def test_a_response_matches_its_client_transaction_by_branch_and_cseq_method() -> None:
    txl = layer()
    bye = _client_request(txl)
    owner = object()
    tx = txl.send_request(bye, PEER, 0.0, owner=owner)
    assert [a for _, a in sent(txl)] == [PEER]
    txl.receive_response(make_response(bye, 200), PEER, 0.1)
    (event,) = drain(txl)
    assert isinstance(event, ResponseArrived) and event.transaction is tx and tx.owner is owner
    assert tx.state is TransactionState.COMPLETED


def test_a_response_with_another_method_does_not_match() -> None:
    txl = layer()
    bye = _client_request(txl)
    txl.send_request(bye, PEER, 0.0)
    wrong = make_response(bye, 200)
    wrong = Response(200, "OK", headers=wrong.headers.with_replaced("CSeq", "5 INFO"))
    txl.receive_response(wrong, PEER, 0.1)
    (event,) = drain(txl)  # passed up as a stray: the sent-by is ours
    assert isinstance(event, ResponseArrived) and event.transaction is None


def test_a_response_for_someone_else_is_dropped() -> None:
    txl = layer()
    stray = make_response(request("BYE"), 200)
    txl.receive_response(stray, PEER, 0.0)
    assert drain(txl) == []


def test_timer_e_retransmits_and_timer_f_fails_the_transaction() -> None:
    txl = layer()
    tx = txl.send_request(_client_request(txl), PEER, 0.0)
    sent(txl)
    assert txl.get_timer() == TIMERS.T1
    txl.handle_timer(TIMERS.T1)
    assert len(sent(txl)) == 1
    now = TIMERS.T1
    while (deadline := txl.get_timer()) is not None:
        now = deadline
        txl.handle_timer(now)
    assert now == 64 * TIMERS.T1
    assert drain(txl) == [TransactionFailed(tx, "Timer F")]


def test_the_invite_client_acks_a_non_2xx_itself() -> None:
    txl = layer()
    invite = _client_request(txl, "INVITE")
    txl.send_request(invite, PEER, 0.0)
    sent(txl)
    txl.receive_response(make_response(invite, 486, to_tag="b"), PEER, 0.1)
    ((ack, _),) = sent(txl)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack == non_2xx_ack(invite, make_response(invite, 486, to_tag="b"))
    assert ack.branch == invite.branch and str(ack.cseq) == "5 ACK"


def test_a_transport_error_fails_the_client_transactions_to_that_address() -> None:
    txl = layer()
    tx: ClientTransaction = txl.send_request(_client_request(txl), PEER, 0.0)
    txl.transport_error(PEER, 0.0)
    assert drain(txl) == [TransactionFailed(tx, "transport error")]
    assert txl.get_timer() is None


# --- the deadline heap --------------------------------------------------------------------


@given(st.lists(st.tuples(st.integers(0, 9), st.none() | st.floats(0, 100)), max_size=60))
def test_deadlines_always_report_the_earliest_live_deadline(
    updates: list[tuple[int, float | None]],
) -> None:
    heap: Deadlines[int] = Deadlines()
    model: dict[int, float] = {}
    for key, deadline in updates:
        heap.set(key, deadline)
        if deadline is None:
            model.pop(key, None)
        else:
            model[key] = deadline
        assert heap.earliest() == min(model.values(), default=None)
    due = heap.pop_due(50.0)
    assert sorted(due) == sorted(k for k, at in model.items() if at <= 50.0)
    assert len(heap) == len([at for at in model.values() if at > 50.0])
