"""Decide, then do: what to answer an incoming INVITE, and what to offer an outgoing call's callee.

:func:`plan_incoming_invite` turns the INVITE and the control plane's decision
(``chalicelib.contracts.InviteAccepted | InviteRejected``) into an :class:`AcceptPlan` (the SDP
to send) or a :class:`RejectPlan` (a status, a reason phrase, header fields); a short async
function in the glue executes it on the :class:`~relay.sip.usage.incoming.IncomingCall`.
:func:`plan_unavailable` is the answer when the control plane is down or slow: 503 with
Retry-After (RFC 3261 §21.5.4).

:func:`plan_outgoing_offer` is the other direction: the SDP offer of an outgoing call's INVITE
(``relay/calls/outgoing.py``), from the ``dial`` command's codec preference (the deployment's
``SIPLINE_CODEC_PREFERENCE``, the same list an incoming call's answer prefers; the default when
the command has none), with telephone-event at each offered clock rate (RFC 4733), so the callee
can send digits and the agent can send them back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chalicelib.config import DEFAULT_CODEC_PREFERENCE
from chalicelib.contracts import InviteAccepted, InviteRejected
from relay.sip.sdp.codecs import codec_spec
from relay.sip.sdp.description import SessionDescription
from relay.sip.sdp.fields import SdpParseError
from relay.sip.sdp.offer_answer import NegotiatedMedia, NoCommonCodec, build_offer, negotiate
from relay.sip.syntax.message import REASON_PHRASES, Request

__all__ = [
    "AcceptPlan",
    "OfferPlan",
    "RejectPlan",
    "codec_names",
    "plan_incoming_invite",
    "plan_outgoing_offer",
    "plan_unavailable",
]

SERVICE_UNAVAILABLE = 503  # RFC 3261 §21.5.4
BAD_REQUEST = 400


@dataclass(frozen=True, slots=True)
class AcceptPlan:
    """Answer 200 with ``sdp`` (after 180 if the glue wants to ring first)."""

    decision: InviteAccepted
    sdp: SessionDescription
    """Our answer; our offer when the INVITE had no SDP (late offer)."""
    media: NegotiatedMedia | None
    """What the answer sets up; ``None`` for a late offer (the ACK's answer settles it)."""
    preference: tuple[str, ...]
    """The call's codecs, best first, for ``IncomingCall.accept`` and later re-offers."""

    @property
    def is_late_offer(self) -> bool:
        """Whether ``sdp`` is an offer (the INVITE had none)."""
        return self.media is None


@dataclass(frozen=True, slots=True)
class RejectPlan:
    """Answer the INVITE with ``status``."""

    status: int
    reason: str
    """The reason phrase."""
    headers: tuple[tuple[str, str], ...] = ()
    """E.g. ``Retry-After`` for a 503, ``Warning`` for a 488."""


@dataclass(frozen=True, slots=True)
class OfferPlan:
    """Offer ``sdp`` in an outgoing INVITE."""

    sdp: SessionDescription
    preference: tuple[str, ...]
    """The call's codecs, best first: the answer is read against them (``place_call``)."""


def codec_names(preference: Iterable[str]) -> tuple[str, ...]:
    """Map the control plane's ``name/clock[/channels]`` entries to codec names we can use.

    ``"opus/48000/2"`` becomes ``"opus"``, ``"G722/8000"`` ``"G722"``; codecs sipline cannot
    encode (``"G729/8000"``) are left out, duplicates too.
    """
    names: list[str] = []
    for entry in preference:
        try:
            name = codec_spec(entry.split("/", 1)[0]).name
        except ValueError:
            continue
        if name not in names:
            names.append(name)
    return tuple(names)


def plan_incoming_invite(
    request: Request,
    decision: InviteAccepted | InviteRejected,
    *,
    local_address: str,
    local_port: int,
    session_id: int,
    warning_agent: str,
) -> AcceptPlan | RejectPlan:
    """Decide the answer to an INVITE.

    Args:
        request: the INVITE (its body is the offer, or empty for a late offer).
        decision: the control plane's answer.
        local_address, local_port: where we receive RTP for this call.
        session_id: our ``o=`` session id (from the id source).
        warning_agent: the ``warn-agent`` of a 488's Warning (our host or name).
    """
    if isinstance(decision, InviteRejected):
        status, wait_s = decision.sip_status, decision.retry_after_s
        headers = () if wait_s is None else (("Retry-After", str(wait_s)),)  # RFC 3261 §20.33
        return RejectPlan(status, REASON_PHRASES.get(status, "Rejected"), headers)
    preference = codec_names(decision.codec_preference) or codec_names(DEFAULT_CODEC_PREFERENCE)
    if not request.body:
        offer = build_offer(
            preference=preference,
            local_address=local_address,
            local_port=local_port,
            session_id=session_id,
            session_version=session_id,
        )
        return AcceptPlan(decision, offer, None, preference)
    try:
        remote = SessionDescription.parse(request.body)
    except SdpParseError as err:
        return RejectPlan(BAD_REQUEST, f"Malformed SDP body: {err}"[:120])
    result = negotiate(
        remote,
        preference=preference,
        local_address=local_address,
        local_port=local_port,
        session_id=session_id,
        session_version=session_id,
    )
    if isinstance(result, NoCommonCodec):
        warning = ("Warning", result.warning_header(warning_agent))
        return RejectPlan(result.status_code, REASON_PHRASES[result.status_code], (warning,))
    return AcceptPlan(decision, result.sdp, result.media, preference)


def plan_unavailable(retry_after_s: int) -> RejectPlan:
    """Return 503 with Retry-After: no decision in time, or no RTP port free (the relay is busy)."""
    return RejectPlan(
        SERVICE_UNAVAILABLE,
        REASON_PHRASES[SERVICE_UNAVAILABLE],
        (("Retry-After", str(max(0, int(retry_after_s)))),),
    )


def plan_outgoing_offer(
    codec_preference: Iterable[str], *, local_address: str, local_port: int, session_id: int
) -> OfferPlan:
    """The SDP offer of an outgoing call (see the module docstring).

    Args:
        codec_preference: the ``dial`` command's ``name/clock[/channels]`` list; codecs sipline
            cannot use are left out, and an empty result falls back to the default list.
        local_address, local_port: where we receive RTP for this call.
        session_id: our ``o=`` session id (from the id source).
    """
    preference = codec_names(codec_preference) or codec_names(DEFAULT_CODEC_PREFERENCE)
    offer = build_offer(
        preference=preference,
        local_address=local_address,
        local_port=local_port,
        session_id=session_id,
        session_version=session_id,
    )
    return OfferPlan(offer, preference)
