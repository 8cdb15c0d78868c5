"""RTCP compound packets (RFC 3550 §6): captured baresip reports, generated packets, exact errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.media.rtcp import (
    Goodbye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtcpParseError,
    RtcpUnknown,
    SdesChunk,
    SdesItem,
    SenderReport,
    SourceDescription,
    compact_ntp,
    is_rtcp,
    ntp_timestamp,
    parse_compound,
    serialize_compound,
)

VECTORS = Path(__file__).resolve().parents[4] / "tests" / "vectors" / "rtp"
RTCP_BINS = sorted(VECTORS.glob("baresip_rtcp_*.bin"))
ALICE = 888354479
BOB = 1665925523


def load(name: str) -> list[RtcpPacket]:
    return parse_compound((VECTORS / name).read_bytes())


def test_vectors_are_there() -> None:
    assert len(RTCP_BINS) == 5


@pytest.mark.parametrize("path", RTCP_BINS, ids=lambda p: p.name)
def test_captured_compound_packet_round_trips_byte_for_byte(path: Path) -> None:
    data = path.read_bytes()
    assert serialize_compound(parse_compound(data)) == data
    assert is_rtcp(data)


def test_baresip_sender_report_with_sdes_cname() -> None:
    sr, sdes = load("baresip_rtcp_sr_sdes.bin")
    assert sr == SenderReport(
        ssrc=ALICE,
        ntp_timestamp=17199627194381201571,
        rtp_timestamp=67717,
        packet_count=252,
        octet_count=40320,
        reports=(
            ReportBlock(
                ssrc=BOB, fraction_lost=0, packets_lost=0, highest_sequence=24350, jitter=74
            ),
        ),
    )
    assert isinstance(sdes, SourceDescription)
    assert sdes.chunks[0].ssrc == ALICE
    assert sdes.chunks[0].cname == "sip:alice@127.0.0.1:5262"


def test_baresip_ntp_timestamp_is_the_wall_clock_of_the_capture() -> None:
    (peer_sr, _) = load("baresip_rtcp_sr_sdes_peer.bin")
    assert isinstance(peer_sr, SenderReport)
    captured_at_unix_s = 1795611470.27448  # pcap time of this datagram on the loopback
    assert abs(peer_sr.ntp_timestamp - ntp_timestamp(captured_at_unix_s)) < 2**32 // 1000


def test_report_block_echoes_the_middle_bits_of_the_peer_sr() -> None:
    (peer_sr, _) = load("baresip_rtcp_sr_sdes_peer.bin")
    (answer, _) = load("baresip_rtcp_sr_sdes_with_lsr.bin")
    assert isinstance(peer_sr, SenderReport) and isinstance(answer, SenderReport)
    assert answer.reports[0].last_sr == compact_ntp(peer_sr.ntp_timestamp) == 1506690627
    assert answer.reports[0].delay_since_last_sr == 328007  # 5.005 s


def test_baresip_bye_comes_first_with_a_reason_and_is_accepted() -> None:
    bye, sdes = load("baresip_rtcp_bye_sdes.bin")
    assert bye == Goodbye((ALICE,), b"Adjo")
    assert isinstance(sdes, SourceDescription)


def test_baresip_app_packet_is_kept_verbatim() -> None:
    (app,) = load("baresip_rtcp_app_pingpong.bin")
    assert isinstance(app, RtcpUnknown)
    assert (app.packet_type, app.count, app.body[4:]) == (204, 0, b"PINGPONG")


def test_rtp_on_a_muxed_port_is_not_rtcp() -> None:
    assert not is_rtcp((VECTORS / "sipp_g711a_first.bin").read_bytes())
    assert not is_rtcp((VECTORS / "baresip_pcmu_first.bin").read_bytes())  # PT 0 with marker
    assert not is_rtcp(b"\x80")


def test_single_packet_parse_checks_the_type_and_the_end() -> None:
    data = (VECTORS / "baresip_rtcp_sr_sdes.bin").read_bytes()
    with pytest.raises(RtcpParseError, match="^expected one RTCP packet, 36 bytes follow it$"):
        SenderReport.parse(data)
    with pytest.raises(RtcpParseError, match="^expected an RTCP Goodbye, got SenderReport$"):
        Goodbye.parse(data)
    sr = SenderReport.parse(data[:52])
    assert sr.ssrc == ALICE
    rr = ReceiverReport(ssrc=5)
    assert ReceiverReport.parse(bytes(rr)) == rr


# --- generated packets ------------------------------------------------------------------------

u32 = st.integers(0, 0xFFFFFFFF)
words = st.integers(0, 4).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))
blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    packets_lost=st.integers(-0x800000, 0x7FFFFF),
    highest_sequence=u32,
    jitter=u32,
    last_sr=u32,
    delay_since_last_sr=u32,
)
report_lists = st.lists(blocks, max_size=31).map(tuple)
sender_reports = st.builds(
    SenderReport,
    ssrc=u32,
    ntp_timestamp=st.integers(0, 2**64 - 1),
    rtp_timestamp=u32,
    packet_count=u32,
    octet_count=u32,
    reports=report_lists,
    extension=words,
)
receiver_reports = st.builds(ReceiverReport, ssrc=u32, reports=report_lists, extension=words)
items = st.builds(SdesItem, type=st.integers(1, 255), value=st.binary(max_size=255))
descriptions = st.builds(
    SourceDescription,
    st.lists(st.builds(SdesChunk, u32, st.lists(items, max_size=4).map(tuple)), max_size=5).map(
        tuple
    ),
)
goodbyes = st.builds(Goodbye, st.lists(u32, max_size=31).map(tuple), st.binary(max_size=255))
unknowns = st.builds(
    RtcpUnknown, st.integers(204, 255) | st.integers(0, 199), st.integers(0, 31), words
)
rtcp_packets = st.one_of(sender_reports, receiver_reports, descriptions, goodbyes, unknowns)


@given(st.lists(rtcp_packets, min_size=1, max_size=5))
def test_generated_compound_packet_survives_serialize_then_parse(packets: list[RtcpPacket]) -> None:
    data = serialize_compound(packets)
    assert parse_compound(data) == packets
    assert serialize_compound(parse_compound(data)) == data


@given(st.binary(max_size=120))
def test_arbitrary_bytes_parse_or_raise_only_rtcp_parse_error(data: bytes) -> None:
    try:
        packets = parse_compound(data)
    except RtcpParseError:
        return
    assert all(isinstance(p, RtcpPacket) for p in packets) and packets


@given(st.binary(min_size=4, max_size=120))
def test_version_2_bytes_parse_or_raise_only_rtcp_parse_error(data: bytes) -> None:
    data = bytes([0x80 | (data[0] & 0x3F), 200 + data[1] % 5]) + data[2:]
    try:
        packets = parse_compound(data)
    except RtcpParseError:
        return
    assert all(isinstance(p, RtcpPacket) for p in packets) and packets


# --- exact errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RTCP packet too short: 0 bytes, need at least 4"),
        (b"\x80\xc8\x00", "RTCP packet too short: 3 bytes, need at least 4"),
        (b"\x40\xc9\x00\x00", "RTCP version must be 2, got 1"),
        (b"\x80\xc9\x00\x01", "RTCP length field says 8 bytes, only 4 remain"),
        (b"\x81\xc9\x00\x01\x00\x00\x00\x05", "RTCP RR too short for 1 report blocks: 4 bytes, need 28"),
        (b"\x80\xc8\x00\x01\x00\x00\x00\x05", "RTCP SR too short for 0 report blocks: 4 bytes, need 24"),
        (b"\x82\xcb\x00\x01\x00\x00\x00\x05", "RTCP BYE too short for 2 sources: 4 bytes, need 8"),
        (b"\x81\xcb\x00\x02\x00\x00\x00\x05\x09ab\x00", "RTCP BYE reason truncated: 9 bytes announced, 3 present"),
        (b"\x81\xca\x00\x00", "RTCP SDES chunk 0 truncated: no SSRC"),
        (b"\x81\xca\x00\x01\x00\x00\x00\x05", "RTCP SDES chunk 0 truncated: no END item"),
        (b"\x81\xca\x00\x02\x00\x00\x00\x05\x01\x09ab", "RTCP SDES chunk 0 item 0 truncated"),
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x00", "RTCP padding count 0 does not fit a 8-byte packet"),
        (b"\x80\xc9\x00\x01\x00\x00\x00\x05\x80", "RTCP packet too short: 1 bytes, need at least 4"),
        (b"\x80\xc9\x00\x01\x00\x00\x00\x05\x40\xc9\x00\x00", "RTCP version must be 2, got 1"),
    ],
)
def test_malformed_compound_raises_a_precise_error(data: bytes, message: str) -> None:
    with pytest.raises(RtcpParseError) as caught:
        parse_compound(data)
    assert str(caught.value) == message


def test_padding_of_a_typed_packet_is_dropped_and_of_an_unknown_one_kept() -> None:
    padded_rr = b"\xa0\xc9\x00\x02\x00\x00\x00\x05\x00\x00\x00\x04"
    assert parse_compound(padded_rr) == [ReceiverReport(ssrc=5)]
    padded_app = b"\xa0\xcc\x00\x02\x00\x00\x00\x05\x00\x00\x00\x04"
    (app,) = parse_compound(padded_app)
    assert isinstance(app, RtcpUnknown) and app.padded
    assert bytes(app) == padded_app


def test_negative_cumulative_loss_round_trips_as_24_bit_twos_complement() -> None:
    block = ReportBlock(ssrc=1, fraction_lost=0, packets_lost=-3, highest_sequence=9, jitter=0)
    assert bytes(block)[4:8] == b"\x00\xff\xff\xfd"
    assert ReportBlock.parse(bytes(block)) == block


def test_sdes_chunk_pads_to_a_32_bit_boundary_with_at_least_one_null() -> None:
    assert bytes(SdesChunk(1, ())) == b"\x00\x00\x00\x01" + b"\x00" * 4
    assert len(bytes(SdesChunk(1, (SdesItem(1, b"a"),)))) == 8  # 4 + 3, END
    assert len(bytes(SdesChunk(1, (SdesItem(1, b"ab"),)))) == 12  # 4 + 4, END + 3 nulls
    assert len(bytes(SdesChunk(1, (SdesItem(1, b"abcd"),)))) == 12  # 4 + 6, END + 1 null


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (ReceiverReport(ssrc=1, reports=(ReportBlock(ssrc=1, fraction_lost=0, packets_lost=0, highest_sequence=0, jitter=0),) * 32), "RTCP count must be 0..31, got 32"),
        (ReceiverReport(ssrc=1, extension=b"abc"), "RTCP body must be a multiple of 4 bytes, got 7"),
        (Goodbye((1,), b"x" * 256), "BYE reason must be <= 255 bytes, got 256"),
        (SourceDescription((SdesChunk(1, (SdesItem(0, b""),)),)), "SDES item must have type 1..255"),
    ],
)
def test_serializing_an_impossible_packet_raises_value_error(packet: RtcpPacket, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bytes(packet)


def test_ntp_timestamp_of_the_unix_epoch_and_its_compact_form() -> None:
    assert ntp_timestamp(0.0) == 2_208_988_800 << 32
    assert ntp_timestamp(0.5) == (2_208_988_800 << 32) | (1 << 31)
    assert compact_ntp(0x1122_3344_5566_7788) == 0x3344_5566
