"""An outgoing call's flow: from the ``dial`` command to the end of the call.

Theory of operation
===================

An :class:`OutgoingCallFlow` carries one ``dial`` command through its life, in one task. The
control plane created the call before it sent the command, so the call id is known from the
start and every step is recorded (``recorder.py``) on one leg whose role is ``caller``: the
outgoing call's callee is the call's caller leg (``chalicelib/call_outcome.py``, rule 3).

0. **The claim.** The relay asks the control plane to bind the call to it (``POST
   /webhooks/sip/dial``, docs/relay.md, Commands) while this flow prepares (step 1), so the
   claim's round trip hides behind the decryption, the DNS lookup and the port opening. The
   flow waits for the answer before it sends or records anything: a refused claim (the API hung
   up first, another relay took a duplicate) ends the flow without a trace.
1. **Before the INVITE**, nothing is on the wire yet: the trunk credentials are decrypted
   (``credentials.py``), ``to`` is parsed and located (RFC 3263, ``SipLocator``: the targets to
   try, in order, each checked against the egress policy), an RTP port pair is opened and our
   SDP offer written (``relay.plan.plan_outgoing_offer``). If one of these fails, or the API
   hangs up meanwhile, the call ends without an INVITE: ``invite_sent`` and ``leg_ended`` are
   recorded at one instant (the leg bills nothing) with the reason below.
2. **The INVITE** goes out (``relay/sip/usage/dial.py``'s ``place_call``; the SIP usage tries the targets in
   order, answers digest challenges and cancels at the ring timeout). ``invite_sent`` carries
   the instant it was transmitted: outgoing calls bill from there (docs/billing.md).
3. **Ringing.** The first 1xx other than 100 records ``ringing`` with its status (once: a
   callee that sends many 183s makes one event). Early media is heard by nobody; the 2xx's
   answer decides the media. The call waits for the first of: the answer, the end of the
   INVITE (a final failure, the ring timeout, every target failed), and an API hang-up, which
   cancels (CANCEL; the callee answers 487).
4. **Answered.** ``answered`` (200); the agent's WebSocket is opened with the call's context
   (``start.customParameters`` with ``direction`` ``outgoing``, ``from_number`` the From user,
   ``to_number`` the callee's user) within the template's ``joinTimeout``; once it is there,
   ``agent_joined`` and the media starts. An agent that cannot be reached: BYE,
   ``leg_ended`` ``error`` ``agent_unreachable``.
5. **Until the end**, as every call (``ending.py``): the callee's BYE, the agent leaving, an
   API hang-up, the media timeout, ``maxDuration`` counted from the answer; or a cold
   transfer's hand-over (``transfer_cold.py``).

How an unanswered call ends (``leg_ended``'s ``reason``, ``sipStatus`` and ``detail``; the
control plane maps them to the call's ``sipDetails.terminationReason`` by the status):

======================================== ============ ============== ==========================
what happened                            reason       sipStatus      detail
======================================== ============ ============== ==========================
a final 3xx-6xx (401/407 after our       rejected     that status    ``rejected``
credentials included)
we cancelled (API hang-up, shutdown)     local_hangup 487            ``cancelled``
no answer within the ring timeout        timeout      487 or 408     ``ring_timeout``
every target failed (timeout, transport) rejected     408 or 503     ``transaction_failed``
the last one's TLS certificate does not  rejected     503            ``tls_verification_failed``
verify (untrusted, not for ``to``'s
domain)
``to`` is not a SIP URI we can call      rejected     484            ``destination_invalid``
its domain does not exist in DNS         rejected     604            ``destination_not_found``
DNS did not answer; every address        rejected     503            ``destination_unavailable``
refused by the egress policy
the password does not decrypt            error        -              ``credentials_unavailable``
no RTP port pair free                    error        503            ``rtp_ports_exhausted``
the API hung up before the INVITE        local_hangup -              ``api_hang_up``
the relay shut down before the INVITE    error        -              ``relay_shutdown``
``from`` not carriable; TLS without a    error        -              ``dial_refused``
TLS listener
======================================== ============ ============== ==========================

The statuses of the failures before any response are the ones a UAC reports for itself
(RFC 3261 §8.1.3.1: 408 for a timeout, 503 for a transport failure), 484 Address Incomplete and
604 Does Not Exist Anywhere (§21.4.22, §21.6.4) for a destination that cannot exist.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from chalicelib.clock import utc_now
from chalicelib.contracts import CallEventType, DialCommand, LegEndReason, LegRole
from chalicelib.sip_uri import user_part
from relay.bridge.agent_ws import AgentBridge
from relay.calls.agent import agent_bridge, start_media, uri_user
from relay.calls.credentials import CredentialsUnavailable, dial_credentials
from relay.calls.deps import CallDeps, CallSignals, DialDeps
from relay.calls.dialled_leg import DialledLeg
from relay.calls.ending import (
    LOCATE_ENDS,
    UNANSWERED_ENDS,
    EndDetail,
    bye_headers,
    hang_up_detail,
    local_leg_end,
    record_sip_end,
    sip_leg_end,
    until_the_end,
)
from relay.calls.recorder import LegEvents
from relay.calls.transfer_cold import CallTransfers
from relay.plan import plan_outgoing_offer
from relay.sip.address import TransportFailure
from relay.sip.errors import LocalProtocolError
from relay.sip.locate import LocateError, parse_target
from relay.sip.sdp.offer_answer import NegotiatedMedia
from relay.sip.usage.call_state import CallEndReason
from relay.sip.usage.invite_session import CallEnded
from relay.sip.usage.outgoing import OutgoingCall
from relay.transport.rtp_session import RtpPortsExhausted, RtpSession

logger = logging.getLogger("sipline.relay.calls")

CANCEL_WAIT_S = 40.0
"""How long the flow waits for the INVITE to end after our CANCEL: the usage ends it by 64*T1
(32 s, Timer B) at the latest; past this bound the leg is recorded ``error``."""
DIRECTION = "outgoing"
"""``start.customParameters.direction`` of an outgoing call (docs/agents.md)."""


class _EndedEarly(Exception):
    """The call ended before its INVITE went out; the leg's end is already decided."""

    def __init__(self, reason: LegEndReason, detail: str, sip_status: int | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.sip_status = reason, detail, sip_status


class _NotOurs(Exception):
    """The claim was refused (step 0): the flow ends without a trace."""


class OutgoingCallFlow(DialledLeg):
    """Carries one outgoing call through its life (see the module docstring)."""

    def __init__(
        self, command: DialCommand, deps: CallDeps, *, claimed: asyncio.Future[bool] | None = None
    ) -> None:
        self.command = command
        self.deps = deps
        self.claimed = claimed
        """Whether this relay may place the call (step 0); ``None``: it may."""
        self.signals = CallSignals()
        self.events = LegEvents(
            deps.record, leg_id=deps.ids.token(8), role=LegRole.CALLER, call_id=command.call_id
        )
        self.session: RtpSession | None = None
        self.call: OutgoingCall | None = None
        self.rang = False

    @property
    def call_id(self) -> str:
        """The call's id (from the command)."""
        return self.command.call_id

    # (what the service routes here, ``info_dtmf`` and ``progress``: ``DialledLeg``)

    # --- SIP actions (each one followed by a transmit) ------------------------------------

    def _hang_up(self) -> None:
        """CANCEL while ringing, BYE once answered (the usage knows which)."""
        if self.call is not None:
            self.call.hang_up(now=self.deps.now(), headers=bye_headers(self.signals))
            self.deps.transmit()

    # --- the flow -------------------------------------------------------------------------

    async def run(self) -> None:
        """Place, bridge and end the call; never raises (task root)."""
        try:
            await self._run()
        except Exception:
            logger.exception("outgoing call %s failed", self.call_id)
            if self.events.count == 0 and not await self._may_place():
                return  # not ours: another relay (or the API) ends it
            if self.events.count == 0:  # no leg yet: start one so that the call can end
                self.events.record(CallEventType.INVITE_SENT)
            self.events.record(
                CallEventType.LEG_ENDED, reason=LegEndReason.ERROR, detail=EndDetail.INTERNAL_ERROR
            )
            if not self.signals.ended.done():
                try:
                    self._hang_up()
                except Exception:
                    logger.exception("could not hang up call %s", self.call_id)

    async def _may_place(self) -> bool:
        """Wait for the claim (step 0); ``False``: the call is not ours to place or record."""
        return True if self.claimed is None else await self.claimed

    async def _run(self) -> None:
        dial = self.deps.dial
        if dial is None:
            raise RuntimeError("this relay was given no means to place calls")
        try:
            await self._place(dial)
        except _NotOurs:
            logger.info("outgoing call %s: not placed here (claim refused)", self.call_id)
        except _EndedEarly as early:
            if not await self._may_place():
                return
            logger.info("outgoing call %s ended before its INVITE: %s", self.call_id, early)
            now = utc_now()  # one instant: the leg that never started bills nothing
            self.events.record(CallEventType.INVITE_SENT, at=now)
            self.events.record(
                CallEventType.LEG_ENDED,
                at=now,
                reason=early.reason,
                detail=early.detail,
                sip_status=early.sip_status,
            )
        finally:
            if self.session is not None:
                await self.session.close()

    async def _place(self, dial: DialDeps) -> None:
        command = self.command
        try:
            credentials = await dial_credentials(command, dial.cipher)
        except CredentialsUnavailable as error:
            logger.error("outgoing call %s: %s", self.call_id, error)
            raise _EndedEarly(LegEndReason.ERROR, EndDetail.CREDENTIALS_UNAVAILABLE) from None
        try:
            request_uri = parse_target(command.to)
            located = await dial.locate(request_uri)
        except LocateError as error:
            logger.warning("outgoing call %s: %s", self.call_id, error)
            status, detail = LOCATE_ENDS[error.kind]
            raise _EndedEarly(LegEndReason.REJECTED, detail, status) from None
        try:
            session = self.session = await RtpSession.open(self.deps.ports)
        except RtpPortsExhausted:
            logger.error("outgoing call %s: no RTP port pair free", self.call_id)
            raise _EndedEarly(LegEndReason.ERROR, EndDetail.RTP_PORTS_EXHAUSTED, 503) from None
        if not await self._may_place():
            raise _NotOurs
        if self.signals.hang_up_requested.is_set():
            detail = hang_up_detail(self.signals)
            raise _EndedEarly(local_leg_end(detail), detail)
        session.info_dtmf = self._send_dtmf_info
        plan = plan_outgoing_offer(
            command.codec_preference,
            local_address=self.deps.advertised_address,
            local_port=session.local_port,
            session_id=self.deps.ids.bits(31),
        )
        from_user = user_part(command.from_) or command.from_
        try:
            call = self.call = dial.place_call(
                targets=located.addresses,
                request_uri=request_uri,
                from_user=from_user,
                offer=plan.sdp,
                preference=plan.preference,
                credentials=credentials,
                ring_timeout_s=dial.ring_timeout_s,
                now=self.deps.now(),
            )
        except LocalProtocolError as error:
            logger.error("outgoing call %s: no INVITE: %s", self.call_id, error)
            raise _EndedEarly(LegEndReason.ERROR, EndDetail.DIAL_REFUSED) from None
        dial.hold(call, self)  # before the first transmit: no event of the call is missed
        self.deps.transmit()
        self.events.record(CallEventType.INVITE_SENT, at=utc_now())
        media = await self._answer()
        if self.signals.ended.done() and not self.signals.answered.done():
            self._record_unanswered(self.signals.ended.result())
            return
        if media is None:  # the hang-up's CANCEL did not end the INVITE in time
            self.events.record(
                CallEventType.LEG_ENDED,
                reason=LegEndReason.ERROR,
                detail=EndDetail.CANCEL_UNANSWERED,
            )
            return
        await self._bridge(session, media, caller=from_user, callee=uri_user(request_uri))

    async def _answer(self) -> NegotiatedMedia | None:
        """Wait for the answer, the INVITE's end, or a hang-up (which cancels, then waits)."""
        hang_up = asyncio.ensure_future(self.signals.hang_up_requested.wait())
        waits: set[asyncio.Future[Any]] = {self.signals.answered, self.signals.ended, hang_up}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hang_up.cancel()
        if self.signals.answered.done():
            return self.signals.answered.result()
        if not self.signals.ended.done():  # hang-up while ringing: CANCEL, the callee ends it
            self._hang_up()
            ended = asyncio.shield(self.signals.ended)
            await asyncio.wait({ended}, timeout=CANCEL_WAIT_S)
        return None

    def _record_unanswered(self, ended: CallEnded) -> None:
        """Record ``leg_ended`` for a call the INVITE's end finished (module table)."""
        reason = UNANSWERED_ENDS.get(ended.reason)
        if reason is None:
            reason = sip_leg_end(ended.reason, by_remote=ended.by_remote)
        status, detail = ended.status, str(ended.reason)
        if ended.reason is CallEndReason.TRANSACTION_FAILED:
            status = 503 if status is None else status  # §8.1.3.1: a transport failure is 503
            failure = None if self.call is None else self.call.transport_failure
            if failure is TransportFailure.TLS_UNVERIFIED:  # the last target's
                detail = EndDetail.TLS_VERIFICATION_FAILED
        self.events.record(CallEventType.LEG_ENDED, reason=reason, detail=detail, sip_status=status)

    async def _bridge(
        self, session: RtpSession, media: NegotiatedMedia, *, caller: str, callee: str
    ) -> None:
        """Answered: record it, connect the agent, start the media, run until the end."""
        answered_at = self.deps.now()
        self.events.record(CallEventType.ANSWERED, sip_status=200)
        command = self.command
        bridge = agent_bridge(
            command, session, caller=caller, callee=callee, deps=self.deps, direction=DIRECTION
        )
        async with asyncio.TaskGroup() as group:
            agent = group.create_task(bridge.run())
            if not await self._agent_connected(bridge):
                return
            start_media(session, media, command, self.deps)
            left = None
            if command.max_duration_s is not None:  # counted from the answer
                left = max(0.0, command.max_duration_s - (self.deps.now() - answered_at))
            assert self.call is not None
            transfers = CallTransfers(
                call=self.call,
                session=session,
                agent=bridge,
                agent_task=agent,
                events=self.events,
                signals=self.signals,
                deps=self.deps,
                from_user=caller,
                target=command,
            )
            transfers.start()
            ending = await until_the_end(
                self.signals, session, agent, left, transferred=transfers.handed_over
            )
            await transfers.conclude(ending, self._hang_up)

    async def _agent_connected(self, bridge: AgentBridge) -> bool:
        """Wait for the agent; on the callee's BYE, a hang-up or no agent, end the call."""
        connected = asyncio.ensure_future(bridge.connected())
        hang_up = asyncio.ensure_future(self.signals.hang_up_requested.wait())
        waits: set[asyncio.Future[Any]] = {connected, self.signals.ended, hang_up}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hang_up.cancel()
        if self.signals.ended.done():  # the callee hung up while the agent was connecting
            bridge.stop()
            record_sip_end(self.events, self.signals.ended.result())
            return False
        if connected.done() and connected.result():
            self.events.record(CallEventType.AGENT_JOINED)
            return True
        connected.cancel()
        bridge.stop()
        self._hang_up()
        if self.signals.hang_up_requested.is_set():
            detail = hang_up_detail(self.signals)
            self.events.record(CallEventType.LEG_ENDED, reason=local_leg_end(detail), detail=detail)
        else:
            logger.warning("outgoing call %s: the agent could not be reached", self.call_id)
            self.events.record(
                CallEventType.LEG_ENDED,
                reason=LegEndReason.ERROR,
                detail=EndDetail.AGENT_UNREACHABLE,
            )
        return False
