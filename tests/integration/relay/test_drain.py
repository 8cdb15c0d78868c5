"""Draining, the health port and the call cap of a relay in the test's event loop
(``relay/drain.py``, ``relay/health_port.py``, ``relay/service.py``), against docs/relay.md
(Shutting down; Configuration) and RFC 3326 (the Reason of the shutdown's BYE).

SIGTERM is the relay's stop event (what ``relay/__main__.py`` sets); a second signal is its cut
event. Every wait is bounded (``until``, ``Phone``'s own bounds).
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from chalicelib.contracts import CallEvent
from relay.control.commands import CommandNotHere
from relay.service import RelayService
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.calls.dialing import dial_command
from tests.integration.relay.harness import (
    LOOPBACK,
    STOP_S,
    WAIT_S,
    ControlPlane,
    Phone,
    accepting,
    run,
    settings_for,
    start,
    until,
)

LONG_DRAIN_S = 600.0
"""A drain no test waits out: the call ends by the caller, or the second signal cuts it."""
SHORT_DRAIN_S = 1.0
SHUTDOWN_REASON = 'SIP;cause=503;text="relay shutting down"'
"""docs/relay.md, Shutting down (the deploy contract's value)."""


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


async def _health_open(port: int) -> bool:
    """Connect to the health port: True if accepted (and closed by the relay), False if refused."""
    try:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
    except ConnectionRefusedError:
        return False
    assert await asyncio.wait_for(reader.read(1), WAIT_S) == b""  # closed at once, nothing sent
    writer.close()
    return True


async def _connected(agent: Agent) -> None:
    assert (await agent.next_json())["event"] == "connected"
    assert (await agent.next_json())["event"] == "start"


def _ends(control: ControlPlane) -> list[tuple[str, str | None, str | None]]:
    events = [CallEvent.model_validate(e) for e in control.applied.values()]
    return [
        (e.type.value, e.reason.value if e.reason else None, e.detail)
        for e in events
        if e.type.value in ("agent_left", "leg_ended")
    ]


def test_a_drain_keeps_the_call_refuses_new_ones_and_ends_when_the_caller_hangs_up(
    tmp_path: Path,
) -> None:
    """docs/relay.md, Shutting down: from SIGTERM the health port is closed and a new INVITE
    gets 503 with ``Retry-After: 1``; the call in progress goes on (an INFO is answered, no BYE
    comes), and when its caller hangs up the relay stops without waiting for the deadline."""

    async def scenario() -> None:
        agent = Agent()
        health = _free_tcp_port()
        async with agent_server(agent) as url:
            control = ControlPlane(decision=accepting(url))
            await control.start()
            try:
                settings = settings_for(
                    control.url, tmp_path, drain_s=LONG_DRAIN_S, health_port=health
                )
                relay = await start(settings)
                assert await _health_open(health)
                async with Phone(relay.port) as phone, Phone(relay.port) as late:
                    phone.invite()
                    assert (await phone.answered()).status == 200
                    await _connected(agent)

                    relay.stop_event.set()  # SIGTERM
                    await until(lambda: not relay.service.ready.is_set())
                    assert not await _health_open(health)
                    late.invite()
                    refused = await late.answered()
                    info = await phone.info(
                        "application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"
                    )
                    assert not any(r.method == "BYE" for r in phone.requests)
                    assert not relay.task.done()

                    assert (await phone.bye()).status == 200
                    await asyncio.wait_for(asyncio.shield(relay.task), STOP_S)
            finally:
                await control.stop()

        assert (refused.status, refused.headers.get("Retry-After")) == (503, "1")
        assert info.status == 200
        assert relay.service.invites_refused == {"relay_not_ready": 1}
        assert _ends(control) == [
            ("agent_left", None, "caller_hung_up"),
            ("leg_ended", "remote_hangup", "bye"),
        ]

    run(scenario)


@pytest.mark.parametrize("ending", ["deadline", "second_signal"])
def test_after_the_deadline_or_a_second_signal_the_caller_gets_bye_with_the_reason(
    tmp_path: Path, ending: str
) -> None:
    """docs/relay.md, Shutting down: a call still up when the drain ends (its deadline, or a
    second SIGTERM/SIGINT) gets BYE with ``Reason: SIP;cause=503;text="relay shutting down"``
    (RFC 3326), the agent gets ``stop``, and the end is recorded ``relay_shutdown``:
    ``agent_left`` without an error reason, ``leg_ended`` ``error``."""

    async def scenario() -> None:
        agent = Agent()
        cut = asyncio.Event()
        drain_s = SHORT_DRAIN_S if ending == "deadline" else LONG_DRAIN_S

        async def serve(service: RelayService, stop: asyncio.Event) -> None:
            await service.run(stop, cut)

        async with agent_server(agent) as url:
            control = ControlPlane(decision=accepting(url))
            await control.start()
            try:
                relay = await start(settings_for(control.url, tmp_path, drain_s=drain_s), serve)
                async with Phone(relay.port) as phone:
                    phone.invite()
                    assert (await phone.answered()).status == 200
                    await _connected(agent)
                    relay.stop_event.set()  # SIGTERM
                    if ending == "second_signal":
                        await until(lambda: not relay.service.ready.is_set())
                        cut.set()
                    bye = await phone.request("BYE")
                    stop = await agent.next_event("stop")
                    await asyncio.wait_for(asyncio.shield(relay.task), STOP_S)
            finally:
                await control.stop()

        assert bye.headers.get("Reason") == SHUTDOWN_REASON
        assert stop["event"] == "stop"
        assert _ends(control) == [
            ("agent_left", None, "relay_shutdown"),
            ("leg_ended", "error", "relay_shutdown"),
        ]

    run(scenario)


def test_beyond_max_calls_an_invite_gets_503_and_a_dial_is_passed_on(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """docs/relay.md, Configuration: at ``SIPLINE_MAX_CALLS`` calls a new INVITE gets 503 with
    ``Retry-After: 1`` and a ``dial`` is not taken (the consumer passes it on to another relay,
    docs/relay.md Commands); once a call ended, a new one is taken. With ``SIPLINE_METRICS=emf``
    the refusal is counted in the ``InvitesRefused`` of the EMF line written at the stop."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url:
            control = ControlPlane(decision=accepting(url))
            await control.start()
            try:
                settings = settings_for(control.url, tmp_path, max_calls=1, metrics="emf")
                relay = await start(settings)
                async with Phone(relay.port) as first, Phone(relay.port) as second:
                    first.invite()
                    assert (await first.answered()).status == 200
                    await _connected(agent)
                    second.invite()
                    refused = await second.answered()
                    with pytest.raises(CommandNotHere, match="1 calls already"):
                        await relay.service._dial_command(dial_command(url))
                    assert (await first.bye()).status == 200
                    await until(lambda: not relay.service.held_call_ids())
                async with Phone(relay.port) as third:
                    third.invite()
                    assert (await third.answered()).status == 200
                    await agent.next_json()  # connected
                    await relay.stop()
            finally:
                await control.stop()

        assert (refused.status, refused.headers.get("Retry-After")) == (503, "1")
        assert relay.service.invites_refused == {"relay_at_capacity": 1}
        out = capfd.readouterr().out
        [line] = [json.loads(text) for text in out.splitlines() if text.startswith('{"_aws"')]
        assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "sipline"
        assert (line["service"], line["stage"]) == ("sipline-relay", "local")
        assert line["InvitesRefused"] in (1, 1.0, [1.0])
        assert line["CallsFailed"] in (0, 0.0, [0.0])

    run(scenario)
