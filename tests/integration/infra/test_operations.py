"""The alarms, their topic, the dashboard and the tags (the same two stages as test_edge.py).

Expected metrics are the issue's list (API 5xx rate, INVITE decision latency, DLQ depth, relay
call failures, spool backlog) plus the load balancer's target health, with the names the relay
and AWS publish: namespace ``sipline`` with ``service=sipline-relay``, AWS/ApiGateway
``5XXError`` and ``Latency``, AWS/SQS ``ApproximateNumberOfMessagesVisible``, AWS/NetworkELB
``UnHealthyHostCount`` and ``HealthyHostCount``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.infra.stages import ALARM_EMAIL, named, only, prod, resources


@pytest.fixture(scope="module")
def dev(template_json: dict[str, Any]) -> dict[str, Any]:
    return template_json


@pytest.fixture(scope="module")
def production(lambda_package_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return prod(lambda_package_dir, tmp_path_factory.getbasetemp() / "cdk.out-prod")


def alarms(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()]


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


def find(template: dict[str, Any], namespace: str, name: str) -> list[dict[str, Any]]:
    return [a for a in alarms(template) if metric_of(a)[:2] == (namespace, name)]


def test_api_5xx_rate(dev: dict[str, Any]) -> None:
    (alarm,) = find(dev, "AWS/ApiGateway", "5XXError")
    _, _, dims, statistic = metric_of(alarm)
    assert statistic == "Average"  # 5XXError is 0 or 1 per request: its average is the rate
    assert dims["ApiName"] == "sipline-dev-api"
    assert set(dims) == {"ApiName", "Stage"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert 0 < alarm["Threshold"] < 1


def test_invite_decision_latency_is_the_invite_methods_p99(dev: dict[str, Any]) -> None:
    (alarm,) = find(dev, "AWS/ApiGateway", "Latency")
    _, _, dims, statistic = metric_of(alarm)
    assert statistic == "p99"
    assert dims["Resource"] == "/webhooks/sip/invite"  # app.py's INVITE webhook route
    assert dims["Method"] == "POST"
    assert alarm["Threshold"] < 2000  # below the relay's 2 s decision timeout (docs/relay.md)
    _, stage = only(dev, "AWS::ApiGateway::Stage")
    settings = stage["Properties"]["MethodSettings"]
    assert {
        "HttpMethod": "POST",
        "MetricsEnabled": True,
        "ResourcePath": "/~1webhooks~1sip~1invite",
    } in settings
    assert any(s["ResourcePath"] == "/*" for s in settings)  # the control plane's throttling kept


def test_dead_letter_queue_depth_above_zero(dev: dict[str, Any]) -> None:
    (alarm,) = find(dev, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    _, _, dims, _ = metric_of(alarm)
    dlq = named(dev, "AWS::SQS::Queue", "QueueName", "sipline-dev-commands-dlq")
    assert dims == {"QueueName": {"Fn::GetAtt": [dlq, "QueueName"]}}
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


@pytest.mark.parametrize("name", ["CallsFailed", "SpoolBacklog"])
def test_relay_metrics(name: str, dev: dict[str, Any]) -> None:
    (alarm,) = find(dev, "sipline", name)
    _, _, dims, _ = metric_of(alarm)
    assert dims == {"service": "sipline-relay", "stage": "dev"}


def test_unhealthy_relays_on_every_target_group(
    dev: dict[str, Any], production: dict[str, Any]
) -> None:
    for template, groups in ((dev, 1), (production, 2)):
        unhealthy = find(template, "AWS/NetworkELB", "UnHealthyHostCount")
        assert len(unhealthy) == groups
        targets = {json.dumps(metric_of(a)[2]["TargetGroup"]) for a in unhealthy}
        assert len(targets) == groups
        (none_healthy,) = find(template, "AWS/NetworkELB", "HealthyHostCount")
        assert none_healthy["TreatMissingData"] == "breaching"


def test_every_alarm_notifies_the_encrypted_topic(
    dev: dict[str, Any], production: dict[str, Any]
) -> None:
    for template in (dev, production):
        topic_id, topic = only(template, "AWS::SNS::Topic")
        assert "KmsMasterKeyId" in topic["Properties"]
        found = alarms(template)
        assert len(found) >= 7
        for alarm in found:
            assert alarm["AlarmActions"] == [{"Ref": topic_id}]
            assert alarm["OKActions"] == [{"Ref": topic_id}]
    _, subscription = only(production, "AWS::SNS::Subscription")
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == ALARM_EMAIL
    assert resources(dev, "AWS::SNS::Subscription") == {}


def test_one_dashboard_with_active_calls_and_the_alarms(dev: dict[str, Any]) -> None:
    _, dashboard = only(dev, "AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert "ActiveCalls" in body
    for alarm_id in resources(dev, "AWS::CloudWatch::Alarm"):
        if "Api5xx" in alarm_id or "InviteLatency" in alarm_id or "CommandDlq" in alarm_id:
            assert alarm_id in body


def test_resources_are_tagged_with_project_and_stage(production: dict[str, Any]) -> None:
    for kind in (
        "AWS::ECS::Service",
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "AWS::SNS::Topic",
        "AWS::CloudWatch::Alarm",
        "AWS::EC2::VPC",
        "AWS::SQS::Queue",
    ):
        for resource in resources(production, kind).values():
            tags = {tag["Key"]: tag["Value"] for tag in resource["Properties"]["Tags"]}
            assert (tags["project"], tags["stage"]) == ("sipline", "prod"), kind
