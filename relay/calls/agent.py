"""The agent's side of a call: the ids and context it is given, its bridge, and the media start.

Theory of operation
===================

Whichever way a call came (an accepted INVITE; an outgoing call's ``dial`` command), it reaches
its agent the same way, from the same fields: an :class:`AgentTarget` names the call and
account, the agent, its media endpoint, the context the agent is told (system prompt, template
context, call template) and the call template's bounds (``joinTimeout``, ``maxDuration``).
Both ``InviteAccepted`` and ``DialCommand`` are one, field for field.

:func:`bridge_parts` turns a target into what the bridge needs (pure):

- the Twilio-style ids (``StreamIdentity``): a fresh ``streamSid``, the call's ``callSid`` and
  the account's ``accountSid`` (``chalicelib.twilio_compat``), which a Twilio bot puts in its
  REST hang-up, with the per-call ``auth_token`` that hang-up must present;
- ``start.customParameters`` (``CallInfo``): the call id, who called whom (the SIP users),
  which way (``direction``: ``incoming`` or ``outgoing``), the agent, the context;
- the bridge's bounds (``BridgeSettings``): the deployment's egress policy, and the template's
  ``joinTimeout`` in place of the default connection bound.

:func:`agent_bridge` builds the bridge on the call's RTP session. :func:`start_media` starts the
session's media once offer and answer agree (never while ringing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from chalicelib import twilio_compat
from chalicelib.contracts import MediaEndpoint
from relay.bridge.agent_ws import AgentBridge, BridgeSettings
from relay.bridge.twilio_framing import CallInfo, StreamIdentity, new_stream_sid
from relay.calls.deps import CallDeps
from relay.sip.sdp.offer_answer import NegotiatedMedia
from relay.sip.syntax.uri import SipUri
from relay.transport.rtp_session import RtpSession

JITTER_MIN_DELAY_MS = 10
"""Wait at least this long for a missing caller packet before concealing it. In-order audio goes
to the agent on arrival whatever this is (``JitterBuffer(release_on_arrival=True)``); with 0,
reordering by tens of ms concealed 23 frames where 10 ms concealed 4 (``bench/media.py``)."""


class AgentTarget(Protocol):
    """Which agent takes a call, and what it is told: ``InviteAccepted`` or ``DialCommand``."""

    @property
    def call_id(self) -> str: ...
    @property
    def account_id(self) -> str: ...
    @property
    def agent_id(self) -> str | None: ...
    @property
    def media_endpoint(self) -> MediaEndpoint: ...
    @property
    def system_prompt(self) -> str | None: ...
    @property
    def template_context(self) -> Mapping[str, Any]: ...
    @property
    def call_template(self) -> Mapping[str, Any]: ...
    @property
    def join_timeout_s(self) -> float | None: ...
    @property
    def max_duration_s(self) -> float | None: ...


def bridge_parts(
    target: AgentTarget, *, caller: str, callee: str, deps: CallDeps, direction: str = "incoming"
) -> tuple[StreamIdentity, CallInfo, BridgeSettings]:
    """The ids, the ``start`` context and the bounds of the call's agent bridge."""
    call_sid = twilio_compat.call_sid(target.call_id)
    identity = StreamIdentity(
        stream_sid=new_stream_sid(deps.ids),
        call_sid=call_sid,
        account_sid=twilio_compat.account_sid(target.account_id),
    )
    info = CallInfo(
        call_id=target.call_id,
        caller=caller,
        callee=callee,
        template_context=target.template_context,
        agent_id=target.agent_id,
        system_prompt=target.system_prompt,
        call_template=target.call_template,
        auth_token=twilio_compat.auth_token(deps.webhook_secret, call_sid),
        direction=direction,
    )
    settings = BridgeSettings(egress=deps.egress)
    if target.join_timeout_s is not None:  # the template's joinTimeout bounds the connection
        settings = replace(settings, connect_timeout_s=target.join_timeout_s)
    return identity, info, settings


def agent_bridge(
    target: AgentTarget,
    session: RtpSession,
    *,
    caller: str,
    callee: str,
    deps: CallDeps,
    direction: str = "incoming",
) -> AgentBridge:
    """The bridge between the call's RTP session and its agent (not yet running)."""
    identity, info, settings = bridge_parts(
        target, caller=caller, callee=callee, deps=deps, direction=direction
    )
    return AgentBridge(
        target.media_endpoint, session, identity=identity, call=info, settings=settings
    )


def start_media(
    session: RtpSession, media: NegotiatedMedia, target: AgentTarget, deps: CallDeps
) -> None:
    """Start the call's media in the agent's framing, once offer and answer agree."""
    session.start(
        media,
        target.media_endpoint.framing,
        ids=deps.ids,
        jitter_min_delay_ms=JITTER_MIN_DELAY_MS,
    )


def uri_user(uri: object) -> str:
    """The user part of a SIP URI (a phone number, a name); any other URI as text."""
    return (uri.user or "") if isinstance(uri, SipUri) else str(uri)
