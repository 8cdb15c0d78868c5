"""Twilio Media Streams framing: exact JSON to the agent, tolerant parsing of what it sends."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.bridge.twilio_framing import (
    AGENT_MESSAGE,
    RELAY_MESSAGE,
    AgentClear,
    AgentCommand,
    AgentMark,
    AgentMedia,
    AgentMediaPayload,
    CallInfo,
    ClearAudio,
    MarkPayload,
    MediaChunk,
    MediaMessage,
    PlaceMark,
    PlayAudio,
    StreamIdentity,
    TwilioFraming,
    custom_parameters,
    new_stream_sid,
)
from relay.ids import SeededIdSource

IDENTITY = StreamIdentity(
    stream_sid="MZ18ad3ab5a668481ce02b83e7395059f0", call_sid="CA1", account_sid="AC1"
)


def framing() -> TwilioFraming:
    return TwilioFraming(IDENTITY)


def test_connected_is_exactly_twilios() -> None:
    assert framing().connected() == '{"event":"connected","protocol":"Call","version":"1.0.0"}'


def test_start_carries_the_stream_identity_format_and_parameters() -> None:
    start = framing().start({"call_id": "c1"})
    assert start == (
        '{"event":"start","sequenceNumber":"1","start":{'
        '"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","accountSid":"AC1","callSid":"CA1",'
        '"tracks":["inbound"],"customParameters":{"call_id":"c1"},'
        '"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}},'
        '"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0"}'
    )


LOUD_B64 = base64.b64encode(b"\xff" * 160).decode()


def test_media_numbers_chunks_and_timestamps_like_twilio() -> None:
    under_test = framing()
    under_test.start({})
    first = under_test.media(b"\xff" * 160)
    second = json.loads(under_test.media(b"\x00" * 160))
    assert first == (
        '{"event":"media","sequenceNumber":"2","media":{"track":"inbound","chunk":"1",'
        f'"timestamp":"0","payload":"{LOUD_B64}"}},'
        '"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0"}'
    )
    assert (second["sequenceNumber"], second["media"]["chunk"]) == ("3", "2")
    assert second["media"]["timestamp"] == "20"


def test_the_fast_media_encoding_parses_back_to_the_model() -> None:
    under_test = framing()
    message = RELAY_MESSAGE.validate_json(under_test.media(b"\x01\x02\x03"))
    assert message == MediaMessage(
        sequence_number="1",
        media=MediaChunk(chunk="1", timestamp="0", payload="AQID"),
        stream_sid=IDENTITY.stream_sid,
    )


def test_a_stream_sid_that_needs_escaping_is_escaped_in_media_too() -> None:
    odd = TwilioFraming(StreamIdentity(stream_sid='MZ"\\', call_sid="c", account_sid="a"))
    assert json.loads(odd.media(b""))["streamSid"] == 'MZ"\\'


def test_dtmf_mark_and_stop_are_exactly_twilios() -> None:
    under_test = framing()
    assert under_test.dtmf("#") == (
        '{"event":"dtmf","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","sequenceNumber":"1",'
        '"dtmf":{"track":"inbound_track","digit":"#"}}'
    )
    assert under_test.mark("greeting done") == (
        '{"event":"mark","sequenceNumber":"2","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0",'
        '"mark":{"name":"greeting done"}}'
    )
    assert under_test.stop() == (
        '{"event":"stop","sequenceNumber":"3","stop":{"accountSid":"AC1","callSid":"CA1"},'
        '"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0"}'
    )


def test_the_transfer_message_is_docs_agents_md_s() -> None:
    """docs/agents.md, The transfer message: the shape the example there shows."""
    message = framing().transfer("t-1", "failed", sip_status=603, reason="Declined")
    assert message == (
        '{"event":"transfer","sequenceNumber":"1","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0",'
        '"transfer":{"transferId":"t-1","status":"failed","sipStatus":603,"reason":"Declined"}}'
    )


def test_dtmf_refuses_what_is_not_a_digit() -> None:
    with pytest.raises(ValueError, match="not a DTMF digit: 'A'"):
        framing().dtmf("A")


@pytest.mark.parametrize(
    "message",
    [
        framing().connected(),
        framing().start({"a": "b"}),
        framing().media(b"\x00" * 160),
        framing().dtmf("7"),
        framing().mark("m"),
        framing().stop(),
        framing().transfer("t-1", "failed", sip_status=603, reason="Declined"),
        framing().transfer("t-1", "declined", sip_status=None, reason="busy"),
    ],
)
def test_every_relay_message_round_trips_through_its_model(message: str) -> None:
    assert RELAY_MESSAGE.validate_json(message).to_json() == message


def test_custom_parameters_are_strings_with_structures_as_json_text() -> None:
    call = CallInfo(
        call_id="call_1",
        caller="sip:alice@example.com",
        callee="+15550199",
        template_context={"customer_name": "Zoë", "vip": True, "orders": [1, 2]},
        agent_id="agent_9",
        system_prompt="You are helpful.",
        call_template={"voice": "x"},
    )
    params = custom_parameters(call)
    assert params == {
        "call_id": "call_1",
        "from_number": "sip:alice@example.com",
        "to_number": "+15550199",
        "template_context": '{"customer_name":"Zoë","vip":true,"orders":[1,2]}',
        "direction": "incoming",
        "agent_id": "agent_9",
        "system_prompt": "You are helpful.",
        "call_template": '{"voice":"x"}',
    }
    assert json.loads(params["template_context"]) == call.template_context


def test_an_operator_legs_parameters_are_added_as_they_are() -> None:
    """docs/agents.md, The operator leg of a warm transfer: ``sipline_leg``,
    ``sipline_call_id``, ``sipline_transfer_id`` beside the call's own parameters."""
    extra = {"sipline_leg": "operator", "sipline_call_id": "c", "sipline_transfer_id": "t-1"}
    params = custom_parameters(CallInfo(call_id="c", caller="a", callee="b", extra=extra))
    assert params == {
        "call_id": "c",
        "from_number": "a",
        "to_number": "b",
        "template_context": "{}",
        "direction": "incoming",
        "sipline_leg": "operator",
        "sipline_call_id": "c",
        "sipline_transfer_id": "t-1",
    }


def test_optional_parameters_are_left_out_when_unknown() -> None:
    params = custom_parameters(CallInfo(call_id="c", caller="a", callee="b"))
    assert params == {
        "call_id": "c",
        "from_number": "a",
        "to_number": "b",
        "template_context": "{}",
        "direction": "incoming",
    }


def test_new_stream_sid_is_twilio_shaped_and_reproducible() -> None:
    sid = new_stream_sid(SeededIdSource(1))
    assert sid == new_stream_sid(SeededIdSource(1))
    assert sid.startswith("MZ") and len(sid) == 34


# --- from the agent --------------------------------------------------------------------------------

PIPECAT_MEDIA = json.dumps(
    {"event": "media", "streamSid": IDENTITY.stream_sid, "media": {"payload": "//79"}}
)


def test_pipecats_media_message_becomes_audio_to_play() -> None:
    assert framing().receive(PIPECAT_MEDIA) == PlayAudio(b"\xff\xfe\xfd")


def test_marks_and_clear_become_commands_and_unknown_fields_are_ignored() -> None:
    under_test = framing()
    assert under_test.receive(
        '{"event":"mark","streamSid":"other","mark":{"name":"n1","x":1},"extra":true}'
    ) == PlaceMark("n1")
    assert under_test.receive('{"event":"clear","streamSid":"MZ"}') == ClearAudio()
    assert under_test.receive(b'{"event":"clear"}') == ClearAudio()
    assert under_test.counters.dropped == 0


def test_an_empty_payload_plays_nothing_but_is_not_an_error() -> None:
    under_test = framing()
    assert under_test.receive('{"event":"media","media":{"payload":""}}') == PlayAudio(b"")
    assert under_test.counters.dropped == 0


@pytest.mark.parametrize(
    ("data", "counter"),
    [
        ("not json", "invalid_json"),
        ('{"event":"media"', "invalid_json"),
        ("", "invalid_json"),
        ('{"event":"dance"}', "unknown_events"),
        ('{"event":"start","start":{}}', "unknown_events"),  # the relay's to send, not the agent's
        ("{}", "invalid_messages"),
        ("[1, 2]", "invalid_messages"),
        ('"media"', "invalid_messages"),
        ('{"event":"media"}', "invalid_messages"),
        ('{"event":"media","media":{"payload":7}}', "invalid_messages"),
        ('{"event":"mark","mark":{}}', "invalid_messages"),
        ('{"event":"media","media":{"payload":"not base64!"}}', "bad_payloads"),
        ('{"event":"media","media":{"payload":"AAA"}}', "bad_payloads"),  # bad padding
    ],
)
def test_bad_agent_input_is_dropped_and_counted_by_kind(data: str, counter: str) -> None:
    under_test = framing()
    assert under_test.receive(data) is None
    assert getattr(under_test.counters, counter) == 1
    assert (under_test.counters.dropped, under_test.counters.messages_in) == (1, 1)


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_any_agent_input_gives_a_command_or_none_and_never_raises(data: bytes | str) -> None:
    under_test = framing()
    result = under_test.receive(data)
    assert result is None or isinstance(result, AgentCommand)
    assert under_test.counters.messages_in == 1


def test_agent_models_parse_the_documented_examples() -> None:
    assert AGENT_MESSAGE.validate_json(PIPECAT_MEDIA) == AgentMedia(
        event="media", stream_sid=IDENTITY.stream_sid, media=AgentMediaPayload(payload="//79")
    )
    assert AGENT_MESSAGE.validate_json('{"event":"mark","mark":{"name":"x"}}') == AgentMark(
        event="mark", mark=MarkPayload(name="x")
    )
    assert AGENT_MESSAGE.validate_json('{"event":"clear"}') == AgentClear(event="clear")
