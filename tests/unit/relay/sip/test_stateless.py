"""Stateless refusals: one response per INVITE received, no transaction (RFC 3261 §8.2.7).

The endpoint is driven with a simulated clock: every timer it arms is fired, up to well past
Timer H (64*T1), so a retransmission would show.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.ids import SeededIdSource
from relay.sip.address import Address, Transport
from relay.sip.endpoint import SipEndpoint
from relay.sip.events import Event, IncomingCallReceived, InviteRefused
from relay.sip.stateless import Refusal, stateless_tag
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.parser import parse_message
from relay.sip.transaction.timers import Timers
from tests.unit.relay.harness import UacUasPair, is_

UAS = Address("192.0.2.1", 5060)
VICTIM = Address("198.51.100.7", 5062)
"""The address a forger writes as the source (and in Via): the one the responses go to."""
FORBIDDEN = Refusal(403, "source_ip_not_allowed")
TIMERS = Timers()
HORIZON_S = 64 * TIMERS.T1 + 10.0
"""Past Timer H (64*T1, RFC 3261 §17.2.1): every retransmission of a final response is before."""


@dataclass
class RefuseFrom:
    """An admission that refuses the hosts it is given, and remembers what it was asked."""

    hosts: set[str]
    answer: Refusal = FORBIDDEN
    asked: list[tuple[str, float]] = field(default_factory=list)

    def refusal(self, request: Request, source: Address, now: float) -> Refusal | None:
        self.asked.append((source.host, now))
        return self.answer if source.host in self.hosts else None


def admission_refusing(*hosts: str) -> RefuseFrom:
    return RefuseFrom(set(hosts))


def endpoint(admission: RefuseFrom | None) -> SipEndpoint:
    return SipEndpoint(
        {Transport.UDP: UAS, Transport.TCP: Address(UAS.host, UAS.port, Transport.TCP)},
        user_agent="sipline-test",
        timers=TIMERS,
        ids=SeededIdSource(3),
        admission=admission,
    )


def invite(*, branch: str = "z9hG4bKforged1", to_tag: str = "", transport: str = "UDP") -> bytes:
    to = "<sip:sales@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    body = (
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    return (
        "INVITE sip:sales@192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 198.51.100.7:5062;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:scanner@198.51.100.7>;tag=1928301774\r\n"
        f"To: {to}\r\n"
        "Call-ID: a84b4c76e66710@198.51.100.7\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:scanner@198.51.100.7:5062>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def run_out_the_clock(
    core: SipEndpoint, *, until: float = HORIZON_S
) -> list[tuple[bytes, Address]]:
    """Fire every timer the core arms up to ``until``; return every datagram it sent."""
    sent = core.datagrams_to_send()
    while (deadline := core.get_timer()) is not None and deadline <= until:
        core.handle_timer(deadline)
        sent += core.datagrams_to_send()
    return sent


def events(core: SipEndpoint) -> list[Event]:
    out = []
    while (event := core.next_event()) is not None:
        out.append(event)
    return out


def statuses(sent: list[tuple[bytes, Address]]) -> list[int]:
    replies = [parse_message(data) for data, _ in sent]
    assert all(isinstance(r, Response) for r in replies)
    return [r.status for r in replies if isinstance(r, Response)]


def test_a_refused_invite_from_a_forged_udp_source_gets_one_403_and_nothing_until_past_timer_h() -> (
    None
):
    core = endpoint(admission_refusing(VICTIM.host))

    core.receive_datagram(invite(), VICTIM, now=0.0)
    sent = run_out_the_clock(core)

    assert statuses(sent) == [403]  # no 100 Trying, no Timer G copies (§8.2.7)
    assert sent[0][1] == VICTIM
    assert core.get_timer() is None  # nothing left armed: no transaction exists
    [refused] = events(core)
    assert refused == InviteRefused(VICTIM, FORBIDDEN)
    assert core.counters.invites_refused == 1 and core.counters.calls_received == 0


def test_the_same_403_through_an_invite_transaction_is_what_amplified() -> None:
    """The stateful path (an admitted INVITE the application rejects), for contrast: over UDP
    the final response is retransmitted on Timer G until Timer H (RFC 3261 §17.2.1)."""
    core = endpoint(None)

    core.receive_datagram(invite(), VICTIM, now=0.0)
    [call] = [e.call for e in events(core) if isinstance(e, IncomingCallReceived)]
    call.reject(403, now=0.0)
    sent = run_out_the_clock(core)

    assert statuses(sent)[0] == 100
    assert statuses(sent)[1:] == [403] * len(sent[1:]) and len(sent[1:]) >= 10


def test_each_retransmission_of_a_refused_invite_gets_one_identical_response() -> None:
    core = endpoint(admission_refusing(VICTIM.host))

    for now in (0.0, 0.5, 1.5):
        core.receive_datagram(invite(), VICTIM, now=now)
    sent = run_out_the_clock(core)

    assert statuses(sent) == [403, 403, 403]
    assert len({data for data, _ in sent}) == 1  # the To tag is derived from the request
    assert core.counters.invites_refused == 3


def test_a_refusal_carries_its_reason_phrase_and_headers_and_our_server_name() -> None:
    busy = Refusal(503, "invite_rate_exceeded", "INVITE Rate Exceeded", (("Retry-After", "4"),))
    core = endpoint(RefuseFrom({VICTIM.host}, busy))

    core.receive_datagram(invite(), VICTIM, now=0.0)
    [(data, _)] = core.datagrams_to_send()
    reply = parse_message(data)

    assert isinstance(reply, Response)
    assert (reply.status, reply.reason) == (503, "INVITE Rate Exceeded")
    assert reply.headers.get("Retry-After") == "4"
    assert reply.headers.get("Server") == "sipline-test"
    assert reply.to.tag == stateless_tag(parse_invite())
    assert reply.top_via.param("received") == VICTIM.host


def parse_invite() -> Request:
    message = parse_message(invite())
    assert isinstance(message, Request)
    return message


def test_the_ack_of_a_stateless_refusal_is_ignored_and_nothing_follows() -> None:
    pair = UacUasPair(admission=admission_refusing("192.0.2.10"))

    pair.uac.invite(pair.now)
    pair.run(until=HORIZON_S)

    assert pair.labels() == ["INVITE", "403 INVITE", "ACK"]  # §17.1.1.3's ACK, then silence
    assert pair.events_of(IncomingCallReceived) == []
    assert pair.uas.get_timer() is None


def test_an_admitted_invite_is_asked_about_once_and_its_retransmissions_are_absorbed() -> None:
    admission = admission_refusing()
    pair = UacUasPair(admission=admission)

    pair.duplicate(is_("INVITE", to_uas=True))
    pair.uac.invite(pair.now)
    pair.pump()

    assert len(admission.asked) == 1
    assert len(pair.events_of(IncomingCallReceived)) == 1


def test_a_reinvite_within_a_call_is_not_put_to_the_admission() -> None:
    admission = admission_refusing()
    pair = UacUasPair(admission=admission)
    pair.establish()
    admission.hosts.add("192.0.2.10")  # from now on this source could not start a call

    pair.uac.send("INVITE", pair.now)
    pair.pump()

    assert pair.labels(to_uas=False)[-1] == "200 INVITE"
    assert len(admission.asked) == 1


def test_an_invite_naming_a_dialog_that_does_not_exist_gets_one_stateless_481() -> None:
    core = endpoint(None)

    core.receive_datagram(invite(to_tag="gone"), VICTIM, now=0.0)
    sent = run_out_the_clock(core)

    assert statuses(sent) == [481]
    assert [type(e) for e in events(core)] == [InviteRefused]


def test_a_refusal_over_tcp_leaves_on_the_connection_it_came_on() -> None:
    core = endpoint(admission_refusing(VICTIM.host))
    source = Address(VICTIM.host, 40000, Transport.TCP, connection_id=9)

    core.receive_message(parse_message(invite(transport="TCP")), source, now=0.0)

    [(_, destination)] = core.datagrams_to_send()
    assert destination == source


def test_other_requests_are_never_put_to_the_admission() -> None:
    admission = admission_refusing(VICTIM.host)
    core = endpoint(admission)
    options = invite().replace(b"INVITE", b"OPTIONS")

    core.receive_datagram(options, VICTIM, now=0.0)

    assert statuses(core.datagrams_to_send()) == [200]
    assert admission.asked == []


@settings(max_examples=300, deadline=None)
@given(st.data(), st.booleans())
def test_a_mutated_invite_is_answered_at_most_once_per_datagram_and_never_raises(
    data: st.DataObject, refused: bool
) -> None:
    wire = bytearray(invite(to_tag=data.draw(st.sampled_from(["", "gone"]))))
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(wire) - 1))
        wire[position] = data.draw(st.sampled_from(b';:,<>"\r\n =@0a\x00\xff'))
    core = endpoint(admission_refusing(VICTIM.host) if refused else admission_refusing())

    core.receive_datagram(bytes(wire), VICTIM, now=0.0)
    answered = core.datagrams_to_send()
    kinds = [type(e) for e in events(core)]

    assert len(answered) <= 1
    if InviteRefused in kinds:  # refused statelessly: nothing armed, nothing more to send
        assert core.get_timer() is None and run_out_the_clock(core) == []
