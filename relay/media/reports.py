"""Our RTCP for one call's stream: when to report, what to say, what the caller's reports say.

RFC 3550 §6: a compound packet every ``RTCP_INTERVAL_S`` randomized to 0.5-1.5x (§6.2, §6.3.5;
the randomness comes from the injected `IdSource`): an SR when we sent RTP since the previous
report (§6.4.1), else an RR (§6.4.2), with one report block on the caller's stream when we have
one, then an SDES with our CNAME (§6.1: every compound carries it). The caller's SRs feed the LSR
and DLSR of our next block; their report blocks about our SSRC give the round-trip time.
NTP timestamps are wall-clock: the caller passes ``wall_clock_offset_s`` (Unix time minus the
monotonic ``now``), read once, so no clock is read here.
"""

from __future__ import annotations

from relay.ids import IdSource
from relay.media.rtcp import (
    SDES_CNAME,
    Goodbye,
    ReceiverReport,
    RtcpParseError,
    SdesChunk,
    SdesItem,
    SenderReport,
    SourceDescription,
    ntp_timestamp,
    parse_compound,
    serialize_compound,
)
from relay.media.rtp import RtpPacketizer
from relay.media.stats import ReceptionStatistics, round_trip_time_s

RTCP_INTERVAL_S = 5.0  # RFC 3550 §6.2: the minimum interval


class RtcpReporter:
    """Build our reports and read the caller's, for the stream ``packetizer`` sends."""

    def __init__(
        self,
        packetizer: RtpPacketizer,
        *,
        ids: IdSource,
        now: float,
        wall_clock_offset_s: float = 0.0,
    ) -> None:
        """Schedule the first report from ``now``; the CNAME is drawn from ``ids``."""
        self.packetizer = packetizer
        self.wall_clock_offset_s = wall_clock_offset_s
        self.round_trip_time_ms: float | None = None
        """What the caller's last report block about our stream implies (§6.4.1)."""
        self.received = 0
        self.malformed = 0
        self._ids = ids
        self._cname = ids.token(8).encode()
        self._packets_at_report = 0
        self.next_report_at = now + self._interval_s()

    def receive(self, data: bytes, reception: ReceptionStatistics | None, now: float) -> bool:
        """Read the caller's compound packet: its SR for our LSR/DLSR, blocks for the RTT.

        Returns:
            False when the datagram is not RTCP (counted in ``malformed``).
        """
        self.received += 1
        try:
            packets = parse_compound(data)
        except RtcpParseError:
            self.malformed += 1
            return False
        arrival = ntp_timestamp(now + self.wall_clock_offset_s)
        for packet in packets:
            if isinstance(packet, SenderReport) and reception and packet.ssrc == reception.ssrc:
                reception.receive_sender_report(packet, now)
            if isinstance(packet, SenderReport | ReceiverReport):
                for block in packet.reports:
                    rtt = round_trip_time_s(block, arrival)
                    if block.ssrc == self.packetizer.ssrc and rtt is not None:
                        self.round_trip_time_ms = rtt * 1000
        return True

    def report(
        self, reception: ReceptionStatistics | None, now: float, *, rtp_timestamp: int | None = None
    ) -> bytes:
        """Return our next compound report and schedule the one after it.

        Args:
            rtp_timestamp: the RTP timestamp that stands for ``now`` in an SR (RFC 3550 §6.4.1);
                by default the one the next packet will carry.
        """
        self.next_report_at = now + self._interval_s()
        block = None if reception is None else reception.report_block(now)
        blocks = () if block is None else (block,)
        packetizer = self.packetizer
        report: SenderReport | ReceiverReport = ReceiverReport(ssrc=packetizer.ssrc, reports=blocks)
        if packetizer.packets_sent != self._packets_at_report:
            report = SenderReport(
                ssrc=packetizer.ssrc,
                ntp_timestamp=ntp_timestamp(now + self.wall_clock_offset_s),
                rtp_timestamp=packetizer.timestamp if rtp_timestamp is None else rtp_timestamp,
                packet_count=packetizer.packets_sent,
                octet_count=packetizer.octets_sent,
                reports=blocks,
            )
        self._packets_at_report = packetizer.packets_sent
        cname = SdesChunk(packetizer.ssrc, (SdesItem(SDES_CNAME, self._cname),))
        return serialize_compound((report, SourceDescription((cname,))))

    def goodbye(self) -> bytes:
        """Return our BYE (RFC 3550 §6.6), with the SDES a compound packet must carry."""
        cname = SdesChunk(self.packetizer.ssrc, (SdesItem(SDES_CNAME, self._cname),))
        return serialize_compound(
            (
                ReceiverReport(ssrc=self.packetizer.ssrc),
                SourceDescription((cname,)),
                Goodbye((self.packetizer.ssrc,)),
            )
        )

    def _interval_s(self) -> float:
        return RTCP_INTERVAL_S * (0.5 + self._ids.bits(16) / 65536)
