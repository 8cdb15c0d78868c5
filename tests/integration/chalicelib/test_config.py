"""Secrets given by ARN, read from moto's Secrets Manager (chalicelib/config.py, docs/deployment.md).

The ``aws`` fixture (tests/integration/conftest.py) holds moto's mock and its credentials.
"""

from __future__ import annotations

import hashlib

import boto3
import pytest

from chalicelib.config import ConfigError, load_settings
from tests.integration.harness import REGION, Aws

API_KEY = "sk_live_" + "Q7x" * 11
API_KEY_ENTRY = f"ops:default:sha256:{hashlib.sha256(API_KEY.encode()).hexdigest()}"
FERNET_KEY = "m2b3oZ0Kp6Zt4q8q2Zx8HFWQx2Zb0wXcZq1jS4yR6uE="


def secret(name: str, **value: str | bytes) -> str:
    """Create a secret in moto's Secrets Manager; return its ARN."""
    client = boto3.client("secretsmanager", region_name=REGION)
    return str(client.create_secret(Name=name, **value)["ARN"])


def test_the_three_secrets_are_read_by_arn(aws: Aws) -> None:
    env = {
        "SIPLINE_API_KEYS_ARN": secret("sipline/api-keys", SecretString=API_KEY_ENTRY),
        "SIPLINE_WEBHOOK_SECRET_ARN": secret("sipline/webhook", SecretString="whsec_a,whsec_b"),
        "SIPLINE_PASSWORD_KEY_ARN": secret("sipline/password-key", SecretString=FERNET_KEY),
    }

    settings = load_settings(env)

    assert [(k.key_id, k.account_id) for k in settings.api_keys] == [("ops", "default")]
    assert settings.webhook_secrets == ["whsec_a", "whsec_b"]
    assert settings.password_key == FERNET_KEY


def test_a_secret_that_does_not_exist_is_named_by_its_variable(aws: Aws) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:sipline/nothing-AbCdEf"

    with pytest.raises(ConfigError) as refused:
        load_settings({"SIPLINE_WEBHOOK_SECRET_ARN": arn})

    message = str(refused.value)
    assert message.startswith(f"SIPLINE_WEBHOOK_SECRET_ARN: cannot read {arn} from Secrets Manager")
    assert "ResourceNotFoundException" in message


def test_a_binary_secret_is_refused_it_has_no_string_value(aws: Aws) -> None:
    arn = secret("sipline/binary", SecretBinary=b"\x00\x01")

    with pytest.raises(ConfigError, match="SIPLINE_PASSWORD_KEY_ARN: .* holds no SecretString"):
        load_settings({"SIPLINE_PASSWORD_KEY_ARN": arn})


def test_a_failing_lookup_never_shows_a_secret_read_before_it(aws: Aws) -> None:
    env = {
        "SIPLINE_API_KEYS_ARN": secret("sipline/api-keys", SecretString=API_KEY_ENTRY),
        "SIPLINE_WEBHOOK_SECRET_ARN": secret("sipline/webhook", SecretString="whsec_hidden"),
        "SIPLINE_PASSWORD_KEY_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf",
    }

    with pytest.raises(ConfigError) as refused:
        load_settings(env)

    assert "whsec_hidden" not in str(refused.value) and API_KEY_ENTRY not in str(refused.value)
