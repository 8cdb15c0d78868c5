"""The transferor's REFER (RFC 3515 §4.1, RFC 5589 §6.1), on a virtual clock.

The far end's NOTIFYs and responses are literal text (``refer_peer.py``); statuses and bodies
are the RFCs': 202 Accepted to the REFER (RFC 3515 §2.4.2), NOTIFY ``SIP/2.0 100 Trying`` then
``SIP/2.0 200 OK`` with ``Subscription-State: terminated;reason=noresource`` (§4.1 F3, F5),
``SIP/2.0 603 Declined`` for a failure (§2.4.5), 481 for a NOTIFY of no subscription (RFC 6665
§4.1.3).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.sip.digest import Credentials
from relay.sip.errors import LocalProtocolError
from relay.sip.syntax.message import Request
from relay.sip.syntax.refer_to import format_refer_to, replaces_value
from relay.sip.syntax.uri import SipUri
from relay.sip.transaction.timers import Timers
from relay.sip.usage.refer import (
    ReferAccepted,
    ReferFailed,
    ReferProgress,
    ReferState,
    ReferSubscription,
    ReferSucceeded,
    send_refer,
)
from tests.unit.relay.sip.usage.refer_peer import AnsweredCall

CAROL = "<sip:carol@chicago.example.com>"  # RFC 5589 §6.1's transfer target
CHALLENGE = (  # RFC 2617 §3.5's challenge
    'Digest realm="biloxi.com", qop="auth", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
    'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def refer(peer: AnsweredCall, **options: object) -> ReferSubscription:
    timeout = options.pop("notify_timeout_s", 30.0)
    sub = send_refer(peer.core, peer.call, CAROL, now=peer.now,
                     notify_timeout_s=timeout, **options)  # type: ignore[arg-type]  # fmt: skip
    peer.pump()
    return sub


def outcome(peer: AnsweredCall) -> list[tuple[str, int | None]]:
    kinds = (ReferAccepted, ReferProgress, ReferSucceeded, ReferFailed)
    return [(type(e).__name__, e.status) for e in peer.events if isinstance(e, kinds)]


def test_the_refer_goes_in_the_calls_dialog_with_one_refer_to_and_the_next_cseq() -> None:
    peer = AnsweredCall()
    invite = peer.requests("INVITE")[-1]

    sub = refer(peer, headers=[("X-Case", "42")])

    (sent,) = peer.requests("REFER")
    assert sent.headers.get_all("Refer-To") == [CAROL]
    assert sent.call_id == invite.call_id and sent.from_.tag == invite.from_.tag
    assert sent.to.tag == "a6c85cf" and str(sent.uri) == "sip:bob@192.0.2.4"
    assert sent.cseq.number == invite.cseq.number + 1
    assert sent.headers.get("X-Case") == "42" and sent.headers.get("Contact")
    assert sub.id == str(sent.cseq.number) and sub.session is peer.call


def test_rfc_3515_flow_202_then_100_trying_then_200_ok_succeeds() -> None:
    peer = AnsweredCall()
    sub = refer(peer)

    peer.respond(peer.requests("REFER")[0], "202 Accepted")
    trying = peer.notify("SIP/2.0 100 Trying\r\n")
    done = peer.notify("SIP/2.0 200 OK\r\n", "terminated;reason=noresource")

    assert (trying.status, done.status) == (200, 200)
    assert outcome(peer) == [
        ("ReferAccepted", 202),
        ("ReferProgress", 100),
        ("ReferSucceeded", 200),
    ]
    assert peer.events_of(ReferSucceeded)[0].session is peer.call  # type: ignore[union-attr]
    assert sub.state is ReferState.TERMINATED and sub not in peer.core.usages
    late = peer.notify("SIP/2.0 200 OK\r\n", "terminated;reason=noresource")
    assert late.status == 481  # the subscription is gone (RFC 6665 §4.1.3)


def test_a_603_sipfrag_fails_the_transfer_with_that_status() -> None:
    peer = AnsweredCall()
    refer(peer)
    peer.respond(peer.requests("REFER")[0], "202 Accepted")

    peer.notify("SIP/2.0 603 Declined\r\n", "terminated;reason=noresource")

    (failed,) = peer.events_of(ReferFailed)
    assert (failed.status, failed.reason) == (603, "Declined")  # type: ignore[union-attr]


@pytest.mark.parametrize(("status", "reason"), [(405, "Method Not Allowed"), (501, "Not Implemented"), (603, "Decline")])  # fmt: skip
def test_a_refused_refer_fails_the_transfer_with_the_response(status: int, reason: str) -> None:
    peer = AnsweredCall()
    sub = refer(peer)

    peer.respond(peer.requests("REFER")[0], f"{status} {reason}")

    assert outcome(peer) == [("ReferFailed", status)]
    assert peer.events_of(ReferFailed)[0].reason == reason  # type: ignore[union-attr]
    assert sub.finished and sub.state is ReferState.TERMINATED
    assert peer.call.state.value == "Confirmed"  # the call goes on with the agent


def test_202_and_no_notify_fails_at_the_notify_timeout_with_408() -> None:
    peer = AnsweredCall()
    refer(peer, notify_timeout_s=20.0)
    peer.respond(peer.requests("REFER")[0], "202 Accepted")

    peer.run(until=19.9)
    assert outcome(peer) == [("ReferAccepted", 202)]
    peer.run(until=20.0)

    assert outcome(peer) == [("ReferAccepted", 202), ("ReferFailed", 408)]
    assert peer.events_of(ReferFailed)[0].reason == "no final NOTIFY within 20 s"  # type: ignore[union-attr]


def test_an_unanswered_refer_fails_with_408_at_timer_f() -> None:
    peer = AnsweredCall()
    refer(peer, notify_timeout_s=3600.0)

    peer.run(until=64 * Timers().T1)

    assert outcome(peer) == [("ReferFailed", 408)]
    assert peer.events_of(ReferFailed)[0].reason == "REFER timed out"  # type: ignore[union-attr]


def test_a_notify_before_the_202_means_accepted_and_the_late_202_changes_nothing() -> None:
    peer = AnsweredCall()
    refer(peer)

    peer.notify("SIP/2.0 100 Trying\r\n")
    peer.respond(peer.requests("REFER")[0], "202 Accepted")
    peer.notify("SIP/2.0 200 OK\r\n", "terminated;reason=noresource")

    assert outcome(peer) == [
        ("ReferAccepted", None),
        ("ReferProgress", 100),
        ("ReferSucceeded", 200),
    ]


def test_a_notify_is_matched_by_event_refer_and_the_refer_cseq_as_id() -> None:
    peer = AnsweredCall()
    sub = refer(peer)
    peer.respond(peer.requests("REFER")[0], "202 Accepted")

    other = peer.notify("SIP/2.0 100 Trying\r\n", event=f"refer;id={int(sub.id) + 7}")
    dialog = peer.notify("SIP/2.0 100 Trying\r\n", event="dialog")
    ours = peer.notify("SIP/2.0 100 Trying\r\n", event=f"refer;id={sub.id}")  # RFC 3515 §4.2

    assert (other.status, dialog.status, ours.status) == (481, 481, 200)
    assert outcome(peer) == [("ReferAccepted", 202), ("ReferProgress", 100)]


@pytest.mark.parametrize(
    ("body", "state", "content_type", "status", "reason"),
    [
        ("trying", "active", "message/sipfrag", 400,
         "sipfrag body does not start with a SIP/2.0 Status-Line"),
        ("SIP/2.0 100 Trying\r\n", "active", "text/plain", 415, "Unsupported Media Type"),
        ("SIP/2.0 100 Trying\r\n", "", "message/sipfrag", 400,
         "Missing Subscription-State header field"),
    ],
)  # fmt: skip
def test_a_malformed_notify_of_ours_is_refused_with_the_reason(
    body: str, state: str, content_type: str, status: int, reason: str
) -> None:
    peer = AnsweredCall()
    refer(peer)
    peer.respond(peer.requests("REFER")[0], "202 Accepted")
    headers = ["Event: refer", f"Content-Type: {content_type}"]
    if state:
        headers.append(f"Subscription-State: {state}")

    new = peer.bob_request("NOTIFY", headers, body)

    (answer,) = [m for m, _ in new if not isinstance(m, Request)]
    assert (answer.status, answer.reason) == (status, reason)
    if status == 415:
        assert answer.headers.get("Accept") == "message/sipfrag"
    assert outcome(peer) == [("ReferAccepted", 202)]


def test_a_subscription_terminated_without_a_final_status_fails_with_408() -> None:
    peer = AnsweredCall()
    refer(peer)

    peer.notify("SIP/2.0 100 Trying\r\n", "terminated;reason=timeout")

    assert outcome(peer) == [("ReferAccepted", None), ("ReferFailed", 408)]


def test_a_challenged_refer_is_resent_with_the_calls_credentials_and_the_next_cseq() -> None:
    peer = AnsweredCall(credentials=Credentials("alice", "s3cret"))
    sub = refer(peer)
    first = peer.requests("REFER")[0]

    peer.respond(first, "407 Proxy Authentication Required",
                 extra=f"Proxy-Authenticate: {CHALLENGE}")  # fmt: skip
    second = peer.requests("REFER")[-1]
    peer.respond(second, "202 Accepted")
    done = peer.notify("SIP/2.0 200 OK\r\n", "terminated;reason=noresource")

    assert second.cseq.number == first.cseq.number + 1
    assert (second.headers.get("Proxy-Authorization") or "").startswith('Digest username="alice"')
    assert sub.id == str(second.cseq.number) and done.status == 200
    assert outcome(peer) == [("ReferAccepted", 202), ("ReferSucceeded", 200)]


def test_a_challenge_without_credentials_fails_the_transfer() -> None:
    peer = AnsweredCall()
    refer(peer)

    peer.respond(peer.requests("REFER")[0], "407 Proxy Authentication Required",
                 extra=f"Proxy-Authenticate: {CHALLENGE}")  # fmt: skip

    assert outcome(peer) == [("ReferFailed", 407)]


def test_a_warm_transfer_refer_to_carries_replaces_escaped_as_rfc_3891_says() -> None:
    peer = AnsweredCall()
    target = format_refer_to(
        SipUri.parse("sip:dave@denver.example.org"),
        [("Replaces", replaces_value("12345@192.168.118.3", to_tag="12345", from_tag="5FFE-3994"))],
    )

    send_refer(peer.core, peer.call, target, now=0.0, notify_timeout_s=30.0)
    peer.pump()

    assert peer.requests("REFER")[0].headers.get("Refer-To") == (  # RFC 3515 §2.1
        "<sip:dave@denver.example.org?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345"
        "%3Bfrom-tag%3D5FFE-3994>"
    )


def test_a_refer_needs_a_confirmed_call_and_values_the_wire_can_carry() -> None:
    peer = AnsweredCall()
    with pytest.raises(LocalProtocolError):
        send_refer(peer.core, peer.call, CAROL, headers=[("Subject", "x")], now=0.0,
                   notify_timeout_s=1.0)  # fmt: skip
    with pytest.raises(LocalProtocolError):
        send_refer(peer.core, peer.call, "<sip:a@b>\r\nX: y", now=0.0, notify_timeout_s=1.0)
    peer.call.hang_up(now=0.0)
    with pytest.raises(LocalProtocolError):
        send_refer(peer.core, peer.call, CAROL, now=0.0, notify_timeout_s=1.0)


PEER_MOVES = st.sampled_from(
    [
        ("respond", "202 Accepted"),
        ("respond", "603 Decline"),
        ("respond", "407 Proxy Authentication Required"),
        ("notify", "SIP/2.0 100 Trying\r\n", "active;expires=60"),
        ("notify", "SIP/2.0 200 OK\r\n", "terminated;reason=noresource"),
        ("notify", "SIP/2.0 603 Declined\r\n", "terminated;reason=noresource"),
        ("notify", "SIP/2.0 180 Ringing\r\n", "terminated;reason=timeout"),
        ("notify", "garbage", "active"),
        ("wait", 7.0),
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PEER_MOVES, max_size=8))
def test_whatever_the_peer_does_a_transfer_ends_with_exactly_one_outcome(
    moves: list[tuple[object, ...]],
) -> None:
    peer = AnsweredCall()
    sub = refer(peer, notify_timeout_s=30.0)
    for move in moves:
        if move[0] == "respond":
            peer.respond(peer.requests("REFER")[-1], str(move[1]),
                         extra=f"Proxy-Authenticate: {CHALLENGE}")  # fmt: skip
        elif move[0] == "notify":
            peer.notify(str(move[1]), str(move[2]))
        else:
            peer.run(until=peer.now + float(move[1]))  # type: ignore[arg-type]
        ends = [e for e in peer.events if isinstance(e, (ReferSucceeded, ReferFailed))]
        assert len(ends) <= 1
        assert sub.finished == bool(ends)
    peer.run(until=peer.now + 64 * Timers().T1)

    names = [name for name, _ in outcome(peer)]
    assert names[-1] in ("ReferSucceeded", "ReferFailed")
    assert sum(name in ("ReferSucceeded", "ReferFailed") for name in names) == 1
    assert names.count("ReferAccepted") <= 1 and sub.finished
