"""The bridge's pure parts: close classification, framing choice, retry policy."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from chalicelib.contracts import MediaFraming
from relay.bridge.agent_ws import (
    AgentLeft,
    AgentLeftReason,
    _is_permanent,
    agent_left,
    framing_for,
)
from relay.bridge.hd_framing import HdFraming
from relay.bridge.twilio_framing import StreamIdentity, TwilioFraming

IDENTITY = StreamIdentity(stream_sid="MZ1", call_sid="CA1", account_sid="AC1")


@pytest.mark.parametrize(
    ("rcvd", "sent", "rcvd_then_sent", "expected"),
    [
        (
            Close(1000, ""),
            Close(1000, ""),
            True,
            AgentLeft(AgentLeftReason.AGENT_CLOSED, 1000, ""),
        ),
        (
            Close(4000, "done"),
            Close(4000, "done"),
            True,
            AgentLeft(AgentLeftReason.AGENT_CLOSED, 4000, "done"),
        ),
        (None, None, None, AgentLeft(AgentLeftReason.CONNECTION_LOST, 1006)),
        (
            None,
            Close(1009, "over size limit (10 > 4 bytes)"),
            None,
            AgentLeft(AgentLeftReason.MESSAGE_TOO_BIG, 1009, "over size limit (10 > 4 bytes)"),
        ),
        (
            Close(1009, ""),
            Close(1009, "too big"),
            False,
            AgentLeft(AgentLeftReason.MESSAGE_TOO_BIG, 1009, "too big"),
        ),
        (
            None,
            Close(1011, "keepalive ping timeout"),
            None,
            AgentLeft(AgentLeftReason.KEEPALIVE_TIMEOUT, 1011, "keepalive ping timeout"),
        ),
        (
            None,
            Close(1007, "invalid start byte at position 0"),
            None,
            AgentLeft(AgentLeftReason.PROTOCOL_ERROR, 1007, "invalid start byte at position 0"),
        ),
    ],
)
def test_agent_left_names_who_closed_and_why(
    rcvd: Close | None, sent: Close | None, rcvd_then_sent: bool | None, expected: AgentLeft
) -> None:
    assert agent_left(ConnectionClosed(rcvd, sent, rcvd_then_sent)) == expected


def test_the_endpoint_framing_picks_the_sans_io_framing() -> None:
    twilio = framing_for(MediaFraming.TWILIO, IDENTITY)
    wide = framing_for(MediaFraming.PCM16K, IDENTITY)
    full = framing_for(MediaFraming.PCM48K, IDENTITY)
    assert type(twilio) is TwilioFraming
    assert isinstance(wide, HdFraming) and wide.media_format.sample_rate == 16000
    assert isinstance(full, HdFraming) and full.media_format.sample_rate == 48000


@pytest.mark.parametrize(
    ("status", "permanent"), [(404, True), (403, True), (408, False), (429, False), (503, False)]
)
def test_only_client_errors_stop_the_retries(status: int, permanent: bool) -> None:
    assert _is_permanent(status) is permanent
