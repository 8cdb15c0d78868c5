"""RFC 4733 telephone-event: payload codec, DtmfReceiver (exactly once) and DtmfSender."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.media.dtmf import (
    DTMF_DIGITS,
    DtmfParseError,
    DtmfReceived,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
)
from relay.media.rtp import RtpPacket, RtpPacketizer
from tests.support.pcap import read_udp

VECTORS = Path(__file__).resolve().parents[4] / "tests" / "vectors" / "rtp"
SIPP_DIGITS = {
    **{f"dtmf_2833_{d}.pcap": d for d in "0123456789"},
    "dtmf_2833_pound.pcap": "#",
    "dtmf_2833_star.pcap": "*",
}
SSRC = 0x0E05384E
PT = 101


def event_packet(
    seq: int, timestamp: int, event: int, duration: int, *, end: bool = False, marker: bool = False
) -> RtpPacket:
    payload = bytes(TelephoneEvent(event=event, end=end, duration=duration))
    return RtpPacket(
        payload_type=PT, sequence_number=seq, timestamp=timestamp, ssrc=SSRC, payload=payload,
        marker=marker,
    )


def press(seq: int, timestamp: int, event: int, *, updates: int = 3, marker: bool = True) -> list[RtpPacket]:
    """One key press as a phone sends it: start, updates every 20 ms, three End packets."""
    packets = [
        event_packet(seq + i, timestamp, event, 160 * i, marker=marker and i == 0)
        for i in range(updates)
    ]
    ends = [
        event_packet(seq + updates + i, timestamp, event, 160 * updates, end=True) for i in range(3)
    ]
    return packets + ends


def receive_all(receiver: DtmfReceiver, packets: list[RtpPacket], now: float = 0.0) -> list[DtmfReceived]:
    for index, packet in enumerate(packets):
        receiver.receive(packet, now + index * 0.02)
    events = []
    while (event := receiver.next_event()) is not None:
        events.append(event)
    return events


# --- payload ------------------------------------------------------------------------------------


@given(st.builds(
    TelephoneEvent,
    event=st.integers(0, 255),
    end=st.booleans(),
    volume=st.integers(0, 63),
    duration=st.integers(0, 0xFFFF),
))
def test_telephone_event_round_trips(event: TelephoneEvent) -> None:
    assert TelephoneEvent.parse(bytes(event)) == event


def test_telephone_event_fields_from_the_sipp_capture() -> None:
    # the last packet of dtmf_2833_1.pcap: event 1, E, volume 10, duration 2240 (280 ms)
    assert TelephoneEvent.parse(bytes.fromhex("018a08c0")) == TelephoneEvent(
        event=1, end=True, volume=10, duration=2240
    )
    assert TelephoneEvent(event=11).digit == "#" and TelephoneEvent(event=16).digit is None


@pytest.mark.parametrize("size", [0, 3, 5, 8])
def test_telephone_event_payload_must_be_four_bytes(size: int) -> None:
    with pytest.raises(DtmfParseError) as caught:
        TelephoneEvent.parse(bytes(size))
    assert str(caught.value) == f"telephone-event payload must be 4 bytes, got {size}"


def test_telephone_event_refuses_an_impossible_volume_or_duration() -> None:
    with pytest.raises(ValueError, match="volume must be 0..63, got 64"):
        bytes(TelephoneEvent(event=1, volume=64))
    with pytest.raises(ValueError, match="field out of range"):
        bytes(TelephoneEvent(event=1, duration=0x10000))


# --- receiver on SIPp's captures -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SIPP_DIGITS))
def test_sipp_capture_decodes_to_its_digit_exactly_once(name: str) -> None:
    datagrams = read_udp(VECTORS / name)
    receiver = DtmfReceiver(8000)
    events = []
    for datagram in datagrams:
        receiver.receive(RtpPacket.parse(datagram.payload), datagram.time_s)
        while (event := receiver.next_event()) is not None:
            events.append(event)
    receiver.handle_timer(datagrams[-1].time_s + 10)
    assert receiver.next_event() is None
    assert len(events) == 1
    assert events[0].digit == SIPP_DIGITS[name]
    assert events[0].duration_ms == 280.0 and events[0].end_received
    assert receiver.stats.duplicates == 2  # the End packet, sent three times


def test_sipp_capture_without_marker_bits_decodes_the_same() -> None:
    for name, digit in SIPP_DIGITS.items():
        packets = [
            dataclasses.replace(RtpPacket.parse(d.payload), marker=False)
            for d in read_udp(VECTORS / name)
        ]
        assert [e.digit for e in receive_all(DtmfReceiver(), packets)] == [digit]


# --- receiver on synthetic streams ---------------------------------------------------------------


def test_repeated_end_packets_make_one_digit() -> None:
    events = receive_all(DtmfReceiver(), press(1, 8000, 5))
    assert [(e.digit, e.timestamp, e.duration_ms) for e in events] == [("5", 8000, 60.0)]


def test_two_presses_of_the_same_key_are_two_digits() -> None:
    packets = press(1, 8000, 7) + press(7, 8000 + 2400, 7)
    assert [(e.digit, e.timestamp) for e in receive_all(DtmfReceiver(), packets)] == [
        ("7", 8000), ("7", 10400)
    ]


def test_a_long_press_with_many_updates_is_one_digit() -> None:
    packets = press(1, 0, 11, updates=100, marker=False)
    events = receive_all(DtmfReceiver(), packets)
    assert [(e.digit, e.duration_ms) for e in events] == [("#", 2000.0)]


def test_reordered_and_duplicated_packets_still_make_one_digit() -> None:
    packets = press(1, 0, 3)
    shuffled = [packets[0], packets[2], packets[1], packets[4], packets[3], packets[1], packets[5]]
    assert [e.digit for e in receive_all(DtmfReceiver(), shuffled)] == ["3"]


def test_a_digit_whose_end_packets_were_lost_is_emitted_on_the_timer() -> None:
    receiver = DtmfReceiver(end_timeout_ms=500)
    receiver.receive(event_packet(1, 0, 9, 0, marker=True), now=1.0)
    receiver.receive(event_packet(2, 0, 9, 400), now=1.05)
    assert receiver.next_event() is None
    assert receiver.get_timer() == pytest.approx(1.55)
    receiver.handle_timer(1.54)
    assert receiver.next_event() is None
    receiver.handle_timer(1.55)
    assert receiver.next_event() == DtmfReceived(
        digit="9", ssrc=SSRC, timestamp=0, duration_ms=50.0, end_received=False
    )
    assert receiver.get_timer() is None
    receiver.receive(event_packet(3, 0, 9, 400, end=True), now=1.6)  # the End, too late
    assert receiver.next_event() is None
    assert receiver.stats.duplicates == 1


def test_a_digit_whose_end_packets_were_lost_is_emitted_when_the_next_one_starts() -> None:
    packets = press(1, 0, 1)[:2] + press(3, 1600, 2)
    assert [(e.digit, e.end_received) for e in receive_all(DtmfReceiver(), packets)] == [
        ("1", False), ("2", True)
    ]


def test_a_digit_longer_than_the_duration_field_is_one_digit_across_segments() -> None:
    # RFC 4733 §2.5.1.3: the second segment starts where the first one's 0xFFFF units ended.
    first = [event_packet(1, 0, 4, 0xFFFF - 800), event_packet(2, 0, 4, 0xFFFF)]
    second = press(3, 0xFFFF, 4, marker=False)
    events = receive_all(DtmfReceiver(8000), first + second)
    assert [(e.digit, e.timestamp) for e in events] == [("4", 0)]
    assert events[0].duration_ms == pytest.approx((0xFFFF + 480) / 8)


def test_a_segmented_digit_whose_first_segment_ended_is_still_one_digit() -> None:
    first = [event_packet(1, 0, 4, 0xFFFF, end=True)] * 3
    second = press(4, 0xFFFF, 4, marker=False)
    assert [e.digit for e in receive_all(DtmfReceiver(8000), first + second)] == ["4"]


def test_non_dtmf_events_and_malformed_payloads_are_counted_and_ignored() -> None:
    receiver = DtmfReceiver()
    receiver.receive(event_packet(1, 0, 16, 160, end=True), 0.0)  # flash
    receiver.receive(dataclasses.replace(event_packet(2, 0, 1, 0), payload=b"\x01\x0a"), 0.0)
    assert receiver.next_event() is None
    assert (receiver.stats.received, receiver.stats.ignored, receiver.stats.malformed) == (2, 1, 1)


# --- sender ----------------------------------------------------------------------------------------


def test_sender_builds_marker_updates_and_three_end_packets_on_one_timestamp() -> None:
    packetizer = RtpPacketizer(ssrc=SSRC, sequence_number=65534, timestamp=1000)
    sender = DtmfSender(packetizer, payload_type=PT, packet_interval_ms=50)
    packets = sender.packets("5", duration_ms=160)
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [p.marker for p in packets] == [True, False, False, False, False, False]
    assert {p.timestamp for p in packets} == {1000}
    assert [p.sequence_number for p in packets] == [65534, 65535, 0, 1, 2, 3]
    assert [(e.duration, e.end) for e in events] == [
        (400, False), (800, False), (1200, False), (1280, True), (1280, True), (1280, True)
    ]
    assert {e.event for e in events} == {5} and {e.volume for e in events} == {10}
    assert packetizer.timestamp == 1000 + 1280  # audio resumes where the tone ended
    assert packetizer.sequence_number == 4


def test_a_short_digit_ends_on_its_first_packet_which_still_carries_the_marker() -> None:
    packets = DtmfSender(RtpPacketizer(ssrc=1, sequence_number=0, timestamp=0), payload_type=PT)\
        .packets("#", duration_ms=40)
    assert [(p.marker, TelephoneEvent.parse(p.payload).end) for p in packets] == [
        (True, True), (False, True), (False, True)
    ]


@pytest.mark.parametrize("clock_rate_hz", [8000, 16000, 48000])
def test_every_digit_sent_is_received_exactly_once(clock_rate_hz: int) -> None:
    packetizer = RtpPacketizer(ssrc=SSRC, sequence_number=100, timestamp=2**32 - 5000)
    sender = DtmfSender(packetizer, payload_type=PT, clock_rate_hz=clock_rate_hz)
    receiver = DtmfReceiver(clock_rate_hz)
    packets = [p for digit in DTMF_DIGITS for p in sender.packets(digit, duration_ms=120)]
    events = receive_all(receiver, packets)
    assert "".join(e.digit for e in events) == DTMF_DIGITS
    assert {e.duration_ms for e in events} == {120.0}


@pytest.mark.parametrize("digit", ["", "E", "12", "x"])
def test_sender_refuses_what_is_not_a_digit(digit: str) -> None:
    sender = DtmfSender(RtpPacketizer(ssrc=1, sequence_number=0, timestamp=0), payload_type=PT)
    with pytest.raises(ValueError, match="not a DTMF digit"):
        sender.packets(digit)


def test_sender_refuses_a_duration_that_needs_more_than_one_segment() -> None:
    sender = DtmfSender(RtpPacketizer(ssrc=1, sequence_number=0, timestamp=0), payload_type=PT)
    with pytest.raises(ValueError, match="duration_ms must give 1..65535 samples, got 80000"):
        sender.packets("1", duration_ms=10_000)
