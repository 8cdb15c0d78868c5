"""The benchmark's echo agent over a real WebSocket on 127.0.0.1 (bench/echo_agent.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from websockets.asyncio.client import connect

from bench.echo_agent import EchoAgent, EchoConnection
from bench.latency_probe import probe_payload


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
