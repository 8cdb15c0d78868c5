"""Settings of the control plane, read once from the environment.

Secret values come either straight from a variable (local stack, tests) or, on AWS, from Secrets
Manager by ARN (``*_ARN`` variables), so that no secret value sits in a Lambda's environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from chalicelib.api_keys import ApiKey, parse_api_keys
from chalicelib.egress import ALLOWANCE_VARIABLE, EgressPolicy

DEFAULT_ACCOUNT = "default"
DEFAULT_CODEC_PREFERENCE = ("opus/48000/2", "G722/8000", "PCMU/8000", "PCMA/8000")


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


def _secret(env: Mapping[str, str], name: str) -> str:
    """Return ``env[name]``, or the Secrets Manager value named by ``env[name + '_ARN']``."""
    if env.get(name):
        return env[name]
    arn = env.get(f"{name}_ARN")
    if not arn:
        return ""
    import boto3  # only on AWS, where the ARN is set

    response = boto3.client("secretsmanager").get_secret_value(SecretId=arn)
    return str(response["SecretString"])


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: ``os.environ``).

    Raises ApiKeyError when ``SIPLINE_API_KEYS`` is malformed or names a weak key.
    """
    env = os.environ if env is None else env
    preference = env.get("SIPLINE_CODEC_PREFERENCE")
    return Settings(
        table_name=env.get("SIPLINE_TABLE", "sipline"),
        command_queue_url=env.get("SIPLINE_COMMAND_QUEUE_URL") or None,
        api_keys=parse_api_keys(_secret(env, "SIPLINE_API_KEYS")),
        webhook_secret=_secret(env, "SIPLINE_WEBHOOK_SECRET"),
        replay_window_s=int(env.get("SIPLINE_REPLAY_WINDOW_S", "60")),
        sip_domain=env.get("SIPLINE_SIP_DOMAIN", "sip.localhost"),
        password_key=_secret(env, "SIPLINE_PASSWORD_KEY") or None,
        kms_key_id=env.get("SIPLINE_KMS_KEY_ID") or None,
        default_media_endpoint=env.get("SIPLINE_DEFAULT_MEDIA_ENDPOINT") or None,
        codec_preference=(
            tuple(c.strip() for c in preference.split(",") if c.strip())
            if preference
            else DEFAULT_CODEC_PREFERENCE
        ),
        fallback_timeout_s=float(env.get("SIPLINE_FALLBACK_TIMEOUT_S", "2.5")),
        max_concurrent_calls=_positive_int(env, "SIPLINE_MAX_CONCURRENT_CALLS", 50),
        egress=EgressPolicy.from_setting(env.get(ALLOWANCE_VARIABLE, "")),
    )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    """Return ``env[name]`` as a whole number from 1, ``default`` when unset; else fail loudly."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a whole number from 1 (got {raw!r})")
    return int(raw)
