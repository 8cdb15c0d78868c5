"""Use cases of ``/api/calls/{callId}/transfers`` and of the Twilio-compatible TwiML update.

Theory of operation (``docs/api.md``, "Transfers"): decide, then do.

1. **Who may ask.** An API key of the call's account, or the call's own Twilio-style credentials
   (HTTP Basic ``AccountSid:AuthToken``, ``chalicelib/twilio_compat.py``), which the agent
   receives in its ``start`` message: a bot can transfer its own call and no other.
2. **Decide.** The call, its transfer requests (their status derived from the call's events,
   ``chalicelib/transfer_status.py``) and the account's SIP configuration go to the pure
   :func:`chalicelib.transfers.decide`.
3. **Record.** The request is stored as the call's next numbered transfer, on the condition that
   the number is free: of two concurrent requests one is stored, the other gets 409
   (``chalicelib/store/transfers.py``).
4. **Send.** A :class:`~chalicelib.contracts.TransferCommand` goes to the relay holding the call,
   as a hang-up does (``chalicelib/command_routing.py``). No live holder: the call is closed and
   the answer is 409 (the transfer reads ``cancelled``). The queue refusing: the transfer is
   recorded ``failed`` (``command_not_sent``) and the answer is 503, so that the bot may retry.
5. **Outcome** (warm): the operator leg's bot reports ``accepted`` once, while the transfer is
   ``answered`` or ``briefing``; the same report again is answered as the first, a different one
   409. A :class:`~chalicelib.contracts.TransferOutcomeCommand` tells the relay.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictBool

from chalicelib import command_routing, twilio_compat
from chalicelib.call_models import Call
from chalicelib.calls import get_call
from chalicelib.contracts import CallEvent, TransferCommand, TransferOutcomeCommand
from chalicelib.errors import AlreadyExists, CommandNotSent, Conflict, NotFound, Unauthorized
from chalicelib.models import ApiModel, SipText
from chalicelib.services import Services, retry_on_conflict
from chalicelib.store import keys
from chalicelib.targets import check_sip_uri, check_url
from chalicelib.transfer_status import TransferRecord, TransferState, derive, view
from chalicelib.transfer_tools import read_target, transfer_tools
from chalicelib.transfers import (
    MAX_CONTEXT_BYTES,
    AccountTransferSettings,
    CallState,
    TransferAsk,
    TransferNotAllowed,
    TransferPlan,
    decide,
)
from chalicelib.twiml import parse_transfer

MAX_REASON = 500


class TransferCreate(ApiModel):
    """``POST /api/calls/{callId}/transfers``."""

    tool_name: SipText = Field(min_length=1, max_length=64)
    parameters: dict[str, Any] = Field(default_factory=dict, repr=False)  # may hold a password
    context: str | None = Field(default=None, max_length=MAX_CONTEXT_BYTES)


class TransferOutcome(ApiModel):
    """``POST /api/calls/{callId}/transfers/{transferId}/outcome``."""

    accepted: StrictBool
    reason: str | None = Field(default=None, max_length=MAX_REASON)


class _Checks:
    """The egress checks of ``chalicelib/targets.py``, for the decision."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def sip_uri(self, field: str, uri: str) -> None:
        check_sip_uri(self._services, field, uri)

    def url(self, field: str, url: str) -> None:
        check_url(self._services, field, url)


def call_of_bot(services: Services, call_id: str, user: str, token: str) -> Call:
    """Rule 1: the call whose Twilio-style ``AccountSid:AuthToken`` were presented, or
    Unauthorized (the same message whatever did not match)."""
    refused = Unauthorized("AccountSid, CallSid or AuthToken does not match a call")
    try:
        sid = twilio_compat.call_sid(call_id)
    except ValueError:
        raise refused from None
    if not twilio_compat.token_matches(services.settings.webhook_secrets, sid, token):
        raise refused
    try:
        call = services.store.get_call(call_id).value
    except NotFound:
        raise refused from None
    if twilio_compat.account_sid(call.account_id) != user:
        raise refused
    return call


def _states(
    services: Services, call: Call, records: list[tuple[TransferRecord, int]]
) -> list[TransferState]:
    if not records:
        return []
    events: list[CallEvent] = services.store.list_events(keys.call_pk(call.call_id))
    now = services.clock()
    return [derive(r, events, call_ended=call.ended, now=now) for r, _ in records]


def request_transfer(services: Services, call: Call, ask: TransferAsk) -> dict[str, Any]:
    """Rules 2-4 for a call already authenticated: the Transfer object (201)."""
    existing = services.store.transfers.of_call(call.call_id)
    states = _states(services, call, existing.records)
    config = services.store.get_sip_config(call.account_id).value
    state = CallState(
        joined=call.joined is not None,
        ended=call.ended is not None,
        selected_tools=call.call_template.get("selectedTools"),
        transfers=existing.next_sequence - 1,
        transfer_in_progress=any(not s.over for s in states),
    )
    settings = AccountTransferSettings(
        allow_free_targets=config.allow_free_transfer_targets, trunk=config.transfer_trunk
    )
    plan = decide(state, settings, ask, _Checks(services), services.cipher.encrypt)
    record = TransferRecord(
        transfer_id=services.new_id(),
        call_id=call.call_id,
        sequence=existing.next_sequence,
        created=services.clock(),
        tool_name=plan.tool_name,
        kind=plan.kind,
        method=plan.method,
        target=plan.target,
    )
    try:
        services.store.transfers.create(record)
    except AlreadyExists:
        raise Conflict("a transfer of this call is in progress: one transfer at a time") from None
    _send(services, call, record, _command(call, record, plan))
    return view(record, derive(record, [], call_ended=None, now=record.created))


def _command(call: Call, record: TransferRecord, plan: TransferPlan) -> TransferCommand:
    return TransferCommand(
        call_id=call.call_id,
        transfer_id=record.transfer_id,
        kind=plan.kind,
        method=plan.method,
        target=plan.target,
        refer_headers=plan.refer_headers,
        invite_headers=plan.invite_headers,
        from_=plan.from_,
        username=plan.username,
        password_ciphertext=plan.password_ciphertext,
        hold_music_url=plan.hold_music_url,
        hold_music=plan.hold_music,
        prompt=plan.prompt,
    )


def _send(
    services: Services,
    call: Call,
    record: TransferRecord,
    command: TransferCommand | TransferOutcomeCommand,
) -> None:
    try:
        sent = command_routing.deliver_to_holder(services, call, command)
    except CommandNotSent:
        if isinstance(command, TransferCommand):
            failed = record.model_copy(
                update={"failed_reason": "command_not_sent", "failed_at": services.clock()}
            )
            services.store.transfers.save(failed, 1)
        raise
    if not sent:
        raise Conflict("no live relay holds the call: it was closed, the transfer is cancelled")


def list_transfers(services: Services, account_id: str, call_id: str) -> dict[str, Any]:
    """``GET /api/calls/{callId}/transfers``: every transfer of the call, first first."""
    return transfers_of(services, get_call(services, account_id, call_id))


def transfers_of(services: Services, call: Call) -> dict[str, Any]:
    """The call's Transfer objects, for a caller already authenticated."""
    records = services.store.transfers.of_call(call.call_id).records
    states = _states(services, call, records)
    return {"results": [view(r, s) for (r, _), s in zip(records, states, strict=True)]}


def report_outcome(
    services: Services, call: Call, transfer_id: str, outcome: TransferOutcome
) -> dict[str, Any]:
    """Rule 5: record a warm transfer's outcome once and tell the relay; the Transfer object."""

    def attempt() -> tuple[TransferRecord, bool]:
        records = services.store.transfers.of_call(call.call_id).records
        found = next(((r, v) for r, v in records if r.transfer_id == transfer_id), None)
        if found is None:
            raise NotFound(f"transfer {transfer_id!r} of call {call.call_id!r} not found")
        record, version = found
        if record.kind != "warm":
            raise Conflict("only a warm transfer has an outcome to report")
        if record.accepted is not None:
            if record.accepted != outcome.accepted:
                raise Conflict("the outcome of this transfer was reported already")
            return record, False
        [state] = _states(services, call, [found])
        if state.status not in ("answered", "briefing"):
            raise Conflict(
                f"the transfer is {state.status}: an outcome is reported while the operator"
                " is briefed (answered or briefing)"
            )
        updated = record.model_copy(
            update={
                "accepted": outcome.accepted,
                "outcome_reason": outcome.reason,
                "outcome_at": services.clock(),
            }
        )
        services.store.transfers.save(updated, version)
        return updated, True

    record, new = retry_on_conflict(attempt)
    if new:
        command = TransferOutcomeCommand(
            call_id=call.call_id,
            transfer_id=record.transfer_id,
            accepted=outcome.accepted,
            reason=outcome.reason,
        )
        _send(services, call, record, command)
    [state] = _states(services, call, [(record, 0)])
    return view(record, state)


def twiml_transfer(services: Services, call: Call, twiml: str) -> dict[str, Any]:
    """The Twilio-compatible call update with ``Twiml`` (``chalicelib/twiml.py``): the document
    becomes a ``coldTransfer`` ask, decided as any other; the answer is Twilio's Call resource
    (plus ``transfer``). Raises TwimlRefused for a document sipline does not transfer with."""
    document = parse_transfer(twiml)
    tool = _cold_tool_for(call, document.target)
    transfer = request_transfer(services, call, TransferAsk(tool, document.parameters))
    return {
        "sid": twilio_compat.call_sid(call.call_id),
        "account_sid": twilio_compat.account_sid(call.account_id),
        "status": "in-progress",
        "from": call.from_uri,
        "to": call.to_uri,
        "transfer": transfer,
    }


def _cold_tool_for(call: Call, target: str) -> str:
    """The ``coldTransfer`` tool a TwiML target goes through: the one whose configured target it
    is, else the first without a fixed target (the decision then applies the account's
    ``allowFreeTransferTargets``); with neither, the target is refused (403)."""
    cold = [t for t in transfer_tools(call.call_template.get("selectedTools")) if t.cold]
    if not cold:
        raise TransferNotAllowed("toolName", "the agent has no coldTransfer tool")
    try:
        wanted = read_target(target)[0]
    except ValueError:
        wanted = target
    for tool in cold:
        fixed = tool.overrides().target
        if fixed is not None and _same_target(fixed, wanted):
            return tool.name
    free = next((t for t in cold if t.overrides().target is None), None)
    if free is None:
        raise TransferNotAllowed(
            "parameters.target",
            "not a target the account configured (a coldTransfer tool's target)",
        )
    return free.name


def _same_target(fixed: str, wanted: str) -> bool:
    try:
        return read_target(fixed)[0] == wanted
    except ValueError:
        return False
