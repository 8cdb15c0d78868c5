"""Use cases of ``/api/sip``: read and patch the account's SIP configuration."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from chalicelib.contracts import AllowlistSnapshot
from chalicelib.errors import InvalidInput
from chalicelib.models import (
    AllowedAgent,
    FallbackHandler,
    FallbackHandlerInput,
    SipConfig,
    SipConfigPatch,
)
from chalicelib.routing import check_pattern
from chalicelib.services import Services, retry_on_conflict
from chalicelib.sip_uri import normalize_server
from chalicelib.targets import check_host_port, check_url

_NOT_NULL = {
    "allowed_cidr_ranges": "allowedCidrRanges",
    "allow_all_agents": "allowAllAgents",
    "allowed_agents": "allowedAgents",
    "allow_free_transfer_targets": "allowFreeTransferTargets",
    "incoming_refer": "incomingRefer",
}
"""Fields that a PATCH may replace but not null (only ``fallbackHandler: null`` removes)."""


def get_sip_config(services: Services, account_id: str) -> dict[str, Any]:
    """Return the account's SIP configuration as the API shows it."""
    config = services.store.get_sip_config(account_id).value
    return config.view(services.settings.account_domain(account_id))


def _check_allowed_agents(services: Services, account_id: str, allowed: list[AllowedAgent]) -> None:
    known = services.store.agent_ids(account_id)
    for index, rule in enumerate(allowed):
        where = f"allowedAgents[{index}]"
        try:
            check_pattern(rule.pattern)
        except ValueError as error:
            raise InvalidInput(f"{where}.toUserPattern", str(error)) from None
        if rule.agent_id not in known:
            raise InvalidInput(f"{where}.agentId", f"unknown agent {rule.agent_id!r}")


def edge_allowlist(services: Services) -> AllowlistSnapshot:
    """Return the union of every account's ``allowedCidrRanges``, for the edge's IP guard.

    The accounts are those the deployment's API keys name. Registrations add nothing: until
    the edge registers, no INVITE arrives over one (docs/relay.md, the IP guard).
    """
    accounts = services.settings.accounts
    ranges: set[str] = set()
    for account_id in accounts:
        ranges.update(services.store.get_sip_config(account_id).value.allowed_cidr_ranges)
    ordered = sorted(ranges)
    digest = hashlib.sha256(json.dumps(ordered).encode()).digest()
    return AllowlistSnapshot(allowed_cidr_ranges=ordered, version=int.from_bytes(digest[:6], "big"))


def _handler(
    stored: FallbackHandler | None,
    given: FallbackHandlerInput | None,
    new_secrets: list[str] | None,
) -> FallbackHandler | None:
    """The new fallback handler: a patch without ``secrets`` keeps the stored ones."""
    if given is None:
        return None
    if new_secrets is None:
        new_secrets = stored.secret_ciphertexts if stored is not None else []
    return FallbackHandler(url=given.url, secret_ciphertexts=new_secrets)


def patch_sip_config(services: Services, account_id: str, patch: SipConfigPatch) -> dict[str, Any]:
    """Apply ``patch`` (fields present replace the stored ones); return the new configuration."""
    for name, field in _NOT_NULL.items():
        if name in patch.model_fields_set and getattr(patch, name) is None:
            raise InvalidInput(field, "cannot be null")
    if patch.allowed_agents is not None:
        _check_allowed_agents(services, account_id, patch.allowed_agents)
    given = patch.fallback_handler
    if given is not None:
        check_url(services, "fallbackHandler.url", given.url)
    new_secrets = None
    if given is not None and "secrets" in given.model_fields_set:
        new_secrets = [services.cipher.encrypt(s) for s in given.secrets]
    if patch.transfer_trunk is not None:
        try:
            trunk = normalize_server(patch.transfer_trunk)
        except ValueError as error:
            raise InvalidInput("transferTrunk", str(error)) from None
        check_host_port(services, "transferTrunk", trunk)
        patch = patch.model_copy(update={"transfer_trunk": trunk})
    fields = patch.model_fields_set

    def attempt() -> SipConfig:
        stored = services.store.get_sip_config(account_id)
        changes: dict[str, Any] = {
            name: getattr(patch, name) for name in fields if name != "fallback_handler"
        }
        if "fallback_handler" in fields:
            changes["fallback_handler"] = _handler(
                stored.value.fallback_handler, given, new_secrets
            )
        config = stored.value.model_copy(update=changes)
        services.store.save_sip_config(account_id, config, stored.version)
        return config

    config = retry_on_conflict(attempt)
    return config.view(services.settings.account_domain(account_id))
