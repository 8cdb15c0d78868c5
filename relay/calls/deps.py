"""What a call's flow is given (:class:`CallDeps`) and what the SIP side tells it (:class:`CallSignals`).

Theory of operation
===================

A call flow (``incoming.py``; the outgoing call's flow next to it) does no I/O of its own and
reads no clock of its own for SIP: every effect goes through :class:`CallDeps`, which the
service builds once at start and hands to every call.

- ``decide`` asks the control plane (contract 1) and may raise ``ControlPlaneUnavailable``;
- ``record`` takes a call event (contract 2) for the outbox, which delivers it at least once;
- ``transmit`` sends what the sans-I/O SIP endpoint has queued: the flow calls the endpoint's
  call object (``ringing``, ``accept``, ``reject``, ``hang_up``) and then ``transmit()``;
- ``now`` is the clock those endpoint calls are given (the loop's clock);
- ``ports`` hands out RTP port pairs; ``ids`` makes the call's ids.

So a test drives a whole call in-process with fakes: a scripted ``decide``, a ``record`` that
appends, a ``transmit`` that collects the endpoint's datagrams
(``tests/integration/relay/calls/test_incoming.py``).

An outgoing call needs more (:class:`DialDeps`, ``CallDeps.dial``): the endpoint's
``place_call``, ``hold`` (route a placed call's events to its flow: the service's table, a
test's drain), the RFC 3263 locator, the cipher of the command's password, the ring timeout.
A relay without them takes no ``dial``. Transfers (``transfer_cold.py``) need
:class:`TransferDeps` (``CallDeps.transfer``): the endpoint's ``send_refer``, the hold music, the
REFER bounds; a bridged transfer places its second leg with :class:`DialDeps`.

:class:`CallSignals` is the other direction. The service's drain loop is synchronous (it must
never await): it turns the endpoint's events for a call into these futures and this event, and
the flow awaits them: the answer, the end, a hang-up, and the ``transfer`` commands and REFER
outcomes of the call's transfers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from chalicelib.contracts import (
    CallEvent,
    InviteAccepted,
    InviteRejected,
    InviteWebhook,
    TransferCommand,
    TransferOutcomeCommand,
)
from chalicelib.crypto import Cipher
from chalicelib.egress import EgressPolicy
from relay.calls.recorder import LegEvents
from relay.ids import IdSource
from relay.sip.locate import Located
from relay.sip.sdp.offer_answer import NegotiatedMedia
from relay.sip.syntax.uri import SipUri
from relay.sip.usage.invite_session import CallEnded, InviteSession
from relay.sip.usage.refer import ReferEvent, ReferSubscription
from relay.sip.usage.refer_server import MAX_REFERS_PER_DIALOG, ReferReceived
from relay.transport.rtp_session import RtpPortAllocator, RtpSession

if TYPE_CHECKING:
    from relay.media.hold_music import HoldClip
    from relay.sip.address import Address
    from relay.sip.digest import Credentials
    from relay.sip.sdp.description import SessionDescription
    from relay.sip.usage.outgoing import OutgoingCall


MAX_QUEUED_TRANSFERS = 4
"""``transfer`` commands a call holds before it runs them; more are refused (logged): the control
plane runs one transfer per call at a time, so more are duplicates or a fault."""


@dataclass
class CallSignals:
    """What the SIP side tells a running call task (set by the service's event loop)."""

    answered: asyncio.Future[NegotiatedMedia | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    """The ACK came (with the answer to our offer, for a late offer)."""
    ended: asyncio.Future[CallEnded] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    """The SIP side ended the call (BYE, CANCEL, a timeout): there is nothing left to hang up."""
    hang_up_requested: asyncio.Event = field(default_factory=asyncio.Event)
    """The API (a ``hangup`` command) or the relay's shutdown wants the call ended."""
    shutting_down: bool = False
    """Set with :attr:`hang_up_requested` when the relay's shutdown ends the call
    (``relay/drain.py``): recorded ``relay_shutdown``, the BYE says why (RFC 3326)."""
    transfers: asyncio.Queue[TransferCommand] = field(
        default_factory=lambda: asyncio.Queue(MAX_QUEUED_TRANSFERS)
    )
    """``transfer`` commands for this call (``transfer_cold.py`` takes them once answered)."""
    refer: asyncio.Queue[ReferEvent] = field(default_factory=asyncio.Queue)
    """The outcome of the REFERs sent in this call's dialog (``ReferAccepted``...)."""
    outcomes: asyncio.Queue[TransferOutcomeCommand] = field(
        default_factory=lambda: asyncio.Queue(MAX_QUEUED_TRANSFERS)
    )
    """``transfer_outcome`` commands: a warm transfer's operator accepted or declined
    (``transfer_warm.py`` takes the one of its transfer)."""
    referred: asyncio.Queue[ReferReceived] = field(
        default_factory=lambda: asyncio.Queue(MAX_REFERS_PER_DIALOG)
    )
    """REFERs the far end sent that the call accepted to follow (``far_refer.py``)."""


class CallFlow(Protocol):
    """What the service routes a call's SIP events to: an incoming or an outgoing call's flow."""

    signals: CallSignals
    session: RtpSession | None
    events: LegEvents

    @property
    def call_id(self) -> str | None: ...

    def info_dtmf(self, content_type: str | None, body: bytes) -> None: ...


class PlaceCall(Protocol):
    """``relay.sip.usage.dial.place_call`` on the relay's endpoint: send the INVITE, return the
    call it starts."""

    def __call__(
        self,
        *,
        targets: Sequence[Address],
        request_uri: SipUri,
        from_user: str,
        offer: SessionDescription,
        preference: Sequence[str],
        credentials: Credentials | None,
        headers: Sequence[tuple[str, str]] = (),
        ring_timeout_s: float,
        now: float,
    ) -> OutgoingCall: ...


@dataclass(frozen=True)
class DialDeps:
    """What an outgoing call needs beyond what every call is given (see the module docstring)."""

    place_call: PlaceCall
    hold: Callable[[InviteSession, CallFlow], None]
    """Route the placed call's events to its flow; called before anything is transmitted."""
    locate: Callable[[SipUri], Awaitable[Located]]
    """RFC 3263 location with the egress policy (``SipLocator.locate``)."""
    cipher: Cipher | None
    """Decrypts the command's ``passwordCiphertext`` (``None``: no key configured)."""
    ring_timeout_s: float
    """``SIPLINE_RING_TIMEOUT_S``: CANCEL after this long without an answer."""


class SendRefer(Protocol):
    """``relay.sip.usage.refer.send_refer`` on the relay's endpoint."""

    def __call__(
        self,
        session: InviteSession,
        refer_to: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        now: float,
        notify_timeout_s: float,
    ) -> ReferSubscription: ...


@dataclass(frozen=True)
class TransferDeps:
    """What transfers need beyond what every call is given (``transfer_cold.py``); a bridged
    transfer's second leg is placed with :class:`DialDeps` as an outgoing call is."""

    send_refer: SendRefer
    hold_music: Callable[[str, str | None], Awaitable[HoldClip | None]]
    """The clip of a ``holdMusic``/``holdMusicUrl`` pair (``HoldMusicLoader.choose``)."""
    notify_timeout_s: float
    """``SIPLINE_REFER_TIMEOUT_S``: a REFER without a final NOTIFY this long after it failed."""
    referred_bye_s: float
    """How long the referred caller has to BYE us before we do (RFC 5589 §6.1)."""
    decision_timeout_s: float = 120.0
    """``SIPLINE_WARM_DECISION_TIMEOUT_S``: a warm transfer's briefed operator leg waits this
    long for the ``transfer_outcome``, then is dropped (``transfer_warm.py``)."""


@dataclass(frozen=True)
class CallDeps:
    """What a call task needs from the service (see the module docstring)."""

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
    dial: DialDeps | None = None
    """What outgoing calls need; ``None``: this relay places no calls."""
    transfer: TransferDeps | None = None
    """What transfers need; ``None``: this relay transfers no calls (the agent is told)."""
