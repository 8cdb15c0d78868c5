"""Session timers (RFC 4028): negotiating the interval and the refresher, and when to act.

Theory of operation
===================

1. A session refresh request (INVITE, re-INVITE or UPDATE) may carry ``Session-Expires:
   <delta>[;refresher=uac|uas]`` and ``Min-SE``; ``Supported: timer`` says the sender knows
   the extension. We answer it as a UAS (§9) with :func:`negotiate_as_uas`:

   - an interval below our minimum gets 422 with our ``Min-SE`` when the sender supports
     timers, and is raised to our minimum otherwise (§9 with erratum 1687);
   - the interval is the request's, lowered to our preferred maximum but never below the
     request's ``Min-SE``; with no ``Session-Expires`` we add our preferred one;
   - the refresher is the request's choice, else the caller when it supports timers (it knows
     how), else us (§9: the side that supports the extension refreshes);
   - the 2xx carries ``Session-Expires`` with the refresher, and ``Require: timer`` whenever
     the caller supports timers (mandatory when the refresher is the caller).

2. The refresher refreshes at half the interval (§10); the other side ends the session with
   BYE when no refresh arrived by ``interval - min(32, interval / 3)`` after the last one
   (§10). We arm that expiry on both sides, so a refresher whose refreshes keep failing also
   gives up.
3. As a UAC (our outgoing INVITE says ``Supported: timer`` and asks for no interval, so no
   422 can come back), the 2xx settles the timer (:func:`negotiate_as_uac`, RFC 4028 §7.2):
   no ``Session-Expires``, no timer; ``refresher=uas`` the peer refreshes and we arm the
   expiry; ``refresher=uac`` (or none named) we refresh. An interval below 90 s is raised to 90
   s, so a hostile 2xx cannot make us refresh many times a second.
4. When we refresh, our request says ``refresher=uac`` (we keep the role, §7.4) and the 2xx's
   ``Session-Expires`` settles interval and refresher (:func:`read_refresh_response`). A 2xx
   without one comes from a peer that ignores the extension: we keep refreshing on our
   interval (RFC 4028 §7.2 would stop the timer; a dead peer must still be noticed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Self

from relay.sip.errors import SipParseError
from relay.sip.syntax.message import Request, Response

__all__ = [
    "MIN_SE_FLOOR_S",
    "Refresher",
    "SessionExpires",
    "SessionTimer",
    "SessionTimerPolicy",
    "SessionTimerTooSmall",
    "negotiate_as_uac",
    "negotiate_as_uas",
    "read_refresh_response",
    "refresh_request_headers",
    "supports_timer",
]

MIN_SE_FLOOR_S = 90  # RFC 4028 §4: "the absolute minimum for the Session-Expires header field"
RECOMMENDED_SESSION_EXPIRES_S = 1800  # RFC 4028 §4: "RECOMMENDED value of 1800 seconds"
MAX_EXPIRY_MARGIN_S = 32.0  # RFC 4028 §10: BYE at "min(32, one third of the interval)" early
_DELTA = re.compile(r"[0-9]{1,10}")


class Refresher(StrEnum):
    """Who refreshes, as the ``refresher`` parameter names it (RFC 4028 §4)."""

    UAC = "uac"
    UAS = "uas"


@dataclass(frozen=True, slots=True)
class SessionExpires:
    """A ``Session-Expires`` value (RFC 4028 §4)."""

    interval_s: int
    refresher: Refresher | None = None

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``delta-seconds *(;se-params)``.

        Raises:
            SipParseError: naming Session-Expires.
        """
        delta, *params = (part.strip(" \t") for part in text.split(";"))
        if not _DELTA.fullmatch(delta):
            raise SipParseError(
                f"Invalid Session-Expires header field: {text[:40]!r}", header="Session-Expires"
            )
        refresher = None
        for param in params:
            name, _, value = param.partition("=")
            if name.strip(" \t").lower() == "refresher":
                try:
                    refresher = Refresher(value.strip(" \t").lower())
                except ValueError:
                    raise SipParseError(
                        f"Invalid refresher in Session-Expires: {value[:20]!r}",
                        header="Session-Expires",
                    ) from None
        return cls(int(delta), refresher)

    def __str__(self) -> str:
        """Format as ``1800;refresher=uac``."""
        suffix = "" if self.refresher is None else f";refresher={self.refresher}"
        return f"{self.interval_s}{suffix}"


@dataclass(frozen=True, slots=True)
class SessionTimerPolicy:
    """Our session timer settings."""

    session_expires_s: int | None = RECOMMENDED_SESSION_EXPIRES_S
    """The interval we want; ``None``: never add one, only honour the peer's."""
    min_se_s: int = MIN_SE_FLOOR_S
    """The smallest interval we accept (RFC 4028 §5), at least 90."""

    def __post_init__(self) -> None:
        """Refuse a minimum below RFC 4028's floor or a preferred interval below it."""
        if self.min_se_s < MIN_SE_FLOOR_S:
            raise ValueError(f"Min-SE must be at least {MIN_SE_FLOOR_S} s (RFC 4028 §4)")
        if self.session_expires_s is not None and self.session_expires_s < self.min_se_s:
            raise ValueError("session_expires_s must not be below min_se_s")


@dataclass(frozen=True, slots=True)
class SessionTimerTooSmall:
    """Answer 422 with our ``Min-SE`` (RFC 4028 §6)."""

    min_se_s: int
    status: int = 422

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The header fields the 422 must carry."""
        return (("Min-SE", str(self.min_se_s)),)


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """An agreed session interval and who refreshes (RFC 4028 §9)."""

    interval_s: int
    we_refresh: bool
    response_headers: tuple[tuple[str, str], ...] = ()
    """What our 2xx says: ``Session-Expires`` and perhaps ``Require: timer``."""

    def refresh_at(self, start: float) -> float | None:
        """Return when we refresh (half the interval, §10), or ``None`` if the peer does."""
        return start + self.interval_s / 2 if self.we_refresh else None

    def expires_at(self, start: float) -> float:
        """Return when the session is over without a refresh since ``start`` (§10)."""
        return start + self.interval_s - min(MAX_EXPIRY_MARGIN_S, self.interval_s / 3)


def supports_timer(message: Request | Response) -> bool:
    """Return whether ``Supported`` (or ``Require``) lists ``timer``."""
    tags = (*message.headers.get_all("Supported"), *message.headers.get_all("Require"))
    return any(tag.lower() == "timer" for tag in tags)


def _min_se(request: Request) -> int:
    value = request.headers.get("Min-SE")
    if value is None:
        return MIN_SE_FLOOR_S
    delta = value.partition(";")[0].strip(" \t")
    if not _DELTA.fullmatch(delta):
        raise SipParseError(f"Invalid Min-SE header field: {value[:40]!r}", header="Min-SE")
    return max(int(delta), MIN_SE_FLOOR_S)


def negotiate_as_uas(
    request: Request, policy: SessionTimerPolicy
) -> SessionTimer | SessionTimerTooSmall | None:
    """Decide the session timer of our 2xx to a refresh request (rule 1).

    Returns:
        The agreement, a 422 to send instead, or ``None`` when no timer runs.

    Raises:
        SipParseError: a malformed ``Session-Expires`` or ``Min-SE`` (answer 400).
    """
    supported = supports_timer(request)
    asked = request.headers.typed("Session-Expires", SessionExpires.parse)
    floor = max(_min_se(request), policy.min_se_s)
    if asked is None:
        if policy.session_expires_s is None:
            return None
        interval, refresher = max(policy.session_expires_s, floor), None
    else:
        if asked.interval_s < policy.min_se_s and supported:
            return SessionTimerTooSmall(policy.min_se_s)
        interval, refresher = asked.interval_s, asked.refresher
        if policy.session_expires_s is not None:
            interval = min(interval, policy.session_expires_s)
        interval = max(interval, floor)
    if refresher is None or not supported:
        refresher = Refresher.UAC if supported else Refresher.UAS
    headers = [("Session-Expires", str(SessionExpires(interval, refresher)))]
    if supported:
        headers.append(("Require", "timer"))
    return SessionTimer(interval, refresher is Refresher.UAS, tuple(headers))


def negotiate_as_uac(response: Response) -> SessionTimer | None:
    """Return the session timer the 2xx to our initial INVITE settles (rule 3).

    A malformed ``Session-Expires`` counts as none: the call goes on without a timer.
    """
    try:
        settled = response.headers.typed("Session-Expires", SessionExpires.parse)
    except SipParseError:
        return None
    if settled is None:
        return None
    interval = max(settled.interval_s, MIN_SE_FLOOR_S)
    return SessionTimer(interval, settled.refresher is not Refresher.UAS)


def refresh_request_headers(
    interval_s: int, policy: SessionTimerPolicy
) -> tuple[tuple[str, str], ...]:
    """Return the header fields of a refresh we send to keep the refresher role (§7.4)."""
    return (
        ("Session-Expires", str(SessionExpires(interval_s, Refresher.UAC))),
        ("Min-SE", str(policy.min_se_s)),
    )


def read_refresh_response(response: Response, current: SessionTimer) -> SessionTimer:
    """Return the timer a 2xx to our refresh settles (rule 4).

    Raises:
        SipParseError: a malformed ``Session-Expires`` (the caller keeps ``current``).
    """
    settled = response.headers.typed("Session-Expires", SessionExpires.parse)
    if settled is None:
        return current
    return SessionTimer(settled.interval_s, settled.refresher is not Refresher.UAS)


def raised_min_se(response: Response, current_s: int) -> int:
    """Return the interval to retry with after a 422 to our refresh (RFC 4028 §7.3)."""
    value = response.headers.get("Min-SE", "") or ""
    delta = value.partition(";")[0].strip(" \t")
    return max(current_s, int(delta)) if _DELTA.fullmatch(delta) else current_s
