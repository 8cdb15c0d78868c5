"""The control plane's settings from the environment (chalicelib/config.py, docs/local.md)."""

from __future__ import annotations

import hashlib

import pytest

from chalicelib.config import ConfigError, SecretUnreadable, load_settings


def test_an_account_may_have_50_concurrent_calls_unless_the_deployment_says_otherwise() -> None:
    assert load_settings({}).max_concurrent_calls == 50  # docs/api.md, concurrent calls
    assert load_settings({"SIPLINE_MAX_CONCURRENT_CALLS": "400"}).max_concurrent_calls == 400


@pytest.mark.parametrize("raw", ["0", "-3", "many", "2.5"])
def test_a_concurrent_call_limit_that_is_not_a_whole_number_from_1_is_named(raw: str) -> None:
    with pytest.raises(
        ValueError,
        match=f"SIPLINE_MAX_CONCURRENT_CALLS must be a whole number from 1 \\(got '{raw}'\\)",
    ):
        load_settings({"SIPLINE_MAX_CONCURRENT_CALLS": raw})


# Every variable of docs/local.md's control-plane table, its default and its error. The expected
# values are copied from that table, not from chalicelib/config.py.

DOCUMENTED_CODECS = ("opus/48000/2", "G722/8000", "PCMU/8000", "PCMA/8000")
KEY_HASH = "sha256:" + "ab" * 32
FERNET_KEY = "m2b3oZ0Kp6Zt4q8q2Zx8HFWQx2Zb0wXcZq1jS4yR6uE="


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = load_settings({})

    assert settings.table_name == "sipline"
    assert settings.command_queue_url is None
    assert settings.api_keys == () and settings.accounts == []
    assert settings.webhook_secrets == []
    assert settings.replay_window_s == 60
    assert settings.sip_domain == "sip.localhost"
    assert settings.password_key is None and settings.kms_key_id is None
    assert settings.default_media_endpoint is None
    assert settings.codec_preference == DOCUMENTED_CODECS
    assert settings.fallback_timeout_s == 2.5
    assert settings.max_concurrent_calls == 50
    assert settings.egress.allowed == ()  # public addresses only
    assert settings.local is False


def test_every_variable_is_read() -> None:
    settings = load_settings(
        {
            "SIPLINE_TABLE": "sipline-prod",
            "SIPLINE_COMMAND_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/sipline-commands",
            "SIPLINE_API_KEYS": f"ops:acme:{KEY_HASH}",
            "SIPLINE_WEBHOOK_SECRET": "whsec_old, whsec_new",
            "SIPLINE_REPLAY_WINDOW_S": "30",
            "SIPLINE_SIP_DOMAIN": "sip.example.com",
            "SIPLINE_PASSWORD_KEY": FERNET_KEY,
            "SIPLINE_KMS_KEY_ID": "alias/sipline",
            "SIPLINE_DEFAULT_MEDIA_ENDPOINT": "wss://agents.example.com/media",
            "SIPLINE_CODEC_PREFERENCE": "PCMU/8000, AMR-WB/16000",
            "SIPLINE_FALLBACK_TIMEOUT_S": "1.5",
            "SIPLINE_MAX_CONCURRENT_CALLS": "200",
            "SIPLINE_ALLOWED_PRIVATE_TARGETS": "10.20.0.0/16",
            "SIPLINE_LOCAL": "1",
        }
    )

    assert settings.table_name == "sipline-prod"
    assert settings.command_queue_url == "https://sqs.us-east-1.amazonaws.com/1/sipline-commands"
    assert [(k.key_id, k.account_id) for k in settings.api_keys] == [("ops", "acme")]
    assert settings.webhook_secrets == ["whsec_old", "whsec_new"]
    assert settings.replay_window_s == 30
    assert settings.sip_domain == "sip.example.com"
    assert settings.account_domain("acme") == "acme.sip.example.com"
    assert settings.password_key == FERNET_KEY
    assert settings.kms_key_id == "alias/sipline"
    assert settings.default_media_endpoint == "wss://agents.example.com/media"
    assert settings.codec_preference == ("PCMU/8000", "AMR-WB/16000")
    assert settings.fallback_timeout_s == 1.5
    assert settings.max_concurrent_calls == 200
    assert [str(n) for n in settings.egress.allowed] == ["10.20.0.0/16"]
    assert settings.local is True


def test_a_variable_set_to_nothing_counts_as_unset() -> None:
    names = [
        "SIPLINE_TABLE",
        "SIPLINE_COMMAND_QUEUE_URL",
        "SIPLINE_API_KEYS",
        "SIPLINE_WEBHOOK_SECRET",
        "SIPLINE_REPLAY_WINDOW_S",
        "SIPLINE_SIP_DOMAIN",
        "SIPLINE_PASSWORD_KEY",
        "SIPLINE_KMS_KEY_ID",
        "SIPLINE_DEFAULT_MEDIA_ENDPOINT",
        "SIPLINE_CODEC_PREFERENCE",
        "SIPLINE_FALLBACK_TIMEOUT_S",
        "SIPLINE_MAX_CONCURRENT_CALLS",
        "SIPLINE_ALLOWED_PRIVATE_TARGETS",
        "SIPLINE_LOCAL",
    ]
    assert load_settings(dict.fromkeys(names, "")) == load_settings({})


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("SIPLINE_REPLAY_WINDOW_S", "0", "SIPLINE_REPLAY_WINDOW_S must be a whole number from 1"),
        ("SIPLINE_REPLAY_WINDOW_S", "1m", "SIPLINE_REPLAY_WINDOW_S must be a whole number from 1"),
        ("SIPLINE_REPLAY_WINDOW_S", "-60", "SIPLINE_REPLAY_WINDOW_S must be a whole number from 1"),
        ("SIPLINE_FALLBACK_TIMEOUT_S", "soon", "SIPLINE_FALLBACK_TIMEOUT_S must be a number of"),
        ("SIPLINE_FALLBACK_TIMEOUT_S", "0", "SIPLINE_FALLBACK_TIMEOUT_S must be a number of"),
        ("SIPLINE_FALLBACK_TIMEOUT_S", "-2.5", "SIPLINE_FALLBACK_TIMEOUT_S must be a number of"),
        ("SIPLINE_FALLBACK_TIMEOUT_S", "nan", "SIPLINE_FALLBACK_TIMEOUT_S must be a number of"),
        ("SIPLINE_FALLBACK_TIMEOUT_S", "inf", "SIPLINE_FALLBACK_TIMEOUT_S must be a number of"),
        ("SIPLINE_CODEC_PREFERENCE", " , ", "SIPLINE_CODEC_PREFERENCE names no codec"),
        ("SIPLINE_LOCAL", "yes please", "SIPLINE_LOCAL must be 1 or 0"),
        ("SIPLINE_API_KEYS", "ops-without-account", "SIPLINE_API_KEYS entry 1"),
        ("SIPLINE_ALLOWED_PRIVATE_TARGETS", "10.0.0.0/33", "SIPLINE_ALLOWED_PRIVATE_TARGETS"),
    ],
)
def test_a_malformed_value_is_refused_naming_the_variable_and_the_value(
    name: str, raw: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        load_settings({name: raw})
    assert raw.strip() in str(refused.value) or name == "SIPLINE_API_KEYS"


# Secrets by ARN (docs/deployment.md): the lookup itself is tested on moto's Secrets Manager in
# tests/integration/chalicelib/test_config.py; here, which ARN is read and what a failure says.

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:sipline/webhook-secret-AbCdEf"


class Secrets:
    """Secrets Manager as ``load_settings`` reads it: ARN -> ``SecretString``."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.read: list[str] = []

    def __call__(self, arn: str) -> str:
        self.read.append(arn)
        return self.values[arn]


def test_a_secret_given_by_arn_is_read_from_secrets_manager() -> None:
    secrets = Secrets({ARN: "whsec_from_aws"})

    settings = load_settings({"SIPLINE_WEBHOOK_SECRET_ARN": ARN}, read_secret=secrets)

    assert settings.webhook_secrets == ["whsec_from_aws"] and secrets.read == [ARN]


def test_the_cdk_apps_generated_first_key_secret_configures_one_key() -> None:
    # Secrets Manager generates it as JSON (docs/deployment.md, "API keys").
    key = "Q7rT2vX9kL4mN8pB3cD6fG1hJ5sW0zYaE2uI7oP4qR9tV3xK6nM1bC8dF5gH0jL2"
    secrets = Secrets({ARN: f'{{"keyId":"admin","accountId":"default","key":"{key}"}}'})

    settings = load_settings({"SIPLINE_API_KEYS_ARN": ARN}, read_secret=secrets)

    ((found,),) = [settings.api_keys]
    assert (found.key_id, found.account_id) == ("admin", "default")
    assert found.sha256 == hashlib.sha256(key.encode()).hexdigest()
    assert settings.accounts == ["default"] and key not in repr(settings)


def test_a_secret_given_directly_wins_and_secrets_manager_is_not_asked() -> None:
    secrets = Secrets({ARN: "whsec_from_aws"})

    settings = load_settings(
        {"SIPLINE_WEBHOOK_SECRET": "whsec_direct", "SIPLINE_WEBHOOK_SECRET_ARN": ARN},
        read_secret=secrets,
    )

    assert settings.webhook_secrets == ["whsec_direct"] and secrets.read == []


def test_an_arn_that_cannot_be_read_is_named_with_the_reason() -> None:
    def unreadable(arn: str) -> str:
        raise SecretUnreadable("AccessDeniedException: not authorized to GetSecretValue")

    with pytest.raises(ConfigError) as refused:
        load_settings({"SIPLINE_PASSWORD_KEY_ARN": ARN}, read_secret=unreadable)

    assert str(refused.value) == (
        f"SIPLINE_PASSWORD_KEY_ARN: cannot read {ARN} from Secrets Manager"
        " (AccessDeniedException: not authorized to GetSecretValue)"
    )


def test_an_empty_secret_named_by_arn_is_refused_rather_than_taken_for_no_secret() -> None:
    with pytest.raises(ConfigError, match=f"SIPLINE_API_KEYS_ARN: the secret {ARN} is empty"):
        load_settings({"SIPLINE_API_KEYS_ARN": ARN}, read_secret=Secrets({ARN: ""}))


def test_relay_queues_are_named_sipline_edge_and_abandoned_after_600_s_by_default() -> None:
    settings = load_settings({})  # docs/local.md, control plane table
    assert (settings.edge_queue_prefix, settings.edge_queue_abandon_s) == ("sipline-edge-", 600)
    given = load_settings(
        {"SIPLINE_EDGE_QUEUE_PREFIX": "prod-edge-", "SIPLINE_EDGE_QUEUE_ABANDON_S": "900"}
    )
    assert (given.edge_queue_prefix, given.edge_queue_abandon_s) == ("prod-edge-", 900)


@pytest.mark.parametrize("raw", ["edge.queue", "x" * 41, "a/b"])
def test_a_relay_queue_prefix_sqs_cannot_name_is_refused_naming_it(raw: str) -> None:
    with pytest.raises(ConfigError, match="SIPLINE_EDGE_QUEUE_PREFIX must be 1 to 40 of"):
        load_settings({"SIPLINE_EDGE_QUEUE_PREFIX": raw})
