"""How the process's services are put together from the settings (chalicelib/runtime.py).

The AWS clients are stand-ins that record what they are asked: the wiring, not AWS, is under
test (tests/integration/chalicelib/test_runtime.py builds the same from the environment on moto).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from chalicelib.commands import MemoryCommandSender
from chalicelib.config import ConfigError, Settings
from chalicelib.contracts import HangUpCommand
from chalicelib.crypto import FernetCipher, KmsCipher
from chalicelib.runtime import build_services

FERNET_KEY = "m2b3oZ0Kp6Zt4q8q2Zx8HFWQx2Zb0wXcZq1jS4yR6uE="
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/sipline-commands"
DEPLOYED = Settings(table_name="sipline-prod", command_queue_url=QUEUE, password_key=FERNET_KEY)


class RecordingClient:
    """An AWS client that records each call and answers from ``answers`` (else empty)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, dict[str, Any]] = {}

    def __getattr__(self, operation: str) -> Any:
        def call(**params: Any) -> dict[str, Any]:
            self.calls.append((operation, params))
            return self.answers.get(operation, {})

        return call


class Clients:
    """``boto3.client`` as the runtime calls it: one recording client per service asked for."""

    def __init__(self) -> None:
        self.made: dict[str, RecordingClient] = {}

    def __call__(self, service: str) -> RecordingClient:
        assert service not in self.made, f"a second {service} client"
        self.made[service] = RecordingClient(service)
        return self.made[service]


def test_commands_go_to_the_configured_queue() -> None:
    clients = Clients()
    services = build_services(DEPLOYED, clients)

    services.commands.send(HangUpCommand(call_id="call-1"))

    [(operation, params)] = clients.made["sqs"].calls
    assert operation == "send_message" and params["QueueUrl"] == QUEUE
    assert '"callId": "call-1"' in params["MessageBody"]


def test_without_a_command_queue_the_control_plane_refuses_to_run_outside_the_local_stack() -> None:
    """Before, commands went to a list in the Lambda's memory: every hang-up, outgoing call and
    registration was accepted (202) and never reached a relay."""
    with pytest.raises(ConfigError) as refused:
        build_services(replace(DEPLOYED, command_queue_url=None), Clients())

    message = str(refused.value)
    assert message.startswith("SIPLINE_COMMAND_QUEUE_URL is not set")
    assert "SIPLINE_LOCAL=1" in message


def test_on_the_local_stack_commands_without_a_queue_stay_in_memory() -> None:
    clients = Clients()
    services = build_services(replace(DEPLOYED, command_queue_url=None, local=True), clients)

    services.commands.send(HangUpCommand(call_id="call-1"))

    assert isinstance(services.commands, MemoryCommandSender)
    assert services.commands.sent == [HangUpCommand(call_id="call-1")]
    assert "sqs" not in clients.made


def test_the_store_uses_the_configured_table() -> None:
    clients = Clients()
    services = build_services(DEPLOYED, clients)

    services.store.find_invite_call("default", "INVITE#x")

    assert services.settings is DEPLOYED
    [(operation, params)] = clients.made["dynamodb"].calls
    assert operation == "get_item" and params["TableName"] == "sipline-prod"


def test_passwords_are_encrypted_with_kms_when_a_key_id_is_set() -> None:
    clients = Clients()
    settings = replace(DEPLOYED, kms_key_id="alias/sipline")  # KMS wins over the Fernet key

    services = build_services(settings, clients)

    assert isinstance(services.cipher, KmsCipher)
    clients.made["kms"].answers["encrypt"] = {"CiphertextBlob": b"blob"}
    assert services.cipher.encrypt("trunk-pass") == "kms:YmxvYg=="  # base64 of b"blob"
    [(operation, params)] = clients.made["kms"].calls
    assert operation == "encrypt" and params["KeyId"] == "alias/sipline"


def test_passwords_are_encrypted_with_the_fernet_key_without_kms() -> None:
    services = build_services(DEPLOYED, Clients())

    assert isinstance(services.cipher, FernetCipher)
    assert FernetCipher(FERNET_KEY).decrypt(services.cipher.encrypt("pw")) == "pw"


def test_without_either_key_the_control_plane_refuses_to_run() -> None:
    with pytest.raises(ConfigError, match="set SIPLINE_KMS_KEY_ID or SIPLINE_PASSWORD_KEY"):
        build_services(replace(DEPLOYED, password_key=None), Clients())
