"""Warm transfers: the caller held, the operator called and briefed by a second agent stream.

Theory of operation
===================

A ``transfer`` command of ``kind: warm`` (``chalicelib/transfers.py`` decided it; the method is
``REFER``, ``BRIDGE`` or ``TRY_REFER``) is run by one :class:`WarmTransfer` inside the call's
:class:`~relay.calls.transfer_cold.CallTransfers` (one transfer at a time, each once):

1. **The caller is held**: hold music toward the caller in its agent's place (``holdMusic``), the
   agent's audio to the caller is dropped meanwhile (``relay/media/sender.py``). The caller's
   agent keeps *hearing* the caller: a caller who speaks, presses a key or hangs up while held
   is still the agent's to notice, and no audio the agent is owed is lost.
2. **The operator leg** (``transfer_leg.py``): ``invite_sent`` (role ``transfer_target``, the
   leg bills from here), ``ringing``, ``answered``; its media in the agent's framing. A leg that
   ends unanswered (4xx-6xx, ``SIPLINE_RING_TIMEOUT_S``) ends the transfer: ``failed``.
3. **The briefing**: a *second* WebSocket to the call's agent (the same ``mediaEndpoint``) for
   the operator leg (:func:`operator_bridge`). Its ``start.customParameters`` are the call's, with
   ``sipline_leg: operator``, ``sipline_transfer_id``, ``sipline_call_id`` and, as
   ``system_prompt``, the rendered transfer prompt (``prompt``: the ``transferSystemPromptTemplate``
   with ``{context}`` filled); ``direction`` ``outgoing``, ``to_number`` the operator. Connected,
   it is recorded ``agent_joined`` on the operator leg (the control plane reads ``briefing``).
   Its leaving is not an event of its own (``docs/billing.md`` rule 7 counts the call's agent:
   the operator leg's ``leg_ended`` or the hand-over says when it ended).
4. **The outcome**: the operator leg's bot reports accept / decline through the API, which sends
   a ``transfer_outcome`` command (``CallSignals.outcomes``). The leg waits for it at most
   ``SIPLINE_WARM_DECISION_TIMEOUT_S`` (default 120 s, at most 600) counted from the answer.
5. **Accepted**: the operator's agent stream gets ``stop`` and ends, then

   - ``REFER``: REFER to the caller, ``Refer-To: <target?Replaces=...>`` naming the operator
     leg's dialog (RFC 3891 §6.1, RFC 5589 §7: Call-ID, the operator's tag as ``to-tag``, ours as
     ``from-tag``), with the ``referHeaders``. ``refer_succeeded`` hands the caller on
     (:class:`~relay.calls.transfer_leg.Handover` with ``replaced``): the caller's leg ends as a
     cold REFER's does, and the operator leg, replaced, gets the operator's BYE (RFC 3891 §3) or
     ours after ``REFERRED_BYE_S``: ``leg_ended`` ``referred`` on both. A REFER that fails ends
     the operator leg (BYE, ``leg_ended`` ``local_hangup`` ``refer_failed``) and the caller is
     back with its agent, told ``failed``.
   - ``BRIDGE``: the hand-over to the operator leg: caller and operator media bridged in the
     relay (``relay/bridge/sip_bridge.py``), ``bridged``, the caller's agent leaves.
   - ``TRY_REFER``: the REFER; if it fails (its ``refer_failed`` is recorded, the agent is not
     told), the bridge.
6. **Declined, no answer, a timeout, the operator or its bot gone**: the operator leg ends (BYE,
   or CANCEL while ringing; ``leg_ended`` with the why as ``detail``), its agent stream stops,
   the hold music stops and the caller's agent, which never left, is told (the ``transfer``
   message: ``declined`` with the bot's reason, or ``failed`` with ``decision_timeout``,
   ``operator_hung_up``, ``operator_agent_left``, ``operator_agent_unreachable``).

If the call ends first (the caller hangs up, the API hangs up), ``CallTransfers.abandon`` stops
the operator's agent stream (:meth:`WarmTransfer.stop_operator`) and ends the operator leg.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chalicelib.contracts import (
    CallEventType,
    LegEndReason,
    TransferCommand,
    TransferOutcomeCommand,
)
from relay.bridge.agent_ws import AgentBridge
from relay.bridge.twilio_messages import TransferEnd
from relay.calls.agent import AgentTarget, bridge_parts, uri_user
from relay.calls.deps import CallDeps, TransferDeps
from relay.calls.ending import EndDetail, record_sip_end
from relay.calls.transfer_leg import Handover, TransferLeg, TransferLegFailed, split_target
from relay.sip.syntax.refer_to import replaces_value

if TYPE_CHECKING:
    from relay.calls.transfer_cold import CallTransfers

logger = logging.getLogger("sipline.relay.calls")

__all__ = ["OPERATOR_LEAVE_S", "WarmTransfer", "operator_bridge", "replaced_leg_ends"]

WARM_METHODS = frozenset({"REFER", "BRIDGE", "TRY_REFER"})
"""How an accepted warm transfer joins caller and operator; another method is refused."""
OPERATOR_LEAVE_S = 5.0
"""How long the operator's agent stream has to close after ``stop`` before the leg goes on."""


def operator_bridge(
    target: AgentTarget, leg: TransferLeg, *, from_user: str, deps: CallDeps
) -> AgentBridge:
    """The second agent stream, for the operator leg (step 3 of the module docstring)."""
    command = leg.command
    assert leg.session is not None
    operator_uri, _ = split_target(command.target)
    identity, info, settings = bridge_parts(
        target, caller=from_user, callee=uri_user(operator_uri), deps=deps, direction="outgoing"
    )
    info = replace(
        info,
        system_prompt=command.prompt,
        extra={
            "sipline_leg": "operator",
            "sipline_transfer_id": command.transfer_id,
            "sipline_call_id": command.call_id,
        },
    )
    return AgentBridge(
        target.media_endpoint, leg.session, identity=identity, call=info, settings=settings
    )


async def replaced_leg_ends(leg: TransferLeg, deps: CallDeps) -> None:
    """The operator leg a warm REFER replaced: its BYE (RFC 3891 §3), else ours, bounded."""
    transfer = deps.transfer
    assert transfer is not None
    try:
        if not leg.signals.ended.done():
            await asyncio.wait({asyncio.shield(leg.signals.ended)}, timeout=transfer.referred_bye_s)
        if leg.signals.ended.done():
            ended = leg.signals.ended.result()
            detail = "operator_hung_up" if ended.by_remote else str(ended.reason)
        else:
            leg.hang_up()
            detail = "bye_sent"
        leg.events.record(CallEventType.LEG_ENDED, reason=LegEndReason.REFERRED, detail=detail)
    finally:
        await leg.close()


class WarmTransfer:
    """One warm transfer of a call (see the module docstring)."""

    def __init__(
        self, transfers: CallTransfers, command: TransferCommand, transfer: TransferDeps
    ) -> None:
        self.transfers, self.command, self.transfer = transfers, command, transfer
        self.operator: AgentBridge | None = None
        self._operator_task: asyncio.Task[Any] | None = None

    async def run(self) -> Handover | None:
        """Carry the transfer to its hand-over, or back to the agent (``None``)."""
        t, command = self.transfers, self.command
        dial, target = t.deps.dial, t.target
        if dial is None or target is None or command.method not in WARM_METHODS:
            why = "outgoing_calls_disabled" if dial is None else "warm_not_supported"
            if command.method not in WARM_METHODS:
                why = "method_not_supported"
            t.tell(command, "failed", None, why)
            return None
        leg = t.leg_under_way = TransferLeg(command, t.deps)
        t.session.start_hold_music(await self.transfer.hold_music(
            command.hold_music, command.hold_music_url
        ))  # fmt: skip
        media = t.session.media
        from_user = command.from_ or t.from_user
        try:
            await leg.place(
                dial, from_user=from_user, caller=None if media is None else media.negotiated
            )
            await leg.answered(t.signals.hang_up_requested, target.media_endpoint.framing)
        except TransferLegFailed as failed:
            await t.back_to_agent(leg)
            t.tell(command, "failed", failed.status, failed.reason)
            return None
        except Exception:  # a bug: end the operator leg, give the caller back, then report it
            if leg.call is not None and not leg.signals.ended.done():
                leg.end_here(EndDetail.INTERNAL_ERROR, LegEndReason.ERROR)
            await t.back_to_agent(leg)
            raise
        try:
            return await self._briefed(leg, target, from_user)
        except Exception:  # a bug: end the operator leg, give the caller back, then report it
            await self._drop(leg, "internal_error", LegEndReason.ERROR)
            raise

    async def _briefed(
        self, leg: TransferLeg, target: AgentTarget, from_user: str
    ) -> Handover | None:
        t, command = self.transfers, self.command
        operator = self.operator = operator_bridge(target, leg, from_user=from_user, deps=t.deps)
        self._operator_task = asyncio.get_running_loop().create_task(operator.run())
        deadline = t.deps.now() + self.transfer.decision_timeout_s
        connected = asyncio.ensure_future(operator.connected())
        waits: set[asyncio.Future[Any]] = {connected, leg.signals.ended}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()
        if leg.signals.ended.done():
            await self._operator_gone(leg)
            return None
        if not connected.result():
            await self._back(leg, "failed", "operator_agent_unreachable")
            return None
        leg.events.record(CallEventType.AGENT_JOINED)
        outcome = await self._outcome(leg, deadline)
        if outcome is None or leg.signals.ended.done():
            if leg.signals.ended.done():  # also when it hung up as the outcome came
                await self._operator_gone(leg)
            else:
                why = "operator_agent_left" if self._operator_task.done() else "decision_timeout"
                await self._back(leg, "failed", why)
            return None
        if not outcome.accepted:
            await self._back(leg, "declined", outcome.reason or "declined")
            return None
        logger.info("transfer %s accepted: %s", command.transfer_id, command.method)
        await self.stop_operator()
        if command.method == "BRIDGE":
            return Handover(command, leg)
        assert leg.call is not None
        dialog = leg.call.dialog.id
        replaces = replaces_value(
            dialog.call_id, to_tag=dialog.remote_tag, from_tag=dialog.local_tag
        )
        quiet = command.method == "TRY_REFER"
        handover = await t.refer(command, self.transfer, ("Replaces", replaces), quiet=quiet)
        if handover is not None:
            t.leg_under_way = None
            return Handover(command, replaced=leg)
        if quiet and not leg.signals.ended.done():  # TRY_REFER: the bridge instead
            return Handover(command, leg)
        if leg.signals.ended.done():
            record_sip_end(leg.events, leg.signals.ended.result())
            await t.back_to_agent(leg)
            if quiet:
                t.tell(command, "failed", None, "operator_hung_up")
            return None
        await self._drop(leg, "refer_failed")  # the agent was told the REFER's failure
        return None

    async def _outcome(self, leg: TransferLeg, deadline: float) -> TransferOutcomeCommand | None:
        """The operator's ``transfer_outcome``; ``None``: the leg, its bot or the time ran out."""
        t, tid = self.transfers, self.command.transfer_id
        assert self._operator_task is not None
        while True:
            left = deadline - t.deps.now()
            if left <= 0:
                return None
            next_outcome = asyncio.ensure_future(t.signals.outcomes.get())
            waits: set[asyncio.Future[Any]] = {
                next_outcome, leg.signals.ended, self._operator_task
            }  # fmt: skip
            try:
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                next_outcome.cancel()
            if next_outcome.done() and not next_outcome.cancelled():
                outcome = next_outcome.result()
                if outcome.transfer_id == tid:
                    return outcome
                logger.info("outcome of transfer %s ignored: not under way", outcome.transfer_id)
                continue
            return None

    async def _operator_gone(self, leg: TransferLeg) -> None:
        """The operator hung up during the briefing."""
        record_sip_end(leg.events, leg.signals.ended.result())
        await self.stop_operator()
        await self.transfers.back_to_agent(leg)
        self.transfers.tell(self.command, "failed", None, "operator_hung_up")

    async def _back(self, leg: TransferLeg, status: TransferEnd, reason: str) -> None:
        """No transfer: the operator leg ends, the caller is back with its agent, told why."""
        await self._drop(leg, "declined" if status == "declined" else reason)
        self.transfers.tell(self.command, status, None, reason)

    async def _drop(
        self, leg: TransferLeg, detail: str, reason: LegEndReason = LegEndReason.LOCAL_HANGUP
    ) -> None:
        await self.stop_operator()
        if leg.call is not None and not leg.signals.ended.done():
            leg.end_here(detail[:500], reason)
        await self.transfers.back_to_agent(leg)

    async def stop_operator(self) -> None:
        """End the operator's agent stream (``stop``), waiting a bounded while for it to close."""
        operator, task = self.operator, self._operator_task
        if operator is None or task is None:
            return
        operator.stop()
        await asyncio.wait({task}, timeout=OPERATOR_LEAVE_S)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
