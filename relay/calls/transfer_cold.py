"""Cold transfers of an answered call: REFER the caller on, or call the target and bridge.

Theory of operation
===================

The control plane decides a transfer (``chalicelib/transfers.py``) and sends a ``transfer``
command to the relay holding the call; the service puts it in the call's
``CallSignals.transfers``. Once the call is answered and its agent connected, the call's flow
(``incoming.py``, ``outgoing.py``) runs one :class:`CallTransfers` beside its agent and waits
for the first of its usual ends or the transfer's hand-over (``ending.until_the_end``'s
``transferred``). Transfers run one at a time, each once (a redelivered command is ignored).
While one runs, the agent stays connected and the call goes on.

**REFER** (``method: REFER``; RFC 3515, RFC 5589 §6.1, the relay as transferor):

1. REFER in the caller's dialog (``relay/sip/usage/refer.py``), ``Refer-To`` the target with
   the command's ``referHeaders`` (and the target's own ``X-`` fields) embedded, so that they
   reach the target on the caller's INVITE. ``refer_sent`` (``detail``: the Refer-To).
2. ``refer_accepted`` with the 2xx; then the NOTIFYs. A final ``2xx`` sipfrag is
   ``refer_succeeded``: the hand-over. A REFER refused (405, 603...), a failure sipfrag, or
   no final NOTIFY within ``SIPLINE_REFER_TIMEOUT_S`` (408) is ``refer_failed`` with that
   status: the caller stays with the agent, which is told (:meth:`CallTransfers.tell`).
3. After the hand-over (:meth:`CallTransfers.finish`): the agent is told ``referred``, gets
   ``stop``, ``agent_left`` (``transferred``). The SIP clock stopped at ``refer_succeeded``
   (docs/billing.md); the transferee ends its dialog with us (RFC 5589 §6.1: BYE); if it has not
   within ``referred_bye_s`` we send BYE. ``leg_ended`` ``referred`` either way.

**INVITE** (``method: INVITE``, a bridged cold transfer):

1. Hold music toward the caller in the agent's place (``holdMusic``: ``default``, ``url``,
   ``none``; ``relay/transport/hold_music_fetch.py``); the agent still hears the caller.
2. A second leg (``transfer_leg.py``): ``invite_sent`` (role ``transfer_target``), ringing,
   ``answered``; or its ``leg_ended`` (4xx-6xx, the ring timeout, no route): the music stops,
   the caller is back with the agent, which is told.
3. On answer, the hand-over (:meth:`CallTransfers.finish`): the agent is told ``bridged`` and
   gets ``stop`` (its stream is detached before the bridge takes the legs), the music stops, the
   two legs' media are joined (``relay/bridge/sip_bridge.py``), ``bridged`` (on the target's
   leg), ``agent_left`` (``transferred``). Both legs bill until each ends.
4. Bridged, the call runs until either leg ends (its BYE, its media timing out), an API
   hang-up or the relay's shutdown; then the other leg (or both) gets our BYE and ``leg_ended``
   is recorded for each. The call template's ``maxDuration`` bounded the agent's part only.

If the call ends while a transfer is under way (the caller hangs up, the agent leaves, the API
hangs up), :meth:`CallTransfers.abandon` cancels it: a ringing target is cancelled (``leg_ended``
``local_hangup`` 487 ``cancelled``), the music stops; the control plane reads the transfer
``cancelled``. A ``kind: warm`` command is run by ``transfer_warm.py`` (the operator leg, its
briefing agent, the outcome), which ends in the same hand-overs: a REFER (with ``Replaces``,
:attr:`Handover.replaced` the operator leg it replaces) or a bridge.

Size: a little over 400 lines: the two cold methods and the hand-overs every transfer shares
(warm ones included) read best together.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from chalicelib.contracts import CallEventType, LegEndReason, TransferCommand
from relay.bridge.agent_ws import AgentBridge
from relay.bridge.sip_bridge import BridgeUnavailable, bridge
from relay.bridge.twilio_messages import TransferEnd
from relay.calls.agent import AgentTarget
from relay.calls.deps import CallDeps, CallSignals, TransferDeps
from relay.calls.ending import (
    EndDetail,
    Ending,
    bye_headers,
    hang_up_detail,
    local_leg_end,
    record_sip_end,
    record_the_end,
)
from relay.calls.recorder import LegEvents
from relay.calls.transfer_leg import Handover, TransferLeg, TransferLegFailed, split_target
from relay.calls.transfer_warm import WarmTransfer, replaced_leg_ends
from relay.sip.errors import LocalProtocolError
from relay.sip.locate import LocateError
from relay.sip.syntax.refer_to import format_refer_to
from relay.sip.usage.invite_session import InviteSession
from relay.sip.usage.refer import ReferAccepted, ReferFailed, ReferSucceeded
from relay.transport.rtp_session import RtpSession

logger = logging.getLogger("sipline.relay.calls")

__all__ = ["AGENT_LEAVE_S", "REFERRED_BYE_S", "CallTransfers", "Handover"]

REFERRED_BYE_S = 10.0
"""How long the referred caller has to end its dialog with us (RFC 5589 §6.1: the transferee
sends BYE once the transfer succeeded) before we send BYE ourselves."""
AGENT_LEAVE_S = 5.0
"""How long a bridged transfer waits for the agent's stream to close before it bridges anyway."""
REMEMBERED_TRANSFERS = 64
"""Transfer ids a call remembers, so that a redelivered command runs once."""
MAX_DETAIL = 500  # CallEvent.detail's bound


class CallTransfers:
    """The cold transfers of one answered call (see the module docstring)."""

    def __init__(
        self,
        *,
        call: InviteSession,
        session: RtpSession,
        agent: AgentBridge,
        agent_task: asyncio.Task[Any],
        events: LegEvents,
        signals: CallSignals,
        deps: CallDeps,
        from_user: str,
        target: AgentTarget | None = None,
    ) -> None:
        self.call, self.session, self.agent, self.agent_task = call, session, agent, agent_task
        self.events, self.signals, self.deps, self.from_user = events, signals, deps, from_user
        self.target = target
        """The call's agent: a warm transfer's operator leg gets a second stream to it."""
        self.warm: WarmTransfer | None = None
        self.handed_over: asyncio.Future[Handover] = asyncio.get_running_loop().create_future()
        """Set once a transfer handed the caller on: the call's flow then calls :meth:`finish`."""
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.leg_under_way: TransferLeg | None = None
        """The second leg under way (a bridged cold transfer's target, a warm one's operator)."""
        self._task: asyncio.Task[None] | None = None
        self.running = False  # a transfer runs: a far end's REFER is declined (far_refer.py)

    # --- taking commands ------------------------------------------------------------------

    def start(self) -> None:
        """Take the call's ``transfer`` commands in a task, until one hands the caller on."""
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        while not self.handed_over.done():
            command = await self.signals.transfers.get()
            if command.transfer_id in self._seen:
                logger.info("transfer %s again: run once already", command.transfer_id)
                continue
            self._seen[command.transfer_id] = None
            while len(self._seen) > REMEMBERED_TRANSFERS:
                self._seen.popitem(last=False)
            self.running = True
            try:
                handover = await self._run(command)
            except Exception:
                logger.exception("transfer %s failed", command.transfer_id)
                self.tell(command, "failed", None, EndDetail.INTERNAL_ERROR)
                continue
            finally:
                self.running = False
            if handover is not None:
                self.handed_over.set_result(handover)

    async def _run(self, command: TransferCommand) -> Handover | None:
        """Run one transfer to its hand-over (or ``None``: failed, the caller stays)."""
        transfer = self.deps.transfer
        if transfer is None:
            logger.warning("transfer %s refused: transfers_disabled", command.transfer_id)
            self.tell(command, "failed", None, "transfers_disabled")
            return None
        if command.kind == "warm":
            self.warm = WarmTransfer(self, command, transfer)  # abandon() stops its operator
            return await self.warm.run()
        if command.method == "REFER":
            return await self.refer(command, transfer)
        if command.method == "INVITE":
            return await self._invite(command)
        self.tell(command, "failed", None, "method_not_supported")
        return None

    def tell(
        self,
        command: TransferCommand,
        status: TransferEnd,
        sip_status: int | None,
        reason: str | None,
    ) -> None:
        """Tell the agent how its transfer ended (the ``transfer`` message, docs/agents.md)."""
        self.agent.tell_transfer(
            command.transfer_id,
            status,
            sip_status=sip_status,
            reason=None if reason is None else reason[:MAX_DETAIL],
        )

    # --- REFER ----------------------------------------------------------------------------

    async def refer(
        self,
        command: TransferCommand,
        transfer: TransferDeps,
        replaces: tuple[str, str] | None = None,
        *,
        quiet: bool = False,
    ) -> Handover | None:
        """REFER the caller to the target (with ``replaces``: a warm transfer's ``Replaces``
        header field, embedded); ``quiet``: a failure is not told to the agent (TRY_REFER)."""
        record, tid = self.events.record, command.transfer_id
        refer_detail = f"Refer-To: {command.target}"  # not the embedded headers
        if replaces is not None:
            refer_detail += " with Replaces for the operator's dialog"
        refer_detail = refer_detail[:MAX_DETAIL]
        try:
            uri, embedded = split_target(command.target)
            extra = [] if replaces is None else [replaces]
            refer_to = format_refer_to(uri, [*embedded, *command.refer_headers, *extra])
            subscription = transfer.send_refer(
                self.call,
                refer_to,
                now=self.deps.now(),
                notify_timeout_s=transfer.notify_timeout_s,
            )
        except (LocateError, LocalProtocolError) as error:
            why = f"refer_not_sent: {error}"[:MAX_DETAIL]
            logger.warning("transfer %s: %s", tid, why)
            record(CallEventType.REFER_SENT, detail=refer_detail, transfer_id=tid)
            record(CallEventType.REFER_FAILED, detail=why, transfer_id=tid)
            if not quiet:
                self.tell(command, "failed", None, why)
            return None
        self.deps.transmit()
        record(CallEventType.REFER_SENT, detail=refer_detail, transfer_id=tid)
        while True:
            event = await self.signals.refer.get()
            if event.subscription is not subscription:
                continue  # an earlier transfer's late word
            match event:
                case ReferAccepted(status=status):
                    record(CallEventType.REFER_ACCEPTED, sip_status=status, transfer_id=tid)
                case ReferSucceeded(status=status):
                    detail = f"NOTIFY sipfrag: SIP/2.0 {status}"
                    record(
                        CallEventType.REFER_SUCCEEDED,
                        sip_status=status,
                        detail=detail,
                        transfer_id=tid,
                    )
                    return Handover(command)
                case ReferFailed(status=status, reason=reason):
                    why = reason[:MAX_DETAIL]
                    record(
                        CallEventType.REFER_FAILED, sip_status=status, detail=why, transfer_id=tid
                    )
                    logger.info("transfer %s failed: %d %s", tid, status, why)
                    if not quiet:
                        self.tell(command, "failed", status, why)
                    return None
                case _:  # ReferProgress: 100 Trying, 180 Ringing
                    logger.debug("transfer %s: %s", tid, event)

    # --- INVITE ---------------------------------------------------------------------------

    async def _invite(self, command: TransferCommand) -> Handover | None:
        dial, transfer = self.deps.dial, self.deps.transfer
        if dial is None or transfer is None:
            self.tell(command, "failed", None, "outgoing_calls_disabled")
            return None
        leg = self.leg_under_way = TransferLeg(command, self.deps)
        clip = await transfer.hold_music(command.hold_music, command.hold_music_url)
        self.session.start_hold_music(clip)
        media = self.session.media
        try:
            await leg.place(
                dial,
                from_user=command.from_ or self.from_user,
                caller=None if media is None else media.negotiated,
            )
            await leg.answered(self.signals.hang_up_requested)
        except TransferLegFailed as failed:
            await self.back_to_agent(leg)
            self.tell(command, "failed", failed.status, failed.reason)
            return None
        except Exception:  # a bug: end the second leg, give the caller back, then report it
            if leg.call is not None and not leg.signals.ended.done():
                leg.end_here(EndDetail.INTERNAL_ERROR, LegEndReason.ERROR)
            await self.back_to_agent(leg)
            raise
        return Handover(command, leg)

    async def back_to_agent(self, leg: TransferLeg) -> None:
        """The caller is back with its agent: the music stops, the second leg's media closes."""
        self.session.stop_hold_music()
        self.leg_under_way = None
        await leg.close()

    # --- the end of a transfer, or of the call --------------------------------------------

    async def conclude(self, ending: Ending, hang_up: Callable[[], None]) -> None:
        """End the call's part that ``until_the_end`` saw end: a hand-over, or the call.

        The caller is hung up before a ringing second leg is cancelled (which may wait for the
        target's 487).
        """
        try:
            if ending.detail is EndDetail.TRANSFERRED:
                await self.finish()
                return
            await self._stop_serving()
            self.agent.stop()
            record_the_end(self.events, ending, hang_up)
            await self.abandon()
        finally:
            if self._task is not None:
                self._task.cancel()  # a no-op once it ended; never left waiting for commands

    async def _stop_serving(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def abandon(self) -> None:
        """The call ended with a transfer under way: cancel it (see the module docstring)."""
        await self._stop_serving()
        if self.warm is not None:
            await self.warm.stop_operator()
        leg, self.leg_under_way = self.leg_under_way, None
        if leg is None:
            return
        if leg.call is not None and not leg.signals.ended.done():
            if leg.signals.answered.done():
                leg.end_here(EndDetail.CALL_ENDED)
            else:
                leg.record_unanswered(await leg.cancelled())
        await leg.close()

    async def finish(self) -> None:
        """The caller was handed on: end the agent's part, then the call's (module docstring)."""
        handover = self.handed_over.result()
        status: TransferEnd = "referred" if handover.leg is None else "bridged"
        self.tell(handover.command, status, None, None)
        self.agent.stop()
        if handover.leg is None:
            self.events.record(CallEventType.AGENT_LEFT, detail=EndDetail.TRANSFERRED)
            await self._referred()
            if handover.replaced is not None:
                self.leg_under_way = None
                await replaced_leg_ends(handover.replaced, self.deps)
            return
        await asyncio.wait({self.agent_task}, timeout=AGENT_LEAVE_S)
        self.session.stop_hold_music()
        try:
            await self._bridged(handover.leg)
        finally:
            self.leg_under_way = None
            await handover.leg.close()

    async def _referred(self) -> None:
        """Wait (bounded) for the transferee's BYE (RFC 5589 §6.1), else send ours."""
        signals = self.signals
        hang_up = asyncio.ensure_future(signals.hang_up_requested.wait())
        waits: set[asyncio.Future[Any]] = {signals.ended, hang_up}
        transfer = self.deps.transfer
        assert transfer is not None
        try:
            await asyncio.wait(
                waits, timeout=transfer.referred_bye_s, return_when="FIRST_COMPLETED"
            )
        finally:
            hang_up.cancel()
        if signals.ended.done():
            ended = signals.ended.result()
            detail = "caller_hung_up" if ended.by_remote else str(ended.reason)
            self.events.record(CallEventType.LEG_ENDED, reason=LegEndReason.REFERRED, detail=detail)
            return
        self.call.hang_up(now=self.deps.now(), headers=bye_headers(signals))
        self.deps.transmit()
        self.events.record(CallEventType.LEG_ENDED, reason=LegEndReason.REFERRED, detail="bye_sent")

    async def _bridged(self, leg: TransferLeg) -> None:
        assert leg.session is not None
        try:
            joined = bridge(self.session, leg.session)
        except BridgeUnavailable as error:  # a leg's media ended meanwhile
            logger.warning("transfer %s: not bridged: %s", leg.command.transfer_id, error)
            self.events.record(CallEventType.AGENT_LEFT, detail=EndDetail.TRANSFERRED)
            self._end_both(EndDetail.MEDIA_TIMEOUT, leg)
            return
        leg.events.record(CallEventType.BRIDGED)
        self.events.record(CallEventType.AGENT_LEFT, detail=EndDetail.TRANSFERRED)
        logger.info("transfer %s bridged: %s", leg.command.transfer_id, joined)
        try:
            await self._until_a_leg_ends(leg)
        finally:
            joined.stop()

    async def _until_a_leg_ends(self, leg: TransferLeg) -> None:
        assert leg.session is not None
        signals = self.signals
        caller_media = asyncio.ensure_future(self.session.wait_ended())
        target_media = asyncio.ensure_future(leg.session.wait_ended())
        hang_up = asyncio.ensure_future(signals.hang_up_requested.wait())
        waits: set[asyncio.Future[Any]] = {
            signals.ended, leg.signals.ended, caller_media, target_media, hang_up
        }  # fmt: skip
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (caller_media, target_media, hang_up):
                waiter.cancel()
        if signals.ended.done():
            record_sip_end(self.events, signals.ended.result())
            if leg.signals.ended.done():
                record_sip_end(leg.events, leg.signals.ended.result())
            else:
                leg.end_here(EndDetail.BRIDGED_LEG_ENDED)
        elif leg.signals.ended.done():
            record_sip_end(leg.events, leg.signals.ended.result())
            self._hang_up_caller(EndDetail.BRIDGED_LEG_ENDED)
        elif hang_up.done():
            self._end_both(hang_up_detail(signals), leg)
        else:
            self._end_both(EndDetail.MEDIA_TIMEOUT, leg)

    def _end_both(self, detail: EndDetail, leg: TransferLeg) -> None:
        self._hang_up_caller(detail)
        leg.hang_up(bye_headers(self.signals))
        leg.events.record(CallEventType.LEG_ENDED, reason=local_leg_end(detail), detail=detail)

    def _hang_up_caller(self, detail: EndDetail) -> None:
        self.call.hang_up(now=self.deps.now(), headers=bye_headers(self.signals))
        self.deps.transmit()
        self.events.record(CallEventType.LEG_ENDED, reason=local_leg_end(detail), detail=detail)
