"""Headers end to end: SIPp's INVITE to ``sales@`` with X- headers, through the relay and the
INVITE webhook, ends in the call record's template context and in the agent's ``start``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.interop.agent_server import AgentServer
from tests.interop.sipp import SCENARIOS, run_sipp, scenario
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


def test_a_latin1_display_name_is_answered_and_recorded_with_a_replacement_character(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path
) -> None:
    """An older PBX's From display name in Latin-1 (byte E9, not UTF-8): the call goes through,
    and the call record shows U+FFFD for the byte (docs/relay.md, "Bytes that are not UTF-8")."""
    agent_id = stack.add_agent("interop-latin1", "^latin1$", agent_server.url("latin1"))
    source = (SCENARIOS / "headers.xml").read_bytes()
    latin1 = source.replace(b"From: sipp <sip:sipp@", b'From: "caf\xe9 sipp" <sip:sipp@')
    assert latin1.count(b"caf\xe9") == 3  # INVITE, ACK and BYE
    (path := tmp_path / "latin1-display-name.xml").write_bytes(latin1)

    run = run_sipp(stack, tmp_path, service="latin1", scenario_file=path)

    assert run.returncode == 0, run.explain()
    [call] = stack.wait_for_call(agent_id)
    assert call["sipDetails"]["fromDisplayName"] == "caf\ufffd sipp"
    assert call["templateContext"]["sipline"]["sip"]["from_display_name"] == "caf\ufffd sipp"
