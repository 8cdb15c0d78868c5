"""RtpPacket parse/serialize (RFC 3550 §5.1) on captures and generated packets; RtpPacketizer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.ids import SeededIdSource
from relay.media.rtp import RtpHeaderExtension, RtpPacket, RtpPacketizer, RtpParseError
from tests.support.pcap import read_udp

ROOT = Path(__file__).resolve().parents[4]
VECTORS = ROOT / "tests" / "vectors" / "rtp"
RTP_BINS = sorted(VECTORS.glob("*_pcm?_*.bin")) + sorted(VECTORS.glob("sipp_*.bin"))
PCAPS = sorted(VECTORS.glob("*.pcap"))


def test_vectors_are_there() -> None:
    assert len(RTP_BINS) == 5
    assert len(PCAPS) == 13


@pytest.mark.parametrize("path", RTP_BINS, ids=lambda p: p.name)
def test_captured_packet_round_trips_byte_for_byte(path: Path) -> None:
    data = path.read_bytes()
    assert bytes(RtpPacket.parse(data)) == data


@pytest.mark.parametrize("path", PCAPS, ids=lambda p: p.name)
def test_every_packet_of_the_sipp_captures_round_trips(path: Path) -> None:
    for datagram in read_udp(path):
        assert bytes(RtpPacket.parse(datagram.payload)) == datagram.payload


def test_sipp_g711a_first_packet_fields() -> None:
    packet = RtpPacket.parse((VECTORS / "sipp_g711a_first.bin").read_bytes())
    assert packet.payload_type == 8  # PCMA, RFC 3551 §6
    assert packet.marker is True
    assert packet.sequence_number == 59133
    assert packet.timestamp == 240
    assert packet.ssrc == 0xDEE0EE8F
    assert len(packet.payload) == 240  # 30 ms at 8 kHz
    assert packet.csrc == () and packet.extension is None and packet.padding == b""


def test_baresip_pcmu_packet_fields() -> None:
    packet = RtpPacket.parse((VECTORS / "baresip_pcmu_0350.bin").read_bytes())
    assert (packet.payload_type, packet.marker, len(packet.payload)) == (0, False, 160)


# --- generated packets ------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
extensions = st.builds(
    RtpHeaderExtension,
    profile=u16,
    data=st.integers(0, 8).flatmap(lambda words: st.binary(min_size=words * 4, max_size=words * 4)),
)
paddings = st.one_of(
    st.just(b""),
    st.integers(1, 255).flatmap(
        lambda n: st.binary(min_size=n - 1, max_size=n - 1).map(lambda b: b + bytes([n]))
    ),
)
packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=u16,
    timestamp=u32,
    ssrc=u32,
    payload=st.binary(max_size=300),
    marker=st.booleans(),
    csrc=st.lists(u32, max_size=15).map(tuple),
    extension=st.none() | extensions,
    padding=paddings,
)


@given(packets)
def test_generated_packet_survives_serialize_then_parse(packet: RtpPacket) -> None:
    data = bytes(packet)
    assert RtpPacket.parse(data) == packet
    assert bytes(RtpPacket.parse(data)) == data


@given(st.binary(max_size=80))
def test_arbitrary_bytes_either_round_trip_exactly_or_raise_rtp_parse_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpParseError:
        return
    assert bytes(packet) == data


@given(st.binary(min_size=12, max_size=80))
def test_version_2_bytes_either_round_trip_or_raise_rtp_parse_error(data: bytes) -> None:
    data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:]
    try:
        packet = RtpPacket.parse(data)
    except RtpParseError:
        return
    assert bytes(packet) == data


# --- exact errors -----------------------------------------------------------------------------

HEADER = bytes.fromhex("80080001000000f0deadbeef")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RTP packet too short: 0 bytes, need at least 12"),
        (HEADER[:11], "RTP packet too short: 11 bytes, need at least 12"),
        (b"\x40" + HEADER[1:], "RTP version must be 2, got 1"),
        (b"\x82" + HEADER[1:] + b"\x00" * 4, "RTP packet too short for 2 CSRCs: 16 bytes, need 20"),
        (b"\x90" + HEADER[1:], "RTP header extension truncated: 12 bytes, need 16"),
        (
            b"\x90" + HEADER[1:] + b"\xbe\xde\x00\x01",
            "RTP header extension truncated: 1 words need 20 bytes, got 16",
        ),
        (b"\xa0" + HEADER[1:] + b"abc\x00", "RTP padding count 0 does not fit the 4 bytes after the header"),
        (b"\xa0" + HEADER[1:] + b"abc\x05", "RTP padding count 5 does not fit the 4 bytes after the header"),
        (b"\xa0" + HEADER[1:], "RTP padding count 239 does not fit the 0 bytes after the header"),
    ],
)
def test_malformed_packet_raises_a_precise_error(data: bytes, message: str) -> None:
    with pytest.raises(RtpParseError) as caught:
        RtpPacket.parse(data)
    assert str(caught.value) == message


def test_padding_is_kept_and_stripped_from_the_payload() -> None:
    packet = RtpPacket.parse(b"\xa0" + HEADER[1:] + b"ab\x00\x02")
    assert packet.payload == b"ab"
    assert packet.padding == b"\x00\x02"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"payload_type": 128}, "RTP payload type must be 0..127, got 128"),
        ({"sequence_number": 65536}, "RTP header field out of range"),
        ({"csrc": tuple(range(16))}, "RTP header field out of range"),
        (
            {"extension": RtpHeaderExtension(0xBEDE, b"abc")},
            "RTP header extension length must be a multiple of 4, got 3",
        ),
    ],
)
def test_serializing_an_impossible_field_raises_value_error(
    fields: dict[str, object], message: str
) -> None:
    base: dict[str, object] = {
        "payload_type": 0, "sequence_number": 1, "timestamp": 2, "ssrc": 3
    }
    packet = RtpPacket(**{**base, **fields})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        bytes(packet)


# --- packetizer -------------------------------------------------------------------------------


def test_packetizer_draws_reproducible_ssrc_sequence_and_timestamp_from_the_id_source() -> None:
    first = RtpPacketizer.from_ids(SeededIdSource(7))
    again = RtpPacketizer.from_ids(SeededIdSource(7))
    assert (first.ssrc, first.sequence_number, first.timestamp) == (
        again.ssrc, again.sequence_number, again.timestamp
    )
    assert 0 <= first.sequence_number <= 0xFFFF and 0 <= first.ssrc <= 0xFFFFFFFF


def test_packetizer_numbers_packets_across_the_16_and_32_bit_wraps() -> None:
    packetizer = RtpPacketizer(ssrc=9, sequence_number=0xFFFE, timestamp=0xFFFFFF60)
    sent = [packetizer.packetize(b"x" * 160, payload_type=0, samples=160) for _ in range(4)]
    assert [p.sequence_number for p in sent] == [0xFFFE, 0xFFFF, 0, 1]
    assert [p.timestamp for p in sent] == [0xFFFFFF60, 0, 160, 320]
    assert (packetizer.packets_sent, packetizer.octets_sent) == (4, 640)
    assert {p.ssrc for p in sent} == {9}


def test_packetizer_marks_only_when_asked_and_advance_skips_silence() -> None:
    packetizer = RtpPacketizer(ssrc=1, sequence_number=10, timestamp=1000)
    packetizer.advance(800)
    packet = packetizer.packetize(b"", payload_type=8, samples=160, marker=True)
    assert (packet.timestamp, packet.marker, packet.sequence_number) == (1800, True, 10)
    assert packetizer.timestamp == 1960


# --- sans-I/O ---------------------------------------------------------------------------------

FORBIDDEN = {"asyncio", "socket", "ssl", "time", "random", "secrets", "boto3", "websockets"}
OWN_MODULES = ["rtp.py", "rtcp.py", "seq.py", "stats.py", "jitter.py", "dtmf.py"]


@pytest.mark.parametrize("module", OWN_MODULES)
def test_media_core_module_imports_no_io_clock_or_randomness(module: str) -> None:
    tree = ast.parse((ROOT / "relay" / "media" / module).read_text())
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
    assert imported & FORBIDDEN == set()


@pytest.mark.parametrize("module", OWN_MODULES)
def test_media_core_module_stays_under_400_lines(module: str) -> None:
    assert len((ROOT / "relay" / "media" / module).read_text().splitlines()) < 400
