"""The whole relay process under N concurrent G.711 calls bridged to echo agents, with latency.

``python -m bench.relay_calls`` starts, each in its own process on 127.0.0.1 and stopped by its
process group at the end:

- ``--agents`` echo agents (``bench/echo_agent.py``: Twilio Media Streams framing, every ``media``
  answered at once with the same payload, probe frames timestamped);
- the control plane: by default ``bench/decision_server.py``, accepting every INVITE with the
  echo agents' URLs in turn (no signature check, no storage); or, with ``--control stack``,
  moto and ``chalice local`` as ``make dev`` runs them (``scripts.localstack``), whose
  ``TransactWriteItems`` fails INVITEs above ~100 concurrent calls, hiding the relay's ceiling;
- the relay, ``python -m relay``, with the environment of ``bench/sip_load.py`` (control plane
  URL, webhook secret, SIP ports, spool) and an RTP range of 2 x (largest N + probes) + 100 free
  ports below the ephemeral range; ``--relay-env NAME=VALUE`` adds to that environment (a
  relay setting, or ``PYTHONPATH`` to a ``sitecustomize`` that instruments the relay).

Then for each N of the ladder (``--calls``, 10 to 400 by default) one SIPp UAC places N calls
(``-l N -m N`` at ``--cps`` calls per second, ``bench/scenarios/relay_calls.xml``) that each
stream a μ-law sweep made with sox, looped (``rtp_stream``, PCMU, 20 ms packets). Once the agents
hold N sockets and ``--settle-s`` have passed, ``bench/latency_probe.py`` places ``--probes``
more calls whose RTP carries a magic and a counter; after ``PROBE_WARMUP_S`` the steady state is
measured for ``--window-s`` seconds:

- **relay CPU**: ``/proc/<pid>/stat`` utime + stime over the window, as a share of one core and
  per call (SIPp's and the probe's calls streaming through the window); *calls per core* =
  100 % / (share per call);
- **relay RSS per call**: RSS in the window minus the idle RSS before the step, over the calls;
- **loss**: the ``media`` frames the agents received over the window, per socket open through
  the whole window whose caller streamed in it (``up``), against 50 per second per such call
  (less one frame per socket: the counters are read at any point of a frame interval); the
  receive-buffer drops of the relay's RTP sockets (``/proc/net/udp``, per socket); and the
  probe frames lost or altered either way. Only the last sees audio the relay lost and
  concealed: a concealed frame still reaches the agent as a frame;
- **added latency, each way**, from the probe calls (see ``bench/latency_probe.py``):
  caller -> agent (agent receipt - probe send) and agent -> caller (probe receipt - agent
  echo), min/p50/p99/max over every probe frame of the window, with the probe frames lost each
  way and altered. ``time.monotonic()`` is one clock for every process of the machine; the
  figures include the loopback and each process's scheduling on a loaded machine;
- the CPU of the agents, SIPp, the probe and the decision server over the window, since on a
  small machine they share the cores with the relay.

The ladder stops after a step that lost more than 0.1 % of frames or of probe frames (or any to
full receive buffers), brought up fewer than 95 % of its calls, or used more than 90 % of a
core; latency does not stop it, it is recorded. The machine may be shared: before a step the
harness waits (``--quiet-wait-s``) for other work to calm down, measures the CPU other work took
during the window (``/proc/stat`` busy time minus that of every process above), and runs a step
again (``--retries``) when that was over 20 % of a core on average or 50 % in any one second.
Unless ``--no-profile``, a last run at the highest clean N samples the relay with ``py-spy
record`` (if installed) for ``--profile-s`` seconds and prints where its CPU goes. Every
subprocess has a timeout; ``BENCH_KEEP_LOGS=DIR`` keeps the logs, SIPp errors and the probes'
raw timestamps (``probe-*.json`` and ``probe-*.agent.json``).

Size: over 400 lines because it is one self-contained harness (stack, SIPp callers, probe
calls, /proc sampling, report); the agent and the probe are their own modules.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.latency_probe import Latency, summarize
from bench.machine import banner
from bench.pyspy import record_profile
from bench.sip_load import UNLIMITED, cpu_seconds, http_json, relay_environment, wait_until
from bench.sip_load import free_sip_port as free_port

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "bench" / "scenarios" / "relay_calls.xml"
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
FRAMES_PER_S = 50  # 20 ms packets
LADDER = (10, 50, 100, 150, 200, 300, 400)
LOSS_LIMIT = 0.001
CPU_LIMIT = 0.90
RAMP_SLACK_S = 10
CALLS_UP = 0.95  # a step counts for "highest N" only when this share of its calls streamed
# through the whole window (the stack's control plane fails some INVITEs under load)
PROBE_WARMUP_S = 1.0  # the relay's jitter buffer anchors on the first packets: not counted
PROBE_END_MARGIN_S = 1.0  # the probe streams this long past the window
QUIET_SHARE = 0.15  # of one core: other work below this counts as a quiet machine
NOISY_SHARE = 0.20  # of one core: other work above this over a window makes the step run again,
NOISY_PEAK_SHARE = 0.50  # and so does other work above this in any one second of it
RELAY_RTP_PORTS = (20000, 32000)  # below the ephemeral range (32768-60999) of SIPp and the probe
SIPP_MEDIA_PORTS = (40000, 60000)


# --- measuring -------------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (SIPp runs under ``timeout``)."""
    total = 0.0
    with suppress(OSError):
        total += cpu_seconds(pid)
    with suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with suppress(OSError):
                total += cpu_seconds(int(child))
    return total


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def udp_drops(first: int, last: int) -> int:
    """Datagrams dropped by full receive buffers of the UDP sockets bound to ports first..last.

    ``/proc/net/udp``'s last column: per socket, so other programs on the machine do not count.
    A socket closed during the window takes its count with it.
    """
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        port = int(fields[1].rsplit(":", 1)[1], 16)
        if first <= port <= last:
            total += int(fields[-1])
    return total


def free_udp_range(size: int, low: int, high: int) -> tuple[int, int]:
    """``(first, last)`` of ``size`` consecutive UDP ports free a moment ago, within [low, high)."""
    for first in range(low, high - size, size):
        free = True
        for port in range(first, first + size):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return first, first + size - 1
    raise RuntimeError(f"no {size} consecutive free UDP ports in {low}-{high}")


@dataclass
class Step:
    calls: int
    reached: int
    up: int
    agent_window_s: float
    window_s: float
    relay_cpu_s: float
    agent_cpu_s: float
    sipp_cpu_s: float
    probe_cpu_s: float
    control_cpu_s: float
    others_cpu_s: float
    """Busy CPU of the whole machine minus that of the processes above: other work sharing it."""
    others_peak_share: float
    """The most of a core other work took in any one second of the window."""
    rss_idle: int
    rss_loaded: int
    frames: int
    rcvbuf_errors: int
    sipp_rc: int | None
    latency: Latency | None
    agent_stalls_ms: list[float]
    """The agents' own event-loop stalls in the window (> 10 ms): delays not the relay's."""

    @property
    def share(self) -> float:
        return self.relay_cpu_s / self.window_s

    @property
    def share_per_call(self) -> float:
        return self.share / max(1, self.up)

    @property
    def calls_per_core(self) -> float:
        return 1 / self.share_per_call if self.share_per_call > 0 else float("inf")

    @property
    def expected(self) -> int:
        return round(self.up * FRAMES_PER_S * self.agent_window_s)

    @property
    def loss(self) -> float:
        """Frames missing at the agents, past one per socket: the two ``/stats`` reads fall
        anywhere within a 20 ms frame interval, so a socket's count is exact only to +-1."""
        if not self.expected:
            return 1.0
        return max(0, self.expected - self.frames - self.up) / self.expected

    @property
    def rss_per_call_kib(self) -> float:
        return (self.rss_loaded - self.rss_idle) / max(1, self.up) / 1024

    @property
    def noisy(self) -> bool:
        """Other work on the machine took a share of the cores that skews the figures."""
        return (
            self.others_cpu_s / self.window_s > NOISY_SHARE
            or self.others_peak_share > NOISY_PEAK_SHARE
        )

    @property
    def probe_loss(self) -> float:
        """Probe frames lost either way (the relay conceals a frame it lost: the count of frames
        at the agent does not show it, the probe's counters do)."""
        lat = self.latency
        if lat is None or not lat.sent:
            return 0.0
        return (lat.lost_to_agent + lat.lost_to_caller + lat.altered) / lat.sent

    @property
    def clean(self) -> bool:
        return (
            self.loss <= LOSS_LIMIT
            and self.probe_loss <= LOSS_LIMIT
            and self.rcvbuf_errors == 0
            and self.share <= CPU_LIMIT
        )


# --- the harness -----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stack: Any = None
        self.control_pids: list[int] = []
        self.probe_ids = 0

    def spawn(
        self, name: str, command: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "wb") as log:
            popen = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append(popen)
        return popen

    # -- setup --

    def start(self) -> None:
        self.agent_ports = [free_port() for _ in range(self.args.agents)]
        self.agents = [
            self.spawn(f"agent-{i}", [PYTHON, "-m", "bench.echo_agent", "--port", str(port)])
            for i, port in enumerate(self.agent_ports)
        ]
        wait_until(lambda: bool(self.agent_stats()), 20, "echo agents")
        self.agent_urls = [f"ws://127.0.0.1:{port}/agent" for port in self.agent_ports]
        size = 2 * (max(self.args.calls) + self.args.probes) + 100
        self.rtp = free_udp_range(size, *RELAY_RTP_PORTS)
        self.sip_port = free_port()
        if self.args.control == "stack":
            self.start_stack()
        else:
            self.start_decision_server()
        sweep = self.workdir / "sweep.wav"
        subprocess.run(
            ["timeout", "-k", "3", "20", "sox", "-n", "-r", "8000", "-c", "1", "-e", "u-law",
             str(sweep), "synth", "10", "sine", "300-3000", "vol", "0.5"],
            check=True,
        )  # fmt: skip

    def start_decision_server(self) -> None:
        port = free_port()
        urls = [arg for url in self.agent_urls for arg in ("--agent-url", url)]
        decision = self.spawn(
            "decision",
            [PYTHON, "-m", "bench.decision_server", "--port", str(port), "--mode", "accept", *urls],
        )
        stats_url = f"http://127.0.0.1:{port}/stats"
        wait_until(lambda: http_json(stats_url) is not None, 20, "decision server")
        env = relay_environment(f"http://127.0.0.1:{port}", self.sip_port, self.workdir)
        env["SIPLINE_RTP_PORTS"] = f"{self.rtp[0]}-{self.rtp[1]}"
        env.update(self.args.relay_env)
        relay = self.spawn("relay", [PYTHON, "-m", "relay"], env=env)
        wait_until(lambda: http_json(stats_url).get("allowlist", 0) >= 1, 30, "relay allowlist")
        self.relay_pid = relay.pid
        self.control_pids = [decision.pid]

    def start_stack(self) -> None:
        from scripts.localstack import Credentials, LocalStack

        os.environ.update(UNLIMITED)  # the stack's processes inherit this process's environment
        self.stack = LocalStack(
            Credentials.load_or_create(self.workdir / "credentials.json"),
            moto_port=free_port(),
            api_port=free_port(),
            media_endpoint=self.agent_urls[0],
            log_dir=self.workdir / "logs",
            state_dir=self.workdir / "state",
            sip_port=self.sip_port,
            tls_port=free_port(),
            rtp_ports=self.rtp,
            agent_port=self.agent_ports[0],
        )
        self.stack.start()
        self.stack.start_relay()
        key = {"X-API-Key": self.stack.credentials.api_key}
        agent_id = http_json(
            f"{self.stack.api_url}/api/agents", "POST",
            {"name": "bench", "callTemplate": {"systemPrompt": "hello",
             "mediaEndpoint": {"url": self.agent_urls[0], "framing": "twilio"}}},
            key,
        )["agentId"]  # fmt: skip
        http_json(
            f"{self.stack.api_url}/api/sip", "PATCH",
            {"allowedCidrRanges": ["127.0.0.1/32"],
             "allowedAgents": [{"agentId": agent_id, "toUserPattern": "^sales$"}]}, key,
        )  # fmt: skip
        moto, chalice, relay = (p.pid for p in self.stack.processes)
        self.relay_pid, self.control_pids = relay, [moto, chalice]
        time.sleep(1.5)  # the relay polls the allowlist every second

    def stop(self) -> None:
        """Stop the relay first (its last events go to a live control plane), then the rest."""
        if self.stack is not None:
            self.stack.stop()
        relay = [p for p in self.procs if p.pid == getattr(self, "relay_pid", None)]
        for group in (relay, [p for p in reversed(self.procs) if p not in relay]):
            for popen in group:
                if popen.poll() is None:
                    with suppress(ProcessLookupError):
                        os.killpg(popen.pid, signal.SIGTERM)
            for popen in group:
                try:
                    popen.wait(timeout=8)
                except subprocess.TimeoutExpired:
                    with suppress(ProcessLookupError):
                        os.killpg(popen.pid, signal.SIGKILL)
                    popen.wait(timeout=5)

    def agent_stats(self) -> dict[str, Any]:
        """Every agent's counters summed; ``per`` merged (keys prefixed by the agent)."""
        total: dict[str, Any] = {"per": {}, "cpu_s": 0.0, "t": 0.0}
        for i, port in enumerate(self.agent_ports):
            stats = http_json(f"http://127.0.0.1:{port}/stats")
            for name, value in stats.items():
                if name == "per":
                    total["per"].update({f"{i}:{k}": v for k, v in value.items()})
                elif name in ("t", "loop"):
                    total[name] = value
                elif name == "stalls":
                    total[name] = total.get(name, []) + value
                else:
                    total[name] = total.get(name, 0) + value
        return total

    def agent_probes(self) -> list[list[Any]]:
        rows: list[list[Any]] = []
        for port in self.agent_ports:
            rows += http_json(f"http://127.0.0.1:{port}/probes")
        return rows

    # -- one step --

    def sipp(self, calls: int, hold_s: float) -> subprocess.Popen[bytes]:
        scenario = self.workdir / f"calls-{calls}.xml"
        scenario.write_text(SCENARIO.read_text().replace("@PAUSE_MS@", str(int(hold_s * 1000))))
        timeout_s = int(hold_s + calls / self.args.cps + 30)
        media = free_udp_range(4 * calls + 8, *SIPP_MEDIA_PORTS)[0]
        command = [
            "timeout", "-k", "3", str(timeout_s + 5), "sipp", f"127.0.0.1:{self.sip_port}",
            "-sf", str(scenario), "-s", "sales", "-i", "127.0.0.1", "-p", str(free_port()),
            "-mi", "127.0.0.1", "-mp", str(media),
            "-l", str(calls), "-m", str(calls), "-r", str(self.args.cps), "-nostdin",
            "-timeout", f"{timeout_s}s", "-timeout_error", "-trace_err",
            "-error_file", str(self.workdir / f"sipp-{calls}-errors.log"),
        ]  # fmt: skip
        return self.spawn(f"sipp-{calls}", command, cwd=self.workdir)

    def probe(self, calls: int, duration_s: float) -> tuple[subprocess.Popen[bytes], Path]:
        out = self.workdir / f"probe-{self.probe_ids}.json"
        command = [
            "timeout", "-k", "3", str(int(duration_s + 40)), PYTHON, "-m", "bench.latency_probe",
            "--sip-port", str(self.sip_port), "--calls", str(calls),
            "--duration-s", str(duration_s), "--id-base", str(self.probe_ids), "--out", str(out),
        ]  # fmt: skip
        self.probe_ids += calls
        return self.spawn(f"probe-{self.probe_ids}", command), out

    def ramp(self, sipp: subprocess.Popen[bytes], calls: int, before: int) -> int:
        """Wait (bounded) until the agents hold ``calls`` new sockets; return how many they do."""
        ramp_s = calls / self.args.cps
        began = time.monotonic()
        reached = 0
        while (elapsed := time.monotonic() - began) < ramp_s + RAMP_SLACK_S:
            reached = self.agent_stats()["connections"] - before
            if reached >= calls or sipp.poll() is not None:
                break
            if elapsed > ramp_s + 2 and reached >= CALLS_UP * calls:
                break  # a few INVITEs failed in the control plane; the rest are up
            time.sleep(0.2)
        return reached

    def wait_quiet(self) -> None:
        """Wait (bounded by ``--quiet-wait-s``) until other work uses < QUIET_SHARE of a core.

        The machine may be shared (other benchmarks, test runs): their CPU competes with the
        relay and skews every figure, so a step starts in a quiet moment when there is one.
        """
        mine = [self.relay_pid, *self.control_pids, *(a.pid for a in self.agents)]
        deadline = time.monotonic() + self.args.quiet_wait_s
        while True:
            m0, c0, t0 = machine_busy_s(), sum(map(process_cpu, mine)), time.monotonic()
            time.sleep(1.0)
            others = (machine_busy_s() - m0 - (sum(map(process_cpu, mine)) - c0)) / (
                time.monotonic() - t0
            )
            if others < QUIET_SHARE:
                return
            if time.monotonic() > deadline:
                print(f"  (other work on the machine: {100 * others:.0f} % of a core; going on)")
                return

    def step(self, calls: int, window_s: float) -> Step:
        self.wait_drained()
        self.wait_quiet()
        rss_idle = rss_bytes(self.relay_pid)
        probe_s = PROBE_WARMUP_S + window_s + PROBE_END_MARGIN_S
        hold_s = calls / self.args.cps + RAMP_SLACK_S + self.args.settle_s + probe_s + 5
        before_conn = self.agent_stats()["connections"]
        sipp = self.sipp(calls, hold_s)
        reached = self.ramp(sipp, calls, before_conn)
        time.sleep(self.args.settle_s)
        probe, probe_out = (
            self.probe(self.args.probes, probe_s) if self.args.probes else (None, None)
        )
        if probe is not None:  # its calls are answered within ~0.1 s of its start-up (~0.5 s)
            expected = before_conn + reached + self.args.probes
            wait_until(lambda: self.agent_stats()["connections"] >= expected, 10, "probe calls")
        time.sleep(PROBE_WARMUP_S)
        roles = {
            "relay": [self.relay_pid], "sipp": [sipp.pid], "control": self.control_pids,
            "agent": [agent.pid for agent in self.agents], "probe": [probe.pid] if probe else [],
        }  # fmt: skip
        a0, udp0 = self.agent_stats(), udp_drops(*self.rtp)
        cpu, others_peak = self.watch_window(roles, window_s)
        a1, udp1 = self.agent_stats(), udp_drops(*self.rtp)
        rss_loaded = rss_bytes(self.relay_pid)
        latency = self.probe_latency(probe, probe_out, probe_s)
        # A socket open for the whole window whose caller sent audio in it; a call SIPp gave up
        # on (its INVITE failed in the control plane) keeps its agent socket until media timeout.
        both = a0["per"].keys() & a1["per"].keys()
        deltas = [a1["per"][k] - a0["per"][k] for k in both]
        streaming = sum(1 for d in deltas if d > 0)
        try:
            rc: int | None = sipp.wait(timeout=hold_s + 40)
        except subprocess.TimeoutExpired:
            os.killpg(sipp.pid, signal.SIGKILL)
            rc = None
        return Step(
            calls=calls, reached=reached, up=streaming,
            agent_window_s=a1["t"] - a0["t"], window_s=cpu["t"], relay_cpu_s=cpu["relay"],
            agent_cpu_s=cpu["agent"], sipp_cpu_s=cpu["sipp"], probe_cpu_s=cpu["probe"],
            control_cpu_s=cpu["control"], others_cpu_s=cpu["others"],
            others_peak_share=others_peak,
            rss_idle=rss_idle, rss_loaded=rss_loaded, frames=sum(deltas),
            rcvbuf_errors=udp1 - udp0, sipp_rc=rc, latency=latency,
            agent_stalls_ms=[1000 * late for at, late in a1["stalls"] if a0["t"] <= at <= a1["t"]],
        )  # fmt: skip

    def watch_window(
        self, roles: dict[str, list[int]], window_s: float
    ) -> tuple[dict[str, float], float]:
        """Sleep through the window, sampling CPU each second; return the CPU seconds of each
        role, of ``others`` (the machine's busy time minus all roles') and ``t`` (the window's
        length), and the largest share of a core other work took in any one-second slice."""

        def snapshot() -> dict[str, float]:
            taken = {role: sum(map(process_cpu, pids)) for role, pids in roles.items()}
            return {**taken, "machine": machine_busy_s(), "t": time.monotonic()}

        first = last = snapshot()
        peak = 0.0
        while (left := first["t"] + window_s - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            now = snapshot()
            ours = sum(now[role] - last[role] for role in roles)
            peak = max(peak, (now["machine"] - last["machine"] - ours) / (now["t"] - last["t"]))
            last = now
        cpu = {role: max(0.0, last[role] - first[role]) for role in roles}
        ours = sum(cpu.values())
        cpu["others"] = max(0.0, last["machine"] - first["machine"] - ours)
        cpu["t"] = last["t"] - first["t"]
        return cpu, peak

    def probe_latency(
        self, probe: subprocess.Popen[bytes] | None, out: Path | None, probe_s: float
    ) -> Latency | None:
        """Wait (bounded) for the probe to hang up; join its timestamps with the agents'."""
        if probe is None or out is None:
            return None
        try:
            probe.wait(timeout=probe_s + 30)
        except subprocess.TimeoutExpired:
            os.killpg(probe.pid, signal.SIGKILL)
        rows = self.agent_probes()
        out.with_suffix(".agent.json").write_text(json.dumps(rows))
        if not out.exists():
            return None
        return summarize(json.loads(out.read_text()), rows, warmup_s=PROBE_WARMUP_S)

    def wait_drained(self) -> None:
        """Wait (bounded) until the agents have no socket open and the relay is idle."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.agent_stats()["open"] > 0:
            time.sleep(0.2)
        before = cpu_seconds(self.relay_pid)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = cpu_seconds(self.relay_pid)
            if now - before < 0.05:
                return
            before = now

    def profile(self, calls: int) -> str:
        """Run ``calls`` calls and sample the relay with py-spy; return the summary."""
        self.wait_drained()
        duration = self.args.profile_s
        sipp = self.sipp(calls, calls / self.args.cps + self.args.settle_s + duration + 6)
        time.sleep(calls / self.args.cps + self.args.settle_s)
        summary = record_profile(self.relay_pid, duration, self.workdir / "profile.txt")
        with suppress(subprocess.TimeoutExpired):
            sipp.wait(timeout=60)
        return summary


# --- report ----------------------------------------------------------------------------------


HEADER = (
    "calls   up relay%  %/call calls/core RSS KiB/c  loss%  rcvbuf agent%  sipp% probe%  ctl%"
    " other% (peak)"
    "  c->a p50/p99/max ms   a->c p50/p99/max ms  lost c->a/a->c alt  rc"
)


def _ms(figures: dict[str, float]) -> str:
    if not figures:
        return f"{'-':>19}"
    return f"{figures['p50']:5.1f} /{figures['p99']:5.1f} /{figures['max']:6.1f}"


def print_step(s: Step) -> None:
    share = {name: 100 * value / s.window_s for name, value in (
        ("agent", s.agent_cpu_s), ("sipp", s.sipp_cpu_s), ("probe", s.probe_cpu_s),
        ("ctl", s.control_cpu_s), ("others", s.others_cpu_s))}  # fmt: skip
    lat = s.latency
    probe = (
        f"{_ms(lat.to_agent_ms)}   {_ms(lat.to_caller_ms)}   "
        f"{lat.lost_to_agent:>4}/{lat.lost_to_caller:<4} {lat.altered:>3}"
        if lat
        else "(no probe)"
    )
    print(
        f"{s.calls:>5} {s.up:>4} {100 * s.share:>6.1f} {100 * s.share_per_call:>7.3f} "
        f"{s.calls_per_core:>10.0f} {s.rss_per_call_kib:>9.1f} {100 * s.loss:>6.3f} "
        f"{s.rcvbuf_errors:>7} {share['agent']:>6.1f} {share['sipp']:>6.1f} "
        f"{share['probe']:>6.1f} {share['ctl']:>5.1f} {share['others']:>6.1f} "
        f"({100 * s.others_peak_share:>4.0f})  {probe}"
        f"  {s.sipp_rc!s:>3}",
        flush=True,
    )


def print_latency_notes(steps: list[Step]) -> None:
    """Print the probe details the table has no room for: floors, sample counts, probe lateness."""
    for s in steps:
        if s.latency is None:
            continue
        lat = s.latency
        print(
            f"  N={s.calls}: {lat.calls_up} probe calls, {lat.sent} frames after the warm-up; "
            f"floor (min) c->a {lat.to_agent_ms.get('min', float('nan')):.1f} ms, "
            f"a->c {lat.to_caller_ms.get('min', float('nan')):.1f} ms; p99 above each call's "
            f"median c->a {lat.to_agent_excess_ms.get('p99', float('nan')):.1f} ms, "
            f"a->c {lat.to_caller_excess_ms.get('p99', float('nan')):.1f} ms; "
            f"probe tick lateness p99 {lat.probe_tick_late_p99_ms:.2f} ms; agent loop stalls "
            f"> 10 ms: {len(s.agent_stalls_ms)}"
            + (f" (max {max(s.agent_stalls_ms):.0f} ms)" if s.agent_stalls_ms else "")
        )


def _assignment(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=list(LADDER))
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--settle-s", type=float, default=3.0)
    parser.add_argument("--cps", type=int, default=20, help="SIPp call rate while ramping up")
    parser.add_argument("--agents", type=int, default=1, help="echo agent processes")
    parser.add_argument("--probes", type=int, default=3, help="latency probe calls per step")
    parser.add_argument(
        "--retries", type=int, default=1,
        help="run a step again when other work shared the machine during its window",
    )  # fmt: skip
    parser.add_argument(
        "--quiet-wait-s", type=float, default=60.0,
        help="before a step, wait up to this long for other work on the machine to calm down",
    )  # fmt: skip
    parser.add_argument(
        "--control", choices=("decision", "stack"), default="decision",
        help="decision: bench/decision_server.py; stack: moto + chalice local (make dev)",
    )  # fmt: skip
    parser.add_argument(
        "--relay-env", type=_assignment, action="append", default=[], metavar="NAME=VALUE",
        help="extra environment of the relay (repeatable), e.g. SIPLINE_DECISION_TIMEOUT_S=4",
    )  # fmt: skip
    parser.add_argument("--profile-s", type=int, default=10)
    parser.add_argument("--no-profile", action="store_true")
    return parser.parse_args()


def run_ladder(bench: Bench, args: argparse.Namespace) -> list[Step]:
    """Run the steps in turn until the stop rule (module docstring); print each step.

    A step during which other work on the machine used more than ``NOISY_SHARE`` of a core is
    printed, marked, and run again, up to ``--retries`` times.
    """
    steps: list[Step] = []
    for calls in args.calls:
        for attempt in range(args.retries + 1):
            step = bench.step(calls, args.window_s)
            print_step(step)
            if not step.noisy or attempt == args.retries:
                break
            print("      ^ other work shared the machine in that window: again")
        steps.append(step)
        if not step.clean or step.up < CALLS_UP * (calls + args.probes):
            break  # the relay fell behind, or the control plane set up too few calls
    return steps


def main() -> None:
    args = parse_args()
    print(banner("relay process: N concurrent G.711 calls bridged to echo agents"), flush=True)
    print(
        f"control plane: {args.control}; {args.agents} echo agent process(es); "
        f"{args.probes} latency probe calls per step (counted in 'up'); window {args.window_s} s"
    )
    with tempfile.TemporaryDirectory(prefix="relay-calls-") as tmp:
        workdir = Path(tmp)
        bench = Bench(args, workdir)
        try:
            bench.start()
            print(f"echo agents' event loop: {bench.agent_stats()['loop']}")
            bench.step(5, 3.0)  # warm-up: imports, first connections
            bench.wait_drained()
            c0, i0 = cpu_seconds(bench.relay_pid), time.monotonic()
            time.sleep(5)
            idle = (cpu_seconds(bench.relay_pid) - c0) / (time.monotonic() - i0)
            print(
                f"relay idle (no call, 5 s): {100 * idle:.1f} % of a core, "
                f"RSS {rss_bytes(bench.relay_pid) / 2**20:.1f} MiB\n"
            )
            print(HEADER)
            steps = run_ladder(bench, args)
            print()
            print_latency_notes(steps)
            clean = [s for s in steps if s.clean and s.up >= CALLS_UP * (s.calls + args.probes)]
            if clean:
                best = clean[-1]
                print(
                    f"\nhighest N without loss: {best.calls} ({100 * best.share_per_call:.3f} % of "
                    f"a core per call, {best.calls_per_core:.0f} calls per core at that N)"
                )
            else:
                print("\nno step was clean")
            if not args.no_profile and steps:
                target = clean[-1].calls if clean else steps[0].calls
                print(f"\nprofile at {target} calls, {args.profile_s} s:")
                print(bench.profile(target))
        finally:
            bench.stop()
            if os.environ.get("BENCH_KEEP_LOGS"):
                shutil.copytree(workdir, os.environ["BENCH_KEEP_LOGS"], dirs_exist_ok=True)


if __name__ == "__main__":
    main()
