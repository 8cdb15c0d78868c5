"""An outgoing call from a running relay to a peer we did not write, and what it recorded.

:func:`dial` runs a whole relay in the test's loop (``tests/integration/relay/harness.py``) with
the relay tests' control-plane stand-in taking its events, gives the ``dial`` command to the
relay's handler as the command consumer would, ends the call as told (an API hang-up while it
rings or once the agent joined, given to the ``hangup`` handler) and waits until the leg ended.
:class:`Dialled` reads the outcome the API would show (``endReason``,
``sipDetails.terminationReason``) from the recorded events with the control plane's summary.
Used by ``test_outgoing_sipp.py`` and ``test_outgoing_kamailio.py``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.call_outcome import summarize
from chalicelib.contracts import CallEvent, HangUpCommand
from relay.config import RelaySettings
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.calls.dialing import PASSWORD_KEY, dial_command
from tests.integration.relay.harness import ControlPlane, Relay, run, running, settings_for, until

NOBODY = "ws://127.0.0.1:9/agent"
ENDED_S = 30.0
"""Bound on a call's end (SIPp's own timeouts are shorter)."""


@dataclass
class Dialled:
    """What a test reads after the call: the events, and what the agent got."""

    events: list[CallEvent]
    agent: Agent
    media: list[bytes] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [event.type.value for event in self.events]

    @property
    def outcome(self) -> tuple[str | None, str | None]:
        summary = summarize(self.events)
        end = summary.end_reason.value if summary.end_reason else None
        term = summary.termination_reason.value if summary.termination_reason else None
        return end, term

    def leg_ended(self) -> CallEvent:
        return next(e for e in self.events if e.type.value == "leg_ended")


def events_of(control: ControlPlane) -> list[CallEvent]:
    return [CallEvent.model_validate(event) for event in control.applied.values()]


async def dial(
    to: str,
    tmp_path: Path,
    *,
    answered: bool,
    hang_up_after_join: bool = False,
    hang_up_while_ringing: bool = False,
    ready_to_hang_up: Callable[[], bool] = lambda: True,
    ring_timeout_s: float = 60.0,
    settings: Callable[[RelaySettings], RelaySettings] = lambda s: s,
    **overrides: Any,
) -> Dialled:
    """Dial ``to`` from a running relay; end the call as told (an API hang-up while ringing, or
    once the agent has ``start`` and ``ready_to_hang_up()`` holds); wait until its leg ended."""
    control = ControlPlane()
    agent = Agent()
    await control.start()
    try:
        async with agent_server(agent) as url:
            base = settings_for(
                control.url, tmp_path / "spool", password_key=PASSWORD_KEY,
                ring_timeout_s=ring_timeout_s,
            )  # fmt: skip
            async with running(settings(base)) as relay:
                command = dial_command(url if answered else NOBODY, to=to, **overrides)
                await relay.service._dial_command(command)
                if hang_up_while_ringing:
                    await until(lambda: "ringing" in [e["type"] for e in control.applied.values()])
                    await hang_up(relay, command.call_id)
                if hang_up_after_join:
                    await agent.next_event("start", timeout_s=10)
                    await until(ready_to_hang_up, timeout_s=10)
                    await hang_up(relay, command.call_id)
                await until(lambda: ended(control), timeout_s=ENDED_S)
    finally:
        await control.stop()
    return Dialled(events_of(control), agent, media=media_of(agent))


async def hang_up(relay: Relay, call_id: str) -> None:
    """The ``hangup`` command ``DELETE /api/calls/{id}`` sends, given to the relay's handler."""
    await relay.service._hang_up_command(HangUpCommand(call_id=call_id))


def ended(control: ControlPlane) -> bool:
    return any(event["type"] == "leg_ended" for event in control.applied.values())


def media_of(agent: Agent) -> list[bytes]:
    """The μ-law payloads of the agent's ``media`` messages (Twilio framing)."""
    payloads = []
    for _, message in agent.arrivals:
        if isinstance(message, str):
            decoded = json.loads(message)
            if decoded.get("event") == "media":
                payloads.append(base64.b64decode(decoded["media"]["payload"]))
    return payloads


def run_scenario(scenario: Callable[[], Awaitable[Dialled]]) -> Dialled:
    """Run ``scenario`` on a fresh loop (bounded); return its :class:`Dialled`."""
    result: list[Dialled] = []

    async def capture() -> None:
        result.append(await scenario())

    run(capture, timeout_s=120.0)
    return result[0]
