"""Routing an INVITE to an agent by the To URI's user part (pure).

The rules, in the spec's order:

1. each ``allowedAgents`` pattern in list order: the first that matches wins;
2. then ``agent_<agentId>`` (any domain), if ``allowAllAgents`` is on;
3. otherwise no route (the caller tries the fallback handler, then rejects).

Patterns are written by users and run on attacker-controlled input, so they are RE2 expressions:
linear time, no backtracking. All patterns of a configuration are compiled into one RE2 ``Set``
and matched in one pass; the lowest matching index is the first rule in list order. Compiled sets
are cached by their pattern tuple, so a warm Lambda pays the compile cost once per configuration.
Each decision finds its set by the rules' raw fields (one attribute read per rule): the Set match
itself takes about a microsecond at any size, so the key is most of a warm decision's cost.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter

import re2

from chalicelib.models import AllowedAgent

_AGENT_USER = re.compile(r"^agent_(?P<agent_id>[A-Za-z0-9_-]{1,64})$")
_MAX_MEMORY = 64 << 20
_TO_USER_PATTERN = attrgetter("to_user_pattern")
_AGENT_ID = attrgetter("agent_id")
RulesKey = tuple[tuple[str | None, ...], tuple[str, ...]]


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _MAX_MEMORY
    return options


@dataclass(frozen=True, slots=True)
class Route:
    """The agent a call goes to and the rule that chose it."""

    agent_id: str
    rule: str
    """``allowed_agents[<index>]`` or ``allow_all_agents``."""


def compile_pattern(pattern: str) -> re2._Regexp:
    """Return ``pattern`` compiled by RE2 (linear-time matching, no backtracking).

    Raises:
        ValueError: RE2 does not compile it; the message quotes the pattern and RE2's reason.
    """
    try:
        return re2.compile(pattern, options=_options())
    except re2.error as error:
        reason = error.args[0].decode() if isinstance(error.args[0], bytes) else str(error)
        raise ValueError(f"{pattern!r} is not a valid RE2 pattern: {reason}") from None


def check_pattern(pattern: str) -> None:
    """Raise ValueError with RE2's reason if ``pattern`` does not compile."""
    compile_pattern(pattern)


class PatternSet:
    """Every routing pattern of a configuration, compiled once into an RE2 Set."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._set = re2.Set.SearchSet(_options())
        for pattern in patterns:
            self._set.Add(pattern)
        self._set.Compile()
        self._empty = not patterns

    def first_match(self, text: str) -> int | None:
        """Return the index of the first pattern (in list order) that matches ``text``."""
        if self._empty:
            return None
        matches = self._set.Match(text)
        return min(matches) if matches else None


@lru_cache(maxsize=64)
def compiled(patterns: tuple[str, ...]) -> PatternSet:
    """Return the (cached) compiled set of ``patterns``."""
    return PatternSet(patterns)


def rules_key(allowed_agents: Sequence[AllowedAgent]) -> RulesKey:
    """Return what the rules' patterns are made of: each raw pattern (None: default) and agent id.

    Built on every decision, so it only reads fields: ``AllowedAgent.pattern`` would ``re.escape``
    every default pattern again (about 1 ms a decision at 1,000 rules, measured in bench/).
    """
    return tuple(map(_TO_USER_PATTERN, allowed_agents)), tuple(map(_AGENT_ID, allowed_agents))


@lru_cache(maxsize=64)
def compiled_rules(key: RulesKey) -> PatternSet:
    """Return the (cached) compiled set of the rules that ``key`` describes."""
    patterns, agent_ids = key
    rules = (
        AllowedAgent.model_construct(agent_id=agent_id, to_user_pattern=pattern)
        for pattern, agent_id in zip(patterns, agent_ids, strict=True)
    )
    return compiled(tuple(rule.pattern for rule in rules))


_BY_IDENTITY: OrderedDict[int, tuple[Sequence[AllowedAgent], PatternSet]] = OrderedDict()
_BY_IDENTITY_SIZE = 64


def _pattern_set(allowed_agents: Sequence[AllowedAgent]) -> PatternSet:
    """Return the compiled set of a rule list, found by the list's identity when seen before.

    The store hands out one parsed configuration per stored version (``Store.get_sip_config``),
    so a warm Lambda routes with no work per rule at all; a new list pays ``rules_key`` once.
    """
    entry = _BY_IDENTITY.get(id(allowed_agents))
    if entry is not None and entry[0] is allowed_agents:
        return entry[1]
    pattern_set = compiled_rules(rules_key(allowed_agents))
    _BY_IDENTITY[id(allowed_agents)] = (allowed_agents, pattern_set)  # keeps the list alive
    while len(_BY_IDENTITY) > _BY_IDENTITY_SIZE:
        _BY_IDENTITY.popitem(last=False)
    return pattern_set


def route(
    to_user: str,
    allowed_agents: Sequence[AllowedAgent],
    *,
    allow_all_agents: bool,
) -> Route | None:
    """Return the route for ``to_user``, or None when no rule matches."""
    index = _pattern_set(allowed_agents).first_match(to_user)
    if index is not None:
        return Route(allowed_agents[index].agent_id, f"allowed_agents[{index}]")
    if allow_all_agents and (match := _AGENT_USER.match(to_user)):
        return Route(match["agent_id"], "allow_all_agents")
    return None
