"""HD framing: Twilio control messages, binary s16le audio at 16 or 48 kHz."""

from __future__ import annotations

import base64
import json

import pytest

from relay.bridge.hd_framing import HdFraming, hd_frame_bytes
from relay.bridge.twilio_framing import PlaceMark, PlayAudio, StreamIdentity

IDENTITY = StreamIdentity(stream_sid="MZ1", call_sid="CA1", account_sid="AC1")


@pytest.mark.parametrize(("rate", "frame"), [(16000, 640), (48000, 1920)])
def test_start_names_pcm_s16le_and_the_rate(rate: int, frame: int) -> None:
    under_test = HdFraming(IDENTITY, sample_rate_hz=rate)
    start = json.loads(under_test.start({}))
    assert start["start"]["mediaFormat"] == {
        "encoding": "pcm_s16le",
        "sampleRate": rate,
        "channels": 1,
    }
    assert under_test.frame_bytes == hd_frame_bytes(rate) == frame
    assert under_test.bytes_per_second == rate * 2


def test_caller_audio_goes_out_as_raw_binary_frames_that_take_sequence_numbers() -> None:
    under_test = HdFraming(IDENTITY, sample_rate_hz=16000)
    under_test.start({})
    assert under_test.media(b"\x01\x00" * 320) == b"\x01\x00" * 320
    assert json.loads(under_test.dtmf("4"))["sequenceNumber"] == "3"


def test_binary_agent_audio_is_played_and_half_samples_are_dropped() -> None:
    under_test = HdFraming(IDENTITY, sample_rate_hz=48000)
    assert under_test.receive(b"\x10\x00\x20\x00") == PlayAudio(b"\x10\x00\x20\x00")
    assert under_test.receive(b"\x10\x00\x20") is None
    assert under_test.counters.bad_payloads == 1
    assert under_test.counters.messages_in == 2


def test_json_media_with_base64_pcm_and_marks_are_accepted_too() -> None:
    under_test = HdFraming(IDENTITY, sample_rate_hz=16000)
    payload = base64.b64encode(b"\x01\x02\x03\x04").decode()
    assert under_test.receive(f'{{"event":"media","media":{{"payload":"{payload}"}}}}') == (
        PlayAudio(b"\x01\x02\x03\x04")
    )
    odd = base64.b64encode(b"\x01\x02\x03").decode()
    assert under_test.receive(f'{{"event":"media","media":{{"payload":"{odd}"}}}}') is None
    assert under_test.receive('{"event":"mark","mark":{"name":"m"}}') == PlaceMark("m")
    assert under_test.counters.bad_payloads == 1


def test_other_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="HD framing runs at 16000 or 48000 Hz, not 8000"):
        HdFraming(IDENTITY, sample_rate_hz=8000)
