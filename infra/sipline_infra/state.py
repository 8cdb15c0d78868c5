"""What sipline keeps: the table, the command queues, the secrets and the password key.

- **Table.** Built from :func:`chalicelib.store.schema.table_definition`, the one definition the
  local stack and the tests create too: key schema, attribute types and the GSIs are read from
  that dict, not restated here, so the deployed table cannot drift from the one the code was
  tested against. On top: on-demand billing (as the dict says), point-in-time recovery,
  deletion protection (``StageConfig.deletion_protection``), RETAIN when the stack goes away in
  ``prod`` (``StageConfig.removal_retain``), and TTL on ``ttl`` (docs/storage.md).
- **Command queue and its dead-letter queue.** Commands that fail 5 receives land in the DLQ
  (kept 14 days, the maximum, for an operator to read and an alarm to count); both queues are
  encrypted with SQS-managed keys and refuse plain HTTP. The relays' own queues
  (``sipline-<stage>-edge-<edgeId>``) are created by the relays at run time and redrive to the
  same DLQ (docs/relay.md); this construct only fixes their prefix and its ARN pattern.
- **Secrets.** Secrets Manager generates both values, so none is ever in the template, a shell
  history or CDK's context: the webhook secret (64 letters and digits, no commas: the control
  plane reads a comma-separated list while rotating) and the first API key as JSON
  ``{"keyId": "admin", "accountId": "default", "key": "<64 letters and digits>"}``, the form
  ``chalicelib/api_keys.py`` reads beside its comma-separated entries. The operator reads the
  key once with ``aws secretsmanager get-secret-value`` (docs/deployment.md, "API keys").
- **Password key.** A customer-managed KMS key with yearly rotation encrypts SIP passwords and
  fallback secrets (``chalicelib/crypto.py``, encryption context ``purpose=sipline-secret``); it
  is retained with the table (a deleted key makes every stored ciphertext unreadable).
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from chalicelib.store.schema import table_definition
from sipline_infra.checks import acknowledge, skip_checkov
from sipline_infra.config import StageConfig

TTL_ATTRIBUTE = "ttl"
"""The items' expiry attribute (``chalicelib/store/schema.py`` enables it on the same name)."""
MAX_RECEIVE_COUNT = 5
"""Receives of a command before SQS moves it to the DLQ (docs/relay.md, "Commands")."""
FIRST_KEY_ID = "admin"
FIRST_KEY_ACCOUNT = "default"

_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}
_PROJECTIONS = {
    "ALL": dynamodb.ProjectionType.ALL,
    "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY,
}


class State(Construct):
    """The stage's data: :attr:`table`, the queues, the two secrets and :attr:`password_key`."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        removal = cdk.RemovalPolicy.RETAIN if config.removal_retain else cdk.RemovalPolicy.DESTROY
        self.table = _table(self, config, removal)

        self.command_dlq = sqs.Queue(
            self,
            "CommandDlq",
            queue_name=config.name("commands-dlq"),
            retention_period=cdk.Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.command_queue = sqs.Queue(
            self,
            "CommandQueue",
            queue_name=config.name("commands"),
            visibility_timeout=cdk.Duration.seconds(30),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.command_dlq, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )
        for queue in (self.command_dlq, self.command_queue):
            skip_checkov(
                queue,
                "CKV_AWS_27",
                "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled); the check looks only for"
                " a KMS key id.",
            )
        self.edge_queue_prefix = config.name("edge-")
        self.edge_queue_arn_pattern = cdk.Stack.of(self).format_arn(
            service="sqs", resource=f"{self.edge_queue_prefix}*"
        )

        self.webhook_secret = secretsmanager.Secret(
            self,
            "WebhookSecret",
            secret_name=config.name("webhook-secret"),
            description="HMAC secret the relays sign their webhooks with (docs/webhooks.md)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=64
            ),
        )
        self.api_keys_secret = secretsmanager.Secret(
            self,
            "ApiKeys",
            secret_name=config.name("api-keys"),
            description="API keys of the control plane; the first one generated (docs/deployment.md)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=cdk.Stack.of(self).to_json_string(
                    {"keyId": FIRST_KEY_ID, "accountId": FIRST_KEY_ACCOUNT}
                ),
                generate_string_key="key",
                exclude_punctuation=True,
                password_length=64,
            ),
        )
        for secret in (self.webhook_secret, self.api_keys_secret):
            skip_checkov(
                secret,
                "CKV_AWS_149",
                "Encrypted with Secrets Manager's key; who reads it is set by IAM grants on the"
                " secret (the two functions, the relays' execution role): a customer key would add"
                " a key policy to keep in step without narrowing that set.",
            )
            acknowledge(
                secret,
                "AwsSolutions-SMG4",
                "Rotation is an operator's step without downtime, not a rotation Lambda: the"
                " control plane accepts several webhook secrets and several API keys at once (old"
                " and new), and only the operator can hand a new key to its user"
                " (docs/deployment.md, API keys).",
            )

        self.password_key = kms.Key(
            self,
            "PasswordKey",
            alias=f"alias/{config.name('passwords')}",
            description="Encrypts SIP passwords and fallback secrets (chalicelib/crypto.py)",
            enable_key_rotation=True,
            removal_policy=removal,
            pending_window=cdk.Duration.days(30),
        )


def _table(scope: Construct, config: StageConfig, removal: cdk.RemovalPolicy) -> dynamodb.Table:
    definition = table_definition(config.name("table"))
    types = {a["AttributeName"]: a["AttributeType"] for a in definition["AttributeDefinitions"]}

    def attribute(key_schema: list[dict[str, Any]], key_type: str) -> dynamodb.Attribute:
        (name,) = [k["AttributeName"] for k in key_schema if k["KeyType"] == key_type]
        return dynamodb.Attribute(name=name, type=_ATTRIBUTE_TYPES[types[name]])

    if definition["BillingMode"] != "PAY_PER_REQUEST":
        raise ValueError(f"the table definition asks for {definition['BillingMode']}")
    table = dynamodb.Table(
        scope,
        "Table",
        table_name=definition["TableName"],
        partition_key=attribute(definition["KeySchema"], "HASH"),
        sort_key=attribute(definition["KeySchema"], "RANGE"),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        deletion_protection=config.deletion_protection,
        time_to_live_attribute=TTL_ATTRIBUTE,
        removal_policy=removal,
    )
    skip_checkov(
        table,
        "CKV_AWS_119",
        "Encrypted at rest with DynamoDB's key; the secrets in items (SIP passwords, fallback"
        " secrets) are encrypted by the application with the password key (chalicelib/crypto.py)"
        " before they are written.",
    )
    for index in definition["GlobalSecondaryIndexes"]:
        table.add_global_secondary_index(
            index_name=index["IndexName"],
            partition_key=attribute(index["KeySchema"], "HASH"),
            sort_key=attribute(index["KeySchema"], "RANGE"),
            projection_type=_PROJECTIONS[index["Projection"]["ProjectionType"]],
        )
    return table
