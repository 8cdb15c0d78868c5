"""Headers end to end: SIPp's INVITE to ``sales@`` with X- headers, through the relay and the
INVITE webhook, ends in the call record's template context and in the agent's ``start``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.interop.agent_server import AgentServer
from tests.interop.sipp import run_sipp, scenario
from tests.interop.stack import InteropStack

pytestmark = pytest.mark.interop

EXPECTED = {"customer_name": "Bob", "complex_value": {"subkey": "value"}}


def test_x_headers_reach_the_call_record_and_the_agent(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path
) -> None:
    agent_id = stack.add_agent("interop-sales", "^sales$", agent_server.url("sales"))

    run = run_sipp(
        stack, tmp_path, service="sales", scenario_file=scenario("headers.xml", tmp_path)
    )

    assert run.returncode == 0, run.explain()
    [call] = stack.wait_for_call(agent_id)
    context = call["templateContext"]
    assert {key: context[key] for key in EXPECTED} == EXPECTED, context
    assert context["sipline"]["sip"]["caller_id"] == "sipp", context
    [session] = agent_server.wait_sessions("sales")
    sent = json.loads(session.custom_parameters["template_context"])
    assert {key: sent[key] for key in EXPECTED} == EXPECTED, sent
