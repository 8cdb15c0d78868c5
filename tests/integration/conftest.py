"""Route tests: ``app.app`` through ``chalice.test.Client``, on DynamoDB and SQS mocked by moto.

Each test gets a fresh table and command queue inside ``moto.mock_aws()``, services built like
``tests.support.fakes.make_services`` but on the real DynamoDB store, the SQS command sender and
the HTTP fallback client, and the fixed clock of ``tests.support.fakes`` (the webhook replay window
is checked against it). Commands are read back from the queue exactly as the edge reads them.
Like ``make dev``, the services allow loopback targets (agents and fallback handlers on
127.0.0.1); ``tests/security`` checks the deployment default, which refuses them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

import app
from chalicelib.commands import SqsCommandSender
from chalicelib.egress import EgressPolicy
from chalicelib.fallback import HttpFallbackClient
from chalicelib.observability import logger
from chalicelib.runtime import install
from chalicelib.services import Services
from chalicelib.store.dynamodb import DynamoTable
from chalicelib.store.repository import Store
from chalicelib.store.schema import create_table
from scripts.localstack import LOCAL_PRIVATE_TARGETS, create_command_queues
from tests.integration.harness import (
    FALLBACK_SECRET,
    REGION,
    TABLE,
    Api,
    Aws,
    FallbackServer,
    Queue,
)
from tests.support.fakes import FixedClock, make_services

_ENVIRONMENT = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "sipline",
}


@pytest.fixture(scope="session")
def boto_clients() -> tuple[Any, Any]:
    """DynamoDB and SQS clients, built once (building a client costs ~0.1 s) and used only while
    a test's ``mock_aws()`` is active: moto's stubber answers every request they send then."""
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return (
        boto3.client("dynamodb", region_name=REGION, **credentials),
        boto3.client("sqs", region_name=REGION, **credentials),
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, boto_clients: tuple[Any, Any]) -> Iterator[Aws]:
    """A fresh moto-mocked account holding the sipline table and a command queue."""
    for name, value in _ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    dynamodb, sqs = boto_clients
    with mock_aws():  # starts from empty backends, and is gone when the test ends
        create_table(dynamodb, TABLE)
        queue_url, _ = create_command_queues(sqs, "sipline-commands-test")
        yield Aws(dynamodb, sqs, queue_url)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def services(aws: Aws, clock: FixedClock) -> Services:
    """``make_services``, but on DynamoDB, SQS and a real HTTP fallback client.

    A test changes its configuration with ``services.settings = dataclasses.replace(...)``.
    """
    built = make_services(
        commands=SqsCommandSender(aws.sqs, aws.queue_url),
        clock=clock,
        table_name=TABLE,
        egress=EgressPolicy.from_setting(LOCAL_PRIVATE_TARGETS),
    )
    built.store = Store(DynamoTable(aws.dynamodb, TABLE))
    built.fallback = HttpFallbackClient(timeout_s=5.0, egress=built.settings.egress)
    return built


@pytest.fixture
def api(services: Services, clock: FixedClock) -> Iterator[Api]:
    """The app, with ``services`` installed, behind a JSON client holding the test API key."""
    install(services)
    try:
        yield Api(Client(app.app), clock)
    finally:
        install(None)


@pytest.fixture
def queue(aws: Aws) -> Queue:
    return Queue(aws)


@pytest.fixture
def fallback_server() -> Iterator[FallbackServer]:
    """A fallback handler listening on 127.0.0.1 (an ephemeral port) in a thread."""
    server = FallbackServer(FALLBACK_SECRET).start()
    try:
        yield server
    finally:
        server.stop()


class _CurrentStdout:
    """Whatever ``sys.stdout`` is when a line is written (pytest swaps it between test phases)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def log_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> pytest.CaptureFixture[str]:
    """Send the Powertools log lines, whose handler holds the stdout of import time, to ``capsys``."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    monkeypatch.setattr(handler, "stream", _CurrentStdout())
    return capsys
