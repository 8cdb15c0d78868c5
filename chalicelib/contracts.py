"""Wire contracts between the relay (the SIP edge) and the control plane.

Defined once, here, with pydantic and the standard library only: the relay imports this module
(its image copies ``chalicelib/``) and ``docs/webhooks.md`` describes these models.

1. INVITE webhook (edge -> control plane), ``POST /webhooks/sip/invite``: the edge posts an
   :class:`InviteWebhook` for every new INVITE and answers the caller with the returned
   :class:`InviteDecision` (an :class:`InviteAccepted` or an :class:`InviteRejected`).
2. Call events (edge -> control plane), ``POST /webhooks/sip/events``: a :class:`CallEventBatch`
   of timestamped, uniquely identified :class:`CallEvent` items, delivered at least once; and
   ``POST /webhooks/sip/heartbeat``: an :class:`EdgeHeartbeat` naming the calls a relay holds.
3. Commands (control plane -> edge, over SQS): :class:`DialCommand`, :class:`HangUpCommand`,
   :class:`RegisterCommand`, :class:`UnregisterCommand`, :class:`TransferCommand`,
   :class:`TransferOutcomeCommand`, one JSON object per message, told apart by ``type``.
4. Media endpoint (edge -> agent): :class:`MediaEndpoint` names the agent's WebSocket and its framing.

Our own contracts forbid unknown fields, so that drift between the two sides fails loudly.

Size: about 500 lines, most of them field descriptions: the four contracts share their
enums (``Transport``, ``LegRole``, ``MediaFraming``...) and the one ``Contract`` base, and both
sides read them as the one list of what crosses between them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

MAX_HEARTBEAT_CALLS = 5000
"""Call ids one heartbeat may list (about 190 kB of JSON; a DynamoDB item holds 400 kB)."""
MAX_HEARTBEAT_ENDED = 1000
"""Entries of a heartbeat's ``endedAt`` (about 70 kB more; the item stays under 400 kB)."""
MAX_QUEUE_URL = 1024
"""Length of a queue URL a relay may announce (an SQS URL is under 200 characters)."""


class Contract(BaseModel):
    """Base of every wire model: camelCase JSON, unknown fields rejected, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Transport(StrEnum):
    """SIP transports sipline speaks (RFC 3261 §18): the webhook's ``transport``, and the relay's.

    The relay's SIP core uses this enum too (``relay.sip.address``): one definition, here,
    because the control plane ships ``chalicelib/`` alone and cannot import the relay.
    ``reliable`` ones need no retransmissions (RFC 3261 §17.1.1.2).
    """

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"

    @property
    def reliable(self) -> bool:
        return self is not Transport.UDP

    @property
    def via_name(self) -> str:
        """The transport as a Via header writes it (``SIP/2.0/UDP``)."""
        return self.value.upper()


class MediaFraming(StrEnum):
    """How audio is framed on the agent WebSocket (contract 4)."""

    TWILIO = "twilio"
    """Twilio Media Streams JSON, base64 mu-law at 8 kHz (the default)."""
    PCM16K = "pcm16k"
    """HD framing: 16-bit little-endian linear PCM at 16 kHz."""
    PCM48K = "pcm48k"
    """HD framing: 16-bit little-endian linear PCM at 48 kHz."""


class MediaEndpoint(Contract):
    """The agent's media endpoint: where the edge opens one WebSocket per call."""

    url: str = Field(description="ws:// or wss:// URL the edge connects to for each call.")
    framing: MediaFraming = Field(
        default=MediaFraming.TWILIO, description="Audio framing on the WebSocket."
    )

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")) or len(value) <= len("wss://"):
            raise ValueError(f"must be a ws:// or wss:// URL, got {value!r}")
        return value


# --- 1. INVITE webhook ---------------------------------------------------------------------------


class InviteWebhook(Contract):
    """What the edge saw when an INVITE arrived (contract 1)."""

    source_ip: str = Field(
        alias="sourceIp",
        description="Source address of the packet (never taken from a header); '' if unknown.",
    )
    source_port: int = Field(alias="sourcePort", ge=0, le=65535)
    transport: Transport
    request_uri: str = Field(alias="requestUri")
    from_uri: str = Field(alias="fromUri")
    from_display_name: str | None = Field(default=None, alias="fromDisplayName")
    from_tag: str = Field(default="", alias="fromTag")
    to_uri: str = Field(alias="toUri")
    sip_call_id: str = Field(alias="sipCallId", min_length=1, description="The SIP Call-ID.")
    headers: list[tuple[str, str]] = Field(
        default_factory=list, description="Every header as [name, value], in arrival order."
    )
    offered_codecs: list[str] = Field(
        default_factory=list,
        alias="offeredCodecs",
        description="Codecs of the SDP offer, as encoding/clock names (e.g. 'PCMU/8000').",
    )
    registration_id: str | None = Field(
        default=None,
        alias="registrationId",
        description="Set when the INVITE arrived over one of the account's registrations.",
    )
    edge_id: str = Field(default="", alias="edgeId", description="The edge task that holds it.")


IncomingRefer = Literal["decline", "follow"]
"""What the relay does with a REFER from the far end of a call (docs/relay.md): ``decline``
answers 603; ``follow`` calls the Refer-To target and moves the agent onto that new leg."""


class InviteAccepted(Contract):
    """The control plane's acceptance: answer the caller and bridge to the agent."""

    action: Literal["accept"] = "accept"
    call_id: str = Field(alias="callId")
    account_id: str = Field(default="default", alias="accountId")
    agent_id: str | None = Field(alias="agentId")
    media_endpoint: MediaEndpoint = Field(alias="mediaEndpoint")
    system_prompt: str | None = Field(
        default=None, alias="systemPrompt", description="The agent's rendered system prompt."
    )
    template_context: dict[str, Any] = Field(default_factory=dict, alias="templateContext")
    call_template: dict[str, Any] = Field(
        default_factory=dict,
        alias="callTemplate",
        description="The agent's call template (voice, tools, first speaker, ...) for the agent.",
    )
    codec_preference: list[str] = Field(default_factory=list, alias="codecPreference")
    join_timeout_s: float | None = Field(default=None, alias="joinTimeoutS")
    max_duration_s: float | None = Field(default=None, alias="maxDurationS")
    incoming_refer: IncomingRefer = Field(
        default="decline",
        alias="incomingRefer",
        description="A REFER the far end sends in this call: 'decline' (603) or 'follow' (a new"
        " leg for the agent). The account's /api/sip setting.",
    )


class InviteRejected(Contract):
    """The control plane's rejection: answer the caller with ``sip_status``."""

    action: Literal["reject"] = "reject"
    sip_status: int = Field(alias="sipStatus", ge=400, le=699)
    reason: str = Field(description="The rule that refused the call, e.g. 'source_ip_not_allowed'.")
    message: str = ""
    retry_after_s: int | None = Field(
        default=None,
        alias="retryAfterS",
        ge=0,
        le=86400,
        description="Seconds the caller should wait before trying again: the SIP response's"
        " Retry-After (e.g. 503 too_many_active_calls).",
    )


InviteDecision = Annotated[InviteAccepted | InviteRejected, Field(discriminator="action")]


# --- 2. Call events ------------------------------------------------------------------------------


class CallEventType(StrEnum):
    """What happened on a leg, a call or a registration (contract 2)."""

    INVITE_RECEIVED = "invite_received"
    """An incoming INVITE arrived on this leg."""
    INVITE_SENT = "invite_sent"
    """The edge sent an INVITE on this leg (outgoing call or transfer target)."""
    RINGING = "ringing"
    ANSWERED = "answered"
    """The leg's INVITE transaction ended with a 2xx (incoming: we answered; outgoing: they did)."""
    LEG_ENDED = "leg_ended"
    """The leg is gone: BYE, CANCEL, a final non-2xx, a timeout or an error."""
    AGENT_JOINED = "agent_joined"
    AGENT_LEFT = "agent_left"
    REFER_SENT = "refer_sent"
    REFER_ACCEPTED = "refer_accepted"
    REFER_SUCCEEDED = "refer_succeeded"
    """The transferee reached the target (NOTIFY sipfrag 2xx): sipline is out of the call."""
    REFER_FAILED = "refer_failed"
    REFER_RECEIVED = "refer_received"
    """The far end sent a REFER in the call (a PBX transferring the agent): ``detail`` says the
    answer (``declined`` / ``followed``), the Refer-To target and the Referred-By, credentials
    removed. Billing reads nothing from it: the legs' own events bill the call."""
    BRIDGED = "bridged"
    """Two legs were connected to each other by the edge (bridged transfer)."""
    REGISTRATION_SUCCEEDED = "registration_succeeded"
    REGISTRATION_FAILED = "registration_failed"
    CALL_CLOSED = "call_closed"
    """Written by the control plane only (its reaper, or a hang-up of a call no relay holds):
    no relay will report this call's end, so it is over at this instant (``docs/billing.md``)."""


class LegRole(StrEnum):
    """Which side of the call a leg is."""

    CALLER = "caller"
    """The first leg: the incoming caller or the outgoing call's callee."""
    TRANSFER_TARGET = "transfer_target"


class LegEndReason(StrEnum):
    """Why a leg ended."""

    REMOTE_HANGUP = "remote_hangup"
    """The far end sent BYE (or CANCEL before the answer)."""
    LOCAL_HANGUP = "local_hangup"
    """sipline hung up on behalf of the agent or the API."""
    REJECTED = "rejected"
    """An INVITE got a final non-2xx response (``sipStatus`` says which)."""
    TIMEOUT = "timeout"
    """No answer, no media or the maximum duration was reached."""
    REFERRED = "referred"
    """The call was handed over by a successful REFER."""
    ERROR = "error"
    """Transport or internal error."""


class CallEvent(Contract):
    """One fact the edge observed, uniquely identified and timestamped by the edge."""

    event_id: str = Field(alias="eventId", min_length=1, max_length=128)
    type: CallEventType
    occurred_at: datetime = Field(alias="occurredAt", description="Edge time, RFC 3339 UTC.")
    call_id: str | None = Field(default=None, alias="callId", max_length=128)
    leg_id: str | None = Field(default=None, alias="legId", max_length=128)
    leg_role: LegRole | None = Field(default=None, alias="legRole")
    registration_id: str | None = Field(default=None, alias="registrationId", max_length=128)
    sip_status: int | None = Field(default=None, alias="sipStatus", ge=100, le=699)
    reason: LegEndReason | None = None
    detail: str | None = Field(default=None, max_length=500)
    transfer_id: str | None = Field(
        default=None,
        alias="transferId",
        max_length=128,
        description="The transfer this event belongs to: set by the edge on REFER_*, BRIDGED and"
        " the transfer leg's events (``docs/api.md``, Transfers).",
    )

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a timezone (RFC 3339 with Z or an offset)")
        return value


class CallEventBatch(Contract):
    """A batch of events, as the edge posts them."""

    events: list[CallEvent] = Field(min_length=1, max_length=500)


class CallEventBatchResult(Contract):
    """The control plane's acknowledgement of a batch."""

    applied: int
    duplicates: int
    unknown: int = Field(description="Events naming a call or registration that does not exist.")


class AllowlistSnapshot(Contract):
    """``GET /webhooks/sip/allowlist``: what the edge's IP guard needs to refuse scanners cheaply.

    The guard is advisory: the INVITE webhook stays the authoritative admission check.
    """

    allowed_cidr_ranges: list[str] = Field(
        alias="allowedCidrRanges",
        description="Union of the allowedCidrRanges of the accounts this deployment serves.",
    )
    version: int = Field(description="Opaque; equal versions mean equal content.")


class EdgeHeartbeat(Contract):
    """``POST /webhooks/sip/heartbeat``: a relay is alive, and these are the calls it holds.

    Sent every ``SIPLINE_HEARTBEAT_S``; the control plane's reaper closes the calls of a relay
    whose heartbeat stopped, and the calls a live relay no longer lists (``docs/relay.md``).
    """

    edge_id: str = Field(alias="edgeId", min_length=1, max_length=128)
    sent_at: datetime = Field(alias="sentAt", description="Edge time, RFC 3339 UTC.")
    call_ids: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=list,
        alias="callIds",
        max_length=MAX_HEARTBEAT_CALLS,
        description="Calls the relay holds, or still has undelivered events for.",
    )
    complete: bool = Field(
        default=True,
        description="False when the relay holds more calls than ``callIds`` may list.",
    )
    command_queue_url: str | None = Field(
        default=None,
        alias="commandQueueUrl",
        max_length=MAX_QUEUE_URL,
        description="The relay's own command queue, where commands for its calls go"
        " (``docs/relay.md``, Commands); unset while it has none.",
    )

    ended_at: dict[Annotated[str, Field(max_length=128)], datetime] | None = Field(
        default=None,
        alias="endedAt",
        max_length=MAX_HEARTBEAT_ENDED,
        description="Of the listed calls, those that ended at the relay and are listed only for"
        " their undelivered events: the instant of each one's latest event, the last evidence it"
        " was up (docs/billing.md, Calls no relay will end).",
    )

    @field_validator("sent_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a timezone (RFC 3339 with Z or an offset)")
        return value

    @field_validator("ended_at")
    @classmethod
    def _aware_ends(cls, value: dict[str, datetime] | None) -> dict[str, datetime] | None:
        if value and any(instant.tzinfo is None for instant in value.values()):
            raise ValueError("must carry a timezone (RFC 3339 with Z or an offset)")
        return value

    @model_validator(mode="after")
    def _ended_are_listed(self) -> EdgeHeartbeat:
        if self.ended_at and not self.ended_at.keys() <= set(self.call_ids):
            raise ValueError("endedAt may name only calls listed in callIds")
        return self

    def evidence(self, call_id: str) -> datetime:
        """The last instant this heartbeat says ``call_id`` was up: its end if it ended, else
        when the heartbeat was sent (never later than that)."""
        return min(self.sent_at, (self.ended_at or {}).get(call_id, self.sent_at))


class EdgeHeartbeatResult(Contract):
    """The control plane's answer to a heartbeat."""

    stored: bool = Field(description="False when a newer heartbeat of this edge was stored.")


class DialClaim(Contract):
    """``POST /webhooks/sip/dial``: a relay that took a ``dial`` asks to place the call.

    Sent before the INVITE: the answer binds the call to this relay (its ``edgeId``), or says the
    call was hung up meanwhile or taken by another relay (a duplicate delivery), ``docs/relay.md``.
    """

    call_id: str = Field(alias="callId", min_length=1, max_length=128)
    edge_id: str = Field(alias="edgeId", min_length=1, max_length=128)


class DialClaimResult(Contract):
    """The control plane's answer to a :class:`DialClaim`."""

    proceed: bool = Field(description="True: place the call. False: drop the dial.")
    reason: str | None = Field(
        default=None, description="Why not: 'hung_up', 'taken', 'not_found', 'not_outgoing'."
    )


# --- 3. Commands ---------------------------------------------------------------------------------


class DialCommand(Contract):
    """Place an outgoing call and bridge it to the agent."""

    type: Literal["dial"] = "dial"
    call_id: str = Field(alias="callId")
    account_id: str = Field(default="default", alias="accountId")
    agent_id: str | None = Field(default=None, alias="agentId")
    to: str
    from_: str = Field(alias="from")
    username: str | None = None
    password_ciphertext: str | None = Field(
        default=None,
        alias="passwordCiphertext",
        description="The trunk password, encrypted with the deployment's key (never plain text).",
    )
    media_endpoint: MediaEndpoint = Field(alias="mediaEndpoint")
    system_prompt: str | None = Field(default=None, alias="systemPrompt")
    template_context: dict[str, Any] = Field(default_factory=dict, alias="templateContext")
    call_template: dict[str, Any] = Field(default_factory=dict, alias="callTemplate")
    join_timeout_s: float | None = Field(default=None, alias="joinTimeoutS")
    max_duration_s: float | None = Field(default=None, alias="maxDurationS")
    codec_preference: list[str] = Field(
        default_factory=list,
        alias="codecPreference",
        description="Codecs to offer, best first (``SIPLINE_CODEC_PREFERENCE``); empty: the default.",
    )


class HangUpCommand(Contract):
    """End an active call (all of its legs)."""

    type: Literal["hangup"] = "hangup"
    call_id: str = Field(alias="callId")
    edge_id: str | None = Field(
        default=None, alias="edgeId", description="The edge task holding the call, when known."
    )
    reason: str = "api"


class RegisterCommand(Contract):
    """Register (or re-register) with a PBX as the given user."""

    type: Literal["register"] = "register"
    registration_id: str = Field(alias="registrationId")
    username: str
    password_ciphertext: str = Field(alias="passwordCiphertext")
    proxy: str
    outbound_proxy: str | None = Field(default=None, alias="outboundProxy")
    auth_user: str | None = Field(default=None, alias="authUser")


class UnregisterCommand(Contract):
    """Stop a registration (REGISTER with Expires: 0)."""

    type: Literal["unregister"] = "unregister"
    registration_id: str = Field(alias="registrationId")


Header = tuple[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=1024)]]
"""One SIP header as ``[name, value]`` (the control plane checked both: ``chalicelib/transfer_tools.py``)."""


class TransferCommand(Contract):
    """Transfer an active call, as the control plane decided (``chalicelib/transfers.py``).

    ``kind`` and ``method`` say what the relay does: a cold ``REFER`` (REFER to the caller), a cold
    ``INVITE`` (a second leg to ``target``, bridged on answer), or a warm transfer (``REFER``,
    ``BRIDGE`` or ``TRY_REFER`` once the operator accepted). Every event of it carries
    ``transferId``.
    """

    type: Literal["transfer"] = "transfer"
    call_id: str = Field(alias="callId")
    transfer_id: str = Field(alias="transferId")
    kind: Literal["cold", "warm"]
    method: Literal["REFER", "INVITE", "BRIDGE", "TRY_REFER"]
    target: str = Field(description="The SIP URI to REFER the caller to, or to INVITE.")
    refer_headers: list[Header] = Field(default_factory=list, alias="referHeaders")
    invite_headers: list[Header] = Field(default_factory=list, alias="inviteHeaders")
    from_: str | None = Field(default=None, alias="from")
    username: str | None = None
    password_ciphertext: str | None = Field(
        default=None,
        alias="passwordCiphertext",
        description="The password answering the target's digest challenge, encrypted with the"
        " deployment's key (never plain text).",
    )
    hold_music_url: str | None = Field(default=None, alias="holdMusicUrl")
    hold_music: Literal["default", "url", "none"] = Field(default="default", alias="holdMusic")
    prompt: str | None = Field(
        default=None, description="Warm: the operator leg's system prompt, ``{context}`` filled."
    )


class TransferOutcomeCommand(Contract):
    """A warm transfer's operator accepted or declined (reported by the operator leg's bot)."""

    type: Literal["transfer_outcome"] = "transfer_outcome"
    call_id: str = Field(alias="callId")
    transfer_id: str = Field(alias="transferId")
    accepted: bool
    reason: str | None = None


Command = (
    DialCommand
    | HangUpCommand
    | RegisterCommand
    | UnregisterCommand
    | TransferCommand
    | TransferOutcomeCommand
)
"""Every command to the edge (contract 3): the one list of them; a new command is added here."""
EdgeCommand = Annotated[Command, Field(discriminator="type")]
"""A :data:`Command` told apart by its ``type``, as a message body is parsed."""


_decision_adapter: TypeAdapter[InviteAccepted | InviteRejected] = TypeAdapter(InviteDecision)
_command_adapter: TypeAdapter[Command] = TypeAdapter(EdgeCommand)


def parse_decision(data: bytes | str) -> InviteAccepted | InviteRejected:
    """Parse the JSON body of an INVITE webhook's answer."""
    return _decision_adapter.validate_json(data)


def parse_command(data: bytes | str) -> Command:
    """Parse the JSON body of a command message."""
    return _command_adapter.validate_json(data)


def dump(model: BaseModel) -> dict[str, Any]:
    """Return ``model`` as camelCase JSON-ready data (the only way contracts leave a process)."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=False)
