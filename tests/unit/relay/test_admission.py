"""Who may start a call: the IP guard, then the INVITE rate per source (relay/admission.py)."""

from __future__ import annotations

from chalicelib.contracts import AllowlistSnapshot
from relay.admission import NOT_ALLOWED, InviteAdmission
from relay.control.webhooks import AllowlistCache
from relay.rate_limit import RateLimit, SourceRateLimiter
from relay.sip.address import Address
from relay.sip.stateless import Refusal
from relay.sip.syntax.message import Request
from relay.sip.syntax.parser import parse_message
from tests.unit.relay.sip.test_stateless import invite

CARRIER = Address("203.0.113.10", 5060)
SCANNER = Address("198.51.100.7", 5060)


def request() -> Request:
    message = parse_message(invite())
    assert isinstance(message, Request)
    return message


def admission(*ranges: str, rate: RateLimit | None = None, fetched: bool = True) -> InviteAdmission:
    cache = AllowlistCache(max_age_s=120)
    if fetched:
        cache.update(AllowlistSnapshot(allowed_cidr_ranges=list(ranges), version=1), now=0.0)
    return InviteAdmission(cache, SourceRateLimiter(rate))


def test_a_source_outside_a_fresh_allowlist_is_refused_with_403() -> None:
    gate = admission("203.0.113.0/24")

    assert gate.refusal(request(), SCANNER, now=1.0) == NOT_ALLOWED
    assert gate.refusal(request(), CARRIER, now=1.0) is None
    assert (NOT_ALLOWED.status, NOT_ALLOWED.phrase) == (403, "Source Address Not Allowed")


def test_beyond_its_burst_a_source_gets_503_with_retry_after() -> None:
    gate = admission("203.0.113.0/24", rate=RateLimit(rate_per_s=5.0, burst=20))

    answers = [gate.refusal(request(), CARRIER, now=1.0) for _ in range(21)]

    assert answers[:20] == [None] * 20
    assert answers[20] == Refusal(
        503, "invite_rate_exceeded", "INVITE Rate Exceeded", (("Retry-After", "1"),)
    )


def test_a_refused_scanner_takes_no_bucket() -> None:
    gate = admission("203.0.113.0/24")

    for _ in range(1000):
        gate.refusal(request(), SCANNER, now=1.0)

    assert len(gate.rate) == 0


def test_without_a_fresh_allowlist_the_rate_limit_still_holds_before_the_webhook() -> None:
    gate = admission(rate=RateLimit(rate_per_s=1.0, burst=2), fetched=False)

    answers = [gate.refusal(request(), SCANNER, now=0.0) for _ in range(3)]

    assert answers[:2] == [None, None]  # the guard cannot tell: the webhook decides
    assert answers[2] is not None and answers[2].status == 503
