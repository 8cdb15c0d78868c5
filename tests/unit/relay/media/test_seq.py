"""Serial-number arithmetic, extension across wraps, and RFC 3550 A.1 source validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.media.seq import (
    MAX_DROPOUT,
    SEQ_MOD,
    TIMESTAMP_MOD,
    SeqStatus,
    SequenceValidator,
    extend,
    seq_diff,
    seq_lt,
    timestamp_diff,
    timestamp_lt,
)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@pytest.mark.parametrize(
    ("a", "b", "diff"),
    [(1, 0, 1), (0, 65535, 1), (65535, 0, -1), (100, 65500, 136), (32767, 0, 32767), (32768, 0, -32768)],
)
def test_seq_diff_reads_the_16_bit_distance_as_signed(a: int, b: int, diff: int) -> None:
    assert seq_diff(a, b) == diff


@given(u16, st.integers(-32768, 32767))
def test_seq_diff_inverts_modular_addition(a: int, d: int) -> None:
    assert seq_diff((a + d) % SEQ_MOD, a) == d
    if d != -32768:  # exactly half the space apart, each is "before" the other (RFC 1982 §3.2)
        assert seq_lt(a, (a + d) % SEQ_MOD) is (d > 0)


@given(u16, u16)
def test_seq_diff_is_antisymmetric_except_at_half_the_space(a: int, b: int) -> None:
    if (a - b) % SEQ_MOD != SEQ_MOD // 2:
        assert seq_diff(a, b) == -seq_diff(b, a)


@given(u32, st.integers(-(2**31), 2**31 - 1))
def test_timestamp_diff_inverts_modular_addition(a: int, d: int) -> None:
    assert timestamp_diff((a + d) % TIMESTAMP_MOD, a) == d
    if d != -(2**31):
        assert timestamp_lt(a, (a + d) % TIMESTAMP_MOD) is (d > 0)


def test_extend_counts_wraps_in_both_directions() -> None:
    assert extend(2, 65534) == 65538
    assert extend(65534, 65538) == 65534
    assert extend(65535, 0) == -1
    assert extend(5, 0xFFFFFFF0 + 2**32, bits=32) == 2 * 2**32 + 5


@given(u16, st.integers(-(2**40), 2**40))
def test_extend_keeps_the_low_bits_and_lands_within_half_the_space(value: int, ref: int) -> None:
    extended = extend(value, ref)
    assert extended % SEQ_MOD == value
    assert -32768 <= extended - ref < 32768


@given(u16, st.lists(st.integers(1, 50), min_size=1, max_size=200))
def test_extending_a_forward_stream_is_strictly_increasing_across_wraps(
    start: int, steps: list[int]
) -> None:
    reference = start
    for step in steps:
        wrapped = (reference + step) % SEQ_MOD
        extended = extend(wrapped, reference)
        assert extended == reference + step
        reference = extended


# --- RFC 3550 A.1 ------------------------------------------------------------------------------


def feed(validator: SequenceValidator, seqs: list[int]) -> list[SeqStatus]:
    return [validator.update(seq) for seq in seqs]


def test_new_source_is_on_probation_until_two_packets_in_sequence() -> None:
    validator = SequenceValidator(1000)
    assert feed(validator, [1000, 1001, 1002]) == [
        SeqStatus.PROBATION, SeqStatus.VALID, SeqStatus.VALID
    ]
    assert (validator.base_seq, validator.received, validator.expected) == (1001, 2, 2)


def test_out_of_sequence_packet_restarts_the_probation() -> None:
    validator = SequenceValidator(10)
    assert feed(validator, [10, 12, 13]) == [
        SeqStatus.PROBATION, SeqStatus.PROBATION, SeqStatus.VALID
    ]
    assert validator.base_seq == 13


def test_min_sequential_one_makes_the_first_packet_valid() -> None:
    validator = SequenceValidator(0, min_sequential=1)
    assert feed(validator, [0, 1]) == [SeqStatus.VALID, SeqStatus.VALID]
    assert (validator.cycles, validator.expected, validator.received) == (0, 2, 2)


def test_min_sequential_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="min_sequential must be at least 1, got 0"):
        SequenceValidator(0, min_sequential=0)


def test_wrap_adds_a_cycle_to_the_extended_highest_sequence() -> None:
    validator = SequenceValidator(65533)
    feed(validator, [65533, 65534, 65535, 0, 1])
    assert validator.cycles == SEQ_MOD
    assert validator.extended_max == SEQ_MOD + 1
    assert validator.expected == 4  # 65534, 65535, 0, 1 (the first was probation)


def test_duplicates_and_reordered_packets_are_counted_without_moving_the_maximum() -> None:
    validator = SequenceValidator(100)
    feed(validator, [100, 101, 103, 102, 103])
    assert validator.max_seq == 103
    assert (validator.received, validator.expected) == (4, 3)  # one duplicate


def test_a_large_jump_is_believed_only_when_the_next_packet_follows_it() -> None:
    validator = SequenceValidator(1)
    feed(validator, [1, 2, 3])
    assert validator.update(40000) is SeqStatus.BAD_JUMP
    assert validator.update(4) is SeqStatus.VALID  # the stream carries on: the jump was a stray
    assert validator.update(40000) is SeqStatus.BAD_JUMP
    assert validator.update(40001) is SeqStatus.VALID  # restarted
    assert (validator.base_seq, validator.received, validator.restarts) == (40001, 1, 1)


@given(u16, st.lists(st.integers(1, MAX_DROPOUT - 1), min_size=1, max_size=100))
def test_expected_counts_every_slot_of_a_forward_stream_with_gaps(start: int, steps: list[int]) -> None:
    validator = SequenceValidator(start)
    validator.update(start)
    seq = (start + 1) % SEQ_MOD
    validator.update(seq)  # ends the probation; base is start + 1
    slots = 1
    for step in steps:
        seq = (seq + step) % SEQ_MOD
        assert validator.update(seq) is SeqStatus.VALID
        slots += step
    assert validator.expected == slots
    assert validator.received == len(steps) + 1
