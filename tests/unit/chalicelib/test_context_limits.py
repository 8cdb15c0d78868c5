"""The limits on the context an INVITE gives (docs/routing.md, "Context from SIP headers")."""

from __future__ import annotations

import json

import pytest

from chalicelib.context_limits import (
    Dropped,
    DroppedSummary,
    DropReason,
    bounded_context,
    header_value,
    nested_deeper_than,
    summary,
)

# The documented limits, written out here rather than read from the module under test.
DEPTH = 16
ENTRY_BYTES = 8192
KEYS = 1000
CONTEXT_BYTES = 32768


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("42", 0),
        ('"[[[["', 0),  # brackets inside a string do not count
        ('["\\"[[["]', 1),  # nor after an escaped quote
        ('{"a": [1, {"b": []}]}', 4),
        ("[" * 16 + "]" * 16, 16),
        ("[" * 17 + "]" * 17, 17),
        ("[" * 100_000, 100_000),  # not JSON at all: the scan still answers, linearly
    ],
)
def test_depth_is_found_by_a_scan_that_skips_strings(text: str, depth: int) -> None:
    assert not nested_deeper_than(text, depth)
    assert nested_deeper_than(text, depth - 1) == (depth > 0)


def test_a_value_deeper_than_16_stays_the_string_sent() -> None:
    ok, deep = "[" * DEPTH + "]" * DEPTH, "[" * (DEPTH + 1) + "]" * (DEPTH + 1)
    assert header_value(f" {ok} ") == json.loads(ok)
    assert header_value(f" {deep} ") == deep


@pytest.mark.parametrize("text", ["NaN", "-Infinity", "Infinity", "1e999", "[1e400]"])
def test_numbers_json_readers_refuse_stay_strings(text: str) -> None:
    assert header_value(text) == text


def test_an_entry_over_8_kib_is_dropped_as_sent_or_as_stored() -> None:
    as_sent = ("big", "x" * (ENTRY_BYTES - 2))  # 3 + 8190 characters
    as_stored = ("quotes", "x" + '"' * 5000)  # not JSON: a string whose JSON doubles each quote
    exactly = ("fits", "y" * (ENTRY_BYTES - 6))  # "fits" + the quoted value: 8 KiB exactly
    accented = ("e", '"' + "é" * 4096 + '"')  # 4,099 characters, 8 KiB + 3 bytes stored

    context, dropped = bounded_context([as_sent, as_stored, exactly, accented])

    assert list(context) == ["fits"]
    assert dropped == [
        Dropped("big", DropReason.TOO_LARGE),
        Dropped("quotes", DropReason.TOO_LARGE),
        Dropped("e", DropReason.TOO_LARGE),
    ]


def test_only_the_first_thousand_keys_are_taken() -> None:
    headers = [(f"k{i}", "1") for i in range(KEYS + 3)] + [("k0", "again")]

    context, dropped = bounded_context(headers)

    assert len(context) == KEYS and context["k0"] == 1
    assert dropped == [Dropped(f"k{i}", DropReason.TOO_MANY) for i in range(KEYS, KEYS + 3)]


def test_the_total_stops_at_32_kib_and_smaller_entries_still_fit() -> None:
    value = "v" * 8000  # each entry: 2 + 8002 bytes
    headers = [(f"a{i}", value) for i in range(5)] + [("b", "small")]

    context, dropped = bounded_context(headers)

    assert list(context) == ["a0", "a1", "a2", "a3", "b"]
    assert dropped == [Dropped("a4", DropReason.CONTEXT_FULL)]
    assert sum(len(k) + len(json.dumps(v)) for k, v in context.items()) <= CONTEXT_BYTES


def test_the_fallback_handlers_values_win_and_meet_the_same_limits() -> None:
    deep: list[object] = []
    for _ in range(DEPTH):
        deep = [deep]
    extra = {"plan": "gold", "deep": deep, "sipline": {"sip": {}}, "big": "z" * ENTRY_BYTES}

    context, dropped = bounded_context([("plan", "silver"), ("n", "7")], extra)

    assert context == {"plan": "gold", "n": 7}
    assert dropped == [
        Dropped("sipline", DropReason.RESERVED),
        Dropped("deep", DropReason.TOO_DEEP),
        Dropped("big", DropReason.TOO_LARGE),
    ]


def test_the_summary_counts_every_drop_and_names_the_first_ten_cut_to_100_characters() -> None:
    drops = [Dropped(f"k{i}", DropReason.TOO_MANY) for i in range(25)]
    drops += [Dropped("x" * 300, DropReason.TOO_LARGE), Dropped("plan", DropReason.SCHEMA)]

    assert summary(reversed(drops)) == [
        DroppedSummary(DropReason.TOO_MANY, 25, tuple(f"k{i}" for i in range(24, 14, -1))),
        DroppedSummary(DropReason.TOO_LARGE, 1, ("x" * 100,)),
        DroppedSummary(DropReason.SCHEMA, 1, ("plan",)),
    ]
