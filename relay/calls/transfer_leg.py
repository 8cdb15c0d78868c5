"""A bridged transfer's second leg: the INVITE to the transfer target, and the leg's events.

Theory of operation
===================

A cold transfer by ``INVITE`` (``transfer_cold.py``) calls the target the way an outgoing call
calls its callee (``outgoing.py``), with the same dependencies (:class:`~relay.calls.deps.DialDeps`:
the endpoint's ``place_call``, the RFC 3263 locator under the egress policy, the cipher of the
command's ``passwordCiphertext``, ``SIPLINE_RING_TIMEOUT_S``), and without an agent: on answer
its media is bridged to the caller's (``relay/bridge/sip_bridge.py``).

A :class:`TransferLeg` is one SIP leg of role ``transfer_target`` whose every event carries the
transfer's ``transferId`` (``recorder.py``). The service routes the leg's SIP events to it as to
a call flow (``DialDeps.hold``: ``CallAnswered``, ``CallEnded``, ``CallProgress``, SIP INFO),
through its :class:`~relay.calls.deps.CallSignals`.

1. :meth:`TransferLeg.place`: the credentials are decrypted, the target parsed and located, an
   RTP port pair opened and the offer written, the caller's codec first (so that the bridge
   passes packets through when the target takes it), then the default list. A failure before
   the INVITE records ``invite_sent`` and ``leg_ended`` at one instant (``outgoing.py``'s
   table: 484/604/503, ``credentials_unavailable``, ``dial_refused``...), and the transfer has
   failed with that status. The target's embedded ``X-`` header fields and the command's
   ``inviteHeaders`` go on the INVITE (a Request-URI carries no headers, RFC 3261 §19.1.5).
2. ``invite_sent`` (the leg bills from here, ring time included: docs/billing.md), ``ringing``
   once, then ``answered`` or ``leg_ended`` (:meth:`record_unanswered`, ``outgoing.py``'s table:
   ``rejected`` with the status, ``timeout`` at the ring timeout).
3. Once bridged, the leg ends by its own BYE (:func:`~relay.calls.ending.record_sip_end`) or
   ours (:meth:`end_here`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from chalicelib.clock import utc_now
from chalicelib.config import DEFAULT_CODEC_PREFERENCE
from chalicelib.contracts import (
    CallEventType,
    LegEndReason,
    LegRole,
    MediaFraming,
    TransferCommand,
)
from relay.calls.agent import JITTER_MIN_DELAY_MS
from relay.calls.credentials import CredentialsUnavailable, dial_credentials
from relay.calls.deps import CallDeps, CallSignals, DialDeps
from relay.calls.dialled_leg import DialledLeg
from relay.calls.ending import LOCATE_ENDS, UNANSWERED_ENDS, EndDetail
from relay.calls.recorder import LegEvents
from relay.plan import plan_outgoing_offer
from relay.sip.errors import LocalProtocolError
from relay.sip.locate import LocateError, parse_target
from relay.sip.sdp.offer_answer import NegotiatedMedia
from relay.sip.syntax.uri import SipUri
from relay.sip.usage.call_state import CallEndReason
from relay.sip.usage.invite_session import CallEnded
from relay.sip.usage.outgoing import OutgoingCall
from relay.transport.rtp_session import RtpPortsExhausted, RtpSession

logger = logging.getLogger("sipline.relay.calls")

__all__ = ["Handover", "TransferLeg", "TransferLegFailed", "split_target", "codec_preference"]


class TransferLegFailed(Exception):
    """The second leg ended before it was answered (its ``leg_ended`` is recorded)."""

    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def split_target(target: str) -> tuple[SipUri, list[tuple[str, str]]]:
    """The target without its embedded header fields, and those fields decoded.

    Raises:
        LocateError: ``INVALID``: not a SIP or SIPS URI with a host.
    """
    uri = parse_target(target)
    headers = [(unquote(name), unquote(value)) for name, value in uri.headers]
    return replace(uri, headers=()), headers


def codec_preference(caller: NegotiatedMedia | None) -> list[str]:
    """The target's offer: the caller's codec first (passthrough), then the default list."""
    first = []
    if caller is not None:
        name = f"{caller.codec}/{caller.clock_rate_hz}"
        first = [f"{name}/{caller.channels}" if caller.channels > 1 else name]
    return first + [c for c in DEFAULT_CODEC_PREFERENCE if c not in first]


@dataclass(frozen=True, slots=True)
class Handover:
    """The caller was handed on: by REFER (no second leg), or to an answered second leg."""

    command: TransferCommand
    leg: TransferLeg | None = None
    replaced: TransferLeg | None = None
    """A warm REFER's operator leg, which the caller's INVITE with ``Replaces`` replaces."""


class TransferLeg(DialledLeg):
    """The second leg of a bridged transfer (see the module docstring)."""

    def __init__(self, command: TransferCommand, deps: CallDeps) -> None:
        self.command = command
        self.deps = deps
        self.signals = CallSignals()
        self.events = LegEvents(
            deps.record,
            leg_id=deps.ids.token(8),
            role=LegRole.TRANSFER_TARGET,
            call_id=command.call_id,
            transfer_id=command.transfer_id,
        )
        self.session: RtpSession | None = None
        self.call: OutgoingCall | None = None
        self.rang = False

    @property
    def call_id(self) -> str:
        return self.command.call_id

    # (what the service routes here, ``info_dtmf`` and ``progress``: ``DialledLeg``)

    # --- SIP actions ----------------------------------------------------------------------

    def hang_up(self, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """CANCEL while ringing, BYE once answered (the usage knows which)."""
        if self.call is not None and not self.signals.ended.done():
            self.call.hang_up(now=self.deps.now(), headers=headers)
            self.deps.transmit()

    # --- the leg --------------------------------------------------------------------------

    async def place(
        self, dial: DialDeps, *, from_user: str, caller: NegotiatedMedia | None
    ) -> None:
        """Send the INVITE (step 1), or record why none went out and raise.

        Raises:
            TransferLegFailed: no INVITE was sent; ``invite_sent`` and ``leg_ended`` are recorded.
        """
        command = self.command
        try:
            await self._place(dial, from_user=from_user, caller=caller)
        except TransferLegFailed as failed:
            now = utc_now()  # one instant: a leg that never started bills nothing
            self.events.record(CallEventType.INVITE_SENT, at=now)
            reason = LegEndReason.ERROR if failed.status is None else LegEndReason.REJECTED
            self.events.record(
                CallEventType.LEG_ENDED,
                at=now,
                reason=reason,
                detail=failed.reason,
                sip_status=failed.status,
            )
            logger.warning("transfer %s: no INVITE: %s", command.transfer_id, failed.reason)
            raise

    async def _place(
        self, dial: DialDeps, *, from_user: str, caller: NegotiatedMedia | None
    ) -> None:
        command = self.command
        try:
            credentials = await dial_credentials(command, dial.cipher)
        except CredentialsUnavailable as error:
            logger.error("transfer %s: %s", command.transfer_id, error)
            raise TransferLegFailed(None, EndDetail.CREDENTIALS_UNAVAILABLE) from None
        try:
            request_uri, embedded = split_target(command.target)
            located = await dial.locate(request_uri)
        except LocateError as error:
            status, detail = LOCATE_ENDS[error.kind]
            raise TransferLegFailed(status, detail) from None
        try:
            session = self.session = await RtpSession.open(self.deps.ports)
        except RtpPortsExhausted:
            raise TransferLegFailed(503, EndDetail.RTP_PORTS_EXHAUSTED) from None
        session.info_dtmf = self._send_dtmf_info
        plan = plan_outgoing_offer(
            codec_preference(caller),
            local_address=self.deps.advertised_address,
            local_port=session.local_port,
            session_id=self.deps.ids.bits(31),
        )
        try:
            call = self.call = dial.place_call(
                targets=located.addresses,
                request_uri=request_uri,
                from_user=from_user,
                offer=plan.sdp,
                preference=plan.preference,
                credentials=credentials,
                headers=[*embedded, *command.invite_headers],
                ring_timeout_s=dial.ring_timeout_s,
                now=self.deps.now(),
            )
        except LocalProtocolError as error:
            logger.error("transfer %s: INVITE refused: %s", command.transfer_id, error)
            raise TransferLegFailed(None, EndDetail.DIAL_REFUSED) from None
        dial.hold(call, self)  # before the first transmit: no event of the leg is missed
        self.deps.transmit()
        self.events.record(CallEventType.INVITE_SENT, at=utc_now())

    async def answered(
        self, hang_up: asyncio.Event, framing: MediaFraming = MediaFraming.TWILIO
    ) -> NegotiatedMedia:
        """Wait for the answer (``answered`` recorded, media started in ``framing``: a bridged
        leg's is never framed; a warm transfer's operator leg's is its agent's).

        ``hang_up`` set first (the call ended, the API hung up) cancels the INVITE.

        Raises:
            TransferLegFailed: the INVITE ended without an answer (``leg_ended`` recorded).
        """
        signals = self.signals
        cancel = asyncio.ensure_future(hang_up.wait())
        waits: set[asyncio.Future[Any]] = {signals.answered, signals.ended, cancel}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancel.cancel()
        media = signals.answered.result() if signals.answered.done() else None
        if media is None:
            ended = await self.cancelled() if not signals.ended.done() else signals.ended.result()
            raise TransferLegFailed(*self.record_unanswered(ended))
        self.events.record(CallEventType.ANSWERED, sip_status=200)
        assert self.session is not None
        self.session.start(
            media, framing, ids=self.deps.ids, jitter_min_delay_ms=JITTER_MIN_DELAY_MS
        )
        return media

    async def cancelled(self) -> CallEnded | None:
        """CANCEL the ringing leg and wait (bounded by Timer B) for its INVITE to end."""
        self.hang_up()
        done, _ = await asyncio.wait({asyncio.shield(self.signals.ended)}, timeout=40.0)
        return self.signals.ended.result() if done else None

    def record_unanswered(self, ended: CallEnded | None) -> tuple[int | None, str]:
        """Record ``leg_ended`` for an INVITE that ended unanswered; return its status, detail."""
        if ended is None:  # our CANCEL did not end it in time
            self.events.record(
                CallEventType.LEG_ENDED,
                reason=LegEndReason.ERROR,
                detail=EndDetail.CANCEL_UNANSWERED,
            )
            return None, EndDetail.CANCEL_UNANSWERED
        reason = UNANSWERED_ENDS.get(ended.reason, LegEndReason.ERROR)
        status = ended.status
        if ended.reason is CallEndReason.TRANSACTION_FAILED and status is None:
            status = 503
        self.events.record(
            CallEventType.LEG_ENDED, reason=reason, detail=str(ended.reason), sip_status=status
        )
        return status, str(ended.reason)

    def end_here(self, detail: str, reason: LegEndReason = LegEndReason.LOCAL_HANGUP) -> None:
        """Hang the answered leg up (BYE) and record ``leg_ended``."""
        self.hang_up()
        self.events.record(CallEventType.LEG_ENDED, reason=reason, detail=detail)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
