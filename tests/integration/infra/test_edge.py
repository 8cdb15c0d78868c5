"""The edge's template: the relays' network, load balancer, task, permissions and scaling.

Synthesized (offline, cdk-nag's AwsSolutions checks on: a finding fails the synth) for two
stages: ``dev`` with the defaults and ``prod`` with TLS, carriers' ranges and retained data.
Expected values come from the deployment contract (docs/deployment.md, "The edge on AWS"):
ports 5060 (UDP+TCP), 5061 (TLS), 8060 (health), the RTP range 20000-20999, a drain of 100 s
with 15 s to spare before the stop timeout, 100 calls per relay, the EMF metric ``ActiveCalls``
of ``service=sipline-relay``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from tests.integration.infra.stand_in import (  # noqa: E402
    DEV,
    PROD,
    TLS_SECRET_ARN,
    Config,
    StandInStack,
    synthesized,
)

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
def dev(tmp_path_factory: pytest.TempPathFactory) -> StandInStack:
    return synthesized(DEV, tmp_path_factory.getbasetemp())[0]


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> StandInStack:
    return synthesized(PROD, tmp_path_factory.getbasetemp())[0]


def template(stack: StandInStack) -> Template:
    return Template.from_stack(stack)


def only(stack: StandInStack, kind: str) -> tuple[str, dict[str, Any]]:
    found = template(stack).find_resources(kind)
    assert len(found) == 1, f"{kind}: {sorted(found)}"
    return next(iter(found.items()))


def logical_id(stack: StandInStack, construct: Any) -> str:
    return str(stack.get_logical_id(construct.node.default_child))


def container(stack: StandInStack) -> dict[str, Any]:
    _, task = only(stack, "AWS::ECS::TaskDefinition")
    (definition,) = task["Properties"]["ContainerDefinitions"]
    return dict(definition)


# -- network ------------------------------------------------------------------------------------


def test_vpc_has_two_public_subnets_and_no_nat(dev: StandInStack) -> None:
    t = template(dev)
    t.resource_count_is("AWS::EC2::Subnet", 2)
    t.resource_count_is("AWS::EC2::NatGateway", 0)
    subnets = t.find_resources("AWS::EC2::Subnet")
    assert all(s["Properties"]["MapPublicIpOnLaunch"] for s in subnets.values())
    zones = {json.dumps(s["Properties"]["AvailabilityZone"]) for s in subnets.values()}
    assert len(zones) == 2
    t.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "REJECT"})


def test_one_elastic_ip_per_zone_on_an_internet_facing_nlb(dev: StandInStack) -> None:
    t = template(dev)
    eips = t.find_resources("AWS::EC2::EIP")
    assert len(eips) == 2
    _, balancer = only(dev, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    props = balancer["Properties"]
    assert props["Type"] == "network"
    assert props["Scheme"] == "internet-facing"
    mappings = props["SubnetMappings"]
    assert sorted(m["AllocationId"]["Fn::GetAtt"][0] for m in mappings) == sorted(eips)
    assert all(m["AllocationId"]["Fn::GetAtt"][1] == "AllocationId" for m in mappings)
    subnets = t.find_resources("AWS::EC2::Subnet")
    assert sorted(m["SubnetId"]["Ref"] for m in mappings) == sorted(subnets)


def test_prod_keeps_its_addresses(prod: StandInStack) -> None:
    eips = template(prod).find_resources("AWS::EC2::EIP")
    assert {e.get("DeletionPolicy") for e in eips.values()} == {"Retain"}


def listeners(stack: StandInStack) -> dict[tuple[int, str], dict[str, Any]]:
    """(port, protocol) -> the target group the listener forwards to."""
    t = template(stack)
    groups = t.find_resources("AWS::ElasticLoadBalancingV2::TargetGroup")
    result = {}
    for listener in t.find_resources("AWS::ElasticLoadBalancingV2::Listener").values():
        props = listener["Properties"]
        (action,) = props["DefaultActions"]
        assert action["Type"] == "forward"
        result[(props["Port"], props["Protocol"])] = groups[action["TargetGroupArn"]["Ref"]]
    return result


def test_sip_listener_udp_and_tcp_on_5060_without_tls(dev: StandInStack) -> None:
    assert set(listeners(dev)) == {(5060, "TCP_UDP")}


def test_tls_listener_on_5061_with_a_tls_secret(prod: StandInStack) -> None:
    assert set(listeners(prod)) == {(5060, "TCP_UDP"), (5061, "TCP")}


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_target_groups_keep_the_client_ip_and_check_health_on_8060(
    stage: str, dev: StandInStack, prod: StandInStack
) -> None:
    stack = dev if stage == "dev" else prod
    for (port, protocol), group in listeners(stack).items():
        props = group["Properties"]
        assert (props["Port"], props["Protocol"]) == (port, protocol)
        assert props["TargetType"] == "ip"
        assert props["HealthCheckProtocol"] == "TCP"
        assert props["HealthCheckPort"] == "8060"
        attributes = {a["Key"]: a["Value"] for a in props["TargetGroupAttributes"]}
        assert attributes["preserve_client_ip.enabled"] == "true"
        assert int(attributes["deregistration_delay.timeout_seconds"]) >= 100


def test_service_registers_the_relay_container_with_each_group(prod: StandInStack) -> None:
    _, service = only(prod, "AWS::ECS::Service")
    registered = {
        (lb["ContainerName"], lb["ContainerPort"], lb["TargetGroupArn"]["Ref"])
        for lb in service["Properties"]["LoadBalancers"]
    }
    groups = {
        port: ref
        for ref, g in template(prod)
        .find_resources("AWS::ElasticLoadBalancingV2::TargetGroup")
        .items()
        for port in [g["Properties"]["Port"]]
    }
    assert registered == {("relay", 5060, groups[5060]), ("relay", 5061, groups[5061])}


def ingress(stack: StandInStack) -> list[dict[str, Any]]:
    _, group = only(stack, "AWS::EC2::SecurityGroup")
    return list(group["Properties"]["SecurityGroupIngress"])


def test_sip_only_from_the_carriers_ranges(prod: StandInStack) -> None:
    sip = {
        (r["IpProtocol"], r["FromPort"], r["ToPort"], r["CidrIp"])
        for r in ingress(prod)
        if r["FromPort"] in (5060, 5061)
    }
    assert sip == {
        (protocol, port, port, cidr)
        for cidr in ("198.51.100.0/24", "203.0.113.0/24")
        for protocol, port in (("udp", 5060), ("tcp", 5060), ("tcp", 5061))
    }


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_rtp_from_anywhere_and_health_from_the_vpc_only(
    stage: str, dev: StandInStack, prod: StandInStack
) -> None:
    stack = dev if stage == "dev" else prod
    rules = ingress(stack)
    rtp = [r for r in rules if r["IpProtocol"] == "udp" and r["FromPort"] != 5060]
    assert [(r["FromPort"], r["ToPort"], r["CidrIp"]) for r in rtp] == [(20000, 20999, "0.0.0.0/0")]
    health = [r for r in rules if r["FromPort"] <= 8060 <= r["ToPort"]]
    assert len(health) == 1
    assert health[0]["IpProtocol"] == "tcp"
    assert health[0]["CidrIp"] == {"Fn::GetAtt": [logical_id(stack, stack.edge.vpc), "CidrBlock"]}
    opened = {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules}
    assert opened <= {
        ("udp", 5060, 5060),
        ("tcp", 5060, 5060),
        ("tcp", 5061, 5061),
        ("udp", 20000, 20999),
        ("tcp", 8060, 8060),
    }


# -- the task -----------------------------------------------------------------------------------


def test_stop_timeout_covers_the_drain(dev: StandInStack) -> None:
    definition = container(dev)
    drain = int(
        next(e["Value"] for e in definition["Environment"] if e["Name"] == "SIPLINE_DRAIN_S")
    )
    assert drain == 100
    assert drain + 15 <= definition["StopTimeout"] <= 120


def test_a_drain_beyond_the_stop_timeout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="drain_seconds=106"):
        from tests.integration.infra.stand_in import synth

        synth(Config(stage="long", drain_seconds=106), tmp_path)


def test_task_runs_read_only_with_a_spool_volume_and_the_image_user(dev: StandInStack) -> None:
    definition = container(dev)
    assert definition["ReadonlyRootFilesystem"] is True
    assert "User" not in definition  # the image's USER 10001 (relay/Dockerfile)
    assert definition["MountPoints"] == [
        {"ContainerPath": "/var/lib/sipline/spool", "ReadOnly": False, "SourceVolume": "spool"}
    ]
    assert definition["HealthCheck"]["Command"] == ["CMD", "python", "-m", "relay.healthcheck"]
    assert definition["LogConfiguration"]["LogDriver"] == "awslogs"
    group = definition["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
    logs = template(dev).find_resources("AWS::Logs::LogGroup")
    assert logs[group]["Properties"]["RetentionInDays"] == 30  # StageConfig's default


def test_environment_is_the_contracts_and_holds_no_secret(dev: StandInStack) -> None:
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
    assert 100 < int(env["SIPLINE_MAX_CALLS"]) <= 150  # above the target, within one relay's reach
    state = dev.node.find_child("State")
    assert env["SIPLINE_COMMAND_QUEUE_URL"] == {"Ref": logical_id(dev, state.command_queue)}
    assert env["SIPLINE_COMMAND_DLQ_URL"] == {"Ref": logical_id(dev, state.command_dlq)}
    assert env["SIPLINE_KMS_KEY_ID"] == {"Fn::GetAtt": [logical_id(dev, state.password_key), "Arn"]}
    secrets = set(template(dev).find_resources("AWS::SecretsManager::Secret"))
    text = json.dumps(env)
    assert not any(secret in text for secret in secrets), "a secret's value or ARN in the env"
    assert "resolve:secretsmanager" not in json.dumps(template(dev).to_json())


def test_secrets_come_from_secrets_manager(dev: StandInStack, prod: StandInStack) -> None:
    webhook = {"Ref": logical_id(dev, dev.node.find_child("State").webhook_secret)}
    assert container(dev)["Secrets"] == [{"Name": "SIPLINE_WEBHOOK_SECRET", "ValueFrom": webhook}]
    secrets = {s["Name"]: s["ValueFrom"] for s in container(prod)["Secrets"]}
    assert secrets["SIPLINE_TLS_CERT_PEM"] == f"{TLS_SECRET_ARN}:cert::"
    assert secrets["SIPLINE_TLS_KEY_PEM"] == f"{TLS_SECRET_ARN}:key::"
    assert set(secrets) == {"SIPLINE_WEBHOOK_SECRET", "SIPLINE_TLS_CERT_PEM", "SIPLINE_TLS_KEY_PEM"}


def test_image_is_built_from_relay_dockerfile_at_the_repository_root(dev: StandInStack) -> None:
    _, outdir = synthesized(DEV, Path())
    assets = json.loads((outdir / f"{dev.stack_name}.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    assert image["source"]["dockerFile"] == "relay/Dockerfile"
    staged = outdir / image["source"]["directory"]
    assert (staged / "relay" / "Dockerfile").is_file()
    assert (staged / "requirements-relay.txt").is_file()
    assert not (staged / "tests").exists()  # .dockerignore keeps the context small
    assert not (staged / ".venv").exists()


def test_service_deploys_without_dropping_capacity(dev: StandInStack) -> None:
    _, service = only(dev, "AWS::ECS::Service")
    props = service["Properties"]
    assert props["LaunchType"] == "FARGATE"
    assert props["DesiredCount"] == 2
    assert props["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "ENABLED"
    deployment = props["DeploymentConfiguration"]
    assert deployment["MinimumHealthyPercent"] == 100
    assert deployment["MaximumPercent"] == 200
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}


def test_container_insights_per_stage(dev: StandInStack, prod: StandInStack) -> None:
    def insights(stack: StandInStack) -> str:
        _, cluster = only(stack, "AWS::ECS::Cluster")
        settings = cluster["Properties"]["ClusterSettings"]
        return str(next(s["Value"] for s in settings if s["Name"] == "containerInsights"))

    assert insights(prod) == "enabled"
    assert insights(dev) == "disabled"


# -- permissions --------------------------------------------------------------------------------


def role_statements(stack: StandInStack, role: Any) -> list[dict[str, Any]]:
    role_id = stack.get_logical_id(role.node.default_child)
    statements = []
    for policy in template(stack).find_resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    assert statements
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_task_role_names_only_the_stacks_queues_and_key(dev: StandInStack) -> None:
    state = dev.node.find_child("State")
    allowed = {
        json.dumps({"Fn::GetAtt": [logical_id(dev, state.command_queue), "Arn"]}),
        json.dumps({"Fn::GetAtt": [logical_id(dev, state.command_dlq), "Arn"]}),
        json.dumps({"Fn::GetAtt": [logical_id(dev, state.password_key), "Arn"]}),
        json.dumps(dev.resolve(state.edge_queue_arn_pattern)),
    }
    task_role = dev.edge.service.task_definition.task_role
    for statement in role_statements(dev, task_role):
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
    pattern = dev.resolve(state.edge_queue_arn_pattern)
    own_queue = [s for s in role_statements(dev, task_role) if s["Resource"] == pattern]
    assert {"sqs:CreateQueue", "sqs:DeleteQueue", "sqs:ReceiveMessage"} <= set(
        own_queue[0]["Action"]
    )
    assert json.dumps(pattern).endswith('sipline-dev-edge-*"]]}')


def test_execution_role_reads_only_the_tasks_secrets(prod: StandInStack) -> None:
    webhook = {"Ref": logical_id(prod, prod.node.find_child("State").webhook_secret)}
    execution_role = prod.edge.service.task_definition.execution_role
    for statement in role_statements(prod, execution_role):
        actions = as_list(statement["Action"])
        resources = as_list(statement["Resource"])
        if "*" in resources:
            assert actions == ["ecr:GetAuthorizationToken"]
        if any(a.startswith("secretsmanager:") for a in actions):
            assert resources in ([webhook], [TLS_SECRET_ARN])


# -- scaling ------------------------------------------------------------------------------------


def test_scales_on_active_calls_per_relay_with_a_cpu_backstop(dev: StandInStack) -> None:
    t = template(dev)
    t.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {"MinCapacity": 2, "MaxCapacity": 10, "ScalableDimension": "ecs:service:DesiredCount"},
    )
    t.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "CustomizedMetricSpecification": {
                    "Namespace": "sipline",
                    "MetricName": "ActiveCalls",
                    "Dimensions": Match.array_equals(
                        [
                            {"Name": "service", "Value": "sipline-relay"},
                            {"Name": "stage", "Value": "dev"},
                        ]
                    ),
                    "Statistic": "Average",
                },
                "TargetValue": 100,
            },
        },
    )
    t.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "TargetTrackingScalingPolicyConfiguration": {
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
                },
                "TargetValue": 60,
                "DisableScaleIn": True,
            }
        },
    )


def test_cdk_nag_found_nothing(dev: StandInStack, prod: StandInStack) -> None:
    for config in (DEV, PROD):
        _, outdir = synthesized(config, Path())
        report = json.loads((outdir / "validation-report.json").read_text())
        assert report["pluginReports"] == []


def test_edge_exposes_what_the_stack_and_operations_use(dev: StandInStack) -> None:
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_ecs as ecs
    from aws_cdk import aws_elasticloadbalancingv2 as elbv2

    edge = dev.edge
    assert isinstance(edge.vpc, ec2.Vpc)
    assert isinstance(edge.cluster, ecs.Cluster)
    assert isinstance(edge.service, ecs.FargateService)
    assert isinstance(edge.load_balancer, elbv2.NetworkLoadBalancer)
    assert len(edge.addresses) == 2
    assert all(isinstance(address, ec2.CfnEIP) for address in edge.addresses)
    balancer = logical_id(dev, edge.load_balancer)
    assert dev.resolve(edge.sip_host) == {"Fn::GetAtt": [balancer, "DNSName"]}
