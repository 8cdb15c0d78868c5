"""SessionDescription parse/serialize (RFC 8866) on captured and RFC 4317 SDP."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.sip.sdp.description import (
    Attribute,
    Bandwidth,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtcpAttribute,
    RtpMap,
    SdpParseError,
    SessionDescription,
    Timing,
)
from relay.sip.sdp.fields import fmtp_parameters

VECTORS = Path(__file__).parents[4] / "vectors" / "sdp"
VECTOR_FILES = sorted(VECTORS.glob("*.sdp"))
SDP_DIR = Path(__file__).parents[5] / "relay" / "sip" / "sdp"
SDP_MODULES = ["description.py", "fields.py", "codecs.py", "offer_answer.py"]
FORBIDDEN_IMPORTS = {
    "asyncio", "socket", "ssl", "time", "random", "secrets", "boto3", "websockets",
}  # fmt: skip


def vector(name: str) -> SessionDescription:
    return SessionDescription.parse((VECTORS / name).read_bytes())


def test_vectors_folder_is_not_empty() -> None:
    assert len(VECTOR_FILES) >= 20


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda p: p.name)
def test_every_vector_round_trips_through_str(path: Path) -> None:
    sdp = SessionDescription.parse(path.read_bytes())
    assert SessionDescription.parse(str(sdp)) == sdp


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda p: p.name)
def test_every_vector_serializes_back_to_its_exact_bytes(path: Path) -> None:
    data = path.read_bytes()
    assert bytes(SessionDescription.parse(data)) == data


def test_baresip_offer_fields_are_read() -> None:
    sdp = vector("baresip_pcmu_pcma_g722_opus.sdp")
    assert sdp.origin == Origin("-", 2284182786, 1259338169, "127.0.0.1")
    assert sdp.session_name == "-"
    assert sdp.connection == Connection("127.0.0.1")
    assert sdp.timings == (Timing(0, 0),)
    assert sdp.attributes == (Attribute("tool", "baresip 1.0.0"),)
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 10024, "RTP/AVP")
    assert audio.formats == ("0", "8", "9", "96", "101")
    assert audio.rtpmaps == (
        RtpMap(0, "PCMU", 8000),
        RtpMap(8, "PCMA", 8000),
        RtpMap(9, "G722", 8000),
        RtpMap(96, "opus", 48000, 2),
        RtpMap(101, "telephone-event", 8000),
    )
    assert audio.fmtp(96) == "stereo=1;sprop-stereo=1"
    assert audio.fmtp(101) == "0-15"
    assert audio.fmtp(0) is None
    assert audio.ptime_ms == 20
    assert audio.direction is Direction.SENDRECV


def test_unknown_attributes_are_kept_in_order() -> None:
    audio = vector("baresip_pcmu_pcma_g722_opus.sdp").media[0]
    names = [a.name for a in audio.attributes]
    assert names[-6:] == ["sendrecv", "label", "rtcp-rsize", "ssrc", "minptime", "ptime"]
    assert audio.attribute_values("ssrc") == ("271403299 cname:sip:bob@127.0.0.1",)
    assert audio.attribute_values("rtcp-rsize") == (None,)


def test_linphone_static_payload_types_resolve_without_rtpmap() -> None:
    audio = vector("linphone_opus_speex_pcmu_pcma_g729.sdp").media[0]
    assert audio.rtpmap(0) == RtpMap(0, "PCMU", 8000)
    assert audio.rtpmap(8) == RtpMap(8, "PCMA", 8000)
    assert audio.rtpmap(18) == RtpMap(18, "G729", 8000)
    assert audio.fmtp(18) == "annexb=yes"
    assert [r.clock_rate_hz for r in audio.rtpmaps if r.encoding_name == "telephone-event"] == [
        48000,
        16000,
        8000,
    ]
    assert audio.attribute_values("rtcp-fb") == ("* trr-int 5000", "* ccm tmmbr")


def test_g722_static_payload_type_has_an_8000_clock() -> None:
    sdp = SessionDescription.parse("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio 5 RTP/AVP 9\n")
    assert sdp.media[0].rtpmap(9) == RtpMap(9, "G722", 8000)


def test_rtpmap_overrides_the_static_table() -> None:
    media = MediaDescription(
        "audio", 5, "RTP/AVP", ("3",), attributes=(Attribute("rtpmap", "3 L16/16000"),)
    )
    assert media.rtpmap(3) == RtpMap(3, "L16", 16000)


def test_formats_that_are_not_payload_types_are_skipped() -> None:
    sdp = SessionDescription.parse(HEAD + "m=audio 5 RTP/AVP \u00b2 0 128 " + "9" * 5000 + "\r\n")
    assert sdp.media[0].payload_types == (0,)
    with pytest.raises(SdpParseError, match="^line 5: port must be 0-65535: 'm=audio"):
        SessionDescription.parse(HEAD + "m=audio \u00b2 RTP/AVP 0\r\n")


def test_dynamic_payload_type_without_rtpmap_is_unmapped() -> None:
    media = MediaDescription("audio", 5, "RTP/AVP", ("0", "96"))
    assert media.rtpmap(96) is None
    assert media.rtpmaps == (RtpMap(0, "PCMU", 8000),)


def test_lf_only_input_parses_like_crlf() -> None:
    data = (VECTORS / "baresip_pcmu_pcma_g722_opus.sdp").read_text()
    assert SessionDescription.parse(data.replace("\r\n", "\n")) == SessionDescription.parse(data)


def test_blank_lines_are_skipped() -> None:
    sdp = SessionDescription.parse("v=0\r\n\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n\r\n")
    assert str(sdp) == "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n"


def test_rfc4317_media_level_connection_overrides_session_level() -> None:
    sdp = vector("rfc4317_2_8_answer.sdp")
    audio, video = sdp.media
    assert sdp.connection_for(audio) == Connection("host.biloxi.example.com")
    assert sdp.connection_for(video) == Connection("otherhost.biloxi.example.com")


def test_rfc4317_session_name_is_a_single_space() -> None:
    assert vector("rfc4317_2_1_offer.sdp").session_name == " "


def test_rfc4317_offer_without_media_parses() -> None:
    assert vector("rfc4317_5_1_offer.sdp").media == ()


def test_rtcp_rtcp_mux_maxptime_and_bandwidth_are_read() -> None:
    sdp = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nb=AS:128\r\nt=0 0\r\n"
        "m=audio 49170/2 RTP/AVP 0\r\nb=AS:64\r\n"
        "a=rtcp:53020 IN IP4 126.16.64.4\r\na=rtcp-mux\r\na=maxptime:40\r\na=ptime:20.0\r\n"
    )
    (audio,) = sdp.media
    assert sdp.bandwidths == (Bandwidth("AS", 128),)
    assert audio.bandwidths == (Bandwidth("AS", 64),)
    assert audio.number_of_ports == 2
    assert audio.rtcp == RtcpAttribute(53020, "126.16.64.4")
    assert audio.rtcp_mux
    assert (audio.ptime_ms, audio.maxptime_ms) == (20, 40)
    assert str(sdp).splitlines()[5] == "m=audio 49170/2 RTP/AVP 0"


def test_absent_optional_attributes_read_as_none() -> None:
    audio = vector("sipp_uac_pcmu.sdp").media[0]
    assert (audio.ptime_ms, audio.maxptime_ms, audio.rtcp, audio.rtcp_mux) == (
        None,
        None,
        None,
        False,
    )
    assert audio.direction is None


def test_fmtp_parameters_split_into_lowercase_names() -> None:
    assert fmtp_parameters("Stereo=1; sprop-stereo=1;maxaveragebitrate=28000") == {
        "stereo": "1",
        "sprop-stereo": "1",
        "maxaveragebitrate": "28000",
    }
    assert fmtp_parameters("0-15") == {"0-15": ""}
    assert fmtp_parameters(None) == {}


# --- direction and hold ----------------------------------------------------------


def _with(direction_lines: str, *, session: str = "", address: str = "10.0.0.1") -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n{session}"
        f"m=audio 5004 RTP/AVP 0\r\n{direction_lines}"
    )


@pytest.mark.parametrize(
    ("text", "direction", "hold"),
    [
        (_with(""), Direction.SENDRECV, False),
        (_with("a=sendrecv\r\n"), Direction.SENDRECV, False),
        (_with("a=sendonly\r\n"), Direction.SENDONLY, True),
        (_with("a=inactive\r\n"), Direction.INACTIVE, True),
        (_with("a=recvonly\r\n"), Direction.RECVONLY, False),
        (_with("", session="a=sendonly\r\n"), Direction.SENDONLY, True),
        (_with("a=sendrecv\r\n", session="a=inactive\r\n"), Direction.SENDRECV, False),
        (_with("", address="0.0.0.0"), Direction.SENDRECV, True),
    ],
    ids=[
        "default",
        "sendrecv",
        "sendonly",
        "inactive",
        "recvonly",
        "session-sendonly",
        "media-overrides-session",
        "rfc2543-null-address",
    ],
)
def test_effective_direction_and_hold(text: str, direction: Direction, hold: bool) -> None:
    sdp = SessionDescription.parse(text)
    assert sdp.direction_for(sdp.media[0]) is direction
    assert sdp.is_hold(sdp.media[0]) is hold


def test_baresip_hold_and_resume_reinvites_are_recognised() -> None:
    held = vector("baresip_hold_sendonly_reinvite.sdp")
    resumed = vector("baresip_resume_sendrecv_reinvite.sdp")
    assert held.is_hold(held.media[0])
    assert not resumed.is_hold(resumed.media[0])
    assert resumed.origin.session_version == held.origin.session_version + 1


def test_rfc4317_null_address_offer_is_a_hold() -> None:
    sdp = vector("rfc4317_5_2_offer.sdp")
    assert sdp.is_hold(sdp.media[0])


# --- building --------------------------------------------------------------------


def test_built_description_serializes_with_crlf_in_rfc8866_order() -> None:
    sdp = SessionDescription(
        origin=Origin("-", 42, 43, "192.0.2.10"),
        connection=Connection("192.0.2.10"),
        attributes=(Attribute("tool", "sipline"),),
        media=(
            MediaDescription(
                "audio",
                40000,
                "RTP/AVP",
                ("0", "101"),
                attributes=(
                    RtpMap(0, "PCMU", 8000).to_attribute(),
                    RtpMap(101, "telephone-event", 8000).to_attribute(),
                    Attribute("sendrecv"),
                ),
            ),
        ),
    )
    assert str(sdp) == (
        "v=0\r\no=- 42 43 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        "a=tool:sipline\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
    assert bytes(sdp) == str(sdp).encode()
    assert SessionDescription.parse(bytes(sdp)) == sdp


def test_with_version_bumps_only_the_origin_version() -> None:
    sdp = vector("sipp_uac_pcmu.sdp")
    bumped = sdp.with_version(sdp.origin.session_version + 1)
    assert bumped.origin.session_version == 2353687638
    assert bumped.origin.session_id == sdp.origin.session_id
    assert bumped.media == sdp.media


def test_lines_out_of_rfc_order_are_written_back_in_order() -> None:
    sdp = SessionDescription.parse("v=0\no=- 1 1 IN IP4 h\nt=0 0\ns=x\nc=IN IP4 h\na=k\n")
    assert str(sdp) == "v=0\r\no=- 1 1 IN IP4 h\r\ns=x\r\nc=IN IP4 h\r\nt=0 0\r\na=k\r\n"


def test_all_optional_session_lines_round_trip() -> None:
    text = (
        "v=0\r\no=jdoe 2890844526 2890842807 IN IP4 10.47.16.5\r\ns=SDP Seminar\r\n"
        "i=A Seminar on the session description protocol\r\n"
        "u=http://www.example.com/seminars/sdp.pdf\r\ne=j.doe@example.com (Jane Doe)\r\n"
        "p=+1 617 555-6011\r\nc=IN IP4 224.2.17.12/127\r\nb=CT:1000\r\n"
        "t=2873397496 2873404696\r\nr=7d 1h 0 25h\r\nz=2882844526 -1h 2898848070 0\r\n"
        "k=prompt\r\na=recvonly\r\nm=audio 49170 RTP/AVP 0\r\ni=voice\r\nk=prompt\r\n"
        "m=video 51372 RTP/AVP 99\r\nc=IN IP6 ff15::101/3\r\na=rtpmap:99 h263-1998/90000\r\n"
    )
    sdp = SessionDescription.parse(text)
    assert str(sdp) == text
    assert sdp.timings == (Timing(2873397496, 2873404696, ("7d 1h 0 25h",)),)
    assert sdp.media[1].connection == Connection("ff15::101/3", address_type="IP6")


# --- errors ------------------------------------------------------------------------

HEAD = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty session description"),
        ("\r\n\r\n", "empty session description"),
        ("o=- 1 1 IN IP4 h\r\n", "line 1: SDP must begin with v=: 'o=- 1 1 IN IP4 h'"),
        ("v=1\r\n", "line 1: unsupported SDP version (expected v=0): 'v=1'"),
        ("v=0\r\ns=-\r\n", "missing o= line"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\n", "missing s= line"),
        ("v=0\r\no=- 1 IN IP4 h\r\n", "line 2: o= needs 6 fields: 'o=- 1 IN IP4 h'"),
        (
            "v=0\r\no=- x 1 IN IP4 h\r\n",
            "line 2: o= session id and version must be numbers: 'o=- x 1 IN IP4 h'",
        ),
        ("v=0\r\nv=0\r\n", "line 2: duplicate v= line: 'v=0'"),
        (HEAD + "c=IN IP4\r\n", "line 5: c= needs '<nettype> <addrtype> <address>': 'c=IN IP4'"),
        (HEAD + "c=IN IP4 a\r\nc=IN IP4 b\r\n", "line 6: duplicate c= line: 'c=IN IP4 b'"),
        (HEAD + "b=AS\r\n", "line 5: b= needs '<bwtype>:<bandwidth>': 'b=AS'"),
        ("v=0\r\nt=now\r\n", "line 2: t= needs '<start time> <stop time>': 't=now'"),
        ("v=0\r\nr=7d 1h 0 25h\r\n", "line 2: r= must follow a t= line: 'r=7d 1h 0 25h'"),
        (HEAD + "x=1\r\n", "line 5: x= is not allowed here: 'x=1'"),
        (HEAD + "garbage\r\n", "line 5: expected '<type>=<value>': 'garbage'"),
        (HEAD + "a=\r\n", "line 5: a= needs an attribute name: 'a='"),
        (HEAD + "m=audio 0 RTP/AVP\r\n", "line 5: m= needs '<media> <port> <proto> <fmt> ...': "
         "'m=audio 0 RTP/AVP'"),
        (HEAD + "m=audio 70000 RTP/AVP 0\r\n", "line 5: port must be 0-65535: "
         "'m=audio 70000 RTP/AVP 0'"),
        (HEAD + "m=audio 5/0 RTP/AVP 0\r\n", "line 5: m= number of ports must be a positive "
         "integer: 'm=audio 5/0 RTP/AVP 0'"),
        (HEAD + "m=audio 5 RTP/AVP 0\r\nt=0 0\r\n", "line 6: t= is not allowed in a media "
         "description: 't=0 0'"),
        (HEAD + "m=audio 5 RTP/AVP 0\r\nc=IN IP4 a\r\nc=IN IP4 b\r\n",
         "line 7: duplicate c= line: 'c=IN IP4 b'"),
        (HEAD + "m=audio 5 RTP/AVP 96\r\na=rtpmap:96 opus\r\n", "line 6: rtpmap needs "
         "'<pt> <encoding>/<clock rate>[/<channels>]': 'a=rtpmap:96 opus'"),
        (HEAD + "m=audio 5 RTP/AVP 96\r\na=rtpmap:200 opus/48000\r\n",
         "line 6: payload type must be 0-127: 'a=rtpmap:200 opus/48000'"),
        (HEAD + "m=audio 5 RTP/AVP 96\r\na=rtpmap:96 opus/0/2\r\n",
         "line 6: rtpmap clock rate must be a positive integer: 'a=rtpmap:96 opus/0/2'"),
        (HEAD + "m=audio 5 RTP/AVP 96\r\na=rtpmap:96 opus/48000/x\r\n",
         "line 6: rtpmap channels must be a positive integer: 'a=rtpmap:96 opus/48000/x'"),
        (HEAD + "m=audio 5 RTP/AVP 0\r\na=ptime:soon\r\n",
         "line 6: packet time must be a number of milliseconds: 'a=ptime:soon'"),
        (HEAD + "m=audio 5 RTP/AVP 0\r\na=maxptime:-20\r\n",
         "line 6: packet time must be a number of milliseconds: 'a=maxptime:-20'"),
        (HEAD + "m=audio 5 RTP/AVP 0\r\na=fmtp:\r\n",
         "line 6: fmtp needs '<format> <parameters>': 'a=fmtp:'"),
        (HEAD + "m=audio 5 RTP/AVP 0\r\na=rtcp:x\r\n", "line 6: port must be 0-65535: 'a=rtcp:x'"),
        (HEAD + "m=audio 5 RTP/AVP 0\r\na=rtcp:5 IN IP4\r\n",
         "line 6: rtcp needs '<port> [IN <addrtype> <address>]': 'a=rtcp:5 IN IP4'"),
    ],
)  # fmt: skip
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(SdpParseError) as caught:
        SessionDescription.parse(text)
    assert str(caught.value) == message


def test_parse_error_carries_line_number_and_status_hint() -> None:
    with pytest.raises(SdpParseError) as caught:
        SessionDescription.parse(HEAD + "m=audio x RTP/AVP 0\r\n")
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.line_number, error.line, error.status_hint) == (5, "m=audio x RTP/AVP 0", 400)
    assert error.reason == "port must be 0-65535"


def test_parse_error_quotes_at_most_80_characters_of_a_line() -> None:
    with pytest.raises(SdpParseError) as caught:
        SessionDescription.parse("v=0\r\no=" + "x" * 500 + "\r\n")
    assert str(caught.value) == "line 2: o= needs 6 fields: '" + "o=" + "x" * 78 + "...'"


def test_non_utf8_bytes_are_a_parse_error() -> None:
    with pytest.raises(SdpParseError) as caught:
        SessionDescription.parse(b"v=0\r\ns=\xff\r\n")
    assert str(caught.value) == "line 2: not UTF-8 at byte 7: 's=\ufffd'"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_sdp_parse_error(data: bytes) -> None:
    try:
        sdp = SessionDescription.parse(data)
    except SdpParseError:
        return
    assert SessionDescription.parse(str(sdp)) == sdp


# --- property: what we build parses back equal --------------------------------------

TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.", min_size=1,
                max_size=12)  # fmt: skip
TEXT = st.text(
    st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20
)
CHECKED = {"rtpmap", "fmtp", "ptime", "maxptime", "rtcp"}
ATTRIBUTES = st.builds(
    Attribute,
    TOKEN.filter(lambda n: n not in CHECKED),
    st.one_of(st.none(), TEXT),
)
CONNECTIONS = st.builds(Connection, TOKEN, TOKEN, TOKEN)
MEDIA = st.builds(
    MediaDescription,
    media=TOKEN,
    port=st.integers(0, 65535),
    proto=TOKEN,
    formats=st.lists(TOKEN, min_size=1, max_size=4).map(tuple),
    number_of_ports=st.one_of(st.none(), st.integers(1, 8)),
    information=st.one_of(st.none(), TEXT),
    connection=st.one_of(st.none(), CONNECTIONS),
    bandwidths=st.lists(st.builds(Bandwidth, TOKEN, st.integers(0, 10**6)), max_size=2).map(tuple),
    attributes=st.lists(ATTRIBUTES, max_size=5).map(tuple),
)
SESSIONS = st.builds(
    SessionDescription,
    origin=st.builds(
        Origin, TOKEN, st.integers(0, 2**63), st.integers(0, 2**63), TOKEN, TOKEN, TOKEN
    ),
    session_name=TEXT,
    information=st.one_of(st.none(), TEXT),
    emails=st.lists(TEXT, max_size=2).map(tuple),
    connection=st.one_of(st.none(), CONNECTIONS),
    timings=st.lists(
        st.builds(Timing, st.integers(0, 2**32), st.integers(0, 2**32)), max_size=2
    ).map(tuple),  # fmt: skip
    attributes=st.lists(ATTRIBUTES, max_size=4).map(tuple),
    media=st.lists(MEDIA, max_size=3).map(tuple),
)


@given(SESSIONS)
def test_any_built_description_parses_back_equal(sdp: SessionDescription) -> None:
    assert SessionDescription.parse(str(sdp)) == sdp
    assert SessionDescription.parse(bytes(sdp)) == sdp


# --- sans-I/O ---------------------------------------------------------------------


@pytest.mark.parametrize("module", SDP_MODULES)
def test_sdp_modules_import_no_io_clock_or_randomness(module: str) -> None:
    tree = ast.parse((SDP_DIR / module).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert imported & FORBIDDEN_IMPORTS == set()
