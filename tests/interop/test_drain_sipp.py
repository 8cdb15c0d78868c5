"""``python -m relay`` drains on SIGTERM, against SIPp (docs/relay.md, Shutting down).

A relay process of its own (``SIPLINE_DRAIN_S``, ``SIPLINE_HEALTH_PORT``, ``SIPLINE_METRICS=emf``)
next to the session's stack: SIPp places a call that never hangs up, the test agent takes it, and
the process gets a real SIGTERM. Then, in order:

- the health port refuses connections (a load balancer's TCP check fails: new flows go elsewhere);
- a new call (SIPp's built-in ``uac``) gets 503 with ``Retry-After: 1``;
- the container's health check (``python -m relay.healthcheck``, a SIP OPTIONS) still passes;
- the first call is still up (its SIPp still waits for the BYE, the process still runs);
- at the drain deadline the caller gets BYE with ``Reason: SIP;cause=503;text="relay shutting
  down"`` (RFC 3326), checked by SIPp itself (``check_it``): SIPp's exit status 0 says it;
- the process exits 0, and the EMF line it printed last counts the refused INVITE.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scripts.localstack import ROOT, wait_tcp
from tests.interop.agent_server import AgentServer
from tests.interop.sipp import run_sipp_uac, scenario
from tests.interop.stack import LOOPBACK, InteropStack
from tests.support.ports import free_port, free_port_range, free_sip_port

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

SERVICE = "interop_drain"
DRAIN_S = 15
"""Long enough for the checks made during the drain (a few SIPp and probe runs); the test waits
on conditions, never on this figure."""
START_S = 30.0
REFUSED_WITHIN_S = 5.0
"""Bound on the health port's closing after SIGTERM (it is the shutdown's first step)."""
EXIT_S = 60.0


def _refused(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        # Queued on the listener as it closed (a close resets what the backlog holds): it is
        # going away, so look again (seen in CI).
        return False
    return False


def test_sigterm_drains_the_relay_process(
    stack: InteropStack, agent_server: AgentServer, tmp_path: Path
) -> None:
    sip_port, health = free_sip_port(), free_port()
    rtp = free_port_range(20)
    env = {
        **stack.local.relay_environment(),
        "SIPLINE_SIP_PORT": str(sip_port),
        "SIPLINE_TLS_CERT": "",  # no TLS listener: the stack's relay has the TLS port
        "SIPLINE_TLS_KEY": "",
        "SIPLINE_RTP_PORTS": f"{rtp[0]}-{rtp[1]}",
        "SIPLINE_SPOOL_DIR": str(tmp_path / "spool"),
        "SIPLINE_EDGE_ID": "interop-drain",
        "SIPLINE_HEALTH_PORT": str(health),
        "SIPLINE_DRAIN_S": str(DRAIN_S),
        "SIPLINE_METRICS": "emf",
        "SIPLINE_STAGE": "interop",
    }
    stack.add_agent("interop-drain", f"^{SERVICE}$", agent_server.url("drain"))
    out, err = tmp_path / "relay.out", tmp_path / "relay.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        relay = subprocess.Popen(
            [sys.executable, "-m", "relay"], cwd=ROOT, env=env, stdout=stdout, stderr=stderr
        )
    try:
        wait_tcp(health, START_S, relay)  # open once the relay is ready
        target = f"{LOOPBACK}:{sip_port}"
        caller = scenario(
            "bye_with_shutdown_reason.xml", tmp_path, bye_within_ms=str((DRAIN_S + 60) * 1000)
        )
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(
                run_sipp_uac,
                target,
                tmp_path / "call",
                service=SERVICE,
                scenario_file=caller,
                timeout_s=DRAIN_S + 90,
            )
            agent_server.wait_sessions("drain")  # answered, the agent has the call

            relay.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + REFUSED_WITHIN_S
            while not _refused(health):
                assert time.monotonic() < deadline, "the health port stayed open after SIGTERM"
                time.sleep(0.05)
            late = run_sipp_uac(target, tmp_path / "late", service=SERVICE, builtin="uac")
            check = subprocess.run(
                [sys.executable, "-m", "relay.healthcheck"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=15,
            )
            assert not call.done(), "the call ended before the drain deadline"
            assert relay.poll() is None, "the relay exited before the drain deadline"

            first = call.result(timeout=DRAIN_S + 120)
        assert relay.wait(timeout=EXIT_S) == 0
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait(timeout=10)
    log = err.read_text(errors="replace")

    assert late.returncode != 0 and "503" in late.exchange(), late.explain()
    assert "Retry-After: 1" in late.messages, late.explain()
    assert check.returncode == 0, check.stdout + check.stderr
    assert first.returncode == 0, first.explain() + log[-3000:]
    assert 'Reason: SIP;cause=503;text="relay shutting down"' in first.messages
    lines = [json.loads(t) for t in out.read_text().splitlines() if t.startswith('{"_aws"')]
    assert lines, f"no EMF line on stdout; stderr:\n{log[-2000:]}"
    assert (lines[-1]["service"], lines[-1]["stage"]) == ("sipline-relay", "interop")
    assert sum(line["InvitesRefused"][0] for line in lines) >= 1
