"""RFC 4733 digits from SIPp's shipped captures reach the agent exactly once each, in order.

Each capture is one digit as a real phone sent it: a first packet with the marker bit, growing
durations every 20 ms, and the End packet three times (RFC 4733 §2.5.1.4). All twelve share
one SSRC; their timestamps differ, which is what tells one digit from the next.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.agent_server import AgentServer
from tests.interop.sipp import run_sipp, scenario
from tests.interop.stack import InteropStack

pytestmark = pytest.mark.interop

SIPP_PCAPS = Path("/usr/share/sip-tester")
DIGITS = list("0123456789*#")


def test_every_shipped_dtmf_capture_reaches_the_agent_once(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path
) -> None:
    assert (SIPP_PCAPS / "dtmf_2833_pound.pcap").exists(), "sip-tester's dtmf captures missing"
    agent_id = stack.add_agent("interop-dtmf", "^interop_dtmf$", agent_server.url("dtmf"))
    (tmp_path / "pcap").symlink_to(SIPP_PCAPS)

    run = run_sipp(
        stack,
        tmp_path,
        service="interop_dtmf",
        scenario_file=scenario("dtmf.xml", tmp_path),
    )

    assert run.returncode == 0, run.explain()
    [session] = agent_server.wait_sessions("dtmf")
    assert session.closed.wait(5)
    assert session.dtmf == DIGITS
    [call] = stack.wait_for_call(agent_id)
    assert call["endReason"] == "hangup"
