"""Refusing a request statelessly: one response per request received (RFC 3261 §8.2.7, §16.11).

Theory of operation
===================

1. Over UDP a request's source address can be forged. A refusal sent through an INVITE server
   transaction is retransmitted on Timer G until Timer H (64*T1): about ten copies of the 403 to
   whoever the forger named, from one datagram. A refusal made *before* any transaction or call
   exists is therefore sent the way a stateless UAS sends (§8.2.7): no transaction, no
   ``100 Trying``, no retransmission; the ACK that acknowledges it matches nothing and is
   ignored. A retransmitted request is refused again: one response per request received, never
   more, so the edge reflects at most what it is sent.
2. The To tag of a stateless response is derived from the request ("in a manner that will
   generate the same tag for the same request consistently", §8.2.7; §19.3), so a refused
   retransmission gets the same bytes.
3. Who is refused is policy, not protocol: the endpoint asks an :class:`Admission` (passed in by
   the application, pure, ``now`` an argument) about every INVITE that would start a new
   call, before the transaction layer sees it. It answers ``None`` (go on) or a :class:`Refusal`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Protocol

from relay.sip.address import Address
from relay.sip.syntax.message import REASON_PHRASES, Request, Response, make_response
from relay.sip.syntax.via import response_destination, stamp_top_via

__all__ = ["Admission", "Refusal", "invite_refusal", "stateless_reply", "stateless_tag"]

_TAG_HEX_DIGITS = 16  # 64 bits: as many as new_tag's random ones (RFC 3261 §19.3 asks 32)


@dataclass(frozen=True, slots=True)
class Refusal:
    """How to refuse a request: a final status, its reason phrase, extra header fields."""

    status: int
    rule: str
    """What refused it, for logs and metrics (``"source_ip_not_allowed"``, ...)."""
    reason: str | None = None
    """The reason phrase; ``None``: the standard one for ``status``."""
    headers: tuple[tuple[str, str], ...] = ()
    """E.g. ``Retry-After`` for a 503 (RFC 3261 §20.33)."""

    @property
    def phrase(self) -> str:
        """The reason phrase to send."""
        return self.reason or REASON_PHRASES.get(self.status, "Refused")


class Admission(Protocol):
    """Decides, before any transaction exists, whether an INVITE may start a call."""

    def refusal(self, request: Request, source: Address, now: float) -> Refusal | None:
        """Return how to refuse ``request`` from ``source`` at ``now``, or ``None`` to go on."""
        ...


NO_DIALOG = Refusal(481, "no_dialog")
"""An INVITE with a To tag naming a dialog that does not exist (RFC 3261 §12.2.2)."""


def invite_refusal(
    request: Request,
    source: Address,
    now: float,
    admission: Admission | None,
    *,
    dialog_exists: bool,
) -> Refusal | None:
    """Return how to refuse an INVITE that no transaction holds, or ``None`` to go on (rule 3).

    An INVITE with a To tag is refused only when its dialog does not exist; one without (a new
    call) is put to ``admission`` (``None``: everybody may call).
    """
    if request.to.tag is not None:
        return None if dialog_exists else NO_DIALOG
    return None if admission is None else admission.refusal(request, source, now)


def stateless_tag(request: Request) -> str:
    """Return the To tag of a stateless response: the same for the same request (§8.2.7)."""
    via = request.top_via
    identity = "\n".join(
        (request.call_id, request.from_.tag or "", via.branch or "", str(request.cseq.number))
    )
    return hashlib.sha256(identity.encode()).hexdigest()[:_TAG_HEX_DIGITS]


def stateless_reply(
    request: Request, source: Address, refusal: Refusal, server: str
) -> tuple[Response, Address]:
    """Return the one response that refuses ``request`` from ``source``, and where it goes.

    The top Via is stamped as on arrival (received, rport: §18.2.1) and the response goes where
    §18.2.2 sends responses, as a transaction's would.
    """
    stamped = replace(request, headers=stamp_top_via(request.headers, source))
    headers = (("Server", server), *refusal.headers)
    reply = make_response(
        stamped,
        refusal.status,
        refusal.phrase,
        to_tag=stateless_tag(request),
        extra_headers=headers,
    )
    return reply, response_destination(stamped.top_via, source)
