"""RtpSession on real UDP sockets on 127.0.0.1: a phone-like peer, the agent side, the ports.

The scenarios run on a simulated clock (tests/support/virtual_time.py): the sockets are real, the
loop's time moves only from timer to timer, so what the pacing promises is asserted exactly and
no machine load changes it. How late a real loop sends on a loaded machine is a benchmark's
figure (``python -m bench.rtp_pacing``), not a test's.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from chalicelib.contracts import MediaFraming
from relay.ids import SeededIdSource
from relay.media.codecs.g711 import ulaw_decode, ulaw_encode
from relay.media.dtmf import DtmfSender
from relay.media.rtcp import Goodbye, is_rtcp, parse_compound
from relay.media.rtp import RtpPacket, RtpPacketizer
from relay.sip.sdp.fields import Direction
from relay.sip.sdp.offer_answer import NegotiatedMedia
from relay.transport.rtp_session import RtpPortAllocator, RtpPortsExhausted, RtpSession
from tests.support.ports import (
    PortTaken,
    address_in_use,
    free_port_range,
    free_sip_port,
    with_fresh_ports,
)
from tests.support.virtual_time import run_in_virtual_time
from tests.unit.relay.media.codecs.audio_checks import dominant_frequency_hz

HOST = "127.0.0.1"
ULAW_SILENCE = 0xFF  # G.711 μ-law code of a zero sample (ITU-T G.711 Table 2)


def window(size: int = 20) -> tuple[int, int]:
    """A window of UDP ports below the ephemeral range, free a moment ago (tests/support/ports.py)."""
    return free_port_range(size)


def run(
    scenario: Callable[[], Awaitable[None]], timeout_s: float = 20, wake_late_s: float = 0.0
) -> None:
    """Run ``scenario`` on a simulated clock; fail if it leaves tasks running."""

    async def checked() -> None:
        before = asyncio.all_tasks()
        await scenario()
        leftover = asyncio.all_tasks() - before
        assert leftover == set(), f"tasks left running: {leftover}"

    run_in_virtual_time(checked, timeout_s=timeout_s, wake_late_s=wake_late_s)


def negotiated(peer_port: int, **changes: object) -> NegotiatedMedia:
    values: dict[str, object] = dict(
        codec="PCMU", payload_type=0, clock_rate_hz=8000, channels=1, fmtp=None, ptime_ms=20,
        telephone_event_payload_type=101, remote_address=HOST, remote_port=peer_port,
        direction=Direction.SENDRECV, receive_payload_type=0,
        receive_telephone_event_payload_type=101, held_by_remote=False,
    )  # fmt: skip
    values.update(changes)
    return NegotiatedMedia(**values)  # type: ignore[arg-type]


class Peer(asyncio.DatagramProtocol):
    """The phone: sends RTP from one socket, collects what comes back with arrival times."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((asyncio.get_running_loop().time(), data))

    def rtp(self) -> list[RtpPacket]:
        return [RtpPacket.parse(d) for _, d in self.received if not is_rtcp(d)]


async def peer(port: int = 0) -> tuple[Peer, int]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Peer, local_addr=(HOST, port))
    return protocol, transport.get_extra_info("sockname")[1]


async def send_tone(p: Peer, to_port: int, seconds: float, frequency_hz: float = 440) -> None:
    """Send a μ-law tone in 20 ms packets on a monotonic schedule."""
    loop = asyncio.get_running_loop()
    packetizer = RtpPacketizer(ssrc=0xABCD, sequence_number=100, timestamp=1000)
    start = loop.time()
    for k in range(int(seconds * 50)):
        n = np.arange(k * 160, (k + 1) * 160)
        pcm = (9000 * np.sin(2 * np.pi * frequency_hz * n / 8000)).astype("<i2").tobytes()
        packet = packetizer.packetize(ulaw_encode(pcm), payload_type=0, samples=160)
        assert p.transport is not None
        p.transport.sendto(bytes(packet), (HOST, to_port))
        await asyncio.sleep(max(0.0, start + (k + 1) * 0.02 - loop.time()))


class Listener:
    """The agent bridge's seat: what the session delivers, in queues the test can await."""

    def __init__(self, session: RtpSession) -> None:
        self.frames: asyncio.Queue[bytes] = asyncio.Queue()
        self.marks: asyncio.Queue[str] = asyncio.Queue()
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        session.listen(self)

    def caller_audio(self, frame: bytes) -> None:
        self.frames.put_nowait(frame)

    def mark_played(self, name: str) -> None:
        self.marks.put_nowait(name)

    def dtmf(self, digit: str) -> None:
        self.digits.put_nowait(digit)


async def collect(listener: Listener, count: int) -> list[bytes]:
    return [await asyncio.wait_for(listener.frames.get(), 2) for _ in range(count)]


def test_a_callers_tone_reaches_the_agent_and_we_answer_to_where_it_came_from() -> None:
    async def scenario() -> None:
        allocator = RtpPortAllocator(HOST, *window())
        session = await RtpSession.open(allocator)
        phone, phone_port = await peer()
        # The SDP names a port nobody listens on: behind NAT, only the source is right.
        session.start(negotiated(phone_port + 2), MediaFraming.TWILIO, ids=SeededIdSource(1))
        listener = Listener(session)
        sender = asyncio.create_task(send_tone(phone, session.local_port, 1.0))
        frames = await collect(listener, 45)
        await sender
        pcm = np.frombuffer(ulaw_decode(b"".join(frames[5:])), dtype="<i2")
        assert {len(f) for f in frames} == {160}
        assert dominant_frequency_hz(pcm, 8000) == pytest.approx(440, abs=2)
        ours = phone.rtp()
        assert len(ours) >= 40 and {p.payload_type for p in ours} == {0}
        assert session.media is not None and session.media.destination == (HOST, phone_port)
        await session.close()
        assert phone.transport is not None
        phone.transport.close()

    run(scenario)


def test_agent_audio_is_paced_at_20_ms_and_its_mark_comes_back_after_it() -> None:
    async def scenario() -> None:
        session = await RtpSession.open(RtpPortAllocator(HOST, *window()))
        phone, phone_port = await peer()
        loop = asyncio.get_running_loop()
        started = loop.time()
        session.start(negotiated(phone_port), MediaFraming.PCM16K, ids=SeededIdSource(2))
        listener = Listener(session)
        n = np.arange(16000)  # one second at 16 kHz, sent at once as a bot does
        audio = (8000 * np.sin(2 * np.pi * 1000 * n / 16000)).astype("<i2").tobytes()
        assert session.play(audio) == 0  # nothing dropped: well under the queue's bound
        session.mark("said")
        assert await listener.marks.get() == "said"
        marked_at = loop.time() - started
        await asyncio.sleep(0.1)  # what follows the audio
        await session.close()
        assert phone.transport is not None
        phone.transport.close()

        packets = phone.rtp()
        times = np.array([t for t, d in phone.received if not is_rtcp(d)]) - started
        audible = [i for i, p in enumerate(packets) if set(p.payload) != {ULAW_SILENCE}]
        # Silence from the answer on (docs/relay.md); the audio, which came while the sender
        # waited, at once but 5 ms after the silence before it; the rest of the second, queued
        # ahead, on a 20 ms grid from there: 50 packets of 160 samples (relay/media/pacing.py,
        # rules 1 and 2). The mark comes back with the last of them, and silence follows.
        expected = [0.0] + [0.005 + 0.02 * k for k in range(50)]
        assert audible == list(range(1, 51))
        assert times[:51] == pytest.approx(expected, abs=1e-9)
        assert marked_at == pytest.approx(expected[-1], abs=1e-9)
        assert set(packets[51].payload) == {ULAW_SILENCE}
        assert [(b.sequence_number - a.sequence_number) % 65536 for a, b in pairwise(packets)] == [
            1
        ] * (len(packets) - 1)
        assert {(b.timestamp - a.timestamp) % 2**32 for a, b in pairwise(packets)} == {160}
        pcm = np.frombuffer(ulaw_decode(b"".join(p.payload for p in packets[5:45])), "<i2")
        assert dominant_frequency_hz(pcm, 8000) == pytest.approx(1000, abs=3)

    run(scenario)


def test_the_send_grid_does_not_drift_when_the_loop_wakes_late() -> None:
    wake_late_s = 0.003  # every timer fires 3 ms late, as on a loaded machine

    async def scenario() -> None:
        session = await RtpSession.open(RtpPortAllocator(HOST, *window()))
        phone, phone_port = await peer()
        loop = asyncio.get_running_loop()
        started = loop.time()
        session.start(negotiated(phone_port), MediaFraming.TWILIO, ids=SeededIdSource(3))
        await asyncio.sleep(2.99)
        await session.close()
        assert phone.transport is not None
        phone.transport.close()
        times = np.array([t for t, d in phone.received if not is_rtcp(d)]) - started
        # One packet per 20 ms grid point of the 2.99 s (0 .. 2.98), each as late as the wake-up
        # that sent it and no later: lateness does not add up from one packet to the next.
        assert len(times) == 150
        lateness = times - 0.02 * np.arange(150)
        assert lateness[0] == 0.0  # sent from start(), not from a timer
        assert lateness[1:] == pytest.approx([wake_late_s] * 149, abs=1e-9)

    run(scenario, wake_late_s=wake_late_s)


def test_rfc_4733_and_sip_info_digits_reach_the_listener_and_bye_goes_to_rtcp_port() -> None:
    async def scenario() -> None:
        session = await RtpSession.open(RtpPortAllocator(HOST, *window()))
        phone, phone_port = await peer(window(2)[0])  # an even port with RTCP above it
        rtcp, _ = await peer(phone_port + 1)
        session.start(negotiated(phone_port), MediaFraming.TWILIO, ids=SeededIdSource(4))
        listener = Listener(session)
        packetizer = RtpPacketizer(ssrc=0x77, sequence_number=1, timestamp=0)
        sender = DtmfSender(packetizer, payload_type=101, packet_interval_ms=20)
        assert phone.transport is not None
        for digit in "42#":
            for packet in sender.packets(digit, duration_ms=80):
                phone.transport.sendto(bytes(packet), (HOST, session.local_port))
                await asyncio.sleep(0.01)
        digits = [await asyncio.wait_for(listener.digits.get(), 2) for _ in range(3)]
        assert digits == ["4", "2", "#"]
        session.inject_dtmf("7")  # SIP INFO application/dtmf-relay, parsed by the SIP side
        session.inject_dtmf("x")  # not a digit: ignored
        assert await asyncio.wait_for(listener.digits.get(), 1) == "7"
        await session.close()
        session.inject_dtmf("8")  # after the close: nobody listens any more
        await asyncio.sleep(0.05)
        assert any(isinstance(p, Goodbye) for _, d in rtcp.received for p in parse_compound(d))
        assert listener.digits.empty()
        for p in (phone, rtcp):
            assert p.transport is not None
            p.transport.close()

    run(scenario)


def test_a_silent_caller_ends_in_media_timeout_but_not_while_on_hold() -> None:
    async def scenario() -> None:
        session = await RtpSession.open(RtpPortAllocator(HOST, *window()))
        _, phone_port = await peer()
        held = negotiated(phone_port, direction=Direction.RECVONLY, held_by_remote=True)
        session.start(held, MediaFraming.TWILIO, ids=SeededIdSource(5), inactivity_timeout_s=0.2)
        ended = asyncio.ensure_future(session.wait_ended())
        await asyncio.sleep(0.5)
        assert not ended.done()
        session.update(negotiated(phone_port))
        assert await asyncio.wait_for(ended, 1) == "media_timeout"
        await session.close()

    run(scenario)


def test_a_core_that_raises_ends_that_calls_media_not_the_loop() -> None:
    async def scenario() -> None:
        session = await RtpSession.open(RtpPortAllocator(HOST, *window()))
        phone, phone_port = await peer()
        media = session.start(negotiated(phone_port), MediaFraming.TWILIO, ids=SeededIdSource(7))

        def broken(data: bytes, source: tuple[str, int], now: float) -> None:
            raise RuntimeError("core bug")

        media.receive_rtp = broken  # type: ignore[method-assign]
        assert phone.transport is not None
        phone.transport.sendto(b"\x80" + bytes(171), (HOST, session.local_port))
        assert await asyncio.wait_for(session.wait_ended(), 1) == "internal_error"
        phone.transport.sendto(b"\x80" + bytes(171), (HOST, session.local_port))
        await asyncio.sleep(0.05)
        assert session.ignored_datagrams == 1
        await session.close()
        phone.transport.close()

    run(scenario)


def test_agent_audio_sent_while_the_caller_rings_plays_from_the_answer_on() -> None:
    async def scenario() -> None:
        session = await RtpSession.open(RtpPortAllocator(HOST, *window()))
        assert session.play(bytes(160) * 5) == 0  # the greeting, before the answer: held
        session.mark("greeting")
        await asyncio.sleep(0.1)
        assert session.media is None  # nothing is sent before the answer
        phone, phone_port = await peer()
        session.start(negotiated(phone_port), MediaFraming.TWILIO, ids=SeededIdSource(7))
        listener = Listener(session)  # attached after the start: what was held comes first
        assert await asyncio.wait_for(listener.marks.get(), 2) == "greeting"
        await session.close()
        assert phone.transport is not None
        phone.transport.close()

    run(scenario)


def test_ports_are_even_pairs_skipped_when_taken_and_given_back_on_close() -> None:
    async def scenario() -> None:
        low = window(6)[0]
        squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        squatter.bind((HOST, low + 1))  # another process holds the first pair's RTCP port
        try:
            allocator = RtpPortAllocator(HOST, low, low + 5)  # pairs low, low+2, low+4
            first = await RtpSession.open(allocator)
            second = await RtpSession.open(allocator)
            assert (first.local_port, second.local_port) == (low + 2, low + 4)
            with pytest.raises(RtpPortsExhausted):
                await RtpSession.open(allocator)
            await first.close()
            await first.close()  # idempotent
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind((HOST, low + 2))  # closed for real, not just forgotten
            probe.close()
            third = await RtpSession.open(allocator)
            assert third.local_port == low + 2
            await asyncio.gather(second.close(), third.close())
            assert allocator.available == 3
        finally:
            squatter.close()

    run(scenario)


@pytest.mark.interop
def test_sipp_rtp_stream_is_heard_by_the_agent_packet_for_packet(tmp_path: Path) -> None:
    sipp, sox = shutil.which("sipp"), shutil.which("sox")
    assert sipp and sox, "sipp and sox are needed (scripts/system-deps.sh installs them)"
    subprocess.run(
        [sox, "-n", "-r", "8000", "-c", "1", "-e", "u-law", str(tmp_path / "tone.wav"),
         "synth", "2", "sine", "600"], check=True, timeout=20,
    )  # fmt: skip
    (tmp_path / "uas.xml").write_text(SIPP_UAS)

    async def scenario() -> None:
        session = await RtpSession.open(RtpPortAllocator(HOST, *window()))
        signalling, sip_port = await peer()
        # SIPp binds the ports it is given once it runs: if one was taken since, start again.
        sip_server_port, sipp_rtp_port = free_sip_port(), window(4)[0]
        process = await asyncio.create_subprocess_exec(
            sipp, "-sf", "uas.xml", "-i", HOST, "-mi", HOST, "-p", str(sip_server_port),
            "-mp", str(sipp_rtp_port), "-m", "1", "-nostdin", "-timeout", "15s", cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            session.start(negotiated(sipp_rtp_port), MediaFraming.TWILIO, ids=SeededIdSource(6))
            listener = Listener(session)
            await asyncio.sleep(0.3)
            assert process.returncode is None, "SIPp exited before the call"
            await _invite(signalling, sip_port, sip_server_port, session.local_port)
            frames = await collect(listener, 90)
            pcm = np.frombuffer(ulaw_decode(b"".join(frames[5:])), dtype="<i2")
            assert dominant_frequency_hz(pcm, 8000) == pytest.approx(600, abs=2)
            assert session.media is not None
            await asyncio.sleep(0.5)
            stats, jitter = session.media.stats, session.media.jitter_stats
            assert stats.rtp_received >= 100  # 2 s of tone; every packet accounted for:
            assert stats.rtp_accepted == jitter.received == jitter.played == stats.rtp_received
            assert session.ignored_datagrams == 0
        finally:
            await asyncio.wait_for(process.wait(), 15)
            await session.close()
            assert signalling.transport is not None
            signalling.transport.close()
            errors = b"" if process.stderr is None else await process.stderr.read()
            if process.returncode != 0 and address_in_use(errors.decode(errors="replace")):
                raise PortTaken(errors.decode(errors="replace"))
        assert process.returncode == 0, errors.decode()

    def real_time() -> None:  # SIPp runs in real time: so does this loop
        asyncio.run(asyncio.wait_for(scenario(), 30))

    with_fresh_ports(real_time)


async def _invite(signalling: Peer, sip_port: int, server_port: int, rtp_port: int) -> None:
    """Play the UAC by hand: INVITE with our RTP port, wait for 200, ACK (no SIP stack needed)."""
    assert signalling.transport is not None
    sdp = (
        f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    for method, body in (("INVITE", sdp), ("ACK", "")):
        if method == "ACK":
            async with asyncio.timeout(5):
                while not any(b" 200 OK" in d for _, d in signalling.received):
                    await asyncio.sleep(0.01)
        headers = (
            f"{method} sip:service@{HOST}:{server_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{sip_port};branch=z9hG4bK-{method.lower()}-1\r\n"
            f"From: <sip:test@{HOST}>;tag=t1\r\nTo: <sip:service@{HOST}>"
            + (";tag=sipp" if method == "ACK" else "")
            + f"\r\nCall-ID: rtp-stream-1@{HOST}\r\nCSeq: 1 {method}\r\n"
            f"Contact: <sip:test@{HOST}:{sip_port}>\r\nMax-Forwards: 70\r\n"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n{body}"
        )
        signalling.transport.sendto(headers.encode(), (HOST, server_port))


SIPP_UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="answer, then stream a tone with rtp_stream">
  <recv request="INVITE"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=sipp
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:sipp@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [rtpstream_audio_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]>
  </send>
  <recv request="ACK"/>
  <nop><action><exec rtp_stream="tone.wav,1,0"/></action></nop>
  <pause milliseconds="2600"/>
</scenario>
"""
