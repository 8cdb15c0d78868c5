"""Builds the production :class:`~chalicelib.services.Services` once per process, lazily.

boto3 clients honour ``AWS_ENDPOINT_URL``, which is how the local stack points them at moto.
Tests replace the instance with :func:`install`.
"""

from __future__ import annotations

from functools import lru_cache

from chalicelib.commands import CommandSender, MemoryCommandSender, SqsCommandSender
from chalicelib.config import Settings, load_settings
from chalicelib.crypto import Cipher, FernetCipher, KmsCipher
from chalicelib.fallback import HttpFallbackClient
from chalicelib.ids import id_factory
from chalicelib.services import Services, utc_now
from chalicelib.store.dynamodb import DynamoTable
from chalicelib.store.repository import Store

_installed: Services | None = None


def _cipher(settings: Settings) -> Cipher:
    if settings.kms_key_id:
        import boto3

        return KmsCipher(boto3.client("kms"), settings.kms_key_id)
    if settings.password_key:
        return FernetCipher(settings.password_key)
    raise RuntimeError("set SIPLINE_KMS_KEY_ID or SIPLINE_PASSWORD_KEY to encrypt secrets")


def _commands(settings: Settings) -> CommandSender:
    if settings.command_queue_url is None:
        return MemoryCommandSender()
    import boto3

    return SqsCommandSender(boto3.client("sqs"), settings.command_queue_url)


@lru_cache(maxsize=1)
def _from_environment() -> Services:
    import boto3

    settings = load_settings()
    return Services(
        settings=settings,
        store=Store(DynamoTable(boto3.client("dynamodb"), settings.table_name)),
        cipher=_cipher(settings),
        commands=_commands(settings),
        fallback=HttpFallbackClient(settings.fallback_timeout_s, egress=settings.egress),
        new_id=id_factory(utc_now),
    )


def services() -> Services:
    """Return the process's services (built from the environment on first use)."""
    return _installed if _installed is not None else _from_environment()


def install(replacement: Services | None) -> None:
    """Use ``replacement`` instead of the environment's services (None: back to the default)."""
    global _installed
    _installed = replacement
    _from_environment.cache_clear()
