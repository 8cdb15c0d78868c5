"""The agent's digits to the caller: RFC 4733 events on the send ticks of CallMedia, or SIP INFO.

Packets are read with ``tests/support/rfc4733.py`` (the RFCs' layouts), not the relay's parser.
Expected values are worked out from the RFC's rules and docs/codecs.md's figures (100 ms tones,
100 ms pauses, one packet per 20 ms tick): at 8 kHz a 100 ms tone is 800 timestamp units, and
the updates carry the duration up to the end of their tick, 160, 320, 480, 640, then 800 with
the End bit, three times (RFC 4733 §2.5.1.2, §2.5.1.4).
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import pytest

from relay.media.dtmf_playout import DtmfInfoDue, DtmfPlayout
from relay.sip.sdp.fields import Direction
from tests.support.rfc4733 import Rtp, parse_event, parse_rtp
from tests.unit.relay.media.test_call_media import (
    EVENT_PT,
    Run,
    drive,
    make,
    negotiated,
    service,
)

PCMU = 0


def sent(run: Run) -> list[Rtp]:
    return [parse_rtp(d) for _, d, to in run.sent if to[1] % 2 == 0]  # RTCP goes to port + 1


def events_of(packets: list[Rtp]) -> list[Rtp]:
    return [p for p in packets if p.payload_type == EVENT_PT]


def test_two_digits_are_rfc_4733_events_on_the_audio_stream() -> None:
    media = make()
    run = drive(media, 0.1)
    assert media.send_dtmf("1#", 100)
    service(media, 0.1, run)
    run = drive(media, 1.0, run=run)
    packets = sent(run)
    events = events_of(packets)
    assert len(events) == 14
    first, second = events[:7], events[7:]
    for digit, packets_of_digit in (("1", first), ("#", second)):
        payloads = [parse_event(p.payload) for p in packets_of_digit]
        assert {e.digit for e in payloads} == {digit}
        assert [p.marker for p in packets_of_digit] == [True] + [False] * 6  # §2.5.1.2
        assert len({p.timestamp for p in packets_of_digit}) == 1  # the event's start, §2.3.1
        assert [e.duration for e in payloads] == [160, 320, 480, 640, 800, 800, 800]
        assert [e.end for e in payloads] == [False] * 4 + [True] * 3  # End sent 3 times, §2.5.1.4
        assert {e.volume for e in payloads} == {10}
    # 100 ms of tone and 100 ms of pause (End retransmissions included) from start to start
    assert second[0].timestamp - first[0].timestamp == 1600
    # one stream: same SSRC, sequence numbers with no gap across audio and events
    assert len({p.ssrc for p in packets}) == 1
    assert all(b.sequence_number == (a.sequence_number + 1) % 65536 for a, b in pairwise(packets))
    # from the first event packet to the second digit's last, only silence between the digits
    start = packets.index(first[0])
    between = packets[start : packets.index(second[-1]) + 1]
    assert [p.payload_type for p in between] == [EVENT_PT] * 7 + [PCMU] * 3 + [EVENT_PT] * 7
    # the RTP clock ran on under the events: the audio after them is 20 ms a packet later
    after = packets[packets.index(second[-1]) + 1]
    assert after.payload_type == PCMU and after.timestamp == second[0].timestamp + 7 * 160


def test_agent_audio_waits_while_a_digit_plays_and_is_not_dropped() -> None:
    media = make()
    run = drive(media, 0.1)
    media.play(b"\x01" * 800, 0.1)  # 100 ms of loud μ-law, queued before the digit
    assert media.send_dtmf("5", 100)
    service(media, 0.1, run)
    run = drive(media, 1.0, run=run)
    silence = b"\xff" * 160  # μ-law for 0
    kinds = ["event" if p.payload_type == EVENT_PT else p.payload == silence for p in sent(run)]
    start = kinds.index("event")
    # the digit's 7 packets, 3 ticks of pause, then the agent's 5 frames, none lost
    assert kinds[start : start + 15] == ["event"] * 7 + [True] * 3 + [False] * 5
    assert kinds[start + 15 :] == [True] * (len(kinds) - start - 15)
    assert media.stats.playout_dropped_bytes == 0 and media.stats.lag_frames_dropped == 0


def test_without_telephone_event_each_digit_is_due_as_sip_info_and_audio_goes_on() -> None:
    media = make()
    media.update(negotiated(telephone_event_payload_type=None), 0.0)
    run = drive(media, 0.1)
    assert media.send_dtmf("12", 250)
    service(media, 0.1, run)
    run = drive(media, 1.0, run=run)
    assert [e for e in run.events if isinstance(e, DtmfInfoDue)] == [
        DtmfInfoDue("1", 250),
        DtmfInfoDue("2", 250),
    ]
    assert events_of(sent(run)) == []
    packets = sent(run)  # audio every 20 ms as ever, from 0 to 1 s: INFO is out of band
    assert len(packets) == 51 and {p.payload_type for p in packets} == {PCMU}


def test_info_digits_are_spaced_by_the_tone_and_the_pause() -> None:
    media = make()
    media.update(negotiated(telephone_event_payload_type=None), 0.0)
    assert media.send_dtmf("12", 100)
    times = []
    now = 0.0
    while now < 1.0:
        now = media.get_timer()
        media.rtp_to_send(now)
        while (event := media.next_event()) is not None:
            if isinstance(event, DtmfInfoDue):
                times.append(now)
    assert len(times) == 2 and times[1] - times[0] == pytest.approx(0.2)


def test_digits_wait_while_the_call_is_on_hold() -> None:
    media = make()
    media.update(negotiated(direction=Direction.RECVONLY, held_by_remote=True), 0.0)
    assert media.send_dtmf("9", 100)
    run = drive(media, 0.5)
    assert run.sent == [] or events_of(sent(run)) == []
    media.update(negotiated(), 0.5)
    run = drive(media, 1.0, run=run)
    assert [parse_event(p.payload).digit for p in events_of(sent(run))] == ["9"] * 7


def test_a_48_khz_stream_carries_the_longest_tone_in_one_segment() -> None:
    media = make("opus")
    assert media.send_dtmf("D", 1000)
    run = drive(media, 1.5)
    payloads = [parse_event(p.payload) for p in events_of(sent(run))]
    assert [e.duration for e in payloads[-3:]] == [48000] * 3 and payloads[-1].end
    assert len(payloads) == 50 + 2  # 1 s of 20 ms ticks, then two End retransmissions


def test_a_renegotiated_payload_type_is_used_from_the_next_digit() -> None:
    media = make()
    assert media.send_dtmf("1", 40)
    media.update(replace(negotiated(), telephone_event_payload_type=96), 0.0)
    run = drive(media, 0.5)
    assert {p.payload_type for p in sent(run)} == {PCMU, 96}


def test_the_queue_is_bounded_and_a_message_beyond_it_is_refused_whole() -> None:
    playout = DtmfPlayout(max_pending=64)
    assert playout.queue("1" * 60, 100)
    assert not playout.queue("12345", 100)  # 65 > 64: none of it
    assert playout.queue("1234", 100)
    assert (playout.pending, playout.stats.queued, playout.stats.refused) == (64, 64, 5)


@pytest.mark.parametrize(
    ("digits", "duration_ms"),
    [("", 100), ("E", 100), ("1x", 100), ("a", 100), ("1", 39), ("1", 1001)],
)
def test_the_playout_refuses_what_the_framing_should_have_refused(
    digits: str, duration_ms: int
) -> None:
    with pytest.raises(ValueError, match="DTMF digits|duration_ms"):
        DtmfPlayout().queue(digits, duration_ms)
