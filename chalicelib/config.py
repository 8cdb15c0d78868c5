"""Settings of the control plane, read once from the environment.

Secret values come either straight from a variable (local stack, tests) or, on AWS, from Secrets
Manager by ARN (``*_ARN`` variables), so that no secret value sits in a Lambda's environment.
Every variable, its default and its error: docs/local.md. A variable set to nothing counts as
unset; a malformed one is a :class:`ConfigError` naming it and the value (never a secret's).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.api_keys import ApiKey, parse_api_keys
from chalicelib.commands import DEFAULT_EDGE_QUEUE_PREFIX, valid_prefix
from chalicelib.egress import ALLOWANCE_VARIABLE, EgressPolicy

DEFAULT_ACCOUNT = "default"
DEFAULT_CODEC_PREFERENCE = ("opus/48000/2", "G722/8000", "PCMU/8000", "PCMA/8000")

SecretReader = Callable[[str], str]
"""Return the ``SecretString`` of the Secrets Manager secret with this ARN, or raise
:class:`SecretUnreadable`."""


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable (the process cannot run)."""


class SecretUnreadable(Exception):
    """Secrets Manager did not give a secret's string (the reason, without the ARN)."""


@dataclass(frozen=True)
class Settings:
    """Everything the control plane is configured with."""

    table_name: str = "sipline"
    command_queue_url: str | None = None
    api_keys: tuple[ApiKey, ...] = ()
    """The configured API keys: id, account and SHA-256 of each, never a key (api_keys.py)."""
    webhook_secret: str = field(default="", repr=False)
    """Never in a repr (a traceback prints locals). Shared with the edge; several may be given, comma-separated, while rotating."""
    replay_window_s: int = 60
    sip_domain: str = "sip.localhost"
    password_key: str | None = field(default=None, repr=False)
    """Never in a repr. Fernet key (urlsafe base64, 32 bytes) that encrypts passwords when KMS is not used."""
    kms_key_id: str | None = None
    default_media_endpoint: str | None = None
    codec_preference: tuple[str, ...] = DEFAULT_CODEC_PREFERENCE
    fallback_timeout_s: float = 2.5
    """Below the edge's decision timeout (4 s), so a slow fallback handler still gets an answer."""
    max_concurrent_calls: int = 50
    """Calls an account may have going on at once, incoming and outgoing (docs/api.md)."""
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    """Where sipline may connect for users: public addresses, plus the ranges the deployment
    allows in ``SIPLINE_ALLOWED_PRIVATE_TARGETS`` (``chalicelib/egress.py``)."""
    edge_queue_prefix: str = DEFAULT_EDGE_QUEUE_PREFIX
    """The relays' own command queues are named ``<prefix><edgeId>``: commands go only to an
    announced queue with this prefix, and the reaper deletes abandoned ones (docs/relay.md)."""
    edge_queue_abandon_s: int = 600
    """A relay queue whose relay has not been heard from for this long is deleted by the reaper."""
    local: bool = False
    """``SIPLINE_LOCAL=1``: a stack on a developer's machine (``make dev``), which may run without
    a command queue (commands then stay in the process's memory, docs/local.md)."""

    @property
    def accounts(self) -> list[str]:
        """Every account an API key names, sorted, once each."""
        return sorted({key.account_id for key in self.api_keys})

    @property
    def webhook_secrets(self) -> list[str]:
        """Every secret a webhook may be signed with (rotation: old and new at once)."""
        return [s.strip() for s in self.webhook_secret.split(",") if s.strip()]

    def account_domain(self, account_id: str) -> str:
        """Return the SIP domain of ``account_id`` (the default account owns the bare domain)."""
        if account_id == DEFAULT_ACCOUNT:
            return self.sip_domain
        return f"{account_id}.{self.sip_domain}"

    def account_for_domain(self, host: str) -> str:
        """Return the account whose SIP domain is ``host``; any other host is the default's."""
        host = host.lower()
        suffix = "." + self.sip_domain.lower()
        if host.endswith(suffix) and "." not in host[: -len(suffix)]:
            return host[: -len(suffix)]
        return DEFAULT_ACCOUNT


def secrets_manager() -> SecretReader:
    """Read secrets with one Secrets Manager client, made on the first read (only on AWS)."""
    clients: list[Any] = []

    def read(arn: str) -> str:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        if not clients:
            clients.append(boto3.client("secretsmanager"))
        try:
            response = clients[0].get_secret_value(SecretId=arn)
        except (BotoCoreError, ClientError) as error:
            raise SecretUnreadable(str(error)) from error
        if "SecretString" not in response:
            raise SecretUnreadable("it holds no SecretString (a binary secret)")
        return str(response["SecretString"])

    return read


def load_settings(
    env: Mapping[str, str] | None = None, *, read_secret: SecretReader | None = None
) -> Settings:
    """Build :class:`Settings` from ``env`` (default: ``os.environ``).

    ``read_secret`` reads the ``*_ARN`` secrets (default: Secrets Manager). Raises ConfigError
    (ApiKeyError for ``SIPLINE_API_KEYS``) naming the variable that is missing or malformed.
    """
    env = os.environ if env is None else env
    read = read_secret or secrets_manager()
    preference = env.get("SIPLINE_CODEC_PREFERENCE", "")
    return Settings(
        table_name=env.get("SIPLINE_TABLE") or "sipline",
        command_queue_url=env.get("SIPLINE_COMMAND_QUEUE_URL") or None,
        api_keys=parse_api_keys(_secret(env, "SIPLINE_API_KEYS", read)),
        webhook_secret=_secret(env, "SIPLINE_WEBHOOK_SECRET", read),
        replay_window_s=_positive_int(env, "SIPLINE_REPLAY_WINDOW_S", 60),
        sip_domain=env.get("SIPLINE_SIP_DOMAIN") or "sip.localhost",
        password_key=_secret(env, "SIPLINE_PASSWORD_KEY", read) or None,
        kms_key_id=env.get("SIPLINE_KMS_KEY_ID") or None,
        default_media_endpoint=env.get("SIPLINE_DEFAULT_MEDIA_ENDPOINT") or None,
        codec_preference=_codecs(preference) if preference else DEFAULT_CODEC_PREFERENCE,
        fallback_timeout_s=_seconds(env, "SIPLINE_FALLBACK_TIMEOUT_S", 2.5),
        max_concurrent_calls=_positive_int(env, "SIPLINE_MAX_CONCURRENT_CALLS", 50),
        egress=EgressPolicy.from_setting(env.get(ALLOWANCE_VARIABLE, "")),
        edge_queue_prefix=_edge_queue_prefix(env),
        edge_queue_abandon_s=_positive_int(env, "SIPLINE_EDGE_QUEUE_ABANDON_S", 600),
        local=_flag(env, "SIPLINE_LOCAL"),
    )


def _edge_queue_prefix(env: Mapping[str, str]) -> str:
    raw = env.get("SIPLINE_EDGE_QUEUE_PREFIX", "").strip()
    if not raw:
        return DEFAULT_EDGE_QUEUE_PREFIX
    if not valid_prefix(raw):
        raise ConfigError(
            f"SIPLINE_EDGE_QUEUE_PREFIX must be 1 to 40 of A-Z a-z 0-9 _ - (got {raw!r})"
        )
    return raw


def _secret(env: Mapping[str, str], name: str, read: SecretReader) -> str:
    """Return ``env[name]``, or the secret whose ARN is ``env[name + '_ARN']``, or ``""``."""
    if env.get(name):
        return env[name]
    variable = f"{name}_ARN"
    arn = env.get(variable)
    if not arn:
        return ""
    try:
        value = read(arn)
    except SecretUnreadable as error:
        raise ConfigError(f"{variable}: cannot read {arn} from Secrets Manager ({error})") from None
    if not value:
        raise ConfigError(f"{variable}: the secret {arn} is empty")
    return value


def _codecs(raw: str) -> tuple[str, ...]:
    codecs = tuple(c.strip() for c in raw.split(",") if c.strip())
    if not codecs:
        raise ConfigError(f"SIPLINE_CODEC_PREFERENCE names no codec (got {raw!r})")
    return codecs


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    """Return ``env[name]`` as a whole number from 1, ``default`` when unset; else fail loudly."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name} must be a whole number from 1 (got {raw!r})")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """Return ``env[name]`` as a finite number of seconds above 0, ``default`` when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a number of seconds above 0 (got {raw!r})")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip()
    if raw not in ("", "0", "1"):
        raise ConfigError(f"{name} must be 1 or 0 (got {raw!r})")
    return raw == "1"
