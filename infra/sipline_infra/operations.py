"""Operations: the alarms that page, one dashboard, the stack's tags.

Every alarm notifies one SNS topic (encrypted with its own KMS key, which CloudWatch may use;
an email subscription when ``config.alarm_email`` is set) when it fires and when it clears.
Missing data is "not breaching" except where silence itself is the failure (no healthy relay).

=====================  =============================================  ==========================
alarm                  metric                                         fires when
=====================  =============================================  ==========================
Api5xxRate             API Gateway ``5XXError`` (Average = the share  > 5 % in 2 of 3 5-min
                       of requests answered 5xx)                      periods
InviteLatency          API Gateway ``Latency`` of                     p99 > 1 s in 2 of 3 5-min
                       ``POST /webhooks/sip/invite``                  periods
CommandDlqDepth        the command DLQ's visible messages             any, for 5 min
RelayCallsFailed       relays' ``CallsFailed`` (Sum)                  >= 3 in 5 min
RelaySpoolBacklog      relays' ``SpoolBacklog`` (Maximum)             > 0 for 15 min
<Group>Unhealthy       the NLB target group's ``UnHealthyHostCount``  >= 1 for 3 min
NoHealthyRelay         SIP target group's ``HealthyHostCount``        < 1 for 2 min (missing
                                                                      data breaches)
=====================  =============================================  ==========================

INVITE decision latency: API Gateway's ``Latency`` of the INVITE webhook's method, not the
function's ``Duration``. ``Latency`` is what the relay waits for (request in to response out:
the Lambda's init on a cold start, throttling, the integration), and it is the INVITE route's
alone; ``Duration`` excludes init time, which is the slow case, and mixes every route of the one
function (heartbeats, event batches, the REST API). It needs method-level metrics, which this
construct enables for that one method on the API's stage (7 metrics, about 2 USD a month, not
the whole API's). The relay gives up on a decision after ``SIPLINE_DECISION_TIMEOUT_S`` (4 s by
default, docs/relay.md), so a p99 above 1 s is a quarter of the way to dropped calls, and well past a good caller experience.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from sipline_infra.relay_task import relay_metric

if TYPE_CHECKING:
    from sipline_infra.config import StageConfig
    from sipline_infra.control_plane import ControlPlane
    from sipline_infra.edge import Edge
    from sipline_infra.state import State

INVITE_RESOURCE = "/webhooks/sip/invite"
INVITE_METHOD = "POST"
API_5XX_RATE = 0.05
INVITE_P99_MS = 1000
CALLS_FAILED_PER_5_MIN = 3
SPOOL_BACKLOG_MINUTES = 15
UNHEALTHY_MINUTES = 3

FIVE_MINUTES = cdk.Duration.minutes(5)
ONE_MINUTE = cdk.Duration.minutes(1)


class Operations(Construct):
    """Alarms on the control plane, the queues and the relays; one dashboard; tags."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        state: State,
        control_plane: ControlPlane,
        edge: Edge,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        cdk.Tags.of(stack).add("project", "sipline")
        cdk.Tags.of(stack).add("stage", config.stage)
        self.topic = self._topic(config)
        api = control_plane.api
        _enable_method_metrics(api)
        stage_name = api.deployment_stage.stage_name
        api_dimensions = {"ApiName": api.rest_api_name, "Stage": stage_name}
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        api_5xx = cloudwatch.Metric(
            namespace="AWS/ApiGateway",
            metric_name="5XXError",
            dimensions_map=api_dimensions,
            statistic="Average",
            period=FIVE_MINUTES,
            label="API 5xx rate",
        )
        self._alarm(
            "Api5xxRate", api_5xx, API_5XX_RATE, ">", 3, 2, "share of API requests answered 5xx"
        )
        invite_latency = cloudwatch.Metric(
            namespace="AWS/ApiGateway",
            metric_name="Latency",
            dimensions_map={
                **api_dimensions,
                "Resource": INVITE_RESOURCE,
                "Method": INVITE_METHOD,
            },
            statistic="p99",
            period=FIVE_MINUTES,
            label="INVITE decision p99 (ms)",
        )
        self._alarm(
            "InviteLatency",
            invite_latency,
            INVITE_P99_MS,
            ">",
            3,
            2,
            "p99 of the INVITE decision (the relay gives up at 4 s)",
        )
        dlq_depth = state.command_dlq.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=FIVE_MINUTES, label="command DLQ depth"
        )
        self._alarm("CommandDlqDepth", dlq_depth, 0, ">", 1, 1, "commands set aside as poison")
        calls_failed = relay_metric(config.stage, "CallsFailed", "Sum", 300)
        self._alarm(
            "RelayCallsFailed",
            calls_failed,
            CALLS_FAILED_PER_5_MIN,
            ">=",
            1,
            1,
            "calls ended by a system or relay error",
        )
        backlog = relay_metric(config.stage, "SpoolBacklog", "Maximum", 300)
        self._alarm(
            "RelaySpoolBacklog",
            backlog,
            0,
            ">",
            SPOOL_BACKLOG_MINUTES // 5,
            SPOOL_BACKLOG_MINUTES // 5,
            "events the relays could not deliver to the control plane",
        )
        health: list[cloudwatch.IMetric] = []
        for group in edge.target_groups:
            name = group.node.id.removesuffix("Targets")
            unhealthy = group.metrics.un_healthy_host_count(statistic="Maximum", period=ONE_MINUTE)
            health.append(unhealthy)
            self._alarm(
                f"{name}Unhealthy",
                unhealthy,
                1,
                ">=",
                UNHEALTHY_MINUTES,
                UNHEALTHY_MINUTES,
                f"relays failing the {name} target group's health check",
            )
        healthy = edge.target_groups[0].metrics.healthy_host_count(
            statistic="Minimum", period=ONE_MINUTE
        )
        health.append(healthy)
        self._alarm(
            "NoHealthyRelay",
            healthy,
            1,
            "<",
            2,
            2,
            "no relay takes calls",
            missing=cloudwatch.TreatMissingData.BREACHING,
        )
        self.dashboard = self._dashboard(config, health)

    def _topic(self, config: StageConfig) -> sns.Topic:
        key = kms.Key(
            self,
            "AlarmKey",
            description=f"{config.name('alarms')}: CloudWatch alarms to SNS",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        key.grant(
            iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*"
        )
        topic = sns.Topic(
            self, "Alarms", topic_name=config.name("alarms"), master_key=key, enforce_ssl=True
        )
        if config.alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        return topic

    def _alarm(
        self,
        name: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison: str,
        periods: int,
        datapoints: int,
        what: str,
        *,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> cloudwatch.Alarm:
        operators = {
            ">": cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            ">=": cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            "<": cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        }
        stack_name = cdk.Stack.of(self).stack_name
        alarm = cloudwatch.Alarm(
            self,
            name,
            alarm_name=f"{stack_name}-{name}",
            alarm_description=f"{what} ({comparison} {threshold})",
            metric=metric,
            threshold=threshold,
            comparison_operator=operators[comparison],
            evaluation_periods=periods,
            datapoints_to_alarm=datapoints,
            treat_missing_data=missing,
        )
        action = cloudwatch_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms[name] = alarm
        return alarm

    def _dashboard(
        self, config: StageConfig, health: list[cloudwatch.IMetric]
    ) -> cloudwatch.Dashboard:
        stage = config.stage
        dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=config.name("operations")
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Active calls",
                left=[
                    relay_metric(stage, "ActiveCalls", "Sum").with_(label="all relays"),
                    relay_metric(stage, "ActiveCalls", "Average").with_(label="per relay"),
                    relay_metric(stage, "ActiveCalls", "Maximum").with_(label="busiest relay"),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Relay trouble",
                left=[
                    relay_metric(stage, "CallsFailed", "Sum").with_(label="calls failed"),
                    relay_metric(stage, "InvitesRefused", "Sum").with_(
                        label="INVITEs refused (503)"
                    ),
                    relay_metric(stage, "SpoolBacklog", "Maximum").with_(label="spool backlog"),
                ],
                width=12,
            ),
        )
        dashboard.add_widgets(
            *(
                cloudwatch.AlarmWidget(title=alarm.node.id, alarm=alarm, width=6)
                for alarm in self.alarms.values()
                if alarm.node.id in ("Api5xxRate", "InviteLatency", "CommandDlqDepth")
            ),
            cloudwatch.GraphWidget(title="NLB targets", left=health, width=6),
        )
        return dashboard


def _enable_method_metrics(api: apigateway.RestApiBase) -> None:
    """Turn on CloudWatch metrics for the INVITE webhook's method only (see the module docstring).

    Appends to the stage's method settings, keeping whatever the control plane set there.
    """
    stage: apigateway.Stage = api.deployment_stage
    cfn_stage = stage.node.default_child
    assert isinstance(cfn_stage, apigateway.CfnStage)
    existing = cfn_stage.method_settings or []
    assert isinstance(existing, list), "the stage's method settings are not a plain list"
    existing = list(existing)
    path = "/" + INVITE_RESOURCE.replace("/", "~1")  # API Gateway's escaping of a resource path
    existing.append(
        apigateway.CfnStage.MethodSettingProperty(
            resource_path=path, http_method=INVITE_METHOD, metrics_enabled=True
        )
    )
    cfn_stage.method_settings = existing
