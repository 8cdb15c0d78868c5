"""One incoming call, from INVITE to BYE: ask, plan, then do.

Theory of operation
===================

The sans-I/O endpoint has already sent 100 Trying and handed the service an
:class:`~relay.sip.invite_session.IncomingCall`. One :class:`IncomingCallFlow` task per call:

1. asks the control plane (``CallDeps.decide``, bounded by the client): when it is down or slow
   the caller gets 503 with Retry-After (``plan_unavailable``), never silence; a rejection is
   answered with its status, and nothing is recorded (there is no call);
2. opens the call's RTP port pair (none free: 503 with Retry-After, ``leg_ended`` ``error``
   ``rtp_ports_exhausted``) and plans the answer (``plan_incoming_invite``): a 488, or the SDP
   answer;
3. rings (180) and connects the agent's WebSocket while the caller hears ringing (within the
   template's ``joinTimeout`` when it sets one); the caller is answered (200 OK) only once the
   agent is there, else 480 (``agent_unreachable``); a caller who gives up first (CANCEL) ends
   it from the SIP side;
4. runs until the caller, the agent, the media, the API or ``maxDuration`` ends the call, then
   ends the rest (``ending.py``): the agent gets ``stop``, the caller gets BYE; or until a cold
   transfer hands the caller on (``transfer_cold.py``: REFER, or a bridged second leg).

Every transition is recorded as a call event (``recorder.py``). All of the call's tasks belong
to its ``TaskGroup``: a failing call records ``leg_ended`` ``error`` ``internal_error``, is hung
up (BYE, or 480 before the answer) and never takes the relay down.

The pieces an outgoing call shares live beside this module: ``deps.py`` (what a call is given),
``recorder.py`` (events), ``ending.py`` (end reasons, the wait for the end), ``agent.py`` (the
agent bridge), ``webhook.py`` (the INVITE webhook's body), ``dtmf.py`` (SIP INFO digits).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from chalicelib.clock import utc_now
from chalicelib.contracts import (
    CallEventType,
    InviteAccepted,
    InviteRejected,
    LegEndReason,
    LegRole,
)
from relay.bridge.agent_ws import AgentBridge
from relay.calls.agent import agent_bridge, start_media, uri_user
from relay.calls.deps import CallDeps, CallSignals
from relay.calls.dtmf import DTMF_RELAY, dtmf_relay_body, dtmf_relay_digit
from relay.calls.ending import (
    EndDetail,
    bye_headers,
    record_sip_end,
    until_the_end,
)
from relay.calls.far_refer import FarRefers, follows
from relay.calls.recorder import LegEvents
from relay.calls.transfer_cold import CallTransfers
from relay.calls.webhook import invite_webhook
from relay.control.webhooks import ControlPlaneUnavailable
from relay.plan import AcceptPlan, RejectPlan, plan_incoming_invite, plan_unavailable
from relay.sip.sdp.offer_answer import NegotiatedMedia
from relay.sip.syntax.message import Request
from relay.sip.syntax.uri import AbsoluteUri, SipUri
from relay.sip.usage.incoming import IncomingCall
from relay.sip.usage.invite_session import CallEnded, InviteSession
from relay.transport.rtp_session import RtpPortsExhausted, RtpSession

logger = logging.getLogger("sipline.relay.calls")

AGENT_UNAVAILABLE = 480  # RFC 3261 §21.4.18: the agent could not be reached


class IncomingCallFlow:
    """Carries one incoming call through its life (see the module docstring)."""

    def __init__(self, call: IncomingCall, request: Request, deps: CallDeps) -> None:
        self.call = call
        self.leg: InviteSession = call
        """The call's SIP leg to the far end: the caller's, or the leg a followed REFER placed
        (``far_refer.py``)."""
        self.incoming_refer: str | None = None
        """The account's ``incomingRefer`` (from the decision): whether a far end's REFER is
        followed."""
        self.transfers: CallTransfers | None = None
        self.request = request
        self.deps = deps
        self.signals = CallSignals()
        self.events = LegEvents(deps.record, leg_id=deps.ids.token(8), role=LegRole.CALLER)
        self.received_at = utc_now()
        self.session: RtpSession | None = None

    @property
    def call_id(self) -> str | None:
        """The call's id once the control plane accepted it."""
        return self.events.call_id

    def info_dtmf(self, content_type: str | None, body: bytes) -> None:
        """Turn a SIP INFO ``application/dtmf-relay`` (``Signal=5``) into the same digit event."""
        digit = dtmf_relay_digit(content_type, body)
        if digit is not None and self.session is not None:
            self.session.inject_dtmf(digit)

    def follows_refer(
        self, uri: SipUri | AbsoluteUri, headers: tuple[tuple[str, str], ...]
    ) -> bool:
        """Whether this call follows a far end's REFER to ``uri`` (``far_refer.py``)."""
        transferring = self.transfers is not None and self.transfers.running
        return (
            self.deps.dial is not None
            and not transferring
            and follows(self.incoming_refer, uri, headers)
        )

    # --- SIP actions (each one followed by a transmit) ------------------------------------

    def _send_dtmf_info(self, digit: str, duration_ms: int) -> None:
        """Send the agent's digit as INFO (the caller has no telephone-event)."""
        if self.leg.send_info(DTMF_RELAY, dtmf_relay_body(digit, duration_ms), self.deps.now()):
            self.deps.transmit()

    def _reject(self, plan: RejectPlan) -> None:
        self.call.reject(plan.status, plan.reason, now=self.deps.now(), headers=plan.headers)
        self.deps.transmit()

    def _hang_up(self) -> None:
        self.leg.hang_up(now=self.deps.now(), headers=bye_headers(self.signals))
        self.deps.transmit()

    # --- the flow -------------------------------------------------------------------------

    async def run(self) -> None:
        """Decide, answer, bridge, and end the call; never raises (task root)."""
        try:
            await self._run()
        except Exception:
            logger.exception("call %s failed", self.call_id or self.request.call_id)
            self.events.record(
                CallEventType.LEG_ENDED, reason=LegEndReason.ERROR, detail=EndDetail.INTERNAL_ERROR
            )
            if not self.signals.ended.done():
                try:
                    self._hang_up()
                except Exception:
                    logger.exception("could not hang up call %s", self.call_id)

    async def _run(self) -> None:
        invite = invite_webhook(self.request, self.call.source, self.call.offer, self.deps.edge_id)
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
        self.events.call_id = decision.call_id
        self.incoming_refer = decision.incoming_refer
        self.events.record(CallEventType.INVITE_RECEIVED, at=self.received_at)
        try:
            session = self.session = await RtpSession.open(self.deps.ports)
            session.info_dtmf = self._send_dtmf_info
        except RtpPortsExhausted:  # busy, not broken: the carrier may try another relay
            logger.error("call %s: no RTP port pair free; answered 503", self.call_id)
            self._reject(plan_unavailable(self.deps.retry_after_s))
            self.events.record(
                CallEventType.LEG_ENDED,
                reason=LegEndReason.ERROR,
                sip_status=503,
                detail=EndDetail.RTP_PORTS_EXHAUSTED,
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
            self.events.record(
                CallEventType.LEG_ENDED, reason=LegEndReason.REJECTED, sip_status=plan.status
            )
            return
        self.call.ringing(now=self.deps.now())
        self.deps.transmit()
        self.events.record(CallEventType.RINGING, sip_status=180)
        bridge = agent_bridge(
            decision,
            session,
            caller=uri_user(self.request.from_.uri),
            callee=uri_user(self.request.to.uri),
            deps=self.deps,
        )
        async with asyncio.TaskGroup() as group:
            agent = group.create_task(bridge.run())
            if not await self._agent_connected(bridge):
                return
            if plan.media is not None:  # media flows from the answer on, never while ringing
                start_media(session, plan.media, decision, self.deps)
            self._accept(plan)
            if plan.media is None:  # late offer: the ACK's answer starts the media
                media = await _first(self.signals.answered, self.signals.ended)
                if isinstance(media, NegotiatedMedia):
                    start_media(session, media, decision, self.deps)
            transfers = self.transfers = CallTransfers(
                call=self.call,
                session=session,
                agent=bridge,
                agent_task=agent,
                events=self.events,
                signals=self.signals,
                deps=self.deps,
                from_user=uri_user(self.request.from_.uri),
                target=decision,
            )
            transfers.start()
            far_refers = FarRefers(self, from_user=uri_user(self.request.to.uri))
            far_refers.start()
            ending = await until_the_end(
                self.signals,
                session,
                agent,
                decision.max_duration_s,
                transferred=transfers.handed_over,
            )
            await far_refers.stop()
            await transfers.conclude(ending, self._hang_up)

    async def _agent_connected(self, bridge: AgentBridge) -> bool:
        connected = asyncio.ensure_future(bridge.connected())
        waits: set[asyncio.Future[Any]] = {connected, self.signals.ended}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if self.signals.ended.done():  # the caller gave up while the agent was connecting
            bridge.stop()
            record_sip_end(self.events, self.signals.ended.result())
            return False
        if connected.result():
            self.events.record(CallEventType.AGENT_JOINED)
            return True
        self._reject(RejectPlan(AGENT_UNAVAILABLE, "Temporarily Unavailable"))
        self.events.record(
            CallEventType.LEG_ENDED,
            reason=LegEndReason.ERROR,
            sip_status=AGENT_UNAVAILABLE,
            detail=EndDetail.AGENT_UNREACHABLE,
        )
        return False

    def _accept(self, plan: AcceptPlan) -> None:
        self.call.accept(
            plan.sdp, now=self.deps.now(), preference=plan.preference, media=plan.media
        )
        self.deps.transmit()
        self.events.record(CallEventType.ANSWERED, sip_status=200)


async def _first(
    answered: asyncio.Future[NegotiatedMedia | None], ended: asyncio.Future[CallEnded]
) -> NegotiatedMedia | None:
    waits: set[asyncio.Future[Any]] = {answered, ended}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    return answered.result() if answered.done() else None
