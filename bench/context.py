"""Context from SIP headers: decision time against the number of ``X-`` headers (issue 8, §2).

``python -m bench.context`` times, for 10, 100 and 1,000 ``X-`` headers:

- ``incoming_context`` (bounds, JSON parsing and ``contextSchema`` filtering) with no schema, a
  *typical* schema (three properties, the rest allowed) and a *strict* one (``patternProperties``
  that half the headers fail, ``additionalProperties: false``), and, for the strict schema, the
  rule this replaced: keys added one by one, each kept if it adds no validation error (one
  whole-context validation per key, what a schema with a root ``anyOf``/``not`` still costs);
- ``decide_invite``: the whole INVITE decision on the in-memory store (configuration read,
  routing, context, prompt rendering, the call record written), strict schema.

Every measurement is bounded: at most ``REPEATS`` runs and ``BUDGET_S`` seconds (the one-by-one
rule at 1,000 headers runs once); the figure is the median. Target: a decision with 1,000
headers under 200 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from cryptography.fernet import Fernet

from bench.machine import banner
from chalicelib.clock import utc_now
from chalicelib.commands import MemoryCommandSender
from chalicelib.config import Settings
from chalicelib.context import CallerInfo, incoming_context
from chalicelib.context_schema import filter_one_by_one
from chalicelib.contracts import InviteWebhook, MediaEndpoint, Transport
from chalicelib.crypto import FernetCipher
from chalicelib.egress import EgressPolicy
from chalicelib.fallback import HttpFallbackClient
from chalicelib.ids import id_factory
from chalicelib.invites import decide_invite
from chalicelib.models import Agent, AllowedAgent, CallTemplate, SipConfig
from chalicelib.observability import logger
from chalicelib.services import Services
from chalicelib.store.memory import MemoryTable
from chalicelib.store.repository import Store

SIZES = (10, 100, 1_000)
REPEATS = 7
BUDGET_S = 10.0
TARGET_MS_AT_1000 = 200.0
CALLER = CallerInfo("+15551234567", "Alice Caller", "sip:+15551234567@carrier.example")
SCHEMAS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "typical": {
        "type": "object",
        "properties": {
            "customer_name": {"type": "string"},
            "n_1": {"type": "string"},
            "sipline": {"type": "object"},
        },
    },
    "strict": {
        "type": "object",
        "patternProperties": {
            "^n_[0-9]*[02468]$": {"type": "integer"},
            "^n_[0-9]*[13579]$": {"type": "string"},
        },
        "properties": {"sipline": {"type": "object"}},
        "additionalProperties": False,
    },
}


def headers(count: int) -> list[tuple[str, str]]:
    """``count`` X- headers: ``X-N-<i>: <i>`` (even ones integers the strict schema allows)."""
    return [(f"X-N-{i}", str(i)) for i in range(count)]


def median_ms(action: Callable[[], object], *, repeats: int = REPEATS) -> float:
    """Return the median duration of ``action``, run up to ``repeats`` times within the budget."""
    durations: list[float] = []
    deadline = time.perf_counter() + BUDGET_S
    while len(durations) < repeats and (not durations or time.perf_counter() < deadline):
        started = time.perf_counter()
        action()
        durations.append(time.perf_counter() - started)
    return 1e3 * statistics.median(durations)


def build_ms(sent: list[tuple[str, str]], schema: dict[str, Any] | None) -> float:
    """Median time of ``incoming_context`` over ``sent`` with ``schema``."""
    return median_ms(lambda: incoming_context(sent, CALLER, schema))


def one_by_one_ms(count: int) -> float:
    """The rule before: validate the whole context once per key (strict schema)."""
    schema = SCHEMAS["strict"]
    assert schema is not None
    candidates: list[tuple[tuple[str, ...], Any]] = [((f"n_{i}",), i) for i in range(count)]
    return median_ms(
        lambda: filter_one_by_one(candidates, schema), repeats=1 if count >= 1000 else 3
    )


def services_with_strict_agent() -> Services:
    """In-memory services holding one agent (strict schema) routed by ``^sales$``."""
    new_id = id_factory(utc_now)
    store = Store(MemoryTable())
    agent = Agent(
        agent_id=new_id(),
        name="sales",
        created=utc_now(),
        call_template=CallTemplate(
            system_prompt="Hello {{n_0}}, calling from {{sipline.sip.caller_id}}.",
            context_schema=SCHEMAS["strict"],
            media_endpoint=MediaEndpoint(url="ws://127.0.0.1:9000/agent"),
        ),
    )
    store.create_agent("default", agent)
    rules = [AllowedAgent(agent_id=agent.agent_id, to_user_pattern="^sales$")]
    store.save_sip_config(
        "default", SipConfig(allowed_cidr_ranges=["203.0.113.0/24"], allowed_agents=rules), 0
    )
    return Services(
        settings=Settings(sip_domain="sip.example.test"),
        store=store,
        cipher=FernetCipher(Fernet.generate_key().decode()),
        commands=MemoryCommandSender(),
        fallback=HttpFallbackClient(timeout_s=1.0, egress=EgressPolicy()),
        new_id=new_id,
    )


def decide_ms(count: int) -> float:
    """Median time of a whole INVITE decision with ``count`` X- headers (a new call each)."""
    services = services_with_strict_agent()
    sent = [list(h) for h in headers(count)]
    serial = iter(range(1_000_000))

    def decide() -> None:
        invite = InviteWebhook(
            source_ip="203.0.113.10",
            source_port=5060,
            transport=Transport.UDP,
            request_uri="sip:sales@sip.example.test",
            from_uri="sip:+15551234567@carrier.example",
            to_uri="sip:sales@sip.example.test",
            sip_call_id=f"bench-{next(serial)}@carrier.example",
            headers=sent,
        )
        decision = decide_invite(services, invite)
        assert decision.template_context.get("n_0") == 0

    return median_ms(decide)


def run(sizes: tuple[int, ...]) -> list[str]:
    """Measure every size and return the report's lines."""
    lines = [
        f"{'headers':>7}  {'none ms':>8}  {'typical ms':>10}  {'strict ms':>9}"
        f"  {'one-by-one ms':>13}  {'decide ms':>9}"
    ]
    decided: dict[int, float] = {}
    for count in sizes:
        built = {name: build_ms(headers(count), schema) for name, schema in SCHEMAS.items()}
        decided[count] = decide_ms(count)
        lines.append(
            f"{count:>7}  {built['none']:>8.2f}  {built['typical']:>10.2f}"
            f"  {built['strict']:>9.2f}  {one_by_one_ms(count):>13.1f}  {decided[count]:>9.2f}"
        )
    if 1_000 in decided:
        met = "met" if decided[1_000] < TARGET_MS_AT_1000 else "NOT met"
        lines += ["", f"target < {TARGET_MS_AT_1000:.0f} ms to decide 1,000 headers: {met}"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    logger.setLevel("WARNING")  # one "context keys dropped" line per decision otherwise
    print(banner("context from SIP headers (bench/context.py)"))
    print("\n".join(run(tuple(args.sizes))))


if __name__ == "__main__":
    main()
