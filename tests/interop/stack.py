"""The whole system for the interop tests: moto + ``chalice local`` + the relay, on free ports.

Each test module gets its own agent and To-user pattern (``InteropStack.add_agent``); the
account's routing rules are the union of them, so modules never see each other's calls. A test
that changes the allowlist does so for itself (``InteropStack.allowed_cidrs`` puts the old one
back), and every change is waited for until the relay says it holds it: its log names each
allowlist version it takes, and the control plane tells which version a change made.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib import signing
from scripts.localstack import LocalStack

LOOPBACK = "127.0.0.1"
HTTP_TIMEOUT_S = 10
ALLOWLIST_PATH = "/webhooks/sip/allowlist"
ALLOWLIST_TAKEN_S = 10.0
"""How long the relay may take to log a new allowlist (it polls every second here): a bound on a
wait for an event, not a duration asserted."""
ALLOWLIST_LOGGED = re.compile(r"allowlist version (\d+): ")


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


def stop_group(process: subprocess.Popen[bytes] | None, wait_s: float = 5) -> None:
    """End a tool the test started in a session of its own: SIGTERM to that process group,
    SIGKILL if it is still there after ``wait_s``; nothing if it has exited already."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=wait_s)


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
        """Replace the account's allowlist, then wait until the relay's log says it holds it."""
        logged_before = len(self.relay_log())
        patched = self.api("PATCH", "/api/sip", {"allowedCidrRanges": ranges})
        assert patched.status_code == 200, patched.text
        wanted = self.edge_allowlist_version()
        deadline = time.monotonic() + ALLOWLIST_TAKEN_S
        while True:
            log = self.relay_log()
            taken = ALLOWLIST_LOGGED.findall(log[logged_before:]) or ALLOWLIST_LOGGED.findall(log)
            if taken and int(taken[-1]) == wanted:  # logged since, or the relay held it already
                return
            assert time.monotonic() < deadline, f"the relay never took allowlist {wanted}:\n{log}"
            time.sleep(0.05)

    @contextmanager
    def allowed_cidrs(self, ranges: list[str]) -> Iterator[None]:
        """Hold ``ranges`` as the allowlist for the with-block, then put back what was there."""
        current = self.api("GET", "/api/sip")
        assert current.status_code == 200, current.text
        before: list[str] = current.json()["allowedCidrRanges"]
        self.set_allowed_cidrs(ranges)
        try:
            yield
        finally:
            self.set_allowed_cidrs(before)

    def edge_allowlist_version(self) -> int:
        """Return the allowlist version the control plane serves the relay now (asked as it asks)."""
        headers = signing.sign(
            self.local.credentials.webhook_secret,
            int(time.time()),
            b"",
            method="GET",
            path=ALLOWLIST_PATH,
        )
        answer = requests.get(
            self.local.api_url + ALLOWLIST_PATH, headers=headers, timeout=HTTP_TIMEOUT_S
        )
        assert answer.status_code == 200, answer.text
        version: int = answer.json()["version"]
        return version

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
