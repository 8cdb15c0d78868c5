"""Use cases of ``/api/calls``: outgoing calls, reading calls, hanging up, and billing usage."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from chalicelib import command_routing, twilio_compat
from chalicelib import context as ctx
from chalicelib.agents import check_call_template, check_durations, prepare_transfer_tools
from chalicelib.call_models import AgentCallCreate, Call, CallCreate, SipOutgoing
from chalicelib.call_outcome import EndReason
from chalicelib.contracts import DialCommand
from chalicelib.errors import (
    CommandNotSent,
    Conflict,
    InvalidInput,
    NotFound,
    Unauthorized,
    UnreadableRecord,
)
from chalicelib.invites import media_endpoint
from chalicelib.models import CallTemplate
from chalicelib.services import Services, send_command
from chalicelib.sip_uri import user_part
from chalicelib.store.paging import PageRequest, PageResult
from chalicelib.targets import check_sip_uri
from chalicelib.templates import render_system_prompt
from chalicelib.validation import shown

DEFAULT_USAGE_DAYS = 30
MAX_USAGE_DAYS = 366


def create_agent_call(
    services: Services, account_id: str, agent_id: str, body: AgentCallCreate
) -> Call:
    """Place an outgoing call for an agent (``POST /api/agents/{agentId}/calls``)."""
    agent = services.store.get_agent(account_id, agent_id).value
    template = agent.call_template
    overrides = body.model_dump(
        exclude_none=True,
        include={
            "join_timeout",
            "max_duration",
            "initial_messages",
            "first_speaker_settings",
            "recording_enabled",
            "initial_output_medium",
            "data_connection",
        },
    )
    template = template.model_copy(update=overrides)
    check_durations(template, prefix="")
    metadata = {**(template.metadata or {}), **body.metadata}
    outgoing = body.medium.sip.outgoing
    return _place(
        services, account_id, agent_id, template, outgoing, body.template_context, metadata
    )


def create_call(services: Services, account_id: str, body: CallCreate) -> Call:
    """Place an outgoing call from an inline call template (``POST /api/calls``)."""
    fields = {name: getattr(body, name) for name in CallTemplate.model_fields}
    fields.pop("medium")
    template = CallTemplate(**fields)
    check_call_template(services, template, prefix="")
    template = prepare_transfer_tools(services, template, prefix="")
    outgoing = body.medium.sip.outgoing
    return _place(
        services, account_id, None, template, outgoing, body.template_context, body.metadata
    )


def _place(
    services: Services,
    account_id: str,
    agent_id: str | None,
    template: CallTemplate,
    outgoing: SipOutgoing,
    template_context: dict[str, Any],
    metadata: dict[str, str],
) -> Call:
    check_sip_uri(services, "medium.sip.outgoing.to", outgoing.to)
    ctx.validate_context(template_context, template.context_schema)
    system_prompt = render_system_prompt(template.system_prompt, template_context)
    ciphertext = services.cipher.encrypt(outgoing.password) if outgoing.password else None
    call = Call(
        call_id=services.new_id(),
        account_id=account_id,
        created=services.clock(),
        direction="outgoing",
        agent_id=agent_id,
        caller=user_part(outgoing.from_) or outgoing.from_,
        callee=user_part(outgoing.to),
        from_uri=outgoing.from_,
        to_uri=outgoing.to,
        username=outgoing.username,
        password_ciphertext=ciphertext,
        metadata=metadata,
        template_context=template_context,
        system_prompt=system_prompt,
        media_endpoint=media_endpoint(services, template.media_endpoint),
        call_template=template.for_agent(),
        join_timeout=template.join_timeout,
        max_duration=template.max_duration,
        holds_slot=True,
    )
    services.store.create_call(call, slot_limit=services.settings.max_concurrent_calls)
    _send_dial(services, call)
    return call


def _send_dial(services: Services, call: Call) -> None:
    command = DialCommand(
        to=call.to_uri,
        from_=call.from_uri,
        username=call.username,
        password_ciphertext=call.password_ciphertext,
        codec_preference=list(services.settings.codec_preference),
        **call.agent_session(),
    )
    try:
        send_command(services, command)
    except CommandNotSent:  # the queue is down: record the failure, tell the user
        failed = call.model_copy(
            update={"ended": services.clock(), "end_reason": EndReason.SYSTEM_ERROR}
        )
        services.store.save_call(failed, 1)
        raise


def get_call(services: Services, account_id: str, call_id: str) -> Call:
    """Return one of the account's calls (409 ``unreadable_record`` if it is the account's and
    does not read; 404 if it is another account's, readable or not)."""
    try:
        call = services.store.get_call(call_id).value
    except UnreadableRecord as error:
        if error.account_id != account_id:
            raise NotFound(f"call {call_id!r} not found") from None
        raise
    if call.account_id != account_id:
        raise NotFound(f"call {call_id!r} not found")
    return call


def list_calls(
    services: Services,
    account_id: str,
    request: PageRequest,
    *,
    from_date: date | None,
    to_date: date | None,
    agent_ids: frozenset[str],
) -> PageResult[Call]:
    """List the account's calls, newest first, optionally by day range and agents."""
    between = None
    if from_date is not None or to_date is not None:
        between = _day_range(from_date or date(1970, 1, 1), to_date or date(9999, 12, 30))
    return services.store.list_calls(
        account_id, request, created_between=between, agent_ids=agent_ids
    )


def hang_up(services: Services, account_id: str, call_id: str) -> None:
    """Hang up an active call (409 if it has ended): a ``hangup`` command to the relay holding
    it, or, when no live relay holds it (or none has taken its ``dial`` yet), the control plane
    closes it at once (``chalicelib/command_routing.py``)."""
    call = get_call(services, account_id, call_id)
    if call.ended is not None:
        raise Conflict(f"call {call_id!r} has already ended")
    command_routing.deliver_hang_up(services, call)


def hang_up_for_bot(
    services: Services, sid_of_account: str, sid_of_call: str, token: str, status: str
) -> dict[str, Any]:
    """Twilio's ``POST .../Calls/{CallSid}.json`` with ``Status=completed``, for stock bots.

    Idempotent: a call that has ended already answers ``completed`` again and sends nothing.
    """
    call_id = twilio_compat.call_id_from_sid(sid_of_call)
    secrets = services.settings.webhook_secrets
    if call_id is None or not twilio_compat.token_matches(secrets, sid_of_call, token):
        raise Unauthorized("AccountSid, CallSid or AuthToken does not match a call")
    call = services.store.get_call(call_id).value
    if twilio_compat.account_sid(call.account_id) != sid_of_account:
        raise Unauthorized("AccountSid, CallSid or AuthToken does not match a call")
    if status not in ("completed", "canceled"):
        raise InvalidInput(
            "Status", f"only 'completed' or 'canceled' end a call (got {shown(status)})"
        )
    if call.ended is None:
        command_routing.deliver_hang_up(services, call, reason="agent")
    return {
        "sid": sid_of_call,
        "account_sid": sid_of_account,
        "status": "completed",
        "from": call.from_uri,
        "to": call.to_uri,
    }


def _day_range(first: date, last: date) -> tuple[datetime, datetime]:
    if last < first:
        raise InvalidInput("toDate", f"{last} is before fromDate {first}")
    start = datetime.combine(first, time.min, UTC)
    return start, datetime.combine(last, time.max, UTC)


def usage(
    services: Services, account_id: str, from_date: date | None, to_date: date | None
) -> dict[str, Any]:
    """Return billed call and SIP minutes per UTC day, by the day each call was created."""
    today = services.clock().date()
    last = to_date or (max(today, from_date) if from_date else today)
    first = from_date or last - timedelta(days=DEFAULT_USAGE_DAYS - 1)
    if (last - first).days >= MAX_USAGE_DAYS:
        raise InvalidInput("fromDate", f"the range may span at most {MAX_USAGE_DAYS} days")
    seconds: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for call in services.store.iter_calls(account_id, _day_range(first, last)):
        day = seconds[call.created.astimezone(UTC).date()]
        day[0] += call.billed_call_seconds
        day[1] += call.billed_sip_seconds
    daily = [
        {"date": d.isoformat(), "minutes": _minutes(s[0]), "sipMinutes": _minutes(s[1])}
        for d, s in sorted(seconds.items())
    ]
    total = [sum(s[i] for s in seconds.values()) for i in (0, 1)]
    return {
        "dailyUsage": daily,
        "totalMinutes": _minutes(total[0]),
        "totalSipMinutes": _minutes(total[1]),
    }


def _minutes(seconds: int) -> float:
    """Billed seconds are whole deciminutes, so minutes have exactly one decimal."""
    return round(seconds / 60, 1)
