"""What an agent sends on its WebSocket, as an attack on the call and the relay (docs/security.md).

The agent is the account's own, but a buggy or hostile one must cost only its own call's bounded
state: a flood of ``dtmf`` messages (docs/agents.md, Sending digits to the caller) fills one
call's 64-digit queue and no more, each refusal is counted, the log grows by one line per tenfold
count and never carries the message's content, and the call goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from relay.media.dtmf_playout import DtmfPlayout
from tests.integration.relay.bridge.harness import (
    IDENTITY,
    Agent,
    FakeMediaPort,
    agent_server,
    bridge,
    run,
    until,
)

FLOOD = 2000
SID = IDENTITY.stream_sid


class BoundedMediaPort(FakeMediaPort):
    """The in-memory media port, with the real per-call digit queue behind ``send_dtmf``."""

    def __init__(self) -> None:
        super().__init__()
        self.playout = DtmfPlayout()

    def send_dtmf(self, digits: str, duration_ms: int) -> bool:
        return self.playout.queue(digits, duration_ms)


def test_a_dtmf_flood_fills_one_calls_queue_and_the_log_grows_by_tenfold_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret_digits = "7" * 5000  # out of bounds; must never be echoed to the log

    async def scenario() -> None:
        agent, port = Agent(), BoundedMediaPort()
        async with agent_server(agent) as url, asyncio.TaskGroup() as group:
            under_test = bridge(url, port)
            task = group.create_task(under_test.run())
            assert await under_test.connected()
            full = json.dumps({"event": "dtmf", "streamSid": SID, "dtmf": {"digits": "1" * 32}})
            bad = json.dumps({"event": "dtmf", "dtmf": {"digits": secret_digits}})
            for index in range(FLOOD):
                await agent.send(full if index % 2 else bad)
            await agent.send({"event": "media", "media": {"payload": "AQI="}})
            await until(lambda: port.received == b"\x01\x02", timeout_s=20)
            counters = under_test.digits.counters
            assert port.playout.pending == 64  # two messages' worth, then refused whole
            assert (counters.digits_queued, counters.refused_full) == (64, FLOOD // 2 - 2)
            assert counters.refused_invalid == FLOOD // 2
            assert not task.done()  # the call goes on
            under_test.stop()

    with caplog.at_level(logging.WARNING, logger="sipline.relay.bridge"):
        run(scenario, timeout_s=60)
    refusals = [r.getMessage() for r in caplog.records if "dtmf" in r.getMessage()]
    assert len(refusals) == 4 + 3  # at 1, 10, 100 and 1,000 invalid; at 1, 10, 100 of 998 full
    assert not any(secret_digits[:40] in message for message in refusals)
