"""Decide, then do: plans for incoming INVITEs are pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.contracts import InviteAccepted, InviteRejected, MediaEndpoint
from relay.plan import (
    AcceptPlan,
    RejectPlan,
    codec_names,
    plan_incoming_invite,
    plan_unavailable,
)
from relay.sip.sdp.description import SessionDescription
from relay.sip.sdp.offer_answer import accept_answer
from relay.sip.syntax.message import Request
from relay.sip.syntax.parser import parse_message
from tests.unit.relay.harness import uac_offer

ENDPOINT = MediaEndpoint(url="wss://agent.example/media")


def accepted(*preference: str) -> InviteAccepted:
    return InviteAccepted(
        callId="c1", agentId="a1", mediaEndpoint=ENDPOINT, codecPreference=list(preference)
    )


def invite(body: bytes = b"") -> Request:
    head = (
        "INVITE sip:sales@192.0.2.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKone\r\n"
        "From: <sip:alice@198.51.100.7>;tag=ft\r\nTo: <sip:sales@192.0.2.1>\r\n"
        "Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@198.51.100.7>\r\n"
        + ("Content-Type: application/sdp\r\n" if body else "")
        + "\r\n"
    )
    message = parse_message(head.encode() + body)
    assert isinstance(message, Request)
    return message


def plan(request: Request, decision: InviteAccepted | InviteRejected) -> AcceptPlan | RejectPlan:
    return plan_incoming_invite(
        request,
        decision,
        local_address="192.0.2.1",
        local_port=30000,
        session_id=4242,
        warning_agent="sipline.example",
    )


def test_an_accepted_invite_is_answered_with_the_first_codec_of_the_decisions_preference() -> None:
    result = plan(
        invite(bytes(uac_offer(codecs=("PCMU", "PCMA")))), accepted("PCMA/8000", "PCMU/8000")
    )
    assert isinstance(result, AcceptPlan)
    assert result.media is not None and result.media.codec == "PCMA"
    assert result.preference == ("PCMA", "PCMU")
    assert not result.is_late_offer
    assert b"m=audio 30000 RTP/AVP 8 101" in bytes(result.sdp)


def test_control_plane_codec_names_map_to_ours_and_unknown_ones_are_left_out() -> None:
    assert codec_names(["opus/48000/2", "G722/8000", "G729/8000", "PCMU/8000", "pcmu"]) == (
        "opus", "G722", "PCMU",
    )  # fmt: skip


def test_no_preference_falls_back_to_the_default_list() -> None:
    result = plan(invite(bytes(uac_offer(codecs=("PCMA",)))), accepted())
    assert isinstance(result, AcceptPlan) and result.media is not None
    assert result.media.codec == "PCMA"


def test_no_common_codec_is_a_488_with_a_warning() -> None:
    result = plan(invite(bytes(uac_offer(codecs=("PCMA",)))), accepted("PCMU/8000"))
    assert result == RejectPlan(
        488,
        "Not Acceptable Here",
        (
            (
                "Warning",
                '305 sipline.example "Incompatible media format: supported codecs are PCMU/8000"',
            ),
        ),
    )


def test_a_late_offer_plans_our_offer() -> None:
    result = plan(invite(), accepted("PCMU/8000", "PCMA/8000"))
    assert isinstance(result, AcceptPlan) and result.is_late_offer
    assert result.media is None
    answer = SessionDescription.parse(bytes(uac_offer(codecs=("PCMA",))))
    assert accept_answer(result.sdp, answer).codec == "PCMA"


def test_malformed_sdp_is_a_400_naming_it() -> None:
    result = plan(invite(b"v=0\r\nnonsense\r\n"), accepted("PCMU/8000"))
    assert isinstance(result, RejectPlan) and result.status == 400
    assert result.reason.startswith("Malformed SDP body")


def test_a_rejection_uses_its_status_with_the_standard_reason_phrase() -> None:
    decision = InviteRejected(sipStatus=403, reason="source_ip_not_allowed")
    assert plan(invite(), decision) == RejectPlan(403, "Forbidden")


def test_a_rejection_passes_its_retry_after_on_to_the_caller() -> None:
    decision = InviteRejected(sipStatus=503, reason="too_many_active_calls", retryAfterS=10)
    assert plan(invite(), decision) == RejectPlan(
        503, "Service Unavailable", (("Retry-After", "10"),)
    )


def test_unavailable_is_503_with_retry_after() -> None:
    assert plan_unavailable(30) == RejectPlan(503, "Service Unavailable", (("Retry-After", "30"),))


@given(st.lists(st.sampled_from(["PCMU", "PCMA", "G722", "opus"]), min_size=1, unique=True))
def test_the_answer_codec_is_the_first_of_ours_that_the_offer_has(offered: list[str]) -> None:
    ours = ["G722/8000", "PCMA/8000", "PCMU/8000"]
    result = plan(invite(bytes(uac_offer(codecs=tuple(offered)))), accepted(*ours))
    expected = next((name.split("/")[0] for name in ours if name.split("/")[0] in offered), None)
    if expected is None:
        assert isinstance(result, RejectPlan) and result.status == 488
    else:
        assert isinstance(result, AcceptPlan) and result.media is not None
        assert result.media.codec == expected
