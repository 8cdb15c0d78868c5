"""baresip (headless) dials the relay: the call is established and torn down from either side,
over UDP and over TLS (the relay's self-signed certificate as baresip's CA)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.agent_server import AgentServer
from tests.interop.baresip import Baresip
from tests.interop.stack import InteropStack

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def agents(stack: InteropStack, agent_server: AgentServer) -> dict[str, str]:
    return {
        "caller_hangs_up": stack.add_agent(
            "interop-baresip", "^interop_baresip$", agent_server.url("baresip")
        ),
        "agent_hangs_up": stack.add_agent(
            "interop-baresip-closer",
            "^interop_baresip_closer$",
            agent_server.url("baresip_closer", close_after_s=1.5),
        ),
    }


def test_baresip_call_is_established_then_hung_up_by_baresip(
    stack: InteropStack, agents: dict[str, str], agent_server: AgentServer, tmp_path: Path
) -> None:
    with Baresip(tmp_path) as phone:
        phone.dial(f"sip:interop_baresip@127.0.0.1:{stack.sip_port}")
        phone.wait_event("CALL_ESTABLISHED")
        [session] = agent_server.wait_sessions("baresip")
        phone.hang_up()
        closed = phone.wait_event("CALL_CLOSED")

    assert closed["param"] == "Connection reset by user", closed
    [call] = stack.wait_for_call(agents["caller_hangs_up"])
    assert call["endReason"] == "hangup"
    assert call["sipDetails"]["terminationReason"] == "SIP_TERMINATION_NORMAL"
    assert session.closed.wait(5) and session.stopped, session.events[-3:]


def test_the_agent_closing_its_socket_hangs_up_baresip(
    stack: InteropStack, agents: dict[str, str], agent_server: AgentServer, tmp_path: Path
) -> None:
    with Baresip(tmp_path) as phone:
        phone.dial(f"sip:interop_baresip_closer@127.0.0.1:{stack.sip_port}")
        phone.wait_event("CALL_ESTABLISHED")
        [session] = agent_server.wait_sessions("baresip_closer")
        assert "agent_closing" not in session.events  # the call is up before the agent leaves
        closed = phone.wait_event("CALL_CLOSED", timeout_s=8)
        assert "agent_closing" in session.events  # ... and the BYE came after it left

    assert closed["param"] == "Connection reset by peer", closed  # baresip's word for a BYE
    [call] = stack.wait_for_call(agents["agent_hangs_up"])
    assert call["endReason"] == "agent_hangup"
    assert call["sipDetails"]["terminationReason"] == "SIP_TERMINATION_NORMAL"


def test_baresip_over_tls(
    stack: InteropStack, agents: dict[str, str], agent_server: AgentServer, tmp_path: Path
) -> None:
    cert, _ = stack.tls_files
    with Baresip(tmp_path, extra_config=f"sip_cafile {cert}") as phone:
        phone.dial(f"sip:interop_baresip@127.0.0.1:{stack.tls_port};transport=tls")
        phone.wait_event("CALL_ESTABLISHED")
        phone.hang_up()
        phone.wait_event("CALL_CLOSED")

    [call] = stack.wait_for_call(agents["caller_hangs_up"])
    assert call["endReason"] == "hangup"
    assert call["medium"]["sip"]["incoming"]["to"].startswith("sip:interop_baresip@")
