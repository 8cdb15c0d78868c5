"""The ``transfer`` message (a sipline extension, docs/agents.md) is ignored by a stock Pipecat bot.

Pipecat's ``TwilioFrameSerializer`` turns Twilio's ``media`` and ``dtmf`` into frames and returns
no frame for any other ``event``: a bot written for Twilio keeps working when sipline tells it how
its transfer ended. The message is the relay's own (``TwilioFraming.transfer``).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from relay.bridge.twilio_framing import StreamIdentity, TwilioFraming

pytestmark = pytest.mark.interop


def test_pipecat_twilio_serializer_ignores_the_transfer_message() -> None:
    from pipecat.serializers.twilio import TwilioFrameSerializer

    framing = TwilioFraming(StreamIdentity("MZ" + "0" * 32, "CA" + "1" * 32, "AC" + "2" * 32))
    message = framing.transfer("t-1", "failed", sip_status=603, reason="Declined")
    params = TwilioFrameSerializer.InputParams(auto_hang_up=False)
    serializer = TwilioFrameSerializer(stream_sid="MZ" + "0" * 32, params=params)

    assert json.loads(message)["event"] == "transfer"
    assert asyncio.run(serializer.deserialize(message)) is None
