"""REST resources: the SIP configuration, registrations and agents, as the API reads and writes them.

Shapes follow the public API of the product the spec describes, so its users' scripts work
unchanged: camelCase JSON, durations as strings like ``"30s"``, unknown fields rejected (400).
Request models (``*Create``, ``*Patch``) are separate from the stored models, which may hold what the
API never returns (encrypted passwords and secrets).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
)
from pydantic.alias_generators import to_camel

from chalicelib.contracts import IncomingRefer, MediaEndpoint

MAX_PATTERN_LENGTH = 200
MAX_ALLOWED_AGENTS = 2000
"""Rules per account: the configuration is one DynamoDB item (400 KB) at ~85 bytes a rule."""
_DURATION = re.compile(r"^\d{1,7}(\.\d{1,9})?s$")
_AGENT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def _sip_text(value: str) -> str:
    """Refuse control characters in a value that goes into a SIP message: a CR LF would end the
    header and start another (header injection), a NUL would cut it short."""
    if _CONTROL_CHARACTER.search(value):
        raise ValueError("must not contain control characters (CR, LF, NUL, ...): it goes into SIP")
    return value


SipText = Annotated[str, AfterValidator(_sip_text)]
"""A string sipline puts into a SIP header or URI: printable characters only (docs/api.md)."""


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, no unknown fields."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=to_camel, validate_assignment=True
    )

    def to_json(self) -> dict[str, Any]:
        """Return the resource as the API shows it."""
        return self.model_dump(mode="json", by_alias=True)


def _duration(value: str) -> str:
    if not _DURATION.match(value):
        if re.fullmatch(r"\d+(\.\d+)?s", value):
            raise ValueError(f"has too many digits: at most 7 before the point and 9 after (got {value!r})")
        raise ValueError(f"must be a duration in seconds like '30s' or '1.5s', got {value!r}")
    return value


Duration = Annotated[str, AfterValidator(_duration)]


def duration_seconds(value: str | None) -> float | None:
    """Return a ``"30s"`` duration as seconds (None stays None)."""
    return None if value is None else float(value[:-1])


def format_seconds(seconds: float) -> str:
    """Format seconds as the API's duration string (``66`` -> ``"66s"``, ``1.5`` -> ``"1.5s"``)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


# --- SIP configuration ---------------------------------------------------------------------------


def normalize_cidr(value: str) -> str:
    """Return ``value`` as a canonical IPv4 CIDR range, or raise ValueError saying what is wrong."""
    text = value.strip()
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as error:
        raise ValueError(f"{value!r} is not a valid IPv4 CIDR range ({error})") from None
    if network.version != 4:
        raise ValueError(f"{value!r} is an IPv6 range; only IPv4 CIDR ranges are supported")
    return str(network)


class AllowedAgent(ApiModel):
    """One routing rule: calls whose To user matches ``toUserPattern`` go to ``agentId``."""

    agent_id: str = Field(min_length=1, max_length=64)
    to_user_pattern: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PATTERN_LENGTH,
        description="RE2 regular expression on the To URI's user part; "
        "defaults to ^agent_<agentId>$.",
    )

    @property
    def pattern(self) -> str:
        """The pattern in force (the default one when none was given)."""
        return self.to_user_pattern or default_pattern(self.agent_id)


def default_pattern(agent_id: str) -> str:
    """Return the default routing pattern of an agent: ``^agent_<agentId>$``."""
    return f"^agent_{re.escape(agent_id)}$"


class FallbackHandlerInput(ApiModel):
    """The fallback handler as written: a URL and the secrets its requests are signed with."""

    url: str = Field(min_length=1, max_length=2048)
    secrets: list[str] = Field(default_factory=list, max_length=5)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value


class FallbackHandler(ApiModel):
    """The fallback handler as stored: the secrets are encrypted and never returned."""

    url: str
    secret_ciphertexts: list[str] = Field(default_factory=list)


class SipConfig(ApiModel):
    """The account's SIP configuration as stored."""

    allowed_cidr_ranges: list[str] = Field(default_factory=list)
    allow_all_agents: bool = False
    allowed_agents: list[AllowedAgent] = Field(default_factory=list)
    fallback_handler: FallbackHandler | None = None
    allow_free_transfer_targets: bool = False
    """Whether a bot may transfer to a target its tool does not fix (toll fraud: docs/security.md)."""
    transfer_trunk: str | None = None
    """The SIP server E.164 transfer targets are sent to, as ``sip:+number@<trunk>``."""
    incoming_refer: IncomingRefer = "decline"
    """What the relay does with a REFER the far end sends in a call (docs/relay.md, A REFER from
    the far end): ``decline`` (603) or ``follow`` (a new leg for the agent; toll fraud:
    docs/security.md)."""

    def view(self, domain: str) -> dict[str, Any]:
        """Return the configuration as the API shows it (no secrets, plus the read-only domain)."""
        body = self.model_dump(mode="json", by_alias=True, exclude={"fallback_handler"})
        handler = self.fallback_handler
        body["fallbackHandler"] = (
            None
            if handler is None
            else {"url": handler.url, "secretCount": len(handler.secret_ciphertexts)}
        )
        body["domain"] = domain
        return body


class SipConfigPatch(ApiModel):
    """``PATCH /api/sip``: fields present replace the stored ones; ``domain`` is read-only."""

    allowed_cidr_ranges: list[Annotated[str, AfterValidator(normalize_cidr)]] | None = Field(
        default=None, max_length=1000
    )
    allow_all_agents: StrictBool | None = None
    allowed_agents: list[AllowedAgent] | None = Field(default=None, max_length=MAX_ALLOWED_AGENTS)
    fallback_handler: FallbackHandlerInput | None = None
    allow_free_transfer_targets: StrictBool | None = None
    transfer_trunk: SipText | None = Field(default=None, min_length=1, max_length=256)
    incoming_refer: IncomingRefer | None = None
    domain: Any = Field(default=None, exclude=True, description="Read-only: refused if present.")

    @field_validator("domain")
    @classmethod
    def _read_only(cls, value: Any) -> Any:
        raise ValueError("is read-only")


# --- Registrations -------------------------------------------------------------------------------


class RegistrationFields(ApiModel):
    """What a user writes about a registration (``password`` is write-only)."""

    username: SipText = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=256)
    proxy: SipText = Field(min_length=1, max_length=256)
    outbound_proxy: SipText | None = Field(default=None, max_length=256)
    auth_user: SipText | None = Field(default=None, max_length=256)


class RegistrationPatch(ApiModel):
    """``PATCH /api/sip/registrations/{id}``: fields present replace the stored ones."""

    username: SipText | None = Field(default=None, min_length=1, max_length=256)
    password: str | None = Field(default=None, min_length=1, max_length=256)
    proxy: SipText | None = Field(default=None, min_length=1, max_length=256)
    outbound_proxy: SipText | None = Field(default=None, max_length=256)
    auth_user: SipText | None = Field(default=None, max_length=256)


class Registration(ApiModel):
    """A registration as stored: the password is kept encrypted and never returned."""

    registration_id: str
    created: datetime
    username: str
    password_ciphertext: str
    proxy: str
    outbound_proxy: str | None = None
    auth_user: str | None = None
    successful: bool | None = None
    status_at: datetime | None = None

    def view(self) -> dict[str, Any]:
        """Return the registration as the API shows it."""
        return self.model_dump(
            mode="json", by_alias=True, exclude={"password_ciphertext", "status_at"}
        )


# --- Agents --------------------------------------------------------------------------------------

TRANSFER_TOOL_NAMES = ("coldTransfer", "warmTransfer")
"""The ``selectedTools`` sipline executes itself (``chalicelib/transfer_tools.py``)."""
SEALED_PASSWORD = "passwordCiphertext"
"""Where a transfer tool's encrypted password is stored in its ``parameterOverrides``."""


def public_selected_tools(items: list[Any] | None) -> list[Any] | None:
    """``selectedTools`` without any transfer tool's ``passwordCiphertext``: what the API and the
    agent see (the password is write-only)."""
    if items is None:
        return None
    shown: list[Any] = []
    for item in items:
        is_transfer = isinstance(item, dict) and item.get("toolName") in TRANSFER_TOOL_NAMES
        overrides = item.get("parameterOverrides") if is_transfer else None
        if isinstance(overrides, dict) and SEALED_PASSWORD in overrides:
            overrides = {k: v for k, v in overrides.items() if k != SEALED_PASSWORD}
            item = {**item, "parameterOverrides": overrides}
        shown.append(item)
    return shown



class CallTemplate(ApiModel):
    """How the agent's calls are set up; every field is stored and passed to the agent.

    ``mediaEndpoint`` is sipline's one extension: where the edge streams the call's audio.
    """

    system_prompt: str | None = Field(default=None, max_length=100_000)
    temperature: float | None = Field(default=None, ge=0, le=1)
    model: str | None = None
    voice: str | None = None
    external_voice: dict[str, Any] | None = None
    language_hint: str | None = None
    initial_messages: list[dict[str, Any]] | None = None
    join_timeout: Duration | None = None
    max_duration: Duration | None = None
    time_exceeded_message: str | None = None
    inactivity_messages: list[dict[str, Any]] | None = None
    selected_tools: list[dict[str, Any]] | None = None
    medium: dict[str, Any] | None = None
    recording_enabled: bool | None = None
    first_speaker_settings: dict[str, Any] | None = None
    initial_output_medium: str | None = None
    vad_settings: dict[str, Any] | None = None
    data_connection: dict[str, Any] | None = None
    context_schema: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    media_endpoint: MediaEndpoint | None = None

    def for_agent(self) -> dict[str, Any]:
        """The fields the agent gets as they are (the prompt is rendered, the rest is ours).

        Stored on the call as they are: transfer tools keep their ``passwordCiphertext`` for the
        transfer decision; ``Call.agent_session`` removes it from what reaches the agent."""
        return self.model_dump(
            mode="json",
            by_alias=True,
            exclude_none=True,
            exclude={"system_prompt", "media_endpoint", "context_schema"},
        )


class AgentFields(ApiModel):
    """``POST /api/agents``."""

    name: str
    call_template: CallTemplate = Field(default_factory=CallTemplate)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _AGENT_NAME.match(value):
            raise ValueError(f"must be 1-64 letters, digits, '_' or '-', got {value!r}")
        return value


class AgentPatch(ApiModel):
    """``PATCH /api/agents/{id}``: ``callTemplate`` fields present replace the stored ones."""

    name: str | None = None
    call_template: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else AgentFields._name(value)


class Agent(ApiModel):
    """An agent as stored and shown."""

    agent_id: str
    name: str
    created: datetime
    call_template: CallTemplate

    def view(self) -> dict[str, Any]:
        """Return the agent as the API shows it (unset template fields left out)."""
        body = self.model_dump(mode="json", by_alias=True, exclude={"call_template"})
        body["callTemplate"] = self.call_template.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        if "selectedTools" in body["callTemplate"]:  # transfer tools' passwords are write-only
            body["callTemplate"]["selectedTools"] = public_selected_tools(
                body["callTemplate"]["selectedTools"]
            )
        return body
