"""The first call a new user makes: a softphone (baresip) to the demo agent of ``make dev``.

The agent has no media endpoint of its own, so the stack's default names the demo agent
(``relay/bridge/demo_agent.py``), as in the README's quick start. baresip calls over PCMU with
its ``ausine`` source (440 Hz) and records what it decodes. What the caller must hear: first the
greeting (espeak-ng speech, several seconds, not the caller's own tone), then their own 440 Hz
tone echoed back once the greeting has been played.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.interop.baresip import SOURCE_HZ, Baresip
from tests.interop.stack import InteropStack
from tests.interop.tone import SILENCE_RMS, dominant_frequency, read_wav, rms_windows

pytestmark = pytest.mark.interop

CALL_S = 12.0  # the greeting (about 5 s of speech), then several seconds of echo
TOLERANCE_HZ = 10
WINDOW_S = 0.020


def test_a_softphone_hears_the_demo_agents_greeting_then_its_own_echo(
    stack: InteropStack, tmp_path: Path
) -> None:
    agent_id = stack.add_agent("interop-demo", "^interop_demo$")  # default endpoint: the demo

    with Baresip(tmp_path, account_params=";audio_codecs=PCMU/8000/1", lifetime_s=40) as phone:
        phone.dial(f"sip:interop_demo@127.0.0.1:{stack.sip_port}")
        phone.wait_event("CALL_ESTABLISHED")
        time.sleep(CALL_S)
        phone.hang_up()
        phone.wait_event("CALL_CLOSED")

    heard, rate = read_wav(phone.heard())
    loud = rms_windows(heard, rate) > SILENCE_RMS
    assert loud.any(), "baresip heard nothing"
    size = int(rate * WINDOW_S)
    first = int(np.argmax(loud))
    greeting = heard[first * size : (first + int(2.0 / WINDOW_S)) * size]
    assert np.mean(loud[first : first + int(2.0 / WINDOW_S)]) > 0.5, "no greeting at the start"
    greeting_hz = dominant_frequency(greeting, rate)
    assert abs(greeting_hz - SOURCE_HZ) > TOLERANCE_HZ, "the start was the echo, not a greeting"

    tail = heard[-int(2.0 * rate) :]  # the last 2 s of the call: the echo of the caller's tone
    assert np.mean(rms_windows(tail, rate) > SILENCE_RMS) > 0.8, "no echo at the end"
    assert abs(dominant_frequency(tail, rate) - SOURCE_HZ) <= TOLERANCE_HZ

    [call] = stack.wait_for_call(agent_id)
    assert call["endReason"] == "hangup", call
