"""One direction of a bridge (relay/media/bridge_path.py), packet by packet, no sockets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from relay.media.bridge_path import BridgePath, is_passthrough
from relay.media.codecs import get_encoder
from relay.media.codecs.g711 import ulaw_encode
from relay.media.dtmf import TelephoneEvent
from relay.media.rtp import RtpPacket, RtpPacketizer
from relay.sip.sdp.fields import Direction
from relay.sip.sdp.offer_answer import NegotiatedMedia


def media(codec: str = "PCMU", **changes: Any) -> NegotiatedMedia:
    values: dict[str, Any] = dict(
        codec=codec, payload_type=0, clock_rate_hz=8000, channels=1, fmtp=None, ptime_ms=20,
        telephone_event_payload_type=101, remote_address="192.0.2.1", remote_port=4000,
        direction=Direction.SENDRECV, receive_payload_type=0,
        receive_telephone_event_payload_type=101, held_by_remote=False,
    )  # fmt: skip
    values.update(changes)
    return NegotiatedMedia(**values)


G722 = dict(payload_type=9, receive_payload_type=9)  # clock 8000 for 16 kHz audio (RFC 3551)


def source_packet(seq: int, ts: int, payload: bytes, *, ssrc: int = 0xA, pt: int = 0) -> RtpPacket:
    return RtpPacket(payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload)


def silence_ulaw() -> bytes:
    return ulaw_encode(np.zeros(160, dtype="<i2").tobytes())


def target() -> RtpPacketizer:
    return RtpPacketizer(ssrc=0xB, sequence_number=65534, timestamp=2**32 - 80)


def test_passthrough_reorder_and_wraparound_keep_the_sources_order_and_gaps() -> None:
    path = BridgePath(media(), media(), target())
    payload = silence_ulaw()
    order = [100, 102, 101, 103]  # 101 arrives late
    out = [path.forward(source_packet(s, 1000 + (s - 100) * 160, payload), 0.0)[0] for s in order]
    # Sequence numbers wrap past 65535 and keep the source's order; timestamps wrap past 2**32.
    assert [p.sequence_number for p in out] == [65534, 0, 65535, 1]
    assert [p.timestamp for p in out] == [2**32 - 80, 240, 80, 400]
    assert {p.ssrc for p in out} == {0xB} and [p.marker for p in out] == [True, False, False, False]


def test_a_new_source_ssrc_continues_after_what_was_sent_with_the_marker_bit() -> None:
    packetizer = target()
    path = BridgePath(media(), media(), packetizer)
    payload = silence_ulaw()
    path.forward(source_packet(100, 1000, payload), 0.0)
    switched = path.forward(source_packet(9, 555, payload, ssrc=0xC), 0.0)[0]
    assert switched.marker and switched.sequence_number == 65535
    assert switched.timestamp == 80  # the packet before it plus one frame


def test_g722_and_opus_timestamps_convert_between_their_clocks() -> None:
    pcm = np.zeros(320, dtype="<i2").tobytes()
    g722 = get_encoder("G722").encode(pcm)
    opus_target = media("opus", payload_type=111, clock_rate_hz=48000, channels=2)
    path = BridgePath(
        media("G722", **G722), opus_target, RtpPacketizer(ssrc=1, sequence_number=0, timestamp=0)
    )
    first = path.forward(source_packet(1, 8000, g722, pt=9), 0.0)
    second = path.forward(source_packet(2, 8160, g722, pt=9), 0.0)
    # 160 units of G.722's 8000 Hz clock are 20 ms: 960 units of opus' 48 kHz clock.
    assert [p.timestamp for p in first + second] == [0, 960]
    assert {p.payload_type for p in first + second} == {111}


def test_transcoding_drops_a_late_packet_and_restarts_after_a_gap() -> None:
    path = BridgePath(
        media(), media("G722", **G722), RtpPacketizer(ssrc=1, sequence_number=0, timestamp=0)
    )
    payload = silence_ulaw()
    assert len(path.forward(source_packet(10, 0, payload), 0.0)) == 1
    assert len(path.forward(source_packet(12, 320, payload), 0.0)) == 1  # 11 lost: a gap in time
    assert path.forward(source_packet(11, 160, payload), 0.0) == []  # too late to decode in order
    assert path.stats.late_dropped == 1
    assert path.stats.forwarded == 2


def test_events_toward_a_leg_without_telephone_event_become_one_digit_for_sip_info() -> None:
    path = BridgePath(media(), media(telephone_event_payload_type=None), target())
    # RFC 4733 §2.5: a 5 pressed for 40 ms at 8 kHz, one update, then the End packet three times.
    payloads = [bytes([5, 10, 0, 160]), *[bytes([5, 0x80 | 10, 1, 64])] * 3]
    for seq, payload in enumerate(payloads):
        assert path.forward(source_packet(seq, 0, payload, pt=101), 0.02 * seq) == []
    assert path.take_digits() == [("5", 40)] and path.take_digits() == []


def test_a_sip_info_digit_becomes_the_targets_telephone_events_in_its_clock() -> None:
    opus = media("opus", payload_type=111, clock_rate_hz=48000, telephone_event_payload_type=110)
    path = BridgePath(media(), opus, RtpPacketizer(ssrc=7, sequence_number=0, timestamp=0))
    packets = path.digit_packets("9", 100)
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert {p.payload_type for p in packets} == {110} and {p.timestamp for p in packets} == {0}
    assert {e.event for e in events} == {9} and events[-1].end and events[-1].duration == 4800


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        (media(), media(), True),
        (media(), media("PCMA", payload_type=8), False),
        (media("opus", fmtp="useinbandfec=1"), media("opus", fmtp="maxaveragebitrate=20000"), True),
        (media("AMR-WB", fmtp="octet-align=1"), media("AMR-WB", fmtp="octet-align=1"), True),
        (media("AMR-WB", fmtp="octet-align=1"), media("AMR-WB", fmtp=None), False),
    ],
    ids=["pcmu", "pcmu-pcma", "opus-any-fmtp", "amrwb-same-mode", "amrwb-other-mode"],
)
def test_passthrough_needs_the_same_codec_and_for_amr_wb_the_same_mode(
    source: NegotiatedMedia, target: NegotiatedMedia, expected: bool
) -> None:
    assert is_passthrough(source, target) is expected
