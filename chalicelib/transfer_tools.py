"""The transfer tools an agent offers its bot: ``coldTransfer`` and ``warmTransfer``.

Theory of operation (``docs/api.md``, "Transfer tools"; ``docs/agents.md``, "Transferring a call"):

1. **Where they live.** In ``callTemplate.selectedTools``, in the seed product's item shape:
   ``{"toolName", "nameOverride"?, "descriptionOverride"?, "parameterOverrides"?}``. Items with
   another ``toolName`` are stored as they are; these two are checked here (400 naming the field):
   the parameters issue 11 lists, bounded, SIP text without control characters, extra headers
   ``X-`` only, SIP targets and the hold-music URL under the egress rules, and the tool names
   (``nameOverride`` or ``toolName``) unique among the transfer tools.
2. **The password is write-only.** When a template is saved (agent create or patch,
   ``POST /api/calls``), :func:`seal_selected_tools` replaces ``password`` with
   ``passwordCiphertext`` (the deployment's cipher, as an outgoing call's password). A tool saved
   again without ``password`` keeps the stored ciphertext of the tool of the same name (a GET,
   edit, PATCH round trip loses nothing); ``"password": null`` removes it. A user may not write
   ``passwordCiphertext``. ``chalicelib/models.py``'s ``public_selected_tools`` is what leaves: the API's views and the
   template the agent receives never hold it.
3. **What the decision reads.** :func:`transfer_tools` reads the sealed items of a call's template
   into :class:`TransferTool` values by name, for ``chalicelib/transfers.py``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator

from chalicelib.crypto import Cipher
from chalicelib.errors import InvalidInput
from chalicelib.models import (
    SEALED_PASSWORD,
    TRANSFER_TOOL_NAMES,
    ApiModel,
    SipText,
)
from chalicelib.sip_uri import validate_target
from chalicelib.validation import invalid_input

COLD, WARM = TRANSFER_TOOL_NAMES
TOOL_NAMES = TRANSFER_TOOL_NAMES
MAX_HEADERS = 10
"""Extra headers one REFER or INVITE may carry (``extraHeaders``, ``inviteHeaders``...)."""
MAX_HEADER_VALUE = 256
MAX_TARGET = 512
MAX_URL = 2048
MAX_PROMPT_TEMPLATE = 20_000
"""Characters of ``transferSystemPromptTemplate`` (the operator leg's prompt, before context)."""
CONTEXT_PLACEHOLDER = "{context}"
_HEADER_NAME = re.compile(r"^X-[A-Za-z0-9-]{1,62}$")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SECRET = SEALED_PASSWORD
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
"""ITU-T E.164: a country code and a number, at most 15 digits, written with a leading +."""


def _x_headers(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        if not _HEADER_NAME.match(name):
            raise ValueError(
                f"header {name[:64]!r} refused: only X- headers (X- then 1-62 letters, digits"
                " or '-') may be added"
            )
    return value


Headers = Annotated[
    dict[str, Annotated[SipText, Field(max_length=MAX_HEADER_VALUE)]],
    Field(max_length=MAX_HEADERS),
    AfterValidator(_x_headers),
]
"""Headers to add, ``{"X-Name": "value"}``: X- only (a bot must not set Refer-To or Replaces)."""


def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL of an mp3 or wav file")
    return value


HoldMusicUrl = Annotated[str | None, Field(max_length=MAX_URL), AfterValidator(_http_url)]


class _Parameters(ApiModel):
    """What both tools take. All optional: the overrides fix some, the bot sends the rest."""

    target: SipText | None = Field(default=None, min_length=1, max_length=MAX_TARGET)
    from_: SipText | None = Field(default=None, alias="from", min_length=1, max_length=MAX_TARGET)
    username: SipText | None = Field(default=None, min_length=1, max_length=256)
    password: str | None = Field(default=None, min_length=1, max_length=256, repr=False)
    password_ciphertext: str | None = Field(default=None, max_length=4096, repr=False)
    hold_music_url: HoldMusicUrl = None


class ColdTransferParameters(_Parameters):
    """``coldTransfer``: REFER the caller to ``target``, or INVITE it and bridge."""

    sip_verb: Literal["REFER", "INVITE"] | None = None
    extra_headers: Headers | None = None


class WarmTransferParameters(_Parameters):
    """``warmTransfer``: call the operator, brief them, then join (REFER, BRIDGE, TRY_REFER)."""

    transfer_type: Literal["TRY_REFER", "REFER", "BRIDGE"] | None = None
    invite_headers: Headers | None = None
    refer_headers: Headers | None = None
    transfer_system_prompt_template: str | None = Field(
        default=None, min_length=1, max_length=MAX_PROMPT_TEMPLATE
    )


Parameters = ColdTransferParameters | WarmTransferParameters


class TransferTool(ApiModel):
    """One transfer tool of a template, as configured."""

    tool_name: Literal["coldTransfer", "warmTransfer"]
    name_override: str | None = None
    description_override: str | None = Field(default=None, max_length=4096)
    parameter_overrides: dict[str, Any] = Field(default_factory=dict, repr=False)  # a password

    @field_validator("name_override")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _TOOL_NAME.match(value):
            raise ValueError(f"must be 1-64 letters, digits, '_' or '-', got {value[:64]!r}")
        return value

    @property
    def name(self) -> str:
        """The name the bot asks for: ``nameOverride``, else ``toolName``."""
        return self.name_override or self.tool_name

    @property
    def cold(self) -> bool:
        return self.tool_name == COLD

    def overrides(self) -> Parameters:
        """The parameter overrides, read as this tool's parameters (validated when saved)."""
        return parameters_model(self.tool_name).model_validate(self.parameter_overrides)


def parameters_model(tool_name: str) -> type[Parameters]:
    """The parameters model of ``coldTransfer`` or ``warmTransfer``."""
    return ColdTransferParameters if tool_name == COLD else WarmTransferParameters


def is_transfer_item(item: Any) -> bool:
    """Whether a ``selectedTools`` item is one of the transfer tools (checked here)."""
    return isinstance(item, dict) and item.get("toolName") in TOOL_NAMES


def parse_parameters(tool_name: str, raw: Any, prefix: str) -> Parameters:
    """Read ``raw`` as the parameters of ``tool_name``; InvalidInput names ``prefix`` + field."""
    if not isinstance(raw, dict):
        raise InvalidInput(prefix or "parameters", "must be an object")
    try:
        return parameters_model(tool_name).model_validate(raw)
    except ValidationError as error:
        raise invalid_input(error, prefix=prefix) from None


def read_target(text: str) -> tuple[str, bool]:
    """Return ``(target, is_number)``: an E.164 number (``+15551234567`` or ``tel:+1555...``) as
    ``+digits``, or a SIP URI normalised as outgoing calls' ``to``; ValueError if neither. A SIP
    URI may embed headers (``?X-Name=value``, RFC 3261 §19.1.1), X- and User-to-User only: an
    embedded ``Replaces`` or ``Route`` would let a target take over another dialog."""
    candidate = text.strip()
    if candidate.lower().startswith("tel:"):
        candidate = candidate[4:].split(";", 1)[0]
    if _E164.match(candidate):
        return candidate, True
    try:
        target = validate_target(text)
    except ValueError:
        raise ValueError(
            f"{text[:64]!r} is neither a SIP URI like sip:user@host nor an E.164 number like"
            " +15551234567"
        ) from None
    _, _, headers = target.partition("?")
    for pair in filter(None, headers.split("&")):
        name = pair.partition("=")[0]
        if not (_HEADER_NAME.match(name) or name.lower() == "user-to-user"):
            raise ValueError(
                f"the URI's header {name[:64]!r} is refused: a target may embed only X- headers"
                " and User-to-User (RFC 7433)"
            )
    return target, False


def check_prompt_template(text: str, field: str) -> None:
    """A warm prompt template uses single braces for ``{context}`` only (docs/api.md)."""
    rest = text.replace(CONTEXT_PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        raise InvalidInput(field, "only {context} may appear in braces")


def _check_item(item: dict[str, Any], where: str) -> TransferTool:
    try:
        tool = TransferTool.model_validate(item)
    except ValidationError as error:
        raise invalid_input(error, prefix=where) from None
    overrides = f"{where}.parameterOverrides"
    if _SECRET in tool.parameter_overrides:
        raise InvalidInput(f"{overrides}.{_SECRET}", "is set by sipline: send password")
    parameters = parse_parameters(tool.tool_name, tool.parameter_overrides, overrides)
    template = getattr(parameters, "transfer_system_prompt_template", None)
    if template is not None:
        check_prompt_template(template, f"{overrides}.transferSystemPromptTemplate")
    return tool


def check_selected_tools(items: list[Any] | None, prefix: str) -> list[TransferTool]:
    """Check the transfer tools among ``items`` (user input); return them in order."""
    tools: list[TransferTool] = []
    seen: set[str] = set()
    for index, item in enumerate(items or []):
        if not is_transfer_item(item):
            continue
        where = f"{prefix}selectedTools[{index}]"
        tool = _check_item(item, where)
        if tool.name in seen:
            raise InvalidInput(
                f"{where}.nameOverride", f"a transfer tool named {tool.name!r} exists"
            )
        seen.add(tool.name)
        tools.append(tool)
    return tools


def seal_selected_tools(
    cipher: Cipher, items: list[Any] | None, stored: list[Any] | None
) -> list[Any] | None:
    """Return ``items`` (checked) with each transfer tool's ``password`` encrypted (rule 2)."""
    if items is None:
        return None
    kept = {tool.name: tool.parameter_overrides.get(_SECRET) for tool in transfer_tools(stored)}
    sealed: list[Any] = []
    for item in items:
        if not is_transfer_item(item):
            sealed.append(item)
            continue
        tool = TransferTool.model_validate(item)
        overrides = dict(tool.parameter_overrides)
        if "password" in overrides:
            password = overrides.pop("password")
            if password is not None:
                overrides[_SECRET] = cipher.encrypt(password)
        elif kept.get(tool.name):
            overrides[_SECRET] = kept[tool.name]
        sealed.append({**item, "parameterOverrides": overrides})
    return sealed


def transfer_tools(items: list[Any] | None) -> list[TransferTool]:
    """The transfer tools of a stored (sealed) template; an item that no longer reads is
    skipped (the decision answers 403 ``not configured`` for it, as for a missing tool)."""
    tools: list[TransferTool] = []
    for item in items or []:
        if is_transfer_item(item):
            try:
                tools.append(TransferTool.model_validate(item))
            except ValidationError:
                continue
    return tools
