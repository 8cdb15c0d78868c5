"""The services the deployed control plane builds from its environment, on moto
(chalicelib/runtime.py; the variables: docs/local.md, docs/deployment.md).

Nothing is installed: the app builds its services as on Lambda, with boto3's default clients,
which moto's mock answers (the ``aws`` fixture, tests/integration/conftest.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

import boto3
import pytest
from chalice.test import Client

import app
from chalicelib import runtime
from chalicelib.commands import MemoryCommandSender
from chalicelib.contracts import HangUpCommand
from tests.integration.harness import REGION, TABLE, Aws, Queue

API_KEY = "sk_live_" + "Q7x" * 11
FERNET_KEY = "m2b3oZ0Kp6Zt4q8q2Zx8HFWQx2Zb0wXcZq1jS4yR6uE="


@pytest.fixture
def deployed(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The Lambda's environment of docs/deployment.md: table, queue, secrets by ARN."""
    secrets = boto3.client("secretsmanager", region_name=REGION)
    key_hash = hashlib.sha256(API_KEY.encode()).hexdigest()
    values = {
        "SIPLINE_API_KEYS": f"ops:default:sha256:{key_hash}",
        "SIPLINE_WEBHOOK_SECRET": "whsec_deployed",
        "SIPLINE_PASSWORD_KEY": FERNET_KEY,
    }
    for name, value in values.items():
        monkeypatch.delenv(name, raising=False)
        arn = secrets.create_secret(Name=name.lower(), SecretString=value)["ARN"]
        monkeypatch.setenv(f"{name}_ARN", arn)
    monkeypatch.setenv("SIPLINE_TABLE", TABLE)
    monkeypatch.setenv("SIPLINE_COMMAND_QUEUE_URL", aws.queue_url)
    monkeypatch.setenv("SIPLINE_SIP_DOMAIN", "sip.example.com")
    monkeypatch.delenv("SIPLINE_LOCAL", raising=False)
    runtime.install(None)  # build from the environment, afresh
    try:
        yield monkeypatch
    finally:
        runtime.install(None)


def test_the_deployed_services_reach_the_table_and_the_queue(
    deployed: pytest.MonkeyPatch, aws: Aws
) -> None:
    reply = Client(app.app).http.get("/api/sip", headers={"X-API-Key": API_KEY})
    services = runtime.services()
    services.commands.send(HangUpCommand(call_id="call-1"))

    assert reply.status_code == 200 and b'"domain":"sip.example.com"' in reply.body
    assert services.settings.webhook_secrets == ["whsec_deployed"]
    assert Queue(aws).drain() == [HangUpCommand(call_id="call-1")]


def test_a_deployment_without_a_command_queue_answers_500_and_logs_the_variable(
    deployed: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, the control plane quietly kept commands in the Lambda's memory: an API hang-up
    answered 202 and the call went on."""
    deployed.delenv("SIPLINE_COMMAND_QUEUE_URL")

    with caplog.at_level(logging.ERROR):
        reply = Client(app.app).http.get("/api/sip", headers={"X-API-Key": API_KEY})

    assert reply.status_code == 500
    assert "SIPLINE_COMMAND_QUEUE_URL is not set" in caplog.text


def test_the_local_stack_may_run_without_a_command_queue(deployed: pytest.MonkeyPatch) -> None:
    deployed.delenv("SIPLINE_COMMAND_QUEUE_URL")
    deployed.setenv("SIPLINE_LOCAL", "1")

    reply = Client(app.app).http.get("/api/sip", headers={"X-API-Key": API_KEY})

    assert reply.status_code == 200
    assert isinstance(runtime.services().commands, MemoryCommandSender)
