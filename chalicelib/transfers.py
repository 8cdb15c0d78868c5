"""The transfer decision: may this bot transfer this call, and to where? (pure)

Theory of operation (issue 11, "How the agent asks, and who decides"; ``docs/api.md``,
"Transfers"; ``docs/security.md``, "Toll fraud"). A bot asks by tool name; the control plane
decides, the relay executes (decide, then do: :func:`decide` returns a :class:`TransferPlan`,
``chalicelib/transfer_requests.py`` stores and sends it). The rules, in the order checked:

1. **The call is joined and has not ended** (409 ``conflict``): a call its agent never joined has
   nobody asking, and an ended call has nothing to transfer.
2. **One transfer at a time** (409): while one of the call's transfers is not over
   (``chalicelib/transfer_status.py``), another is refused; and at most
   :data:`MAX_TRANSFERS_PER_CALL` per call.
3. **The tool exists on the call's agent** (403 ``transfer_not_allowed``, field ``toolName``):
   by ``nameOverride``, else ``toolName``, among the template's ``coldTransfer`` and
   ``warmTransfer`` items. The template is the call's own copy, taken when the call began.
4. **Overrides win** over what the bot sent, field by field (``parameterOverrides``). The bot's
   parameters are checked as the tool's (400 naming ``parameters.<field>``); a bot never sends
   ``passwordCiphertext``.
5. **The target is one the account configured** (403, field ``parameters.target``): the tool's
   overridden target, or a target the bot names that is the overridden target of one of the
   call's transfer tools; any other only when the account's SIP configuration sets
   ``allowFreeTransferTargets`` (default false). A prompt-injected bot must not dial premium
   numbers.
6. **The target's form** (400): a SIP URI (``sip:``/``sips:``, transports udp/tcp/tls) whose host
   passes the egress rules (``chalicelib/egress.py``), or an E.164 number, accepted only when the
   account configured ``transferTrunk``; it is sent as ``sip:<number>@<trunk>``.
7. **The rest**: ``sipVerb`` (cold, default ``REFER``) or ``transferType`` (warm, default
   ``TRY_REFER``) is the method; ``holdMusicUrl`` absent is the default loop, ``null`` none, a URL
   (egress rules) that file; a warm prompt is ``transferSystemPromptTemplate`` with ``{context}``
   replaced by the request's ``context`` (at most :data:`MAX_CONTEXT_BYTES` of UTF-8).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from chalicelib.errors import Conflict, InvalidInput
from chalicelib.transfer_tools import (
    CONTEXT_PLACEHOLDER,
    Parameters,
    TransferTool,
    WarmTransferParameters,
    check_prompt_template,
    parse_parameters,
    read_target,
    transfer_tools,
)

MAX_TRANSFERS_PER_CALL = 20
"""Transfers one call may be asked for (each is a record the API lists)."""
MAX_CONTEXT_BYTES = 4096
"""UTF-8 bytes of a warm transfer's ``context`` (the issue's 4 kB)."""
DEFAULT_WARM_PROMPT = (
    "You are calling a human operator to hand over a caller. Brief the operator with this"
    " context, ask whether they accept the call, and report their answer. Context: {context}"
)
"""The operator leg's prompt when the tool sets no ``transferSystemPromptTemplate``."""

Kind = Literal["cold", "warm"]
Method = Literal["REFER", "INVITE", "BRIDGE", "TRY_REFER"]
HoldMusic = Literal["default", "url", "none"]


class TransferNotAllowed(InvalidInput):
    """The account's configuration does not allow this transfer (HTTP 403, naming the field)."""

    http_status = 403
    code = "transfer_not_allowed"


class TargetChecks(Protocol):
    """The egress checks of a target and a URL (``chalicelib/targets.py``): InvalidInput if
    refused. Injected, so that the decision stays pure."""

    def sip_uri(self, field: str, uri: str) -> None: ...

    def url(self, field: str, url: str) -> None: ...


@dataclass(frozen=True, slots=True)
class CallState:
    """What the decision needs to know about the call."""

    joined: bool
    ended: bool
    selected_tools: list[Any] | None
    transfers: int
    """Transfers asked for so far."""
    transfer_in_progress: bool


@dataclass(frozen=True, slots=True)
class AccountTransferSettings:
    """The account's SIP configuration fields about transfers."""

    allow_free_targets: bool = False
    trunk: str | None = None


@dataclass(frozen=True, slots=True)
class TransferAsk:
    """What the bot asked for (``POST /api/calls/{callId}/transfers`` or TwiML)."""

    tool_name: str
    parameters: dict[str, Any] = field(default_factory=dict, repr=False)
    """May hold a ``password``: never in a repr."""
    context: str | None = None


@dataclass(frozen=True, slots=True)
class TransferPlan:
    """The decision: what the relay is told to do (``TransferCommand`` fields but the ids)."""

    tool_name: str
    kind: Kind
    method: Method
    target: str
    refer_headers: list[tuple[str, str]]
    invite_headers: list[tuple[str, str]]
    from_: str | None
    username: str | None
    password_ciphertext: str | None = field(repr=False)
    hold_music_url: str | None
    hold_music: HoldMusic
    prompt: str | None


def decide(
    call: CallState,
    settings: AccountTransferSettings,
    ask: TransferAsk,
    checks: TargetChecks,
    encrypt: Callable[[str], str],
) -> TransferPlan:
    """Apply rules 1-7 to ``ask``; return the plan, or raise (400/403/409) naming the field."""
    _check_call(call)
    tools = transfer_tools(call.selected_tools)
    tool = next((t for t in tools if t.name == ask.tool_name), None)
    if tool is None:
        raise TransferNotAllowed(
            "toolName", f"the agent has no transfer tool {ask.tool_name[:64]!r}"
        )
    overrides = tool.overrides()
    asked = _asked(tool, ask.parameters)
    given = overrides.model_fields_set - {"password_ciphertext"}
    merged = asked.model_copy(update={name: getattr(overrides, name) for name in given})
    target = _target(tool, overrides, asked, tools, settings, checks)
    hold_music: HoldMusic = "default"
    if "hold_music_url" in given or "hold_music_url" in asked.model_fields_set:
        hold_music = "none" if merged.hold_music_url is None else "url"
    if merged.hold_music_url is not None and "hold_music_url" not in given:
        checks.url("parameters.holdMusicUrl", merged.hold_music_url)
    secret = overrides.password_ciphertext  # overrides win; else the bot's, encrypted at once
    if secret is None and asked.password is not None:
        secret = encrypt(asked.password)
    method, refer, invite, prompt = _shape(tool, merged, ask.context)
    return TransferPlan(
        tool_name=tool.name,
        kind="cold" if tool.cold else "warm",
        method=method,
        target=target,
        refer_headers=refer,
        invite_headers=invite,
        from_=merged.from_,
        username=merged.username,
        password_ciphertext=secret,
        hold_music_url=merged.hold_music_url,
        hold_music=hold_music,
        prompt=prompt,
    )


def _check_call(call: CallState) -> None:
    if call.ended:
        raise Conflict("the call has ended: there is nothing to transfer")
    if not call.joined:
        raise Conflict("the call's agent has not joined: only a joined call can be transferred")
    if call.transfer_in_progress:
        raise Conflict("a transfer of this call is in progress: one transfer at a time")
    if call.transfers >= MAX_TRANSFERS_PER_CALL:
        raise Conflict(f"a call may be transferred at most {MAX_TRANSFERS_PER_CALL} times")


def _asked(tool: TransferTool, raw: dict[str, Any]) -> Parameters:
    """Rule 4: the bot's parameters, read as the tool's."""
    if "passwordCiphertext" in raw:
        raise InvalidInput("parameters.passwordCiphertext", "unknown field")
    asked = parse_parameters(tool.tool_name, raw, "parameters")
    if isinstance(asked, WarmTransferParameters) and asked.transfer_system_prompt_template:
        check_prompt_template(
            asked.transfer_system_prompt_template, "parameters.transferSystemPromptTemplate"
        )
    return asked


def _target(
    tool: TransferTool,
    overrides: Parameters,
    asked: Parameters,
    tools: list[TransferTool],
    settings: AccountTransferSettings,
    checks: TargetChecks,
) -> str:
    """Rules 5 and 6: the SIP URI to transfer to."""
    if overrides.target is not None:
        text = overrides.target
    elif asked.target is not None:
        text = asked.target
    else:
        raise InvalidInput("parameters.target", "required: the tool sets no target")
    try:
        target, is_number = read_target(text)
    except ValueError as error:
        raise InvalidInput("parameters.target", str(error)) from None
    if overrides.target is None and not settings.allow_free_targets:
        configured = {_configured(t) for t in tools} - {None}
        if target not in configured:
            raise TransferNotAllowed(
                "parameters.target",
                "not a target the account configured (a tool's parameterOverrides.target);"
                " allowFreeTransferTargets is off",
            )
    if is_number:
        if settings.trunk is None:
            raise InvalidInput(
                "parameters.target", "an E.164 number needs transferTrunk in /api/sip"
            )
        target = _on_trunk(target, settings.trunk)
    checks.sip_uri("parameters.target", target)
    return target


def _configured(tool: TransferTool) -> str | None:
    text = tool.overrides().target
    if text is None:
        return None
    try:
        return read_target(text)[0]
    except ValueError:
        return None


def _on_trunk(number: str, trunk: str) -> str:
    """``+15551234567`` on trunk ``sip:trunk.example:5061;transport=tls``: the URI to call."""
    scheme, _, rest = trunk.partition(":")
    return f"{scheme}:{number}@{rest}"


def _shape(
    tool: TransferTool, merged: Parameters, context: str | None
) -> tuple[Method, list[tuple[str, str]], list[tuple[str, str]], str | None]:
    """Rule 7: the method, the headers of the REFER and of the INVITE, the warm prompt."""
    if context is not None and len(context.encode()) > MAX_CONTEXT_BYTES:
        raise InvalidInput("context", f"must be at most {MAX_CONTEXT_BYTES} bytes of UTF-8")
    if isinstance(merged, WarmTransferParameters):
        template = merged.transfer_system_prompt_template or DEFAULT_WARM_PROMPT
        prompt = template.replace(CONTEXT_PLACEHOLDER, context or "")
        return (
            merged.transfer_type or "TRY_REFER",
            list((merged.refer_headers or {}).items()),
            list((merged.invite_headers or {}).items()),
            prompt,
        )
    headers = list((merged.extra_headers or {}).items())
    if merged.sip_verb == "INVITE":
        return "INVITE", [], headers, None
    return "REFER", headers, [], None
