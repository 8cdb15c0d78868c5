from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.models import AllowedAgent, default_pattern
from chalicelib.routing import PatternSet, Route, check_pattern, route


def rules(*pairs: tuple[str, str | None]) -> list[AllowedAgent]:
    return [AllowedAgent(agent_id=a, to_user_pattern=p) for a, p in pairs]


def test_first_matching_pattern_in_list_order_wins() -> None:
    allowed = rules(("a1", "^sales$"), ("a2", "^sal"), ("a3", ".*"))
    assert route("sales", allowed, allow_all_agents=False) == Route("a1", "allowed_agents[0]")
    assert route("salt", allowed, allow_all_agents=False) == Route("a2", "allowed_agents[1]")
    assert route("support", allowed, allow_all_agents=False) == Route("a3", "allowed_agents[2]")


def test_default_pattern_is_agent_underscore_id_anchored() -> None:
    allowed = rules(("4b1c-9", None))
    assert allowed[0].pattern == default_pattern("4b1c-9")
    assert route("agent_4b1c-9", allowed, allow_all_agents=False) == Route(
        "4b1c-9", "allowed_agents[0]"
    )
    assert route("xagent_4b1c-9", allowed, allow_all_agents=False) is None
    assert route("agent_4b1c-90", allowed, allow_all_agents=False) is None


def test_phone_number_alternation_from_the_spec() -> None:
    allowed = rules(("sales", "^15551234567$|^15557654321$"))
    assert route("15557654321", allowed, allow_all_agents=False) == Route(
        "sales", "allowed_agents[0]"
    )
    assert route("15550000000", allowed, allow_all_agents=False) is None


def test_allow_all_agents_routes_agent_user_after_patterns() -> None:
    allowed = rules(("pinned", "^agent_other$"))
    assert route("agent_other", allowed, allow_all_agents=True) == Route(
        "pinned", "allowed_agents[0]"
    )
    assert route("agent_xyz", allowed, allow_all_agents=True) == Route("xyz", "allow_all_agents")
    assert route("agent_xyz", allowed, allow_all_agents=False) is None
    assert route("sales", [], allow_all_agents=True) is None


def test_no_rules_routes_nothing() -> None:
    assert route("anything", [], allow_all_agents=False) is None


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a", "missing ): (a"),
        ("(?=x)", "invalid perl operator: (?="),
        ("(a)\\1", "invalid escape sequence: \\1"),
    ],
)
def test_patterns_re2_cannot_run_in_linear_time_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError) as raised:
        check_pattern(pattern)
    assert str(raised.value) == f"{pattern!r} is not a valid RE2 pattern: {reason}"


def test_catastrophic_backtracking_pattern_runs_in_linear_time() -> None:
    # (a+)+$ on "aaaa...b" takes exponential time in a backtracking engine; RE2 answers at once.
    allowed = rules(("evil", "^(a+)+$"))
    assert route("a" * 5000 + "b", allowed, allow_all_agents=False) is None


@given(
    st.lists(st.sampled_from(["^a", "b$", "ab", "^x.*y$", "[0-9]+", "^$", "c|d"]), max_size=8),
    st.text(alphabet="abcdxy0129", max_size=12),
)
def test_pattern_set_agrees_with_a_loop_over_python_re(patterns: list[str], text: str) -> None:
    expected = next((i for i, p in enumerate(patterns) if re.search(p, text)), None)
    assert PatternSet(patterns).first_match(text) == expected
