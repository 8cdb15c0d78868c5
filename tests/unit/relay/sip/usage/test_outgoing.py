"""The outgoing call (RFC 3261 §13.2, §9.1, §12.1.2, §17.1.1; RFC 6026; RFC 3263 §4.3).

The far end is played by the test: every response is literal text in the shape of RFC 3261
§24.2's flow (F8 180 Ringing, F11 200 OK; Bob at 192.0.2.4), filled with the Via, From tag,
Call-ID and CSeq our INVITE carried, never built by the relay's builders. SDP is RFC 3264
§10.1's, reduced to audio. Time is virtual: timers fire by jumping ``now`` to the endpoint's
next deadline.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.ids import SeededIdSource
from relay.sip.address import Address, Transport, TransportFailure
from relay.sip.digest import Credentials
from relay.sip.endpoint import SipEndpoint
from relay.sip.errors import LocalProtocolError
from relay.sip.events import Event
from relay.sip.sdp.description import SessionDescription
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.parser import parse_message
from relay.sip.syntax.uri import SipUri
from relay.sip.transaction.timers import Timers
from relay.sip.usage.call_state import CallEndReason, CallState
from relay.sip.usage.dial import place_call
from relay.sip.usage.forks import MAX_FORKS
from relay.sip.usage.invite_session import CallAnswered, CallEnded, CallProgress
from relay.sip.usage.outgoing import OutgoingCall

T1 = Timers().T1
ALICE = Address("192.0.2.1", 5060)  # RFC 3261 §24.2: pc33.atlanta.com, received=192.0.2.1
ALICE_TLS = Address("192.0.2.1", 5061, Transport.TLS)
PROXY = Address("192.0.2.20", 5060)
BACKUP = Address("192.0.2.21", 5060)
BOB = Address("192.0.2.4", 5060)
# RFC 3264 §10.1, audio only, with numeric addresses.
OFFER = (
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
    "t=0 0\r\nm=audio 49170 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)
ANSWER = (
    "v=0\r\no=bob 2808844564 2808844564 IN IP4 192.0.2.4\r\ns=-\r\nc=IN IP4 192.0.2.4\r\n"
    "t=0 0\r\nm=audio 49174 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
CHALLENGE = (  # RFC 2617 §3.5's challenge, SIP's realm
    'Digest realm="biloxi.com", qop="auth", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
    'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


class Far:
    """The endpoint under test and the far end the test plays."""

    def __init__(
        self,
        *,
        targets: tuple[Address, ...] = (PROXY,),
        credentials: Credentials | None = None,
        ring_timeout_s: float = 120.0,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.core = SipEndpoint({Transport.UDP: ALICE, Transport.TLS: ALICE_TLS},
                                user_agent="sipline-test", timers=Timers(),
                                ids=SeededIdSource(9))  # fmt: skip
        self.now = 0.0
        self.sent: list[tuple[Request | Response, Address]] = []
        self.events: list[Event] = []
        self.call = place_call(
            self.core,
            targets=targets, request_uri=SipUri.parse("sip:bob@biloxi.com"), from_user="alice",
            from_display="Alice", offer=SessionDescription.parse(OFFER.encode()),
            preference=("PCMU", "PCMA"), credentials=credentials, headers=headers,
            ring_timeout_s=ring_timeout_s, now=0.0,
        )  # fmt: skip
        self.pump()

    def pump(self) -> list[tuple[Request | Response, Address]]:
        new = [(parse_message(data), to) for data, to in self.core.datagrams_to_send()]
        self.sent.extend(new)
        while (event := self.core.next_event()) is not None:
            self.events.append(event)
        return new

    def requests(self, method: str) -> list[tuple[Request, Address]]:
        return [(m, to) for m, to in self.sent if isinstance(m, Request) and m.method == method]

    def invites(self) -> list[tuple[Request, Address]]:
        """The INVITEs sent, one per transaction (Timer A retransmissions left out)."""
        found: dict[str | None, tuple[Request, Address]] = {}
        for request, to in self.requests("INVITE"):
            found.setdefault(request.top_via.branch, (request, to))
        return list(found.values())

    @property
    def invite(self) -> Request:
        return self.requests("INVITE")[-1][0]

    def reply(self, text: str, source: Address = PROXY) -> list[tuple[Request | Response, Address]]:
        self.core.receive_datagram(text.encode(), source, self.now)
        return self.pump()

    def respond(
        self,
        status: str,
        *,
        tag: str | None = "a6c85cf",
        contact: str | None = "<sip:bob@192.0.2.4>",
        extra: str = "",
        sdp: str = "",
        cseq: str | None = None,
        request: Request | None = None,
    ) -> list[tuple[Request | Response, Address]]:
        """Answer the last INVITE (or ``request``) in the shape of RFC 3261 §24.2 F8/F11."""
        invite = request or self.invite
        to = f"Bob <sip:bob@biloxi.com>;tag={tag}" if tag else "Bob <sip:bob@biloxi.com>"
        lines = [
            f"SIP/2.0 {status}",
            f"Via: {invite.headers.get('Via')};received=192.0.2.1",
            f"To: {to}",
            f"From: {invite.headers.get('From')}",
            f"Call-ID: {invite.call_id}",
            f"CSeq: {cseq or invite.headers.get('CSeq')}",
        ]
        if contact:
            lines.append(f"Contact: {contact}")
        lines += [line for line in extra.split("\r\n") if line]
        if sdp:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(sdp)}")
        return self.reply("\r\n".join(lines) + "\r\n\r\n" + sdp)

    def run(self, until: float) -> None:
        while (deadline := self.core.get_timer()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            self.core.handle_timer(self.now)
            self.pump()
        self.now = max(self.now, until)

    def ended(self) -> list[CallEnded]:
        return [e for e in self.events if isinstance(e, CallEnded)]


def only(sent: list[tuple[Request | Response, Address]], method: str) -> tuple[Request, Address]:
    [found] = [(m, to) for m, to in sent if isinstance(m, Request) and m.method == method]
    return found


# --- the INVITE ---------------------------------------------------------------------------


def test_the_invite_carries_what_rfc_3261_8_1_1_and_13_2_1_ask() -> None:
    far = Far(headers=(("X-Campaign", "spring"),))
    [(invite, to)] = far.sent
    assert to == PROXY and isinstance(invite, Request)
    assert str(invite.uri) == "sip:bob@biloxi.com"
    assert invite.headers.get("To") == "<sip:bob@biloxi.com>"
    assert re.fullmatch(
        r'"Alice" <sip:alice@192\.0\.2\.1>;tag=\w{8,}', invite.headers.get("From") or ""
    )
    assert invite.headers.get("CSeq") == "1 INVITE"
    assert invite.call_id == far.call.call_id and invite.call_id.endswith("@192.0.2.1")
    assert invite.top_via.branch.startswith("z9hG4bK")
    assert invite.headers.get("Contact") == "<sip:192.0.2.1:5060>"
    assert (
        invite.headers.get("Allow")
        == "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY"
    )
    assert invite.headers.get("Supported") == "timer"
    assert invite.headers.get("User-Agent") == "sipline-test"
    assert invite.headers.get("X-Campaign") == "spring"
    assert invite.headers.get("Content-Type") == "application/sdp"
    assert invite.body == OFFER.encode()
    assert isinstance(far.call, OutgoingCall)
    assert far.call.request == invite and far.call.target == PROXY


@pytest.mark.parametrize(
    "headers",
    [(("Route", "<sip:evil>"),), (("X-Note", "a\r\nBYE: x"),), (("X-Bad Name", "1"),)],
)
def test_extra_header_fields_other_than_clean_x_headers_are_refused(
    headers: tuple[tuple[str, str], ...],
) -> None:
    with pytest.raises(LocalProtocolError):
        Far(headers=headers)


def test_a_call_needs_a_target() -> None:
    with pytest.raises(LocalProtocolError, match="at least one target"):
        Far(targets=())


# --- RFC 3261 §24.2: INVITE, 100, 180, 200, ACK -------------------------------------------


def test_the_session_setup_of_rfc_3261_24_2_ends_with_our_ack_to_bob() -> None:
    far = Far()
    assert far.respond("100 Trying", tag=None, contact=None) == []
    assert far.respond("180 Ringing") == []
    sent = far.respond("200 OK", sdp=ANSWER)

    ack, to = only(sent, "ACK")  # F12: straight to Bob's Contact, no proxy recorded the route
    assert to == BOB
    assert str(ack.uri) == "sip:bob@192.0.2.4"
    assert (ack.to.display, str(ack.to.uri), ack.to.tag) == ("Bob", "sip:bob@biloxi.com", "a6c85cf")
    assert ack.headers.get("From") == far.invite.headers.get("From")
    assert ack.call_id == far.invite.call_id
    assert ack.headers.get("CSeq") == "1 ACK"
    assert (
        ack.top_via.branch != far.invite.top_via.branch
    )  # the ACK of a 2xx is its own (§13.2.2.4)
    assert far.call.state is CallState.CONFIRMED
    progress, answered = far.events
    assert progress == CallProgress(far.call, 180, "Ringing", None)
    assert isinstance(answered, CallAnswered) and answered.ack == ack
    media = answered.media
    assert media is not None and (media.codec, media.remote_address, media.remote_port) == (
        "PCMU", "192.0.2.4", 49174,
    )  # fmt: skip
    assert far.call.dialog.id.remote_tag == "a6c85cf"


def test_a_retransmitted_2xx_gets_the_same_ack_again() -> None:
    far = Far()
    first = only(far.respond("200 OK", sdp=ANSWER), "ACK")
    again = only(far.respond("200 OK", sdp=ANSWER), "ACK")
    assert bytes(again[0]) == bytes(first[0]) and again[1] == first[1]
    assert len([e for e in far.events if isinstance(e, CallAnswered)]) == 1


def test_a_2xx_retransmitted_after_timer_m_is_still_acked_by_the_lingering_call() -> None:
    far = Far()
    far.respond("200 OK", sdp=ANSWER)
    far.run(until=64 * T1 + 1)  # Timer M: the INVITE transaction is gone (RFC 6026 §7.2)
    assert len(only(far.respond("200 OK", sdp=ANSWER), "ACK")) == 2


def test_a_1xx_with_a_malformed_contact_is_reported_but_makes_no_early_dialog() -> None:
    far = Far()
    far.respond("180 Ringing", tag="broken", contact="<sip:bob@192.0.2.4")
    assert far.events == [CallProgress(far.call, 180, "Ringing", None)]
    assert statuses(far.reply(bye_from_bob(far, 5, tag="broken"), BOB)) == [481]
    assert only(far.respond("200 OK", sdp=ANSWER), "ACK")[1] == BOB


def test_a_183_with_sdp_carries_the_early_media_to_the_application_only() -> None:
    far = Far()
    assert far.respond("183 Session Progress", sdp=ANSWER) == []
    [progress] = far.events
    assert isinstance(progress, CallProgress) and progress.status == 183
    assert progress.early_media is not None and progress.early_media.remote_port == 49174


def test_a_2xx_from_another_fork_is_acked_and_byed_and_makes_no_second_call() -> None:
    far = Far()
    far.respond("180 Ringing", tag="fork1", contact="<sip:bob@192.0.2.4>")
    far.respond("180 Ringing", tag="fork2", contact="<sip:bob@192.0.2.5>")
    far.respond("200 OK", tag="fork1", sdp=ANSWER)
    sent = far.respond("200 OK", tag="fork2", contact="<sip:bob@192.0.2.5>", sdp=ANSWER)

    ack, ack_to = only(sent, "ACK")
    bye, bye_to = only(sent, "BYE")
    assert ack_to == bye_to == Address("192.0.2.5", 5060)
    assert ack.to.tag == bye.to.tag == "fork2"
    assert bye.headers.get("CSeq") == "2 BYE"
    assert [type(e) for e in far.events].count(CallAnswered) == 1
    assert far.call.dialog.id.remote_tag == "fork1" and far.call.state is CallState.CONFIRMED


def test_forks_are_bounded_per_call() -> None:
    far = Far()
    for n in range(3 * MAX_FORKS):
        far.respond("180 Ringing", tag=f"early{n}", contact=f"<sip:bob@192.0.2.{n + 1}>")
    far.respond("200 OK", tag="answer", sdp=ANSWER)
    byes = 0
    for n in range(3 * MAX_FORKS):
        sent = far.respond("200 OK", tag=f"late{n}", sdp=ANSWER)
        assert len([m for m, _ in sent if isinstance(m, Request) and m.method == "ACK"]) == 1
        byes += len([m for m, _ in sent if isinstance(m, Request) and m.method == "BYE"])
    assert len(list(far.core._usages.dialogs())) == MAX_FORKS + 1  # the answer is always kept
    assert byes == 0  # every early dialog slot was taken: the late forks are only ACKed


# --- failures and hostile answers ---------------------------------------------------------


def test_a_486_is_acked_by_the_transaction_and_ends_the_call_rejected() -> None:
    far = Far()
    sent = far.respond("486 Busy Here")
    ack, to = only(sent, "ACK")
    assert to == PROXY and ack.top_via.branch == far.invite.top_via.branch  # §17.1.1.3
    assert far.ended() == [CallEnded(far.call, CallEndReason.REJECTED, True, 486)]
    assert far.call.state is CallState.TERMINATED and far.core.usages == []


def test_a_redirect_is_not_followed() -> None:
    far = Far()
    far.respond("302 Moved Temporarily", contact="<sip:bob@192.0.2.99>")
    assert len(far.invites()) == 1
    assert far.ended() == [CallEnded(far.call, CallEndReason.REJECTED, True, 302)]


def test_a_2xx_without_an_answer_to_our_offer_is_acked_then_byed() -> None:
    far = Far()
    sent = far.respond("200 OK")
    assert only(sent, "ACK")[1] == only(sent, "BYE")[1] == BOB
    assert far.ended() == [CallEnded(far.call, CallEndReason.MEDIA_FAILED, False, None)]
    assert not [e for e in far.events if isinstance(e, CallAnswered)]


@pytest.mark.parametrize("contact", [None, "<tel:+15551234>"])
def test_a_2xx_without_a_usable_contact_is_acked_and_byed_where_the_invite_went(
    contact: str | None,
) -> None:
    far = Far()
    sent = far.respond("200 OK", contact=contact, sdp=ANSWER)
    assert only(sent, "ACK")[1] == only(sent, "BYE")[1] == PROXY
    assert far.ended() == [CallEnded(far.call, CallEndReason.TRANSACTION_FAILED, False, None)]


def test_responses_to_a_cseq_or_call_id_we_did_not_send_are_dropped() -> None:
    far = Far()
    assert far.respond("200 OK", cseq="99 INVITE", sdp=ANSWER) == []
    text = far.invite.headers.get("Call-ID") or ""
    forged = far.invite.headers.with_replaced("Call-ID", "other@" + text)
    assert far.respond("200 OK", request=Request("INVITE", far.invite.uri, headers=forged)) == []
    assert far.events == [] and far.call.state is CallState.PROCEEDING
    assert only(far.respond("200 OK", sdp=ANSWER), "ACK")


# --- authentication (RFC 3261 §22.2) ------------------------------------------------------


def test_a_challenge_is_answered_with_a_new_branch_and_cseq_on_the_same_call_id() -> None:
    far = Far(credentials=Credentials("alice", "secret"))
    first = far.invite
    far.respond("401 Unauthorized", extra=f"WWW-Authenticate: {CHALLENGE}")
    second, to = far.invites()[-1]

    assert to == PROXY
    assert second.headers.get("CSeq") == "2 INVITE"
    assert second.top_via.branch != first.top_via.branch
    assert (second.call_id, second.from_.tag, str(second.uri)) == (
        first.call_id, first.from_.tag, str(first.uri),
    )  # fmt: skip
    authorization = second.headers.get("Authorization") or ""
    assert 'username="alice"' in authorization and 'realm="biloxi.com"' in authorization
    assert 'uri="sip:bob@biloxi.com"' in authorization and "secret" not in authorization
    assert second.body == first.body
    assert far.call.request == second

    far.respond("200 OK", sdp=ANSWER)
    assert far.call.state is CallState.CONFIRMED


def test_a_second_challenge_after_our_credentials_ends_the_call_rejected() -> None:
    far = Far(credentials=Credentials("alice", "secret"))
    far.respond("401 Unauthorized", extra=f"WWW-Authenticate: {CHALLENGE}")
    far.respond("401 Unauthorized", extra=f"WWW-Authenticate: {CHALLENGE}")
    assert len(far.invites()) == 2
    assert far.ended() == [CallEnded(far.call, CallEndReason.REJECTED, True, 401)]


def test_a_stale_nonce_is_retried_once() -> None:
    far = Far(credentials=Credentials("alice", "secret"))
    stale = CHALLENGE.replace("dcd98b", "0a4f11") + ", stale=true"
    far.respond("407 Proxy Authentication Required", extra=f"Proxy-Authenticate: {CHALLENGE}")
    far.respond("407 Proxy Authentication Required", extra=f"Proxy-Authenticate: {stale}")
    third = far.invite
    assert third.headers.get("CSeq") == "3 INVITE"
    assert 'nonce="0a4f11' in (third.headers.get("Proxy-Authorization") or "")
    far.respond("407 Proxy Authentication Required", extra=f"Proxy-Authenticate: {stale}")
    assert len(far.invites()) == 3
    assert far.ended() == [CallEnded(far.call, CallEndReason.REJECTED, True, 407)]


def test_a_challenge_without_credentials_ends_the_call_rejected() -> None:
    far = Far()
    far.respond("407 Proxy Authentication Required", extra=f"Proxy-Authenticate: {CHALLENGE}")
    assert far.ended() == [CallEnded(far.call, CallEndReason.REJECTED, True, 407)]


# --- failover (RFC 3263 §4.3) -------------------------------------------------------------


def test_a_503_moves_on_to_the_next_target_then_fails_the_transaction() -> None:
    far = Far(targets=(PROXY, BACKUP))
    first = far.invite
    far.respond("503 Service Unavailable")
    second, to = far.invites()[-1]
    assert to == BACKUP and far.call.target == BACKUP
    assert second.headers.get("CSeq") == "2 INVITE"
    assert second.top_via.branch != first.top_via.branch
    assert (second.call_id, second.from_.tag) == (first.call_id, first.from_.tag)

    far.respond("503 Service Unavailable")
    assert len(far.invites()) == 2
    assert far.ended() == [CallEnded(far.call, CallEndReason.TRANSACTION_FAILED, False, 503)]


def test_timer_b_moves_on_to_the_next_target_then_fails_with_408() -> None:
    far = Far(targets=(PROXY, BACKUP))
    far.run(until=64 * T1)
    invites = far.invites()
    assert invites[-1][1] == BACKUP
    assert invites[-1][0].headers.get("CSeq") == "2 INVITE"
    far.run(until=2 * 64 * T1)
    assert far.ended() == [CallEnded(far.call, CallEndReason.TRANSACTION_FAILED, False, 408)]
    assert far.core.get_timer() is None


@pytest.mark.parametrize(
    ("last", "kept"),
    [(TransportFailure.TLS_UNVERIFIED, TransportFailure.TLS_UNVERIFIED),
     (TransportFailure.UNREACHABLE, TransportFailure.UNREACHABLE)],
)  # fmt: skip
def test_a_transport_failure_moves_on_and_the_last_targets_kind_is_kept(
    last: TransportFailure, kept: TransportFailure
) -> None:
    # Two addresses of trunk.test; each must prove trunk.test (Located.addresses).
    first = Address("192.0.2.50", 5061, Transport.TLS, server_name="trunk.test")
    second = Address("192.0.2.51", 5061, Transport.TLS, server_name="trunk.test")
    far = Far(targets=(first, second))
    assert far.invites()[0][1] == first  # the name travels with the destination

    far.core.transport_error(first, far.now, TransportFailure.TLS_UNVERIFIED)
    far.pump()
    assert far.invites()[-1][1] == second and far.call.transport_failure is None
    far.core.transport_error(second, far.now, last)
    far.pump()

    assert far.ended() == [CallEnded(far.call, CallEndReason.TRANSACTION_FAILED, False, 503)]
    assert far.call.transport_failure is kept


# --- hang-up and ring timeout (RFC 3261 §9.1) ---------------------------------------------


def test_hang_up_after_a_1xx_sends_a_cancel_as_rfc_3261_9_1_says_and_ends_on_the_487() -> None:
    far = Far()
    far.respond("180 Ringing")
    far.call.hang_up(now=1.0)
    cancel, to = only(far.pump(), "CANCEL")
    invite = far.invite
    assert to == PROXY
    assert str(cancel.uri) == str(invite.uri)
    assert cancel.top_via == invite.top_via
    for name in ("Call-ID", "From", "To"):
        assert cancel.headers.get(name) == invite.headers.get(name)
    assert cancel.headers.get("CSeq") == "1 CANCEL"

    far.respond("487 Request Terminated")
    assert far.ended() == [CallEnded(far.call, CallEndReason.CANCELLED, False, 487)]


def test_hang_up_before_any_1xx_waits_for_one_to_send_the_cancel() -> None:
    far = Far()
    far.call.hang_up(now=0.1)
    assert far.pump() == []
    sent = far.respond("100 Trying", tag=None, contact=None)
    assert only(sent, "CANCEL")[0].headers.get("CSeq") == "1 CANCEL"


def test_a_2xx_crossing_our_cancel_is_acked_and_byed() -> None:
    far = Far()
    far.respond("180 Ringing")
    far.call.hang_up(now=1.0)
    sent = far.respond("200 OK", sdp=ANSWER)
    assert only(sent, "ACK")[1] == only(sent, "BYE")[1] == BOB
    assert far.ended() == [CallEnded(far.call, CallEndReason.BYE, False, None)]
    assert not [e for e in far.events if isinstance(e, CallAnswered)]


@pytest.mark.parametrize("final", ["401 Unauthorized", "503 Service Unavailable", "486 Busy Here"])
def test_no_invite_is_sent_after_our_cancel(final: str) -> None:
    far = Far(targets=(PROXY, BACKUP), credentials=Credentials("alice", "secret"))
    far.respond("180 Ringing")
    far.call.hang_up(now=1.0)
    far.respond(final, extra=f"WWW-Authenticate: {CHALLENGE}")
    assert len(far.invites()) == 1
    status = int(final[:3])
    assert far.ended() == [CallEnded(far.call, CallEndReason.CANCELLED, False, status)]


def test_without_a_final_response_64_t1_after_the_cancel_the_call_ends_with_408() -> None:
    far = Far()
    far.respond("180 Ringing")
    far.call.hang_up(now=1.0)
    far.run(until=1.0 + 64 * T1)
    assert far.ended() == [CallEnded(far.call, CallEndReason.CANCELLED, False, 408)]


def test_the_ring_timeout_cancels_and_ends_the_call_ring_timeout() -> None:
    far = Far(ring_timeout_s=30.0)
    far.respond("180 Ringing")
    far.run(until=30.0)
    only(far.sent, "CANCEL")
    far.respond("487 Request Terminated")
    assert far.ended() == [CallEnded(far.call, CallEndReason.RING_TIMEOUT, False, 487)]


def test_hang_up_after_the_answer_sends_bye() -> None:
    far = Far()
    far.respond("200 OK", sdp=ANSWER)
    far.call.hang_up(now=2.0)
    bye, to = only(far.pump(), "BYE")
    assert to == BOB and bye.headers.get("CSeq") == "2 BYE"
    assert far.ended() == [CallEnded(far.call, CallEndReason.BYE, False, None)]


def test_after_64_t1_without_a_final_the_abandoned_invite_leaves_no_transaction() -> None:
    far = Far()
    far.respond("180 Ringing")
    far.call.hang_up(now=1.0)
    far.run(until=1.0 + 64 * T1)
    assert far.core.transactions._client == {}  # RFC 3261 §9.1: the INVITE is destroyed
    assert far.core.usages == []


def test_a_ring_timeout_before_any_1xx_ends_at_timer_b_without_failover() -> None:
    far = Far(targets=(PROXY, BACKUP), ring_timeout_s=5.0)
    far.run(until=5.0)
    assert far.requests("CANCEL") == []  # no 1xx: no CANCEL (§9.1)
    far.run(until=64 * T1)
    assert len(far.invites()) == 1
    assert far.ended() == [CallEnded(far.call, CallEndReason.RING_TIMEOUT, False, 408)]


def test_a_2xx_after_a_hang_up_before_any_1xx_is_acked_and_byed() -> None:
    far = Far()
    far.call.hang_up(now=0.1)
    sent = far.respond("200 OK", sdp=ANSWER)
    assert only(sent, "ACK")[1] == only(sent, "BYE")[1] == BOB
    assert far.ended() == [CallEnded(far.call, CallEndReason.BYE, False, None)]


def test_a_transport_error_moves_on_to_the_next_target_then_fails_with_503() -> None:
    far = Far(targets=(PROXY, BACKUP))
    far.core.transport_error(PROXY, 0.0)
    far.pump()
    assert far.invites()[-1][1] == BACKUP
    far.core.transport_error(BACKUP, 0.0)
    far.pump()
    assert far.ended() == [CallEnded(far.call, CallEndReason.TRANSACTION_FAILED, False, 503)]


# --- the established call -----------------------------------------------------------------


def bye_from_bob(far: Far, cseq: int, *, tag: str = "a6c85cf") -> str:
    invite = far.invite
    return (
        "BYE sip:192.0.2.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds10\r\n"
        "Max-Forwards: 70\r\n"
        f"From: Bob <sip:bob@biloxi.com>;tag={tag}\r\n"
        f"To: {invite.headers.get('From')}\r\n"
        f"Call-ID: {invite.call_id}\r\n"
        f"CSeq: {cseq} BYE\r\n"
        "Content-Length: 0\r\n\r\n"
    )


def statuses(sent: list[tuple[Request | Response, Address]]) -> list[int]:
    return [m.status for m, _ in sent if isinstance(m, Response)]


def test_bobs_bye_ends_the_call_and_the_call_is_forgotten_after_lingering() -> None:
    far = Far()
    far.respond("200 OK", sdp=ANSWER)
    assert statuses(far.reply(bye_from_bob(far, 231), BOB)) == [200]
    assert far.ended() == [CallEnded(far.call, CallEndReason.BYE, True, None)]
    far.run(until=far.now + 64 * T1 + 1)
    assert far.core.usages == []


def test_a_request_in_a_fork_we_did_not_answer_gets_481() -> None:
    far = Far()
    far.respond("180 Ringing", tag="fork2", contact="<sip:bob@192.0.2.5>")
    far.respond("200 OK", sdp=ANSWER)
    assert statuses(far.reply(bye_from_bob(far, 5, tag="fork2"), BOB)) == [481]
    assert far.call.state is CallState.CONFIRMED


def test_a_bye_in_an_early_dialog_is_answered_and_the_invite_still_decides() -> None:
    far = Far()
    far.respond("180 Ringing")
    assert statuses(far.reply(bye_from_bob(far, 5), BOB)) == [200]
    assert far.call.state is CallState.EARLY and far.ended() == []


def test_the_2xx_session_expires_makes_us_refresh_at_half_the_interval() -> None:
    far = Far()  # RFC 4028 §7.2: the UAS chose us as refresher
    far.respond("200 OK", sdp=ANSWER, extra="Session-Expires: 120;refresher=uac\r\n"
                "Require: timer\r\nAllow: INVITE, ACK, BYE, CANCEL, UPDATE")  # fmt: skip
    far.run(until=59.9)
    assert far.requests("UPDATE") == []
    far.run(until=60.0)
    update, to = far.requests("UPDATE")[0]
    assert to == BOB and update.headers.get("Session-Expires") == "120;refresher=uac"


def test_a_2xx_naming_the_far_end_refresher_arms_only_the_expiry() -> None:
    far = Far()
    far.respond("200 OK", sdp=ANSWER, extra="Session-Expires: 90;refresher=uas")
    far.run(until=90.0)  # no refresh came: BYE at 90 - min(32, 90/3) = 60 s (RFC 4028 §10)
    assert far.requests("UPDATE") == [] and far.invites()[1:] == []
    assert {to for _, to in far.requests("BYE")} == {BOB}
    assert far.ended() == [CallEnded(far.call, CallEndReason.SESSION_EXPIRED, False, None)]


def test_info_goes_out_once_answered_only() -> None:
    far = Far()
    assert (
        far.call.send_info("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", 0.0) is False
    )
    far.respond("200 OK", sdp=ANSWER)
    assert far.call.send_info("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", 1.0)
    assert only(far.pump(), "INFO")[1] == BOB


# --- whatever the far end sends, the call ends once and is forgotten ------------------------

_STEP = st.one_of(
    st.sampled_from(
        ["100 Trying", "180 Ringing", "183 Session Progress", "200 OK", "401 Unauthorized",
         "486 Busy Here", "487 Request Terminated", "503 Service Unavailable", "hang up",
         "wait", "transport error"]
    ),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.tuples(_STEP, st.sampled_from(["t1", "t2", "t3"]), st.booleans()),
                   max_size=12),
)  # fmt: skip
def test_any_response_sequence_ends_the_call_exactly_once(
    steps: list[tuple[str, str, bool]],
) -> None:
    far = Far(targets=(PROXY, BACKUP), credentials=Credentials("alice", "secret"),
              ring_timeout_s=40.0)  # fmt: skip
    for step, tag, with_sdp in steps:
        if step == "hang up":
            far.call.hang_up(now=far.now)
            far.pump()
        elif step == "wait":
            far.run(until=far.now + 10.0)
        elif step == "transport error":
            far.core.transport_error(far.call.target, far.now)
            far.pump()
        else:
            far.respond(step, tag=tag, sdp=ANSWER if with_sdp else "",
                        extra=f"WWW-Authenticate: {CHALLENGE}")  # fmt: skip
    far.call.hang_up(now=far.now)
    far.pump()
    far.run(until=far.now + 200.0)  # every timer: Timer B, 64*T1, lingering
    far.reply(bye_from_bob(far, 999), BOB)
    far.run(until=far.now + 200.0)
    assert len(far.ended()) == 1
    assert far.call.state is CallState.TERMINATED
    assert far.core.usages == [] and far.core.get_timer() is None
    assert len(far.invites()) <= 3  # the first, one answered challenge, one failover
