"""The control plane (``infra/sipline_infra/control_plane.py``) as CloudFormation will create it.

What the functions must be comes from the package Chalice built (``sam.json``: handlers, memory,
timeouts, the swagger's routes), from the deploy contract in docs/deployment.md ("The CDK app":
runtime python3.12, the environment, the reaper's rate) and from what the code calls
(docs/deployment.md, "The IAM policy"). Least privilege is checked statement by statement: each
resource a role names must be one of this stack's own resources (by ``Ref``/``GetAtt``), the
stage's relay-queue pattern, or ``*`` for ``sqs:ListQueues`` alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

HANDLERS = {"sipline-dev-api": "app.app", "sipline-dev-reaper": "app.reap_calls"}
ENVIRONMENT = {
    "SIPLINE_TABLE",
    "SIPLINE_COMMAND_QUEUE_URL",
    "SIPLINE_EDGE_QUEUE_PREFIX",
    "SIPLINE_KMS_KEY_ID",
    "SIPLINE_SIP_DOMAIN",  # unset -c sip_domain: the NLB's DNS name (stack.py, Edge.sip_host)
    "SIPLINE_WEBHOOK_SECRET_ARN",
    "SIPLINE_API_KEYS_ARN",
    "SIPLINE_MAX_CONCURRENT_CALLS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_TRACE_DISABLED",
    "POWERTOOLS_LOG_LEVEL",
}
EDGE_PATTERN = {
    "Fn::Join": [
        "",
        [
            "arn:",
            {"Ref": "AWS::Partition"},
            ":sqs:",
            {"Ref": "AWS::Region"},
            ":",
            {"Ref": "AWS::AccountId"},
            ":sipline-dev-edge-*",
        ],
    ]
}


def _resources(template_json: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in template_json["Resources"].items() if r["Type"] == kind}


def _functions(template_json: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        r["Properties"]["FunctionName"]: (n, r["Properties"])
        for n, r in _resources(template_json, "AWS::Lambda::Function").items()
    }


def _by_type(template_json: dict[str, Any], kind: str) -> str:
    (name,) = _resources(template_json, kind)
    return name


def _sam(lambda_package_dir: Path) -> dict[str, Any]:
    sam: dict[str, Any] = json.loads((lambda_package_dir / "sam.json").read_text())
    return sam


def test_two_functions_on_python_3_12_with_chalices_handlers_and_sizes(
    template_json: dict[str, Any], lambda_package_dir: Path
) -> None:
    sam = _sam(lambda_package_dir)["Resources"]
    chalice = {
        r["Properties"]["Handler"]: r["Properties"]
        for r in sam.values()
        if r["Type"] == "AWS::Serverless::Function"
    }
    functions = _functions(template_json)
    assert set(functions) == set(HANDLERS)
    for name, (_, properties) in functions.items():
        assert properties["Runtime"] == "python3.12"
        assert properties["Handler"] == HANDLERS[name]
        expected = chalice[HANDLERS[name]]
        assert properties["MemorySize"] == expected["MemorySize"]
        assert properties["Timeout"] == expected["Timeout"]
        assert properties["Architectures"] == ["x86_64"]
        assert "TracingConfig" not in properties  # X-Ray off unless -c tracing=true
        assert "ReservedConcurrentExecutions" not in properties  # a new account's quota is 10


def test_the_environment_names_resources_and_carries_no_secret(
    template_json: dict[str, Any],
) -> None:
    (alias,) = [  # the password key; the alarms' topic has a key of its own (operations.py)
        r["Properties"]["TargetKeyId"]["Fn::GetAtt"][0]
        for r in _resources(template_json, "AWS::KMS::Alias").values()
        if r["Properties"]["AliasName"] == "alias/sipline-dev-passwords"
    ]
    logical = {
        "AWS::DynamoDB::Table": _by_type(template_json, "AWS::DynamoDB::Table"),
        "AWS::KMS::Key": alias,
    }
    secrets = {
        r["Properties"]["Name"]: n
        for n, r in _resources(template_json, "AWS::SecretsManager::Secret").items()
    }
    queues = {
        r["Properties"]["QueueName"]: n
        for n, r in _resources(template_json, "AWS::SQS::Queue").items()
    }
    for _, properties in _functions(template_json).values():
        variables = properties["Environment"]["Variables"]
        assert set(variables) == ENVIRONMENT
        assert variables["SIPLINE_TABLE"] == {"Ref": logical["AWS::DynamoDB::Table"]}
        assert variables["SIPLINE_COMMAND_QUEUE_URL"] == {"Ref": queues["sipline-dev-commands"]}
        assert variables["SIPLINE_EDGE_QUEUE_PREFIX"] == "sipline-dev-edge-"
        assert variables["SIPLINE_KMS_KEY_ID"] == {"Fn::GetAtt": [logical["AWS::KMS::Key"], "Arn"]}
        assert variables["SIPLINE_WEBHOOK_SECRET_ARN"] == {
            "Ref": secrets["sipline-dev-webhook-secret"]
        }
        assert variables["SIPLINE_API_KEYS_ARN"] == {"Ref": secrets["sipline-dev-api-keys"]}
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "sipline"
        assert variables["POWERTOOLS_TRACE_DISABLED"] == "1"


def _statements(template_json: dict[str, Any], role: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in _resources(template_json, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("function", sorted(HANDLERS))
def test_each_role_names_only_this_stacks_resources(
    template_json: dict[str, Any], function: str
) -> None:
    resources = template_json["Resources"]
    _, properties = _functions(template_json)[function]
    role = properties["Role"]["Fn::GetAtt"][0]
    role_properties = resources[role]["Properties"]
    assert "ManagedPolicyArns" not in role_properties
    assumed = role_properties["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in assumed] == [{"Service": "lambda.amazonaws.com"}]
    own = {properties["LoggingConfig"]["LogGroup"]["Ref"]}
    own |= set(_resources(template_json, "AWS::DynamoDB::Table"))
    own |= set(_resources(template_json, "AWS::SQS::Queue"))
    own |= set(_resources(template_json, "AWS::SecretsManager::Secret"))
    own |= set(_resources(template_json, "AWS::KMS::Key"))
    (table,) = _resources(template_json, "AWS::DynamoDB::Table")
    table_indexes = {"Fn::Join": ["", [{"Fn::GetAtt": [table, "Arn"]}, "/index/*"]]}
    statements = _statements(template_json, role)
    assert statements
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = _listed(statement["Action"])
        assert not any("*" in action for action in actions), statement
        for resource in _listed(statement["Resource"]):
            if resource == "*":
                assert actions == ["sqs:ListQueues"], statement  # the action has no resource
            elif resource in (EDGE_PATTERN, table_indexes):
                pass
            else:
                (reference,) = resource.values()
                name = reference if isinstance(reference, str) else reference[0]
                assert name in own, statement
        if any(action.startswith("kms:") for action in actions):
            assert statement["Condition"] == {
                "StringEquals": {"kms:EncryptionContext:purpose": "sipline-secret"}
            }


def test_the_api_role_sends_and_encrypts_and_the_reapers_cleans_relay_queues(
    template_json: dict[str, Any],
) -> None:
    def actions(function: str) -> set[str]:
        _, properties = _functions(template_json)[function]
        role = properties["Role"]["Fn::GetAtt"][0]
        return {a for s in _statements(template_json, role) for a in _listed(s["Action"])}

    common = {"dynamodb:Query", "dynamodb:PutItem", "secretsmanager:GetSecretValue"}
    assert common | {"sqs:SendMessage", "kms:Encrypt", "kms:Decrypt"} <= actions("sipline-dev-api")
    assert not {"sqs:DeleteQueue", "sqs:ListQueues"} & actions("sipline-dev-api")
    reaper = actions("sipline-dev-reaper")
    assert common | {"sqs:ListQueues", "sqs:GetQueueAttributes", "sqs:DeleteQueue"} <= reaper
    assert not {"sqs:SendMessage", "kms:Encrypt", "kms:Decrypt"} & reaper


def test_the_rest_api_serves_chalices_routes_through_the_api_function(
    template_json: dict[str, Any], lambda_package_dir: Path
) -> None:
    swagger = _sam(lambda_package_dir)["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    _, api = next(iter(_resources(template_json, "AWS::ApiGateway::RestApi").items()))
    body = api["Properties"]["Body"]
    assert body["paths"].keys() == swagger["paths"].keys()
    assert "/api/sip" in body["paths"] and "/webhooks/sip/invite" in body["paths"]
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    api_function, _ = _functions(template_json)["sipline-dev-api"]
    for path, methods in body["paths"].items():
        for method, operation in methods.items():
            integration = operation["x-amazon-apigateway-integration"]
            assert integration["type"] == "aws_proxy", (path, method)
            assert {"Fn::GetAtt": [api_function, "Arn"]} in integration["uri"]["Fn::Join"][1]
    (permission,) = [
        p["Properties"]
        for p in _resources(template_json, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    assert permission["FunctionName"] == {"Fn::GetAtt": [api_function, "Arn"]}
    assert permission["Action"] == "lambda:InvokeFunction"


def test_the_stage_is_api_throttled_and_access_logged(template_json: dict[str, Any]) -> None:
    (stage,) = [
        r["Properties"] for r in _resources(template_json, "AWS::ApiGateway::Stage").values()
    ]
    assert stage["StageName"] == "api"  # as Chalice names it: docs/api.md's paths
    (settings,) = [s for s in stage["MethodSettings"] if s["ResourcePath"] == "/*"]
    assert settings["ThrottlingRateLimit"] == 200 and settings["ThrottlingBurstLimit"] == 400
    log_group = stage["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0]
    assert template_json["Resources"][log_group]["Properties"]["RetentionInDays"] == 30
    fields = json.loads(stage["AccessLogSetting"]["Format"])
    assert {"status", "ip", "requestTime"} <= set(fields)
    assert not {"user", "caller"} & set(fields)


def test_the_reaper_runs_every_minute(template_json: dict[str, Any]) -> None:
    (rule,) = [r["Properties"] for r in _resources(template_json, "AWS::Events::Rule").values()]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    reaper, _ = _functions(template_json)["sipline-dev-reaper"]
    assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": [reaper, "Arn"]}]


def test_each_function_logs_to_its_own_group_with_a_retention(
    template_json: dict[str, Any],
) -> None:
    for name, (_, properties) in _functions(template_json).items():
        group = template_json["Resources"][properties["LoggingConfig"]["LogGroup"]["Ref"]]
        assert group["Properties"]["LogGroupName"] == f"/aws/lambda/{name}"
        assert group["Properties"]["RetentionInDays"] == 30


def test_the_outputs_give_the_api_url_with_its_stage_and_the_first_keys_secret(
    template_json: dict[str, Any],
) -> None:
    outputs = template_json["Outputs"]
    parts = outputs["ApiUrl"]["Value"]["Fn::Join"][1]
    (stage,) = _resources(template_json, "AWS::ApiGateway::Stage")
    assert parts[0] == "https://" and parts[-1] == {"Ref": stage}
    assert outputs["FirstApiKeySecretName"]["Value"] == "sipline-dev-api-keys"


SECRET_SHAPES = (
    re.compile(r"(?<![A-Za-z0-9])(?=[A-Za-z0-9]*[A-Z])[A-Za-z0-9]{64}(?![A-Za-z0-9])"),
    re.compile(r"sk_[A-Za-z0-9_-]{20,}"),
    re.compile(r"sha256:[0-9a-f]{64}"),
    re.compile(r"-----BEGIN"),
)
"""A generated 64-character key (mixed case: asset hashes are lower-case hex), a key made by
``chalicelib.api_keys.new_key``, a hashed key entry, a PEM block."""


def test_no_secret_value_anywhere_in_the_assembly(cdk_out: Path) -> None:
    texts = [p for p in cdk_out.rglob("*") if p.is_file() and p.suffix == ".json"]
    assert texts
    for path in texts:
        text = path.read_text()
        for shape in SECRET_SHAPES:
            assert not shape.search(text), (path.name, shape.pattern)
        assert '"SecretString"' not in text
        for variable in ("SIPLINE_API_KEYS", "SIPLINE_WEBHOOK_SECRET", "SIPLINE_PASSWORD_KEY"):
            # only as an ECS container secret: a name and where ECS reads it (tree.json: camelCase)
            for holder in _holders(json.loads(text), variable):
                assert {k.lower() for k in holder} == {"name", "valuefrom"}, (path.name, holder)


def _holders(value: Any, text: str) -> list[dict[str, Any]]:
    """Every object in ``value`` (nested JSON) that has ``text`` as one of its values."""
    if isinstance(value, list):
        return [h for item in value for h in _holders(item, text)]
    if isinstance(value, dict):
        own = [value] if text in value.values() or text in value else []
        return own + [h for item in value.values() for h in _holders(item, text)]
    return []
