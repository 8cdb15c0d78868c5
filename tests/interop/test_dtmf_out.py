"""The agent's digits reach baresip, the caller, as RFC 4733 events baresip decodes itself.

The other direction is test_rfc4733.py. Here baresip dials the relay (it offers
telephone-event), the agent sends docs/agents.md's extension message
``{"event":"dtmf","dtmf":{"digits":"1#"}}``, and baresip's own RFC 4733 receiver reports each
key on its control socket: ``CALL_DTMF_START`` with the key, then ``CALL_DTMF_END`` (and
"received event: '1' (end=1)" in its log).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.agent_server import AgentServer
from tests.interop.baresip import Baresip
from tests.interop.stack import InteropStack

pytestmark = pytest.mark.interop


def test_baresip_hears_the_digits_the_agent_sends(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path
) -> None:
    url = agent_server.url("dtmf_out", digits="1#", digits_after_s=0.5)
    agent_id = stack.add_agent("interop-dtmf-out", "^interop_dtmf_out$", url)
    with Baresip(tmp_path) as phone:
        phone.dial(f"sip:interop_dtmf_out@127.0.0.1:{stack.sip_port}")
        phone.wait_event("CALL_ESTABLISHED")
        phone.wait_events("CALL_DTMF_END", count=2)
        phone.hang_up()
        phone.wait_event("CALL_CLOSED")
        log = phone.log

    keys = [(e["type"], e.get("param")) for e in phone.events if "DTMF" in e["type"]]
    assert keys == [
        ("CALL_DTMF_START", "1"),
        ("CALL_DTMF_END", None),
        ("CALL_DTMF_START", "#"),
        ("CALL_DTMF_END", None),
    ]  # fmt: skip  (each key once, in order, each one ended)
    assert "received event: '#' (end=1)" in log  # the End bit reached baresip
    [call] = stack.wait_for_call(agent_id)
    assert call["endReason"] == "hangup"
