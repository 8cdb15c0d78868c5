"""SIPp's built-in ``uac`` against the relay, through the real webhook and control plane.

An allowed agent's pattern gets 200 OK, the call is BYE'd and recorded with its end reason and
bill; a To user that matches nothing gets 404; a source outside ``allowedCidrRanges`` gets 403.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.sipp import run_sipp, scenario
from tests.interop.stack import InteropStack

pytestmark = pytest.mark.interop

SERVICE = "interop_uac"
CALL_LENGTH_MS = 2000


@pytest.fixture(scope="module")
def agent_id(stack: InteropStack) -> str:
    return stack.add_agent("interop-uac", f"^{SERVICE}$")


def test_builtin_uac_is_answered_recorded_and_billed(
    stack: InteropStack, agent_id: str, tmp_path: Path
) -> None:
    run = run_sipp(
        stack, tmp_path, service=SERVICE, builtin="uac", extra=("-d", str(CALL_LENGTH_MS))
    )

    assert run.returncode == 0, run.explain()
    assert run.count("180") == 1 and run.count("200") == 2, run.explain()
    [call] = stack.wait_for_call(agent_id)
    assert call["callee"] == SERVICE and call["direction"] == "incoming"
    assert call["joined"] is not None
    assert call["endReason"] == "hangup"
    assert call["sipDetails"]["terminationReason"] == "SIP_TERMINATION_NORMAL"
    assert call["billingStatus"] == "BILLING_STATUS_BILLED"
    billed_s = float(call["billedDuration"].rstrip("s"))
    assert billed_s >= CALL_LENGTH_MS / 1000
    assert call["sipDetails"]["billedDuration"] == call["billedDuration"]


def test_a_to_user_that_matches_no_agent_gets_404(
    stack: InteropStack, agent_id: str, tmp_path: Path
) -> None:
    refused = scenario("reject.xml", tmp_path, status="404")

    run = run_sipp(stack, tmp_path, service="nobody_here", scenario_file=refused)

    assert run.returncode == 0, run.explain()
    assert run.count("404") == 1, "the ACK did not stop the 404's retransmissions"


def test_a_source_outside_the_allowlist_gets_403(
    stack: InteropStack, agent_id: str, tmp_path: Path
) -> None:
    refused = scenario("reject.xml", tmp_path, status="403")
    calls_before = len(stack.calls(agent_id))
    with stack.allowed_cidrs(["203.0.113.0/24"]):  # for this test only
        run = run_sipp(stack, tmp_path, service=SERVICE, scenario_file=refused)

    assert run.returncode == 0, run.explain()
    assert run.count("403") == 1, run.explain()
    assert len(stack.calls(agent_id)) == calls_before, "a refused call must not be recorded"


def test_builtin_uac_over_tcp_is_answered_and_byed(
    stack: InteropStack, agent_id: str, tmp_path: Path
) -> None:
    """TLS is proven with baresip (test_baresip.py): Debian's SIPp is built without OpenSSL."""
    run = run_sipp(
        stack, tmp_path, service=SERVICE, builtin="uac", transport="tcp", extra=("-d", "500")
    )

    assert run.returncode == 0, run.explain()
    assert run.count("200") == 2, run.explain()
    [call] = stack.wait_for_call(agent_id)
    assert call["endReason"] == "hangup"
    assert call["sipDetails"]["terminationReason"] == "SIP_TERMINATION_NORMAL"
