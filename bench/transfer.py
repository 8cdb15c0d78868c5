"""Cold transfers: request -> REFER / INVITE on the wire, bridged media latency, CPU per bridged call.

``python -m bench.transfer`` runs, each in its own process on 127.0.0.1 and stopped by its
process group (``bench/relay_calls.py``'s harness, which this one extends): echo agents
(``bench/echo_agent.py``), ``bench/decision_server.py`` as the control plane (it accepts every
INVITE, its media endpoint the echo agents, and keeps the call ids it gave and the event types
the relay reported), the command queue (``bench/sqs_standin.py``), and the relay as
``python -m bench.dial_stamps`` (``python -m relay`` noting ``time.time()`` as its command
handler takes each ``transfer``). Each transfer is a ``TransferCommand`` as the control plane
sends it (``chalicelib/contracts.py``), sent to the queue once the call's ``agent_joined``
event reached the control plane. Then, in that one relay process:

1. **REFER** (``--refers`` calls): SIPp callers (``bench/scenarios/transferee.xml``: the
   transferee of RFC 5589 §6.1: REFER, 202, NOTIFY 100, NOTIFY 200, BYE) each transferred by
   REFER to ``sip:r<k>@pbx.example.com``. *command taken -> REFER on the wire*: the relay's
   stamp to the REFER's kernel timestamp in a ``dumpcap`` capture of the callers' SIP port on
   ``lo`` (both CLOCK_REALTIME, one machine; the Refer-To names the transfer).
2. **Bridged** (``--bridged`` SIPp callers streaming a looped sweep, ``bench/scenarios/
   relay_calls.xml``, plus ``--probes`` calls of ``bench/latency_probe.py``), all with the echo
   agent first, then each transferred by INVITE to ``sip:b<k>@127.0.0.1:<port>``, a SIPp UAS
   (``bench/scenarios/uas_answer.xml`` with ``-rtp_echo``: it answers at once and sends every
   RTP packet back). Measured:
   - *command taken -> INVITE on the wire*: as above, in a capture of the target's SIP port;
   - *CPU per bridged call vs per agent call*: the relay's CPU (``/proc/<pid>/stat``) over a
     ``--window-s`` window with every call on its agent, then over one with every call bridged:
     the same calls, the same process, one run; the ratio is the figure;
   - *added latency caller <-> target*: the probe's frames (160 bytes of PCMU starting with a
     6-byte magic, a probe id and a counter; the bridge forwards the payload unchanged, and so
     does SIPp's echo) in a ``dumpcap`` capture on ``lo`` filtered on the magic: per frame,
     **caller -> target** = leaving the relay for the target - arriving from the caller, and
     **target -> caller** = leaving the relay for the caller - arriving from the target (kernel
     timestamps at the loopback: the relay's own receive, bridge and send, with its event
     loop's scheduling under the load of the other calls; the first ``PROBE_WARMUP_S`` of each
     probe call's bridge are left out).

Needs ``sipp``, ``dumpcap`` (root, for ``lo``), ``sox`` and ``timeout``. Every wait is bounded.
Not measured: the API request -> command leg (``POST /api/calls/{callId}/transfers`` through the
control plane to the relay's queue): locally that is ``chalice local`` + moto, whose own costs
(tens of ms, ``bench/README.md``, SIP load) would be the figure; the relay's part is measured.

Size: over 400 lines because it is one harness for the three figures (REFER phase, bridged
phase, the probe capture's join, report); processes, SIPp callers, probe and agent are reused
from ``bench/relay_calls.py``, ``bench/sip_load.py`` and ``bench/outgoing.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import relay_calls
from bench.latency_probe import HEADER, MAGIC
from bench.machine import banner
from bench.outgoing import read_stamps
from bench.relay_calls import PYTHON, free_port, machine_busy_s, process_cpu
from bench.sip_load import (
    SCENARIOS,
    Capture,
    http_json,
    percentiles,
    read_pcap,
    relay_environment,
    udp_datagrams,
    versions,
    wait_until,
)
from chalicelib.contracts import TransferCommand
from relay.control.commands import sqs_client

AWS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
REFERS = 200
BRIDGED = 50
PROBES = 3
WINDOW_S = 15.0
TRANSFER_RATE = 10.0
"""Transfers sent per second at most (the control plane's pace is a bot's, not a flood's)."""
SETTLE_S = 3.0
PROBE_WARMUP_S = 1.0
RTP_HEADER_BYTES = 12  # RFC 3550 §5.1 without CSRC: where the probe's magic starts in a datagram
UDP_MAGIC_OFFSET = 8 + RTP_HEADER_BYTES  # the same from the UDP header (the capture filter's)
REFER_TARGET = "sip:r{k}@pbx.example.com"
JOIN_EVENT, BRIDGED_EVENT, REFERRED_EVENT = "agent_joined", "bridged", "refer_succeeded"


@dataclass
class Figures:
    """What one run measured (``--json``)."""

    refers: int = 0
    refer_sent: int = 0
    refer_succeeded: int = 0
    refer_sipp_rc: int | None = None
    command_refer_ms: dict[str, float] = field(default_factory=dict)
    bridged_calls: int = 0
    bridged_sent: int = 0
    bridged_done: int = 0
    command_invite_ms: dict[str, float] = field(default_factory=dict)
    caller_target_ms: dict[str, float] = field(default_factory=dict)
    target_caller_ms: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    bridged_per_agent_call: float = float("nan")
    load: list[float] = field(default_factory=list)


class TransferBench(relay_calls.Bench):
    """``relay_calls.Bench`` with a command queue and the stamped relay."""

    def start_decision_server(self) -> None:
        sqs_port, port = free_port(), free_port()
        sqs_url = f"http://127.0.0.1:{sqs_port}"
        self.spawn("sqs", [PYTHON, "-m", "bench.sqs_standin", "--port", str(sqs_port)])
        wait_until(lambda: http_json(f"{sqs_url}/stats") is not None, 20, "SQS stand-in")
        os.environ.update({**AWS, "AWS_ENDPOINT_URL": sqs_url})  # this process's boto3 client
        self.sqs = sqs_client()
        self.queue_url = f"{sqs_url}/123456789012/bench-commands"
        urls = [arg for url in self.agent_urls for arg in ("--agent-url", url)]
        decision = self.spawn(
            "decision",
            [PYTHON, "-m", "bench.decision_server", "--port", str(port), "--mode", "accept", *urls],
        )
        self.control_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_json(self.control_url + "/stats") is not None, 20, "decision")
        env = relay_environment(self.control_url, self.sip_port, self.workdir)
        env["SIPLINE_RTP_PORTS"] = f"{self.rtp[0]}-{self.rtp[1]}"
        env.update(
            {**AWS, "AWS_ENDPOINT_URL": sqs_url, "SIPLINE_COMMAND_QUEUE_URL": self.queue_url}
        )
        self.stamps = self.workdir / "stamps.txt"
        relay = self.spawn("relay", [PYTHON, "-m", "bench.dial_stamps", str(self.stamps)], env=env)
        wait_until(lambda: http_json(self.control_url + "/stats").get("allowlist", 0) >= 1, 30,
                   "relay allowlist")  # fmt: skip
        self.relay_pid = relay.pid
        self.control_pids = [decision.pid]

    def calls(self) -> dict[str, Any]:
        answer: dict[str, Any] = http_json(self.control_url + "/calls")
        return answer

    def transfer(self, call_id: str, transfer_id: str, method: str, target: str) -> None:
        command = TransferCommand.model_validate(
            {
                "callId": call_id,
                "transferId": transfer_id,
                "kind": "cold",
                "method": method,
                "target": target,
                "holdMusic": "none",
            }
        )
        body = json.dumps(command.model_dump(mode="json", by_alias=True))
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)


def transfer_when_joined(
    bench: TransferBench, before: set[str], count: int, method: str,
    target: Callable[[int], str], bound_s: float,
) -> dict[str, str]:  # fmt: skip
    """Transfer each new call once its agent joined, at most ``TRANSFER_RATE`` a second, until
    ``count`` were sent or ``bound_s`` passed; return {transfer id: target user}."""
    sent: dict[str, str] = {}
    done: set[str] = set()
    deadline = time.monotonic() + bound_s
    next_at = time.monotonic()
    while len(sent) < count and time.monotonic() < deadline:
        known = bench.calls()
        ready = [c for c in known["accepted"] if c not in before and c not in done
                 and JOIN_EVENT in known["events"].get(c, ())]  # fmt: skip
        for call_id in ready[: count - len(sent)]:
            if (wait := next_at - time.monotonic()) > 0:
                time.sleep(wait)
            next_at = max(next_at, time.monotonic()) + 1 / TRANSFER_RATE
            k = len(sent)
            transfer_id = str(uuid.uuid4())
            bench.transfer(call_id, transfer_id, method, target(k))
            sent[transfer_id] = target(k).split(":", 1)[1].split("@", 1)[0]
            done.add(call_id)
        time.sleep(0.1)
    return sent


def count_events(bench: TransferBench, calls: set[str], event: str) -> int:
    events = bench.calls()["events"]
    return sum(1 for c in calls if event in events.get(c, ()))


def new_calls(bench: TransferBench, before: set[str]) -> set[str]:
    return {c for c in bench.calls()["accepted"] if c not in before}


def wait_bounded(check: Callable[[], bool], bound_s: float) -> bool:
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def header_user(message: bytes, name: bytes) -> str | None:
    """The user part of the URI in header ``name`` of a SIP message (``<sip:user@...>``)."""
    for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            uri = value.strip().lstrip(b"<").split(b":", 1)[-1]
            return uri.split(b"@", 1)[0].decode(errors="replace")
    return None


# --- 1. REFER --------------------------------------------------------------------------------


def refer_phase(bench: TransferBench, figures: Figures, count: int) -> None:
    directory = bench.workdir / "refer"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    capture = Capture(directory, port, name="refer")
    before = set(bench.calls()["accepted"])
    bound_s = int(count / bench.args.cps + count / TRANSFER_RATE + 60)
    sipp = bench.spawn("sipp-refer", [
        "timeout", "-k", "3", str(bound_s + 5), "sipp", f"127.0.0.1:{bench.sip_port}",
        "-sf", str(SCENARIOS / "transferee.xml"), "-s", "sales", "-i", "127.0.0.1",
        "-p", str(port), "-mi", "127.0.0.1", "-mp", str(free_port()),
        "-l", str(count), "-m", str(count), "-r", str(bench.args.cps), "-nostdin",
        "-timeout", f"{bound_s}s", "-timeout_error", "-trace_err",
        "-error_file", str(directory / "sipp-errors.log"),
    ], cwd=directory)  # fmt: skip
    sent = transfer_when_joined(bench, before, count, "REFER",
                                lambda k: REFER_TARGET.format(k=k), bound_s)  # fmt: skip
    try:
        figures.refer_sipp_rc = sipp.wait(timeout=bound_s + 10)
    except subprocess.TimeoutExpired:
        figures.refer_sipp_rc = None
    capture.stop()
    figures.refers, figures.refer_sent = count, len(sent)
    calls = new_calls(bench, before)
    wait_bounded(lambda: count_events(bench, calls, REFERRED_EVENT) >= len(sent), 10)
    figures.refer_succeeded = count_events(bench, calls, REFERRED_EVENT)
    refers: dict[str, float] = {}
    for at, source, destination, payload in udp_datagrams(capture.path):
        if destination == port and source == bench.sip_port and payload.startswith(b"REFER "):
            user = header_user(payload, b"refer-to")
            if user is not None and user not in refers:
                refers[user] = at
    stamps = read_stamps(bench.stamps)
    figures.command_refer_ms = percentiles(
        [
            1000 * (refers[user] - stamps[t])
            for t, user in sent.items()
            if user in refers and t in stamps
        ]
    )


# --- 2. bridged ------------------------------------------------------------------------------


def relay_cpu_window(bench: TransferBench, window_s: float, calls: int) -> dict[str, float]:
    """The relay's CPU over ``window_s``: share of a core, ms of CPU per call per second."""
    cpu0, busy0, t0 = process_cpu(bench.relay_pid), machine_busy_s(), time.monotonic()
    time.sleep(window_s)
    cpu1, busy1, t1 = process_cpu(bench.relay_pid), machine_busy_s(), time.monotonic()
    share = (cpu1 - cpu0) / (t1 - t0)
    return {"calls": calls, "relay_share": share, "per_call_ms_per_s": 1000 * share / max(calls, 1),
            "machine_busy_cores": (busy1 - busy0) / (t1 - t0), "load1": os.getloadavg()[0]}  # fmt: skip


def probe_latency(path: Path, relay_ports: tuple[int, int], target_media: int) -> tuple[list[float], list[float]]:  # fmt: skip
    """Per probe frame, the relay's added latency each way (seconds), from the RTP capture."""
    low, high = relay_ports
    from_caller: dict[bytes, float] = {}
    to_target: dict[bytes, float] = {}
    from_target: dict[bytes, float] = {}
    to_caller: dict[bytes, list[float]] = {}
    for at, source, destination, payload in udp_datagrams(path):
        if payload[RTP_HEADER_BYTES : RTP_HEADER_BYTES + len(MAGIC)] != MAGIC:
            continue
        key = payload[RTP_HEADER_BYTES : RTP_HEADER_BYTES + HEADER.size]
        relay_in, relay_out = low <= destination <= high, low <= source <= high
        if relay_out and destination == target_media:
            to_target.setdefault(key, at)
        elif relay_in and source == target_media:
            from_target.setdefault(key, at)
        elif relay_in:
            from_caller.setdefault(key, at)
        elif relay_out:
            to_caller.setdefault(key, []).append(at)
    first_bridged: dict[int, float] = {}
    for key, at in to_target.items():
        probe_id = HEADER.unpack(key)[1]
        first_bridged[probe_id] = min(at, first_bridged.get(probe_id, at))

    def counted(key: bytes, at: float) -> bool:
        return at >= first_bridged[HEADER.unpack(key)[1]] + PROBE_WARMUP_S

    forward = [
        at - from_caller[k] for k, at in to_target.items() if k in from_caller and counted(k, at)
    ]
    backward = []
    for key, at in from_target.items():
        later = [t for t in to_caller.get(key, ()) if t >= at]
        if later and counted(key, at):
            backward.append(min(later) - at)
    return forward, backward


def bridged_phase(bench: TransferBench, figures: Figures, count: int, probes: int, window_s: float) -> None:  # fmt: skip
    directory = bench.workdir / "bridged"
    directory.mkdir(parents=True, exist_ok=True)
    total = count + probes
    ramp_s = count / bench.args.cps + 10
    transfer_s = total / TRANSFER_RATE + 15
    hold_s = ramp_s + window_s + transfer_s + SETTLE_S + window_s + 5
    target_port, target_media = free_port(), free_port()
    bound_s = int(hold_s + 40)
    target = bench.spawn("sipp-target", [
        "timeout", "-k", "3", str(bound_s + 5), "sipp", "-sf", str(SCENARIOS / "uas_answer.xml"),
        "-i", "127.0.0.1", "-p", str(target_port), "-mi", "127.0.0.1", "-mp", str(target_media),
        "-rtp_echo", "-m", str(total), "-nostdin", "-timeout", f"{bound_s}s", "-timeout_error",
        "-trace_err", "-error_file", str(directory / "target-errors.log"),
    ], cwd=directory)  # fmt: skip
    sip_capture = Capture(directory, target_port, name="target-sip")
    magic = int.from_bytes(MAGIC[:4], "big")
    rtp_capture = Capture(directory, 0, name="probe-rtp",
                          bpf=f"udp and udp[{UDP_MAGIC_OFFSET}:4] = 0x{magic:08x}")  # fmt: skip
    before = set(bench.calls()["accepted"])
    callers = bench.sipp(count, hold_s)
    probe, _ = bench.probe(probes, hold_s)

    def joined() -> bool:
        return count_events(bench, new_calls(bench, before), JOIN_EVENT) >= total

    wait_bounded(joined, ramp_s + 10)
    calls = new_calls(bench, before)
    up = count_events(bench, calls, JOIN_EVENT)
    time.sleep(SETTLE_S)
    figures.cpu["agent"] = relay_cpu_window(bench, window_s, up)
    print(f"  agent calls   {up:>4}: {_cpu(figures.cpu['agent'])}", flush=True)
    sent = transfer_when_joined(bench, before, total, "INVITE",
                                lambda k: f"sip:b{k}@127.0.0.1:{target_port}", transfer_s)  # fmt: skip
    figures.bridged_calls, figures.bridged_sent = total, len(sent)
    wait_bounded(lambda: count_events(bench, calls, BRIDGED_EVENT) >= len(sent), 15)
    figures.bridged_done = count_events(bench, calls, BRIDGED_EVENT)
    time.sleep(SETTLE_S)
    # the same calls as the agent window: a transfer that failed left its call with the agent,
    # so the ratio holds only when every call was bridged (the summary says so otherwise)
    figures.cpu["bridged"] = relay_cpu_window(bench, window_s, up)
    print(
        f"  bridged {figures.bridged_done:>4} of {up}: {_cpu(figures.cpu['bridged'])}", flush=True
    )
    figures.bridged_per_agent_call = (
        figures.cpu["bridged"]["per_call_ms_per_s"] / figures.cpu["agent"]["per_call_ms_per_s"]
    )
    for popen in (callers, probe, target):
        try:
            popen.wait(timeout=bound_s)
        except subprocess.TimeoutExpired:
            print(f"  (pid {popen.pid} still running: stopped with the others)", flush=True)
    sip_capture.stop()
    rtp_capture.stop()
    stamps = read_stamps(bench.stamps)
    invites: dict[str, float] = {}
    for times in read_pcap(sip_capture.path, target_port).values():
        uri = (times.request_uri or b"").decode(errors="replace").removeprefix("sip:")
        if times.invite is not None:
            invites[uri.split("@", 1)[0]] = times.invite
    figures.command_invite_ms = percentiles(
        [1000 * (invites[u] - stamps[t]) for t, u in sent.items() if u in invites and t in stamps]
    )
    forward, backward = probe_latency(rtp_capture.path, bench.rtp, target_media)
    figures.caller_target_ms = percentiles([1000 * s for s in forward])
    figures.target_caller_ms = percentiles([1000 * s for s in backward])


# --- report ----------------------------------------------------------------------------------


def _pcts(values: dict[str, float]) -> str:
    keys = ("p50", "p99", "max")
    return " / ".join(f"{values[k]:.2f}" if k in values else "-" for k in keys) + (
        f" ms (n={values.get('n', 0):.0f})"
    )


def _cpu(window: dict[str, float]) -> str:
    return (f"relay {100 * window['relay_share']:.1f} % of a core,"
            f" {window['per_call_ms_per_s']:.3f} ms CPU per call per s; machine busy"
            f" {window['machine_busy_cores']:.2f} cores, load {window['load1']:.2f}")  # fmt: skip


def print_summary(f: Figures) -> None:
    print("\nsummary\n=======")
    if f.refers:
        print(f"REFER: {f.refer_sent} of {f.refers} transferred, {f.refer_succeeded} succeeded,"
              f" SIPp rc {f.refer_sipp_rc}; transfer command taken -> REFER on the wire"
              f" p50/p99/max {_pcts(f.command_refer_ms)}")  # fmt: skip
    if f.bridged_calls:
        print(f"INVITE: {f.bridged_sent} of {f.bridged_calls} transferred, {f.bridged_done}"
              f" bridged; transfer command taken -> INVITE on the wire p50/p99/max"
              f" {_pcts(f.command_invite_ms)}")  # fmt: skip
        print(f"bridged media, added by the relay: caller -> target {_pcts(f.caller_target_ms)};"
              f" target -> caller {_pcts(f.target_caller_ms)}")  # fmt: skip
        mixed = f.bridged_done < f.cpu.get("agent", {}).get("calls", 0)
        print(
            f"relay CPU per bridged call / per agent call, same calls: {f.bridged_per_agent_call:.2f}"
            + (" (NOT every call was bridged: a mix)" if mixed else "")
        )
    for name, limit, values in (
        ("request -> REFER", 20, f.command_refer_ms), ("request -> INVITE", 20, f.command_invite_ms),
        ("caller -> target", 5, f.caller_target_ms), ("target -> caller", 5, f.target_caller_ms),
    ):  # fmt: skip
        if values:
            p99 = values.get("p99", float("inf"))
            print(
                f"target {name} p99 < {limit} ms: {'met' if p99 < limit else 'NOT met'} ({p99:.2f} ms)"
            )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refers", type=int, default=REFERS, help="calls transferred by REFER")
    parser.add_argument("--bridged", type=int, default=BRIDGED, help="SIPp calls bridged")
    parser.add_argument("--probes", type=int, default=PROBES, help="probe calls, bridged too")
    parser.add_argument("--window-s", type=float, default=WINDOW_S, help="each CPU window")
    parser.add_argument("--cps", type=int, default=20, help="SIPp call rate while ramping up")
    parser.add_argument("--workdir", type=Path, default=None, help="kept if given")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    # what relay_calls.Bench reads
    # (its RTP range is sized from ``calls``: every REFER call may be up at once, and a bridged
    # call holds two legs)
    args.agents, args.control, args.relay_env = 1, "decision", {}
    args.calls = [max(args.refers, 2 * args.bridged + args.probes)]
    return args


def main() -> None:
    args = parse_args()
    for tool in ("sipp", "dumpcap", "sox", "timeout"):
        if shutil.which(tool) is None:
            sys.exit(f"transfer: {tool} is not installed (scripts/system-deps.sh bench)")
    print(
        banner("Cold transfers: request -> REFER / INVITE, bridged latency, CPU per bridged call")
    )
    print(versions())
    print(f"  {'run':<8}  {args.refers} REFER transfers; {args.bridged} + {args.probes} probe"
          f" calls bridged; CPU windows of {args.window_s:g} s; transfers at <="
          f" {TRANSFER_RATE:g}/s\n")  # fmt: skip
    scratch = None
    if args.workdir is None:
        scratch = tempfile.TemporaryDirectory(prefix="sipline-transfer-")
        workdir = Path(scratch.name)
    else:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    figures = Figures()
    bench = TransferBench(args, workdir)
    try:
        bench.start()
        if args.refers:
            refer_phase(bench, figures, args.refers)
            print(f"  REFER: command -> REFER {_pcts(figures.command_refer_ms)}", flush=True)
        if args.bridged or args.probes:
            bridged_phase(bench, figures, args.bridged, args.probes, args.window_s)
        figures.load = list(os.getloadavg())
    finally:
        bench.stop()
        print_summary(figures)
        if args.json is not None:
            args.json.write_text(json.dumps(asdict(figures), indent=1))
        if scratch is not None:
            scratch.cleanup()


if __name__ == "__main__":
    main()
