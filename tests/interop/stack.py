"""The whole system for the interop tests: moto + ``chalice local`` + the relay, on free ports.

Each test module gets its own agent and To-user pattern (``InteropStack.add_agent``); the
account's routing rules are the union of them, so modules never see each other's calls. The
relay polls the allowlist every second here: after a change, wait ``ALLOWLIST_SETTLE_S``.
"""

from __future__ import annotations

import random
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from scripts.localstack import LocalStack

ALLOWLIST_SETTLE_S = 1.5
LOOPBACK = "127.0.0.1"
HTTP_TIMEOUT_S = 10


def require(tool: str) -> str:
    """Return the path of ``tool``; fail the test (never skip) when it is missing."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool!r} is not installed: the interop suite needs it (scripts/system-deps.sh "
            "installs it)",
            pytrace=False,
        )
    return path


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def free_sip_port(*, tls_above: bool = False, avoid: tuple[int, ...] = ()) -> int:
    """Return a port free for both UDP and TCP on 127.0.0.1 (SIP listens on both).

    ``tls_above``: the port above it must be free for TCP too (baresip listens for TLS there).
    ``avoid``: ports already promised to something else (they are not bound yet).
    """
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port in avoid or not _bindable(port, socket.SOCK_DGRAM):
            continue
        if not tls_above or _bindable(port + 1, socket.SOCK_STREAM):
            return port
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


RELAY_RTP_PORTS = (30000, 40000)
"""Where the relay's RTP range is drawn from; the SIP clients' ranges come from above it."""


def free_port_range(size: int, low: int = 40000, high: int = 60000) -> tuple[int, int]:
    """Return ``(first, last)`` of ``size`` consecutive UDP ports, all free a moment ago."""
    for _ in range(100):
        first = random.randrange(low, high - size) & ~1
        if all(_bindable(port, socket.SOCK_DGRAM) for port in range(first, first + size)):
            return first, first + size - 1
    raise RuntimeError(f"no {size} consecutive free UDP ports in {low}-{high}")


@dataclass
class InteropStack:
    """The running local stack plus the REST calls the tests make."""

    local: LocalStack
    workdir: Path
    rules: list[dict[str, str]] = field(default_factory=list)

    @property
    def sip_port(self) -> int:
        return self.local.sip_port

    @property
    def tls_port(self) -> int:
        return self.local.tls_port

    @property
    def tls_files(self) -> tuple[Path, Path]:
        """The relay's self-signed certificate and key (SIPp's TLS transport needs a pair)."""
        tls = self.local.state_dir / "tls"
        return tls / "relay.pem", tls / "relay.key"

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        headers = {"X-API-Key": self.local.credentials.api_key}
        return requests.request(
            method, self.local.api_url + path, json=body, headers=headers, timeout=HTTP_TIMEOUT_S
        )

    def add_agent(
        self, name: str, pattern: str, media_url: str | None = None, **template_fields: Any
    ) -> str:
        """Create an agent routed by ``pattern`` (To user); return its id.

        ``template_fields`` go into its call template as they are (``maxDuration="2s"``).
        """
        template: dict[str, Any] = {"systemPrompt": f"You are {name}.", **template_fields}
        if media_url is not None:
            template["mediaEndpoint"] = {"url": media_url, "framing": "twilio"}
        created = self.api("POST", "/api/agents", {"name": name, "callTemplate": template})
        assert created.status_code == 201, created.text
        agent_id: str = created.json()["agentId"]
        self.rules.append({"agentId": agent_id, "toUserPattern": pattern})
        patched = self.api("PATCH", "/api/sip", {"allowedAgents": self.rules})
        assert patched.status_code == 200, patched.text
        return agent_id

    def set_allowed_cidrs(self, ranges: list[str]) -> None:
        """Replace the account's allowlist, then wait until the relay has picked it up."""
        patched = self.api("PATCH", "/api/sip", {"allowedCidrRanges": ranges})
        assert patched.status_code == 200, patched.text
        time.sleep(ALLOWLIST_SETTLE_S)

    def calls(self, agent_id: str) -> list[dict[str, Any]]:
        """The agent's call records, newest first."""
        listed = self.api("GET", f"/api/calls?agentIds={agent_id}")
        assert listed.status_code == 200, listed.text
        results: list[dict[str, Any]] = listed.json()["results"]
        return results

    def wait_for_call(
        self,
        agent_id: str,
        done: Callable[[dict[str, Any]], bool] = lambda call: call.get("ended") is not None,
        *,
        count: int = 1,
        timeout_s: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Poll until the agent has ``count`` calls that satisfy ``done``; return them."""
        deadline = time.monotonic() + timeout_s
        calls: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            calls = self.calls(agent_id)
            if len(calls) >= count and all(done(call) for call in calls[:count]):
                return calls[:count]
            time.sleep(0.2)
        raise AssertionError(f"calls of agent {agent_id} not done in {timeout_s}s: {calls}")

    def relay_log(self) -> str:
        """The relay's log so far (attached to failure messages)."""
        path = self.local.log_dir / "relay.log"
        return path.read_text(errors="replace") if path.exists() else ""
