"""The edge's template: the relays' network, load balancer, task, permissions and scaling.

Two stages: conftest.py's ``dev`` synth (the defaults: no TLS, SIP from anywhere) and a
``prod``-like one (tests/integration/infra/stages.py: TLS, carriers' ranges, retained data),
each cdk-nag clean (a finding fails the synth). Expected values come from the deployment
contract (docs/deployment.md, "The edge on AWS"): ports 5060 (UDP+TCP), 5061 (TLS), 8060
(health), the RTP range 20000-20999, a drain of 100 s with 15 s to spare before the stop
timeout, 100 calls per relay, the EMF metric ``ActiveCalls`` of ``service=sipline-relay``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.infra.stages import (
    CARRIERS,
    TLS_SECRET_ARN,
    named,
    only,
    password_key,
    prod,
    resources,
)
from tests.integration.infra.test_static_checks import _checkov

CONTRACT_ENV = {
    "SIPLINE_SIP_HOST",
    "SIPLINE_PUBLIC_ADDRESS",
    "SIPLINE_EDGE_ID",
    "SIPLINE_HEALTH_PORT",
    "SIPLINE_DRAIN_S",
    "SIPLINE_MAX_CALLS",
    "SIPLINE_METRICS",
    "SIPLINE_STAGE",
    "SIPLINE_CONTROL_URL",
    "SIPLINE_COMMAND_QUEUE_URL",
    "SIPLINE_COMMAND_DLQ_URL",
    "SIPLINE_EDGE_QUEUE_PREFIX",
    "SIPLINE_KMS_KEY_ID",
    "SIPLINE_RTP_PORTS",
    "SIPLINE_SPOOL_DIR",
}
"""The contract's environment table, less what ECS injects from Secrets Manager."""


@pytest.fixture(scope="module")
def dev(template_json: dict[str, Any]) -> dict[str, Any]:
    return template_json


@pytest.fixture(scope="module")
def production(lambda_package_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return prod(lambda_package_dir, tmp_path_factory.getbasetemp() / "cdk.out-prod")


@pytest.fixture(params=["dev", "prod"])
def stage(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    name = str(request.param)
    return name, request.getfixturevalue("dev" if name == "dev" else "production")


def container(template: dict[str, Any]) -> dict[str, Any]:
    _, task = only(template, "AWS::ECS::TaskDefinition")
    (definition,) = task["Properties"]["ContainerDefinitions"]
    return dict(definition)


# -- network ------------------------------------------------------------------------------------


def test_vpc_has_two_public_subnets_and_no_nat(dev: dict[str, Any]) -> None:
    subnets = resources(dev, "AWS::EC2::Subnet")
    assert len(subnets) == 2
    assert resources(dev, "AWS::EC2::NatGateway") == {}
    assert all(s["Properties"]["MapPublicIpOnLaunch"] for s in subnets.values())
    zones = {json.dumps(s["Properties"]["AvailabilityZone"]) for s in subnets.values()}
    assert len(zones) == 2
    _, flow_log = only(dev, "AWS::EC2::FlowLog")
    assert flow_log["Properties"]["TrafficType"] == "REJECT"


def test_one_elastic_ip_per_zone_on_an_internet_facing_nlb(dev: dict[str, Any]) -> None:
    eips = resources(dev, "AWS::EC2::EIP")
    assert len(eips) == 2
    _, balancer = only(dev, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    props = balancer["Properties"]
    assert props["Type"] == "network"
    assert props["Scheme"] == "internet-facing"
    mappings = props["SubnetMappings"]
    assert sorted(m["AllocationId"]["Fn::GetAtt"][0] for m in mappings) == sorted(eips)
    assert all(m["AllocationId"]["Fn::GetAtt"][1] == "AllocationId" for m in mappings)
    subnets = resources(dev, "AWS::EC2::Subnet")
    assert sorted(m["SubnetId"]["Ref"] for m in mappings) == sorted(subnets)


def test_prod_keeps_its_addresses(production: dict[str, Any]) -> None:
    eips = resources(production, "AWS::EC2::EIP")
    assert {e.get("DeletionPolicy") for e in eips.values()} == {"Retain"}


def test_sip_host_is_the_nlb_in_the_outputs_and_the_control_plane(dev: dict[str, Any]) -> None:
    balancer, _ = only(dev, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    outputs = dev["Outputs"]
    assert outputs["SipHost"]["Value"] == {"Fn::GetAtt": [balancer, "DNSName"]}
    joined = outputs["SipAddresses"]["Value"]["Fn::Join"]
    assert joined[0] == ","
    assert sorted(part["Ref"] for part in joined[1]) == sorted(resources(dev, "AWS::EC2::EIP"))
    for function in resources(dev, "AWS::Lambda::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["SIPLINE_SIP_DOMAIN"] == {"Fn::GetAtt": [balancer, "DNSName"]}


def listeners(template: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    """(port, protocol) -> the target group the listener forwards to."""
    groups = resources(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    result = {}
    for listener in resources(template, "AWS::ElasticLoadBalancingV2::Listener").values():
        props = listener["Properties"]
        (action,) = props["DefaultActions"]
        assert action["Type"] == "forward"
        result[(props["Port"], props["Protocol"])] = groups[action["TargetGroupArn"]["Ref"]]
    return result


def test_sip_listener_udp_and_tcp_on_5060_without_tls(dev: dict[str, Any]) -> None:
    assert set(listeners(dev)) == {(5060, "TCP_UDP")}


def test_tls_listener_on_5061_with_a_tls_secret(production: dict[str, Any]) -> None:
    assert set(listeners(production)) == {(5060, "TCP_UDP"), (5061, "TCP")}


def test_target_groups_keep_the_client_ip_and_check_health_on_8060(
    stage: tuple[str, dict[str, Any]],
) -> None:
    for (port, protocol), group in listeners(stage[1]).items():
        props = group["Properties"]
        assert (props["Port"], props["Protocol"]) == (port, protocol)
        assert props["TargetType"] == "ip"
        assert props["HealthCheckProtocol"] == "TCP"
        assert props["HealthCheckPort"] == "8060"
        attributes = {a["Key"]: a["Value"] for a in props["TargetGroupAttributes"]}
        assert attributes["preserve_client_ip.enabled"] == "true"
        assert int(attributes["deregistration_delay.timeout_seconds"]) >= 100


def test_service_registers_the_relay_container_with_each_group(
    production: dict[str, Any],
) -> None:
    _, service = only(production, "AWS::ECS::Service")
    registered = {
        (lb["ContainerName"], lb["ContainerPort"], lb["TargetGroupArn"]["Ref"])
        for lb in service["Properties"]["LoadBalancers"]
    }
    groups = {
        g["Properties"]["Port"]: ref
        for ref, g in resources(production, "AWS::ElasticLoadBalancingV2::TargetGroup").items()
    }
    assert registered == {("relay", 5060, groups[5060]), ("relay", 5061, groups[5061])}


def relay_group(template: dict[str, Any]) -> dict[str, Any]:
    (group,) = [
        g
        for g in resources(template, "AWS::EC2::SecurityGroup").values()
        if any(r.get("FromPort") == 5060 for r in g["Properties"].get("SecurityGroupIngress", []))
    ]
    return group


def ingress(template: dict[str, Any]) -> list[dict[str, Any]]:
    return list(relay_group(template)["Properties"]["SecurityGroupIngress"])


def test_sip_only_from_the_carriers_ranges(production: dict[str, Any]) -> None:
    sip = {
        (r["IpProtocol"], r["FromPort"], r["ToPort"], r["CidrIp"])
        for r in ingress(production)
        if r["FromPort"] in (5060, 5061)
    }
    assert sip == {
        (protocol, port, port, cidr)
        for cidr in CARRIERS
        for protocol, port in (("udp", 5060), ("tcp", 5060), ("tcp", 5061))
    }


def test_rtp_from_anywhere_and_health_from_the_vpc_only(
    stage: tuple[str, dict[str, Any]],
) -> None:
    template = stage[1]
    rules = ingress(template)
    rtp = [r for r in rules if r["IpProtocol"] == "udp" and r["FromPort"] != 5060]
    assert [(r["FromPort"], r["ToPort"], r["CidrIp"]) for r in rtp] == [(20000, 20999, "0.0.0.0/0")]
    health = [r for r in rules if r["FromPort"] <= 8060 <= r["ToPort"]]
    assert len(health) == 1
    assert health[0]["IpProtocol"] == "tcp"
    vpc, _ = only(template, "AWS::EC2::VPC")
    assert health[0]["CidrIp"] == {"Fn::GetAtt": [vpc, "CidrBlock"]}
    opened = {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules}
    assert opened <= {
        ("udp", 5060, 5060),
        ("tcp", 5060, 5060),
        ("tcp", 5061, 5061),
        ("udp", 20000, 20999),
        ("tcp", 8060, 8060),
    }


# -- the task -----------------------------------------------------------------------------------


def test_stop_timeout_covers_the_drain(dev: dict[str, Any]) -> None:
    definition = container(dev)
    env = {e["Name"]: e["Value"] for e in definition["Environment"]}
    drain = int(env["SIPLINE_DRAIN_S"])
    assert drain == 100
    assert drain + 15 <= definition["StopTimeout"] <= 120


def test_a_drain_beyond_the_stop_timeout_is_refused(dev: dict[str, Any]) -> None:
    import aws_cdk as cdk
    from sipline_infra.config import StageConfig
    from sipline_infra.edge import Edge

    stack = cdk.Stack(cdk.App(), "Refused")
    config = StageConfig(stage="long", drain_seconds=106)
    with pytest.raises(ValueError, match="drain_seconds=106"):
        Edge(stack, "Edge", config=config, state=None, control_plane=None)  # type: ignore[arg-type]


def test_task_runs_read_only_with_a_spool_volume_and_the_image_user(dev: dict[str, Any]) -> None:
    definition = container(dev)
    assert definition["ReadonlyRootFilesystem"] is True
    assert "User" not in definition  # the image's USER 10001 (relay/Dockerfile)
    assert definition["MountPoints"] == [
        {"ContainerPath": "/var/lib/sipline/spool", "ReadOnly": False, "SourceVolume": "spool"}
    ]
    assert definition["HealthCheck"]["Command"] == ["CMD", "python", "-m", "relay.healthcheck"]
    assert definition["LogConfiguration"]["LogDriver"] == "awslogs"
    group = definition["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
    logs = resources(dev, "AWS::Logs::LogGroup")
    assert logs[group]["Properties"]["RetentionInDays"] == 30  # StageConfig's default


def test_environment_is_the_contracts_and_holds_no_secret(dev: dict[str, Any]) -> None:
    definition = container(dev)
    env = {e["Name"]: e["Value"] for e in definition["Environment"]}
    assert set(env) == CONTRACT_ENV
    assert env["SIPLINE_SIP_HOST"] == "0.0.0.0"
    assert env["SIPLINE_PUBLIC_ADDRESS"] == "ecs"
    assert env["SIPLINE_EDGE_ID"] == "ecs"
    assert env["SIPLINE_HEALTH_PORT"] == "8060"
    assert env["SIPLINE_METRICS"] == "emf"
    assert env["SIPLINE_STAGE"] == "dev"
    assert env["SIPLINE_RTP_PORTS"] == "20000-20999"
    assert env["SIPLINE_SPOOL_DIR"] == "/var/lib/sipline/spool"
    assert env["SIPLINE_EDGE_QUEUE_PREFIX"] == "sipline-dev-edge-"
    assert 100 < int(env["SIPLINE_MAX_CALLS"]) < 150  # above the target, below 150 (audio lost, bench/README.md)
    queue = named(dev, "AWS::SQS::Queue", "QueueName", "sipline-dev-commands")
    dlq = named(dev, "AWS::SQS::Queue", "QueueName", "sipline-dev-commands-dlq")
    assert env["SIPLINE_COMMAND_QUEUE_URL"] == {"Ref": queue}
    assert env["SIPLINE_COMMAND_DLQ_URL"] == {"Ref": dlq}
    assert env["SIPLINE_KMS_KEY_ID"] == {"Fn::GetAtt": [password_key(dev, "dev"), "Arn"]}
    api, _ = only(dev, "AWS::ApiGateway::RestApi")
    assert api in json.dumps(env["SIPLINE_CONTROL_URL"])
    secrets = set(resources(dev, "AWS::SecretsManager::Secret"))
    text = json.dumps(env)
    assert not any(secret in text for secret in secrets), "a secret's value or ARN in the env"


def test_secrets_come_from_secrets_manager(dev: dict[str, Any], production: dict[str, Any]) -> None:
    webhook = named(dev, "AWS::SecretsManager::Secret", "Name", "sipline-dev-webhook-secret")
    assert container(dev)["Secrets"] == [
        {"Name": "SIPLINE_WEBHOOK_SECRET", "ValueFrom": {"Ref": webhook}}
    ]
    secrets = {s["Name"]: s["ValueFrom"] for s in container(production)["Secrets"]}
    assert secrets["SIPLINE_TLS_CERT_PEM"] == f"{TLS_SECRET_ARN}:cert::"
    assert secrets["SIPLINE_TLS_KEY_PEM"] == f"{TLS_SECRET_ARN}:key::"
    assert set(secrets) == {"SIPLINE_WEBHOOK_SECRET", "SIPLINE_TLS_CERT_PEM", "SIPLINE_TLS_KEY_PEM"}


def test_image_is_built_from_relay_dockerfile_at_the_repository_root(cdk_out: Path) -> None:
    assets = json.loads((cdk_out / "Sipline-dev.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    assert image["source"]["dockerFile"] == "relay/Dockerfile"
    staged = cdk_out / image["source"]["directory"]
    assert (staged / "relay" / "Dockerfile").is_file()
    assert (staged / "requirements-relay.txt").is_file()
    assert not (staged / "tests").exists()  # .dockerignore keeps the context small
    assert not (staged / ".venv").exists()


def test_service_deploys_without_dropping_capacity(dev: dict[str, Any]) -> None:
    _, service = only(dev, "AWS::ECS::Service")
    props = service["Properties"]
    assert props["LaunchType"] == "FARGATE"
    assert props["DesiredCount"] == 2
    assert props["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "ENABLED"
    deployment = props["DeploymentConfiguration"]
    assert deployment["MinimumHealthyPercent"] == 100
    assert deployment["MaximumPercent"] == 200
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}


def test_container_insights_per_stage(dev: dict[str, Any], production: dict[str, Any]) -> None:
    def insights(template: dict[str, Any]) -> str:
        _, cluster = only(template, "AWS::ECS::Cluster")
        settings = cluster["Properties"]["ClusterSettings"]
        return str(next(s["Value"] for s in settings if s["Name"] == "containerInsights"))

    assert insights(production) == "enabled"
    assert insights(dev) == "disabled"


# -- permissions --------------------------------------------------------------------------------


def role_statements(template: dict[str, Any], role_ref: Any) -> list[dict[str, Any]]:
    statements = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_ref} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    assert statements
    return statements


def task_roles(template: dict[str, Any]) -> tuple[str, str]:
    _, task = only(template, "AWS::ECS::TaskDefinition")
    props = task["Properties"]
    return props["TaskRoleArn"]["Fn::GetAtt"][0], props["ExecutionRoleArn"]["Fn::GetAtt"][0]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


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


def test_task_role_names_only_the_stacks_queues_and_key(dev: dict[str, Any]) -> None:
    queue = named(dev, "AWS::SQS::Queue", "QueueName", "sipline-dev-commands")
    dlq = named(dev, "AWS::SQS::Queue", "QueueName", "sipline-dev-commands-dlq")
    allowed = {
        json.dumps({"Fn::GetAtt": [queue, "Arn"]}),
        json.dumps({"Fn::GetAtt": [dlq, "Arn"]}),
        json.dumps({"Fn::GetAtt": [password_key(dev, "dev"), "Arn"]}),
        json.dumps(EDGE_PATTERN),
    }
    task_role, _ = task_roles(dev)
    statements = role_statements(dev, task_role)
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = as_list(statement["Action"])
        assert not any(a.endswith("*") for a in actions), actions
        for resource in as_list(statement["Resource"]):
            if resource == "*":
                assert actions == ["ec2:DescribeNetworkInterfaces"]
            else:
                assert json.dumps(resource) in allowed, resource
        if any(a.startswith("kms:") for a in actions):
            assert actions == ["kms:Decrypt"]
    (own_queue,) = [s for s in statements if s["Resource"] == EDGE_PATTERN]
    assert {"sqs:CreateQueue", "sqs:DeleteQueue", "sqs:ReceiveMessage"} <= set(own_queue["Action"])


def test_execution_role_reads_only_the_tasks_secrets(production: dict[str, Any]) -> None:
    webhook = named(
        production, "AWS::SecretsManager::Secret", "Name", "sipline-prod-webhook-secret"
    )
    _, execution_role = task_roles(production)
    reads = []
    for statement in role_statements(production, execution_role):
        actions = as_list(statement["Action"])
        resources_ = as_list(statement["Resource"])
        if "*" in resources_:
            assert actions == ["ecr:GetAuthorizationToken"]
        if any(a.startswith("secretsmanager:") for a in actions):
            reads += resources_
    assert sorted(map(json.dumps, reads)) == sorted(
        map(json.dumps, [{"Ref": webhook}, TLS_SECRET_ARN])
    )


# -- scaling ------------------------------------------------------------------------------------


def test_scales_on_active_calls_per_relay_with_a_cpu_backstop(dev: dict[str, Any]) -> None:
    _, target = only(dev, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["Properties"]["MinCapacity"] == 2
    assert target["Properties"]["MaxCapacity"] == 10
    assert target["Properties"]["ScalableDimension"] == "ecs:service:DesiredCount"
    policies = [
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        for p in resources(dev, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    ]
    (calls,) = [p for p in policies if "CustomizedMetricSpecification" in p]
    metric = calls["CustomizedMetricSpecification"]
    assert metric["Namespace"] == "sipline"
    assert metric["MetricName"] == "ActiveCalls"
    assert sorted(metric["Dimensions"], key=lambda d: d["Name"]) == [
        {"Name": "service", "Value": "sipline-relay"},
        {"Name": "stage", "Value": "dev"},
    ]
    assert metric["Statistic"] == "Average"  # over the tasks: calls per relay
    assert calls["TargetValue"] == 100
    (cpu,) = [p for p in policies if "PredefinedMetricSpecification" in p]
    assert cpu["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
    }
    assert cpu["TargetValue"] == 60
    assert cpu["DisableScaleIn"] is True


def test_prod_passes_cfn_lint_and_checkov(
    production: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    # production's synth ran cdk-nag (a finding fails it); the template's checkers as for dev
    template = tmp_path_factory.getbasetemp() / "cdk.out-prod" / "Sipline-prod.template.json"
    lint = Path(sys.executable).with_name("cfn-lint")
    done = subprocess.run(
        [str(lint), "--ignore-checks", "W3005", "--", str(template)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    results = _checkov(template, "cloudformation")
    assert [(c["check_id"], c["resource"]) for c in results["failed_checks"]] == []
