"""The endpoint's usage seam: usages the application adds, offered their dialogs' messages.

A tiny usage stands in for the outgoing call and the REFER subscription to come: it is held
with ``add_usage``, bound to a dialog with ``bind_dialog``, speaks through ``new_leg`` and
sends outside any dialog through ``transactions``. Expected statuses are RFC 3261's: 481 for a
request no usage of its dialog takes (§12.2.2), 200 where the usage answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.ids import SeededIdSource
from relay.sip.address import Address, Transport
from relay.sip.dialog import Dialog
from relay.sip.endpoint import SipEndpoint
from relay.sip.syntax.message import Request, Response, build_request, make_response
from relay.sip.syntax.parser import parse_message
from relay.sip.syntax.uri import NameAddr, SipUri
from relay.sip.transaction.layer import ClientTransaction, ServerTransaction
from relay.sip.transaction.timers import Timers
from relay.sip.usage.leg import Leg

UAS = Address("192.0.2.1", 5060)
PEER = Address("198.51.100.7", 5062)
LOCAL_TAG, REMOTE_TAG, CALL_ID = "local1", "remote1", "usage-test@198.51.100.7"


def endpoint() -> SipEndpoint:
    return SipEndpoint({Transport.UDP: UAS}, user_agent="sipline-test", timers=Timers(),
                       ids=SeededIdSource(3))  # fmt: skip


def in_dialog(method: str, cseq: int) -> bytes:
    return (
        f"{method} sip:sales@192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK-{method.lower()}{cseq}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@198.51.100.7>;tag={REMOTE_TAG}\r\n"
        f"To: <sip:sales@192.0.2.1>;tag={LOCAL_TAG}\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@198.51.100.7:5062>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def dialog() -> Dialog:
    request = parse_message(in_dialog("INFO", 1))
    assert isinstance(request, Request)
    contact = NameAddr(uri=SipUri(scheme="sip", host=UAS.host, port=UAS.port))
    return Dialog.as_uas(request, local_tag=LOCAL_TAG, local_contact=contact, source=PEER)


def statuses(core: SipEndpoint) -> list[tuple[int, str]]:
    found = []
    for data, _ in core.datagrams_to_send():
        message = parse_message(data)
        if isinstance(message, Response):
            found.append((message.status, message.cseq.method))
    return found


@dataclass(eq=False)
class TinyUsage:
    """Takes the methods it is told, answers them 200 through its leg, records the rest."""

    leg: Leg | None
    methods: frozenset[str]
    seen: list[str] = field(default_factory=list)
    finished: bool = False
    deadline: float | None = None
    finish_on: str | None = None

    def receive_request(self, request: Request, tx: ServerTransaction, now: float) -> bool:
        if request.method not in self.methods or self.leg is None:
            return False
        self.seen.append(request.method)
        self.leg.respond(tx, 200, now)
        self.deadline = now + 5.0  # set without marking itself: the endpoint re-arms it
        self.finished = request.method == self.finish_on
        return True

    def receive_ack(self, ack: Request, now: float) -> bool:
        self.seen.append("ACK")
        return True

    def receive_response(
        self, response: Response, tx: ClientTransaction | None, now: float
    ) -> bool:
        self.seen.append(f"{response.status} {'owned' if tx is not None else 'stray'}")
        return True

    def transaction_failed(self, tx: ServerTransaction | ClientTransaction, now: float) -> None:
        self.seen.append(f"failed {tx.request.method}")

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.seen.append(f"timer at {now}")
        self.deadline = None


def test_a_dialogs_usages_are_offered_a_request_in_order_and_the_first_that_takes_it_answers() -> (
    None
):
    core, shared = endpoint(), dialog()
    first = TinyUsage(core.new_leg(shared), frozenset({"INFO"}))
    second = TinyUsage(core.new_leg(shared), frozenset({"INFO", "OPTIONS"}))
    core.add_usage(first)
    core.bind_dialog(shared, first)
    core.bind_dialog(shared, second)

    core.receive_datagram(in_dialog("INFO", 2), PEER, 0.0)
    core.receive_datagram(in_dialog("OPTIONS", 3), PEER, 0.0)
    core.receive_datagram(in_dialog("BYE", 4), PEER, 0.0)

    assert first.seen == ["INFO"] and second.seen == ["OPTIONS"]
    assert statuses(core) == [(200, "INFO"), (200, "OPTIONS"), (481, "BYE")]


def test_the_endpoint_re_arms_a_usage_after_dispatching_to_it_and_forgets_it_once_finished() -> (
    None
):
    core, own = endpoint(), dialog()
    usage = TinyUsage(core.new_leg(own), frozenset({"INFO", "BYE"}), finish_on="BYE")
    core.bind_dialog(own, usage)

    core.receive_datagram(in_dialog("INFO", 2), PEER, 1.0)
    assert core.get_timer() == 6.0
    core.handle_timer(6.0)
    assert usage.seen == ["INFO", "timer at 6.0"]

    core.receive_datagram(in_dialog("BYE", 3), PEER, 7.0)
    assert core.get_timer() is not None  # the BYE's server transaction still runs (Timer J)
    assert core.usages == []
    core.receive_datagram(in_dialog("INFO", 4), PEER, 8.0)
    assert statuses(core) == [(200, "INFO"), (200, "BYE"), (481, "INFO")]


def test_a_usage_owns_what_it_sends_outside_a_dialog_and_gets_its_response_and_failure() -> None:
    core = endpoint()
    usage = TinyUsage(None, frozenset())
    core.add_usage(usage)
    layer = core.transactions
    uri = SipUri(scheme="sip", host=PEER.host, port=PEER.port)
    for number, method in enumerate(("OPTIONS", "MESSAGE"), start=1):
        request = build_request(
            method, uri, via=layer.new_via(Transport.UDP), cseq=number,
            from_=NameAddr(uri=SipUri(scheme="sip", host=UAS.host), params=(("tag", "t1"),)),
            to=NameAddr(uri=uri), call_id=f"out{number}@192.0.2.1",
        )  # fmt: skip
        layer.send_request(request, PEER, 0.0, owner=usage)
    sent = [parse_message(data) for data, _ in core.datagrams_to_send()]
    options = sent[0]
    assert isinstance(options, Request) and options.method == "OPTIONS"

    answer = make_response(options, 200, to_tag="p1")
    core.receive_datagram(bytes(answer), PEER, 0.1)
    while (deadline := core.get_timer()) is not None and deadline <= 64 * Timers().T1:
        core.handle_timer(deadline)  # the MESSAGE is never answered: Timer F (§17.1.2.2)

    assert usage.seen == ["200 owned", "failed MESSAGE"]


def test_a_stray_2xx_goes_to_the_usages_of_the_dialog_it_names() -> None:
    core, own = endpoint(), dialog()
    usage = TinyUsage(core.new_leg(own), frozenset())
    core.bind_dialog(own, usage)
    stray = (  # a 2xx to a re-INVITE of ours whose transaction is gone (RFC 6026 §7.2)
        "SIP/2.0 200 OK\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-gone\r\n"
        f"From: <sip:sales@192.0.2.1>;tag={LOCAL_TAG}\r\n"
        f"To: <sip:alice@198.51.100.7>;tag={REMOTE_TAG}\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        "CSeq: 9 INVITE\r\n"
        "Contact: <sip:alice@198.51.100.7:5062>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()

    core.receive_datagram(stray, PEER, 0.0)

    assert usage.seen == ["200 stray"]
