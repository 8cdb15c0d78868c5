"""Routing decision time against the number of ``allowedAgents`` patterns (issue 2, "Measured").

``python -m bench.routing`` times :func:`chalicelib.routing.route` (one RE2 ``Set`` pass, the set
compiled once and cached) for 1, 20, 1,000 and 10,000 rules, side by side with a naive loop over
Python's ``re`` (each precompiled pattern searched in list order, first match wins), for three
To users: one no rule matches (``miss``), one the first rule matches, one only the last rule
matches. The rules mix what users write: default ``^agent_<id>$`` patterns, words like
``^sales$``, phone-number alternations like ``^15551234567$|^15557654321$`` and patterns with
character classes and counted repeats.

Every measurement is bounded: batches of calls sized to a few milliseconds each, at most
``REPEATS`` of them and at most ``BUDGET_S`` seconds; the figure is the median batch's time per
call. Shared machines are noisy, so compare the ratio within one run rather than the absolute
figures across runs. Target: under 50 µs a decision at 1,000 rules, growing sub-linearly.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from bench.machine import banner
from chalicelib.ids import uuid7
from chalicelib.models import AllowedAgent, SipConfig
from chalicelib.routing import PatternSet, compiled, route

SIZES = (1, 20, 1_000, 10_000)
CASES = ("miss", "first", "last")
BUDGET_S = 2.0
"""Upper bound on one measurement (one engine, one size, one case)."""
REPEATS = 7
BATCH_S = 0.02
"""Target duration of one timed batch."""
TARGET_US_AT_1000 = 50.0
DYNAMODB_ITEM_LIMIT_KB = 400
MISS_USER = "19995550123"
"""A To user no generated rule matches (every generated number starts 1555 or 1650/1415)."""

_WORDS = ("sales", "support", "billing", "reception", "concierge", "booking", "helpdesk")
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Workload:
    """``size`` rules and, per case, a To user with the index of the rule that must win."""

    rules: list[AllowedAgent]
    users: dict[str, tuple[str, int | None]]

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(rule.pattern for rule in self.rules)


def _agent_id(rng: random.Random, index: int) -> str:
    return uuid7(_EPOCH + timedelta(seconds=index), rng.getrandbits(74))


def _rule(rng: random.Random, index: int) -> tuple[AllowedAgent, str]:
    """Return rule ``index`` and a To user it matches (and no other generated rule does)."""
    agent_id = _agent_id(rng, index)
    kind = rng.choices(("default", "word", "phones", "class"), weights=(55, 15, 20, 10))[0]
    if kind == "default":
        return AllowedAgent(agent_id=agent_id), f"agent_{agent_id}"
    if kind == "word":
        word = f"{rng.choice(_WORDS)}_{index}" if index else "sales"
        return AllowedAgent(agent_id=agent_id, to_user_pattern=f"^{word}$"), word
    if kind == "phones":
        numbers = [f"1555{index:05d}{n:02d}" for n in range(rng.randint(2, 4))]
        pattern = "|".join(f"^{number}$" for number in numbers)
        return AllowedAgent(agent_id=agent_id, to_user_pattern=pattern), rng.choice(numbers)
    area = rng.choice(("650", "415"))
    pattern = rf"^\+?1(?:650|415){index:07d}$|^(?i:team)-{index}-[a-z]{{2,12}}$"
    user = rng.choice((f"+1{area}{index:07d}", f"Team-{index}-{rng.choice(_WORDS)}"))
    return AllowedAgent(agent_id=agent_id, to_user_pattern=pattern), user


def workload(size: int, *, seed: int = 2) -> Workload:
    """Return ``size`` deterministic, realistic rules and the To users of the three cases."""
    rng = random.Random(seed)
    pairs = [_rule(rng, index) for index in range(size)]
    rules = [rule for rule, _ in pairs]
    users: dict[str, tuple[str, int | None]] = {
        "miss": (MISS_USER, None),
        "first": (pairs[0][1], 0),
        "last": (pairs[-1][1], size - 1),
    }
    return Workload(rules, users)


def naive_first_match(compiled_patterns: Sequence[re.Pattern[str]], text: str) -> int | None:
    """Return the index of the first pattern that matches ``text``, searching them in order."""
    for index, pattern in enumerate(compiled_patterns):
        if pattern.search(text):
            return index
    return None


def per_call_s(call: Callable[[], object], *, budget_s: float = BUDGET_S) -> float:
    """Return the median time of one ``call`` over batches bounded in count and time."""
    started = time.perf_counter()
    call()
    once = max(time.perf_counter() - started, 1e-7)
    loops = max(1, min(100_000, int(BATCH_S / once)))
    batches: list[float] = []
    deadline = started + budget_s
    while len(batches) < REPEATS and (not batches or time.perf_counter() < deadline):
        batch_start = time.perf_counter()
        for _ in range(loops):
            call()
        batches.append((time.perf_counter() - batch_start) / loops)
    return statistics.median(batches)


def median_s(action: Callable[[], object], *, repeats: int, budget_s: float = BUDGET_S) -> float:
    """Return the median duration of ``action`` run up to ``repeats`` times within the budget."""
    durations: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(durations) < repeats and (not durations or time.perf_counter() < deadline):
        started = time.perf_counter()
        action()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


@dataclass(frozen=True)
class Row:
    """One size and case: microseconds per decision for each engine."""

    size: int
    case: str
    route_us: float
    set_match_us: float
    naive_us: float


def _check(work: Workload, naive: Sequence[re.Pattern[str]]) -> None:
    """Fail loudly if the two engines or the workload disagree on any case's winner."""
    for case, (user, expected) in work.users.items():
        found = route(user, work.rules, allow_all_agents=False)
        got = None if found is None else int(found.rule.split("[")[1].rstrip("]"))
        naive_got = naive_first_match(naive, user)
        if not got == naive_got == expected:
            raise AssertionError(f"{case} {user!r}: route {got}, re {naive_got}, want {expected}")


@dataclass(frozen=True)
class SizeFacts:
    """What one size costs besides a decision: compiling, and the stored configuration."""

    set_compile_ms: float
    re_compile_ms: float
    config_kb: float
    """The SIP configuration's stored JSON (the DynamoDB item's ``data``)."""
    config_parse_us: float
    """``SipConfig.model_validate_json`` of it: what every INVITE pays to read the rules."""


def _size_facts(work: Workload) -> tuple[SizeFacts, list[re.Pattern[str]]]:
    patterns = work.patterns
    set_compile_s = median_s(lambda: PatternSet(patterns), repeats=5)
    re.purge()
    started = time.perf_counter()
    naive = [re.compile(p) for p in patterns]
    re_compile_s = time.perf_counter() - started
    data = SipConfig(allowed_agents=work.rules).model_dump_json(by_alias=True)
    parse_s = per_call_s(lambda: SipConfig.model_validate_json(data))
    facts = SizeFacts(set_compile_s * 1e3, re_compile_s * 1e3, len(data) / 1024, parse_s * 1e6)
    return facts, naive


def measure_size(size: int) -> tuple[list[Row], SizeFacts]:
    """Return the rows of one size and what else the size costs."""
    work = workload(size)
    facts, naive = _size_facts(work)
    patterns = work.patterns
    _check(work, naive)
    pattern_set = compiled(patterns)
    rows = []
    for case in CASES:
        user, _ = work.users[case]
        rows.append(
            Row(
                size=size,
                case=case,
                route_us=1e6 * per_call_s(partial(route, user, work.rules, allow_all_agents=False)),
                set_match_us=1e6 * per_call_s(partial(pattern_set.first_match, user)),
                naive_us=1e6 * per_call_s(partial(naive_first_match, naive, user)),
            )
        )
    return rows, facts


def _table(rows: list[Row], facts: dict[int, SizeFacts]) -> list[str]:
    lines = [
        f"{'rules':>6}  {'case':<5}  {'route µs':>9}  {'(Set.Match)':>11}  {'re loop µs':>10}"
        f"  {'re/route':>8}",
    ]
    for row in rows:
        lines.append(
            f"{row.size:>6}  {row.case:<5}  {row.route_us:>9.2f}  {row.set_match_us:>11.2f}"
            f"  {row.naive_us:>10.2f}  {row.naive_us / row.route_us:>7.2f}x"
        )
    lines += [
        "",
        f"{'rules':>6}  {'RE2 Set compile ms':>18}  {'re.compile all ms':>17}"
        f"  {'config KB':>9}  {'config parse µs':>15}",
    ]
    for size, f in facts.items():
        over = (
            "  (over DynamoDB's 400 KB item limit)" if f.config_kb > DYNAMODB_ITEM_LIMIT_KB else ""
        )
        lines.append(
            f"{size:>6}  {f.set_compile_ms:>18.2f}  {f.re_compile_ms:>17.2f}"
            f"  {f.config_kb:>9.1f}  {f.config_parse_us:>15.1f}{over}"
        )
    return lines


def _growth(rows: list[Row], small: int, large: int) -> list[str]:
    by_key = {(r.size, r.case): r for r in rows}
    if (small, "miss") not in by_key or (large, "miss") not in by_key:
        return []
    lines = ["", f"growth from {small:,} to {large:,} rules ({large // small}x the rules):"]
    for case in CASES:
        a, b = by_key[(small, case)], by_key[(large, case)]
        lines.append(
            f"  {case:<5}  route x{b.route_us / a.route_us:.2f}"
            f"  (Set.Match x{b.set_match_us / a.set_match_us:.2f})"
            f"  re loop x{b.naive_us / a.naive_us:.2f}"
        )
    return lines


def _verdict(rows: list[Row]) -> list[str]:
    at_1000 = [r.route_us for r in rows if r.size == 1_000]
    if not at_1000:
        return []
    worst = max(at_1000)
    status = "met" if worst < TARGET_US_AT_1000 else "NOT met"
    return ["", f"target < {TARGET_US_AT_1000:.0f} µs at 1,000 rules: {status} (worst {worst:.1f})"]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    sizes = parser.parse_args(argv).sizes
    print(banner("routing: decision time against allowedAgents rules"))
    rows: list[Row] = []
    facts: dict[int, SizeFacts] = {}
    for size in sizes:
        size_rows, facts[size] = measure_size(size)
        rows += size_rows
    lines = _table(rows, facts) + _growth(rows, 1_000, 10_000) + _verdict(rows)
    print("\n".join(lines))
    print(
        "\nroute = chalicelib.routing.route(), warm (compiled set cached), cache key included;"
        "\n(Set.Match) = the compiled RE2 set's first_match() alone;"
        "\nre loop = precompiled re patterns searched in order, first match wins;"
        "\nre/route > 1: route is faster; config = SipConfig JSON as stored, parsed per INVITE."
    )


if __name__ == "__main__":
    main()
