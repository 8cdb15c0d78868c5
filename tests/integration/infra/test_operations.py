"""The alarms, their topic, the dashboard and the tags (the same two synthesized stages as
test_edge.py). Expected metrics are the issue's list (API 5xx rate, INVITE decision latency, DLQ
depth, relay call failures, spool backlog) plus the load balancer's target health, with the
names the relay and AWS publish: namespace ``sipline``, ``service=sipline-relay``, AWS/ApiGateway
``5XXError`` and ``Latency``, AWS/SQS ``ApproximateNumberOfMessagesVisible``, AWS/NetworkELB
``UnHealthyHostCount`` and ``HealthyHostCount``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from aws_cdk.assertions import Template

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from tests.integration.infra.stand_in import DEV, PROD, StandInStack, synthesized  # noqa: E402


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> StandInStack:
    return synthesized(DEV, tmp_path_factory.getbasetemp())[0]


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> StandInStack:
    return synthesized(PROD, tmp_path_factory.getbasetemp())[0]


def alarms(stack: StandInStack) -> list[dict[str, Any]]:
    return [
        a["Properties"]
        for a in Template.from_stack(stack).find_resources("AWS::CloudWatch::Alarm").values()
    ]


def metric_of(alarm: dict[str, Any]) -> tuple[str, str, dict[str, Any], str]:
    """(namespace, name, dimensions, statistic) of a single-metric alarm, in either form."""
    if "Metrics" in alarm:
        (query,) = alarm["Metrics"]
        stat = query["MetricStat"]
        metric = stat["Metric"]
        dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        return metric["Namespace"], metric["MetricName"], dims, stat["Stat"]
    dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    statistic = alarm.get("Statistic") or alarm["ExtendedStatistic"]
    return alarm["Namespace"], alarm["MetricName"], dims, statistic


def find(stack: StandInStack, namespace: str, name: str) -> list[dict[str, Any]]:
    return [a for a in alarms(stack) if metric_of(a)[:2] == (namespace, name)]


def test_api_5xx_rate(dev: StandInStack) -> None:
    (alarm,) = find(dev, "AWS/ApiGateway", "5XXError")
    _, _, dims, statistic = metric_of(alarm)
    assert statistic == "Average"  # 5XXError is 0 or 1 per request: its average is the rate
    assert set(dims) == {"ApiName", "Stage"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert 0 < alarm["Threshold"] < 1


def test_invite_decision_latency_is_the_invite_methods_p99(dev: StandInStack) -> None:
    (alarm,) = find(dev, "AWS/ApiGateway", "Latency")
    _, _, dims, statistic = metric_of(alarm)
    assert statistic == "p99"
    assert dims["Resource"] == "/webhooks/sip/invite"  # app.py's INVITE webhook route
    assert dims["Method"] == "POST"
    assert alarm["Threshold"] < 2000  # below the relay's 2 s decision timeout (docs/relay.md)
    stage = Template.from_stack(dev).find_resources("AWS::ApiGateway::Stage")
    (settings,) = [s["Properties"]["MethodSettings"] for s in stage.values()]
    assert {
        "HttpMethod": "POST",
        "MetricsEnabled": True,
        "ResourcePath": "/~1webhooks~1sip~1invite",
    } in settings


def test_dead_letter_queue_depth_above_zero(dev: StandInStack) -> None:
    (alarm,) = find(dev, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    _, _, dims, _ = metric_of(alarm)
    dlq = dev.get_logical_id(dev.node.find_child("State").command_dlq.node.default_child)
    assert dims == {"QueueName": {"Fn::GetAtt": [dlq, "QueueName"]}}
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


@pytest.mark.parametrize("name", ["CallsFailed", "SpoolBacklog"])
def test_relay_metrics(name: str, dev: StandInStack) -> None:
    (alarm,) = find(dev, "sipline", name)
    _, _, dims, _ = metric_of(alarm)
    assert dims == {"service": "sipline-relay", "stage": "dev"}


def test_unhealthy_relays_on_every_target_group(dev: StandInStack, prod: StandInStack) -> None:
    for stack, groups in ((dev, 1), (prod, 2)):
        unhealthy = find(stack, "AWS/NetworkELB", "UnHealthyHostCount")
        assert len(unhealthy) == groups
        targets = {json.dumps(metric_of(a)[2]["TargetGroup"]) for a in unhealthy}
        assert len(targets) == groups
        (none_healthy,) = find(stack, "AWS/NetworkELB", "HealthyHostCount")
        assert none_healthy["TreatMissingData"] == "breaching"


def test_every_alarm_notifies_the_encrypted_topic(dev: StandInStack, prod: StandInStack) -> None:
    for stack in (dev, prod):
        t = Template.from_stack(stack)
        (topic_id,) = t.find_resources("AWS::SNS::Topic")
        (topic,) = t.find_resources("AWS::SNS::Topic").values()
        assert "KmsMasterKeyId" in topic["Properties"]
        found = alarms(stack)
        assert len(found) >= 7
        for alarm in found:
            assert alarm["AlarmActions"] == [{"Ref": topic_id}]
            assert alarm["OKActions"] == [{"Ref": topic_id}]
    Template.from_stack(prod).has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )
    Template.from_stack(dev).resource_count_is("AWS::SNS::Subscription", 0)


def test_one_dashboard_with_active_calls_and_the_alarms(dev: StandInStack) -> None:
    t = Template.from_stack(dev)
    (dashboard,) = t.find_resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert "ActiveCalls" in body
    for alarm_id in t.find_resources("AWS::CloudWatch::Alarm"):
        if "Api5xx" in alarm_id or "InviteLatency" in alarm_id or "CommandDlq" in alarm_id:
            assert alarm_id in body


def test_resources_are_tagged_with_project_and_stage(prod: StandInStack) -> None:
    t = Template.from_stack(prod)
    for kind in (
        "AWS::ECS::Service",
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "AWS::SNS::Topic",
        "AWS::CloudWatch::Alarm",
        "AWS::EC2::VPC",
    ):
        for resource in t.find_resources(kind).values():
            tags = {tag["Key"]: tag["Value"] for tag in resource["Properties"]["Tags"]}
            assert (tags["project"], tags["stage"]) == ("sipline", "prod"), kind
