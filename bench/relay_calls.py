"""The whole relay process under N concurrent G.711 calls bridged to an echo agent.

``python -m bench.relay_calls`` starts the local stack as ``make dev`` runs it
(``scripts.localstack.LocalStack``: moto server, ``chalice local``, ``python -m relay``; free
ports; the relay's RTP range holds 2 x the largest N plus a margin), an echo agent (this module
with ``--agent``, its own process: a WebSocket server in the Twilio Media Streams framing that
answers each ``media`` with the same payload, and counts what it got), and one agent routed by
``^sales$``. Then, for each N of the ladder (10, 100, 200, 300, 400, 500 by default), one SIPp UAC
places N calls (``-l N -m N``, at ``--cps`` calls per second) that each stream a μ-law sweep made
with sox, looped (``rtp_stream="sweep.wav,-1,0"``, PCMU, 20 ms packets), for as long as the step
lasts. Once the agent holds N open sockets and ``--settle-s`` have passed, the steady state is
measured for ``--window-s`` seconds (20 by default):

- **relay CPU**: ``/proc/<pid>/stat`` utime + stime of the relay over the window, as a share of
  one core, and per call; *calls per core* = 100 % / (share per call);
- **relay RSS per call**: RSS in the window minus the idle RSS before the step, over N;
- **loss**: the ``media`` frames the agent received over the window, per WebSocket open through
  the whole window whose caller streamed in it (``up``), against 50 x window per such call;
  and the receive-buffer drops of the relay's RTP sockets (``/proc/net/udp``, per socket);
  the agent's echo goes back to SIPp as RTP and is not counted there;
- the CPU of the agent and of SIPp over the window, since on a small machine they share the
  cores with the relay.

The ladder stops after a step that lost more than 0.1 % of frames, did not reach N calls, or
used more than 90 % of a core. With ``--profile`` (default on) a last run at the highest clean
N samples the relay with ``py-spy record`` (if installed) for ``--profile-s`` seconds and
prints where its CPU goes. Added latency is not measured here (see ``bench/media.py`` for the
core's, simulated). Every server listens on 127.0.0.1 and is stopped by its process group.

Size: over 400 lines because it is one self-contained harness (stack, echo agent, SIPp callers, /proc sampling, report).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.machine import banner

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
FRAMES_PER_S = 50  # 20 ms packets
LADDER = (10, 50, 100, 150, 200, 250, 300, 400)
LOSS_LIMIT = 0.001
CPU_LIMIT = 0.90
RAMP_SLACK_S = 10
CALLS_UP = 0.95  # chalice local + moto answer 500 to some INVITEs while ramping (moto's
# TransactWriteItems fails under concurrent writes): a step counts for "highest N" only when
# this share of its N calls was streaming through the whole window

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="relay_calls PCMU looped">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [auto_media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <nop>
    <action>
      <exec rtp_stream="sweep.wav,-1,0"/>
    </action>
  </nop>
  <pause milliseconds="@PAUSE_MS@"/>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


# --- the echo agent (``--agent PORT``, its own process) ------------------------------------------


def run_agent(port: int) -> None:
    """Serve the echo agent on 127.0.0.1:``port`` until SIGTERM; ``GET /stats`` gives counters."""
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Request, Response

    stats = {"media": 0, "echoed": 0, "open": 0, "connections": 0, "closed": 0}
    per: dict[int, int] = {}  # open connection -> media frames so far

    async def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/stats"):
            body = json.dumps(
                {**stats, "per": per, "cpu_s": sum(os.times()[:2]), "t": time.monotonic()}
            )
            return connection.respond(200, body)
        return None

    async def handle(connection: ServerConnection) -> None:
        stats["open"] += 1
        stats["connections"] += 1
        key = stats["connections"]
        per[key] = 0
        stream_sid = ""
        try:
            async for message in connection:
                event = json.loads(message)
                kind = event.get("event")
                if kind == "media":
                    stats["media"] += 1
                    per[key] += 1
                    payload = event["media"]["payload"]
                    await connection.send(
                        f'{{"event":"media","streamSid":"{stream_sid}",'
                        f'"media":{{"payload":"{payload}"}}}}'
                    )
                    stats["echoed"] += 1
                elif kind == "start":
                    stream_sid = event["streamSid"]
        except ConnectionClosed:
            pass
        finally:
            stats["open"] -= 1
            per.pop(key, None)
            stats["closed"] += 1

    async def main() -> None:
        stop = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
        async with serve(
            handle, "127.0.0.1", port, process_request=process_request, compression=None
        ):
            await stop

    asyncio.run(main())


# --- measuring -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, in seconds (``/proc/<pid>/stat``)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


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


def http_json(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def free_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


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
    rss_idle: int
    rss_loaded: int
    frames: int
    rcvbuf_errors: int
    sipp_rc: int | None

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
        return max(0.0, 1 - self.frames / self.expected) if self.expected else 1.0

    @property
    def rss_per_call_kib(self) -> float:
        return (self.rss_loaded - self.rss_idle) / max(1, self.up) / 1024

    @property
    def clean(self) -> bool:
        return self.loss <= LOSS_LIMIT and self.rcvbuf_errors == 0 and self.share <= CPU_LIMIT


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


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stack: Any = None

    # -- setup --

    def spawn(self, name: str, command: list[str], cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - as long as the process
        popen = subprocess.Popen(
            command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(popen)
        return popen

    def start(self) -> None:
        from scripts.localstack import Credentials, LocalStack

        self.agent_port = free_port()
        self.agent = self.spawn(
            "agent", [PYTHON, "-m", "bench.relay_calls", "--agent", str(self.agent_port)]
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                self.agent_stats()
                break
            except OSError:
                if time.monotonic() > deadline or self.agent.poll() is not None:
                    raise
                time.sleep(0.1)
        self.rtp = rtp = free_udp_range(2 * max(self.args.calls) + 100, 30000, 45000)
        self.sip_port = free_port()
        self.stack = LocalStack(
            Credentials.load_or_create(self.workdir / "credentials.json"),
            moto_port=free_port(),
            api_port=free_port(),
            media_endpoint=f"ws://127.0.0.1:{self.agent_port}/agent",
            log_dir=self.workdir / "logs",
            state_dir=self.workdir / "state",
            sip_port=self.sip_port,
            tls_port=free_port(),
            rtp_ports=rtp,
            agent_port=self.agent_port,
        )
        self.stack.start()
        self.stack.start_relay()
        key = {"X-API-Key": self.stack.credentials.api_key}
        agent_id = http_json(
            f"{self.stack.api_url}/api/agents", "POST",
            {"name": "bench", "callTemplate": {"systemPrompt": "hello",
             "mediaEndpoint": {"url": f"ws://127.0.0.1:{self.agent_port}/agent", "framing": "twilio"}}},
            key,
        )["agentId"]  # fmt: skip
        http_json(
            f"{self.stack.api_url}/api/sip", "PATCH",
            {"allowedCidrRanges": ["127.0.0.1/32"],
             "allowedAgents": [{"agentId": agent_id, "toUserPattern": "^sales$"}]}, key,
        )  # fmt: skip
        self.relay_pid = self.stack.processes[-1].pid
        time.sleep(1.5)  # the relay polls the allowlist every second
        sweep = self.workdir / "sweep.wav"
        subprocess.run(
            ["timeout", "-k", "3", "20", "sox", "-n", "-r", "8000", "-c", "1", "-e", "u-law",
             str(sweep), "synth", "10", "sine", "300-3000", "vol", "0.5"],
            check=True,
        )  # fmt: skip

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        for popen in reversed(self.procs):
            if popen.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGTERM)
        for popen in reversed(self.procs):
            try:
                popen.wait(timeout=8)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=5)

    def agent_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = http_json(f"http://127.0.0.1:{self.agent_port}/stats")
        return stats

    # -- one step --

    def sipp(self, calls: int, hold_s: float) -> subprocess.Popen[bytes]:
        scenario = self.workdir / f"calls-{calls}.xml"
        scenario.write_text(SCENARIO.replace("@PAUSE_MS@", str(int(hold_s * 1000))))
        timeout_s = int(hold_s + calls / self.args.cps + 30)
        media = free_udp_range(4 * calls + 8, 45000, 60000)[0]
        command = [
            "timeout", "-k", "3", str(timeout_s + 5), "sipp", f"127.0.0.1:{self.sip_port}",
            "-sf", str(scenario), "-s", "sales", "-i", "127.0.0.1", "-p", str(free_port()),
            "-mi", "127.0.0.1", "-mp", str(media),
            "-l", str(calls), "-m", str(calls), "-r", str(self.args.cps), "-nostdin",
            "-timeout", f"{timeout_s}s", "-timeout_error", "-trace_err",
            "-error_file", str(self.workdir / f"sipp-{calls}-errors.log"),
        ]  # fmt: skip
        return self.spawn(f"sipp-{calls}", command, cwd=self.workdir)

    def step(self, calls: int, window_s: float) -> Step:
        self.wait_drained()
        rss_idle = rss_bytes(self.relay_pid)
        ramp_s = calls / self.args.cps
        hold_s = ramp_s + RAMP_SLACK_S + self.args.settle_s + window_s + 3
        before_conn = self.agent_stats()["connections"]
        sipp = self.sipp(calls, hold_s)
        began = time.monotonic()
        reached = 0
        while (elapsed := time.monotonic() - began) < ramp_s + RAMP_SLACK_S:
            stats = self.agent_stats()
            reached = stats["connections"] - before_conn
            if reached >= calls or sipp.poll() is not None:
                break
            if elapsed > ramp_s + 2 and reached >= CALLS_UP * calls:
                break  # a few INVITEs failed in the control plane; the rest are up
            time.sleep(0.2)
        time.sleep(self.args.settle_s)
        a0, udp0 = self.agent_stats(), udp_drops(*self.rtp)
        t0 = time.monotonic()
        r0, s0 = cpu_seconds(self.relay_pid), process_cpu(sipp.pid)
        time.sleep(window_s)
        r1, s1 = cpu_seconds(self.relay_pid), process_cpu(sipp.pid)
        t1 = time.monotonic()
        a1, udp1 = self.agent_stats(), udp_drops(*self.rtp)
        rss_loaded = rss_bytes(self.relay_pid)
        # A socket open for the whole window whose caller sent audio in it; a call SIPp gave up
        # on (its INVITE hit a control-plane 500) keeps its agent socket until the media timeout.
        both = a0["per"].keys() & a1["per"].keys()
        deltas = [a1["per"][k] - a0["per"][k] for k in both]
        streaming = sum(1 for d in deltas if d > 0)
        frames = sum(deltas)
        self.silent = len(deltas) - streaming
        try:
            rc: int | None = sipp.wait(timeout=hold_s + 40)
        except subprocess.TimeoutExpired:
            os.killpg(sipp.pid, signal.SIGKILL)
            rc = None
        return Step(
            calls=calls, reached=reached, up=streaming,
            agent_window_s=a1["t"] - a0["t"], window_s=t1 - t0, relay_cpu_s=r1 - r0,
            agent_cpu_s=a1["cpu_s"] - a0["cpu_s"], sipp_cpu_s=max(0.0, s1 - s0),
            rss_idle=rss_idle, rss_loaded=rss_loaded, frames=frames,
            rcvbuf_errors=udp1 - udp0, sipp_rc=rc,
        )  # fmt: skip

    def wait_drained(self) -> None:
        """Wait (bounded) until the agent has no socket open and the relay is idle."""
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
        spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        if not Path(spy).exists():
            return "py-spy is not installed: no profile"
        self.wait_drained()
        duration = self.args.profile_s
        sipp = self.sipp(calls, calls / self.args.cps + self.args.settle_s + duration + 6)
        time.sleep(calls / self.args.cps + self.args.settle_s)
        raw = self.workdir / "profile.txt"
        subprocess.run(
            ["timeout", "-k", "3", str(duration + 20), spy, "record", "--pid", str(self.relay_pid),
             "--duration", str(duration), "--rate", "200", "--format", "raw", "--nonblocking",
             "--output", str(raw)],
            capture_output=True, check=False,
        )  # fmt: skip
        with suppress(subprocess.TimeoutExpired):
            sipp.wait(timeout=60)
        if not raw.exists():
            return "py-spy recorded nothing (ptrace not permitted?)"
        return summarize_profile(raw.read_text())


def _frame_name(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py:line)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarize_profile(text: str) -> str:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_frame_name(frame) for frame in stack.split(";")]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            frames = frames[1:]
        total += samples
        if frames:
            self_time[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return "py-spy: no samples"
    lines = [f"py-spy: {total} samples of the relay (idle samples dropped)", "", "self time:"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in self_time.most_common(15)]
    lines += ["", "inclusive (relay/ and asyncio/websockets entry points):"]
    shown = 0
    for name, n in inclusive.most_common(200):
        if ("relay/" in name or "websockets/" in name or "asyncio/" in name) and shown < 25:
            lines.append(f"  {100 * n / total:5.1f} %  {name}")
            shown += 1
    return "\n".join(lines)


def print_step(s: Step) -> None:
    print(
        f"{s.calls:>5} {s.up:>4} {100 * s.share:>8.1f} {100 * s.share_per_call:>9.3f} "
        f"{s.calls_per_core:>9.0f} {s.rss_per_call_kib:>8.1f} {s.frames:>9} {s.expected:>9} "
        f"{100 * s.loss:>7.3f} {s.rcvbuf_errors:>7} {100 * s.agent_cpu_s / s.window_s:>7.1f} "
        f"{100 * s.sipp_cpu_s / s.window_s:>7.1f} {s.sipp_rc!s:>4}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agent", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, nargs="+", default=list(LADDER))
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--settle-s", type=float, default=3.0)
    parser.add_argument("--cps", type=int, default=10, help="SIPp call rate while ramping up")
    parser.add_argument("--profile-s", type=int, default=10)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    if args.agent:
        run_agent(args.agent)
        return
    print(banner("relay process: N concurrent G.711 calls bridged to an echo agent"), flush=True)
    with tempfile.TemporaryDirectory(prefix="relay-calls-") as tmp:
        workdir = Path(tmp)
        bench = Bench(args, workdir)
        steps: list[Step] = []
        try:
            bench.start()
            bench.step(5, 3.0)  # warm-up
            bench.wait_drained()
            c0, i0 = cpu_seconds(bench.relay_pid), time.monotonic()
            time.sleep(5)
            idle = (cpu_seconds(bench.relay_pid) - c0) / (time.monotonic() - i0)
            print(
                f"relay idle (no call, 5 s): {100 * idle:.1f} % of a core, "
                f"RSS {rss_bytes(bench.relay_pid) / 2**20:.1f} MiB\n"
            )
            print(
                "calls   up relay%  %/call  calls/core RSS KiB/c  frames  expected  loss% "
                "rcvbuf agent%   sipp%   rc"
            )
            for calls in args.calls:
                step = bench.step(calls, args.window_s)
                steps.append(step)
                print_step(step)
                if not step.clean or step.up < CALLS_UP * calls / 2:
                    break  # the relay fell behind, or the control plane set up too few calls
            clean = [s for s in steps if s.clean and s.up >= CALLS_UP * s.calls]
            print()
            if clean:
                best = clean[-1]
                print(
                    f"highest N without loss: {best.calls} ({100 * best.share_per_call:.3f} % of a "
                    f"core per call, {best.calls_per_core:.0f} calls per core at that N)"
                )
            else:
                print("no step was clean")
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
