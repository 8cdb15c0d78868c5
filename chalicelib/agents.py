"""Use cases of ``/api/agents``: create, read, list, patch and delete agents."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from pydantic import ValidationError

from chalicelib.context_schema_rules import SchemaRefused, check_context_schema
from chalicelib.errors import Conflict, InvalidInput, UnreadableRecord
from chalicelib.models import (
    Agent,
    AgentFields,
    AgentPatch,
    CallTemplate,
    duration_seconds,
    format_seconds,
)
from chalicelib.services import Services, retry_on_conflict
from chalicelib.store.paging import PageRequest, PageResult
from chalicelib.targets import check_sip_uri, check_url
from chalicelib.templates import TemplateError, check_template
from chalicelib.transfer_tools import (
    check_selected_tools,
    read_target,
    seal_selected_tools,
)
from chalicelib.validation import invalid_input

MAX_JOIN_TIMEOUT_S = 300.0
"""The longest ``joinTimeout``: a caller hears ringing at most this long (docs/api.md)."""
MAX_MAX_DURATION_S = 86_400.0
"""The longest ``maxDuration``: a day. It also bounds how long the control plane waits before it
closes a call whose relay went silent (docs/billing.md, calls no relay will end)."""


def check_call_template(
    services: Services, template: CallTemplate, prefix: str = "callTemplate."
) -> None:
    """Check what the model cannot: the prompt parses, the schema is one sipline can use
    (``context_schema_rules.py``), and the media endpoint is set (or defaulted) and public.
    Fields are named ``prefix`` + camelCase name."""
    if template.system_prompt is not None:
        try:
            check_template(template.system_prompt)
        except TemplateError as error:
            raise InvalidInput(f"{prefix}systemPrompt", str(error)) from None
    check_durations(template, prefix)
    if template.context_schema is not None:
        try:
            check_context_schema(template.context_schema)
        except SchemaRefused as error:
            raise InvalidInput(f"{prefix}contextSchema", str(error)) from None
    if template.media_endpoint is not None:
        check_url(services, f"{prefix}mediaEndpoint.url", template.media_endpoint.url)
    elif not services.settings.default_media_endpoint:
        raise InvalidInput(
            f"{prefix}mediaEndpoint", "required: no default media endpoint is configured"
        )


def check_durations(template: CallTemplate, prefix: str) -> None:
    """Raise InvalidInput when ``joinTimeout`` or ``maxDuration`` is over its maximum."""
    for name, value, most_s in (
        ("joinTimeout", template.join_timeout, MAX_JOIN_TIMEOUT_S),
        ("maxDuration", template.max_duration, MAX_MAX_DURATION_S),
    ):
        seconds = duration_seconds(value)
        if seconds is not None and seconds > most_s:
            raise InvalidInput(
                f"{prefix}{name}", f"must be at most {format_seconds(most_s)} (got {value!r})"
            )


def prepare_transfer_tools(
    services: Services,
    template: CallTemplate,
    stored: list[Any] | None = None,
    prefix: str = "callTemplate.",
) -> CallTemplate:
    """Check the template's transfer tools as a user wrote them (``chalicelib/transfer_tools.py``:
    shapes, SIP targets and hold-music URLs under the egress rules) and return the template with
    their passwords encrypted (a tool without ``password`` keeps ``stored``'s of its name)."""
    for index, tool in enumerate(check_selected_tools(template.selected_tools, prefix)):
        where = f"{prefix}selectedTools[{index}].parameterOverrides"
        overrides = tool.overrides()
        if overrides.target is not None:
            try:
                target, is_number = read_target(overrides.target)
            except ValueError as error:
                raise InvalidInput(f"{where}.target", str(error)) from None
            if not is_number:
                check_sip_uri(services, f"{where}.target", target)
        if overrides.hold_music_url is not None:
            check_url(services, f"{where}.holdMusicUrl", overrides.hold_music_url)
    sealed = seal_selected_tools(services.cipher, template.selected_tools, stored)
    return template.model_copy(update={"selected_tools": sealed})


def create_agent(services: Services, account_id: str, fields: AgentFields) -> Agent:
    """Create an agent."""
    check_call_template(services, fields.call_template)
    agent = Agent(
        agent_id=services.new_id(),
        name=fields.name,
        created=services.clock(),
        call_template=prepare_transfer_tools(services, fields.call_template),
    )
    services.store.create_agent(account_id, agent)
    return agent


def get_agent(services: Services, account_id: str, agent_id: str) -> Agent:
    """Return an agent (NotFound if it is not the account's)."""
    return services.store.get_agent(account_id, agent_id).value


def list_agents(services: Services, account_id: str, request: PageRequest) -> PageResult[Agent]:
    """List the account's agents, newest first."""
    return services.store.list_agents(account_id, request)


def patch_agent(services: Services, account_id: str, agent_id: str, patch: AgentPatch) -> Agent:
    """Apply ``patch``: ``name`` replaces; each ``callTemplate`` field present replaces its own."""

    def attempt() -> Agent:
        stored = services.store.get_agent(account_id, agent_id)
        agent = stored.value
        if patch.call_template is not None:
            merged = agent.call_template.model_dump(by_alias=True, exclude_unset=True)
            merged |= patch.call_template
            try:
                template = CallTemplate.model_validate(merged)
            except ValidationError as error:
                raise invalid_input(error, prefix="callTemplate") from None
            check_call_template(services, template)
            if "selectedTools" in patch.call_template:
                stored_tools = agent.call_template.selected_tools
                template = prepare_transfer_tools(services, template, stored_tools)
            agent = agent.model_copy(update={"call_template": template})
        if patch.name is not None:
            agent = agent.model_copy(update={"name": patch.name})
        services.store.save_agent(account_id, agent, stored.version)
        return agent

    return retry_on_conflict(attempt)


def delete_agent(services: Services, account_id: str, agent_id: str) -> None:
    """Delete an agent (one that does not read too); refused (409) while ``allowedAgents``
    routes calls to it."""
    with suppress(UnreadableRecord):  # it exists: deleting it is the way out docs/api.md gives
        services.store.get_agent(account_id, agent_id)
    config = services.store.get_sip_config(account_id).value
    for index, rule in enumerate(config.allowed_agents):
        if rule.agent_id == agent_id:
            raise Conflict(
                f"agent {agent_id!r} is named in allowedAgents[{index}]; remove it there first"
            )
    services.store.delete_agent(account_id, agent_id)


def agent_view(agent: Agent) -> dict[str, Any]:
    """The agent as the API shows it."""
    return agent.view()
