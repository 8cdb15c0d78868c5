"""A REFER from the far end of a call (a PBX transferring the agent): decline it, or follow it.

Theory of operation
===================

The relay is the *transferee* here (RFC 3515, RFC 5589 §6.1): the far end of an answered call
sends REFER in the call's dialog, naming a target. The SIP side (``relay/sip/usage/
refer_server.py``) checks and bounds the REFER and asks the service's policy, which asks the
call (:func:`follows`): the call's account setting, carried on the INVITE decision
(``InviteAccepted.incomingRefer``, the account's ``/api/sip``), decides.

- ``decline`` (the default): 603 Decline. Toll fraud is the risk of following: a stranger's
  REFER would make the relay dial where the stranger says (docs/security.md).
- ``follow``: 202 Accepted and NOTIFY ``100 Trying``, then :class:`FarRefers` (one task per
  call, one REFER at a time) follows it:

  1. The target must be a ``sip:``/``sips:`` URI without an embedded ``Replaces`` (an attended
     transfer of the agent is not supported): otherwise the policy declines (603). Its
     embedded ``X-`` header fields (at most :data:`MAX_FORWARDED_HEADERS`) go on the new
     INVITE; other embedded fields, and ``Referred-By`` (RFC 3892's copy is a SHOULD; the
     relay's INVITEs carry ``X-`` fields only), are dropped. A field the INVITE cannot carry (a
     control character) is NOTIFY ``400``.
  2. The target is located under the relay's egress policy (``chalicelib/egress.py`` via the
     RFC 3263 locator): an address the policy refuses is NOTIFY ``403 Forbidden`` and nothing is
     dialled; other location failures are the outgoing table's status (484, 604, 503).
  3. The new leg's INVITE (``invite_sent``, role ``transfer_target``, no ``transferId``: the
     control plane asked for nothing) offers the call's *own* RTP port: the agent's media
     session is the one that carries the new leg. While it rings the call goes on with the
     old leg (whose BYE, if the referrer hangs up meanwhile, no longer ends the call); its
     first 1xx is ``ringing`` and NOTIFY ``180``.
  4. On answer (``answered``): the media session is pointed at the new party (a new remote
     address and maybe codec, as a re-INVITE would: the source latch starts afresh), NOTIFY
     ``200 OK`` ends the subscription, the new leg becomes the call's leg (its BYE, INFO digits,
     the agent's hang-up), and the old leg gets our BYE (RFC 5589 §6.1: the transferee ends
     the old dialog) and ``leg_ended`` ``referred``. The agent's stream goes on, unchanged.
  5. A failure (4xx-6xx, the ring timeout, the call ending or hung up meanwhile) records the new
     leg's ``leg_ended`` and NOTIFYs its status (a failure sipfrag, 503 when there is none): the
     call stays on the old leg, or ends if the referrer hung up in the meantime.

Every REFER answered in a call is recorded (``refer_received``, :func:`referred`) with
``detail`` ``accepted``/``declined``, the target and the referrer, bounded to the event's 500
characters, credentials (a URI's password, embedded headers) removed. Billing: the legs' own
events bill the call (docs/billing.md: the new leg bills from ``invite_sent``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.config import DEFAULT_CODEC_PREFERENCE
from chalicelib.contracts import CallEventType, LegEndReason, LegRole
from relay.calls.deps import CallDeps, CallSignals
from relay.calls.ending import LOCATE_ENDS, UNANSWERED_ENDS, record_sip_end
from relay.calls.recorder import LegEvents
from relay.plan import plan_outgoing_offer
from relay.sip.errors import LocalProtocolError
from relay.sip.locate import LocateError, LocateFailure
from relay.sip.syntax.refer_to import ReferTo
from relay.sip.syntax.uri import AbsoluteUri, SipUri
from relay.sip.usage.invite_session import CallEnded, CallProgress, InviteSession
from relay.sip.usage.refer_server import ReferReceived
from relay.transport.rtp_session import RtpSession

if TYPE_CHECKING:
    from relay.calls.transfer_cold import CallTransfers

logger = logging.getLogger("sipline.relay.calls")

__all__ = ["FarRefers", "MAX_FORWARDED_HEADERS", "ReferLeg", "follows", "refer_detail", "referred"]

FOLLOW = "follow"
MAX_FORWARDED_HEADERS = 8
"""Embedded ``X-`` fields of a Refer-To put on the new INVITE; more are dropped."""
DETAIL_PART = 200
"""Characters of the target and of the referrer kept in ``refer_received``'s ``detail``."""
CANCEL_WAIT_S = 40.0
"""How long a CANCELled INVITE may take to end (Timer B's 32 s and some)."""
_PASSWORD = re.compile(r"(sips?:[^:@;>\s]+):[^@;>\s]*@", re.IGNORECASE)
_HEADERS = re.compile(r"\?[^>\s]*")


def follows(
    setting: str | None, uri: SipUri | AbsoluteUri, headers: tuple[tuple[str, str], ...]
) -> bool:
    """Whether a call whose ``incomingRefer`` is ``setting`` follows a REFER to ``uri`` (step 1)."""
    return (
        setting == FOLLOW
        and isinstance(uri, SipUri)
        and uri.scheme in ("sip", "sips")
        and bool(uri.host)
        and not any(name.lower() == "replaces" for name, _ in headers)
    )


def refer_detail(accepted: bool, refer_to: ReferTo, referred_by: str | None) -> str:
    """``refer_received``'s detail: the answer, the target, the referrer; no credentials (a
    URI's password, embedded header fields), each part at most :data:`DETAIL_PART` long."""
    uri = refer_to.uri
    target = str(replace(uri, password=None, headers=()) if isinstance(uri, SipUri) else uri)
    by = _HEADERS.sub("", _PASSWORD.sub(r"\1@", referred_by or "-"))
    answer = "accepted" if accepted else "declined"
    return f"{answer} to={target[:DETAIL_PART]} by={by[:DETAIL_PART]}"


class _Referred(Protocol):
    events: LegEvents
    signals: CallSignals


def referred(flow: _Referred, event: ReferReceived, now: float) -> None:
    """What the service does with a REFER answered in ``flow``'s call: record it, and hand an
    accepted one to the call's :class:`FarRefers` (synchronous: the service's drain).

    The queue holds as many as a dialog may have under way; one more (those waiting expired
    meanwhile) is NOTIFY 503 at once."""
    detail = refer_detail(event.server.accepted, event.refer_to, event.referred_by)
    flow.events.record(CallEventType.REFER_RECEIVED, detail=detail)
    if event.server.accepted:
        try:
            flow.signals.referred.put_nowait(event)
        except asyncio.QueueFull:
            event.server.report(503, now=now)


class ReferringCall(Protocol):
    """What :class:`FarRefers` needs of the call it serves (``IncomingCallFlow``)."""

    leg: InviteSession
    events: LegEvents
    signals: CallSignals
    session: RtpSession | None
    deps: CallDeps
    transfers: CallTransfers | None

    @property
    def call_id(self) -> str | None: ...

    def info_dtmf(self, content_type: str | None, body: bytes) -> None: ...


@dataclass
class ReferLeg:
    """A leg's routing slot in the service (``DialDeps.hold``): its signals, its media."""

    events: LegEvents
    call_id: str | None
    session: RtpSession | None
    signals: CallSignals = field(default_factory=CallSignals)
    rang: bool = False
    report: Any = None

    def info_dtmf(self, content_type: str | None, body: bytes) -> None:
        """Digits of a leg not (or no longer) the call's: dropped."""

    def progress(self, event: CallProgress) -> None:
        """The new leg's first 1xx other than 100: ``ringing``, NOTIFY 180 (step 3)."""
        if not self.rang:
            self.rang = True
            self.events.record(CallEventType.RINGING, sip_status=event.status)
            if self.report is not None:
                self.report(180)


class FarRefers:
    """Follows the accepted REFERs of one call, one at a time (see the module docstring)."""

    def __init__(self, call: ReferringCall, *, from_user: str) -> None:
        self.call = call
        self.from_user = from_user
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        """Stop following (the call ended): a new leg still ringing is CANCELled."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _serve(self) -> None:
        queue = self.call.signals.referred
        while True:
            event = await queue.get()
            try:
                await self._follow(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("call %s: following a REFER failed", self.call.call_id)
                self._report(event, 500)

    def _report(self, event: ReferReceived, status: int) -> None:
        deps = self.call.deps
        if event.server.report(status, now=deps.now()):
            deps.transmit()

    async def _follow(self, event: ReferReceived) -> None:
        call, deps = self.call, self.call.deps
        if event.server.terminated:  # it waited past its expiry: the referrer was told so
            return
        uri = event.refer_to.uri
        dial, session = deps.dial, call.session
        if dial is None or session is None or not isinstance(uri, SipUri):
            self._report(event, 503)
            return
        request_uri = replace(uri, headers=())
        try:
            located = await dial.locate(request_uri)
        except LocateError as error:
            refused = error.kind is LocateFailure.REFUSED
            status = 403 if refused else LOCATE_ENDS[error.kind][0]
            logger.warning("call %s: REFER to %s not followed: %s", call.call_id, uri.host, error)
            self._report(event, status)
            return
        old_call, old_events = call.leg, call.events
        retired = ReferLeg(
            old_events, call.call_id, session
        )  # the old leg's end no longer ends the call
        dial.hold(old_call, retired)
        new = ReferLeg(
            LegEvents(
                deps.record, leg_id=deps.ids.token(8), role=LegRole.TRANSFER_TARGET,
                call_id=call.call_id,
            ),
            call.call_id,
            session,
            report=lambda status: self._report(event, status),
        )  # fmt: skip
        plan = plan_outgoing_offer(
            list(DEFAULT_CODEC_PREFERENCE),
            local_address=deps.advertised_address,
            local_port=session.local_port,  # the agent's session carries the new leg (step 3)
            session_id=deps.ids.bits(31),
        )
        headers = [(n, v) for n, v in event.refer_to.headers if n.lower().startswith("x-")]
        headers = headers[:MAX_FORWARDED_HEADERS]
        try:
            placed = dial.place_call(
                targets=located.addresses, request_uri=request_uri, from_user=self.from_user,
                offer=plan.sdp, preference=plan.preference, credentials=None, headers=headers,
                ring_timeout_s=dial.ring_timeout_s, now=deps.now(),
            )  # fmt: skip
        except LocalProtocolError as error:  # a header the INVITE cannot carry
            logger.warning("call %s: REFER not followed: %s", call.call_id, error)
            self._restore(old_call, retired)
            self._report(event, 400)
            return
        dial.hold(placed, new)
        deps.transmit()
        new.events.record(CallEventType.INVITE_SENT)
        try:
            media = await self._answered(new)
        except asyncio.CancelledError:  # the call ended: the new leg goes too
            placed.hang_up(now=deps.now())
            deps.transmit()
            new.events.record(CallEventType.LEG_ENDED, reason=LegEndReason.LOCAL_HANGUP)
            raise
        if media is None:
            ended = new.signals.ended.result() if new.signals.ended.done() else None
            if ended is None:
                placed.hang_up(now=deps.now())
                deps.transmit()
                ended = await _ended(new)
            self._report(event, _unanswered(new.events, ended))
            self._restore(old_call, retired)
            return
        new.events.record(CallEventType.ANSWERED, sip_status=200)
        session.update(media)
        retired.session = None  # a late re-INVITE of the old leg must not move the media back
        self._report(event, 200)
        dial.hold(placed, call)  # the new leg is the call's now
        call.leg, call.events = placed, new.events
        if call.transfers is not None:
            call.transfers.call, call.transfers.events = placed, new.events
        if retired.signals.ended.done():  # the referrer hung up already
            record_sip_end(old_events, retired.signals.ended.result())
        else:
            old_call.hang_up(now=deps.now())
            deps.transmit()
            old_events.record(CallEventType.LEG_ENDED, reason=LegEndReason.REFERRED)
        logger.info("call %s: followed a REFER to %s", call.call_id, uri.host)

    async def _answered(self, new: ReferLeg) -> Any:
        """The new leg's answer (its media), or ``None`` once it ended or the call is hung up."""
        signals = self.call.signals
        hang_up = asyncio.ensure_future(signals.hang_up_requested.wait())
        waits: set[asyncio.Future[Any]] = {new.signals.answered, new.signals.ended, hang_up}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hang_up.cancel()
        return new.signals.answered.result() if new.signals.answered.done() else None

    def _restore(self, old_call: InviteSession, retired: ReferLeg) -> None:
        """The new leg failed: the call stays on the old leg, or ends if it is gone (step 5)."""
        dial, signals = self.call.deps.dial, self.call.signals
        assert dial is not None
        if retired.signals.ended.done():
            if not signals.ended.done():
                signals.ended.set_result(retired.signals.ended.result())
        else:
            dial.hold(old_call, self.call)


async def _ended(new: ReferLeg) -> CallEnded | None:
    done, _ = await asyncio.wait({asyncio.shield(new.signals.ended)}, timeout=CANCEL_WAIT_S)
    return new.signals.ended.result() if done else None


def _unanswered(events: LegEvents, ended: CallEnded | None) -> int:
    """Record the new leg's ``leg_ended``; return the sipfrag status to report (step 5)."""
    if ended is None:
        events.record(
            CallEventType.LEG_ENDED, reason=LegEndReason.ERROR, detail="cancel_unanswered"
        )
        return 487
    status = ended.status
    events.record(
        CallEventType.LEG_ENDED,
        reason=UNANSWERED_ENDS.get(ended.reason, LegEndReason.ERROR),
        detail=str(ended.reason),
        sip_status=status,
    )
    return status if status is not None and status >= 300 else 503
