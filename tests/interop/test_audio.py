"""Audio both ways through the relay (issue 4), against baresip and SIPp.

baresip calls in once per codec (PCMU, PCMA, G722, opus; restricted per account) with its
``ausine`` source at 440 Hz; the test agent records what it gets (μ-law) and plays a 1 kHz tone
back from one second after ``start``. Both tones are measured by FFT at the other end: what the
agent heard, and what baresip decoded (its ``sndfile`` dump). The one-way latency is measured
roughly and printed (``-s`` shows it), never asserted (how long it takes is a benchmark's
figure, ``bench/latency_probe.py``; a bound here would fail on a loaded machine by luck):

- agent -> caller: when the agent sent its first tone chunk, against when the RTP carrying the
  tone's onset reached baresip (the arrival of baresip's first RTP packet, plus the onset's
  position in what it decoded: the relay sends a packet every 20 ms from the start);
- caller -> agent: when baresip reported the call established (its source starts then) against
  the arrival of the agent's first frame with sound in it.

SIPp's ``uac_pcap`` plays its shipped A-law capture (236 packets of 30 ms): every packet must be
in the agent's μ-law frames, sample for sample within the companding error.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from relay.media.codecs.g711 import alaw_decode
from tests.interop.agent_server import AgentServer
from tests.interop.baresip import SOURCE_HZ, Baresip
from tests.interop.sipp import run_sipp, scenario
from tests.interop.stack import InteropStack, require
from tests.interop.tone import (
    SILENCE_RMS,
    dominant_frequency,
    pcm16,
    read_wav,
    rms_windows,
    sounding,
    ulaw_samples,
)
from tests.support.pcap import read_udp

pytestmark = pytest.mark.interop

AGENT_TONE_HZ = 1000
AGENT_TONE_AFTER_S = 1.0
CALL_S = 3.5
TOLERANCE_HZ = 10
SIPP_PCAPS = Path("/usr/share/sip-tester")
STREAM_S = 3
# baresip's name of each codec for ``;audio_codecs=`` (G722 by its audio rate, 16 kHz: a
# "G722" that does not match makes baresip offer every codec, with an error in its log).
CODECS = {
    "PCMU": "PCMU/8000/1",
    "PCMA": "PCMA/8000/1",
    "G722": "G722/16000/1",
    "opus": "opus/48000/2",
}


@pytest.fixture(scope="module")
def agents(stack: InteropStack, agent_server: AgentServer) -> dict[str, str]:
    tone = {"tone_hz": AGENT_TONE_HZ, "tone_after_s": AGENT_TONE_AFTER_S}
    return {
        "tone": stack.add_agent(
            "interop-audio", "^interop_audio$", agent_server.url("audio", **tone)
        ),
        "pcap": stack.add_agent(
            "interop-audio-pcap", "^interop_audio_pcap$", agent_server.url("audio_pcap")
        ),
        "stream": stack.add_agent(
            "interop-audio-stream", "^interop_audio_stream$", agent_server.url("audio_stream")
        ),
    }


@pytest.mark.parametrize("codec", list(CODECS))
def test_tones_cross_the_relay_both_ways(
    stack: InteropStack,
    agents: dict[str, str],
    agent_server: AgentServer,
    codec: str,
    tmp_path: Path,
) -> None:
    before = len(agent_server.sessions("audio"))
    with Baresip(tmp_path, account_params=f";audio_codecs={CODECS[codec]}") as phone:
        phone.dial(f"sip:interop_audio@127.0.0.1:{stack.sip_port}")
        first_rtp = phone.wait_event("CALL_RTPESTAB")["received_at"]
        established = phone.wait_event("CALL_ESTABLISHED")["received_at"]
        session = agent_server.wait_sessions("audio", before + 1)[before]
        assert session.closed.wait(CALL_S) is False, "the agent's socket closed mid-call"
        phone.hang_up()
        phone.wait_event("CALL_CLOSED")
    assert f"Set audio encoder: {codec} " in phone.log, f"not {codec}:\n{phone.log}"

    heard_by_agent = ulaw_samples(session.caller_audio)
    caller_tone = sounding(heard_by_agent, 8000)
    assert len(caller_tone) >= 8000 * 2, f"the agent heard {len(caller_tone) / 8000:.2f}s of sound"
    at_agent_hz = dominant_frequency(caller_tone, 8000)
    assert abs(at_agent_hz - SOURCE_HZ) <= TOLERANCE_HZ

    heard_by_phone, rate = read_wav(phone.heard())
    agent_tone = sounding(heard_by_phone, rate)
    assert len(agent_tone) >= rate * 1.5, f"baresip heard {len(agent_tone) / rate:.2f}s of sound"
    at_phone_hz = dominant_frequency(agent_tone, rate)
    assert abs(at_phone_hz - AGENT_TONE_HZ) <= TOLERANCE_HZ

    assert session.tone_started_at is not None
    onset_s = float(np.argmax(rms_windows(heard_by_phone, rate) > SILENCE_RMS)) * 0.020
    to_caller_ms = (first_rtp + onset_s - session.tone_started_at) * 1000
    first_loud = next(at for at, frame in session.media if _loud(frame))
    to_agent_ms = (first_loud - established) * 1000
    print(
        f"\n{codec}: {SOURCE_HZ} Hz heard by the agent as {at_agent_hz:.1f} Hz, "
        f"{AGENT_TONE_HZ} Hz heard by baresip ({rate} Hz) as {at_phone_hz:.1f} Hz; "
        f"agent->caller ~{to_caller_ms:.0f} ms, caller->agent ~{to_agent_ms:.0f} ms"
    )


def _loud(frame: bytes) -> bool:
    samples = ulaw_samples(frame)
    return bool(np.sqrt(np.mean(samples**2)) > SILENCE_RMS)


def test_every_packet_of_sipps_uac_pcap_reaches_the_agent(
    stack: InteropStack, agents: dict[str, str], agent_server: AgentServer, tmp_path: Path
) -> None:
    capture = SIPP_PCAPS / "g711a.pcap"
    assert capture.exists(), "sip-tester's g711a.pcap is missing (Debian package sip-tester)"
    (tmp_path / "pcap").symlink_to(SIPP_PCAPS)  # uac_pcap reads pcap/g711a.pcap from its cwd

    run = run_sipp(
        stack,
        tmp_path,
        service="interop_audio_pcap",
        builtin="uac_pcap",
        timeout_s=30,
    )

    assert run.returncode == 0, run.explain()
    [session] = agent_server.wait_sessions("audio_pcap")
    assert session.closed.wait(5)
    sent = [pcm16(alaw_decode(d.payload[12:])) for d in read_udp(capture)]
    received = ulaw_samples(session.caller_audio)
    missing = _missing_packets(sent, received)
    assert missing == [], (
        f"{len(missing)} of {len(sent)} packets not in the agent's audio: {missing} (replaced "
        "by fill: the capture's 30 ms packets arrive up to 2 ms off their grid, and the "
        "jitter buffer's floor is 0 ms)"
    )
    assert session.dtmf == ["1"], session.dtmf  # uac_pcap ends with dtmf_2833_1.pcap


def _missing_packets(sent: list[np.ndarray], received: np.ndarray) -> list[int]:
    """Indexes of the sent packets whose samples are not where the alignment puts them."""
    stream = np.concatenate(sent)
    offset = _alignment(stream, received)
    missing = []
    position = offset
    for index, packet in enumerate(sent):
        got = received[position : position + len(packet)]
        position += len(packet)
        # A-law -> linear -> μ-law: both companders quantise, so allow their error; a lost
        # packet concealed or replaced by silence is far off.
        if len(got) < len(packet) or np.max(np.abs(got - packet)) > 64 + 0.07 * np.max(
            np.abs(packet)
        ):
            missing.append(index)
    return missing


def _alignment(stream: np.ndarray, received: np.ndarray) -> int:
    """Where in ``received`` the start of ``stream`` lies (cross-correlation of the first 2 s)."""
    probe = stream[:16000]
    correlation = np.correlate(received, probe, mode="valid")
    return int(np.argmax(correlation))


def test_a_sipp_rtp_stream_reaches_the_agent_sample_for_sample(
    stack: InteropStack, agents: dict[str, str], agent_server: AgentServer, tmp_path: Path
) -> None:
    chirp = tmp_path / "chirp.wav"  # a sweep: one alignment only, unlike a steady tone
    subprocess.run(
        ["timeout", "-k", "3", "20", require("sox"), "-n", "-r", "8000", "-c", "1", "-e",
         "u-law", str(chirp), "synth", f"{STREAM_S}", "sine", "300-3000", "vol", "0.5"],
        check=True,
    )  # fmt: skip
    pause_ms = str(int(STREAM_S * 1000) + 500)

    run = run_sipp(
        stack,
        tmp_path,
        service="interop_audio_stream",
        scenario_file=scenario("rtp_stream.xml", tmp_path, pause_ms=pause_ms),
    )

    assert run.returncode == 0, run.explain()
    [session] = agent_server.wait_sessions("audio_stream")
    assert session.closed.wait(5)
    sent = ulaw_samples(_wav_data(chirp))
    received = ulaw_samples(session.caller_audio)
    offset = _alignment(sent, received)
    # μ-law in, μ-law out at the same rate: nothing may change but the sign of zero.
    got = received[offset : offset + len(sent)]
    assert len(got) == len(sent), f"the agent got {len(got)} of {len(sent)} samples"
    differing = np.flatnonzero(got != sent)
    packets = sorted({int(index) // 160 for index in differing})
    assert packets == [], f"{len(packets)} of {len(sent) // 160} packets altered: {packets[:20]}"


def _wav_data(path: Path) -> bytes:
    """The data chunk of a RIFF/WAVE file (Python's wave module reads PCM only, not μ-law)."""
    data = path.read_bytes()
    position = 12
    while position + 8 <= len(data):
        name, size = (
            data[position : position + 4],
            int.from_bytes(data[position + 4 : position + 8], "little"),
        )
        if name == b"data":
            return data[position + 8 : position + 8 + size]
        position += 8 + size + size % 2
    raise ValueError(f"{path.name}: no data chunk")
