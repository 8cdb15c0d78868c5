"""Hold music toward a leg (RtpSession.start_hold_music) on real UDP sockets on 127.0.0.1.

What the phone receives is decoded by FFmpeg (PyAV), not by the relay's codecs: the music's tone
must come out of the leg's codec, on the sender's 20 ms grid, with the agent's queued audio
before it and the agent's audio back after it. On the simulated clock of
``tests/support/virtual_time.py``, so the grid is asserted exactly.
"""

from __future__ import annotations

import asyncio
from itertools import pairwise

import numpy as np
import pytest

from chalicelib.contracts import MediaFraming
from relay.ids import SeededIdSource
from relay.media.codecs.g711 import ulaw_encode
from relay.media.hold_music import decode_hold_music
from relay.media.rtp import RtpPacket
from relay.transport.rtp_session import RtpPortAllocator, RtpSession
from tests.integration.relay.media.test_rtp_session import (
    HOST,
    ULAW_SILENCE,
    Listener,
    negotiated,
    peer,
    run,
    window,
)
from tests.support.audio_files import decode_payloads, wav_tone
from tests.unit.relay.media.codecs.audio_checks import dominant_frequency_hz

MUSIC_HZ = 600.0
AGENT_HZ = 1000.0
CODECS = {
    "PCMU": dict(codec="PCMU", payload_type=0, clock_rate_hz=8000, receive_payload_type=0),
    "G722": dict(codec="G722", payload_type=9, clock_rate_hz=8000, receive_payload_type=9),
    "opus": dict(
        codec="opus", payload_type=111, clock_rate_hz=48000, channels=2, receive_payload_type=111
    ),
}
RATES_HZ = {"PCMU": 8000, "G722": 16000, "opus": 48000}


def music() -> object:
    return decode_hold_music(wav_tone(frequency_hz=MUSIC_HZ, seconds=1.5), source="test")


def agent_tone(seconds: float) -> bytes:
    """The agent's audio in the Twilio framing: μ-law 8 kHz."""
    n = np.arange(int(8000 * seconds))
    return ulaw_encode((8000 * np.sin(2 * np.pi * AGENT_HZ * n / 8000)).astype("<i2").tobytes())


def frequency(codec: str, packets: list[RtpPacket]) -> float:
    pcm = decode_payloads(codec, [p.payload for p in packets])
    rate_hz = RATES_HZ[codec]
    return dominant_frequency_hz(pcm[rate_hz // 50 :], rate_hz)  # past the first frame


@pytest.mark.parametrize("codec", list(CODECS))
def test_music_takes_the_agents_place_after_its_queued_audio_and_gives_it_back(codec: str) -> None:
    async def scenario() -> None:
        session = await RtpSession.open(RtpPortAllocator(HOST, *window()))
        phone, phone_port = await peer()
        session.start(
            negotiated(phone_port, **CODECS[codec]), MediaFraming.TWILIO, ids=SeededIdSource(7)
        )
        listener = Listener(session)
        session.play(agent_tone(0.2))  # "please hold": queued before the music
        session.mark("please-hold")
        assert session.start_hold_music(music())  # type: ignore[arg-type]
        assert session.play(agent_tone(0.2)) == 0  # during the music: dropped, not queued
        session.mark("during")
        assert await asyncio.wait_for(listener.marks.get(), 1) == "during"  # at once, cleared
        assert await asyncio.wait_for(listener.marks.get(), 1) == "please-hold"
        await asyncio.sleep(2.0)
        session.stop_hold_music()
        session.play(agent_tone(0.2))
        await asyncio.sleep(0.4)
        media = session.media
        assert media is not None
        stats = media.stats
        await session.close()
        assert phone.transport is not None
        phone.transport.close()

        assert stats.agent_bytes_dropped_on_music == 1600
        assert stats.music_sent >= 95  # 2 s of it, less the queued 0.2 s
        packets = phone.rtp()
        music_start = 11  # one silent tick at the start, then the agent's 10 packets
        music_end = music_start + stats.music_sent
        assert frequency(codec, packets[1:music_start]) == pytest.approx(AGENT_HZ, abs=5)
        assert frequency(codec, packets[music_start:music_end]) == pytest.approx(MUSIC_HZ, abs=3)
        assert frequency(codec, packets[music_end : music_end + 10]) == pytest.approx(
            AGENT_HZ, abs=5
        )
        # One stream throughout: consecutive sequence numbers, one frame of timestamp apart.
        increment = CODECS[codec]["clock_rate_hz"] // 50  # type: ignore[operator]
        assert {(b.sequence_number - a.sequence_number) % 65536 for a, b in pairwise(packets)} == {
            1
        }
        assert {(b.timestamp - a.timestamp) % 2**32 for a, b in pairwise(packets)} == {increment}
        assert len({p.ssrc for p in packets}) == 1

    run(scenario)


def test_music_packets_leave_on_the_20_ms_grid() -> None:
    async def scenario() -> None:
        session = await RtpSession.open(RtpPortAllocator(HOST, *window()))
        phone, phone_port = await peer()
        loop = asyncio.get_running_loop()
        started = loop.time()
        session.start(negotiated(phone_port), MediaFraming.TWILIO, ids=SeededIdSource(8))
        session.start_hold_music(music())  # type: ignore[arg-type]
        await asyncio.sleep(0.99)
        await session.close()
        assert phone.transport is not None
        phone.transport.close()
        times = [t - started for t, _ in phone.received]  # RTCP goes to the port above
        assert len(phone.rtp()) == len(times)
        assert times == pytest.approx([0.02 * k for k in range(50)], abs=1e-9)

    run(scenario)


def test_no_music_is_silence_in_the_agents_place() -> None:
    async def scenario() -> None:
        session = await RtpSession.open(RtpPortAllocator(HOST, *window()))
        phone, phone_port = await peer()
        session.start(negotiated(phone_port), MediaFraming.TWILIO, ids=SeededIdSource(9))
        session.start_hold_music(None)
        session.play(agent_tone(0.2))  # the agent is paused all the same
        await asyncio.sleep(0.5)
        await session.close()
        assert phone.transport is not None
        phone.transport.close()
        payloads = {bytes(set(p.payload)) for p in phone.rtp()}
        assert payloads == {bytes([ULAW_SILENCE])}

    run(scenario)


def test_hold_music_before_the_media_starts_is_refused() -> None:
    async def scenario() -> None:
        session = await RtpSession.open(RtpPortAllocator(HOST, *window()))
        assert session.start_hold_music(None) is False
        await session.close()

    run(scenario)
