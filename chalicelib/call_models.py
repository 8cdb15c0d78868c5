"""REST resources about calls: creating outgoing calls, the Call object, and billing usage."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from chalicelib.call_outcome import EndReason, SipTerminationReason
from chalicelib.context_limits import DroppedSummary
from chalicelib.contracts import MediaEndpoint
from chalicelib.models import (
    ApiModel,
    CallTemplate,
    Duration,
    SipText,
    duration_seconds,
    format_seconds,
    public_selected_tools,
)
from chalicelib.sip_uri import validate_target

DEFAULT_MAX_DURATION_S = 3600.0
"""``maxDuration`` of a call whose template sets none (docs/api.md): the relay ends it then."""
DEFAULT_JOIN_TIMEOUT_S = 30.0
"""The reaper's ``joinTimeout`` of a call whose template sets none: above the relay's 8 s agent
connection bound and an outgoing call's usual ring time (docs/billing.md)."""
BILLING_PENDING = "BILLING_STATUS_PENDING"
BILLING_BILLED = "BILLING_STATUS_BILLED"


class SipOutgoing(ApiModel):
    """``medium.sip.outgoing``: where to call and as whom."""

    to: SipText = Field(min_length=1, max_length=512)
    from_: SipText = Field(alias="from", min_length=1, max_length=512)
    username: SipText | None = Field(default=None, max_length=256)
    password: str | None = Field(default=None, max_length=256)

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        return validate_target(value)


class SipMedium(ApiModel):
    """``medium.sip``: outgoing only (incoming calls are created by INVITEs)."""

    outgoing: SipOutgoing


class CallMedium(ApiModel):
    """``medium``: only SIP is carried by sipline."""

    sip: SipMedium


class AgentCallCreate(ApiModel):
    """``POST /api/agents/{agentId}/calls``."""

    medium: CallMedium
    template_context: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    join_timeout: Duration | None = None
    max_duration: Duration | None = None
    initial_messages: list[dict[str, Any]] | None = None
    first_speaker_settings: dict[str, Any] | None = None
    recording_enabled: bool | None = None
    initial_output_medium: str | None = None
    data_connection: dict[str, Any] | None = None


class CallCreate(CallTemplate):
    """``POST /api/calls``: a call template inline, plus the medium and the context."""

    medium: CallMedium  # type: ignore[assignment]
    template_context: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)


class DroppedContext(ApiModel):
    """Context keys an incoming call left out for one reason (``docs/routing.md``)."""

    reason: str = Field(description="too_many, too_large, too_deep, context_full, schema, reserved")
    count: int = Field(description="How many keys were left out for this reason.")
    keys: list[str] = Field(description="The first 10 of them (each cut to 100 characters).")

    @classmethod
    def of(cls, group: DroppedSummary) -> DroppedContext:
        return cls(reason=group.reason.value, count=group.count, keys=list(group.keys))


class Call(ApiModel):
    """A call as stored (the API shows it through :meth:`view`)."""

    call_id: str
    account_id: str
    created: datetime
    direction: Literal["incoming", "outgoing"]
    agent_id: str | None = None
    caller: str = Field(description="Who called: the From user (incoming) or our 'from'.")
    callee: str = Field(description="Who was called: the To user (incoming) or the target.")
    from_uri: str = ""
    to_uri: str = ""
    from_display_name: str | None = None
    sip_call_id: str | None = None
    source: str | None = None
    transport: str | None = None
    username: str | None = None
    password_ciphertext: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    template_context: dict[str, Any] = Field(default_factory=dict)
    dropped_context: list[DroppedContext] = Field(
        default_factory=list, description="Keys the INVITE's context left out, by reason."
    )
    system_prompt: str | None = None
    media_endpoint: MediaEndpoint
    call_template: dict[str, Any] = Field(
        default_factory=dict, description="The template fields passed on to the agent."
    )
    edge_id: str | None = None
    """The relay holding the call: from the INVITE webhook, or the relay whose dial claim won
    (``chalicelib/command_routing.py``)."""
    hangup_requested: datetime | None = None
    """When ``DELETE`` cancelled an outgoing call no relay had claimed: no claim wins after it."""
    join_timeout: str | None = None
    max_duration: str | None = None
    joined: datetime | None = None
    ended: datetime | None = None
    end_reason: EndReason | None = None
    termination_reason: SipTerminationReason | None = None
    billed_call_seconds: int = 0
    billed_sip_seconds: int = 0
    events_applied: int = 0
    holds_slot: bool = Field(
        default=False,
        description="Whether the call counts toward its account's concurrent-call limit: from its"
        " creation until it ends, when the store frees the slot (docs/storage.md).",
    )

    def agent_session(self) -> dict[str, Any]:
        """What the edge needs to bridge this call to its agent (decisions and dial commands)."""
        return {
            "call_id": self.call_id,
            "account_id": self.account_id,
            "agent_id": self.agent_id,
            "media_endpoint": self.media_endpoint,
            "system_prompt": self.system_prompt,
            "template_context": self.template_context,
            "call_template": _for_agent(self.call_template),
            "join_timeout_s": duration_seconds(self.join_timeout),
            "max_duration_s": self.max_duration_s,
        }

    @property
    def max_duration_s(self) -> float:
        """The call's ``maxDuration`` in seconds, :data:`DEFAULT_MAX_DURATION_S` when unset."""
        given = duration_seconds(self.max_duration)
        return DEFAULT_MAX_DURATION_S if given is None else given

    @property
    def join_timeout_s(self) -> float:
        """The call's ``joinTimeout`` in seconds, :data:`DEFAULT_JOIN_TIMEOUT_S` when unset."""
        given = duration_seconds(self.join_timeout)
        return DEFAULT_JOIN_TIMEOUT_S if given is None else given

    @property
    def billing_status(self) -> str:
        """Pending while the call runs, billed once it has ended."""
        return BILLING_BILLED if self.ended else BILLING_PENDING

    def medium_view(self) -> dict[str, Any]:
        """The ``medium`` object: ``sip.incoming`` or ``sip.outgoing`` (no password)."""
        if self.direction == "incoming":
            return {"sip": {"incoming": {"from": self.from_uri, "to": self.to_uri}}}
        outgoing = {"to": self.to_uri, "from": self.from_uri, "username": self.username}
        return {"sip": {"outgoing": outgoing}}

    def view(self) -> dict[str, Any]:
        """Return the Call object as the API shows it."""
        ended = self.ended is not None
        return {
            "callId": self.call_id,
            "created": _iso(self.created),
            "joined": _iso(self.joined),
            "ended": _iso(self.ended),
            "endReason": self.end_reason,
            "billedDuration": format_seconds(self.billed_call_seconds) if ended else None,
            "billingStatus": self.billing_status,
            "agentId": self.agent_id,
            "direction": self.direction,
            "caller": self.caller,
            "callee": self.callee,
            "medium": self.medium_view(),
            "metadata": self.metadata,
            "templateContext": self.template_context,
            "droppedContext": [group.to_json() for group in self.dropped_context],
            "joinTimeout": self.join_timeout,
            "maxDuration": self.max_duration,
            "sipDetails": {
                "billedDuration": format_seconds(self.billed_sip_seconds) if ended else None,
                "terminationReason": self.termination_reason,
                "from": self.from_uri,
                "to": self.to_uri,
                "fromDisplayName": self.from_display_name,
                "callerId": self.caller,
            },
        }


class UsageQuery(ApiModel):
    """``GET /api/accounts/me/billing/usage`` query: an inclusive range of UTC days."""

    from_date: date | None = None
    to_date: date | None = None


def _for_agent(template: dict[str, Any]) -> dict[str, Any]:
    """The call's template as the agent receives it: no transfer tool's password ciphertext."""
    if "selectedTools" not in template:
        return template
    return {**template, "selectedTools": public_selected_tools(template["selectedTools"])}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
