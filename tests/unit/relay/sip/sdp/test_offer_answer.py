"""RFC 3264 offer/answer against SDP captured from baresip, linphone, SIPp and RFC 4317."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.sip.sdp.codecs import CODECS, codec_spec, resolve_preference
from relay.sip.sdp.description import Direction, RtpMap, SessionDescription
from relay.sip.sdp.offer_answer import (
    Answer,
    AnswerError,
    NegotiatedMedia,
    NoCommonCodec,
    accept_answer,
    answer_direction,
    build_offer,
    negotiate,
)

VECTORS = Path(__file__).parents[4] / "vectors" / "sdp"
PREFERENCE = ["opus", "G722", "PCMU", "PCMA"]
LOCAL = {"local_address": "192.0.2.10", "local_port": 40000, "session_id": 7, "session_version": 8}


def vector(name: str) -> SessionDescription:
    return SessionDescription.parse((VECTORS / name).read_bytes())


def answer_to(offer: SessionDescription | str, preference: list[str] = PREFERENCE) -> Answer:
    if isinstance(offer, str):
        offer = SessionDescription.parse(offer)
    result = negotiate(offer, preference=preference, **LOCAL)
    assert isinstance(result, Answer), result
    assert SessionDescription.parse(str(result.sdp)) == result.sdp
    return result


def audio_offer(formats: str, attributes: str = "", address: str = "10.0.0.1") -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
        f"m=audio 5004 RTP/AVP {formats}\r\n{attributes}"
    )


# --- real endpoints ------------------------------------------------------------------


def test_baresip_offer_gets_opus_96_and_telephone_event_101() -> None:
    answer = answer_to(vector("baresip_pcmu_pcma_g722_opus.sdp"))
    assert str(answer.sdp) == (
        "v=0\r\no=- 7 8 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 96 101\r\n"
        "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
        "a=ptime:20\r\na=sendrecv\r\n"
    )
    assert answer.media == NegotiatedMedia(
        codec="opus",
        payload_type=96,
        clock_rate_hz=48000,
        channels=2,
        fmtp="stereo=1;sprop-stereo=1",
        ptime_ms=20,
        telephone_event_payload_type=101,
        remote_address="127.0.0.1",
        remote_port=10024,
        direction=Direction.SENDRECV,
        receive_payload_type=96,
        receive_telephone_event_payload_type=101,
        held_by_remote=False,
    )
    assert answer.media.fmtp_parameters() == {"stereo": "1", "sprop-stereo": "1"}


@pytest.mark.parametrize(
    ("preference", "codec", "payload_type", "clock_rate_hz"),
    [
        (["G722", "PCMU"], "G722", 9, 8000),
        (["PCMA", "PCMU"], "PCMA", 8, 8000),
        (["AMR-WB", "PCMU"], "PCMU", 0, 8000),
    ],
)
def test_baresip_offer_follows_our_preference_order(
    preference: list[str], codec: str, payload_type: int, clock_rate_hz: int
) -> None:
    media = answer_to(vector("baresip_pcmu_pcma_g722_opus.sdp"), preference).media
    assert (media.codec, media.payload_type, media.clock_rate_hz) == (
        codec,
        payload_type,
        clock_rate_hz,
    )
    assert media.telephone_event_payload_type == 101


def test_linphone_offer_pairs_opus_with_telephone_event_at_48000() -> None:
    answer = answer_to(vector("linphone_opus_speex_pcmu_pcma_g729.sdp"))
    assert answer.sdp.media[0].formats == ("96", "99")
    assert answer.sdp.media[0].rtpmap(99) == RtpMap(99, "telephone-event", 48000)
    assert (answer.media.codec, answer.media.telephone_event_payload_type) == ("opus", 99)
    assert answer.media.fmtp == "useinbandfec=1"
    assert answer.media.ptime_ms == 20  # linphone sends no a=ptime: ours is used


def test_linphone_static_pcmu_without_rtpmap_is_matched() -> None:
    answer = answer_to(vector("linphone_opus_speex_pcmu_pcma_g729.sdp"), ["PCMU"])
    assert answer.sdp.media[0].formats == ("0", "101")
    assert "a=rtpmap:0 PCMU/8000\r\n" in str(answer.sdp)  # RFC 3264 §6.1: SHOULD map statics
    assert answer.media.telephone_event_payload_type == 101


def test_sipp_offer_gets_pcmu_without_telephone_event() -> None:
    answer = answer_to(vector("sipp_uac_pcmu.sdp"))
    assert answer.sdp.media[0].formats == ("0",)
    assert answer.media.codec == "PCMU"
    assert answer.media.telephone_event_payload_type is None
    assert (answer.media.remote_address, answer.media.remote_port) == ("127.0.0.1", 6000)


def test_g729_only_offer_gets_488_with_305_warning_naming_our_codecs() -> None:
    result = negotiate(
        SessionDescription.parse(audio_offer("18 101", "a=rtpmap:101 telephone-event/8000\r\n")),
        preference=PREFERENCE,
        **LOCAL,
    )
    assert isinstance(result, NoCommonCodec)
    assert result.status_code == 488
    assert result.warn_code == 305
    assert result.warning == (
        "Incompatible media format: supported codecs are opus/48000/2, G722/8000, PCMU/8000, "
        "PCMA/8000"
    )
    assert result.warning_header("sip.example.com") == (
        '305 sip.example.com "Incompatible media format: supported codecs are opus/48000/2, '
        'G722/8000, PCMU/8000, PCMA/8000"'
    )


def test_linphone_offer_without_amr_wb_is_no_common_codec() -> None:
    result = negotiate(
        vector("linphone_opus_speex_pcmu_pcma_g729.sdp"), preference=["AMR-WB"], **LOCAL
    )
    assert isinstance(result, NoCommonCodec)
    assert result.warning == "Incompatible media format: supported codecs are AMR-WB/16000"


# --- RFC 4317 ------------------------------------------------------------------------


def test_rfc4317_2_1_video_is_rejected_with_port_0_keeping_order() -> None:
    answer = answer_to(vector("rfc4317_2_1_offer.sdp"), ["PCMU"])
    audio, video = answer.sdp.media
    assert (audio.port, audio.formats) == (40000, ("0",))
    assert (video.media, video.port, video.proto, video.formats) == ("video", 0, "RTP/AVP",
                                                                     ("31", "32"))  # fmt: skip
    assert video.attributes == ()
    assert answer.media.remote_address == "host.atlanta.example.com"


def test_rfc4317_2_1_answer_has_the_same_audio_codec_as_ours() -> None:
    theirs = vector("rfc4317_2_1_answer.sdp").media[0]
    ours = answer_to(vector("rfc4317_2_1_offer.sdp"), ["PCMU"]).sdp.media[0]
    assert ours.rtpmaps == theirs.rtpmaps


def test_rfc4317_2_4_second_telephone_event_stream_is_rejected() -> None:
    answer = answer_to(vector("rfc4317_2_4_offer.sdp"), ["PCMU"])
    first, second = answer.sdp.media
    assert (first.port, first.formats) == (40000, ("0",))
    assert (second.port, second.formats) == (0, ("98",))


def test_rfc4317_2_6_first_audio_stream_with_a_common_codec_is_taken() -> None:
    answer = answer_to(vector("rfc4317_2_6_offer.sdp"), ["PCMU"])
    assert [m.port for m in answer.sdp.media] == [40000, 0]
    assert answer.media.remote_port == 49170


def test_rfc4317_5_1_offer_without_media_gets_304() -> None:
    result = negotiate(vector("rfc4317_5_1_offer.sdp"), preference=PREFERENCE, **LOCAL)
    assert isinstance(result, NoCommonCodec)
    assert result.warn_code == 304
    assert result.warning == (
        "Media type not available: supported media is audio RTP/AVP with opus/48000/2, "
        "G722/8000, PCMU/8000, PCMA/8000"
    )


@pytest.mark.parametrize(
    ("name", "preference"),
    [("rfc4317_5_2_offer.sdp", PREFERENCE), ("rfc4317_2_4_offer.sdp", ["G722", "opus"])],
)
def test_rfc4317_offers_without_our_codecs_get_305(name: str, preference: list[str]) -> None:
    result = negotiate(vector(name), preference=preference, **LOCAL)
    assert isinstance(result, NoCommonCodec)
    assert result.warn_code == 305


# --- direction and hold ------------------------------------------------------------

D = Direction


@pytest.mark.parametrize(
    ("offered", "local", "expected"),
    [
        (D.SENDRECV, D.SENDRECV, D.SENDRECV),
        (D.SENDONLY, D.SENDRECV, D.RECVONLY),
        (D.RECVONLY, D.SENDRECV, D.SENDONLY),
        (D.INACTIVE, D.SENDRECV, D.INACTIVE),
        (D.SENDRECV, D.SENDONLY, D.SENDONLY),
        (D.SENDONLY, D.SENDONLY, D.INACTIVE),
        (D.RECVONLY, D.SENDONLY, D.SENDONLY),
        (D.SENDRECV, D.RECVONLY, D.RECVONLY),
        (D.RECVONLY, D.RECVONLY, D.INACTIVE),
        (D.SENDRECV, D.INACTIVE, D.INACTIVE),
    ],
)
def test_answer_direction_mirrors_the_offer_rfc3264_6_1(
    offered: Direction, local: Direction, expected: Direction
) -> None:
    assert answer_direction(offered, local) is expected
    result = negotiate(
        SessionDescription.parse(audio_offer("0", f"a={offered}\r\n")),
        preference=["PCMU"],
        local_direction=local,
        **LOCAL,
    )
    assert isinstance(result, Answer)
    assert result.sdp.media[0].direction is expected
    assert result.media.direction is expected


def test_baresip_hold_reinvite_is_answered_recvonly_and_flagged() -> None:
    answer = answer_to(vector("baresip_hold_sendonly_reinvite.sdp"))
    assert answer.sdp.media[0].direction is Direction.RECVONLY
    assert answer.media.held_by_remote
    assert answer.media.codec == "PCMU"


def test_baresip_resume_reinvite_is_answered_sendrecv() -> None:
    answer = answer_to(vector("baresip_resume_sendrecv_reinvite.sdp"))
    assert answer.sdp.media[0].direction is Direction.SENDRECV
    assert not answer.media.held_by_remote


def test_null_address_offer_mirrors_in_sdp_but_never_sends() -> None:
    answer = answer_to(audio_offer("0", address="0.0.0.0"), ["PCMU"])
    assert answer.sdp.media[0].direction is Direction.SENDRECV  # as RFC 4317 §5.2 answers
    assert answer.media.direction is Direction.RECVONLY  # RFC 3264 §8.4: send nothing there
    assert answer.media.held_by_remote


def test_session_level_direction_applies_to_the_stream() -> None:
    text = audio_offer("0").replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n")
    answer = answer_to(text, ["PCMU"])
    assert answer.sdp.media[0].direction is Direction.INACTIVE
    assert answer.media.held_by_remote


# --- matching rules ------------------------------------------------------------------


def test_dynamic_payload_type_and_name_case_of_the_offer_are_kept() -> None:
    answer = answer_to(audio_offer("111 0", "a=rtpmap:111 OPUS/48000/2\r\n"))
    assert answer.sdp.media[0].formats == ("111",)
    assert answer.sdp.media[0].rtpmap(111) == RtpMap(111, "OPUS", 48000, 2)
    assert (answer.media.codec, answer.media.payload_type) == ("opus", 111)


@pytest.mark.parametrize("rtpmap", ["opus/16000/2", "opus/48000", "opus/48000/1", "G722/16000"])
def test_clock_rate_and_channels_must_match(rtpmap: str) -> None:
    result = negotiate(
        SessionDescription.parse(audio_offer("100", f"a=rtpmap:100 {rtpmap}\r\n")),
        preference=PREFERENCE,
        **LOCAL,
    )
    assert isinstance(result, NoCommonCodec)


def test_opus_answer_states_our_fmtp_and_reports_theirs() -> None:
    offer = audio_offer("96", "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 maxplaybackrate=16000\r\n")
    answer = answer_to(offer)
    assert answer.sdp.media[0].fmtp(96) == "useinbandfec=1"
    assert answer.media.fmtp_parameters() == {"maxplaybackrate": "16000"}


def test_amr_wb_answer_echoes_the_offered_octet_align_mode() -> None:
    offer = audio_offer(
        "98 102 0",
        "a=rtpmap:98 AMR-WB/16000\r\na=fmtp:98 octet-align=1\r\n"
        "a=rtpmap:102 telephone-event/16000\r\n",
    )
    answer = answer_to(offer, ["AMR-WB", "PCMU"])
    assert answer.sdp.media[0].fmtp(98) == "octet-align=1"
    assert (answer.media.codec, answer.media.clock_rate_hz) == ("AMR-WB", 16000)
    assert answer.media.telephone_event_payload_type == 102


def test_amr_wb_left_out_of_the_preference_is_never_chosen() -> None:
    offer = audio_offer("98 0", "a=rtpmap:98 AMR-WB/16000\r\n")
    assert answer_to(offer, ["PCMU"]).media.codec == "PCMU"


def test_telephone_event_prefers_the_codec_clock_rate_then_8000() -> None:
    events = "a=rtpmap:100 telephone-event/16000\r\na=rtpmap:101 telephone-event/8000\r\n"
    offer = audio_offer("96 9 100 101", "a=rtpmap:96 opus/48000/2\r\n" + events)
    assert answer_to(offer, ["opus"]).media.telephone_event_payload_type == 101
    assert answer_to(offer, ["G722"]).media.telephone_event_payload_type == 101
    only_16k = audio_offer("9 100", "a=rtpmap:100 telephone-event/16000\r\n")
    assert answer_to(only_16k, ["G722"]).media.telephone_event_payload_type is None


def test_ptime_follows_the_offer_capped_by_its_maxptime() -> None:
    assert answer_to(audio_offer("0", "a=ptime:30\r\n")).media.ptime_ms == 30
    assert answer_to(audio_offer("0", "a=ptime:30\r\na=maxptime:20\r\n")).media.ptime_ms == 20
    assert answer_to(audio_offer("0", "a=maxptime:10\r\n")).media.ptime_ms == 10


def test_srtp_and_rejected_audio_lines_are_not_accepted() -> None:
    text = audio_offer("0").replace("RTP/AVP", "RTP/SAVP") + "m=audio 0 RTP/AVP 0\r\n"
    result = negotiate(SessionDescription.parse(text), preference=PREFERENCE, **LOCAL)
    assert isinstance(result, NoCommonCodec)
    assert result.warn_code == 304


def test_audio_line_without_any_connection_address_is_not_usable() -> None:
    text = audio_offer("0").replace("c=IN IP4 10.0.0.1\r\n", "")
    result = negotiate(SessionDescription.parse(text), preference=PREFERENCE, **LOCAL)
    assert isinstance(result, NoCommonCodec)
    assert result.warn_code == 304


def test_ipv6_local_address_is_written_as_ip6() -> None:
    result = negotiate(
        vector("sipp_uac_pcmu.sdp"),
        preference=["PCMU"],
        local_address="2001:db8::10",
        local_port=40000,
        session_id=1,
        session_version=1,
    )
    assert isinstance(result, Answer)
    assert str(result.sdp).splitlines()[1:4] == [
        "o=- 1 1 IN IP6 2001:db8::10",
        "s=-",
        "c=IN IP6 2001:db8::10",
    ]


# --- capability set ------------------------------------------------------------------


def test_capabilities_hold_only_codecs_we_encode_and_decode() -> None:
    assert sorted(s.label for s in CODECS.values()) == [
        "AMR-WB/16000",
        "G722/8000",
        "PCMA/8000",
        "PCMU/8000",
        "opus/48000/2",
    ]
    assert codec_spec("G.722").sample_rate_hz == 16000
    assert codec_spec("g.722.2") is codec_spec("AMR-WB")


@pytest.mark.parametrize("name", ["iLBC", "G.722.1", "G7221", "G729", "speex"])
def test_codecs_we_cannot_encode_are_refused(name: str) -> None:
    with pytest.raises(ValueError) as caught:
        negotiate(vector("sipp_uac_pcmu.sdp"), preference=[name], **LOCAL)
    assert str(caught.value) == (
        f"unsupported codec {name!r}; sipline supports PCMU, PCMA, G722, opus, AMR-WB"
    )


def test_empty_preference_is_refused() -> None:
    with pytest.raises(ValueError, match="^codec preference is empty$"):
        resolve_preference([])


# --- our offers and their answers ----------------------------------------------------


def test_build_offer_matches_the_vector_sent_to_baresip_and_linphone() -> None:
    offer = build_offer(
        preference=PREFERENCE,
        local_address="127.0.0.1",
        local_port=40000,
        session_id=1700000000,
        session_version=1700000000,
    )
    assert bytes(offer) == (VECTORS / "sipline_offer_opus_g722_pcmu_pcma.sdp").read_bytes()


def test_build_offer_adds_telephone_event_per_clock_rate() -> None:
    offer = build_offer(preference=["AMR-WB", "PCMU"], **LOCAL)
    audio = offer.media[0]
    assert audio.formats == ("97", "0", "102", "101")
    assert [str(r) for r in audio.rtpmaps] == [
        "97 AMR-WB/16000",
        "0 PCMU/8000",
        "102 telephone-event/16000",
        "101 telephone-event/8000",
    ]


def test_baresip_answer_to_our_offer_is_accepted() -> None:
    media = accept_answer(
        vector("sipline_offer_opus_g722_pcmu_pcma.sdp"),
        vector("baresip_answer_to_sipline_offer.sdp"),
    )
    assert (media.codec, media.payload_type, media.telephone_event_payload_type) == (
        "opus",
        96,
        101,
    )
    assert (media.remote_address, media.remote_port, media.ptime_ms) == ("127.0.0.1", 10004, 20)
    assert media.direction is Direction.SENDRECV
    assert media.fmtp == "stereo=1;sprop-stereo=1"


def test_linphone_answer_to_our_offer_uses_telephone_event_at_48000() -> None:
    media = accept_answer(
        vector("sipline_offer_opus_g722_pcmu_pcma.sdp"),
        vector("linphone_answer_to_sipline_offer.sdp"),
    )
    assert (media.codec, media.payload_type, media.telephone_event_payload_type) == (
        "opus",
        96,
        103,
    )
    assert media.receive_telephone_event_payload_type == 103
    assert (media.remote_port, media.ptime_ms) == (7078, 20)


def _offer() -> SessionDescription:
    return build_offer(preference=PREFERENCE, **LOCAL)


def test_renumbered_answer_sends_with_its_numbers_and_receives_with_ours() -> None:
    answer = audio_offer(
        "111 110", "a=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/8000\r\n"
    )
    media = accept_answer(_offer(), SessionDescription.parse(answer))
    assert (media.payload_type, media.receive_payload_type) == (111, 96)
    assert (media.telephone_event_payload_type, media.receive_telephone_event_payload_type) == (
        110,
        101,
    )


@pytest.mark.parametrize(
    ("answered", "direction", "held"),
    [("sendrecv", D.SENDRECV, False), ("sendonly", D.RECVONLY, True), ("inactive", D.INACTIVE, True)],
)  # fmt: skip
def test_answer_direction_is_read_from_our_side(
    answered: str, direction: Direction, held: bool
) -> None:
    media = accept_answer(_offer(), SessionDescription.parse(audio_offer("0", f"a={answered}\r\n")))
    assert (media.direction, media.held_by_remote) == (direction, held)


def test_our_hold_offer_answered_recvonly_is_sendonly_for_us() -> None:
    offer = build_offer(preference=["PCMU"], direction=Direction.SENDONLY, **LOCAL)
    media = accept_answer(offer, SessionDescription.parse(audio_offer("0", "a=recvonly\r\n")))
    assert (media.direction, media.held_by_remote) == (Direction.SENDONLY, False)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (audio_offer("0") + "m=video 0 RTP/AVP 31\r\n", "answer has 2 m-lines but the offer has 1"),
        (audio_offer("0").replace("5004", "0"), "answer rejected the audio stream (m-line 1, port 0)"),
        (audio_offer("18"), "answer has no codec from our offer"),
        (audio_offer("0").replace("c=IN IP4 10.0.0.1\r\n", ""),
         "no c= line applies to the audio stream"),
    ],
)  # fmt: skip
def test_broken_answers_raise_answer_error(answer: str, message: str) -> None:
    with pytest.raises(AnswerError) as caught:
        accept_answer(_offer(), SessionDescription.parse(answer))
    assert str(caught.value) == message


# --- properties ------------------------------------------------------------------------

POOL = [
    ("PCMU", 8000, 1), ("PCMA", 8000, 1), ("G722", 8000, 1), ("opus", 48000, 2),
    ("AMR-WB", 16000, 1), ("iLBC", 8000, 1), ("G729", 8000, 1), ("speex", 16000, 1),
    ("G7221", 16000, 1), ("GSM", 8000, 1), ("telephone-event", 8000, 1),
    ("telephone-event", 48000, 1),
]  # fmt: skip
NAMES = ["opus", "G722", "AMR-WB", "PCMU", "PCMA"]


@st.composite
def offers(draw: st.DrawFn) -> SessionDescription:
    chosen = draw(st.lists(st.sampled_from(POOL), unique=True, max_size=len(POOL)))
    numbers = draw(st.lists(st.integers(96, 127), unique=True, min_size=len(chosen),
                            max_size=len(chosen)))  # fmt: skip
    if not chosen:
        return SessionDescription.parse(audio_offer("13"))
    formats = " ".join(map(str, numbers))
    rtpmaps = "".join(
        f"a=rtpmap:{pt} {name}/{rate}{'/2' if channels == 2 else ''}\r\n"
        for pt, (name, rate, channels) in zip(numbers, chosen, strict=True)
    )
    return SessionDescription.parse(audio_offer(formats, rtpmaps))


preferences = st.permutations(NAMES).flatmap(
    lambda names: st.integers(1, len(names)).map(lambda n: list(names[:n]))
)


@given(offers(), preferences)
def test_answer_codec_is_offered_and_first_of_our_preference(
    offer: SessionDescription, preference: list[str]
) -> None:
    result = negotiate(offer, preference=preference, **LOCAL)
    offered = offer.media[0].rtpmaps
    wanted = [s for s in resolve_preference(preference) if any(s.matches(r) for r in offered)]
    if not wanted:
        assert isinstance(result, NoCommonCodec)
        return
    assert isinstance(result, Answer)
    assert result.media.codec == wanted[0].name
    answered = result.sdp.media[0]
    assert set(answered.formats) <= set(offer.media[0].formats)
    assert set(answered.rtpmaps) <= set(offered)
    assert SessionDescription.parse(str(result.sdp)) == result.sdp


@given(preferences, preferences)
def test_offer_negotiate_accept_agree_between_two_sipline_peers(
    ours: list[str], theirs: list[str]
) -> None:
    offer = build_offer(preference=ours, **LOCAL)
    result = negotiate(offer, preference=theirs, local_address="198.51.100.7", local_port=50000,
                       session_id=1, session_version=1)  # fmt: skip
    if not set(ours) & set(theirs):
        assert isinstance(result, NoCommonCodec)
        return
    assert isinstance(result, Answer)
    accepted = accept_answer(offer, result.sdp)
    assert accepted.codec == result.media.codec
    assert accepted.payload_type == result.media.receive_payload_type
    assert accepted.telephone_event_payload_type == result.media.telephone_event_payload_type
    assert (accepted.remote_address, accepted.remote_port) == ("198.51.100.7", 50000)
    assert (result.media.remote_address, result.media.remote_port) == ("192.0.2.10", 40000)
