"""The agent's ``dtmf`` message (a sipline extension) in both framings, and its bounds.

The bounds are docs/agents.md's: 1 to 32 digits of 0-9 * # A-D (a-d read as A-D),
``durationMs`` 40 to 1000, 100 when left out; a message beyond them, or beyond the call's queue
of 64 digits, is refused whole, counted, logged, and never ends the call.
"""

from __future__ import annotations

import json
import logging

import pytest

from relay.bridge.agent_dtmf import AgentDigits, DigitsRefused, SendDigits
from relay.bridge.hd_framing import HdFraming
from relay.bridge.twilio_framing import StreamIdentity, TwilioFraming
from relay.media.dtmf_playout import DtmfPlayout

IDENTITY = StreamIdentity(stream_sid="MZ1", call_sid="CA1", account_sid="AC1")
FRAMINGS = [TwilioFraming(IDENTITY), HdFraming(IDENTITY, sample_rate_hz=16000)]


def dtmf(digits: object, **fields: object) -> str:
    return json.dumps({"event": "dtmf", "streamSid": "MZ1", "dtmf": {"digits": digits, **fields}})


@pytest.mark.parametrize("framing", FRAMINGS, ids=["twilio", "hd"])
def test_the_documented_message_is_digits_to_send(framing: TwilioFraming) -> None:
    assert framing.receive(dtmf("123#", durationMs=250)) == SendDigits("123#", 250)
    assert framing.receive(dtmf("*0")) == SendDigits("*0", 100)  # the default duration
    assert framing.receive(dtmf("abcd", durationMs=40)) == SendDigits("ABCD", 40)
    assert framing.receive(dtmf("9" * 32, durationMs=1000)) == SendDigits("9" * 32, 1000)
    assert framing.counters.dropped == 0


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (dtmf(""), "dtmf.digits must hold 1 to 32 digits"),
        (dtmf("1" * 33), "dtmf.digits must hold 1 to 32 digits"),
        (dtmf("1" * 100_000), "dtmf.digits must hold 1 to 32 digits"),
        (dtmf("12w3"), "dtmf.digits may only hold 0-9, *, # and A-D"),
        (dtmf("E"), "dtmf.digits may only hold 0-9, *, # and A-D"),
        (dtmf("١"), "dtmf.digits may only hold 0-9, *, # and A-D"),  # an Arabic-Indic one
        (dtmf("1", durationMs=39), "dtmf.durationMs must be 40 to 1000 (milliseconds)"),
        (dtmf("1", durationMs=1001), "dtmf.durationMs must be 40 to 1000 (milliseconds)"),
        (dtmf("1", durationMs=-5), "dtmf.durationMs must be 40 to 1000 (milliseconds)"),
    ],
)
def test_a_message_out_of_bounds_is_refused_with_the_bound_not_the_content(
    message: str, reason: str
) -> None:
    framing = TwilioFraming(IDENTITY)
    assert framing.receive(message) == DigitsRefused(reason)
    assert (framing.counters.bad_dtmf, framing.counters.dropped) == (1, 1)


@pytest.mark.parametrize(
    "message",
    [
        '{"event":"dtmf"}',
        '{"event":"dtmf","dtmf":{}}',
        '{"event":"dtmf","dtmf":{"digits":5}}',
        '{"event":"dtmf","dtmf":{"digits":"1","durationMs":"long"}}',
        '{"event":"dtmf","dtmf":{"digit":"1"}}',  # Twilio's field to the agent, not this one's
    ],
)
def test_a_message_of_the_wrong_shape_is_an_invalid_message(message: str) -> None:
    framing = TwilioFraming(IDENTITY)
    assert framing.receive(message) is None
    assert (framing.counters.invalid_messages, framing.counters.dropped) == (1, 1)


class Media:
    """The call's media as the bridge sees it: the real digit queue, bounded."""

    def __init__(self) -> None:
        self.playout = DtmfPlayout()

    def send_dtmf(self, digits: str, duration_ms: int) -> bool:
        return self.playout.queue(digits, duration_ms)


def test_digits_go_to_the_media_and_a_full_queue_refuses_a_message_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    media = Media()
    digits = AgentDigits(media, "call_1")
    for _ in range(2):
        digits.apply(SendDigits("1" * 32, 100))
    with caplog.at_level(logging.WARNING, logger="sipline.relay.bridge"):
        digits.apply(SendDigits("2", 100))  # 65 > 64
    counters = digits.counters
    assert (counters.messages, counters.digits_queued, counters.refused_full) == (3, 64, 1)
    assert media.playout.pending == 64
    assert "agent dtmf for call call_1 refused (1 so far)" in caplog.text


def test_refusals_are_all_counted_but_logged_only_at_each_tenfold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    digits = AgentDigits(Media(), "call_1")
    with caplog.at_level(logging.WARNING, logger="sipline.relay.bridge"):
        for _ in range(1000):
            digits.apply(DigitsRefused("dtmf.digits must hold 1 to 32 digits"))
    assert digits.counters.refused_invalid == 1000
    assert [r.getMessage().split("(")[1].split(" ")[0] for r in caplog.records] == [
        "1", "10", "100", "1000"
    ]  # fmt: skip
