"""What the relay's heartbeat says about a call that ended while its events wait undelivered
(docs/relay.md, Heartbeat; docs/billing.md, Calls no relay will end): the call stays listed, and
``endedAt`` carries its last event's instant, so a relay killed before delivering them does not
get the call billed past its end."""

from __future__ import annotations

from pathlib import Path

from relay.control.webhooks import EVENTS_PATH
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.control.fake_control_plane import Reply
from tests.integration.relay.harness import (
    CALL_ID,
    ControlPlane,
    Phone,
    accepting,
    run,
    running,
    settings_for,
    spooled,
    until,
)

HEARTBEAT_S = 0.2


def _events_refused(path: str) -> Reply | None:
    return Reply(503, b"events down") if path == EVENTS_PATH else None


def test_a_call_ended_with_undelivered_events_is_listed_with_its_end(tmp_path: Path) -> None:
    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url:
            control = ControlPlane(decision=accepting(url), script=_events_refused)
            await control.start()
            try:
                settings = settings_for(control.url, tmp_path, heartbeat_s=HEARTBEAT_S)
                async with running(settings) as relay, Phone(relay.port) as phone:
                    phone.invite()
                    assert (await phone.answered()).status == 200
                    assert (await agent.next_json())["event"] == "connected"
                    await until(lambda: any(CALL_ID in b.call_ids for b in control.heartbeats))
                    held = [b for b in control.heartbeats if CALL_ID in b.call_ids][-1]
                    assert (await phone.bye()).status == 200
                    await until(lambda: not relay.service.held_call_ids())
                    sent = len(control.heartbeats)
                    await until(lambda: len(control.heartbeats) > sent)
                    after = control.heartbeats[-1]
                    last_event = max(e.occurred_at for e in spooled(tmp_path))
            finally:
                await control.stop()

        assert held.ended_at is None  # held: no end yet
        assert CALL_ID in after.call_ids
        assert after.ended_at == {CALL_ID: last_event}
        assert after.evidence(CALL_ID) == last_event < after.sent_at

    run(scenario)
