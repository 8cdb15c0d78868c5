"""Session timer negotiation as a UAS (RFC 4028 §9) and the re-offer rules of a call's media."""

from __future__ import annotations

import dataclasses

import pytest

from relay.sip.errors import SipParseError
from relay.sip.sdp.fields import Attribute
from relay.sip.sdp.media_session import MediaSession
from relay.sip.sdp.offer_answer import NoCommonCodec, negotiate
from relay.sip.syntax.headers import Headers
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.uri import SipUri
from relay.sip.usage.session_timer import (
    Refresher,
    SessionExpires,
    SessionTimer,
    SessionTimerPolicy,
    SessionTimerTooSmall,
    negotiate_as_uas,
    read_refresh_response,
)
from tests.unit.relay.harness import uac_offer

POLICY = SessionTimerPolicy(session_expires_s=1800, min_se_s=90)


def refresh_request(*headers: tuple[str, str]) -> Request:
    return Request("INVITE", SipUri(host="x"), headers=Headers(headers))


def test_session_expires_parses_and_formats() -> None:
    assert SessionExpires.parse("600 ; refresher=UAC") == SessionExpires(600, Refresher.UAC)
    assert str(SessionExpires(600, Refresher.UAS)) == "600;refresher=uas"
    with pytest.raises(SipParseError, match="Invalid Session-Expires header field: 'soon'"):
        SessionExpires.parse("soon")
    with pytest.raises(SipParseError, match="Invalid refresher in Session-Expires"):
        SessionExpires.parse("600;refresher=both")


def test_too_small_with_timer_support_is_422_with_our_min_se() -> None:
    request = refresh_request(("Supported", "timer"), ("Session-Expires", "60"))
    assert negotiate_as_uas(request, POLICY) == SessionTimerTooSmall(90)


def test_too_small_without_timer_support_is_raised_to_our_minimum() -> None:
    request = refresh_request(("Session-Expires", "60"))
    timer = negotiate_as_uas(request, POLICY)
    assert timer == SessionTimer(90, True, (("Session-Expires", "90;refresher=uas"),))


def test_the_interval_is_lowered_to_ours_but_not_below_the_request_min_se() -> None:
    request = refresh_request(
        ("Supported", "timer"), ("Session-Expires", "7200"), ("Min-SE", "2000")
    )
    timer = negotiate_as_uas(request, POLICY)
    assert isinstance(timer, SessionTimer) and timer.interval_s == 2000


def test_the_refresher_is_the_callers_choice_else_the_caller_when_it_supports_timers() -> None:
    chosen = negotiate_as_uas(
        refresh_request(("Supported", "timer"), ("Session-Expires", "600;refresher=uas")), POLICY
    )
    assert isinstance(chosen, SessionTimer) and chosen.we_refresh
    assert chosen.response_headers == (
        ("Session-Expires", "600;refresher=uas"),
        ("Require", "timer"),
    )
    unchosen = negotiate_as_uas(refresh_request(("Supported", "timer")), POLICY)
    assert isinstance(unchosen, SessionTimer) and not unchosen.we_refresh
    assert unchosen.response_headers[0] == ("Session-Expires", "1800;refresher=uac")


def test_no_policy_interval_and_no_request_interval_means_no_timer() -> None:
    policy = SessionTimerPolicy(session_expires_s=None)
    assert negotiate_as_uas(refresh_request(("Supported", "timer")), policy) is None


def test_refresh_and_expiry_times_follow_section_10() -> None:
    timer = SessionTimer(1800, True)
    assert timer.refresh_at(100.0) == 1000.0
    assert timer.expires_at(100.0) == 100.0 + 1800 - 32
    assert SessionTimer(90, False).expires_at(0.0) == 60.0
    assert SessionTimer(90, False).refresh_at(0.0) is None


def test_the_2xx_to_our_refresh_settles_interval_and_refresher() -> None:
    ok = Response(200, "OK", headers=Headers([("Session-Expires", "300;refresher=uas")]))
    assert read_refresh_response(ok, SessionTimer(1800, True)) == SessionTimer(300, False)
    silent = Response(200, "OK", headers=Headers())
    assert read_refresh_response(silent, SessionTimer(1800, True)) == SessionTimer(1800, True)


def test_policy_refuses_a_minimum_below_90() -> None:
    with pytest.raises(ValueError, match="at least 90"):
        SessionTimerPolicy(min_se_s=30)


# --- media session (RFC 3264 §8) ----------------------------------------------------------


def _session() -> MediaSession:
    result = negotiate(
        uac_offer(),
        preference=("PCMU", "PCMA"),
        local_address="192.0.2.1",
        local_port=30000,
        session_id=7,
        session_version=7,
    )
    assert not isinstance(result, NoCommonCodec)
    return MediaSession(result.sdp, uac_offer(), ("PCMU", "PCMA"))


def test_an_unchanged_reoffer_keeps_our_version_and_a_changed_one_increments_it() -> None:
    session = _session()
    same = session.answer(uac_offer())
    assert not isinstance(same, NoCommonCodec)
    assert same[1].sdp.origin.session_version == 7
    media = uac_offer().media[0]
    held = dataclasses.replace(
        media,
        attributes=(*(a for a in media.attributes if a.name != "sendrecv"), Attribute("sendonly")),
    )
    changed = session.answer(dataclasses.replace(uac_offer(), media=(held,)))
    assert not isinstance(changed, NoCommonCodec)
    assert changed[1].sdp.origin.session_version == 8
    assert changed[1].media.held_by_remote


def test_a_reoffer_keeps_the_codec_in_use_first() -> None:
    session = _session()
    result = session.answer(uac_offer(codecs=("PCMA", "PCMU")))
    assert not isinstance(result, NoCommonCodec)
    assert result[1].media.codec == "PCMU"


def test_a_fresh_offer_lists_every_codec_of_the_call_sendrecv() -> None:
    offer = _session().fresh_offer().local
    assert offer.media[0].formats == ("0", "8", "101")
    assert offer.origin.session_version == 8
