"""Use cases of ``/api/sip``: read and patch the account's SIP configuration."""

from __future__ import annotations

from typing import Any

from chalicelib.errors import InvalidInput, NotFound
from chalicelib.models import AllowedAgent, FallbackHandler, SipConfig, SipConfigPatch
from chalicelib.routing import check_pattern
from chalicelib.services import Services, retry_on_conflict


def get_sip_config(services: Services, account_id: str) -> dict[str, Any]:
    """Return the account's SIP configuration as the API shows it."""
    config = services.store.get_sip_config(account_id).value
    return config.view(services.settings.account_domain(account_id))


def _check_allowed_agents(services: Services, account_id: str, allowed: list[AllowedAgent]) -> None:
    for index, rule in enumerate(allowed):
        where = f"allowedAgents[{index}]"
        try:
            check_pattern(rule.pattern)
        except ValueError as error:
            raise InvalidInput(f"{where}.toUserPattern", str(error)) from None
        try:
            services.store.get_agent(account_id, rule.agent_id)
        except NotFound:
            raise InvalidInput(f"{where}.agentId", f"unknown agent {rule.agent_id!r}") from None


def patch_sip_config(services: Services, account_id: str, patch: SipConfigPatch) -> dict[str, Any]:
    """Apply ``patch`` (fields present replace the stored ones); return the new configuration."""
    if patch.allowed_agents is not None:
        _check_allowed_agents(services, account_id, patch.allowed_agents)
    handler = None
    if patch.fallback_handler is not None:
        handler = FallbackHandler(
            url=patch.fallback_handler.url,
            secret_ciphertexts=[services.cipher.encrypt(s) for s in patch.fallback_handler.secrets],
        )
    fields = patch.model_fields_set

    def attempt() -> SipConfig:
        stored = services.store.get_sip_config(account_id)
        changes: dict[str, Any] = {
            name: getattr(patch, name) for name in fields if name != "fallback_handler"
        }
        if "fallback_handler" in fields:
            changes["fallback_handler"] = handler
        config = stored.value.model_copy(update=changes)
        services.store.save_sip_config(account_id, config, stored.version)
        return config

    config = retry_on_conflict(attempt)
    return config.view(services.settings.account_domain(account_id))
