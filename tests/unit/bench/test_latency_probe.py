"""The latency probe's payloads and figures (bench code; the echo agent over a real WebSocket:
tests/integration/bench/test_echo_agent.py)."""

from __future__ import annotations

import base64
from typing import Any

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
