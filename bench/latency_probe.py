"""Latency probe: a few calls through the relay whose RTP is stamped, timed each way at the agent.

``python -m bench.latency_probe --sip-port P --calls K --duration-s D --out FILE`` is a minimal
UAC (its own process, asyncio, 127.0.0.1 only). Each of its K calls:

1. sends an INVITE (UDP; retransmitted at 0.5, 1, 2, 4 s, RFC 3261 Timer A) offering PCMU with
   ``a=rtcp-mux`` and its own RTP port, reads the relay's RTP address and port from the 200's
   SDP (``relay.sip.syntax.parser`` and ``relay.sip.sdp.description``), and ACKs it;
2. sends RTP every 20 ms on one shared grid: 160-byte PCMU payloads that start with
   ``MAGIC`` (6 bytes), the probe id (2) and a counter (4), then a filler that depends on the
   counter, so that an altered payload shows; it records ``time.monotonic()`` just before
   each ``sendto``;
3. records ``time.monotonic()`` on receipt of each RTP packet from the relay: the agent's echo
   of a probe payload (magic, id, counter, and whether all 160 bytes came back unchanged), or
   anything else (the relay's silence before the agent speaks, concealment, RTCP);
4. after ``D`` seconds stops sending, waits ``DRAIN_S`` for the last echoes, and hangs up (BYE).

The echo agent (``bench.echo_agent``) knows a probe frame by its base64 prefix and records
its own receipt and echo times for it. ``time.monotonic()`` is ``CLOCK_MONOTONIC`` on Linux,
one clock for every process of the machine, so the two sides compare directly:

- **caller -> agent** = agent receipt - probe send: the relay's receive path (socket, jitter
  buffer, the 20 ms frame grid to the agent, JSON framing, WebSocket send), the loopback, and
  the agent's own WebSocket read;
- **agent -> caller** = probe receipt - agent echo: the relay's WebSocket read, the playout
  queue and its 20 ms RTP send tick, the loopback, and the probe's own wake-up.

Both include the operating system and each event loop's scheduling on whatever machine runs
the benchmark; on a loaded 2-core machine those are part of the figure. The relay forwards
in-order audio on arrival both ways, so the floor (min, which ``summarize`` reports next to
p50/p99/max) is the loopback and the processes' wake-ups, 0.1-0.2 ms here.

Size: over 400 lines because it is one harness for both ends of the measurement (the probe
UAC's SIP and RTP, and the join of its timestamps with the agent's), which only
``bench/relay_calls.py`` drives.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from relay.sip.sdp.description import SessionDescription
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.parser import parse_message

HOST = "127.0.0.1"
MAGIC = b"SLprb\xa5"  # 6 bytes: its base64 is 8 characters, a fixed prefix whatever follows
PROBE_PREFIX_B64 = base64.b64encode(MAGIC)
HEADER = struct.Struct(">6sHI")  # magic, probe id, counter: 12 bytes, 16 base64 characters
PAYLOAD_BYTES = 160  # 20 ms of 8 kHz μ-law
FILLER = bytes(range(256)) * 2
RTP_HEADER = struct.Struct(">BBHII")  # RFC 3550 §5.1, no CSRC, no extension
RTP_VERSION_BITS = 0x80
PCMU = 0
FRAME_S = 0.020
SAMPLES_PER_FRAME = 160
INVITE_RETRANSMIT_S = (0.5, 1.0, 2.0, 4.0)  # RFC 3261 Timer A doubling from T1, then give up
DRAIN_S = 1.0  # after the last send: the relay's jitter buffer and playout hold < 0.3 s
MAX_BURST = 5  # a probe tick this late sends the missed frames at once, like a stalled phone


def probe_payload(probe_id: int, counter: int) -> bytes:
    """Return the 160-byte payload of frame ``counter`` of probe call ``probe_id``."""
    offset = counter % 256
    return HEADER.pack(MAGIC, probe_id, counter) + FILLER[offset : offset + PAYLOAD_BYTES - 12]


def new_branch() -> str:
    """Return a fresh RFC 3261 branch (§8.1.1.7: the magic cookie, then something unique)."""
    return f"z9hG4bK{random.getrandbits(64):016x}"


def decode_key(key: str) -> tuple[int, int]:
    """Return ``(probe id, counter)`` from base64 characters 8-16 of a probe payload."""
    probe_id, counter = struct.unpack(">HI", base64.b64decode(key))
    return probe_id, counter


# --- the UAC ---------------------------------------------------------------------------------


@dataclass
class ProbeCall:
    """One probe call: its SIP dialog, its RTP socket, and what was sent and received."""

    probe_id: int
    rtp: asyncio.DatagramTransport
    rtp_port: int
    call_id: str
    from_tag: str
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    branches: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    to_header: str = ""
    contact: str = ""
    remote: tuple[str, int] | None = None
    invite_sent_at: float = 0.0
    answered_at: float | None = None
    bye_status: int | None = None
    sent: list[float] = field(default_factory=list)  # index: counter
    received: list[tuple[int, float, bool]] = field(default_factory=list)
    other_rtp: int = 0
    rtcp: int = 0
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    bye_done: asyncio.Event = field(default_factory=asyncio.Event)

    def send_frame(self) -> None:
        counter = len(self.sent)
        header = RTP_HEADER.pack(
            RTP_VERSION_BITS, PCMU | (0x80 if counter == 0 else 0), counter & 0xFFFF,
            (counter * SAMPLES_PER_FRAME) & 0xFFFFFFFF, self.ssrc,
        )  # fmt: skip
        packet = header + probe_payload(self.probe_id, counter)
        self.sent.append(time.monotonic())
        self.rtp.sendto(packet, self.remote)

    def rtp_received(self, data: bytes) -> None:
        now = time.monotonic()
        if len(data) < 12 or data[0] >> 6 != 2:
            self.other_rtp += 1
            return
        if 200 <= data[1] <= 204:  # RFC 5761 §4: RTCP packet types on a muxed port
            self.rtcp += 1
            return
        payload = data[12 + 4 * (data[0] & 0x0F) :]
        if not payload.startswith(MAGIC) or len(payload) < HEADER.size:
            self.other_rtp += 1
            return
        _, probe_id, counter = HEADER.unpack_from(payload)
        self.received.append((counter, now, payload == probe_payload(probe_id, counter)))


class _Rtp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.call: ProbeCall | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.call is not None:
            self.call.rtp_received(data)


class Uac(asyncio.DatagramProtocol):
    """The SIP side of every probe call, on one UDP socket."""

    def __init__(self, relay: tuple[str, int], service: str) -> None:
        self.relay = relay
        self.service = service
        self.calls: dict[str, ProbeCall] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.local_port = 0
        self.unparsed = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.local_port = int(transport.get_extra_info("sockname")[1])

    def send(self, text: str) -> None:
        assert self.transport is not None
        self.transport.sendto(text.replace("\n", "\r\n").encode(), self.relay)

    def _common(self, call: ProbeCall, method: str, cseq: int, to: str) -> str:
        # a retransmission keeps its transaction's branch; an ACK for a 2xx gets a new one
        branch = call.branches.setdefault(method, new_branch()) if method != "ACK" else new_branch()
        return (
            f"Via: SIP/2.0/UDP {HOST}:{self.local_port};branch={branch};rport\n"
            f"Max-Forwards: 70\n"
            f"From: <sip:probe{call.probe_id}@{HOST}:{self.local_port}>;tag={call.from_tag}\n"
            f"To: {to}\nCall-ID: {call.call_id}\nCSeq: {cseq} {method}\n"
        )

    def invite(self, call: ProbeCall) -> None:
        sdp = (
            f"v=0\no=probe {call.probe_id} 1 IN IP4 {HOST}\ns=-\nc=IN IP4 {HOST}\nt=0 0\n"
            f"m=audio {call.rtp_port} RTP/AVP 0\na=rtpmap:0 PCMU/8000\na=ptime:20\n"
            "a=rtcp-mux\na=sendrecv\n"
        ).replace("\n", "\r\n")
        uri = f"sip:{self.service}@{self.relay[0]}:{self.relay[1]}"
        self._send_with_body(
            f"INVITE {uri} SIP/2.0\n{self._common(call, 'INVITE', 1, f'<{uri}>')}"
            f"Contact: <sip:probe{call.probe_id}@{HOST}:{self.local_port}>\n"
            f"Content-Type: application/sdp\n",
            sdp,
        )

    def _send_with_body(self, head: str, body: str) -> None:
        assert self.transport is not None
        text = head.replace("\n", "\r\n") + f"Content-Length: {len(body)}\r\n\r\n" + body
        self.transport.sendto(text.encode(), self.relay)

    def in_dialog(self, call: ProbeCall, method: str, cseq: int) -> None:
        self.send(
            f"{method} {call.contact} SIP/2.0\n"
            f"{self._common(call, method, cseq, call.to_header)}Content-Length: 0\n\n"
        )

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = parse_message(data)
            call = self.calls.get(message.call_id)
        except ValueError:
            self.unparsed += 1
            return
        if isinstance(message, Request):
            self._answer_request(data, addr)
            if call is not None and message.method == "BYE":
                call.bye_status = -1  # the relay hung up first
                call.bye_done.set()
            return
        if call is None:
            return
        if message.cseq.method == "BYE":
            call.bye_status = message.status
            call.bye_done.set()
        elif message.status >= 200:
            self._final_response(call, message)

    def _final_response(self, call: ProbeCall, response: Response) -> None:
        if response.status >= 300:
            call.status = response.status
            call.answered.set()
            return
        call.to_header = response.headers.get("To") or ""
        call.contact = str(response.contacts[0].uri)
        if call.answered_at is None:
            call.answered_at = time.monotonic()
            sdp = SessionDescription.parse(response.body)
            media = sdp.media[0]
            connection = sdp.connection_for(media)
            call.remote = (connection.address if connection else self.relay[0], media.port)
            call.status = response.status
        self.in_dialog(call, "ACK", 1)  # and again for each retransmitted 200
        call.answered.set()

    def _answer_request(self, data: bytes, addr: tuple[str, int]) -> None:
        head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
        keep = [line for line in head[1:] if line.split(":", 1)[0].strip().lower()
                in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")]  # fmt: skip
        assert self.transport is not None
        reply = "\r\n".join(["SIP/2.0 200 OK", *keep, "Content-Length: 0", "", ""])
        self.transport.sendto(reply.encode(), addr)


async def place(uac: Uac, call: ProbeCall) -> None:
    """Send the INVITE, retransmitting on Timer A, until a final response or give-up."""
    call.invite_sent_at = time.monotonic()
    for wait_s in (*INVITE_RETRANSMIT_S, 0.0):
        uac.invite(call)
        if wait_s == 0.0:
            break
        try:
            await asyncio.wait_for(call.answered.wait(), wait_s)
            return
        except TimeoutError:
            continue
    try:
        await asyncio.wait_for(call.answered.wait(), 8.0)
    except TimeoutError:
        call.status = 408


async def hang_up(uac: Uac, call: ProbeCall) -> None:
    """Send BYE (retransmitted) until its 200, or the relay's own BYE, or 4 s."""
    if call.bye_done.is_set():
        return
    for wait_s in (0.5, 1.0, 2.0):
        uac.in_dialog(call, "BYE", 2)
        try:
            await asyncio.wait_for(call.bye_done.wait(), wait_s)
            return
        except TimeoutError:
            continue


async def stream(calls: list[ProbeCall], duration_s: float) -> list[float]:
    """Send one frame per call on a 20 ms grid for ``duration_s``; return each tick's lateness."""
    loop = asyncio.get_running_loop()
    anchor = loop.time()
    ticks = round(duration_s / FRAME_S)
    lateness: list[float] = []
    tick = 0
    while tick < ticks:
        due = anchor + tick * FRAME_S
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        late = loop.time() - due
        lateness.append(late)
        burst = min(MAX_BURST, 1 + int(late / FRAME_S), ticks - tick)
        for _ in range(burst):
            for call in calls:
                call.send_frame()
        tick += burst
    return lateness


async def run(
    relay: tuple[str, int], *, calls: int, duration_s: float, service: str, id_base: int
) -> dict[str, Any]:
    """Place ``calls`` probe calls, stream for ``duration_s``, hang up; return every timestamp."""
    loop = asyncio.get_running_loop()
    uac_transport, uac = await loop.create_datagram_endpoint(
        lambda: Uac(relay, service), local_addr=(HOST, 0)
    )
    run_tag = f"{random.getrandbits(32):08x}"
    probe_calls: list[ProbeCall] = []
    try:
        for index in range(calls):
            transport, protocol = await loop.create_datagram_endpoint(_Rtp, local_addr=(HOST, 0))
            port = int(transport.get_extra_info("sockname")[1])
            call = ProbeCall(id_base + index, transport, port, f"probe-{run_tag}-{index}",
                             f"probe{run_tag}{index}")  # fmt: skip
            protocol.call = call
            uac.calls[call.call_id] = call
            probe_calls.append(call)
        await asyncio.gather(*(place(uac, call) for call in probe_calls))
        up = [call for call in probe_calls if call.remote is not None]
        lateness = await stream(up, duration_s) if up else []
        await asyncio.sleep(DRAIN_S)
        await asyncio.gather(*(hang_up(uac, call) for call in up))
    finally:
        for call in probe_calls:
            call.rtp.close()
        uac_transport.close()
    return {
        "calls": [
            {
                "probe_id": c.probe_id, "status": c.status, "bye_status": c.bye_status,
                "setup_ms": 1000 * (c.answered_at - c.invite_sent_at) if c.answered_at else None,
                "sent": c.sent, "received": c.received, "other_rtp": c.other_rtp,
                "rtcp": c.rtcp,
            }
            for c in probe_calls
        ],
        "tick_lateness_s": lateness,
        "unparsed_sip": uac.unparsed,
    }  # fmt: skip


# --- the figures -----------------------------------------------------------------------------


def percentiles_ms(values: list[float]) -> dict[str, float]:
    """Return min, p50, p99 and max (nearest rank) of seconds ``values``, in milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]

    return {"min": 1000 * ordered[0], "p50": rank(0.50), "p99": rank(0.99),
            "max": 1000 * ordered[-1], "n": float(len(ordered))}  # fmt: skip


@dataclass
class Latency:
    """Both directions of the probe calls of one step, after the warm-up."""

    calls_up: int
    to_agent_ms: dict[str, float]
    to_caller_ms: dict[str, float]
    to_agent_excess_ms: dict[str, float]
    """Each frame's delay minus its call's median: what load adds, without the call's phase."""
    to_caller_excess_ms: dict[str, float]
    sent: int
    lost_to_agent: int
    lost_to_caller: int
    altered: int
    probe_tick_late_p99_ms: float


def summarize(result: dict[str, Any], agent_rows: list[list[Any]], *, warmup_s: float) -> Latency:
    """Join the probe's and the agents' timestamps per (probe id, counter); skip the warm-up.

    The first ``warmup_s`` of each call are left out: the relay's jitter buffer anchors its
    delay on the first packets. A call's delay each way has a fixed part that depends on the
    phase of its 20 ms grids (the probe's sends against the relay's frame and send ticks, 0-20
    ms, different per call), so next to the plain figures the *excess* subtracts each call's
    own median: what queueing and scheduling under load add.

    Every frame sent after the warm-up is either received by an agent or *lost to the agent*;
    every frame an agent echoed is either back at the probe or *lost to the caller*; a frame
    back with any of its 160 bytes changed is *altered*.
    """
    agent: dict[tuple[int, int], tuple[float, float]] = {}
    for key, received, echoed in agent_rows:
        agent.setdefault(decode_key(key), (received, echoed))
    first = round(warmup_s / FRAME_S)
    to_agent: list[float] = []
    to_caller: list[float] = []
    excess: tuple[list[float], list[float]] = ([], [])
    sent = lost_to_agent = lost_to_caller = altered = up = 0
    for call in result["calls"]:
        if not call["sent"]:
            continue
        up += 1
        marks = len(to_agent), len(to_caller)
        back = {counter: (at, ok) for counter, at, ok in call["received"]}
        for counter, sent_at in enumerate(call["sent"][first:], start=first):
            sent += 1
            at_agent = agent.get((call["probe_id"], counter))
            if at_agent is None:
                lost_to_agent += 1
                continue
            to_agent.append(at_agent[0] - sent_at)
            echo = back.get(counter)
            if echo is None:
                lost_to_caller += 1
                continue
            to_caller.append(echo[0] - at_agent[1])
            altered += 0 if echo[1] else 1
        for values, mark, out in zip((to_agent, to_caller), marks, excess, strict=True):
            mine = sorted(values[mark:])
            out.extend(value - mine[len(mine) // 2] for value in mine)
    late = sorted(result["tick_lateness_s"]) or [0.0]
    return Latency(
        calls_up=up, to_agent_ms=percentiles_ms(to_agent), to_caller_ms=percentiles_ms(to_caller),
        to_agent_excess_ms=percentiles_ms(excess[0]),
        to_caller_excess_ms=percentiles_ms(excess[1]),
        sent=sent, lost_to_agent=lost_to_agent, lost_to_caller=lost_to_caller, altered=altered,
        probe_tick_late_p99_ms=1000 * late[min(len(late) - 1, int(0.99 * len(late)))],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sip-port", type=int, required=True)
    parser.add_argument("--service", default="sales")
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--id-base", type=int, default=0, help="probe id of the first call")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = asyncio.run(
        run((HOST, args.sip_port), calls=args.calls, duration_s=args.duration_s,
            service=args.service, id_base=args.id_base)
    )  # fmt: skip
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
