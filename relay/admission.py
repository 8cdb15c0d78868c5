"""Who may start a call at this edge, decided before any transaction or webhook (pure).

The SIP endpoint asks :class:`InviteAdmission` about every INVITE that would start a call, before
its transaction layer sees it (``relay/sip/stateless.py``), and sends a refusal statelessly: one
response per INVITE received, nothing retransmitted (docs/relay.md, the IP guard):

1. **The IP guard.** A fresh copy of the allowlist that excludes the source: 403 (rule
   ``source_ip_not_allowed``). An unknown or stale copy decides nothing (the webhook does).
2. **The INVITE rate per source** (``rate_limit.py``): beyond the source's bucket, 503 with
   Retry-After (rule ``invite_rate_exceeded``). The guard goes first, so a refused scanner takes
   no bucket.

Neither reads a clock: ``now`` is the endpoint's (monotonic seconds).
"""

from __future__ import annotations

from relay.control.webhooks import AllowlistCache
from relay.rate_limit import SourceRateLimiter
from relay.sip.address import Address
from relay.sip.stateless import Refusal
from relay.sip.syntax.message import Request

__all__ = ["InviteAdmission", "NOT_ALLOWED", "rate_exceeded"]

NOT_ALLOWED = Refusal(403, "source_ip_not_allowed", "Source Address Not Allowed")


def rate_exceeded(retry_after_s: int) -> Refusal:
    """Return the 503 of a source beyond its INVITE rate (RFC 3261 §21.5.4, §20.33)."""
    return Refusal(
        503,
        "invite_rate_exceeded",
        "INVITE Rate Exceeded",
        (("Retry-After", str(retry_after_s)),),
    )


class InviteAdmission:
    """The IP guard, then the rate limit (see the module docstring)."""

    def __init__(self, allowlist: AllowlistCache, rate: SourceRateLimiter) -> None:
        self.allowlist = allowlist
        self.rate = rate

    def refusal(self, request: Request, source: Address, now: float) -> Refusal | None:
        """Return how to refuse a new INVITE from ``source``, or ``None`` to ask the webhook."""
        if self.allowlist.allowed(source.host, now) is False:  # None: unknown, let it through
            return NOT_ALLOWED
        wait_s = self.rate.take(source.host, now)
        return None if wait_s is None else rate_exceeded(wait_s)
