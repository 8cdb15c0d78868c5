"""SIP load on the relay with SIPp at rising call rates: on its own, then through the real path.

``python -m bench.sip_load`` runs two setups, one after the other, and prints the machine above
their figures. Every server listens on 127.0.0.1 and is stopped by its process group; every
step is bounded (calls, SIPp's own ``-timeout``, ``-recv_timeout`` per message, and an outer
``timeout -k``); a ladder stops at its first step with more than 10 % failed calls, or at its
second failing step in a row.

1. **The relay on its own** (``python -m relay`` as a subprocess), its control plane played by
   ``bench/decision_server.py`` (aiohttp, its own process, no signature check, no storage).
   Three variants, each with a fresh relay and server:

   - ``guard``: the server's allowlist is ``10.0.0.0/8``, so the relay's IP guard answers
     ``403`` to 127.0.0.1 without any webhook: the SIP path alone;
   - ``reject``: every INVITE goes to the webhook, which answers ``InviteRejected`` 404 at once:
     SIP plus one signed webhook round trip;
   - ``accept``: the webhook accepts with a media endpoint on the same server, a trivial agent
     that reads and discards; the relay opens the RTP ports, sends 180, connects the agent's
     WebSocket, answers 200 with SDP; SIPp ACKs and hangs up at once with BYE; the relay posts
     the call's six events (spooled to disk, batched).

2. **Through the real path**: ``scripts.localstack.LocalStack`` (moto server, ``chalice local``,
   the relay exactly as ``make dev`` runs it) with one agent routed by ``^sales$`` whose media
   endpoint is the trivial agent. ``stack-reject`` dials ``nobody`` (404, decided by the real
   control plane: signature, configuration read, routing); ``stack-accept`` dials ``sales``
   (the call record is created in moto's DynamoDB, the events are applied to it).

3. **A soak** (``soak``): the ``reject`` setup at ``--soak-rate`` (300) calls per second for
   ``--soak-s`` (40) seconds, past the 5 s after which the first calls' objects are freed (an
   INVITE server transaction ends 5 s after the ACK, Timer I): the garbage collector's steady
   state, which 5 s steps do not reach. It runs in turn with two what-ifs, so that what each
   fix buys shows within one run: ``soak-cycles``, the relay as it was before this benchmark
   found every call in a reference cycle with its INVITE transaction (see
   ``relay/sip/transaction/layer.py``, rule 5); and ``soak-gc-off``, the relay without the GC
   tuning of ``relay/__main__.py`` (no ``gc.freeze()``, young generations not on a cadence).

What is measured at each rate (``-r``, ``-m`` = rate x ``--step-s`` calls):

- **latency on the wire**: ``dumpcap`` records the SIP port on ``lo`` (kernel timestamps, 1 µs);
  per Call-ID, first INVITE -> first ``100 Trying`` and first INVITE -> final response; p50,
  p99 and max. SIPp's own ``-trace_rtt`` times are read too, but SIPp 3.6.1 takes them from
  ``CLOCK_MONOTONIC_COARSE``, whose resolution here is 4 ms (one jiffy at HZ=250): a single
  value is 0, 4 or 8 ms, so only their *mean* is meaningful (the phase of the tick is uniform,
  so the mean of the differences is unbiased); it is printed as a cross-check;
- **failed calls**: from SIPp's ``-trace_stat`` (last line, cumulative): calls asked for minus
  ``SuccessfulCall(C)`` (an unexpected status, a 503, a receive timeout, a lost message all
  count), with SIPp's retransmissions and the relay's (a final response sent twice);
- **the rate really offered**: INVITEs on the wire over the time between the first and last;
- **CPU**: ``/proc/<pid>/stat`` utime + stime of every long-running process (relay, decision
  server or chalice and moto) over the step, and SIPp's own from ``wait4``; as a share of one
  core and as milliseconds per call.

Size: over 400 lines because it is one self-contained harness (decision server, relay, stack, SIPp ladder, capture parsing, soaks, report).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.machine import banner
from scripts.localstack import LOCAL_PRIVATE_TARGETS

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")

RATES = (50, 100, 200, 300, 400, 500)
STACK_RATES = (5, 10, 20, 40, 60, 80, 100, 150, 200)
STEP_S = 5.0
WARM_UP_S = 2.0
SOAK_RATE = 300
SOAK_S = 40.0  # past the 5 s after which calls start to be freed (Timer I): the steady state
RECV_TIMEOUT_S = 6  # above the relay's 4 s decision bound, so its 503s arrive and count as failed
FLUSH_S = 1.5  # dumpcap hands packets over in blocks: let the last ones reach the file
IDLE_CPU_SHARE = 0.08  # between steps, wait until the relay uses less than this of a core
IDLE_WAIT_S = 15.0
STOP_FAILED_SHARE = 0.10
WEBHOOK_SECRET = "whsec_bench_sip_load"


# --- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


class Processes:
    """The servers one setup starts: each in its own session, stopped by its process group."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.started):
            if proc.popen.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        for proc in reversed(self.started):
            try:
                proc.popen.wait(timeout=8)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(timeout=5)
        self.started.clear()


@contextmanager
def processes(log_dir: Path) -> Iterator[Processes]:
    procs = Processes(log_dir)
    try:
        yield procs
    finally:
        procs.stop()


def cpu_times(pid: int) -> tuple[float, float]:
    """Return the (user, system) CPU seconds of a live process (``/proc/<pid>/stat``)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan"), float("nan")
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds of a live process."""
    return sum(cpu_times(pid))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_sip_port() -> int:
    """Return a port free for both UDP and TCP on 127.0.0.1 a moment ago (the relay binds both)."""
    for _ in range(50):
        port = free_udp_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both UDP and TCP")


def http_json(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with suppress(OSError, ValueError):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not within {timeout_s}s")


def wait_idle(pid: int) -> None:
    """Wait (bounded) until ``pid`` uses less than IDLE_CPU_SHARE of a core: the last step drained."""
    deadline = time.monotonic() + IDLE_WAIT_S
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now - before < IDLE_CPU_SHARE * 0.5:
            return
        before = now


# --- the capture -----------------------------------------------------------------------------


@dataclass
class CallTimes:
    """One call's SIP messages on the wire, by first occurrence (seconds, kernel timestamps)."""

    invite: float | None = None
    invites: int = 0
    request_uri: bytes | None = None
    trying: float | None = None
    final: float | None = None
    final_status: int | None = None
    finals: int = 0


def _header(head: list[bytes], names: tuple[bytes, ...]) -> bytes | None:
    for line in head:
        name, _, value = line.partition(b":")
        if name.strip().lower() in names:
            return value.strip()
    return None


def udp_datagrams(path: Path) -> Iterator[tuple[float, int, int, bytes]]:
    """Yield each IPv4 UDP datagram of a classic pcap file: (time, source port, destination
    port, payload), the time the kernel's capture timestamp in seconds."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = struct.unpack("<I", data[:4])[0]
    order = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    scale = 1e-9 if magic in (0xA1B23C4D, 0x4D3CB2A1) else 1e-6
    link = struct.unpack(order + "I", data[20:24])[0]
    link_header = {1: 14, 113: 16, 276: 20, 0: 4}[link]
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, captured, _ = struct.unpack(order + "IIII", data[offset : offset + 16])
        offset += 16
        frame = data[offset : offset + captured]
        offset += captured
        ip = frame[link_header:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        udp = ip[(ip[0] & 15) * 4 :]
        source_port, destination_port = struct.unpack(">HH", udp[:4])
        yield seconds + fraction * scale, source_port, destination_port, udp[8:]


def read_pcap(path: Path, sip_port: int) -> dict[bytes, CallTimes]:
    """Return the INVITE transactions of a classic pcap file of UDP SIP to/from ``sip_port``."""
    calls: dict[bytes, CallTimes] = {}
    for at, source_port, destination_port, payload in udp_datagrams(path):
        head = payload.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        call_id = _header(head[1:], (b"call-id", b"i"))
        cseq = _header(head[1:], (b"cseq",))
        if call_id is None or cseq is None or not cseq.endswith(b"INVITE"):
            continue
        call = calls.setdefault(call_id, CallTimes())
        first = head[0]
        if destination_port == sip_port and first.startswith(b"INVITE "):
            call.invites += 1
            if call.invite is None:
                call.invite, call.request_uri = at, first.split(b" ")[1]
        elif source_port == sip_port and first.startswith(b"SIP/2.0 "):
            status = int(first[8:11])
            if status == 100:
                call.trying = at if call.trying is None else call.trying
            elif status >= 200:
                call.finals += 1
                if call.final is None:
                    call.final, call.final_status = at, status
    return calls


class Capture:
    """``dumpcap`` on ``lo`` for one UDP port (or a capture filter ``bpf``), as classic pcap."""

    def __init__(self, directory: Path, port: int, *, bpf: str = "", name: str = "sip") -> None:
        self.path = directory / f"{name}.pcap"
        self.err = directory / f"dumpcap-{name}.err" if name != "sip" else directory / "dumpcap.err"
        args = ["dumpcap", "-i", "lo", "-f", bpf or f"udp port {port}", "-P", "-s", "2048",
                "-B", "64", "-q", "-w", str(self.path)]  # fmt: skip
        with open(self.err, "wb") as err:
            self.popen = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
            )
        wait_until(lambda: b"File:" in self.err.read_bytes(), 10, "dumpcap start")
        time.sleep(0.2)

    def cpu(self) -> float:
        return cpu_seconds(self.popen.pid)

    def stop(self) -> tuple[int, int]:
        """Stop after a flush delay; return (packets received, dropped) as dumpcap reports them."""
        time.sleep(FLUSH_S)
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGINT)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)
        text = self.err.read_text(errors="replace")
        found = re.search(r"received/dropped on interface .*: (\d+)/(\d+) \(", text)
        return (int(found[1]), int(found[2])) if found else (-1, -1)


# --- one step --------------------------------------------------------------------------------


@dataclass
class Step:
    """One rate of one ladder: what SIPp asked for, what happened, what it cost."""

    rate: int
    calls: int
    offered_cps: float = 0.0
    successful: int = 0
    failed: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    sipp_rc: int = 0
    sipp_retransmissions: int = 0
    relay_final_resends: int = 0
    captured: int = 0
    capture_dropped: int = 0
    trying_ms: dict[str, float] = field(default_factory=dict)
    final_ms: dict[str, float] = field(default_factory=dict)
    missing_trying: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    sipp_rtd_mean_ms: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    load1: float = 0.0
    """The 1-minute load average at the end of the step (other work on the machine shows here)."""
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds (user + system) of each process over the step."""
    cpu_sys_s: dict[str, float] = field(default_factory=dict)
    """Of which in the kernel (system time)."""

    def cpu_share(self, name: str) -> float:
        return self.cpu_s.get(name, float("nan")) / self.wall_s if self.wall_s else float("nan")

    def cpu_ms_per_call(self, name: str) -> float:
        return 1000 * self.cpu_s.get(name, float("nan")) / max(self.calls, 1)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def rank(q: float) -> float:  # nearest rank
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]

    return {"p50": rank(0.50), "p99": rank(0.99), "max": ordered[-1], "n": float(len(ordered))}


def read_sipp_stat(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    names, values = lines[0].split(";"), lines[-1].split(";")
    return dict(zip(names, values, strict=False))


def read_sipp_rtt(directory: Path) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for path in directory.glob("*_rtt.csv"):
        for line in path.read_text(errors="replace").splitlines()[1:]:
            parts = line.strip().split(";")
            if len(parts) == 3:
                sums.setdefault(parts[2], []).append(float(parts[1]))
    return {name: sum(values) / len(values) for name, values in sums.items() if values}


def render_scenario(name: str, directory: Path, status: int | None) -> Path:
    text = (SCENARIOS / name).read_text()
    if status is not None:
        text = text.replace("@STATUS@", str(status))
    path = directory / name
    path.write_text(text)
    return path


def run_step(
    *,
    label: str,
    rate: int,
    step_s: float,
    scenario: str,
    status: int | None,
    service: str,
    sip_port: int,
    watched: dict[str, int],
    workdir: Path,
) -> Step:
    """Run one SIPp step at ``rate`` calls per second and measure it (see the module docstring)."""
    directory = workdir / f"{label}-{rate}cps"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    calls = max(1, round(rate * step_s))
    step = Step(rate=rate, calls=calls)
    scenario_path = render_scenario(scenario, directory, status)
    bound_s = int(step_s) + RECV_TIMEOUT_S + 10
    command = [
        "timeout", "-k", "3", str(bound_s + 10), "sipp", f"127.0.0.1:{sip_port}",
        "-sf", str(scenario_path), "-s", service, "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-m", str(calls), "-r", str(rate), "-l", str(max(50, rate * (RECV_TIMEOUT_S + 4))),
        "-nostdin", "-timeout", f"{bound_s}s", "-timeout_error",
        "-recv_timeout", f"{RECV_TIMEOUT_S}s",
        "-trace_stat", "-stf", str(directory / "stat.csv"), "-fd", "1",
        "-trace_rtt", "-trace_err", "-error_file", str(directory / "errors.log"),
    ]  # fmt: skip
    capture = Capture(directory, sip_port)
    before = {name: cpu_times(pid) for name, pid in watched.items()}
    capture_before = capture.cpu()
    started = time.monotonic()
    with open(directory / "sipp.out", "wb") as out:
        sipp = subprocess.Popen(command, cwd=directory, stdout=out, stderr=subprocess.STDOUT)
        _, wait_status, usage = os.wait4(sipp.pid, 0)
        sipp.returncode = os.waitstatus_to_exitcode(wait_status)
    step.wall_s = time.monotonic() - started
    step.load1 = os.getloadavg()[0]
    for name, pid in watched.items():
        user, system = cpu_times(pid)
        step.cpu_s[name] = user + system - sum(before[name])
        step.cpu_sys_s[name] = system - before[name][1]
    step.cpu_s["sipp"] = usage.ru_utime + usage.ru_stime
    step.cpu_sys_s["sipp"] = usage.ru_stime
    step.cpu_s["dumpcap"] = capture.cpu() - capture_before
    step.sipp_rc = sipp.returncode
    step.captured, step.capture_dropped = capture.stop()

    stat = read_sipp_stat(directory / "stat.csv")
    step.successful = int(stat.get("SuccessfulCall(C)", 0) or 0)
    step.failed = calls - step.successful
    step.sipp_retransmissions = int(stat.get("Retransmissions(C)", 0) or 0)
    step.failure_kinds = {
        name.removeprefix("Failed").removesuffix("(C)"): int(value)
        for name, value in stat.items()
        if name.startswith("Failed") and name.endswith("(C)") and value.isdigit() and int(value)
    }
    step.sipp_rtd_mean_ms = read_sipp_rtt(directory)

    # only this step's calls: a previous step's stragglers (a final response resent until its
    # ACK or Timer H) may still be on the wire
    calls_seen = {k: c for k, c in read_pcap(capture.path, sip_port).items() if c.invite}
    invites = sorted(c.invite for c in calls_seen.values() if c.invite is not None)
    if len(invites) > 1:
        step.offered_cps = (len(invites) - 1) / (invites[-1] - invites[0])
    trying = [1000 * (c.trying - c.invite) for c in calls_seen.values() if c.invite and c.trying]
    final = [1000 * (c.final - c.invite) for c in calls_seen.values() if c.invite and c.final]
    step.trying_ms, step.final_ms = percentiles(trying), percentiles(final)
    step.missing_trying = sum(1 for c in calls_seen.values() if c.invite and c.trying is None)
    step.relay_final_resends = sum(max(0, c.finals - 1) for c in calls_seen.values())
    statuses: dict[str, int] = {}
    for c in calls_seen.values():
        key = str(c.final_status) if c.final_status else "none"
        statuses[key] = statuses.get(key, 0) + 1
    step.statuses = statuses
    return step


# --- ladders ---------------------------------------------------------------------------------


@dataclass
class Ladder:
    label: str
    description: str
    steps: list[Step] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def highest_clean(self) -> int | None:
        clean = [s.rate for s in self.steps if s.failed == 0 and s.sipp_rc == 0]
        return max(clean) if clean else None


def climb(
    ladder: Ladder, rates: tuple[int, ...], step: Callable[[int], Step], idle_pid: int
) -> None:
    """Run ``step`` at each rate until the stop rule (module docstring); print each step."""
    failing_in_a_row = 0
    for rate in rates:
        wait_idle(idle_pid)
        result = step(rate)
        ladder.steps.append(result)
        print_step(ladder, result)
        failing_in_a_row = failing_in_a_row + 1 if result.failed else 0
        if result.failed > STOP_FAILED_SHARE * result.calls or failing_in_a_row >= 2:
            break


UNLIMITED = {
    "SIPLINE_INVITE_RATE_PER_S": "1000000",
    "SIPLINE_INVITE_BURST": "1000000",
    "SIPLINE_MAX_CONCURRENT_CALLS": "1000000",
}
"""The edge's abuse limits lifted (docs/relay.md, rate limit; docs/api.md, concurrent calls): SIPp
is one source and the stack one account, so the defaults would cap every ladder at 5 calls/s."""


def relay_environment(control_url: str, sip_port: int, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPLINE_")}
    env.update(UNLIMITED)
    low = 30000 + (os.getpid() % 20) * 1000
    env.update(
        {
            "SIPLINE_CONTROL_URL": control_url,
            "SIPLINE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SIPLINE_SIP_HOST": "127.0.0.1",
            "SIPLINE_SIP_PORT": str(sip_port),
            "SIPLINE_TLS_PORT": str(free_sip_port()),
            "SIPLINE_RTP_PORTS": f"{low}-{low + 999}",
            "SIPLINE_SPOOL_DIR": str(workdir / "spool"),
            "SIPLINE_ALLOWED_PRIVATE_TARGETS": LOCAL_PRIVATE_TARGETS,  # agents on 127.0.0.1
        }
    )
    return env


RELAY_VARIANTS = {
    # label: (decision server mode, allowlist, scenario, expected status, description)
    "guard": ("reject", "10.0.0.0/8", "reject.xml", 403,
              "IP guard refuses 127.0.0.1 with one stateless 403: no 100, no webhook"),
    "reject": ("reject", "127.0.0.0/8", "reject.xml", 404,
               "webhook answers InviteRejected 404 at once (SIP + one webhook)"),
    "accept": ("accept", "127.0.0.0/8", "accept.xml", None,
               "webhook accepts; RTP ports, 180, agent WebSocket, 200, ACK, BYE, 6 events"),
}  # fmt: skip


RELAY = ("-m", "relay")
RELAY_WITH_CYCLES = (
    "-c",
    "import sys, relay.__main__ as m; from relay.sip.transaction.layer import TransactionLayer as L;"
    " f = L._forget; L._forget = lambda self, tx: (f(self, tx), self._dropped.pop());"
    " sys.exit(m.main())",
)
"""What-if: the relay as it was, a call and its INVITE transaction in a reference cycle until
the cyclic GC finds them (the layer no longer clears the owner of a transaction it dropped)."""
RELAY_GC_UNTUNED = (
    "-c",
    "import gc, sys, relay.__main__ as m; gc.freeze = lambda: None;"
    " m._collect_young = lambda loop, count=0: None; sys.exit(m.main())",
)
"""What-if: the relay without the GC tuning of ``relay/__main__.py`` (no freeze, no cadence)."""
WHAT_IFS = {RELAY_WITH_CYCLES: "call <-> transaction cycles kept", RELAY_GC_UNTUNED: "GC untuned"}


def relay_alone(
    label: str,
    rates: tuple[int, ...],
    step_s: float,
    workdir: Path,
    *,
    name: str | None = None,
    relay_args: tuple[str, ...] = RELAY,
) -> Ladder:
    mode, allow, scenario, status, description = RELAY_VARIANTS[label]
    name = name or label
    if relay_args in WHAT_IFS:
        description += f"; what-if: {WHAT_IFS[relay_args]}"
    ladder = Ladder(name, description, processes=["relay", "decision"])
    base = workdir / name
    with processes(base / "logs") as procs:
        port = free_sip_port()
        decision_port = int(free_sip_port())
        decision = procs.spawn(
            "decision",
            [PYTHON, "-m", "bench.decision_server", "--port", str(decision_port),
             "--mode", mode, "--allow", allow],
        )  # fmt: skip
        stats_url = f"http://127.0.0.1:{decision_port}/stats"
        wait_until(lambda: http_json(stats_url) is not None, 20, "decision server")
        relay = procs.spawn(
            "relay",
            [PYTHON, *relay_args],
            relay_environment(f"http://127.0.0.1:{decision_port}", port, base),
        )
        wait_until(lambda: http_json(stats_url).get("allowlist", 0) >= 1, 30, "relay allowlist")
        watched = {"relay": relay.popen.pid, "decision": decision.popen.pid}

        def step(rate: int, seconds: float = step_s) -> Step:
            return run_step(
                label=name, rate=rate, step_s=seconds, scenario=scenario, status=status,
                service="sales", sip_port=port, watched=watched, workdir=base,
            )  # fmt: skip

        warm = step(20, WARM_UP_S)  # imports, first connections, caches: not reported
        if warm.failed:
            raise RuntimeError(f"{label}: the warm-up step failed: {warm}; see {base}")
        climb(ladder, rates, step, relay.popen.pid)
        ladder.notes["decision_server"] = http_json(stats_url)
    return ladder


def through_stack(rates: tuple[int, ...], step_s: float, workdir: Path) -> list[Ladder]:
    from scripts.localstack import Credentials, LocalStack

    base = workdir / "stack"
    ladders = [
        Ladder("stack-reject", "To: nobody, no rule matches: 404 by the real control plane",
               processes=["relay", "chalice", "moto"]),
        Ladder("stack-accept", "To: sales, routed by ^sales$: call record, 6 events, agent WS",
               processes=["relay", "chalice", "moto"]),
    ]  # fmt: skip
    os.environ.update(UNLIMITED)  # the stack's processes inherit this process's environment
    with processes(base / "logs") as procs:
        agent_port = free_sip_port()
        procs.spawn("agent", [PYTHON, "-m", "bench.decision_server", "--port", str(agent_port)])
        wait_until(
            lambda: http_json(f"http://127.0.0.1:{agent_port}/stats") is not None, 20, "agent"
        )
        low = 30000 + (os.getpid() % 20) * 1000
        sip_port = free_sip_port()
        stack = LocalStack(
            Credentials.load_or_create(base / "credentials.json"),
            moto_port=free_sip_port(),
            api_port=free_sip_port(),
            media_endpoint=f"ws://127.0.0.1:{agent_port}/agent",
            log_dir=base / "logs",
            state_dir=base / "state",
            sip_port=sip_port,
            tls_port=free_sip_port(),
            rtp_ports=(low, low + 999),
            agent_port=agent_port,
        )
        try:
            stack.start()
            stack.start_relay()
            key = {"X-API-Key": stack.credentials.api_key}
            agent_id = http_json(
                f"{stack.api_url}/api/agents", "POST",
                {"name": "bench", "callTemplate": {"systemPrompt": "hello"}}, key,
            )["agentId"]  # fmt: skip
            http_json(
                f"{stack.api_url}/api/sip", "PATCH",
                {"allowedCidrRanges": ["127.0.0.1/32"],
                 "allowedAgents": [{"agentId": agent_id, "toUserPattern": "^sales$"}]}, key,
            )  # fmt: skip
            moto, chalice, relay = (p.pid for p in stack.processes)
            watched = {"relay": relay, "chalice": chalice, "moto": moto}
            for ladder, scenario, status, service in (
                (ladders[0], "reject.xml", 404, "nobody"),
                (ladders[1], "accept.xml", None, "sales"),
            ):

                def step(
                    rate: int,
                    scenario: str = scenario,
                    status: int | None = status,
                    service: str = service,
                    label: str = ladder.label,
                ) -> Step:
                    return run_step(
                        label=label, rate=rate, step_s=step_s, scenario=scenario,
                        status=status, service=service, sip_port=sip_port, watched=watched,
                        workdir=base,
                    )  # fmt: skip

                warm = None
                for _ in range(10):  # the relay's allowlist catches up with the PATCH within ~1 s
                    warm = step(2)
                    if not warm.failed:
                        break
                    time.sleep(1)
                if warm is None or warm.failed:
                    raise RuntimeError(f"{ladder.label}: the warm-up step failed: {warm}")
                climb(ladder, rates, step, relay)
        finally:
            stack.stop()
    return ladders


# --- printing --------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def print_step(ladder: Ladder, s: Step) -> None:
    t, f = s.trying_ms, s.final_ms
    cpu = "  ".join(
        f"{name} {100 * s.cpu_share(name):.0f}% {s.cpu_ms_per_call(name):.2f}ms"
        f" (sys {1000 * s.cpu_sys_s.get(name, float('nan')) / max(s.calls, 1):.2f})"
        for name in [*ladder.processes, "sipp"]
    )
    extra = ""
    if s.failed:
        extra = f"  failures {s.failure_kinds} statuses {s.statuses} rc {s.sipp_rc}"
    rtd = "/".join(_fmt(s.sipp_rtd_mean_ms.get(k), 1) for k in ("trying", "final"))
    print(
        f"  {ladder.label:<13} {s.rate:>4} cps (offered {s.offered_cps:6.1f})  calls {s.calls:>5}"
        f"  failed {s.failed:>4}  100: p50 {_fmt(t.get('p50'))} p99 {_fmt(t.get('p99'))}"
        f" max {_fmt(t.get('max'), 1)} ms  final: p50 {_fmt(f.get('p50'))}"
        f" p99 {_fmt(f.get('p99'))} max {_fmt(f.get('max'), 1)} ms  sipp-rtd-mean {rtd} ms"
        f"  resent {s.relay_final_resends} retrans {s.sipp_retransmissions}"
        f"  drop {s.capture_dropped}  load {s.load1:.2f}  cpu: {cpu}{extra}",
        flush=True,
    )


def print_summary(ladders: list[Ladder]) -> None:
    print("\nsummary")
    print("=======")
    head = (
        f"{'setup':<13} {'cps':>4} {'offered':>7} {'failed':>6} {'100 p50':>8} {'100 p99':>8}"
        f" {'final p50':>9} {'final p99':>9}  cpu % of a core (ms per call)"
    )
    print(head)
    for ladder in ladders:
        for s in ladder.steps:
            cpu = ", ".join(
                f"{name} {100 * s.cpu_share(name):.0f} ({s.cpu_ms_per_call(name):.2f})"
                for name in [*ladder.processes, "sipp"]
            )
            print(
                f"{ladder.label:<13} {s.rate:>4} {s.offered_cps:>7.1f} {s.failed:>6}"
                f" {_fmt(s.trying_ms.get('p50')):>8} {_fmt(s.trying_ms.get('p99')):>8}"
                f" {_fmt(s.final_ms.get('p50')):>9} {_fmt(s.final_ms.get('p99')):>9}  {cpu}"
            )
    print()
    for ladder in ladders:
        best = ladder.highest_clean()
        print(
            f"{ladder.label:<13} highest rate with zero failed calls: {best or 'none'} cps"
            f"  ({ladder.description})"
        )
    for ladder in ladders:
        if "decision_server" in ladder.notes:
            print(f"{ladder.label:<13} decision server served {ladder.notes['decision_server']}")
    alone = {ladder.label: ladder for ladder in ladders}
    for label in ("reject", "accept"):
        if label not in alone:
            continue
        at = [s for s in alone[label].steps if s.rate == 300]
        best = alone[label].highest_clean() or 0
        p99 = at[0].trying_ms.get("p99") if at else None
        print(
            f"target ({label}): >= 300 cps with zero failures: {'met' if best >= 300 else 'NOT met'}"
            f" ({best or 'none'}); 100 Trying p99 < 5 ms at 300 cps:"
            f" {'met' if p99 is not None and p99 < 5 else 'NOT met'} ({_fmt(p99)} ms)"
        )


def versions() -> str:
    sipp = subprocess.run(["sipp", "-v"], capture_output=True, text=True, timeout=10).stdout
    line = next((x.strip() for x in sipp.splitlines() if "SIPp" in x), "sipp ?")
    return f"  {'tools':<8}  {line}, dumpcap on lo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES))
    parser.add_argument("--stack-rates", type=int, nargs="+", default=list(STACK_RATES))
    parser.add_argument("--step-s", type=float, default=STEP_S, help="seconds of calls per step")
    parser.add_argument(
        "--setups", nargs="+", default=["guard", "reject", "accept", "soak", "stack"],
        choices=["guard", "reject", "accept", "soak", "stack"],
    )  # fmt: skip
    parser.add_argument("--soak-rate", type=int, default=SOAK_RATE)
    parser.add_argument("--soak-s", type=float, default=SOAK_S)
    parser.add_argument("--soak-rounds", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="kept if given")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    for tool in ("sipp", "dumpcap", "timeout"):
        if shutil.which(tool) is None:
            sys.exit(f"sip_load: {tool} is not installed (scripts/system-deps.sh)")
    print(banner("SIP load: SIPp against the relay, alone and through chalice local + moto"))
    print(versions())
    print(
        f"  {'steps':<8}  {args.step_s:g} s of calls each; relay alone at {args.rates} cps;"
        f" through the stack at {args.stack_rates} cps\n"
    )
    import tempfile

    scratch = None
    if args.workdir is None:
        scratch = tempfile.TemporaryDirectory(prefix="sipline-sip-load-")
        workdir = Path(scratch.name)
    else:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    ladders: list[Ladder] = []
    try:
        for label in ("guard", "reject", "accept"):
            if label in args.setups:
                ladders.append(relay_alone(label, tuple(args.rates), args.step_s, workdir))
        if "soak" in args.setups:  # round-robin pairs: tuned, untuned, tuned, untuned
            for round_ in range(args.soak_rounds):
                for relay_args, name in (
                    (RELAY, "soak"),
                    (RELAY_WITH_CYCLES, "soak-cycles"),
                    (RELAY_GC_UNTUNED, "soak-gc-off"),
                ):
                    ladders.append(
                        relay_alone(
                            "reject", (args.soak_rate,), args.soak_s, workdir,
                            name=f"{name}-{round_ + 1}", relay_args=relay_args,
                        )
                    )  # fmt: skip
        if "stack" in args.setups:
            ladders += through_stack(tuple(args.stack_rates), args.step_s, workdir)
    finally:
        print_summary(ladders)
        if args.json is not None:
            args.json.write_text(json.dumps([asdict(ladder) for ladder in ladders], indent=1))
        if scratch is not None:
            scratch.cleanup()


if __name__ == "__main__":
    main()
