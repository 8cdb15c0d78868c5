"""``message/sipfrag`` status lines and the refer event's header fields (pure).

RFC 3420, RFC 3515 §2.4.4-§2.4.6, RFC 6665 §8.2. Theory of operation
====================================================================

1. A NOTIFY of the ``refer`` event package carries a ``message/sipfrag`` body (RFC 3420)
   whose first line is the Status-Line of the response the referee got to the request the
   REFER asked for (RFC 3515 §2.4.5): ``SIP/2.0 100 Trying``, ``SIP/2.0 200 OK``,
   ``SIP/2.0 603 Declined``. The fragment may go on with header fields and a body; only the
   status line matters here. :func:`parse_sipfrag` reads it (at most
   :data:`MAX_SIPFRAG_BYTES` bytes, a status line of at most :data:`MAX_STATUS_LINE_CHARS`),
   :func:`format_sipfrag` writes one. ``Content-Type: message/sipfrag;version=2.0`` (RFC
   3515's own examples) is the same type: :func:`is_sipfrag` ignores parameters.
2. ``Event: refer;id=93809824`` (RFC 6665 §8.2.1, RFC 3515 §2.4.6): the package and the id
   of the subscription, the CSeq number of the REFER that created it; the first REFER of a
   dialog may be notified without an id. :func:`parse_event` returns an :class:`EventHeader`.
3. ``Subscription-State: active;expires=60`` / ``terminated;reason=noresource`` (RFC 6665
   §8.2.3): :func:`parse_subscription_state` returns a :class:`SubscriptionState`.
Malformed values raise ``SipParseError`` naming the header field or the body (a 400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from relay.sip.errors import SipParseError
from relay.sip.syntax import abnf
from relay.sip.syntax.uri import find_param, parse_params

__all__ = [
    "MAX_SIPFRAG_BYTES",
    "SIPFRAG",
    "EventHeader",
    "SipFragStatus",
    "SubscriptionState",
    "format_sipfrag",
    "is_sipfrag",
    "parse_event",
    "parse_sipfrag",
    "parse_subscription_state",
]

SIPFRAG = "message/sipfrag"
MAX_SIPFRAG_BYTES = 4096
"""Largest sipfrag body read (rule 1); the status line is all we use."""
MAX_STATUS_LINE_CHARS = 256
_STATUS_LINE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9])(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
_TOKEN = re.compile(abnf.TOKEN)


@dataclass(frozen=True, slots=True)
class SipFragStatus:
    """The Status-Line of a sipfrag (rule 1)."""

    status: int
    reason: str

    @property
    def final(self) -> bool:
        """Whether it is a final response (200-699)."""
        return self.status >= 200


def is_sipfrag(content_type: str | None) -> bool:
    """Return whether a Content-Type value is ``message/sipfrag``, whatever its parameters."""
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == SIPFRAG


def parse_sipfrag(body: bytes) -> SipFragStatus:
    """Read the Status-Line a sipfrag body starts with (rule 1).

    Raises:
        SipParseError: the body is too long, or does not start with a SIP/2.0 Status-Line.
    """
    if len(body) > MAX_SIPFRAG_BYTES:
        raise SipParseError(f"sipfrag body longer than {MAX_SIPFRAG_BYTES} bytes")
    first = body.split(b"\n", 1)[0].rstrip(b"\r")
    text = first[:MAX_STATUS_LINE_CHARS].decode("utf-8", "replace")
    match = _STATUS_LINE.fullmatch(text) if len(first) <= MAX_STATUS_LINE_CHARS else None
    if match is None:
        raise SipParseError("sipfrag body does not start with a SIP/2.0 Status-Line")
    return SipFragStatus(int(match.group(1)), (match.group(2) or "").strip())


def format_sipfrag(status: int, reason: str) -> bytes:
    """Return a sipfrag body holding the Status-Line ``SIP/2.0 <status> <reason>``."""
    return f"SIP/2.0 {status} {reason}\r\n".encode()


@dataclass(frozen=True, slots=True)
class EventHeader:
    """An ``Event`` value (rule 2)."""

    package: str
    """The event package, lower-cased (``refer``)."""
    id: str | None
    """The ``id`` parameter: for ``refer``, the CSeq number of the REFER."""


def parse_event(value: str) -> EventHeader:
    """Parse an ``Event`` header field value (rule 2).

    Raises:
        SipParseError: the package is not a token, or the parameters are malformed.
    """
    package, semi, rest = value.partition(";")
    package = package.strip()
    if not _TOKEN.fullmatch(package):
        raise SipParseError("Invalid Event header field", header="Event")
    params = parse_params(semi + rest, header="Event")
    return EventHeader(package.lower(), find_param(params, "id"))


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """A ``Subscription-State`` value (rule 3)."""

    state: str
    """``active``, ``pending``, ``terminated`` (lower-cased), or an extension."""
    reason: str | None
    expires_s: int | None

    @property
    def terminated(self) -> bool:
        """Whether the notifier ended the subscription (RFC 6665 §4.1.3)."""
        return self.state == "terminated"


def parse_subscription_state(value: str) -> SubscriptionState:
    """Parse a ``Subscription-State`` header field value (rule 3).

    Parameters that do not parse are dropped (the state alone is kept), so that a peer's
    malformed ``reason`` cannot keep a subscription from ending.

    Raises:
        SipParseError: the state is not a token, or ``expires`` is not a number.
    """
    state, semi, rest = value.partition(";")
    state = state.strip()
    header = "Subscription-State"
    if not _TOKEN.fullmatch(state):
        raise SipParseError("Invalid Subscription-State header field", header=header)
    try:
        params = parse_params(semi + rest, header=header)
    except SipParseError:
        # Liberal in what is accepted (RFC 3261 §8.2.2's spirit): the state decides what happens,
        # and linphone 5.1 ends a REFER's subscription with
        # "terminated;reason=reason=noresource" (tests/interop/transfer_peers.py): keep the state,
        # drop parameters that do not parse.
        params = parse_params("", header=header)
    expires = find_param(params, "expires")
    if expires is not None and not (expires.isdigit() and len(expires) <= 10):
        raise SipParseError("Invalid expires in Subscription-State header field", header=header)
    reason = find_param(params, "reason")
    return SubscriptionState(
        state.lower(), reason.lower() if reason else None, int(expires) if expires else None
    )
