"""One incoming call, from INVITE to BYE: ask, plan, then do.

The sans-I/O endpoint has already sent 100 Trying. This task:

1. asks the control plane (``ControlPlaneClient.decide``), bounded: when it is down or slow the
   caller gets 503 with Retry-After (``plan_unavailable``), never silence; so does a call for
   which no RTP port pair is free;
2. plans the answer (``plan_incoming_invite``): a rejection, a 488, or the SDP answer;
3. opens the call's RTP ports, rings, and connects the agent's WebSocket while the caller hears
   ringing; the caller is answered (200 OK) only once the agent is there, else 480;
   (within the call's ``joinTimeout`` when its template sets one);
4. runs until the caller, the agent, the media (inactivity), the API or the call's
   ``maxDuration`` (counted from the answer) ends the call, then ends the rest: the agent gets
   ``stop``, the caller gets BYE.

Every transition is recorded as a call event (contract 2) through the outbox, which delivers it
at least once. All of the call's tasks belong to its ``TaskGroup``: a failing call ends with
``internal_error`` and never takes the relay down.

Size: just over 400 lines: one call's whole flow, whose steps share its state (the SIP call,
the RTP session, the bridge, the event sequence); split, each part would take it all as
arguments.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from chalicelib import twilio_compat
from chalicelib.contracts import (
    CallEvent,
    CallEventType,
    InviteAccepted,
    InviteRejected,
    InviteWebhook,
    LegEndReason,
    LegRole,
    Transport,
)
from chalicelib.egress import EgressPolicy
from relay.bridge.agent_ws import AgentBridge, AgentLeft, BridgeSettings
from relay.bridge.twilio_framing import CallInfo, StreamIdentity, new_stream_sid
from relay.control.webhooks import ControlPlaneUnavailable
from relay.ids import IdSource
from relay.plan import AcceptPlan, RejectPlan, plan_incoming_invite, plan_unavailable
from relay.sip.sdp.offer_answer import NegotiatedMedia
from relay.sip.syntax.message import Request
from relay.sip.syntax.text import readable
from relay.sip.syntax.uri import SipUri
from relay.sip.usage.call_state import CallEndReason
from relay.sip.usage.incoming import IncomingCall
from relay.sip.usage.invite_session import CallEnded
from relay.transport.rtp_session import RtpPortAllocator, RtpPortsExhausted, RtpSession

logger = logging.getLogger("sipline.relay.calls")

AGENT_UNAVAILABLE = 480  # RFC 3261 §21.4.18: the agent could not be reached
JITTER_MIN_DELAY_MS = 10
"""Wait at least this long for a missing caller packet before concealing it. In-order audio goes
to the agent on arrival whatever this is (``JitterBuffer(release_on_arrival=True)``); with 0,
reordering by tens of ms concealed 23 frames where 10 ms concealed 4 (``bench/media.py``)."""
_SIP_END_REASONS = {
    CallEndReason.CANCELLED: LegEndReason.REMOTE_HANGUP,
    CallEndReason.REJECTED: LegEndReason.REJECTED,
    CallEndReason.ACK_TIMEOUT: LegEndReason.TIMEOUT,
    CallEndReason.SESSION_EXPIRED: LegEndReason.TIMEOUT,
    CallEndReason.REQUEST_FAILED: LegEndReason.ERROR,
    CallEndReason.TRANSACTION_FAILED: LegEndReason.ERROR,
    CallEndReason.MEDIA_FAILED: LegEndReason.ERROR,
}


_NORMAL_AGENT_ENDS = frozenset({"agent_closed", "api_hang_up", "media_timeout", "max_duration"})
_NO_BOUND_S = 365 * 24 * 3600.0


def _max_duration_s(decision: InviteAccepted) -> float:
    return _NO_BOUND_S if decision.max_duration_s is None else decision.max_duration_s


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CallSignals:
    """What the SIP side tells a running call task (set by the service's event loop)."""

    answered: asyncio.Future[NegotiatedMedia | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ended: asyncio.Future[CallEnded] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    hang_up_requested: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class CallDeps:
    """What a call task needs from the service."""

    decide: Callable[[InviteWebhook], Awaitable[InviteAccepted | InviteRejected]]
    record: Callable[[CallEvent], None]
    transmit: Callable[[], None]
    now: Callable[[], float]
    ports: RtpPortAllocator
    ids: IdSource
    advertised_address: str
    edge_id: str
    webhook_secret: str
    retry_after_s: int
    egress: EgressPolicy
    """Where agents may be: the deployment's ``SIPLINE_ALLOWED_PRIVATE_TARGETS``."""


def invite_webhook(call: IncomingCall, request: Request, edge_id: str) -> InviteWebhook:
    """Describe an INVITE for the control plane (contract 1): only the packet's source counts.

    Header text goes through :func:`~relay.sip.syntax.text.readable`: bytes that are not UTF-8 arrive
    as U+FFFD, never as raw bytes the JSON body cannot hold.
    """
    source = call.source
    from_, to = request.from_, request.to
    offered = [] if call.offer is None else _offered_codecs(call)
    return InviteWebhook(
        source_ip=source.host,
        source_port=source.port,
        transport=Transport(source.transport.value),
        request_uri=readable(str(request.uri)),
        from_uri=readable(str(from_.uri)),
        from_display_name=readable(from_.display) if from_.display else None,
        from_tag=readable(from_.tag or ""),
        to_uri=readable(str(to.uri)),
        sip_call_id=readable(request.call_id),
        headers=[(readable(name), readable(value)) for name, value in request.headers],
        offered_codecs=offered,
        edge_id=edge_id,
    )


def _offered_codecs(call: IncomingCall) -> list[str]:
    assert call.offer is not None
    names: list[str] = []
    for media in call.offer.media:
        for rtpmap in media.rtpmaps:
            channels = f"/{rtpmap.channels}" if rtpmap.channels != 1 else ""
            names.append(f"{rtpmap.encoding_name}/{rtpmap.clock_rate_hz}{channels}")
    return names


class IncomingCallFlow:
    """Carries one incoming call through its life (see the module docstring)."""

    def __init__(self, call: IncomingCall, request: Request, deps: CallDeps) -> None:
        self.call = call
        self.request = request
        self.deps = deps
        self.signals = CallSignals()
        self.leg_id = deps.ids.token(8)
        self.received_at = utc_now()
        self.call_id: str | None = None
        self.session: RtpSession | None = None
        self._event_seq = 0

    # --- events ---------------------------------------------------------------------------

    def _record(self, kind: CallEventType, *, at: datetime | None = None, **fields: Any) -> None:
        if self.call_id is None:
            return
        self._event_seq += 1
        event = CallEvent.model_validate(
            {
                "eventId": f"{self.call_id}:{self.leg_id}:{self._event_seq}",
                "type": kind,
                "occurredAt": (at or utc_now()).isoformat(),
                "callId": self.call_id,
                "legId": self.leg_id,
                "legRole": LegRole.CALLER,
                **fields,
            }
        )
        self.deps.record(event)

    def info_dtmf(self, content_type: str | None, body: bytes) -> None:
        """Turn a SIP INFO ``application/dtmf-relay`` (``Signal=5``) into the same digit event."""
        digit = dtmf_relay_digit(content_type, body)
        if digit is not None and self.session is not None:
            self.session.inject_dtmf(digit)

    # --- SIP actions (each one followed by a transmit) ------------------------------------

    def _reject(self, plan: RejectPlan) -> None:
        self.call.reject(plan.status, plan.reason, now=self.deps.now(), headers=plan.headers)
        self.deps.transmit()

    def _hang_up(self) -> None:
        self.call.hang_up(now=self.deps.now())
        self.deps.transmit()

    # --- the flow -------------------------------------------------------------------------

    async def run(self) -> None:
        """Decide, answer, bridge, and end the call; never raises (task root)."""
        try:
            await self._run()
        except Exception:
            logger.exception("call %s failed", self.call_id or self.request.call_id)
            self._record(
                CallEventType.LEG_ENDED, reason=LegEndReason.ERROR, detail="internal_error"
            )
            if not self.signals.ended.done():
                try:
                    self._hang_up()
                except Exception:
                    logger.exception("could not hang up call %s", self.call_id)

    async def _run(self) -> None:
        invite = invite_webhook(self.call, self.request, self.deps.edge_id)
        try:
            decision = await self.deps.decide(invite)
        except ControlPlaneUnavailable as error:
            logger.warning("no decision for %s: %s", self.request.call_id, error)
            self._reject(plan_unavailable(error.retry_after_s or self.deps.retry_after_s))
            return
        if isinstance(decision, InviteRejected):
            logger.info("INVITE %s rejected: %s", self.request.call_id, decision.reason)
            plan = self._plan(decision, 0)
            assert isinstance(plan, RejectPlan)
            self._reject(plan)
            return
        self.call_id = decision.call_id
        self._record(CallEventType.INVITE_RECEIVED, at=self.received_at)
        try:
            session = self.session = await RtpSession.open(self.deps.ports)
        except RtpPortsExhausted:  # busy, not broken: the carrier may try another relay
            logger.error("call %s: no RTP port pair free; answered 503", self.call_id)
            self._reject(plan_unavailable(self.deps.retry_after_s))
            self._record(
                CallEventType.LEG_ENDED,
                reason=LegEndReason.ERROR,
                sipStatus=503,
                detail="rtp_ports_exhausted",
            )
            return
        try:
            await self._answer(decision, session)
        finally:
            await session.close()

    def _plan(
        self, decision: InviteAccepted | InviteRejected, port: int
    ) -> AcceptPlan | RejectPlan:
        return plan_incoming_invite(
            self.request,
            decision,
            local_address=self.deps.advertised_address,
            local_port=port,
            session_id=self.deps.ids.bits(31),
            warning_agent="sipline",
        )

    async def _answer(self, decision: InviteAccepted, session: RtpSession) -> None:
        plan = self._plan(decision, session.local_port)
        if isinstance(plan, RejectPlan):
            self._reject(plan)
            self._record(
                CallEventType.LEG_ENDED, reason=LegEndReason.REJECTED, sipStatus=plan.status
            )
            return
        self.call.ringing(now=self.deps.now())
        self.deps.transmit()
        self._record(CallEventType.RINGING, sipStatus=180)
        bridge = self._bridge(decision, session)
        async with asyncio.TaskGroup() as group:
            agent = group.create_task(bridge.run())
            if not await self._agent_connected(bridge):
                return
            if plan.media is not None:  # media flows from the answer on, never while ringing
                self._start_media(session, plan.media, decision)
            self._accept(plan)
            await self._until_the_end(plan, decision, session, bridge, agent)

    def _bridge(self, decision: InviteAccepted, session: RtpSession) -> AgentBridge:
        assert self.call_id is not None
        call_sid = twilio_compat.call_sid(self.call_id)
        identity = StreamIdentity(
            stream_sid=new_stream_sid(self.deps.ids),
            call_sid=call_sid,
            account_sid=twilio_compat.account_sid(decision.account_id),
        )
        info = CallInfo(
            call_id=self.call_id,
            caller=_user(self.request.from_.uri),
            callee=_user(self.request.to.uri),
            template_context=decision.template_context,
            agent_id=decision.agent_id,
            system_prompt=decision.system_prompt,
            call_template=decision.call_template,
            auth_token=twilio_compat.auth_token(self.deps.webhook_secret, call_sid),
        )
        settings = BridgeSettings(egress=self.deps.egress)
        if decision.join_timeout_s is not None:  # the template's joinTimeout bounds the ringing
            settings = replace(settings, connect_timeout_s=decision.join_timeout_s)
        return AgentBridge(
            decision.media_endpoint, session, identity=identity, call=info, settings=settings
        )

    async def _agent_connected(self, bridge: AgentBridge) -> bool:
        connected = asyncio.ensure_future(bridge.connected())
        waits: set[asyncio.Future[Any]] = {connected, self.signals.ended}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if self.signals.ended.done():  # the caller gave up while the agent was connecting
            bridge.stop()
            self._record_sip_end(self.signals.ended.result())
            return False
        if connected.result():
            self._record(CallEventType.AGENT_JOINED)
            return True
        self._reject(RejectPlan(AGENT_UNAVAILABLE, "Agent Unavailable"))
        self._record(
            CallEventType.LEG_ENDED,
            reason=LegEndReason.ERROR,
            sipStatus=AGENT_UNAVAILABLE,
            detail="agent_unreachable",
        )
        return False

    def _start_media(
        self, session: RtpSession, media: NegotiatedMedia, decision: InviteAccepted
    ) -> None:
        framing = decision.media_endpoint.framing
        session.start(media, framing, ids=self.deps.ids, jitter_min_delay_ms=JITTER_MIN_DELAY_MS)

    def _accept(self, plan: AcceptPlan) -> None:
        self.call.accept(
            plan.sdp, now=self.deps.now(), preference=plan.preference, media=plan.media
        )
        self.deps.transmit()
        self._record(CallEventType.ANSWERED, sipStatus=200)

    async def _until_the_end(
        self,
        plan: AcceptPlan,
        decision: InviteAccepted,
        session: RtpSession,
        bridge: AgentBridge,
        agent: asyncio.Task[Any],
    ) -> None:
        if plan.media is None:  # late offer: the ACK's answer starts the media
            media = await _first(self.signals.answered, self.signals.ended)
            if isinstance(media, NegotiatedMedia):
                self._start_media(session, media, decision)
        media_ended = asyncio.ensure_future(session.wait_ended())
        hang_up = asyncio.ensure_future(self.signals.hang_up_requested.wait())
        # maxDuration counts from the answer (the billed time); None: no bound
        out_of_time = asyncio.ensure_future(asyncio.sleep(_max_duration_s(decision)))
        waits: set[asyncio.Future[Any]] = {
            agent, self.signals.ended, media_ended, hang_up, out_of_time
        }  # fmt: skip
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (media_ended, hang_up, out_of_time):
            waiter.cancel()
        if self.signals.ended in done:  # the caller hung up (or the SIP side gave up)
            bridge.stop()
            self._record(CallEventType.AGENT_LEFT, detail="caller_hung_up")
            self._record_sip_end(self.signals.ended.result())
            return
        outcome = agent.result() if agent in done else None
        bridge.stop()
        detail = outcome.reason.value if isinstance(outcome, AgentLeft) else "ended"
        if media_ended in done:
            detail = "media_timeout"
        elif hang_up in done:
            detail = "api_hang_up"
        elif out_of_time in done:
            detail = "max_duration"
        self._record(
            CallEventType.AGENT_LEFT,
            detail=detail,
            reason=None if detail in _NORMAL_AGENT_ENDS else LegEndReason.ERROR,
        )
        self._hang_up()
        timed_out = detail in ("media_timeout", "max_duration")
        reason = LegEndReason.TIMEOUT if timed_out else LegEndReason.LOCAL_HANGUP
        self._record(CallEventType.LEG_ENDED, reason=reason, detail=detail)

    def _record_sip_end(self, ended: CallEnded) -> None:
        if ended.reason is CallEndReason.BYE:
            reason = LegEndReason.REMOTE_HANGUP if ended.by_remote else LegEndReason.LOCAL_HANGUP
        else:
            reason = _SIP_END_REASONS[ended.reason]
        fields: dict[str, Any] = {"reason": reason, "detail": ended.reason.value}
        if ended.status is not None:
            fields["sipStatus"] = ended.status
        self._record(CallEventType.LEG_ENDED, **fields)


async def _first(
    answered: asyncio.Future[NegotiatedMedia | None], ended: asyncio.Future[CallEnded]
) -> NegotiatedMedia | None:
    waits: set[asyncio.Future[Any]] = {answered, ended}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    return answered.result() if answered.done() else None


_DTMF_DIGITS = frozenset("0123456789*#ABCD")


def dtmf_relay_digit(content_type: str | None, body: bytes) -> str | None:
    """Return the digit of an ``application/dtmf-relay`` INFO body, if it carries one."""
    if (content_type or "").split(";")[0].strip().lower() != "application/dtmf-relay":
        return None
    for line in body.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition("=")
        if name.strip().lower() == "signal":
            digit = value.strip().upper()
            digit = {"10": "*", "11": "#"}.get(digit, digit)
            return digit if len(digit) == 1 and digit in _DTMF_DIGITS else None
    return None


def _user(uri: object) -> str:
    return (uri.user or "") if isinstance(uri, SipUri) else str(uri)
