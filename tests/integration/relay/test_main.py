"""``python -m relay`` (``relay/__main__.py``): SIGTERM drains the relay, and what the control
plane did not acknowledge waits in the spool for the next start.

The relay runs in the test's event loop through ``relay.__main__.serve``, which installs the
signal handlers; the test sends this process a real SIGTERM once they are installed. Expected
values come from docs/relay.md (Shutting down; Events that could not be delivered: the spool;
the events table).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from relay import __main__ as relay_main
from relay.control.webhooks import EVENTS_PATH
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.control.fake_control_plane import Reply
from tests.integration.relay.harness import (
    CALL_ID,
    STOP_S,
    ControlPlane,
    Phone,
    accepting,
    run,
    running,
    settings_for,
    spooled,
    start,
    until,
)


def _events_refused(path: str) -> Reply | None:
    return Reply(503, b"down for maintenance") if path == EVENTS_PATH else None


def test_sigterm_hangs_up_and_leaves_undelivered_events_in_the_spool_for_the_next_start(
    tmp_path: Path,
) -> None:
    """docs/relay.md, Shutting down: on SIGTERM the relay hangs up every call (``stop`` to the
    agent, BYE to the caller, recorded as ``relay_shutdown``), tries for 5 s to deliver, and leaves
    what is undelivered in the spool; the spool section: a relay started later on the same
    directory delivers it, and an idle relay that has caught up has an empty spool."""
    spool = tmp_path / "spool"

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url:
            control = ControlPlane(decision=accepting(url), script=_events_refused)
            await control.start()
            relay = await start(
                settings_for(control.url, spool),
                serve=lambda service, _: relay_main.serve(service),
            )
            async with Phone(relay.port) as phone:
                phone.invite()
                assert (await phone.answered()).status == 200
                assert (await agent.next_json())["event"] == "connected"
                await control.stop()  # the control plane is down from here on
                assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
                os.kill(os.getpid(), signal.SIGTERM)
                await asyncio.wait_for(relay.task, STOP_S)
                assert any(r.method == "BYE" for r in phone.requests)
            left = spooled(spool)
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers removed
            assert agent.events()[-1] == "stop"
            delivered_before = dict(control.applied)

            control.script = lambda path: None  # the control plane is back
            await control.start()
            try:
                async with running(settings_for(control.url, spool)):
                    await until(lambda: len(control.applied) >= len(left))
                    await until(lambda: not spooled(spool))
            finally:
                await control.stop()

        assert delivered_before == {}
        kinds = [(e.type.value, e.reason, e.detail) for e in left]
        assert kinds == [
            ("invite_received", None, None),
            ("ringing", None, None),
            ("agent_joined", None, None),
            ("answered", None, None),
            ("agent_left", None, "relay_shutdown"),
            ("leg_ended", "error", "relay_shutdown"),
        ]
        assert {e.call_id for e in left} == {CALL_ID}
        assert list(control.applied) == [e.event_id for e in left]
        assert all(_same(control.applied[e.event_id], e.model_dump(mode="json", by_alias=True))
                   for e in left)  # fmt: skip

    run(scenario)


def _same(delivered: dict[str, Any], spooled_event: dict[str, Any]) -> bool:
    return all(delivered.get(k) == v for k, v in spooled_event.items() if v is not None)
