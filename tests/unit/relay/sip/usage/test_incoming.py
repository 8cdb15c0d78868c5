"""The incoming call (RFC 3261 §13-§15, RFC 6026, RFC 4028) between two peers in memory.

Every scenario runs a real UAC (the harness) against our UAS endpoint at an explicit ``now``;
lost, duplicated and reordered datagrams are chosen by the test, never by chance.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.sip.dialog import Dialog
from relay.sip.errors import LocalProtocolError
from relay.sip.sdp.description import SessionDescription
from relay.sip.sdp.fields import Attribute, Direction
from relay.sip.syntax.message import Response
from relay.sip.transaction.timers import Timers
from relay.sip.usage.call_state import CallEndReason
from relay.sip.usage.incoming import CallInput, CallState, IncomingCall
from relay.sip.usage.invite_session import (
    CallAnswered,
    CallCancelled,
    CallEnded,
    InfoReceived,
    MediaUpdated,
    ReInviteReceived,
)
from relay.sip.usage.session_timer import SessionTimerPolicy
from tests.unit.relay.harness import UacUasPair, answer_for, is_, uac_offer

T1 = Timers().T1


def held_offer(
    direction: Direction = Direction.SENDONLY, *, version: int = 2
) -> SessionDescription:
    offer = uac_offer()
    media = offer.media[0]
    attributes = tuple(a for a in media.attributes if a.name != "sendrecv") + (
        Attribute(direction.value),
    )
    held = dataclasses.replace(offer, media=(dataclasses.replace(media, attributes=attributes),))
    return held.with_version(version)


def ended(pair: UacUasPair) -> list[CallEnded]:
    return [e for e in pair.events if isinstance(e, CallEnded)]


# --- the basic call -----------------------------------------------------------------------


def test_basic_call_runs_invite_100_180_200_ack_bye_200() -> None:
    pair = UacUasPair()
    call = pair.establish()
    pair.uac.send("BYE", pair.now)
    pair.run(until=60)

    assert pair.labels() == [
        "INVITE", "100 INVITE", "180 INVITE", "200 INVITE", "ACK", "BYE", "200 BYE",
    ]  # fmt: skip
    assert call.state is CallState.TERMINATED
    assert [type(e).__name__ for e in pair.events] == [
        "IncomingCallReceived", "CallAnswered", "CallEnded",
    ]  # fmt: skip
    assert ended(pair)[0] == CallEnded(call, CallEndReason.BYE, by_remote=True)
    assert pair.uas.usages == [] and pair.uas.get_timer() is None


def test_100_trying_is_sent_before_the_application_decides() -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0)
    pair.pump()
    assert pair.labels(to_uas=False) == ["100 INVITE"]
    assert pair.call().state is CallState.PROCEEDING
    assert Response is type(pair.wire[1].message)


def test_responses_share_one_to_tag_and_the_2xx_carries_contact_allow_supported() -> None:
    pair = UacUasPair()
    call = pair.establish()
    ringing, ok = (d.message for d in pair.wire if d.label in ("180 INVITE", "200 INVITE"))
    assert ringing.to.tag == ok.to.tag == call.dialog.id.local_tag
    assert ok.headers.get("Contact") == "<sip:192.0.2.1:5060>"
    assert (
        ok.headers.get("Allow") == "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY"
    )
    assert ok.headers.get("Supported") == "timer"
    assert ok.headers.get("Content-Type") == "application/sdp"


def test_a_retransmitted_invite_gets_the_last_provisional_again_and_is_not_reprocessed() -> None:
    pair = UacUasPair()
    pair.drop(is_("100 INVITE"))
    pair.drop(is_("180 INVITE"))  # the caller hears nothing and retransmits (Timer A)
    pair.uac.invite(0.0)
    pair.pump()
    pair.call().ringing(now=0.1)
    pair.run(until=0.6)

    assert pair.labels() == ["INVITE", "100 INVITE", "180 INVITE", "INVITE", "180 INVITE"]
    assert len(pair.events) == 1  # still the one IncomingCallReceived


def test_a_duplicated_invite_creates_one_call() -> None:
    pair = UacUasPair()
    pair.duplicate(is_("INVITE"))
    pair.uac.invite(0.0)
    pair.pump()
    assert len(pair.uas.usages) == 1
    assert pair.labels(to_uas=False) == ["100 INVITE", "100 INVITE"]


def test_a_lost_200_is_retransmitted_on_t1_doubling_until_the_ack() -> None:
    pair = UacUasPair()
    pair.drop(is_("200 INVITE"), times=3)
    call = pair.establish()
    assert call.state is CallState.ACCEPTED
    pair.run(until=10)

    sent_at = [round(t, 1) for t, _ in _times(pair, "200 INVITE")]
    assert sent_at == [0.0, 0.5, 1.5, 3.5]  # T1, 2*T1, 4*T1 after the first
    assert call.state is CallState.CONFIRMED
    assert pair.labels().count("ACK") == 1


def _times(pair: UacUasPair, label: str) -> list[tuple[float, object]]:
    return [(t, d) for t, d in pair.sent_at if d.label == label]


def test_2xx_retransmission_interval_is_capped_at_t2() -> None:
    pair = UacUasPair()
    pair.drop(is_("200 INVITE"), times=100)
    call = pair.establish()
    pair.run(until=20)
    times = [t for t, _ in _times(pair, "200 INVITE")]
    gaps = [round(b - a, 2) for a, b in zip(times, times[1:], strict=False)]
    assert gaps[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert call.state is CallState.ACCEPTED


def test_no_ack_within_64_t1_ends_the_call_with_bye() -> None:
    pair = UacUasPair()
    pair.drop(is_("ACK"), times=100)
    call = pair.establish()
    pair.run(until=64 * T1 + 1)

    assert call.state is CallState.TERMINATED
    assert ended(pair) == [CallEnded(call, CallEndReason.ACK_TIMEOUT, by_remote=False)]
    assert pair.labels()[-2:] == ["BYE", "200 BYE"]


def test_a_lost_ack_is_recovered_by_the_2xx_retransmission() -> None:
    pair = UacUasPair()
    pair.drop(is_("ACK"))
    call = pair.establish()
    assert call.state is CallState.ACCEPTED
    pair.run(until=1)
    assert call.state is CallState.CONFIRMED
    assert pair.labels().count("ACK") == 2  # the UAC re-ACKed the retransmitted 200


def test_a_duplicated_ack_is_absorbed() -> None:
    pair = UacUasPair()
    pair.duplicate(is_("ACK"))
    pair.establish()
    assert len(pair.events_of(CallAnswered)) == 1


def test_call_answered_carries_the_media_accept_was_told() -> None:
    pair = UacUasPair()
    pair.establish()
    (answered,) = pair.events_of(CallAnswered)
    assert answered.media is not None and answered.media.codec == "PCMU"


def test_accept_with_a_codec_we_cannot_handle_is_our_bug() -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0)
    pair.pump()
    call = pair.call()
    with pytest.raises(LocalProtocolError, match="unsupported codec 'G729'"):
        call.accept(answer_for(call), now=0.1, preference=("G729",))


def test_a_retransmitted_bye_is_answered_again_without_a_second_call_end() -> None:
    pair = UacUasPair()
    pair.establish()
    pair.drop(is_("200 BYE"))
    pair.uac.send("BYE", pair.now)
    pair.run(until=2)
    assert pair.labels()[-4:] == ["BYE", "200 BYE", "BYE", "200 BYE"]  # the first 200 was lost
    assert len(ended(pair)) == 1


# --- hanging up ---------------------------------------------------------------------------


def test_our_hang_up_sends_bye_and_the_caller_answers_200() -> None:
    pair = UacUasPair()
    call = pair.establish()
    call.hang_up(now=pair.now)
    pair.run(until=60)

    assert pair.labels()[-2:] == ["BYE", "200 BYE"]
    bye = pair.wire[-2].message
    assert bye.to.tag == call.dialog.id.remote_tag and bye.from_.tag == call.dialog.id.local_tag
    assert str(bye.uri) == "sip:alice@192.0.2.10:5062"
    assert ended(pair) == [CallEnded(call, CallEndReason.BYE, by_remote=False)]
    assert pair.uac.state == "terminated"


def test_a_hang_up_before_the_ack_waits_for_it() -> None:
    pair = UacUasPair()
    pair.drop(is_("ACK"))
    call = pair.establish()
    call.hang_up(now=pair.now)
    pair.pump()
    assert "BYE" not in pair.labels()  # RFC 3261 §15: not before the ACK
    pair.run(until=2)
    assert pair.labels()[-2:] == ["BYE", "200 BYE"]
    assert call.state is CallState.TERMINATED
    assert [type(e) for e in pair.events[1:]] == [CallAnswered, CallEnded]


def test_a_hang_up_before_the_answer_rejects_with_480() -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0)
    pair.pump()
    call = pair.call()
    call.hang_up(now=0.1)
    pair.pump()
    assert pair.labels()[-2:] == ["480 INVITE", "ACK"]
    assert ended(pair) == [CallEnded(call, CallEndReason.REJECTED, by_remote=False, status=480)]


def test_a_crossed_bye_is_answered_200() -> None:
    pair = UacUasPair()
    call = pair.establish()
    pair.delay(is_("BYE", to_uas=False))
    call.hang_up(now=pair.now)
    pair.uac.send("BYE", pair.now)
    pair.run(until=60)
    assert "200 BYE" in pair.labels(to_uas=False)  # we answer theirs though we ended first
    assert len(ended(pair)) == 1


# --- reject -------------------------------------------------------------------------------


def test_reject_sends_the_status_with_headers_and_absorbs_the_ack() -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0)
    pair.pump()
    call = pair.call()
    call.reject(503, now=0.1, headers=(("Retry-After", "30"),))
    pair.pump()
    final = pair.wire[-2].message
    assert (final.status, final.reason, final.headers.get("Retry-After")) == (
        503, "Service Unavailable", "30",
    )  # fmt: skip
    assert pair.labels()[-1] == "ACK"
    assert ended(pair) == [CallEnded(call, CallEndReason.REJECTED, by_remote=False, status=503)]
    assert pair.uas.usages == []


def test_reject_with_a_status_below_300_is_our_bug() -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0)
    pair.pump()
    with pytest.raises(LocalProtocolError, match="300-699"):
        pair.call().reject(200, now=0.1)


def test_accepting_twice_is_our_bug() -> None:
    pair = UacUasPair()
    call = pair.establish()
    with pytest.raises(LocalProtocolError, match="accept\\(\\) is not allowed in state Confirmed"):
        call.accept(answer_for(call), now=pair.now)


# --- CANCEL -------------------------------------------------------------------------------


def test_cancel_before_the_answer_gets_200_and_the_invite_487() -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0)
    pair.pump()
    call = pair.call()
    call.ringing(now=0.1)
    pair.uac.cancel(0.2)
    pair.pump()

    assert pair.labels()[-4:] == ["CANCEL", "200 CANCEL", "487 INVITE", "ACK"]
    cancel_ok, terminated = pair.wire[-3].message, pair.wire[-2].message
    assert cancel_ok.to.tag == terminated.to.tag == call.dialog.id.local_tag
    assert [type(e) for e in pair.events[1:]] == [CallCancelled, CallEnded]
    assert ended(pair)[0] == CallEnded(call, CallEndReason.CANCELLED, by_remote=True, status=487)


def test_a_decision_after_cancel_is_ignored() -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0)
    pair.pump()
    call = pair.call()
    pair.uac.cancel(0.1)
    pair.pump()
    call.accept(answer_for(call), now=0.2)  # the webhook answered late
    call.ringing(now=0.2)
    call.reject(503, now=0.2)
    pair.pump()
    assert "200 INVITE" not in pair.labels()
    assert len(ended(pair)) == 1


def test_cancel_after_the_200_gets_200_and_the_call_stays() -> None:
    pair = UacUasPair()
    call = pair.establish()
    pair.uac.cancel(pair.now)
    pair.pump()
    assert pair.labels()[-2:] == ["CANCEL", "200 CANCEL"]
    assert call.state is CallState.CONFIRMED
    assert ended(pair) == []


def test_cancel_racing_the_200_leaves_an_established_call() -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0)
    pair.pump()
    call = pair.call()
    pair.delay(is_("CANCEL"))
    pair.uac.cancel(0.1)  # in flight while we answer
    call.accept(answer_for(call), now=0.1)
    pair.run(until=1)
    assert call.state is CallState.CONFIRMED
    assert "487 INVITE" not in pair.labels()


def test_bye_before_the_answer_gets_200_and_the_invite_487() -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0)
    pair.pump()
    call = pair.call()
    call.ringing(now=0.1)
    pair.pump()
    early = next(d.message for d in pair.wire if d.label == "180 INVITE")
    pair.uac.dialog = Dialog.as_uac(pair.uac.invite_request, early)
    pair.uac.send("BYE", 0.2)
    pair.pump()
    assert pair.labels()[-3:] == ["200 BYE", "487 INVITE", "ACK"]
    assert ended(pair) == [CallEnded(call, CallEndReason.BYE, by_remote=True, status=487)]


def test_a_transport_failure_before_the_answer_ends_the_call() -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0)
    pair.pump()
    call = pair.call()
    pair.uas.transport_error(pair.wire[1].destination, 0.1)  # ICMP: the caller is gone
    pair.pump()
    assert ended(pair) == [CallEnded(call, CallEndReason.TRANSACTION_FAILED, by_remote=False)]
    call.accept(answer_for(call), now=0.2)  # the decision arrives late: ignored
    assert call.state is CallState.TERMINATED


# --- late offer ---------------------------------------------------------------------------


def test_late_offer_puts_our_offer_in_the_200_and_reads_the_answer_from_the_ack() -> None:
    pair = UacUasPair()
    call = pair.establish(late_offer=True)
    assert call.offer is None
    ok = next(d.message for d in pair.wire if d.label == "200 INVITE")
    assert b"m=audio 30000 RTP/AVP 0 8 101" in ok.body
    answered = pair.events_of(CallAnswered)
    assert len(answered) == 1
    media = answered[0].media
    assert (media.codec, media.remote_port) == ("PCMU", 4000)
    assert call.state is CallState.CONFIRMED


def test_late_offer_ack_without_an_answer_ends_the_call() -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0, late_offer=True)
    pair.pump()
    call = pair.call()
    pair.uac.answer_in_ack = False  # the caller sends an empty ACK
    call.accept(answer_for(call), now=0.1)
    pair.run(until=1)
    assert ended(pair) == [CallEnded(call, CallEndReason.MEDIA_FAILED, by_remote=False)]
    assert "BYE" in pair.labels(to_uas=False)


# --- re-INVITE ----------------------------------------------------------------------------


def test_reinvite_hold_and_unhold_keep_the_call_and_mirror_the_direction() -> None:
    pair = UacUasPair()
    call = pair.establish()
    pair.uac.send("INVITE", pair.now, sdp=held_offer(Direction.SENDONLY))
    pair.pump()
    hold_ok = pair.wire[-2].message
    assert pair.labels()[-3:] == ["INVITE", "200 INVITE", "ACK"]
    assert b"a=recvonly" in hold_ok.body and b"o=- 7 8 " in hold_ok.body  # version + 1
    pair.uac.send("INVITE", pair.now, sdp=held_offer(Direction.SENDRECV, version=3))
    pair.pump()
    unhold_ok = pair.wire[-2].message
    assert b"a=sendrecv" in unhold_ok.body and b"o=- 7 9 " in unhold_ok.body

    assert call.state is CallState.CONFIRMED
    updates = pair.events_of(MediaUpdated)
    assert [u.media.held_by_remote for u in updates] == [True, False]
    assert [r.status for r in pair.events_of(ReInviteReceived)] == [200, 200]


def test_update_with_sdp_holds_the_call() -> None:
    pair = UacUasPair()
    call = pair.establish()
    pair.uac.send("UPDATE", pair.now, sdp=held_offer(Direction.INACTIVE))
    pair.pump()
    ok = pair.wire[-1].message
    assert ok.status == 200 and b"a=inactive" in ok.body
    (update,) = pair.events_of(MediaUpdated)
    assert update.media.held_by_remote and call.state is CallState.CONFIRMED


def test_update_with_an_offer_while_ours_is_unanswered_gets_491() -> None:
    pair = UacUasPair(session_timer=SessionTimerPolicy(session_expires_s=90))
    pair.establish()
    pair.drop(is_("INVITE", to_uas=False), times=100)
    pair.run(until=45.1)
    pair.uac.send("UPDATE", pair.now, sdp=held_offer())
    pair.pump()
    assert pair.labels()[-1] == "491 UPDATE"


def test_session_refresh_reinvite_with_the_same_sdp_keeps_our_version() -> None:
    pair = UacUasPair()
    pair.establish()
    pair.uac.send("INVITE", pair.now, sdp=uac_offer())
    pair.pump()
    ok = pair.wire[-2].message
    assert b"o=- 7 7 " in ok.body
    assert pair.events_of(MediaUpdated) == []


def test_reinvite_without_sdp_gets_a_fresh_offer_and_its_ack_answers() -> None:
    pair = UacUasPair()
    call = pair.establish()
    pair.uac.send("INVITE", pair.now)
    pair.pump()
    ok, ack = pair.wire[-2].message, pair.wire[-1].message
    assert ok.status == 200 and b"m=audio 30000 RTP/AVP 0 8 101" in ok.body  # every codec
    assert b"a=sendrecv" in ok.body and ack.body
    assert call.media is not None
    assert call.media.remote == SessionDescription.parse(ack.body)
    assert call.state is CallState.CONFIRMED


def test_reinvite_with_no_common_codec_gets_488_with_warning_and_the_call_stays() -> None:
    pair = UacUasPair()
    call = pair.establish()
    pair.uac.send("INVITE", pair.now, sdp=uac_offer(codecs=("G722",)))
    pair.pump()
    response = pair.wire[-2].message
    assert response.status == 488
    assert response.headers.get("Warning") == (
        '305 sipline-test "Incompatible media format: supported codecs are PCMU/8000, PCMA/8000"'
    )
    assert call.state is CallState.CONFIRMED


def test_reinvite_while_ours_is_pending_gets_491() -> None:
    pair = UacUasPair(session_timer=SessionTimerPolicy(session_expires_s=90))
    call = pair.establish()
    pair.drop(is_("INVITE", to_uas=False), times=100)
    pair.run(until=45.1)  # we refresh at half the interval: our re-INVITE is out, unanswered
    assert "INVITE" in pair.labels(to_uas=False)
    pair.uac.send("INVITE", pair.now, sdp=uac_offer())
    pair.pump()
    assert "491 INVITE" in pair.labels(to_uas=False)
    assert call.state is CallState.CONFIRMED


def test_second_reinvite_before_the_first_is_acked_gets_500_with_retry_after() -> None:
    pair = UacUasPair()
    call = pair.establish()
    pair.drop(is_("ACK"))
    pair.uac.send("INVITE", pair.now, sdp=held_offer())
    pair.pump()
    pair.uac.send("INVITE", pair.now, sdp=held_offer(Direction.SENDRECV, version=3))
    pair.pump()
    response = next(d.message for d in reversed(pair.wire) if d.label == "500 INVITE")
    assert 0 <= int(response.headers.get("Retry-After") or "-1") <= 10
    assert call.state is CallState.CONFIRMED


def test_a_lost_200_to_a_reinvite_is_retransmitted_until_its_ack() -> None:
    pair = UacUasPair()
    call = pair.establish()
    pair.drop(is_("200 INVITE"), times=2)
    pair.uac.send("INVITE", pair.now, sdp=held_offer())
    pair.run(until=pair.now + 5)
    oks = [t for t, d in pair.sent_at if d.label == "200 INVITE"][1:]  # the re-INVITE's
    assert [round(b - a, 1) for a, b in zip(oks, oks[1:], strict=False)] == [0.5, 1.0]
    assert pair.labels()[-1] == "ACK" and call.state is CallState.CONFIRMED


def test_a_2xx_retransmission_after_our_refresh_is_acked_again() -> None:
    pair = UacUasPair(session_timer=SessionTimerPolicy(session_expires_s=100))
    pair.establish()
    pair.duplicate(is_("200 INVITE", to_uas=True))  # as if the caller had resent it
    pair.run(until=52)
    ours = [d.label for d in pair.wire if not d.to_uas]
    assert ours[-3:] == ["INVITE", "ACK", "ACK"]  # one ACK per 2xx (§13.2.2.4)


def test_reinvite_in_the_early_dialog_gets_500_with_retry_after() -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0)
    pair.pump()
    call = pair.call()
    call.ringing(now=0.1)
    pair.pump()
    early = next(d.message for d in pair.wire if d.label == "180 INVITE")
    pair.uac.dialog = Dialog.as_uac(pair.uac.invite_request, early)
    pair.uac.send("UPDATE", 0.2, sdp=held_offer())
    pair.pump()
    response = pair.wire[-1].message
    assert response.status == 500
    # RFC 3311 §5.2 via RFC 3261 §14.2: "a randomly chosen value between 0 and 10 seconds"
    assert 0 <= int(response.headers.get("Retry-After") or "-1") <= 10
    assert call.state is CallState.EARLY


def test_reinvite_before_our_2xx_is_acked_gets_491() -> None:
    pair = UacUasPair()
    pair.drop(is_("ACK"))
    call = pair.establish()
    pair.uac.send("INVITE", pair.now, sdp=held_offer())
    pair.pump()
    assert "491 INVITE" in pair.labels()
    assert call.state in (CallState.ACCEPTED, CallState.CONFIRMED)


@pytest.mark.parametrize(
    ("headers", "body", "content_type", "status"),
    [
        ((), b"hello", "text/plain", 415),
        ((), b"v=0\r\nbogus\r\n", "application/sdp", 400),
        ((("Supported", "timer"), ("Session-Expires", "30")), b"", None, 422),
        ((("Session-Expires", "soon"),), b"", None, 400),
    ],
)
def test_a_bad_reinvite_is_refused_and_the_call_stays(
    headers: tuple[tuple[str, str], ...], body: bytes, content_type: str | None, status: int
) -> None:
    pair = UacUasPair()
    call = pair.establish()
    pair.uac.send("INVITE", pair.now, body=body, content_type=content_type, headers=headers)
    pair.pump()
    assert pair.wire[-2].message.status == status
    assert call.state is CallState.CONFIRMED
    assert [r.status for r in pair.events_of(ReInviteReceived)] == [status]


def test_a_lower_cseq_in_the_dialog_gets_500() -> None:
    pair = UacUasPair()
    pair.establish()
    pair.uac.send(
        "INFO", pair.now, body=b"Signal=1\r\n", content_type="application/dtmf-relay", cseq=10
    )
    pair.uac.send(
        "INFO", pair.now, body=b"Signal=2\r\n", content_type="application/dtmf-relay", cseq=5
    )
    pair.pump()
    statuses = [d.message.status for d in pair.wire if d.label.endswith(" INFO")]
    assert statuses == [200, 500]


# --- INFO ---------------------------------------------------------------------------------


def test_info_dtmf_relay_gets_200_and_an_event_with_the_body() -> None:
    pair = UacUasPair()
    call = pair.establish()
    body = b"Signal=5\r\nDuration=160\r\n"
    pair.uac.send("INFO", pair.now, body=body, content_type="application/dtmf-relay")
    pair.pump()
    assert pair.labels()[-1] == "200 INFO"
    (info,) = pair.events_of(InfoReceived)
    assert (info.call, info.content_type, info.body) == (call, "application/dtmf-relay", body)


def test_options_in_the_dialog_gets_200_with_allow() -> None:
    pair = UacUasPair()
    pair.establish()
    pair.uac.send("OPTIONS", pair.now)
    pair.pump()
    ok = pair.wire[-1].message
    assert ok.status == 200 and "UPDATE" in (ok.headers.get("Allow") or "")
    assert ok.headers.count("Allow") == 1
    assert (
        ok.headers.get("Accept")
        == "application/sdp, application/dtmf-relay, application/dtmf, message/sipfrag"
    )


# --- session timers (RFC 4028) ------------------------------------------------------------


def test_session_expires_below_our_minimum_gets_422_with_min_se() -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0, headers=(("Supported", "timer"), ("Session-Expires", "60")))
    pair.pump()
    response = pair.wire[-2].message
    assert (response.status, response.headers.get("Min-SE")) == (422, "90")
    assert pair.events == []


def test_session_expires_is_honoured_with_the_callers_refresher() -> None:
    pair = UacUasPair()
    pair.uac.invite(
        0.0,
        headers=(
            ("Supported", "timer"),
            ("Session-Expires", "600;refresher=uac"),
            ("Min-SE", "120"),
        ),
    )
    pair.pump()
    call = pair.call()
    call.accept(answer_for(call), now=0.0)
    pair.pump()
    ok = next(d.message for d in pair.wire if d.label == "200 INVITE")
    assert ok.headers.get("Session-Expires") == "600;refresher=uac"
    assert ok.headers.get("Require") == "timer"
    # the caller refreshes; without a refresh we end the call at 600 - 32 s
    pair.run(until=567)
    assert call.state is CallState.CONFIRMED
    pair.run(until=569)
    assert ended(pair) == [CallEnded(call, CallEndReason.SESSION_EXPIRED, by_remote=False)]
    assert "BYE" in pair.labels(to_uas=False)


def test_a_refresh_from_the_caller_restarts_the_session_timer() -> None:
    pair = UacUasPair()
    headers = (("Supported", "timer"), ("Session-Expires", "120;refresher=uac"))
    pair.establish(headers=headers)
    pair.run(until=60)
    pair.uac.send("UPDATE", pair.now, headers=headers)
    pair.pump()
    assert pair.wire[-1].message.headers.get("Session-Expires") == "120;refresher=uac"
    pair.run(until=60 + 87)  # 120 - min(32, 40) = 88 s after the refresh
    assert ended(pair) == []
    pair.run(until=60 + 89)
    assert ended(pair)[0].reason is CallEndReason.SESSION_EXPIRED


def test_we_refresh_with_reinvite_at_half_the_interval_when_we_are_the_refresher() -> None:
    pair = UacUasPair(session_timer=SessionTimerPolicy(session_expires_s=100))
    call = pair.establish()
    ok = next(d.message for d in pair.wire if d.label == "200 INVITE")
    assert ok.headers.get("Session-Expires") == "100;refresher=uas"  # the caller lacks timer
    pair.run(until=49.9)
    assert "INVITE" not in pair.labels(to_uas=False)
    pair.run(until=50.1)
    assert pair.labels()[-3:] == ["INVITE", "200 INVITE", "ACK"]
    refresh = pair.wire[-3].message
    assert refresh.headers.get("Session-Expires") == "100;refresher=uac"
    assert refresh.body == bytes(answer_for(call))  # our SDP, unchanged
    pair.run(until=300)
    assert call.state is CallState.CONFIRMED  # refreshed at 50, 100, 150...
    assert pair.labels(to_uas=False).count("INVITE") == 6


def test_we_refresh_with_update_when_the_caller_allows_it() -> None:
    pair = UacUasPair(session_timer=SessionTimerPolicy(session_expires_s=100))
    pair.establish(headers=(("Allow", "INVITE, ACK, BYE, UPDATE"),))
    pair.run(until=51)
    assert pair.labels()[-2:] == ["UPDATE", "200 UPDATE"]


def test_a_refresh_answered_491_is_retried_within_two_seconds() -> None:
    pair = UacUasPair(session_timer=SessionTimerPolicy(session_expires_s=100))
    call = pair.establish()
    pair.uac.script["INVITE"] = [(491, ())]
    pair.run(until=53)
    refreshes = [t for t, d in pair.sent_at if d.label == "INVITE" and not d.to_uas]
    assert len(refreshes) == 2 and 0 <= refreshes[1] - refreshes[0] <= 2.0
    assert pair.labels()[-3:] == ["INVITE", "200 INVITE", "ACK"]
    assert call.state is CallState.CONFIRMED


def test_a_refresh_answered_422_is_retried_with_the_larger_min_se() -> None:
    pair = UacUasPair(session_timer=SessionTimerPolicy(session_expires_s=100))
    pair.establish()
    pair.uac.script["INVITE"] = [(422, (("Min-SE", "300"),))]
    pair.run(until=51)
    retried = [d.message for d in pair.wire if d.label == "INVITE" and not d.to_uas][-1]
    assert retried.headers.get("Session-Expires") == "300;refresher=uac"


def test_an_update_refresh_answered_501_is_retried_as_reinvite() -> None:
    pair = UacUasPair(session_timer=SessionTimerPolicy(session_expires_s=100))
    pair.establish(headers=(("Allow", "INVITE, ACK, BYE, UPDATE"),))
    pair.uac.script["UPDATE"] = [(501, ())]
    pair.run(until=51)
    assert pair.labels(to_uas=False)[-3:] == ["UPDATE", "INVITE", "ACK"]
    assert pair.labels()[-3:] == ["INVITE", "200 INVITE", "ACK"]


def test_a_refresh_answered_481_ends_the_call() -> None:
    pair = UacUasPair(session_timer=SessionTimerPolicy(session_expires_s=100))
    call = pair.establish()
    pair.uac.dialog = None  # the caller forgot the call: it answers 481
    pair.run(until=51)
    assert ended(pair) == [CallEnded(call, CallEndReason.REQUEST_FAILED, by_remote=False)]


def test_an_unanswered_refresh_ends_the_call() -> None:
    pair = UacUasPair(session_timer=SessionTimerPolicy(session_expires_s=100))
    call = pair.establish()
    pair.drop(is_("INVITE", to_uas=False), times=100)
    pair.run(until=51 + 64 * T1)
    assert ended(pair)[0].reason in (CallEndReason.REQUEST_FAILED, CallEndReason.SESSION_EXPIRED)
    assert call.state is CallState.TERMINATED


# --- the table ------------------------------------------------------------


@given(
    st.lists(
        st.sampled_from(["ringing", "accept", "reject", "hang_up", "cancel", "bye"]), max_size=8
    )
)
def test_any_sequence_of_inputs_ends_in_a_state_or_a_local_protocol_error(steps: list[str]) -> None:
    pair = UacUasPair()
    pair.uac.invite(0.0)
    pair.pump()
    call = pair.call()
    for step in steps:
        try:
            if step == "ringing":
                call.ringing(now=pair.now)
            elif step == "accept":
                call.accept(answer_for(call), now=pair.now)
            elif step == "reject":
                call.reject(486, now=pair.now)
            elif step == "hang_up":
                call.hang_up(now=pair.now)
            elif step == "cancel":
                pair.uac.cancel(pair.now)
            elif pair.uac.dialog is not None:
                pair.uac.send("BYE", pair.now)
        except LocalProtocolError:
            pass
        pair.run(until=pair.now + 1)
        assert isinstance(call.state, CallState)
    pair.run(until=pair.now + 3600)
    assert call.state is CallState.TERMINATED or call.state is CallState.CONFIRMED
    assert len(ended(pair)) <= 1


def test_every_local_input_has_an_entry_in_terminated() -> None:
    for event in (CallInput.RINGING, CallInput.ACCEPT, CallInput.REJECT, CallInput.HANG_UP):
        assert (CallState.TERMINATED, event) in IncomingCall._TRANSITIONS


@pytest.mark.parametrize(
    ("event", "states"),
    [
        (CallInput.RECV_ACK, list(CallState)),
        (CallInput.RECV_CANCEL, list(CallState)),
        (CallInput.RECV_BYE, list(CallState)),
        (CallInput.INVITE_FAILED, list(CallState)),
        (CallInput.ACK_TIMEOUT, [CallState.ACCEPTED, CallState.TERMINATED]),
        (
            CallInput.SESSION_EXPIRED,
            [CallState.ACCEPTED, CallState.CONFIRMED, CallState.TERMINATED],
        ),
        (CallInput.REQUEST_FAILED, [CallState.ACCEPTED, CallState.CONFIRMED, CallState.TERMINATED]),
    ],
)
def test_remote_and_timer_inputs_have_an_entry_wherever_they_can_arrive(
    event: CallInput, states: list[CallState]
) -> None:
    """What the network or a timer does never raises, it is in the table."""
    for state in states:
        assert (state, event) in IncomingCall._TRANSITIONS, (state, event)
