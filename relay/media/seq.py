"""Serial-number arithmetic for RTP sequence numbers and timestamps (RFC 3550 §5.1, A.1).

Theory of operation:

1. Sequence numbers are 16 bits and timestamps 32 bits; both wrap. Comparing two of them means
   taking their difference modulo 2**n and reading it as a signed number in
   ``[-2**(n-1), 2**(n-1))`` (serial-number arithmetic, as in RFC 1982): ``seq_diff(0, 65535)``
   is ``1``, so 0 comes *after* 65535.
2. An *extended* number counts the wraps: `extend` places a 16-bit value on the unbounded line
   next to a reference, so ``extend(2, 65534) == 65538``. The jitter buffer keys packets by it.
3. `SequenceValidator` is RFC 3550 Appendix A.1 (``init_seq``/``update_seq``) line for line:
   a new source is on probation until ``MIN_SEQUENTIAL`` packets arrive in sequence, a jump of
   ``MAX_DROPOUT`` or more is believed only once a second, consecutive packet confirms it (the
   sender restarted), and ``cycles`` counts wraps in the high 16 bits, exactly as the
   "extended highest sequence number received" of a report block wants it (RFC 3550 §6.4.1).
"""

from __future__ import annotations

import enum

SEQ_BITS = 16  # RFC 3550 §5.1: "sequence number: 16 bits"
SEQ_MOD = 1 << SEQ_BITS  # RFC 3550 A.1: RTP_SEQ_MOD
TIMESTAMP_BITS = 32  # RFC 3550 §5.1: "timestamp: 32 bits"
TIMESTAMP_MOD = 1 << TIMESTAMP_BITS

MAX_DROPOUT = 3000  # RFC 3550 A.1
MAX_MISORDER = 100  # RFC 3550 A.1
MIN_SEQUENTIAL = 2  # RFC 3550 A.1

_SEQ_HALF = SEQ_MOD >> 1
_SEQ_MASK = SEQ_MOD - 1
_TS_HALF = TIMESTAMP_MOD >> 1
_TS_MASK = TIMESTAMP_MOD - 1


def seq_diff(a: int, b: int) -> int:
    """Return ``a - b`` for 16-bit sequence numbers, in ``[-32768, 32767]``."""
    return ((a - b + _SEQ_HALF) & _SEQ_MASK) - _SEQ_HALF


def seq_lt(a: int, b: int) -> bool:
    """Return whether sequence number ``a`` comes before ``b`` (modulo 2**16)."""
    return seq_diff(a, b) < 0


def timestamp_diff(a: int, b: int) -> int:
    """Return ``a - b`` for 32-bit RTP timestamps, in ``[-2**31, 2**31 - 1]``."""
    return ((a - b + _TS_HALF) & _TS_MASK) - _TS_HALF


def timestamp_lt(a: int, b: int) -> bool:
    """Return whether RTP timestamp ``a`` comes before ``b`` (modulo 2**32)."""
    return timestamp_diff(a, b) < 0


def extend(value: int, reference: int, *, bits: int = SEQ_BITS) -> int:
    """Return the extended number whose low ``bits`` are ``value``, nearest to ``reference``.

    Args:
        value: A wrapped ``bits``-bit number, as read from the wire.
        reference: An already extended number (any integer, may be negative).
        bits: 16 for sequence numbers, 32 for timestamps.
    """
    half = 1 << (bits - 1)
    mask = (1 << bits) - 1
    return reference + ((value - reference + half) & mask) - half


class SeqStatus(enum.Enum):
    """What `SequenceValidator.update` made of a sequence number (RFC 3550 A.1)."""

    VALID = "valid"
    """Counted: in order, a permissible gap, a duplicate or a reordered packet."""
    PROBATION = "probation"
    """The source is not yet valid: too few packets in sequence so far."""
    BAD_JUMP = "bad_jump"
    """A very large jump, not counted until the next packet confirms a restart."""


class SequenceValidator:
    """Validate a source and extend its sequence numbers (RFC 3550 A.1).

    Attributes are those of A.1's ``source`` structure and are read by the statistics of A.3.
    """

    __slots__ = (
        "bad_seq",
        "base_seq",
        "cycles",
        "max_dropout",
        "max_misorder",
        "max_seq",
        "min_sequential",
        "probation",
        "received",
        "restarts",
    )

    def __init__(
        self,
        seq: int,
        *,
        min_sequential: int = MIN_SEQUENTIAL,
        max_dropout: int = MAX_DROPOUT,
        max_misorder: int = MAX_MISORDER,
    ) -> None:
        """Start validating a source whose first packet carried ``seq``.

        As in A.1, the caller then passes that first packet to `update` too. With
        ``min_sequential=1`` a source is valid from its first packet; with the default 2 the
        first packet only starts the probation and is not counted.

        Raises:
            ValueError: if ``min_sequential`` is smaller than 1.
        """
        if min_sequential < 1:
            raise ValueError(f"min_sequential must be at least 1, got {min_sequential}")
        self.min_sequential = min_sequential
        self.max_dropout = max_dropout
        self.max_misorder = max_misorder
        self.restarts = 0
        self._init_seq(seq)
        self.max_seq = (seq - 1) & _SEQ_MASK
        self.probation = min_sequential

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = SEQ_MOD + 1  # so that seq == bad_seq is false
        self.cycles = 0
        self.received = 0

    @property
    def extended_max(self) -> int:
        """Return the extended highest sequence number received (RFC 3550 §6.4.1)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Return how many packets were expected since the base (RFC 3550 A.3)."""
        return self.extended_max - self.base_seq + 1

    def update(self, seq: int) -> SeqStatus:
        """Account for a packet with sequence number ``seq`` (A.1 ``update_seq``)."""
        udelta = (seq - self.max_seq) & _SEQ_MASK
        if self.probation:
            if seq == (self.max_seq + 1) & _SEQ_MASK:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return SeqStatus.VALID
            else:
                self.probation = self.min_sequential - 1
                self.max_seq = seq
            return SeqStatus.PROBATION
        if udelta < self.max_dropout:
            if seq < self.max_seq:
                self.cycles += SEQ_MOD  # the sequence number wrapped
            self.max_seq = seq
        elif udelta <= SEQ_MOD - self.max_misorder:
            if seq != self.bad_seq:
                self.bad_seq = (seq + 1) & _SEQ_MASK
                return SeqStatus.BAD_JUMP
            # Two sequential packets after a jump: the sender restarted without telling us.
            self._init_seq(seq)
            self.restarts += 1
        # else: a duplicate or reordered packet, counted but not moving max_seq
        self.received += 1
        return SeqStatus.VALID
