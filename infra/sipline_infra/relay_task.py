"""The relay's Fargate task: its image, environment, secrets, spool volume, roles and metrics.

One relay process per task (``python -m relay``, ``relay/Dockerfile``), configured only by
environment variables (docs/relay.md, "Configuration"; on AWS: docs/deployment.md, "The relay
as a container"):

- ``SIPLINE_PUBLIC_ADDRESS=ecs`` and ``SIPLINE_EDGE_ID=ecs``: the relay reads its task's ENI
  (public IPv4) and task id at start from the task metadata and ``ec2:DescribeNetworkInterfaces``;
- ``SIPLINE_HEALTH_PORT``: open while the relay takes calls, closed while starting and draining
  (the load balancer's TCP health check); ``SIPLINE_DRAIN_S``: after SIGTERM, new INVITEs get 503
  while calls continue this long, then the rest get BYE; the container's stop timeout covers it;
- ``SIPLINE_METRICS=emf``: one CloudWatch EMF line a minute on stdout (``ActiveCalls``,
  ``CallsFailed``, ``SpoolBacklog``, ``InvitesRefused``), read from the awslogs stream;
- secrets never sit in the environment of the task definition: ECS injects the webhook secret and
  the TLS certificate and key (JSON keys ``cert`` and ``key`` of ``tls_secret_arn``) from Secrets
  Manager when the container starts, with the execution role.

The root filesystem is read-only; the spool (and the TLS files the relay writes from the PEM
variables) live on a task volume at the image's ``SIPLINE_SPOOL_DIR``. The container runs as the
image's user (10001).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from sipline_infra.log_groups import retained_log_group

if TYPE_CHECKING:
    from sipline_infra.config import StageConfig
    from sipline_infra.control_plane import ControlPlane
    from sipline_infra.state import State

REPOSITORY = Path(__file__).resolve().parents[2]
"""The image's build context: the repository root (``.dockerignore`` keeps only what it needs)."""
DOCKERFILE = "relay/Dockerfile"

CONTAINER = "relay"
SIP_PORT = 5060
TLS_PORT = 5061
HEALTH_PORT = 8060
SPOOL_DIR = "/var/lib/sipline/spool"
"""The image's ``SIPLINE_SPOOL_DIR``; the task volume is mounted there."""
STOP_TIMEOUT_S = 120
"""Fargate's maximum: SIGTERM to SIGKILL. At least the drain plus 15 s (checked at synth)."""
STOP_MARGIN_S = 15
"""What the relay needs after the drain deadline: the BYEs, their answers, the last events."""
RELAY_CALLS_MEASURED = 120
"""The call cap's ceiling for one relay process (one vCPU). bench/README.md measured 100
concurrent G.711 calls bridged without loss (about 70 % of a core) and audio lost at 150 (a full
core); 120 sits between, about 80 % of a core at the measured cost per call.
``SIPLINE_MAX_CALLS`` is twice ``target_calls_per_relay`` (room for a burst while the service
scales out) but never above this: beyond it calls would degrade, not be refused."""

METRIC_NAMESPACE = "sipline"
RELAY_SERVICE = "sipline-relay"
"""The relay's EMF ``service`` dimension (docs/relay.md)."""


def relay_metric(stage: str, name: str, statistic: str, period_s: int = 60) -> cloudwatch.Metric:
    """One of the relays' EMF metrics (``ActiveCalls``, ``CallsFailed``, ``SpoolBacklog``,
    ``InvitesRefused``), aggregated over every task of ``stage``."""
    return cloudwatch.Metric(
        namespace=METRIC_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": RELAY_SERVICE, "stage": stage},
        statistic=statistic,
        period=cdk.Duration.seconds(period_s),
    )


def task_definition(
    scope: Construct,
    *,
    config: StageConfig,
    state: State,
    control_plane: ControlPlane,
) -> ecs.FargateTaskDefinition:
    """The relay's task definition, in ``scope`` (see the module docstring)."""
    tls = config.tls_secret_arn is not None
    task = ecs.FargateTaskDefinition(
        scope,
        "Task",
        family=config.name("relay"),
        cpu=config.relay_cpu,
        memory_limit_mib=config.relay_memory,
        runtime_platform=ecs.RuntimePlatform(
            cpu_architecture=ecs.CpuArchitecture.X86_64,
            operating_system_family=ecs.OperatingSystemFamily.LINUX,
        ),
        volumes=[ecs.Volume(name="spool")],
    )
    _grant_task_role(task.task_role, state)
    log_group = retained_log_group(scope, "Logs", config.log_retention_days, None)
    low, high = config.rtp_port_range
    environment = {
        "SIPLINE_SIP_HOST": "0.0.0.0",
        "SIPLINE_PUBLIC_ADDRESS": "ecs",
        "SIPLINE_EDGE_ID": "ecs",
        "SIPLINE_HEALTH_PORT": str(HEALTH_PORT),
        "SIPLINE_DRAIN_S": str(config.drain_seconds),
        "SIPLINE_MAX_CALLS": str(min(2 * config.target_calls_per_relay, RELAY_CALLS_MEASURED)),
        "SIPLINE_METRICS": "emf",
        "SIPLINE_STAGE": config.stage,
        "SIPLINE_CONTROL_URL": control_plane.api_url,
        "SIPLINE_COMMAND_QUEUE_URL": state.command_queue.queue_url,
        "SIPLINE_COMMAND_DLQ_URL": state.command_dlq.queue_url,
        "SIPLINE_EDGE_QUEUE_PREFIX": state.edge_queue_prefix,
        "SIPLINE_KMS_KEY_ID": state.password_key.key_arn,
        "SIPLINE_RTP_PORTS": f"{low}-{high}",
        "SIPLINE_SPOOL_DIR": SPOOL_DIR,
    }
    secrets = {"SIPLINE_WEBHOOK_SECRET": ecs.Secret.from_secrets_manager(state.webhook_secret)}
    if config.tls_secret_arn is not None:
        certificate = secretsmanager.Secret.from_secret_complete_arn(
            scope, "TlsCertificate", config.tls_secret_arn
        )
        secrets["SIPLINE_TLS_CERT_PEM"] = ecs.Secret.from_secrets_manager(certificate, "cert")
        secrets["SIPLINE_TLS_KEY_PEM"] = ecs.Secret.from_secrets_manager(certificate, "key")
    ports = [
        ecs.PortMapping(container_port=SIP_PORT, protocol=ecs.Protocol.UDP),
        ecs.PortMapping(container_port=SIP_PORT, protocol=ecs.Protocol.TCP),
        ecs.PortMapping(container_port=HEALTH_PORT, protocol=ecs.Protocol.TCP),
    ]
    if tls:
        ports.append(ecs.PortMapping(container_port=TLS_PORT, protocol=ecs.Protocol.TCP))
    container = task.add_container(
        CONTAINER,
        container_name=CONTAINER,
        image=ecs.ContainerImage.from_asset(
            str(REPOSITORY), file=DOCKERFILE, platform=ecr_assets.Platform.LINUX_AMD64
        ),
        essential=True,
        readonly_root_filesystem=True,
        environment=environment,
        secrets=secrets,
        port_mappings=ports,
        health_check=ecs.HealthCheck(
            command=["CMD", "python", "-m", "relay.healthcheck"],
            interval=cdk.Duration.seconds(10),
            timeout=cdk.Duration.seconds(5),
            retries=3,
            start_period=cdk.Duration.seconds(15),
        ),
        logging=ecs.LogDrivers.aws_logs(stream_prefix="relay", log_group=log_group),
        stop_timeout=cdk.Duration.seconds(STOP_TIMEOUT_S),
    )
    container.add_mount_points(
        ecs.MountPoint(container_path=SPOOL_DIR, source_volume="spool", read_only=False)
    )
    cdk.Validations.of(task).acknowledge(
        cdk.Acknowledgment(
            id="AwsSolutions-ECS2",
            reason="The environment holds only names, URLs, ARNs and settings; the webhook "
            "secret and the TLS key come from Secrets Manager through the task's secrets",
        )
    )
    cdk.Validations.of(task.obtain_execution_role()).acknowledge(
        cdk.Acknowledgment(
            id="AwsSolutions-IAM5[Resource::*]",
            reason="ecr:GetAuthorizationToken (pulling the image) supports no resource-level "
            "permissions; the rest of the execution role names the repository, the log "
            "group and the secrets",
        )
    )
    return task


def _grant_task_role(role: iam.IRole, state: State) -> None:
    """Only what the relay calls (docs/deployment.md, "The relay as a container")."""
    state.command_queue.grant_consume_messages(role)
    state.command_queue.grant_send_messages(role)  # passing a command on re-sends it
    state.command_dlq.grant_send_messages(role)  # setting a poison command aside
    state.password_key.grant_decrypt(role)  # outgoing calls' trunk passwords
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="OwnCommandQueue",
            actions=[
                "sqs:CreateQueue",
                "sqs:TagQueue",
                "sqs:GetQueueUrl",
                "sqs:GetQueueAttributes",
                "sqs:SetQueueAttributes",
                "sqs:DeleteQueue",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
            ],
            resources=[state.edge_queue_arn_pattern],
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="OwnPublicAddress",
            actions=["ec2:DescribeNetworkInterfaces"],
            resources=["*"],
        )
    )
    pattern = _nag_text(cdk.Stack.of(role).resolve(state.edge_queue_arn_pattern))
    cdk.Validations.of(role).acknowledge(
        cdk.Acknowledgment(
            id="AwsSolutions-IAM5[Resource::*]",
            reason="ec2:DescribeNetworkInterfaces supports no resource-level permissions; "
            "the relay reads its own ENI's public IP with it",
        ),
        cdk.Acknowledgment(
            id=f"AwsSolutions-IAM5[Resource::{pattern}]",
            reason="Each relay makes, consumes and deletes its own command queue, named by "
            "its task id under the stage's prefix (sipline-<stage>-edge-*), unknown at "
            "deploy time",
        ),
    )


def _nag_text(value: object) -> str:
    """``value`` (a resolved CloudFormation value) as cdk-nag writes it in a finding's id."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            return f"<{argument}>"
        if function == "Fn::GetAtt":
            return f"<{argument[0]}.{argument[1]}>"
        if function == "Fn::Join":
            separator, parts = argument
            return str(separator).join(_nag_text(part) for part in parts)
    raise ValueError(f"cannot render {value!r} as cdk-nag does")
