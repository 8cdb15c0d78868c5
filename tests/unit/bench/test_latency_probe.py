"""The latency probe's payloads and figures, and the echo agent's own WebSocket (bench code)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from websockets.asyncio.client import connect

from bench.echo_agent import EchoAgent, EchoConnection
from bench.latency_probe import (
    PAYLOAD_BYTES,
    PROBE_PREFIX_B64,
    decode_key,
    probe_payload,
    summarize,
)


def test_probe_payload_base64_starts_with_the_fixed_prefix_and_carries_id_and_counter() -> None:
    for probe_id, counter in ((0, 0), (7, 49), (65535, 2**32 - 1)):
        payload = probe_payload(probe_id, counter)
        text = base64.b64encode(payload)
        assert len(payload) == PAYLOAD_BYTES
        assert text.startswith(PROBE_PREFIX_B64)
        assert decode_key(text[8:16].decode()) == (probe_id, counter)


def _result(sent: int, received: dict[int, bool]) -> dict[str, Any]:
    return {
        "calls": [{
            "probe_id": 3, "sent": [i * 0.02 for i in range(sent)],
            "received": [[c, c * 0.02 + 0.015, ok] for c, ok in received.items()],
        }],
        "tick_lateness_s": [0.001] * sent,
    }  # fmt: skip


def _agent_row(counter: int) -> list[Any]:
    key = base64.b64encode(probe_payload(3, counter))[8:16].decode()
    return [key, counter * 0.02 + 0.005, counter * 0.02 + 0.006]


def test_summarize_times_each_way_and_counts_lost_and_altered_frames_after_the_warm_up() -> None:
    rows = [_agent_row(c) for c in range(100) if c != 60]  # 60 lost on the way to the agent
    back = {c: c != 70 for c in range(100) if c not in (60, 80)}  # 80 lost back, 70 altered

    latency = summarize(_result(100, back), rows, warmup_s=1.0)

    assert latency.sent == 50
    assert (latency.lost_to_agent, latency.lost_to_caller, latency.altered) == (1, 1, 1)
    assert round(latency.to_agent_ms["p50"], 6) == 5.0
    assert round(latency.to_caller_ms["p99"], 6) == 9.0
    assert round(latency.to_caller_excess_ms["max"], 6) == 0.0


def test_echo_agent_echoes_media_over_a_real_websocket_and_records_probe_frames() -> None:
    async def scenario() -> tuple[list[dict[str, Any]], EchoAgent]:
        agent = EchoAgent()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: EchoConnection(agent), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        probe = base64.b64encode(probe_payload(1, 2)).decode()
        async with connect(f"ws://127.0.0.1:{port}/agent", compression=None) as socket:
            await socket.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
            await socket.send('{"event":"start","sequenceNumber":"1","streamSid":"MZ1"}')
            for payload in ("AAAA", probe):
                await socket.send(
                    f'{{"event":"media","sequenceNumber":"2","media":{{"track":"inbound",'
                    f'"chunk":"1","timestamp":"0","payload":"{payload}"}},"streamSid":"MZ1"}}'
                )
            echoes = [json.loads(await asyncio.wait_for(socket.recv(), 5)) for _ in range(2)]
        server.close()
        return echoes, agent

    echoes, agent = asyncio.run(scenario())

    assert [e["media"]["payload"] for e in echoes][0] == "AAAA"
    assert echoes[1]["streamSid"] == "MZ1"
    assert [row[0] for row in agent.probes] == [
        base64.b64encode(probe_payload(1, 2))[8:16].decode()
    ]
    assert agent.stats["media"] == 2
