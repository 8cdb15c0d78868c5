"""CallMedia: caller RTP -> agent frames, agent audio -> paced RTP, marks, DTMF, hold, bad input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chalicelib.contracts import MediaFraming
from relay.ids import SeededIdSource
from relay.media.call_media import CallMedia, MarkPlayed, MediaEvent, MediaTimedOut
from relay.media.codecs import get_decoder, get_encoder, get_spec
from relay.media.codecs.g711 import alaw_decode, ulaw_decode, ulaw_encode
from relay.media.dtmf import DtmfReceived, DtmfSender
from relay.media.pacing import FLOW_JITTER_S
from relay.media.playout import TIMER_SLACK_S
from relay.media.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    compact_ntp,
    is_rtcp,
    ntp_timestamp,
    parse_compound,
)
from relay.media.rtp import RtpPacket, RtpPacketizer
from relay.media.source import SourceVerdict
from relay.sip.sdp.fields import Direction
from relay.sip.sdp.offer_answer import NegotiatedMedia
from tests.support.pcap import read_udp
from tests.unit.relay.media.codecs.audio_checks import dominant_frequency_hz

VECTORS = Path(__file__).resolve().parents[4] / "tests" / "vectors" / "rtp"
CALLER = ("198.51.100.7", 40000)
SDP_PORT = 40000
TWILIO, PCM16K, PCM48K = MediaFraming.TWILIO, MediaFraming.PCM16K, MediaFraming.PCM48K
PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8, "G722": 9, "opus": 111, "AMR-WB": 98}
EVENT_PT = 101


def negotiated(codec: str = "PCMU", **changes: object) -> NegotiatedMedia:
    spec = get_spec(codec)
    pt = PAYLOAD_TYPES[codec]
    base = NegotiatedMedia(
        codec=spec.name, payload_type=pt, clock_rate_hz=spec.clock_rate_hz,
        channels=spec.channels, fmtp=None, ptime_ms=20, telephone_event_payload_type=EVENT_PT,
        remote_address=CALLER[0], remote_port=SDP_PORT, direction=Direction.SENDRECV,
        receive_payload_type=pt, receive_telephone_event_payload_type=EVENT_PT,
        held_by_remote=False,
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def make(codec: str = "PCMU", framing: MediaFraming = TWILIO, **options: object) -> CallMedia:
    return CallMedia(
        negotiated(codec),
        framing,
        ids=SeededIdSource(7),
        now=0.0,
        **options,  # type: ignore[arg-type]
    )


def tone(rate_hz: int, frequency_hz: float, start: int, count: int, amplitude: int = 8000) -> bytes:
    n = np.arange(start, start + count)
    return (amplitude * np.sin(2 * np.pi * frequency_hz * n / rate_hz)).astype("<i2").tobytes()


class Caller:
    """A phone sending a tone in packets of ``codec``, 20 ms each unless ``ptime_ms`` says."""

    def __init__(
        self,
        codec: str = "PCMU",
        frequency_hz: float = 1000,
        *,
        ssrc: int = 0x5EED,
        ptime_ms: int = 20,
    ):
        self.ptime_ms = ptime_ms
        self.spec = get_spec(codec)
        self.pt = PAYLOAD_TYPES[codec]
        self.frequency_hz = frequency_hz
        self.encoder = get_encoder(codec)
        # Sequence number and timestamp start near their wrap, on purpose.
        self.packetizer = RtpPacketizer(ssrc=ssrc, sequence_number=65530, timestamp=2**32 - 800)
        self.index = 0

    def next(self, *, marker: bool = False) -> bytes:
        n = self.spec.samples_per_frame * self.ptime_ms // 20
        pcm = tone(self.spec.sample_rate_hz, self.frequency_hz, self.index * n, n)
        self.index += 1
        payload = self.encoder.encode(pcm)
        samples = self.spec.timestamp_increment * self.ptime_ms // 20
        packet = self.packetizer.packetize(
            payload, payload_type=self.pt, samples=samples, marker=marker
        )
        return bytes(packet)


@dataclass
class Run:
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    sent: list[tuple[float, bytes, tuple[str, int]]] = field(default_factory=list)
    events: list[MediaEvent] = field(default_factory=list)

    def rtp(self, until: float = float("inf")) -> list[RtpPacket]:
        return [RtpPacket.parse(d) for t, d, _ in self.sent if not is_rtcp(d) and t <= until]


def drive(
    media: CallMedia,
    until: float,
    arrivals: Sequence[tuple[float, bytes]] = (),
    run: Run | None = None,
    source: tuple[str, int] = CALLER,
) -> Run:
    """Do what the asyncio adapter does: datagrams at their times, timers when they fire."""
    run = run or Run()
    pending = sorted(arrivals, key=lambda a: a[0])
    index = 0
    while True:
        timer = media.get_timer()
        arrival = pending[index][0] if index < len(pending) else None
        now = min(t for t in (timer, arrival) if t is not None)
        if now > until:
            return run
        while index < len(pending) and pending[index][0] <= now:
            media.receive_rtp(pending[index][1], source, now)
            index += 1
        service(media, now, run)


def service(media: CallMedia, now: float, run: Run) -> None:
    """Do what the adapter does after a datagram, a timer, or the agent's play/mark/clear."""
    media.handle_timer(now)
    run.sent += [(now, data, to) for data, to in media.rtp_to_send(now)]
    while (frame := media.next_agent_frame(now)) is not None:
        run.frames.append((now, frame))
    while (event := media.next_event()) is not None:
        run.events.append(event)


def play_chunks(media: CallMedia, chunks: Sequence[tuple[float, bytes]], until: float) -> Run:
    """Drive ``media`` with the agent's ``chunks`` played at their times, each then serviced."""
    run = Run()
    for at, audio in chunks:
        drive(media, at - 1e-9, run=run)
        media.play(audio, at)
        service(media, at, run)
    return drive(media, until, run=run)


def caller_stream(caller: Caller, count: int, *, start: float = 0.0) -> list[tuple[float, bytes]]:
    return [(start + i * 0.02, caller.next()) for i in range(count)]


def agent_pcm(framing: MediaFraming, frames: list[tuple[float, bytes]]) -> tuple[np.ndarray, int]:
    audio = b"".join(f for _, f in frames)
    if framing is TWILIO:
        return np.frombuffer(ulaw_decode(audio), dtype="<i2"), 8000
    return np.frombuffer(audio, dtype="<i2"), 16000 if framing is PCM16K else 48000


# --- caller -> agent ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "framing"),
    [
        ("PCMU", TWILIO), ("PCMA", TWILIO), ("G722", TWILIO), ("opus", TWILIO),
        ("PCMU", PCM16K), ("PCMA", PCM48K), ("G722", PCM16K), ("opus", PCM48K),
        ("AMR-WB", PCM16K),
    ],
)  # fmt: skip
def test_a_caller_tone_reaches_the_agent_at_its_frequency_in_20_ms_frames(
    codec: str, framing: MediaFraming
) -> None:
    media = make(codec, framing)
    run = drive(media, 1.0, caller_stream(Caller(codec, 700), 50))
    pcm, rate_hz = agent_pcm(framing, run.frames)
    assert {len(f) for _, f in run.frames} == {rate_hz // 50 * (1 if framing is TWILIO else 2)}
    assert np.allclose(np.diff([t for t, _ in run.frames]), 0.02)
    assert len(run.frames) == 50  # no jitter: each packet leaves as a frame when it arrives
    assert dominant_frequency_hz(pcm[rate_hz // 10 :], rate_hz) == pytest.approx(700, abs=2)
    assert media.feed_stats.filled_frames == media.feed_stats.gaps_concealed == 0


def test_pcmu_to_a_twilio_agent_passes_the_bytes_through_untouched() -> None:
    caller = Caller("PCMU")
    arrivals = caller_stream(caller, 10)
    run = drive(make(), 0.3, arrivals)
    assert [f for _, f in run.frames][:10] == [RtpPacket.parse(d).payload for _, d in arrivals]
    assert str(make()) == (
        "rtp(PCMU/0) -> jitter(0ms) -> passthrough -> twilio | twilio -> passthrough -> rtp(PCMU/0)"
    )


def test_each_path_names_its_chain() -> None:
    assert str(make("PCMU", PCM16K)) == (
        "rtp(PCMU/0) -> jitter(0ms) -> PCMU decode -> resample 8k->16k -> pcm16k"
        " | pcm16k -> resample 16k->8k -> PCMU encode -> rtp(PCMU/0)"
    )
    assert str(make("G722", TWILIO)) == (
        "rtp(G722/9) -> jitter(0ms) -> G722 decode -> resample 16k->8k -> PCMU encode -> twilio"
        " | twilio -> PCMU decode -> resample 8k->16k -> G722 encode -> rtp(G722/9)"
    )
    assert str(make("PCMA")).startswith("rtp(PCMA/8) -> jitter(0ms) -> PCMA->PCMU -> twilio")


@pytest.mark.parametrize("floor_ms", [0, 20])
def test_in_order_audio_reaches_the_agent_on_arrival_whatever_the_jitter_floor(
    floor_ms: int,
) -> None:
    media = make(jitter_min_delay_ms=floor_ms)  # the floor only waits for missing packets
    run = drive(media, 0.1, [(0.013, Caller().next())])
    assert [t for t, _ in run.frames][:1] == [pytest.approx(0.013)]


def test_sipp_30_ms_pcma_packets_become_even_20_ms_agent_frames_and_all_are_played() -> None:
    datagrams = read_udp(VECTORS / "g711a.pcap")
    t0 = datagrams[0].time_s
    media = make("PCMA")
    run = drive(media, 7.2, [(d.time_s - t0, d.payload) for d in datagrams])
    times = np.array([t for t, _ in run.frames])
    assert media.jitter_stats.played == len(datagrams) == 236
    assert media.source_counts == {SourceVerdict.LATCHED: 1}
    steady = np.diff(times[5:-5])
    assert steady.max() < 0.0401 and abs(steady.mean() - 0.02) < 1e-3
    assert len(run.frames) >= 236 * 30 // 20 - 2


def test_lost_packets_are_concealed_and_frames_keep_coming_every_20_ms() -> None:
    arrivals = caller_stream(Caller("PCMU", 500), 100)
    kept = [a for i, a in enumerate(arrivals) if i % 10 not in (3, 4)]
    media = make("PCMU", PCM16K)
    run = drive(media, 2.0, kept)
    assert media.feed_stats.gaps_concealed + media.feed_stats.filled_frames >= 20
    assert np.allclose(np.diff([t for t, _ in run.frames]), 0.02, atol=0.021)
    assert len(run.frames) == pytest.approx(99, abs=1)


def test_opus_rebuilds_a_lost_packet_from_the_fec_in_the_next_one() -> None:
    arrivals = caller_stream(Caller("opus", 400), 60)
    kept = [a for i, a in enumerate(arrivals) if i != 30]
    media = make("opus", PCM48K, jitter_min_delay_ms=60)
    run = drive(media, 1.3, kept)
    assert media.feed_stats.gaps_concealed == 1
    pcm, rate = agent_pcm(PCM48K, run.frames)
    assert dominant_frequency_hz(pcm[rate // 4 :], rate) == pytest.approx(400, abs=2)


def test_a_silent_caller_gets_concealment_then_silence_on_the_20_ms_grid() -> None:
    run = drive(make(), 1.0, caller_stream(Caller(), 10))
    times = np.array([t for t, _ in run.frames])
    assert np.allclose(np.diff(times[:10]), 0.02) and times[10] - times[9] == pytest.approx(0.03)
    assert np.allclose(np.diff(times[10:]), 0.02)
    assert len(times) == 50  # grid points 0 .. 0.98, the fills 10 ms behind theirs
    assert run.frames[-1][1] == b"\xff" * 160  # μ-law silence once the fade is over


# --- agent -> caller ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "framing"),
    [("PCMU", TWILIO), ("PCMA", TWILIO), ("G722", PCM16K), ("opus", PCM48K), ("PCMU", PCM48K)],
)
def test_agent_audio_goes_out_paced_with_the_negotiated_payload_type(
    codec: str, framing: MediaFraming
) -> None:
    media = make(codec, framing)
    rate_hz = {TWILIO: 8000, PCM16K: 16000, PCM48K: 48000}[framing]
    audio = tone(rate_hz, 600, 0, rate_hz // 2)
    media.play(ulaw_encode(audio) if framing is TWILIO else audio, 0.0)
    run = drive(media, 0.799)
    packets = run.rtp()
    spec = get_spec(codec)
    assert len(packets) == 40 and {p.payload_type for p in packets} == {PAYLOAD_TYPES[codec]}
    assert [p.marker for p in packets[:2]] == [True, False]
    assert {(b.sequence_number - a.sequence_number) % 65536 for a, b in pairwise(packets)} == {1}
    assert {(b.timestamp - a.timestamp) % 2**32 for a, b in pairwise(packets)} == {
        spec.timestamp_increment
    }
    times = np.array([t for t, _, _ in run.sent])
    assert np.allclose(np.diff(times[:25]), 0.02)
    # After the last frame the sender waits for more (a real-time agent's next chunk), then
    # sends silence on the grid it kept.
    assert times[25] == pytest.approx(0.5 + FLOW_JITTER_S)
    assert np.allclose(times[26:], 0.52 + 0.02 * np.arange(14))
    decoder = get_decoder(codec)
    pcm = np.frombuffer(b"".join(decoder.decode(p.payload) for p in packets[:25]), dtype="<i2")
    rate = spec.sample_rate_hz
    assert dominant_frequency_hz(pcm[rate // 20 :], rate) == pytest.approx(600, abs=3)
    assert media.stats.silence_sent == 15 and {a for _, _, a in run.sent} == {CALLER}


def test_pcma_to_twilio_transcodes_by_table_both_ways() -> None:
    media = make("PCMA")
    agent = ulaw_encode(tone(8000, 800, 0, 160))
    media.play(agent, 0.0)
    (packet,) = make_run(media, 0.0).rtp()
    assert (
        np.abs(
            np.frombuffer(alaw_decode(packet.payload), "<i2").astype(int)
            - np.frombuffer(ulaw_decode(agent), "<i2")
        ).max()
        < 300
    )


def make_run(media: CallMedia, until: float) -> Run:
    return drive(media, until)


def test_an_idle_agent_means_continuous_silence_not_nothing() -> None:
    run = drive(make(), 1.0 + 1e-9)
    packets = run.rtp()
    assert len(packets) == 51 and all(p.payload == b"\xff" * 160 for p in packets)


def test_a_mark_is_reported_once_the_audio_before_it_has_been_sent() -> None:
    media = make()
    media.play(b"\x10" * 400, 0.0)  # 50 ms: two frames and a half
    media.mark("greeting")
    media.play(b"\x20" * 160, 0.0)
    run = drive(media, 0.039)
    assert run.events == []
    run = drive(media, 0.041, run=run)
    assert run.events == [MarkPlayed("greeting")]
    third = run.rtp()[2].payload
    assert third == b"\x10" * 80 + b"\x20" * 80  # no silence inserted: more audio was queued


def test_a_mark_with_nothing_queued_is_played_at_once() -> None:
    media = make()
    media.mark("empty")
    assert media.next_event() == MarkPlayed("empty")


def test_clear_flushes_the_queue_at_once_and_reports_pending_marks_as_cleared() -> None:
    media = make()
    media.play(b"\x10" * 8000, 0.0)  # one second
    media.mark("a")
    media.play(b"\x10" * 800, 0.0)
    media.mark("b")
    run = drive(media, 0.1)
    media.clear()
    run = drive(media, 0.3, run=run)
    assert run.events == [MarkPlayed("a", cleared=True), MarkPlayed("b", cleared=True)]
    assert all(p.payload == b"\xff" * 160 for p in run.rtp()[6:])


def test_an_agent_sending_far_more_than_real_time_is_capped_and_counted() -> None:
    media = make(max_playout_ms=2000)
    for _ in range(600):  # 10 minutes in 100 ms chunks, all at once
        media.play(b"\x10" * 800, 0.0)
    assert media.stats.playout_dropped_bytes == 600 * 800 - 16000
    for index in range(1000):
        media.mark(f"m{index}")
    assert media.stats.marks_dropped == 1000 - 256


def test_a_partial_frame_waits_for_more_audio_then_is_padded() -> None:
    media = make()
    media.play(b"\x10" * 100, 0.0)
    run = drive(media, 0.0)
    media.play(b"\x10" * 100, 0.01)
    run = drive(media, 0.1, run=run)
    payloads = [p.payload for p in run.rtp()]
    assert payloads[:2] == [b"\xff" * 160, b"\x10" * 160]
    assert payloads[4] == b"\x10" * 40 + b"\xff" * 120


# --- DTMF --------------------------------------------------------------------------------------


def test_rfc_4733_digits_between_audio_reach_the_agent_once_each() -> None:
    caller = Caller()
    sender = DtmfSender(caller.packetizer, payload_type=EVENT_PT)
    arrivals, now = [], 0.0
    for digit in "1*#":
        for _ in range(5):
            arrivals.append((now, caller.next()))
            now += 0.02
        for packet in sender.packets(digit, duration_ms=100):
            arrivals.append((now, bytes(packet)))
            now += 0.05
    run = drive(make(), now + 1, arrivals)
    digits = [e.digit for e in run.events if isinstance(e, DtmfReceived)]
    assert digits == ["1", "*", "#"]


@pytest.mark.parametrize("name", ["1", "9", "pound", "star"])
def test_sipps_dtmf_captures_give_one_digit_each(name: str) -> None:
    datagrams = read_udp(VECTORS / f"dtmf_2833_{name}.pcap")
    t0 = datagrams[0].time_s
    run = drive(make(), 1.0, [(d.time_s - t0, d.payload) for d in datagrams])
    digits = [e.digit for e in run.events if isinstance(e, DtmfReceived)]
    assert digits == [{"pound": "#", "star": "*"}.get(name, name)]


# --- bad input ---------------------------------------------------------------------------------


def test_short_malformed_unknown_and_empty_packets_are_dropped_and_counted() -> None:
    media = make()
    good = RtpPacket.parse(Caller().next())
    for data in (
        b"\x80\x00",
        b"\x40" + bytes(15),  # version 1
        bytes(replace(good, payload_type=13)),  # comfort noise, not negotiated
        bytes(replace(good, payload=b"")),
    ):
        media.receive_rtp(data, CALLER, 0.0)
    s = media.stats
    assert (s.short, s.malformed, s.unknown_payload_type, s.empty_payload) == (1, 1, 1, 1)
    assert s.rtp_accepted == 0 and media.destination == CALLER


def test_a_foreign_ssrc_is_dropped_until_the_latched_one_goes_quiet_or_a_marker_comes() -> None:
    media = make()
    ours, theirs = Caller(ssrc=1), Caller(ssrc=2)
    media.receive_rtp(ours.next(), CALLER, 0.0)
    media.receive_rtp(theirs.next(), CALLER, 0.02)
    assert media.source_counts[SourceVerdict.FOREIGN_SSRC] == 1
    media.receive_rtp(theirs.next(marker=True), CALLER, 0.04)
    assert media.source_counts[SourceVerdict.NEW_SSRC] == 1
    media.receive_rtp(ours.next(), CALLER, 0.06)
    assert media.source_counts[SourceVerdict.FOREIGN_SSRC] == 2
    media.receive_rtp(ours.next(), CALLER, 0.6)  # ssrc 2 quiet for 0.56 s
    assert media.source_counts[SourceVerdict.NEW_SSRC] == 2


def test_symmetric_rtp_sends_to_where_the_callers_packets_come_from() -> None:
    media = make()
    assert media.destination == CALLER  # the SDP address until the caller speaks
    nat = ("203.0.113.9", 61000)
    run = drive(media, 0.1, [(0.0, Caller().next())], source=nat)
    assert media.destination == nat and {a for _, _, a in run.sent[1:]} == {nat}
    intruder = ("192.0.2.66", 5004)
    media.receive_rtp(Caller().next(marker=True), intruder, 0.12)
    assert media.source_counts[SourceVerdict.FOREIGN_ADDRESS] == 1 and media.destination == nat
    media.receive_rtp(Caller().next(), intruder, 0.7)  # the latched source was quiet: rebinding
    assert media.destination == intruder


def test_a_reinvite_that_moves_the_media_reopens_the_latch() -> None:
    media = make()
    media.receive_rtp(Caller().next(), CALLER, 0.0)
    media.update(negotiated(remote_address="192.0.2.10", remote_port=50000), 0.05)
    assert media.destination == ("192.0.2.10", 50000)
    media.receive_rtp(Caller(ssrc=9).next(), ("192.0.2.10", 50002), 0.06)
    assert media.destination == ("192.0.2.10", 50002)


def test_a_flood_is_cut_before_parsing_and_memory_stays_bounded() -> None:
    media = make()
    caller = Caller()
    run = drive(media, 1.0 - 1e-9)
    for _ in range(20_000):
        media.receive_rtp(caller.next(), CALLER, 1.0)
    assert media.stats.rate_limited == 20_000 - 50
    assert media.jitter_stats.received == 50
    run = drive(media, 1.5, run=run)
    times = [t for t, _ in run.frames]
    # The backlog reaches the agent at 2x real time (in order, on arrival), not at once.
    assert times[0] == 1.0 and len(times) == 50 and times[-1] == pytest.approx(1.49)
    assert np.diff(times).min() >= 0.01 - 2 * TIMER_SLACK_S


# --- hold, inactivity, RTCP --------------------------------------------------------------------


def test_hold_stops_sending_and_the_inactivity_timer_and_resume_restarts_both() -> None:
    media = make(inactivity_timeout_s=2.0)
    run = drive(media, 0.5, caller_stream(Caller(), 20))
    media.update(negotiated(direction=Direction.RECVONLY, held_by_remote=True), 0.5)
    sent_before = len(run.rtp())
    run = drive(media, 10.0, run=run)
    assert len(run.rtp()) == sent_before and MediaTimedOut not in map(type, run.events)
    media.update(negotiated(), 10.0)
    run = drive(media, 11.0, run=run)
    resumed = run.rtp()[sent_before:]
    assert resumed[0].marker and len(resumed) == 50
    times = [t for t, d, _ in run.sent if not is_rtcp(d)]
    ticks = round((times[sent_before] - times[sent_before - 1]) / 0.02)
    step = (resumed[0].timestamp - run.rtp()[sent_before - 1].timestamp) % 2**32
    assert step == 160 * ticks and ticks > 470  # the timestamp kept time through the hold
    run = drive(media, 12.1, run=run)
    timeouts = [e for e in run.events if isinstance(e, MediaTimedOut)]
    assert len(timeouts) == 1 and timeouts[0].idle_s == pytest.approx(2.0)


def test_no_caller_rtp_for_the_timeout_ends_in_one_media_timed_out() -> None:
    media = make(inactivity_timeout_s=5.0)
    run = drive(media, 30.0, caller_stream(Caller(), 50))
    timeouts = [e for e in run.events if isinstance(e, MediaTimedOut)]
    assert len(timeouts) == 1 and timeouts[0].idle_s == pytest.approx(5.0)


def test_rtcp_reports_go_to_the_next_port_and_read_the_callers_reports() -> None:
    media = make(wall_clock_offset_s=1_800_000_000.0)
    run = drive(media, 8.0, caller_stream(Caller(), 300))
    rtcp = [(t, d, a) for t, d, a in run.sent if a == (CALLER[0], CALLER[1] + 1)]
    assert 1 <= len(rtcp) <= 3 and 2.5 <= rtcp[0][0] <= 7.5
    report, sdes = parse_compound(rtcp[-1][1])
    assert isinstance(report, SenderReport) and report.packet_count == len(run.rtp(rtcp[-1][0]))
    assert report.reports[0].ssrc == 0x5EED and report.reports[0].packets_lost == 0
    ntp_sent = report.ntp_timestamp
    caller_rr = ReceiverReport(ssrc=0x5EED, reports=(ReportBlock(
        ssrc=report.ssrc, fraction_lost=0, packets_lost=0, highest_sequence=0, jitter=0,
        last_sr=compact_ntp(ntp_sent), delay_since_last_sr=65536 // 10,
    ),))  # fmt: skip
    arrival = rtcp[-1][0] + 0.13
    media.receive_rtp(bytes(caller_rr), (CALLER[0], CALLER[1] + 1), arrival)  # muxed: demuxed
    assert media.reporter.round_trip_time_ms == pytest.approx(30, abs=0.1)
    assert ntp_timestamp(1_800_000_000.0 + rtcp[-1][0]) == ntp_sent


def test_rtcp_mux_sends_reports_to_the_rtp_port() -> None:
    run = drive(make(rtcp_mux=True), 8.0)
    assert {a for _, _, a in run.sent} == {CALLER}
    assert any(d[1] == 200 for _, d, _ in run.sent)


# --- properties --------------------------------------------------------------------------------


# Found by Hypothesis: heavy loss, then packets 1, 4 and 14 each 125 ms late. The fill had
# already stood in for packet 1, and its arrival moved the feed's timeline back 140 ms: the agent
# got the time again as a burst of 10 ms frames.
_LATE_AFTER_FILL = [i in (0, 1, 4, 14) for i in range(80)]
_LATE_SHIFTS = [0.125 if i in (1, 4, 14) else 0.0 for i in range(80)]


@example(keep=_LATE_AFTER_FILL, shifts=_LATE_SHIFTS, duplicates=[], codec="PCMU")
@settings(max_examples=80, deadline=None)
@given(
    keep=st.lists(st.booleans(), min_size=80, max_size=80),
    shifts=st.lists(st.floats(0, 0.15), min_size=80, max_size=80),
    duplicates=st.lists(st.integers(0, 79), max_size=10),
    codec=st.sampled_from(["PCMU", "G722", "opus"]),
)
def test_any_loss_reorder_or_duplication_keeps_one_agent_frame_per_20_ms(
    keep: list[bool], shifts: list[float], duplicates: list[int], codec: str
) -> None:
    stream = caller_stream(Caller(codec), 80)
    arrivals = [(t + shift, d) for (t, d), k, shift in zip(stream, keep, shifts, strict=True) if k]
    arrivals += [(stream[i][0] + 0.01, stream[i][1]) for i in duplicates]
    media = make(codec, PCM16K)
    run = drive(media, 3.0, arrivals)
    if not run.frames:
        return
    times = np.array([t for t, _ in run.frames])
    assert {len(f) for _, f in run.frames} == {640}
    # No burst (at most 2x real time while catching up) and no drift from real time beyond
    # what the jitter buffer may hold: one frame per 20 ms on the whole.
    assert np.diff(times).min(initial=1) >= 0.01 - 2 * TIMER_SLACK_S
    lag = times - (times[0] + 0.02 * np.arange(len(times)))
    assert lag.max() - lag.min() <= 0.2 + 0.02
