"""Filtering a context by a contextSchema: which keys stay (docs/routing.md, rule 5)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.context import CallerInfo, incoming_context
from chalicelib.context_schema import Candidate, filter_context, filter_one_by_one

CALLER = CallerInfo("+15551234567", "Alice", "sip:+15551234567@carrier.example")
SIP_KEYS = ["sipline.sip.caller_id", "sipline.sip.from_display_name", "sipline.sip.from_uri"]


def kept_and_dropped(
    headers: list[tuple[str, str]], schema: dict[str, Any]
) -> tuple[list[str], list[str]]:
    built = incoming_context(headers, CALLER, schema)
    return [k for k in built.context if k != "sipline"], list(built.dropped_keys)


def test_a_thousand_headers_are_filtered_key_by_key_by_their_subschemas() -> None:
    """Even-numbered keys must be integers and are; odd-numbered ones must be strings and are
    not; nothing else is allowed. So exactly the even keys stay, in arrival order."""
    schema = {
        "type": "object",
        "patternProperties": {
            "^n_[0-9]*[02468]$": {"type": "integer"},
            "^n_[0-9]*[13579]$": {"type": "string"},
        },
        "properties": {"sipline": {"type": "object"}},
        "additionalProperties": False,
    }
    headers = [(f"X-N-{i}", str(i)) for i in range(1000)]

    kept, dropped = kept_and_dropped(headers, schema)

    assert kept == [f"n_{i}" for i in range(0, 1000, 2)]
    assert dropped == [f"n_{i}" for i in range(1, 1000, 2)]


@pytest.mark.parametrize(
    ("schema", "kept", "dropped"),
    [
        (  # names the schema refuses
            {"propertyNames": {"pattern": "^[a-m]"}},
            ["alpha", "beta"],
            ["zulu", "omega", *SIP_KEYS],  # "sipline" starts past m as well
        ),
        (  # a key whose dependency is missing
            {"dependentRequired": {"beta": ["gamma"]}},
            ["alpha", "zulu", "omega"],
            ["beta"],
        ),
        (  # room for two keys: the first two (the reserved keys come last)
            {"maxProperties": 2},
            ["alpha", "beta"],
            ["zulu", "omega", *SIP_KEYS],
        ),
        (  # a missing key never drops another
            {"required": ["missing"], "minProperties": 40},
            ["alpha", "beta", "zulu", "omega"],
            [],
        ),
        (  # what allOf and $ref say about a key is charged to that key
            {
                "$defs": {"short": {"type": "string", "maxLength": 4}},
                "allOf": [{"properties": {"alpha": {"$ref": "#/$defs/short"}}}],
                "properties": {"omega": {"$ref": "#/$defs/short"}},
            },
            ["beta", "zulu", "omega"],
            ["alpha"],
        ),
        (  # the reserved keys are filtered inside sipline.sip too
            {"properties": {"sipline": {"properties": {"sip": {"maxProperties": 1}}}}},
            ["alpha", "beta", "zulu", "omega"],
            SIP_KEYS[1:],
        ),
        (  # a rule about the whole object: keys are tried one by one
            {"not": {"required": ["zulu", "omega"]}},
            ["alpha", "beta", "zulu"],
            ["omega"],
        ),
    ],
)
def test_root_keywords_drop_the_keys_they_are_about(
    schema: dict[str, Any], kept: list[str], dropped: list[str]
) -> None:
    headers = [("X-Alpha", "alpha!"), ("X-Beta", "b"), ("X-Zulu", "z"), ("X-Omega", "o")]

    assert kept_and_dropped(headers, schema) == (kept, dropped)


# --- the linear filter and the one-by-one rule agree where both apply ----------------------------

VALUES = st.one_of(st.integers(-3, 3), st.text("ab", max_size=3), st.booleans(), st.none())
SUBSCHEMAS = st.one_of(
    st.sampled_from([{"type": t} for t in ("integer", "string", "boolean", "null")]),
    st.builds(lambda n: {"type": "string", "maxLength": n}, st.integers(0, 2)),
    st.builds(lambda n: {"minimum": n}, st.integers(-2, 2)),
    st.just(False),
)
KEYS = st.sampled_from(["a", "b", "c", "aa", "ab", "sipline"])


@st.composite
def object_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"properties": draw(st.dictionaries(KEYS, SUBSCHEMAS, max_size=3))}
    if draw(st.booleans()):
        schema["patternProperties"] = {"^a": draw(SUBSCHEMAS)}
    additional = draw(st.one_of(st.none(), st.booleans(), SUBSCHEMAS))
    if additional is not None:
        schema["additionalProperties"] = additional
    if draw(st.booleans()):
        schema["maxProperties"] = draw(st.integers(0, 4))
    return schema


@settings(max_examples=300)
@given(
    schema=object_schemas(),
    entries=st.lists(st.tuples(st.sampled_from(["a", "b", "c", "aa", "ab", "d"]), VALUES)),
)
def test_linear_filter_agrees_with_adding_keys_one_by_one(
    schema: dict[str, Any], entries: list[tuple[str, Any]]
) -> None:
    candidates: list[Candidate] = [((k,), v) for k, v in dict(entries).items()]
    candidates += [(("sipline", "sip", "caller_id"), "+1")]
    assert filter_context(candidates, schema) == filter_one_by_one(candidates, schema)
