"""Deciding an incoming INVITE (contract 1): admit, route, build the context, create the call.

The order is the spec's:

1. **Admission.** The INVITE arrived over one of the account's registrations, or its packet's
   source address is inside ``allowedCidrRanges``. Fail closed (403 ``source_ip_not_allowed``).
2. **Routing** on the To URI's user part (``routing.py``): ``allowedAgents`` in order, then
   ``agent_<agentId>`` with ``allowAllAgents``, then the fallback handler, else 404
   ``no_agent_matched``.
3. **Context** (``context.py``): ``X-`` headers and the reserved SIP keys, filtered by the agent's
   ``contextSchema``; the system prompt is rendered with it.
4. **The call record** (``medium.sip.incoming``) is created with the INVITE's idempotency key in one
   transaction, so a retried webhook gets the same call back and never creates a second one. The
   same transaction takes one of the account's concurrent-call slots; with none left the INVITE
   gets 503 with Retry-After (``too_many_active_calls``).

Every rejection is a :class:`~chalicelib.errors.DomainError` whose ``code`` names the rule.
"""

from __future__ import annotations

from typing import Any

from chalicelib import context as ctx
from chalicelib.allowlist import source_allowed
from chalicelib.call_models import Call, DroppedContext
from chalicelib.contracts import InviteAccepted, InviteWebhook, MediaEndpoint
from chalicelib.crypto import CipherError
from chalicelib.errors import (
    AgentUnavailable,
    AlreadyExists,
    FallbackFailed,
    FallbackRejected,
    NoAgentMatched,
    NotFound,
    SourceIpNotAllowed,
)
from chalicelib.fallback import FallbackRequest
from chalicelib.models import Agent, SipConfig
from chalicelib.observability import logger
from chalicelib.routing import route
from chalicelib.services import Services
from chalicelib.sip_uri import parse_sip_uri, user_part
from chalicelib.store import keys
from chalicelib.templates import render_system_prompt

_IDENTITY_HEADERS = ("p-asserted-identity", "remote-party-id")


def account_of(services: Services, invite: InviteWebhook) -> str:
    """Return the account an INVITE is for: its registration's, else its domain's."""
    if invite.registration_id:
        try:
            owner, _ = services.store.get_registration(invite.registration_id)
        except NotFound:
            raise SourceIpNotAllowed(
                f"registration {invite.registration_id!r} does not exist"
            ) from None
        return owner
    try:
        host = parse_sip_uri(invite.request_uri).host
    except ValueError:
        host = ""
    return services.settings.account_for_domain(host)


def admit(invite: InviteWebhook, config: SipConfig) -> str:
    """Return the admission rule that lets the INVITE in, or raise SourceIpNotAllowed."""
    if invite.registration_id:
        return "registration"
    if source_allowed(invite.source_ip, config.allowed_cidr_ranges):
        return "allowed_cidr_ranges"
    if not invite.source_ip:
        raise SourceIpNotAllowed("the source address is unreadable")
    raise SourceIpNotAllowed(f"source {invite.source_ip} is not in allowedCidrRanges")


def caller_info(invite: InviteWebhook) -> ctx.CallerInfo:
    """Return who called: P-Asserted-Identity (or Remote-Party-ID) user, else the From user."""
    asserted = next(
        (v for n, v in invite.headers if n.lower() in _IDENTITY_HEADERS and user_part(_uri(v))),
        None,
    )
    caller_id = user_part(_uri(asserted)) if asserted else user_part(invite.from_uri)
    return ctx.CallerInfo(caller_id, invite.from_display_name, invite.from_uri)


def _uri(name_addr: str) -> str:
    start, end = name_addr.find("<"), name_addr.find(">")
    return name_addr[start + 1 : end] if 0 <= start < end else name_addr.split(";", 1)[0]


def decide_invite(services: Services, invite: InviteWebhook) -> InviteAccepted:
    """Decide an INVITE: return the acceptance, or raise the DomainError that rejects it."""
    account_id = account_of(services, invite)
    config = services.store.get_sip_config(account_id).value
    admit(invite, config)
    invite_key = keys.invite_sk(invite.sip_call_id, invite.from_tag, invite.source_ip)
    to_user = user_part(invite.to_uri)
    agent_id = _route(services, account_id, to_user, config)
    extra_context: dict[str, Any] = {}
    if agent_id is None:
        # Before asking the fallback handler: a retried webhook must not ask it twice.
        if (decided := _decided(services, account_id, invite_key, config)) is not None:
            return decided
        agent_id, extra_context = _ask_fallback(services, invite, to_user, config)
    agent = _agent(services, account_id, agent_id)
    call = _incoming_call(services, account_id, invite, agent, extra_context)
    try:
        services.store.create_call(
            call, invite_key=invite_key, slot_limit=services.settings.max_concurrent_calls
        )
    except AlreadyExists:  # a retried webhook (or a concurrent retry) decided this INVITE before
        if (decided := _decided(services, account_id, invite_key, config)) is None:
            raise
        return decided
    return accepted(services, call, config)


def _decided(
    services: Services, account_id: str, invite_key: str, config: SipConfig
) -> InviteAccepted | None:
    """The decision already taken for an INVITE, if a previous webhook call took one."""
    existing = services.store.find_invite_call(account_id, invite_key)
    if existing is None:
        return None
    return accepted(services, services.store.get_call(existing).value, config)


def _exists(services: Services, account_id: str, agent_id: str) -> bool:
    try:
        services.store.get_agent(account_id, agent_id)
    except NotFound:
        return False
    return True


def _route(services: Services, account_id: str, to_user: str, config: SipConfig) -> str | None:
    """The agent the account's rules route ``to_user`` to, if any."""
    found = route(to_user, config.allowed_agents, allow_all_agents=config.allow_all_agents)
    if found is not None and (
        found.rule != "allow_all_agents" or _exists(services, account_id, found.agent_id)
    ):
        return found.agent_id
    return None


def _ask_fallback(
    services: Services, invite: InviteWebhook, to_user: str, config: SipConfig
) -> tuple[str, dict[str, Any]]:
    """Ask the fallback handler; raise the rejection when there is none or it says reject."""
    handler = config.fallback_handler
    if handler is None:
        raise NoAgentMatched(f"no routing rule matched To user {to_user!r}")
    try:
        secrets = [services.cipher.decrypt(c) for c in handler.secret_ciphertexts]
    except CipherError as error:
        raise FallbackFailed(f"fallback handler secrets do not decrypt: {error}") from None
    answer = services.fallback.ask(handler.url, secrets, _fallback_request(invite, to_user))
    if answer.reject is not None:
        raise FallbackRejected(answer.reject.sip_reject_code, answer.reject.message)
    assert answer.start_agent_call is not None
    return answer.start_agent_call.agent_id, answer.start_agent_call.template_context


def _fallback_request(invite: InviteWebhook, to_user: str) -> FallbackRequest:
    caller = caller_info(invite)
    return FallbackRequest(
        sip_call_id=invite.sip_call_id,
        source_ip=invite.source_ip,
        transport=invite.transport.value,
        request_uri=invite.request_uri,
        from_uri=invite.from_uri,
        from_display_name=invite.from_display_name,
        caller_id=caller.caller_id,
        to_uri=invite.to_uri,
        to_user=to_user,
        headers=invite.headers,
        template_context=ctx.context_from_headers(invite.headers),
    )


def _agent(services: Services, account_id: str, agent_id: str) -> Agent:
    try:
        return services.store.get_agent(account_id, agent_id).value
    except NotFound:
        raise AgentUnavailable(f"agent {agent_id!r} does not exist") from None


def media_endpoint(services: Services, endpoint: MediaEndpoint | None) -> MediaEndpoint:
    """Return the agent's media endpoint, or the deployment's default one."""
    if endpoint is not None:
        return endpoint
    if services.settings.default_media_endpoint:
        return MediaEndpoint(url=services.settings.default_media_endpoint)
    raise AgentUnavailable("the agent has no mediaEndpoint and no default is configured")


def _incoming_call(
    services: Services,
    account_id: str,
    invite: InviteWebhook,
    agent: Agent,
    extra_context: dict[str, Any],
) -> Call:
    template = agent.call_template
    caller = caller_info(invite)
    built = ctx.incoming_context(invite.headers, caller, template.context_schema, extra_context)
    dropped = [DroppedContext.of(group) for group in built.dropped_summary()]
    if dropped:
        logger.info(
            "context keys dropped",
            extra={"agent_id": agent.agent_id, "dropped": [d.to_json() for d in dropped]},
        )
    context = built.context
    return Call(
        call_id=services.new_id(),
        account_id=account_id,
        created=services.clock(),
        direction="incoming",
        agent_id=agent.agent_id,
        caller=caller.caller_id,
        callee=user_part(invite.to_uri),
        from_uri=invite.from_uri,
        to_uri=invite.to_uri,
        from_display_name=invite.from_display_name,
        sip_call_id=invite.sip_call_id,
        source=f"{invite.source_ip}:{invite.source_port}",
        transport=invite.transport.value,
        template_context=context,
        dropped_context=dropped,
        system_prompt=render_system_prompt(template.system_prompt, context),
        media_endpoint=media_endpoint(services, template.media_endpoint),
        call_template=template.for_agent(),
        edge_id=invite.edge_id or None,
        join_timeout=template.join_timeout,
        max_duration=template.max_duration,
        metadata=dict(template.metadata or {}),
        holds_slot=True,
    )


def accepted(services: Services, call: Call, config: SipConfig) -> InviteAccepted:
    """Return the acceptance that answers the caller of ``call`` (``config``: its account's)."""
    return InviteAccepted(
        codec_preference=list(services.settings.codec_preference),
        incoming_refer=config.incoming_refer,
        **call.agent_session(),
    )
