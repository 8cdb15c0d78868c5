"""Builds the production :class:`~chalicelib.services.Services` once per process, lazily.

boto3 clients honour ``AWS_ENDPOINT_URL``, which is how the local stack points them at moto.
Tests replace the instance with :func:`install`, or build one with :func:`build_services`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from chalicelib.clock import utc_now
from chalicelib.commands import (
    CommandSender,
    MemoryCommandSender,
    SqsCommandSender,
    SqsEdgeQueues,
)
from chalicelib.config import ConfigError, Settings, load_settings
from chalicelib.crypto import Cipher, FernetCipher, KmsCipher
from chalicelib.fallback import HttpFallbackClient
from chalicelib.ids import id_factory
from chalicelib.observability import logger
from chalicelib.services import Services
from chalicelib.store.dynamodb import DynamoTable
from chalicelib.store.repository import Store

ClientFactory = Callable[[str], Any]
"""``boto3.client``: the AWS client of a service, by name (``"sqs"``)."""

_installed: Services | None = None


def _cipher(settings: Settings, client: ClientFactory) -> Cipher:
    if settings.kms_key_id:
        return KmsCipher(client("kms"), settings.kms_key_id)
    if settings.password_key:
        return FernetCipher(settings.password_key)
    raise ConfigError("set SIPLINE_KMS_KEY_ID or SIPLINE_PASSWORD_KEY to encrypt secrets")


def _commands(settings: Settings, client: ClientFactory) -> CommandSender:
    if settings.command_queue_url is not None:
        return SqsCommandSender(client("sqs"), settings.command_queue_url)
    if not settings.local:
        raise ConfigError(
            "SIPLINE_COMMAND_QUEUE_URL is not set: hang-ups, outgoing calls and registrations"
            " would never reach a relay. Set it to the command queue's URL (docs/deployment.md),"
            " or SIPLINE_LOCAL=1 on a stack of your own (docs/local.md)"
        )
    logger.warning("SIPLINE_COMMAND_QUEUE_URL is not set: commands stay in this process's memory")
    return MemoryCommandSender()


def build_services(settings: Settings, client: ClientFactory) -> Services:
    """Wire the services of ``settings`` with the AWS clients ``client`` makes.

    Raises ConfigError when the settings cannot run: no key to encrypt secrets with, or no
    command queue outside the local stack.
    """
    commands = _commands(settings, client)
    edge_queues = None
    if isinstance(commands, SqsCommandSender):
        edge_queues = SqsEdgeQueues(commands.client, settings.edge_queue_prefix)
    return Services(
        settings=settings,
        store=Store(DynamoTable(client("dynamodb"), settings.table_name)),
        cipher=_cipher(settings, client),
        commands=commands,
        fallback=HttpFallbackClient(settings.fallback_timeout_s, egress=settings.egress),
        new_id=id_factory(utc_now),
        edge_queues=edge_queues,
    )


@lru_cache(maxsize=1)
def _from_environment() -> Services:
    import boto3

    return build_services(load_settings(), boto3.client)


def services() -> Services:
    """Return the process's services (built from the environment on first use)."""
    return _installed if _installed is not None else _from_environment()


def install(replacement: Services | None) -> None:
    """Use ``replacement`` instead of the environment's services (None: back to the default)."""
    global _installed
    _installed = replacement
    _from_environment.cache_clear()
