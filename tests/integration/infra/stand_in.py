"""A stack with stand-ins for part A's State and ControlPlane, until A's stack is merged.

The stand-ins are real CDK resources with the contract's attribute names (a TableV2, two queues,
two secrets, a KMS key, a REST API and its URL), so Edge and Operations synth as they will in
SiplineStack and the template can be asserted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "infra"))

from sipline_infra.edge import Edge  # noqa: E402
from sipline_infra.operations import Operations  # noqa: E402

TLS_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sipline-tls-AbCdEf"


@dataclass(frozen=True)
class Config:
    """The fields of the contract's StageConfig that Edge and Operations read."""

    stage: str = "dev"
    removal_retain: bool = False
    rtp_port_range: tuple[int, int] = (20000, 20999)
    relay_cpu: int = 1024
    relay_memory: int = 2048
    min_relays: int = 2
    max_relays: int = 10
    target_calls_per_relay: int = 100
    drain_seconds: int = 100
    tls_secret_arn: str | None = None
    carrier_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    alarm_email: str | None = None
    sip_domain: str | None = None
    log_retention_days: int = 30
    extra: dict[str, Any] = field(default_factory=dict)

    def name(self, suffix: str) -> str:
        return f"sipline-{self.stage}-{suffix}"


class State(Construct):
    def __init__(self, scope: Construct, construct_id: str, config: Config) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
        )
        self.password_key = kms.Key(self, "PasswordKey", enable_key_rotation=True)
        self.command_dlq = sqs.Queue(
            self,
            "CommandDlq",
            queue_name=config.name("commands-dlq"),
            retention_period=cdk.Duration.days(14),
            enforce_ssl=True,
        )
        self.command_queue = sqs.Queue(
            self,
            "CommandQueue",
            queue_name=config.name("commands"),
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=5, queue=self.command_dlq),
        )
        self.edge_queue_prefix = config.name("edge-")
        stack = cdk.Stack.of(self)
        self.edge_queue_arn_pattern = stack.format_arn(
            service="sqs", resource=f"{self.edge_queue_prefix}*"
        )
        self.webhook_secret = secretsmanager.Secret(self, "WebhookSecret")
        self.api_keys_secret = secretsmanager.Secret(self, "ApiKeys")
        for secret in (self.webhook_secret, self.api_keys_secret):
            cdk.Validations.of(secret).acknowledge(
                cdk.Acknowledgment(id="AwsSolutions-SMG4", reason="stand-in")
            )
        cdk.Validations.of(self.command_dlq).acknowledge(
            cdk.Acknowledgment(id="AwsSolutions-SQS3", reason="stand-in: it is the DLQ")
        )


class ControlPlane(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        swagger = {
            "openapi": "3.0.1",
            "info": {"title": "sipline", "version": "1"},
            "paths": {
                "/webhooks/sip/invite": {
                    "post": {
                        "x-amazon-apigateway-integration": {
                            "type": "mock",
                            "requestTemplates": {"application/json": '{"statusCode": 200}'},
                            "responses": {"default": {"statusCode": "200"}},
                        },
                        "responses": {"200": {"description": "ok"}},
                    }
                }
            },
        }
        self.api = apigateway.SpecRestApi(
            self,
            "Api",
            api_definition=apigateway.ApiDefinition.from_inline(swagger),
            deploy_options=apigateway.StageOptions(stage_name="api"),
            cloud_watch_role=False,
        )
        self.api_url: str = self.api.url
        for rule in ("APIG1", "APIG2", "APIG3", "APIG4", "APIG6", "COG4"):
            cdk.Validations.of(self.api).acknowledge(
                cdk.Acknowledgment(id=f"AwsSolutions-{rule}", reason="stand-in")
            )


class StandInStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, config: Config) -> None:
        super().__init__(scope, construct_id)
        state = State(self, "State", config)
        control_plane = ControlPlane(self, "ControlPlane")
        self.edge = Edge(self, "Edge", config=config, state=state, control_plane=control_plane)
        Operations(
            self,
            "Operations",
            config=config,
            state=state,
            control_plane=control_plane,
            edge=self.edge,
        )


def synth(config: Config, outdir: Path) -> tuple[cdk.App, StandInStack]:
    """Synthesize the stand-in stack with cdk-nag on (findings fail the synth)."""
    app = cdk.App(outdir=str(outdir))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    stack = StandInStack(app, f"StandIn-{config.stage}", config)
    app.synth()
    return app, stack


DEV = Config()
"""The default stage: no TLS, SIP from anywhere, no alarm email."""
PROD = Config(
    stage="prod",
    removal_retain=True,
    max_relays=20,
    tls_secret_arn=TLS_SECRET_ARN,
    carrier_cidrs=("198.51.100.0/24", "203.0.113.0/24"),
    alarm_email="ops@example.com",
)
"""A stage with everything on: TLS, carriers' ranges, an alarm email, retained data."""

_SYNTHS: dict[str, tuple[cdk.App, StandInStack, Path]] = {}


def synthesized(config: Config, tmp_root: Path) -> tuple[StandInStack, Path]:
    """The stand-in stack of ``config``, synthesized once per test session."""
    if config.stage not in _SYNTHS:
        outdir = tmp_root / f"cdk.out-{config.stage}"
        app, stack = synth(config, outdir)
        _SYNTHS[config.stage] = (app, stack, outdir)
    _, stack, outdir = _SYNTHS[config.stage]
    return stack, outdir
