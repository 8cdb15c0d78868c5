"""The bounds of one agent bridge: connecting, keeping alive, and what it holds for a slow agent.

Theory of operation: one frozen :class:`BridgeSettings` per call (``relay/calls/agent.py``
builds it from the deployment's egress policy and the template's ``joinTimeout``), read by the
connect attempts (:mod:`relay.bridge.connect`: total and per-attempt time, attempts, pauses,
proxy, egress policy) and by the open bridge (:mod:`relay.bridge.agent_ws`: pings, close
handshake, message size, pending marks, unsent caller audio). The defaults suit production and
are the ones ``docs/agents.md`` states; tests shrink the times. Nothing here changes during a
call.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.egress import EgressPolicy

__all__ = ["BridgeSettings"]


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """Bounds of one agent bridge (defaults suit production; tests shrink them)."""

    connect_timeout_s: float = 8.0
    """Total time for all connection attempts, while the caller hears ringing."""
    attempt_timeout_s: float = 3.0
    """One attempt: TCP, TLS and the HTTP upgrade."""
    max_attempts: int = 6
    retry_delays_s: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    """Pause after failed attempt n (the last repeats)."""
    ping_interval_s: float | None = 10.0
    ping_timeout_s: float | None = 10.0
    close_timeout_s: float = 2.0
    """Bound on sending the final messages and on the closing handshake."""
    max_message_bytes: int = 1 << 20
    """Largest agent message (1 MiB: about a minute of base64 μ-law); larger closes with 1009."""
    max_pending_marks: int = 1000
    outbox_media_frames: int = 50
    """Caller audio (1 s of frames) that may wait unsent for a slow agent; beyond it, dropped."""
    use_env_proxy: bool = False
    """Honour HTTP(S)_PROXY for the agent connection (off: agents are dialled directly). The
    host's addresses are still checked, but the proxy connects by name: its egress rules apply."""
    egress: EgressPolicy = EgressPolicy()
    """Where agents may be (``SIPLINE_ALLOWED_PRIVATE_TARGETS``); the default: public only."""
