"""How the agent's socket closed, read from websockets' record of the close frames."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from relay.bridge.outcome import AgentLeft, AgentLeftReason, agent_left


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
