"""Reception statistics of one RTP source and the report block they produce (RFC 3550 A.3, A.8).

Theory of operation:

1. Each packet from the source goes to `ReceptionStatistics.receive` with its arrival time
   ``now`` in monotonic seconds. Sequence numbers are validated and extended by
   `relay.media.seq.SequenceValidator` (RFC 3550 A.1): packets during probation or after an
   unconfirmed jump are not counted.
2. Interarrival jitter is A.8's integer estimator: arrival times are converted to timestamp
   units with the payload's ``clock_rate_hz``, and the running estimate is kept scaled by 16
   ("Q4") so that ``J += (|D| - J) / 16`` needs no floating point and rounds as the RFC's
   reference code does. The 32-bit timestamp wraps, so transit differences are read modulo 2**32.
3. `report_block(now)` is A.3: cumulative loss since the base (clamped to 24 signed bits),
   the fraction lost since the previous report, the extended highest sequence number, the jitter,
   and LSR/DLSR from the last SR we received from the source (RFC 3550 §6.4.1).
4. `round_trip_time_s` is the sender's side of §6.4.1: ``A - LSR - DLSR`` in 1/65536 s.
"""

from __future__ import annotations

from relay.media.rtcp import ReportBlock, SenderReport, compact_ntp
from relay.media.rtp import RtpPacket
from relay.media.seq import MIN_SEQUENTIAL, SeqStatus, SequenceValidator, timestamp_diff

JITTER_GAIN_SHIFT = 4  # RFC 3550 A.8: J += (|D| - J) / 16
MAX_CUMULATIVE_LOST = 0x7FFFFF  # RFC 3550 A.3: clamped to 24 signed bits
MIN_CUMULATIVE_LOST = -0x800000  # RFC 3550 A.3
DLSR_UNITS_PER_S = 65536  # RFC 3550 §6.4.1: "expressed in units of 1/65536 seconds"


class ReceptionStatistics:
    """Loss and jitter of one remote source, fed explicit arrival times (RFC 3550 A.1, A.3, A.8)."""

    __slots__ = (
        "_expected_prior",
        "_jitter_q4",
        "_last_sr",
        "_last_sr_at",
        "_received_prior",
        "_restarts_seen",
        "_sequence",
        "_transit",
        "clock_rate_hz",
        "min_sequential",
        "ssrc",
    )

    def __init__(self, ssrc: int, clock_rate_hz: int, *, min_sequential: int = MIN_SEQUENTIAL):
        """Track source ``ssrc`` whose timestamps run at ``clock_rate_hz``."""
        self.ssrc = ssrc
        self.clock_rate_hz = clock_rate_hz
        self.min_sequential = min_sequential
        self._sequence: SequenceValidator | None = None
        self._restarts_seen = 0
        self._transit: int | None = None
        self._jitter_q4 = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._last_sr = 0
        self._last_sr_at = 0.0

    def receive(self, packet: RtpPacket, now: float) -> SeqStatus:
        """Account for ``packet`` arriving at ``now`` (monotonic seconds).

        Returns:
            What A.1 made of its sequence number; only `SeqStatus.VALID` packets are counted
            and feed the jitter estimate.
        """
        sequence = self._sequence
        if sequence is None:
            sequence = self._sequence = SequenceValidator(
                packet.sequence_number, min_sequential=self.min_sequential
            )
        status = sequence.update(packet.sequence_number)
        if status is not SeqStatus.VALID:
            return status
        if sequence.restarts != self._restarts_seen:
            # A restarted sender has a new timestamp base: the old transit means nothing.
            self._restarts_seen = sequence.restarts
            self._transit = None
            self._expected_prior = self._received_prior = 0
        arrival = round(now * self.clock_rate_hz)
        transit = arrival - packet.timestamp
        if self._transit is not None:
            delta = abs(timestamp_diff(transit, self._transit))
            self._jitter_q4 += delta - ((self._jitter_q4 + 8) >> JITTER_GAIN_SHIFT)
        self._transit = transit
        return status

    def receive_sender_report(self, report: SenderReport, now: float) -> None:
        """Remember when the source's SR arrived, for the LSR and DLSR of our next report."""
        self._last_sr = compact_ntp(report.ntp_timestamp)
        self._last_sr_at = now

    @property
    def received(self) -> int:
        """Return how many packets were counted (duplicates included, as in A.1)."""
        return 0 if self._sequence is None else self._sequence.received

    @property
    def expected(self) -> int:
        """Return how many packets were expected since the base sequence number (A.3)."""
        if self._sequence is None or self._sequence.probation:
            return 0
        return self._sequence.expected

    @property
    def cumulative_lost(self) -> int:
        """Return expected minus received, unclamped (negative when duplicates arrived)."""
        return self.expected - self.received

    @property
    def jitter(self) -> int:
        """Return the interarrival jitter in timestamp units, as a report block carries it."""
        return self._jitter_q4 >> JITTER_GAIN_SHIFT

    @property
    def jitter_s(self) -> float:
        """Return the interarrival jitter in seconds."""
        return self._jitter_q4 / (1 << JITTER_GAIN_SHIFT) / self.clock_rate_hz

    def report_block(self, now: float) -> ReportBlock | None:
        """Return the report block about this source, starting a new loss interval (A.3).

        Returns:
            None while the source is still on probation (nothing to report yet).
        """
        sequence = self._sequence
        if sequence is None or sequence.probation:
            return None
        expected = sequence.expected
        expected_interval = expected - self._expected_prior
        received_interval = sequence.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = sequence.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        lost = min(MAX_CUMULATIVE_LOST, max(MIN_CUMULATIVE_LOST, expected - sequence.received))
        delay = 0
        if self._last_sr:
            delay = round((now - self._last_sr_at) * DLSR_UNITS_PER_S) & 0xFFFFFFFF
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=lost,
            highest_sequence=sequence.extended_max & 0xFFFFFFFF,
            jitter=self.jitter,
            last_sr=self._last_sr,
            delay_since_last_sr=delay,
        )


def round_trip_time_s(block: ReportBlock, arrival_ntp: int) -> float | None:
    """Return the round-trip time a report block implies (RFC 3550 §6.4.1), or None.

    Args:
        block: A report block about one of our streams, from the peer's SR or RR.
        arrival_ntp: The 64-bit NTP wall-clock time at which that report arrived.

    Returns:
        ``A - LSR - DLSR`` in seconds, or None when the peer has not yet received an SR from
        us (LSR is zero).
    """
    if block.last_sr == 0:
        return None
    units = (compact_ntp(arrival_ntp) - block.last_sr - block.delay_since_last_sr) & 0xFFFFFFFF
    return units / DLSR_UNITS_PER_S
