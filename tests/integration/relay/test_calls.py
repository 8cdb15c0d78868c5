"""One call's glue (``relay/calls/``) inside a running relay: a phone on UDP, a scripted agent.

Expected values come from the docs: the agent's ``dtmf`` message from docs/agents.md (To the
agent), the INFO bodies read from docs/codecs.md (DTMF), what a bug in a call does from
docs/relay.md (How a call ends).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chalicelib.contracts import CallEvent, CallEventType
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.control.fake_control_plane import FakeControlPlane
from tests.integration.relay.harness import (
    CALL_ID,
    LOOPBACK,
    ControlPlane,
    Phone,
    accepting,
    run,
    running,
    settings_for,
    until,
)


async def _connected(agent: Agent) -> dict[str, Any]:
    """Wait for the agent's ``connected`` then ``start`` messages; return ``start``."""
    assert (await agent.next_json())["event"] == "connected"
    start = await agent.next_json()
    assert start["event"] == "start"
    return start


INFOS = [
    ("application/dtmf-relay", "Signal=10\r\nDuration=160\r\n"),
    ("application/dtmf", "1"),
    ("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
    ("application/dtmf-relay", "Signal=11\r\nDuration=160\r\n"),
]


def test_sip_info_dtmf_relay_digits_reach_the_agent_as_twilio_dtmf_messages(
    tmp_path: Path,
) -> None:
    """docs/codecs.md: an INFO ``application/dtmf-relay`` with ``Signal=5`` is the key 5, and
    ``Signal=10`` and ``11`` are ``*`` and ``#``; other INFO bodies (``application/dtmf``
    included) are answered 200 and ignored. docs/agents.md: each key reaches the agent as
    ``{"event":"dtmf",...,"dtmf":{"track":"inbound_track","digit":"5"}}``."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url:
            control = ControlPlane(decision=accepting(url))
            await control.start()
            try:
                settings = settings_for(control.url, tmp_path)
                async with running(settings) as relay, Phone(relay.port) as phone:
                    phone.invite()
                    assert (await phone.answered()).status == 200
                    start = await _connected(agent)
                    for content_type, body in INFOS:
                        assert (await phone.info(content_type, body)).status == 200
                    digits = [await agent.next_event("dtmf") for _ in range(3)]
                    assert (await phone.bye()).status == 200
                    await until(agent.closed.is_set)
            finally:
                await control.stop()

        assert [d["dtmf"] for d in digits] == [
            {"track": "inbound_track", "digit": "*"},
            {"track": "inbound_track", "digit": "5"},
            {"track": "inbound_track", "digit": "#"},
        ]
        assert {d["streamSid"] for d in digits} == {start["streamSid"]}
        sequence = [int(d["sequenceNumber"]) for d in digits]
        assert sequence == sorted(set(sequence))
        dtmf = [json.loads(m) for _, m in agent.arrivals if isinstance(m, str) and '"dtmf"' in m]
        assert len(dtmf) == 3  # application/dtmf was ignored

    run(scenario)


def _failing_on(
    kind: CallEventType, record: Callable[[CallEvent], None]
) -> Callable[[CallEvent], None]:
    """``record``, except that recording a ``kind`` event raises (a bug in the call's glue)."""

    def faulty(event: CallEvent) -> None:
        if event.type == kind:
            raise RuntimeError(f"injected fault: recording {kind.value}")
        record(event)

    return faulty


def _ends_of(control: FakeControlPlane) -> list[dict[str, Any]]:
    return [e for e in control.applied.values() if e["type"] == "leg_ended"]


@pytest.mark.parametrize(
    ("fault_at", "caller_gets"),
    [(CallEventType.RINGING, 480), (CallEventType.ANSWERED, "BYE")],
    ids=["before-the-answer", "after-the-answer"],
)
def test_a_failure_in_a_calls_glue_ends_the_call_with_internal_error(
    tmp_path: Path, fault_at: CallEventType, caller_gets: int | str
) -> None:
    """docs/relay.md, How a call ends: "a bug in the call's task | hangs up (BYE, or 480 before
    the answer) | leg_ended error (detail internal_error)". The fault is injected through the
    call's ``record`` dependency (``CallDeps``): the event ``fault_at`` cannot be recorded."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url:
            control = ControlPlane(decision=accepting(url))
            await control.start()
            try:
                async with running(settings_for(control.url, tmp_path)) as relay:
                    deps = relay.service.call_deps
                    assert deps is not None
                    faulty = _failing_on(fault_at, deps.record)
                    relay.service.call_deps = replace(deps, record=faulty)
                    async with Phone(relay.port) as phone:
                        phone.invite()
                        final = await phone.answered()
                        if caller_gets == "BYE":
                            assert final.status == 200
                            await phone.request("BYE")
                            await until(agent.closed.is_set)
                        else:
                            assert (final.status, final.reason) == (480, "Temporarily Unavailable")
                        await until(lambda: bool(_ends_of(control)))
                        await until(lambda: not relay.service.flows)
            finally:
                await control.stop()

        [ended] = _ends_of(control)
        assert (ended["reason"], ended["detail"]) == ("error", "internal_error")
        assert ended["callId"] == CALL_ID
        kinds = [e["type"] for e in control.applied.values()]
        assert fault_at.value not in kinds

    run(scenario)


def _taken_pair(low: int = 26400, high: int = 26600) -> list[socket.socket]:
    """Bind an even UDP port and the odd one above it on 127.0.0.1; return both sockets."""
    for port in range(low, high, 2):
        sockets: list[socket.socket] = []
        try:
            for number in (port, port + 1):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind((LOOPBACK, number))
        except OSError:
            for sock in sockets:
                sock.close()
            continue
        return sockets
    raise AssertionError(f"no free even/odd UDP pair in {low}-{high}")


def test_a_relay_out_of_rtp_ports_answers_503_with_retry_after_not_internal_error(
    tmp_path: Path,
) -> None:
    """docs/relay.md, How a call ends: a relay with no RTP port pair free (every pair of
    ``SIPLINE_RTP_PORTS`` in use) is busy, not broken: the caller gets 503 with
    ``Retry-After`` (``SIPLINE_RETRY_AFTER_S``), so that the carrier tries another relay, and
    the accepted call ends with ``leg_ended`` ``error`` detail ``rtp_ports_exhausted``, sipStatus
    503. The fault comes through the call's ``ports`` dependency: its one pair is taken."""
    taken = _taken_pair()
    low = taken[0].getsockname()[1]

    async def scenario() -> None:
        control = ControlPlane(decision=accepting("ws://127.0.0.1:9/agent"))
        await control.start()
        settings = settings_for(control.url, tmp_path, rtp_port_min=low, rtp_port_max=low + 1)
        try:
            async with running(settings) as relay, Phone(relay.port) as phone:
                phone.invite()
                final = await phone.answered()
                await until(lambda: bool(_ends_of(control)))
        finally:
            await control.stop()
            for sock in taken:
                sock.close()

        assert (final.status, final.reason) == (503, "Service Unavailable")
        assert final.headers.get("Retry-After") == "5"
        [ended] = _ends_of(control)
        assert (ended["reason"], ended["detail"], ended["sipStatus"]) == (
            "error",
            "rtp_ports_exhausted",
            503,
        )

    run(scenario)
