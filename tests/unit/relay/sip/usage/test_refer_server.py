"""The transferee's side: a REFER received in a call's dialog (RFC 3515 §2.4, RFC 5589 §6.1).

The far end (Bob, the PBX) sends REFER as RFC 3515 §4.1 F1 does, in the dialog of a call we
placed (``refer_peer.py``). What we must answer comes from the RFCs: 202 Accepted (§2.4.2),
a NOTIFY with ``Event: refer``, ``message/sipfrag`` ``SIP/2.0 100 Trying`` and
``Subscription-State: active`` at once (§2.4.4), the final sipfrag with ``terminated;
reason=noresource`` (§4.1 F5), 603 Decline for a refusal, 400 for a REFER without exactly one
Refer-To (§2.4.1); and never 405, which is what the relay answered before (issue 11).
"""

from __future__ import annotations

from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.refer_to import MAX_REFER_TO_CHARS
from relay.sip.syntax.uri import AbsoluteUri, SipUri
from relay.sip.usage.refer_server import DEFAULT_EXPIRES_S, ReferReceived, ReferServers
from tests.unit.relay.sip.usage.refer_peer import AnsweredCall

CAROL = "<sip:carol@chicago.example.com>"
REPLACES = (  # RFC 3515 §2.1
    "<sip:dave@denver.example.org?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345"
    "%3Bfrom-tag%3D5FFE-3994>"
)


class Policy:
    """Records what it was asked and answers ``verdict``."""

    def __init__(self, verdict: bool) -> None:
        self.verdict = verdict
        self.asked: list[tuple[str, str | None, tuple[tuple[str, str], ...]]] = []

    def __call__(
        self,
        refer_to: SipUri | AbsoluteUri,
        referred_by: str | None,
        headers: tuple[tuple[str, str], ...],
    ) -> bool:
        self.asked.append((str(refer_to), referred_by, headers))
        return self.verdict


def bob_refers(peer: AnsweredCall, *headers: str) -> tuple[list[Response], list[Request]]:
    """Send Bob's REFER; return Alice's responses to it and the requests she sent."""
    new = peer.bob_request("REFER", list(headers) or [f"Refer-To: {CAROL}"])
    responses = [m for m, _ in new if isinstance(m, Response)]
    return responses, [m for m, _ in new if isinstance(m, Request)]


def answer(peer: AnsweredCall, notify: Request, status: str = "200 OK") -> None:
    peer.respond(notify, status)


def test_by_default_a_refer_is_declined_with_603_never_405_and_the_application_hears_of_it() -> (
    None
):
    peer = AnsweredCall()

    (response,), sent = bob_refers(peer, f"Refer-To: {CAROL}")

    assert (response.status, response.reason) == (603, "Decline")
    assert sent == []  # no NOTIFY for a refused REFER
    (received,) = peer.events_of(ReferReceived)
    assert received.session is peer.call and not received.server.accepted  # type: ignore[union-attr]
    assert str(received.refer_to.uri) == "sip:carol@chicago.example.com"  # type: ignore[union-attr]


def test_an_accepted_refer_gets_202_and_a_100_trying_notify_at_once() -> None:
    policy = Policy(True)
    peer = AnsweredCall(usage_starters=(ReferServers(policy),))

    (response,), (notify,) = bob_refers(
        peer, f"Refer-To: {CAROL}", "Referred-By: <sip:bob@biloxi.com>"
    )

    assert (response.status, response.reason) == (202, "Accepted")
    assert policy.asked == [("sip:carol@chicago.example.com", "<sip:bob@biloxi.com>", ())]
    refer_cseq = peer.notify_cseq
    assert notify.method == "NOTIFY" and notify.to.tag == "a6c85cf"
    assert notify.headers.get("Event") == f"refer;id={refer_cseq}"
    assert notify.headers.get("Subscription-State") == f"active;expires={DEFAULT_EXPIRES_S}"
    assert notify.headers.get("Content-Type") == "message/sipfrag"
    assert notify.body == b"SIP/2.0 100 Trying\r\n"
    (received,) = peer.events_of(ReferReceived)
    assert received.server.accepted and received.referred_by == "<sip:bob@biloxi.com>"  # type: ignore[union-attr]


def test_the_final_report_is_a_terminating_notify_and_ends_the_subscription() -> None:
    peer = AnsweredCall(usage_starters=(ReferServers(Policy(True)),))
    _, (trying,) = bob_refers(peer)
    answer(peer, trying)
    (received,) = peer.events_of(ReferReceived)
    server = received.server  # type: ignore[union-attr]

    assert server.report(180, now=1.0)
    ringing = peer.pump()[0][0]
    answer(peer, ringing)  # type: ignore[arg-type]
    assert server.report(200, now=2.0)
    done = peer.pump()[0][0]

    assert isinstance(ringing, Request) and ringing.body == b"SIP/2.0 180 Ringing\r\n"
    assert isinstance(done, Request) and done.body == b"SIP/2.0 200 OK\r\n"
    assert done.headers.get("Subscription-State") == "terminated;reason=noresource"
    assert ringing.cseq.number < done.cseq.number
    assert server.terminated and server not in peer.core.usages
    assert not server.report(603, now=3.0)  # over: nothing more is sent


def test_a_report_while_a_notify_is_unanswered_waits_for_its_response() -> None:
    peer = AnsweredCall(usage_starters=(ReferServers(Policy(True)),))
    _, (trying,) = bob_refers(peer)
    server = peer.events_of(ReferReceived)[0].server  # type: ignore[union-attr]

    server.report(503, now=0.5)
    assert peer.pump() == []  # the 100 Trying is not answered yet
    answer(peer, trying)

    (final,) = peer.requests("NOTIFY")[1:]
    assert final.body == b"SIP/2.0 503 Service Unavailable\r\n"
    assert final.headers.get("Subscription-State") == "terminated;reason=noresource"


def test_a_notify_answered_481_ends_the_subscription() -> None:
    peer = AnsweredCall(usage_starters=(ReferServers(Policy(True)),))
    _, (trying,) = bob_refers(peer)
    server = peer.events_of(ReferReceived)[0].server  # type: ignore[union-attr]

    answer(peer, trying, "481 Subscription Does Not Exist")

    assert server.terminated and not server.report(200, now=1.0)


def test_without_a_final_report_the_subscription_expires_with_a_timeout_notify() -> None:
    peer = AnsweredCall(usage_starters=(ReferServers(Policy(True), expires_s=60.0),))
    _, (trying,) = bob_refers(peer)
    answer(peer, trying)

    peer.run(until=60.0)

    last = peer.requests("NOTIFY")[-1]
    assert last.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert last.body == b"SIP/2.0 100 Trying\r\n"


def test_the_policy_sees_the_embedded_replaces_decoded() -> None:
    policy = Policy(False)
    peer = AnsweredCall(usage_starters=(ReferServers(policy),))

    bob_refers(peer, f"Refer-To: {REPLACES}")

    ((target, _, headers),) = policy.asked
    assert target == "sip:dave@denver.example.org"
    assert headers == (("Replaces", "12345@192.168.118.3;to-tag=12345;from-tag=5FFE-3994"),)


def test_a_refer_without_exactly_one_bounded_refer_to_gets_400_naming_it() -> None:
    policy = Policy(True)
    peer = AnsweredCall(usage_starters=(ReferServers(policy),))
    long = "<sip:" + "a" * MAX_REFER_TO_CHARS + "@example.com>"

    (missing,), _ = bob_refers(peer, "Subject: none")
    (two,), _ = bob_refers(peer, f"Refer-To: {CAROL}", f"Refer-To: {CAROL}")
    (too_long,), _ = bob_refers(peer, f"Refer-To: {long}")

    assert (missing.status, missing.reason) == (400, "Missing Refer-To header field")
    assert (two.status, two.reason) == (400, "More than one Refer-To header field")
    assert (too_long.status, too_long.reason) == (
        400, f"Refer-To longer than {MAX_REFER_TO_CHARS} characters"
    )  # fmt: skip
    assert policy.asked == [] and peer.events_of(ReferReceived) == []


def test_transfers_under_way_in_a_dialog_are_bounded() -> None:
    peer = AnsweredCall(usage_starters=(ReferServers(Policy(True)),))

    statuses = [bob_refers(peer)[0][0].status for _ in range(5)]

    assert statuses == [202, 202, 202, 202, 603]


def test_a_refer_after_the_call_ended_gets_481_and_one_outside_a_dialog_481() -> None:
    peer = AnsweredCall(usage_starters=(ReferServers(Policy(True)),))
    peer.call.hang_up(now=0.0)
    peer.pump()

    (ended,), _ = bob_refers(peer)
    peer.receive(
        "REFER sip:alice@192.0.2.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK-outside\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:bob@biloxi.com>;tag=x1\r\nTo: <sip:alice@192.0.2.1>\r\n"
        "Call-ID: outside@192.0.2.4\r\nCSeq: 1 REFER\r\nContact: <sip:bob@192.0.2.4>\r\n"
        f"Refer-To: {CAROL}\r\nContent-Length: 0\r\n\r\n"
    )

    outside = peer.responses("REFER")[-1]
    assert ended.status == 481 and outside.status == 481
