"""Outgoing calls: dial -> INVITE latency, 200 OK -> agent ``start``, and calls per second.

``python -m bench.outgoing`` starts, each in its own process on 127.0.0.1 and stopped by its
process group: the command queue (``bench/sqs_standin.py``, a minimal in-memory SQS, or with
``--sqs moto`` moto's SQS, whose CPU caps the ladder near 150 dials a second), the control plane
played by ``bench/decision_server.py`` (events acknowledged; for incoming calls, an immediate
accept), and the relay as ``python -m bench.dial_stamps`` (``python -m relay`` plus a
stamp per dial taken, see that module). Then, in that one relay process:

1. **Latency** (``--latency-calls`` dials at ``--latency-rate``, one SQS message each): for each
   dial, *dial consumed -> INVITE on the wire*: the relay's stamp when its command handler takes
   the dial (``time.time()``, CLOCK_REALTIME) to the INVITE's kernel timestamp in a ``dumpcap``
   capture on ``lo`` of the callee's port (CLOCK_REALTIME too: one clock, one machine); and
   *200 OK -> agent start*: the callee's 200 in the same capture to the moment the agent's
   WebSocket server took the ``start`` message off its socket (``time.time()`` in the decision
   server). Each dial's ``to`` has a user of its own, so the capture's Request-URI names the dial;
   the ``start`` carries the call id. p50, p99 and max.
2. **A ladder of rates** (``--rates``), ``--step-s`` seconds of calls each, outgoing and incoming
   in turn at each rate so that both see the same machine:
   - *outgoing*: dial commands sent to the queue at the rate (in SQS batches of up to 10 above
     20 calls/s, as a control plane under load would fill the queue), to a SIPp UAS
     (``bench/scenarios/uas_answer.xml``: 100, 180, 200 at once, ACK, then waits for the BYE); the
     agent (the decision server's ``/agent-leaves``) leaves as soon as it has the ``start``, so
     the relay sends BYE. A call succeeds when SIPp's scenario completes (``-trace_stat``
     ``SuccessfulCall``); failed = dials - successful. The capture gives both latencies again;
   - *incoming*: ``bench/sip_load.py``'s ``accept`` step (SIPp UAC -> relay: INVITE, 100, 180,
     agent WebSocket, 200, ACK, BYE from SIPp) against the same relay.
   CPU of each process (``/proc/<pid>/stat``) over the step, in ms per call, and the relay's
   split between its event loop (the main thread) and its other threads (boto3's SQS receive
   and deletes run there). A ladder stops after a step with more than 10 % failed calls or its
   second failing step in a row.
3. With ``--profile``, py-spy samples the relay through one more outgoing step at the highest
   clean rate (``bench/pyspy.py``).

Needs ``sipp``, ``dumpcap`` (root, for ``lo``) and ``timeout``. Every step is bounded: SIPp's
``-timeout`` and ``-recv_timeout``, and an outer ``timeout -k``.

Size: over 400 lines because it is one self-contained harness (processes, dial sender, SIPp
callee, capture correlation, ladder, report), as ``bench/sip_load.py`` is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.machine import banner
from bench.pyspy import record_profile
from bench.sip_load import (
    PYTHON,
    SCENARIOS,
    STOP_FAILED_SHARE,
    Capture,
    Processes,
    Step,
    cpu_seconds,
    free_sip_port,
    free_udp_port,
    http_json,
    percentiles,
    processes,
    read_pcap,
    read_sipp_stat,
    relay_environment,
    run_step,
    versions,
    wait_idle,
    wait_until,
)
from chalicelib.contracts import DialCommand
from relay.control.commands import sqs_client
from scripts.localstack import create_command_queues

RATES = (10, 25, 50, 100, 150, 200, 250, 300, 400)
STEP_S = 5.0
LATENCY_CALLS = 300
LATENCY_RATE = 20
RECV_TIMEOUT_S = 10
"""A callee's wait for the relay's ACK and BYE: far above any healthy call's, so only a lost or
stuck call fails on it."""
SQS_BATCH = 10
OFFERED_SHARE = 0.9
"""A step counts at its rate only if the INVITEs really came at 90 % of it or more."""
MOTO = Path(PYTHON).parent / "moto_server"
AWS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip


def thread_cpu(pid: int) -> tuple[float, float]:
    """Return the CPU seconds of ``pid``'s main thread and of all its other threads together."""
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            raw = (task / "stat").read_text()
        except OSError:
            continue  # a thread that ended meanwhile
        fields = raw[raw.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        if int(task.name) == pid:
            main += seconds
        else:
            other += seconds
    return main, other


@dataclass
class OutStep:
    """One outgoing step: what was dialled, what happened, what it cost."""

    rate: int
    calls: int
    offered_cps: float = 0.0
    successful: int = 0
    failed: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    no_invite: int = 0
    no_start: int = 0
    uas_rc: int = 0
    dial_invite_ms: dict[str, float] = field(default_factory=dict)
    ok_start_ms: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    load1: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)

    def cpu_ms_per_call(self, name: str) -> float:
        return 1000 * self.cpu_s.get(name, float("nan")) / max(self.calls, 1)

    def cpu_share(self, name: str) -> float:
        return self.cpu_s.get(name, float("nan")) / self.wall_s if self.wall_s else float("nan")


@dataclass
class Bench:
    """The running processes and what the steps need to reach them."""

    procs: Processes
    workdir: Path
    sqs: Any
    queue_url: str
    relay_pid: int
    relay_port: int
    decision_url: str
    stamps: Path
    watched: dict[str, int]


class Callee:
    """A SIPp UAS for one step: ``calls`` calls of ``uas_answer.xml`` on a free port."""

    def __init__(self, directory: Path, calls: int, bound_s: int) -> None:
        self.port = free_udp_port()
        self.stat = directory / "uas-stat.csv"
        command = [
            "timeout", "-k", "3", str(bound_s + 10), "sipp", "-sf", str(SCENARIOS / "uas_answer.xml"),
            "-i", "127.0.0.1", "-p", str(self.port), "-mi", "127.0.0.1", "-mp", str(free_udp_port()),
            "-m", str(calls), "-nostdin", "-timeout", f"{bound_s}s", "-timeout_error",
            "-recv_timeout", f"{RECV_TIMEOUT_S}s", "-trace_stat", "-stf", str(self.stat), "-fd", "1",
            "-trace_err", "-error_file", str(directory / "uas-errors.log"),
        ]  # fmt: skip
        self.out = open(directory / "uas.out", "wb")  # noqa: SIM115 - closed in wait()
        self.popen = subprocess.Popen(
            command,
            cwd=directory,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: _udp_bound(self.port), 5, "SIPp UAS listening")

    def wait(self, timeout_s: float) -> int:
        try:
            return self.popen.wait(timeout=timeout_s)
        finally:
            if self.popen.poll() is None:
                os.killpg(self.popen.pid, 9)
                self.popen.wait(timeout=5)
            self.out.close()


def _udp_bound(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def dial_body(call_id: str, user: str, callee_port: int, agent_url: str) -> str:
    """One dial command's JSON, as the control plane's SQS sender writes it."""
    command = DialCommand.model_validate(
        {
            "callId": call_id,
            "to": f"sip:{user}@127.0.0.1:{callee_port}",
            "from": "bench",
            "mediaEndpoint": {"url": agent_url, "framing": "twilio"},
            "systemPrompt": "bench",
        }
    )
    return json.dumps(command.model_dump(mode="json", by_alias=True))


def send_dials(bench: Bench, bodies: list[str], rate: float, batch: int) -> float:
    """Send ``bodies`` to the queue at ``rate`` per second in batches; return the time taken."""
    started = time.monotonic()
    for index in range(0, len(bodies), batch):
        due = started + index / rate
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        chunk = bodies[index : index + batch]
        if len(chunk) == 1:
            bench.sqs.send_message(QueueUrl=bench.queue_url, MessageBody=chunk[0])
        else:
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
            answer = bench.sqs.send_message_batch(QueueUrl=bench.queue_url, Entries=entries)
            assert not answer.get("Failed"), answer["Failed"]
    return time.monotonic() - started


def read_stamps(path: Path) -> dict[str, float]:
    stamps = {}
    for line in path.read_text().splitlines():
        call_id, _, at = line.partition(" ")
        stamps[call_id] = float(at)
    return stamps


def outgoing_step(bench: Bench, label: str, rate: int, calls: int) -> OutStep:
    """Dial ``calls`` calls at ``rate`` to a fresh SIPp callee and measure them."""
    directory = bench.workdir / f"{label}-{rate}cps"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    step = OutStep(rate=rate, calls=calls)
    bound_s = int(calls / rate) + RECV_TIMEOUT_S + 15
    callee = Callee(directory, calls, bound_s)
    agent_url = bench.decision_url.replace("http://", "ws://") + "/agent-leaves"
    users = {f"o{rate}x{i}": str(uuid.uuid4()) for i in range(calls)}
    bodies = [dial_body(call_id, user, callee.port, agent_url) for user, call_id in users.items()]
    capture = Capture(directory, callee.port)
    before = {name: cpu_seconds(pid) for name, pid in bench.watched.items()}
    threads_before = thread_cpu(bench.relay_pid)
    started = time.monotonic()
    send_dials(bench, bodies, rate, min(SQS_BATCH, max(1, rate // 20)))
    step.uas_rc = callee.wait(bound_s + 20)
    step.wall_s = time.monotonic() - started
    step.load1 = os.getloadavg()[0]
    for name, pid in bench.watched.items():
        step.cpu_s[name] = cpu_seconds(pid) - before[name]
    main, other = thread_cpu(bench.relay_pid)
    step.cpu_s["relay loop"] = main - threads_before[0]
    step.cpu_s["relay threads"] = other - threads_before[1]
    capture.stop()

    stat = read_sipp_stat(callee.stat)
    step.successful = int(stat.get("SuccessfulCall(C)", 0) or 0)
    step.failed = calls - step.successful
    step.failure_kinds = {
        name.removeprefix("Failed").removesuffix("(C)"): int(value)
        for name, value in stat.items()
        if name.startswith("Failed") and name.endswith("(C)") and value.isdigit() and int(value)
    }
    stamps, starts = read_stamps(bench.stamps), http_json(bench.decision_url + "/starts")
    seen = {}
    for times in read_pcap(capture.path, callee.port).values():
        user = (times.request_uri or b"").decode(errors="replace").removeprefix("sip:")
        call_id = users.get(user.split("@", 1)[0])
        if call_id is not None and times.invite is not None:
            seen[call_id] = times
    invites = sorted(t.invite for t in seen.values() if t.invite is not None)
    if len(invites) > 1:
        step.offered_cps = (len(invites) - 1) / (invites[-1] - invites[0])
    step.no_invite = calls - len(seen)
    step.no_start = sum(1 for call_id in users.values() if call_id not in starts)
    step.dial_invite_ms = percentiles(
        [1000 * (t.invite - stamps[c]) for c, t in seen.items() if t.invite and c in stamps]
    )
    step.ok_start_ms = percentiles(
        [1000 * (starts[c] - t.final) for c, t in seen.items() if t.final and c in starts]
    )
    return step


def incoming_step(bench: Bench, rate: int, step_s: float) -> Step:
    return run_step(
        label="incoming", rate=rate, step_s=step_s, scenario="accept.xml", status=None,
        service="sales", sip_port=bench.relay_port, watched=dict(bench.watched),
        workdir=bench.workdir,
    )  # fmt: skip


def start(procs: Processes, workdir: Path, sqs_kind: str) -> Bench:
    """Start the queue (the SQS stand-in or moto), the decision server and the stamped relay."""
    sqs_port, decision_port, relay_port = free_sip_port(), free_sip_port(), free_sip_port()
    sqs_url = f"http://127.0.0.1:{sqs_port}"
    if sqs_kind == "moto":
        queue = procs.spawn(
            "moto", [str(MOTO), "-H", "127.0.0.1", "-p", str(sqs_port)], {**os.environ, **AWS}
        )
        wait_until(lambda: http_json(f"{sqs_url}/moto-api/data.json") is not None, 20, "moto")
    else:
        queue = procs.spawn("sqs", [PYTHON, "-m", "bench.sqs_standin", "--port", str(sqs_port)])
        wait_until(lambda: http_json(f"{sqs_url}/stats") is not None, 20, "SQS stand-in")
    os.environ.update({**AWS, "AWS_ENDPOINT_URL": sqs_url})  # this process's boto3 clients
    sqs = sqs_client()
    if sqs_kind == "moto":
        queue_url, dlq_url = create_command_queues(sqs, "bench-commands")
    else:
        queue_url, dlq_url = f"{sqs_url}/123456789012/bench-commands", ""
    decision = procs.spawn(
        "decision",
        [PYTHON, "-m", "bench.decision_server", "--port", str(decision_port), "--mode", "accept"],
    )
    decision_url = f"http://127.0.0.1:{decision_port}"
    wait_until(lambda: http_json(decision_url + "/stats") is not None, 20, "decision server")
    env = relay_environment(decision_url, relay_port, workdir)
    env.update({**AWS, "AWS_ENDPOINT_URL": sqs_url, "SIPLINE_COMMAND_QUEUE_URL": queue_url})
    if dlq_url:
        env["SIPLINE_COMMAND_DLQ_URL"] = dlq_url
    stamps = workdir / "dial-stamps.txt"
    relay = procs.spawn("relay", [PYTHON, "-m", "bench.dial_stamps", str(stamps)], env)
    wait_until(lambda: http_json(decision_url + "/stats").get("allowlist", 0) >= 1, 30, "relay")
    watched = {"relay": relay.popen.pid, "decision": decision.popen.pid, "sqs": queue.popen.pid}
    return Bench(procs, workdir, sqs, queue_url, relay.popen.pid, relay_port, decision_url,
                 stamps, watched)  # fmt: skip


# --- printing --------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def _pcts(values: dict[str, float]) -> str:
    return " / ".join(_fmt(values.get(key)) for key in ("p50", "p99", "max"))


def print_out(label: str, s: OutStep) -> None:
    cpu = "  ".join(
        f"{name} {100 * s.cpu_share(name):.0f}% {s.cpu_ms_per_call(name):.2f}ms"
        for name in ("relay", "relay loop", "relay threads", "decision", "sqs")
    )
    problems = (
        f"  failures {s.failure_kinds} no-INVITE {s.no_invite} no-start {s.no_start} rc {s.uas_rc}"
        if s.failed or s.no_invite or s.no_start
        else ""
    )
    print(
        f"  {label:<9} {s.rate:>4} cps (offered {s.offered_cps:6.1f}) calls {s.calls:>5}"
        f" failed {s.failed:>4}  dial->INVITE p50/p99/max {_pcts(s.dial_invite_ms)} ms"
        f"  200->start {_pcts(s.ok_start_ms)} ms  load {s.load1:.2f}  cpu: {cpu}{problems}",
        flush=True,
    )


def print_in(s: Step) -> None:
    cpu = "  ".join(
        f"{name} {100 * s.cpu_share(name):.0f}% {s.cpu_ms_per_call(name):.2f}ms"
        for name in ("relay", "decision", "sipp")
    )
    print(
        f"  incoming  {s.rate:>4} cps (offered {s.offered_cps:6.1f}) calls {s.calls:>5}"
        f" failed {s.failed:>4}  INVITE->200 p50/p99 {_fmt(s.final_ms.get('p50'))} /"
        f" {_fmt(s.final_ms.get('p99'))} ms  load {s.load1:.2f}  cpu: {cpu}",
        flush=True,
    )


def clean(step: OutStep) -> bool:
    """Every call succeeded, at (nearly) the rate asked: a sender or queue that fell behind
    offered less than the step's rate, and that step says nothing about the rate."""
    return step.failed == 0 and step.uas_rc == 0 and step.offered_cps >= OFFERED_SHARE * step.rate


def print_summary(latency: OutStep | None, out: list[OutStep], inc: list[Step]) -> None:
    print("\nsummary\n=======")
    if latency is not None:
        print(
            f"latency, {latency.calls} dials at {latency.rate}/s: dial consumed -> INVITE on the"
            f" wire p50/p99/max {_pcts(latency.dial_invite_ms)} ms; 200 OK -> agent start"
            f" {_pcts(latency.ok_start_ms)} ms; failed {latency.failed}"
        )
    incoming = {s.rate: s for s in inc}
    print(
        f"{'cps':>4} {'out failed':>10} {'in failed':>9}  relay ms/call out (loop+threads)  in  out/in"
    )
    for s in out:
        other = incoming.get(s.rate)
        in_ms = other.cpu_ms_per_call("relay") if other else float("nan")
        print(
            f"{s.rate:>4} {s.failed:>10} {other.failed if other else '-':>9}  "
            f"{s.cpu_ms_per_call('relay'):6.2f} ({s.cpu_ms_per_call('relay loop'):.2f}"
            f"+{s.cpu_ms_per_call('relay threads'):.2f})  {in_ms:6.2f}  {s.cpu_ms_per_call('relay') / in_ms:5.2f}"
        )
    clean_out = [s.rate for s in out if clean(s)]
    clean_in = [s.rate for s in inc if s.failed == 0 and s.sipp_rc == 0]
    best_out = max(clean_out) if clean_out else 0
    print(f"highest rate with zero failed calls: outgoing {best_out or 'none'}, incoming"
          f" {max(clean_in) if clean_in else 'none'}")  # fmt: skip
    if latency is not None:
        p99 = latency.dial_invite_ms.get("p99", float("inf"))
        print(
            f"target dial -> INVITE p99 < 10 ms: {'met' if p99 < 10 else 'NOT met'} ({_fmt(p99)} ms)"
        )
    print(
        f"target >= 100 outgoing cps with zero failures: {'met' if best_out >= 100 else 'NOT met'}"
    )


# --- main ------------------------------------------------------------------------------------


def climb(
    bench: Bench, rates: list[int], step_s: float, incoming: bool
) -> tuple[list[OutStep], list[Step]]:
    """Outgoing and incoming steps in turn at each rate, each ladder with its stop rule."""
    out: list[OutStep] = []
    inc: list[Step] = []
    out_failing = in_failing = 0
    out_done, in_done = False, not incoming
    for rate in rates:
        if not out_done:
            wait_idle(bench.relay_pid)
            step = outgoing_step(bench, "outgoing", rate, max(1, round(rate * step_s)))
            out.append(step)
            print_out("outgoing", step)
            out_failing = out_failing + 1 if step.failed else 0
            out_done = step.failed > STOP_FAILED_SHARE * step.calls or out_failing >= 2
        if not in_done:
            wait_idle(bench.relay_pid)
            other = incoming_step(bench, rate, step_s)
            inc.append(other)
            print_in(other)
            in_failing = in_failing + 1 if other.failed else 0
            in_done = other.failed > STOP_FAILED_SHARE * other.calls or in_failing >= 2
        if out_done and in_done:
            break
    return out, inc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="*", default=list(RATES))
    parser.add_argument("--step-s", type=float, default=STEP_S, help="seconds of calls per step")
    parser.add_argument("--latency-calls", type=int, default=LATENCY_CALLS)
    parser.add_argument("--latency-rate", type=int, default=LATENCY_RATE)
    parser.add_argument("--no-incoming", action="store_true", help="outgoing steps only")
    parser.add_argument(
        "--sqs", choices=("standin", "moto"), default="standin",
        help="the command queue: bench/sqs_standin.py (default) or moto's SQS",
    )  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="py-spy one step at the best rate")
    parser.add_argument("--workdir", type=Path, default=None, help="kept if given")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    for tool in ("sipp", "dumpcap", "timeout"):
        if shutil.which(tool) is None:
            sys.exit(f"outgoing: {tool} is not installed (scripts/system-deps.sh bench)")
    print(banner("Outgoing calls: dial -> INVITE, 200 -> agent start, calls per second"))
    print(versions())
    print(f"  {'steps':<8}  {args.step_s:g} s of calls each at {args.rates} cps; latency:"
          f" {args.latency_calls} dials at {args.latency_rate}/s; queue: {args.sqs}\n")  # fmt: skip
    scratch = None
    if args.workdir is None:
        scratch = tempfile.TemporaryDirectory(prefix="sipline-outgoing-")
        workdir = Path(scratch.name)
    else:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    latency: OutStep | None = None
    out: list[OutStep] = []
    inc: list[Step] = []
    try:
        with processes(workdir / "logs") as procs:
            bench = start(procs, workdir, args.sqs)
            warm = outgoing_step(bench, "warm-up", 10, 10)  # imports, first connections: not shown
            if warm.failed or warm.no_start:
                raise RuntimeError(f"the warm-up step failed: {warm}; see {workdir}")
            if args.latency_calls:
                latency = outgoing_step(bench, "latency", args.latency_rate, args.latency_calls)
                print_out("latency", latency)
            out, inc = climb(bench, args.rates, args.step_s, not args.no_incoming)
            if args.profile:
                profile(bench, out, args.step_s)
    finally:
        print_summary(latency, out, inc)
        if args.json is not None:
            figures = {"latency": asdict(latency) if latency else None,
                       "outgoing": [asdict(s) for s in out], "incoming": [asdict(s) for s in inc]}  # fmt: skip
            args.json.write_text(json.dumps(figures, indent=1))
        if scratch is not None:
            scratch.cleanup()


def profile(bench: Bench, out: list[OutStep], step_s: float) -> None:
    rate = max([s.rate for s in out if clean(s)] or [10])
    seconds = max(5, round(2 * step_s))
    raw = bench.workdir / "relay-profile.txt"
    result: list[str] = []
    spy = threading.Thread(
        target=lambda: result.append(record_profile(bench.relay_pid, seconds, raw)), daemon=True
    )
    wait_idle(bench.relay_pid)
    spy.start()
    step = outgoing_step(bench, "profiled", rate, rate * seconds)
    print_out("profiled", step)
    spy.join(seconds + 30)
    print(f"\nrelay profile, outgoing at {rate} cps:\n{result[0] if result else 'no profile'}")


if __name__ == "__main__":
    main()
