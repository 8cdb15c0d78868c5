"""Two SIP legs' media bridged in the relay (relay/bridge/sip_bridge.py), on real UDP on 127.0.0.1.

Two phones, each an RTP peer on its own socket, talk to two ``RtpSession`` s, which the bridge
joins. The phones encode and decode with FFmpeg (PyAV), not with the relay's codecs: a tone sent
by one must come out of the other's decoder at its frequency, whatever the two codecs; with the
same codec the payload bytes must arrive untouched, in the other leg's stream. On the simulated
clock of ``tests/support/virtual_time.py``.
"""

from __future__ import annotations

import asyncio
from itertools import pairwise
from typing import Any

import pytest

from chalicelib.contracts import MediaFraming
from relay.bridge.sip_bridge import INFO_DTMF_DURATION_MS, BridgeUnavailable, bridge
from relay.ids import SeededIdSource
from relay.media.dtmf import TelephoneEvent
from relay.media.rtp import RtpPacket, RtpPacketizer
from relay.transport.rtp_session import RtpPortAllocator, RtpSession
from tests.integration.relay.media.test_rtp_session import HOST, Peer, negotiated, peer, run, window
from tests.support.audio_files import FFMPEG_RATES_HZ, decode_payloads, encode_payloads, tone
from tests.unit.relay.media.codecs.audio_checks import dominant_frequency_hz

CODECS: dict[str, dict[str, Any]] = {
    "PCMU": dict(codec="PCMU", payload_type=0, clock_rate_hz=8000, receive_payload_type=0),
    "G722": dict(codec="G722", payload_type=9, clock_rate_hz=8000, receive_payload_type=9),
    "opus": dict(
        codec="opus", payload_type=111, clock_rate_hz=48000, channels=2, receive_payload_type=111
    ),
}
TONE_A_HZ, TONE_B_HZ = 440.0, 700.0


class Leg:
    """A phone and the relay's session for it."""

    def __init__(self, phone: Peer, phone_port: int, session: RtpSession, codec: str) -> None:
        self.phone, self.phone_port, self.session, self.codec = phone, phone_port, session, codec
        self.packetizer = RtpPacketizer(
            ssrc=0x1000 + phone_port, sequence_number=40000, timestamp=7
        )
        self.info: list[tuple[str, int]] = []
        session.info_dtmf = lambda digit, ms: self.info.append((digit, ms))

    def send(self, packet: RtpPacket) -> None:
        assert self.phone.transport is not None
        self.phone.transport.sendto(bytes(packet), (HOST, self.session.local_port))

    def received(self) -> list[RtpPacket]:
        return self.phone.rtp()

    async def close(self) -> None:
        await self.session.close()
        assert self.phone.transport is not None
        self.phone.transport.close()


async def leg(codec: str, seed: int, **changes: Any) -> Leg:
    session = await RtpSession.open(RtpPortAllocator(HOST, *window()))
    phone, phone_port = await peer()
    media = negotiated(phone_port, **{**CODECS[codec], **changes})
    session.start(media, MediaFraming.TWILIO, ids=SeededIdSource(seed))
    return Leg(phone, phone_port, session, codec)


async def talk(
    legs_and_payloads: list[tuple[Leg, list[bytes]]], *, skip: int | None = None
) -> None:
    """Each phone sends its payloads on a 20 ms schedule (sequence number ``skip`` is lost)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for k in range(max(len(p) for _, p in legs_and_payloads)):
        for the_leg, payloads in legs_and_payloads:
            if k >= len(payloads):
                continue
            increment = CODECS[the_leg.codec]["clock_rate_hz"] // 50
            packet = the_leg.packetizer.packetize(
                payloads[k], payload_type=CODECS[the_leg.codec]["payload_type"], samples=increment
            )
            if k != skip:
                the_leg.send(packet)
        await asyncio.sleep(max(0.0, start + (k + 1) * 0.02 - loop.time()))
    await asyncio.sleep(0.1)  # the last packets' way through


def since_bridged(the_leg: Leg) -> list[RtpPacket]:
    """The leg's packets from the first that carries the marker bit after the bridge began."""
    packets = the_leg.received()
    firsts = [i for i, p in enumerate(packets) if p.marker and i > 0]
    return packets[firsts[0] :] if firsts else []


def frequency_heard(the_leg: Leg, packets: list[RtpPacket]) -> float:
    rate_hz = FFMPEG_RATES_HZ[the_leg.codec]
    pcm = decode_payloads(the_leg.codec, [p.payload for p in packets])
    return dominant_frequency_hz(pcm[rate_hz // 10 :], rate_hz)  # past the codecs' start-up


@pytest.mark.parametrize(
    ("codec_a", "codec_b"),
    [("PCMU", "G722"), ("G722", "PCMU"), ("PCMU", "opus"), ("opus", "PCMU"), ("G722", "opus")],
)
def test_a_tone_survives_transcoding_both_ways(codec_a: str, codec_b: str) -> None:
    async def scenario() -> None:
        a, b = await leg(codec_a, 1), await leg(codec_b, 2)
        await asyncio.sleep(0.1)  # each leg hears the relay's silence first
        joined = bridge(a.session, b.session)
        rate_a, rate_b = FFMPEG_RATES_HZ[codec_a], FFMPEG_RATES_HZ[codec_b]
        await talk(
            [
                (a, encode_payloads(codec_a, tone(TONE_A_HZ, 1.0, rate_a))),
                (b, encode_payloads(codec_b, tone(TONE_B_HZ, 1.0, rate_b))),
            ]
        )
        assert "transcode" in str(joined)
        heard_by_b, heard_by_a = since_bridged(b), since_bridged(a)
        joined.stop()
        await a.close()
        await b.close()
        assert len(heard_by_b) >= 45 and len(heard_by_a) >= 45
        assert frequency_heard(b, heard_by_b) == pytest.approx(TONE_A_HZ, abs=3)
        assert frequency_heard(a, heard_by_a) == pytest.approx(TONE_B_HZ, abs=3)
        for the_leg, packets in ((b, heard_by_b), (a, heard_by_a)):
            clock = CODECS[the_leg.codec]["clock_rate_hz"]
            assert {p.payload_type for p in packets} == {CODECS[the_leg.codec]["payload_type"]}
            assert {(y.timestamp - x.timestamp) % 2**32 for x, y in pairwise(packets)} == {
                clock // 50
            }
            assert {
                (y.sequence_number - x.sequence_number) % 65536 for x, y in pairwise(packets)
            } == {1}

    run(scenario)


def test_same_codec_passes_payloads_through_restamped_in_the_other_legs_stream() -> None:
    async def scenario() -> None:
        a, b = await leg("PCMU", 3), await leg("PCMU", 4)
        await asyncio.sleep(0.1)
        joined = bridge(a.session, b.session)
        payloads = encode_payloads("PCMU", tone(TONE_A_HZ, 0.5, 8000))
        await talk([(a, payloads)], skip=10)  # one packet lost on the way to the relay
        assert str(joined).startswith("A->B PCMU->PCMU passthrough")
        joined.stop()
        received = b.received()
        first = next(i for i, p in enumerate(received) if p.payload == payloads[0])
        before, forwarded = received[first - 1], received[first : first + len(payloads) - 1]
        await a.close()
        await b.close()
        sent = payloads[:10] + payloads[11:]
        assert [p.payload for p in forwarded] == sent  # the bytes, untouched
        assert {p.ssrc for p in forwarded} == {before.ssrc}  # leg B's stream, not A's
        assert forwarded[0].marker and not any(p.marker for p in forwarded[1:])
        # Continues where B's own stream was, and the loss stays visible as a gap of one.
        assert (forwarded[0].sequence_number - before.sequence_number) % 65536 == 1
        assert (forwarded[0].timestamp - before.timestamp) % 2**32 == 160
        steps = [(y.sequence_number - x.sequence_number) % 65536 for x, y in pairwise(forwarded)]
        assert steps == [1] * 9 + [2] + [1] * (len(forwarded) - 11)
        ts_steps = [(y.timestamp - x.timestamp) % 2**32 for x, y in pairwise(forwarded)]
        assert ts_steps == [160] * 9 + [320] + [160] * (len(forwarded) - 11)

    run(scenario)


def events(digit_event: int, clock_hz: int) -> list[bytes]:
    """An RFC 4733 §2.5 key press of 60 ms: updates every 20 ms, then three End packets."""
    step = clock_hz // 50
    updates = [TelephoneEvent(event=digit_event, volume=10, duration=step * k) for k in (1, 2)]
    end = TelephoneEvent(event=digit_event, end=True, volume=10, duration=step * 3)
    return [bytes(e) for e in [*updates, end, end, end]]


def test_a_digit_goes_on_as_a_telephone_event_in_the_other_legs_clock() -> None:
    async def scenario() -> None:
        a, b = await leg("PCMU", 5), await leg("opus", 6)
        joined = bridge(a.session, b.session)
        start_ts = a.packetizer.timestamp
        for payload in events(5, 8000):
            a.send(a.packetizer.stamp(payload, payload_type=101, timestamp=start_ts))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        joined.stop()
        got = [TelephoneEvent.parse(p.payload) for p in b.received() if p.payload_type == 101]
        await a.close()
        await b.close()
        # The durations in B's 48 kHz clock: six times those sent at 8 kHz (RFC 4733 §2.5.1.1).
        assert [(e.event, e.end, e.duration) for e in got] == [
            (5, False, 960), (5, False, 1920), (5, True, 2880), (5, True, 2880), (5, True, 2880)
        ]  # fmt: skip
        assert b.info == []

    run(scenario)


def test_a_digit_toward_a_leg_without_telephone_event_goes_as_sip_info() -> None:
    async def scenario() -> None:
        a = await leg("PCMU", 7)
        b = await leg("PCMU", 8, telephone_event_payload_type=None)
        joined = bridge(a.session, b.session)
        start_ts = a.packetizer.timestamp
        for payload in events(11, 8000):  # '#'
            a.send(a.packetizer.stamp(payload, payload_type=101, timestamp=start_ts))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        joined.stop()
        await a.close()
        await b.close()
        assert b.info == [("#", 60)]  # the key press's 60 ms (RFC 4733 duration 480 at 8 kHz)
        assert not [p for p in b.received() if p.payload_type == 101]

    run(scenario)


def test_a_digit_that_came_as_sip_info_goes_on_as_events_or_as_sip_info() -> None:
    async def scenario() -> None:
        a = await leg("PCMU", 12)
        b = await leg("G722", 13)  # with telephone-event
        c = await leg("PCMU", 14, telephone_event_payload_type=None)
        ab = bridge(a.session, b.session)
        a.session.inject_dtmf("7")  # what the SIP side does with an INFO from phone A
        await asyncio.sleep(0.1)
        ab.stop()
        ac = bridge(a.session, c.session)
        a.session.inject_dtmf("*")
        await asyncio.sleep(0.1)
        ac.stop()
        got = [TelephoneEvent.parse(p.payload) for p in b.received() if p.payload_type == 101]
        for the_leg in (a, b, c):
            await the_leg.close()
        assert {e.event for e in got} == {7} and got[-1].end
        assert got[-1].duration == 8000 * INFO_DTMF_DURATION_MS // 1000  # G.722's clock: 8000
        assert c.info == [("*", INFO_DTMF_DURATION_MS)] and b.info == []

    run(scenario)


def test_stop_gives_the_legs_back_to_their_own_senders() -> None:
    async def scenario() -> None:
        a, b = await leg("PCMU", 9), await leg("G722", 10)
        joined = bridge(a.session, b.session)
        await talk([(a, encode_payloads("PCMU", tone(TONE_A_HZ, 0.2, 8000)))])
        joined.stop()
        joined.stop()  # idempotent
        count = len(b.received())
        await asyncio.sleep(0.2)
        assert len(b.received()) >= count + 9  # B's own ticks again (silence)
        assert b.session.media is not None and not b.session.media.diverted
        await a.close()
        await b.close()

    run(scenario)


def test_a_leg_without_media_cannot_be_bridged_and_the_other_is_left_as_it_was() -> None:
    async def scenario() -> None:
        a = await leg("PCMU", 11)
        unstarted = await RtpSession.open(RtpPortAllocator(HOST, *window()))
        with pytest.raises(BridgeUnavailable, match="leg B has no media"):
            bridge(a.session, unstarted)
        assert a.session.media is not None and not a.session.media.diverted
        await unstarted.close()
        await a.close()

    run(scenario)
