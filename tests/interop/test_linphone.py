"""linphonec (headless) dials the relay: the call is established and torn down from either side.

linphone offers opus first (then speex, PCMU, PCMA, G729), so these calls run on opus.

When the relay hangs up (its agent left), linphonec 5.1.65 answers the BYE with 200 Ok and
deletes the dialog, but its call never logs a move to ``LinphoneCallEnd`` (its media keeps
running until the process is killed); baresip closes its call on the same BYE
(test_baresip.py). So that case is checked on the wire: the BYE, linphone's 200, the record.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.agent_server import AgentServer
from tests.interop.linphone import BYE_ANSWERED, Linphonec
from tests.interop.stack import InteropStack

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def agents(stack: InteropStack, agent_server: AgentServer) -> dict[str, str]:
    return {
        "caller_hangs_up": stack.add_agent(
            "interop-linphone", "^interop_linphone$", agent_server.url("linphone")
        ),
        "agent_hangs_up": stack.add_agent(
            "interop-linphone-closer",
            "^interop_linphone_closer$",
            agent_server.url("linphone_closer", close_after_s=1.5),
        ),
    }


def test_linphonec_call_is_established_then_terminated_by_linphonec(
    stack: InteropStack, agents: dict[str, str], agent_server: AgentServer, tmp_path: Path
) -> None:
    target = f"sip:interop_linphone@127.0.0.1:{stack.sip_port}"
    with Linphonec(tmp_path, target) as phone:
        phone.wait_state("StreamsRunning")
        [session] = agent_server.wait_sessions("linphone")
        phone.command("terminate")
        phone.wait_log(rf"^BYE sip:127\.0\.0\.1:{stack.sip_port} ")  # see linphone.py
        [call] = stack.wait_for_call(agents["caller_hangs_up"])

    assert phone.states()[:5] == [
        "OutgoingInit", "OutgoingProgress", "OutgoingRinging", "Connected", "StreamsRunning",
    ]  # fmt: skip
    assert call["endReason"] == "hangup"
    assert call["sipDetails"]["terminationReason"] == "SIP_TERMINATION_NORMAL"
    assert session.closed.wait(5) and session.stopped


def test_the_agent_leaving_sends_linphonec_a_bye(
    stack: InteropStack, agents: dict[str, str], tmp_path: Path
) -> None:
    target = f"sip:interop_linphone_closer@127.0.0.1:{stack.sip_port}"
    with Linphonec(tmp_path, target) as phone:
        phone.wait_state("StreamsRunning")
        phone.wait_log(r"^BYE sip:127\.0\.0\.1:\d+", timeout_s=8)
        phone.wait_log(BYE_ANSWERED)  # linphone's 200 to the relay's BYE

    [call] = stack.wait_for_call(agents["agent_hangs_up"])
    assert call["endReason"] == "agent_hangup"
    assert call["sipDetails"]["terminationReason"] == "SIP_TERMINATION_NORMAL"
