"""Whose RTP a call accepts: the latched source (symmetric RTP) and a per-call rate limit.

Theory of operation:

1. The first packet latches the caller's address and SSRC. We then send to that address, not to
   the one in the SDP: behind NAT they differ, and symmetric RTP is what makes such calls
   work (RFC 4961 §3 asks peers to send from where they receive).
2. Another SSRC from the latched address is accepted when its packet carries the marker bit
   (Asterisk and FreeSWITCH set it when they change source) or the latched SSRC has been quiet
   for ``switch_after_s``; until then, it is foreign and dropped.
3. Another address is accepted only after that quiet time (NAT rebinding, a media server failing
   over), never on the marker bit alone: anyone can set a bit, so an injected stream cannot
   take the call over while the real one is talking.
4. ``reset`` re-opens the latch: a re-INVITE that moves the remote's media does that.
5. `TokenBucket` bounds the datagrams one call parses per second, so a flood costs one
   comparison per packet and cannot starve the other calls of the process.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

Address = tuple[str, int]


class SourceVerdict(enum.Enum):
    """What `SourceLatch.check` made of a packet."""

    SAME = "same"
    LATCHED = "latched"
    """The first packet, or one after `SourceLatch.reset`."""
    NEW_SSRC = "new_ssrc"
    NEW_ADDRESS = "new_address"
    FOREIGN_SSRC = "foreign_ssrc"
    FOREIGN_ADDRESS = "foreign_address"

    @property
    def accepted(self) -> bool:
        """Return whether the packet is the caller's."""
        return self not in (SourceVerdict.FOREIGN_SSRC, SourceVerdict.FOREIGN_ADDRESS)


@dataclass(slots=True)
class SourceLatch:
    """The caller's address and SSRC, when we last heard from them, and what was refused."""

    switch_after_s: float
    address: Address | None = None
    ssrc: int | None = None
    last_heard_at: float = 0.0
    counts: dict[SourceVerdict, int] = field(default_factory=dict)
    """How many packets got each verdict other than `SourceVerdict.SAME`."""

    def check(self, ssrc: int, address: Address, *, marker: bool, now: float) -> SourceVerdict:
        """Decide on a packet from ``address`` with ``ssrc``; latch it when accepted."""
        if self.ssrc is None:
            verdict = SourceVerdict.LATCHED
        elif address == self.address and ssrc == self.ssrc:
            verdict = SourceVerdict.SAME
        else:
            quiet = now - self.last_heard_at >= self.switch_after_s
            if address != self.address:
                verdict = SourceVerdict.NEW_ADDRESS if quiet else SourceVerdict.FOREIGN_ADDRESS
            else:
                accept = quiet or marker
                verdict = SourceVerdict.NEW_SSRC if accept else SourceVerdict.FOREIGN_SSRC
        if verdict.accepted:
            self.address, self.ssrc, self.last_heard_at = address, ssrc, now
        if verdict is not SourceVerdict.SAME:
            self.counts[verdict] = self.counts.get(verdict, 0) + 1
        return verdict

    def reset(self) -> None:
        """Forget the latched source: the next packet latches again."""
        self.address = self.ssrc = None


class TokenBucket:
    """Allow ``rate_per_s`` events per second on average, ``burst`` at once."""

    __slots__ = ("_at", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float, *, now: float) -> None:
        """Start full at ``now``."""
        self.rate_per_s, self.burst = rate_per_s, burst
        self._tokens, self._at = burst, now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        tokens = self._tokens + max(0.0, now - self._at) * self.rate_per_s
        self._at = now
        if tokens < 1:
            self._tokens = tokens
            return False
        self._tokens = min(self.burst, tokens) - 1
        return True
