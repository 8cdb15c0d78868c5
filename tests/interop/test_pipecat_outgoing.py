"""A stock Pipecat bot is the agent of an OUTGOING call, placed through the API, and hears the callee.

The call is made as the spec's example makes one: ``POST /api/agents/{agentId}/calls`` with
``medium.sip.outgoing`` (``to`` and ``from``), here to a SIPp UAS on 127.0.0.1 running
``uas_answer_tone`` (tests/interop/sipp_uas.py): it answers (100, 180, 200 with PCMU), then
sends a sine of `TONE_HZ` (1000 Hz, made with sox) as PCMU RTP from the ACK on, and hangs up
with BYE `HANGUP_AFTER_MS` after the ACK. The agent's media endpoint is the bot of
docs/agents.md ("A minimal Pipecat bot": ``FastAPIWebsocketTransport`` + ``TwilioFrameSerializer``
under uvicorn, tests/interop/pipecat_bot.py), which keeps what its pipeline receives.

What it proves, from software sipline did not write: the relay placed the INVITE the API asked
for (SIPp's trace: the Request-URI and the From user), the callee's audio reached a real Pipecat
pipeline (the tone's frequency, measured with an FFT on the 16 kHz audio the pipeline got after
the serializer's resampler, is the UAS's 1000 Hz), the bot was told the call is outgoing
(``start.customParameters.direction``), and the callee's BYE ended the call cleanly (SIPp rc 0:
the relay answered its BYE; the bot's pipeline ended; the API shows the call ended by the
remote party, joined, with a normal SIP termination).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.pipecat_bot import PIPELINE_RATE_HZ, Bot, BotRecord, serve_bot, twilio_bot_app
from tests.interop.sipp_uas import TONE_HZ, SippUas
from tests.interop.stack import InteropStack
from tests.interop.tone import dominant_frequency, pcm16, sounding

pytestmark = pytest.mark.interop

TOLERANCE_HZ = 10
HANGUP_AFTER_MS = 4000
"""How long the callee stays in the call after the ACK, playing its tone (the scenario's BYE)."""
CALLEE_USER = "pipecat_callee"
FROM = "+15557654321"


@pytest.fixture
def pipecat_bot(stack: InteropStack) -> Iterator[Bot]:
    """The bot under uvicorn on 127.0.0.1 in a thread; its hang-up would go to the stack."""
    record = BotRecord()
    with serve_bot(twilio_bot_app(record, stack.local.api_url), record) as bot:
        yield bot


def test_a_pipecat_bot_on_an_outgoing_call_hears_the_callee_s_tone(
    stack: InteropStack, pipecat_bot: Bot, tmp_path: Path
) -> None:
    record = pipecat_bot.record
    agent_id = stack.add_agent(
        "interop-pipecat-outgoing", "^interop_pipecat_outgoing$", pipecat_bot.url
    )

    with SippUas("uas_answer_tone", tmp_path, hangup_after_ms=HANGUP_AFTER_MS) as uas:
        created = stack.api(
            "POST",
            f"/api/agents/{agent_id}/calls",
            {"medium": {"sip": {"outgoing": {"to": uas.uri(CALLEE_USER), "from": FROM}}}},
        )
        assert created.status_code == 201, created.text
        call_id = created.json()["callId"]
        assert record.connected.wait(15), f"the bot got no start message\n{stack.relay_log()}"
        callee = uas.wait()
        assert callee.returncode == 0, callee.explain()
    assert record.finished.wait(10), "the pipeline did not end after the callee's BYE"
    [call] = stack.wait_for_call(agent_id)

    # The INVITE the API asked for, as the callee received it.
    [invite] = uas.received("INVITE")
    assert invite.request_uri == uas.uri(CALLEE_USER)
    assert f"sip:{FROM}@" in (invite.header("From") or ""), invite.text
    assert [bye.kind for bye in uas.sent("BYE")] == ["BYE"]
    assert uas.received("200")  # the relay answered the callee's BYE

    # The bot was told what call this is.
    parameters = record.start["customParameters"]
    assert parameters["direction"] == "outgoing", parameters
    assert parameters["call_id"] == call_id, parameters

    # The callee's tone reached the pipeline.
    heard = sounding(pcm16(bytes(record.audio_in)), PIPELINE_RATE_HZ)
    assert len(heard) >= PIPELINE_RATE_HZ * 2, (
        f"the pipeline heard {len(heard) / PIPELINE_RATE_HZ:.2f}s of sound"
    )
    heard_hz = dominant_frequency(heard, PIPELINE_RATE_HZ)
    assert abs(heard_hz - TONE_HZ) <= TOLERANCE_HZ, heard_hz

    # The API's account of it.
    assert call["callId"] == call_id and call["direction"] == "outgoing", call
    assert call["joined"] is not None, call
    assert call["endReason"] == "hangup", call  # the callee hung up
    assert call["sipDetails"]["terminationReason"] == "SIP_TERMINATION_NORMAL", call
    print(
        f"\npipecat on an outgoing call: the callee's {TONE_HZ} Hz heard by the pipeline as "
        f"{heard_hz:.1f} Hz ({len(heard) / PIPELINE_RATE_HZ:.2f}s of sound); call "
        f"{call['endReason']}, {call['sipDetails']['terminationReason']}, billed "
        f"{call['billedDuration']} (SIP {call['sipDetails']['billedDuration']})"
    )
