"""The stack's state (``infra/sipline_infra/state.py``) as CloudFormation will create it.

Expected values come from elsewhere than the construct: the table's shape from
``chalicelib.store.schema.table_definition`` (what the local stack and every storage test
create), the dead-letter settings from docs/deployment.md ("The DynamoDB table, the queue, the
secrets": 5 receives, 14 days), the first API key's JSON from the deploy contract quoted in
docs/deployment.md ("API keys").
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.store.schema import table_definition

FOURTEEN_DAYS_S = 14 * 24 * 3600


def _resources(template_json: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template_json["Resources"].items()
        if resource["Type"] == kind
    }


def _one(template_json: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    found = _resources(template_json, kind)
    assert len(found) == 1, f"{kind}: {sorted(found)}"
    return next(iter(found.items()))


def test_the_table_is_the_schema_modules_table(template_json: dict[str, Any]) -> None:
    _, table = _one(template_json, "AWS::DynamoDB::Table")
    properties = table["Properties"]
    expected = table_definition(properties["TableName"])
    assert properties["TableName"] == "sipline-dev-table"
    assert properties["BillingMode"] == expected["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == expected["KeySchema"]
    by_name = lambda items: sorted(items, key=lambda item: item["AttributeName"])  # noqa: E731
    assert by_name(properties["AttributeDefinitions"]) == by_name(expected["AttributeDefinitions"])
    indexes = sorted(properties["GlobalSecondaryIndexes"], key=lambda index: index["IndexName"])
    assert indexes == sorted(expected["GlobalSecondaryIndexes"], key=lambda i: i["IndexName"])


def test_the_table_keeps_its_data(template: Any) -> None:
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": {
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "DeletionProtectionEnabled": True,
                "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
            },
            "DeletionPolicy": "Delete",  # dev; prod retains (tests/unit/infra)
        },
    )


def test_the_command_queue_redrives_to_an_encrypted_dlq_kept_14_days(
    template_json: dict[str, Any],
) -> None:
    queues = {
        r["Properties"]["QueueName"]: (name, r["Properties"])
        for name, r in _resources(template_json, "AWS::SQS::Queue").items()
    }
    assert set(queues) == {"sipline-dev-commands", "sipline-dev-commands-dlq"}
    dlq_id, dlq = queues["sipline-dev-commands-dlq"]
    _, queue = queues["sipline-dev-commands"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": 5,
    }
    assert dlq["MessageRetentionPeriod"] == FOURTEEN_DAYS_S
    assert "RedrivePolicy" not in dlq
    assert queue["VisibilityTimeout"] >= 30
    for properties in (queue, dlq):
        assert properties["SqsManagedSseEnabled"] is True
    policies = _resources(template_json, "AWS::SQS::QueuePolicy").values()
    denied = set()
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny":
                assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                denied |= {ref["Ref"] for ref in policy["Properties"]["Queues"]}
    assert denied == {dlq_id, queues["sipline-dev-commands"][0]}


def test_both_secrets_are_generated_by_secrets_manager(template_json: dict[str, Any]) -> None:
    secrets = {
        r["Properties"]["Name"]: r["Properties"]
        for r in _resources(template_json, "AWS::SecretsManager::Secret").values()
    }
    assert set(secrets) == {"sipline-dev-api-keys", "sipline-dev-webhook-secret"}
    for properties in secrets.values():
        assert "SecretString" not in properties
        generated = properties["GenerateSecretString"]
        assert generated["ExcludePunctuation"] is True
        assert generated["PasswordLength"] == 64
    first_key = secrets["sipline-dev-api-keys"]["GenerateSecretString"]
    assert json.loads(first_key["SecretStringTemplate"]) == {
        "keyId": "admin",
        "accountId": "default",
    }
    assert first_key["GenerateStringKey"] == "key"
    assert (
        "SecretStringTemplate" not in secrets["sipline-dev-webhook-secret"]["GenerateSecretString"]
    )


def test_the_password_key_rotates(template_json: dict[str, Any]) -> None:
    _, alias = _one(template_json, "AWS::KMS::Alias")
    assert alias["Properties"]["AliasName"] == "alias/sipline-dev-passwords"
    # the alias names the password key (the alarms' topic has a key of its own, operations.py)
    key = _resources(template_json, "AWS::KMS::Key")[
        alias["Properties"]["TargetKeyId"]["Fn::GetAtt"][0]
    ]
    assert key["Properties"]["EnableKeyRotation"] is True
