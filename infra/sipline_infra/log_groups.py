"""Log groups the stack creates, with the stage's retention.

CDK's ``RetentionDays`` is an enum, while the stage gives a number of days
(``StageConfig.log_retention_days``, already checked against what CloudWatch accepts), so the
retention is set on the CloudFormation resource. The groups are deleted with the stack (logs are
not the state sipline keeps). No secret reaches a log line (docs/security.md).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_logs as logs
from constructs import Construct

from sipline_infra.checks import skip_checkov

LOGS_CHECKOV_SKIP = (
    "CKV_AWS_158",
    "CloudWatch Logs encrypts every log group at rest; no secret reaches a log line"
    " (docs/security.md), so a customer key would protect nothing more.",
)


def retained_log_group(
    scope: Construct, construct_id: str, days: int, name: str | None
) -> logs.LogGroup:
    """A log group keeping its events `days` days (0: forever)."""
    group = logs.LogGroup(
        scope,
        construct_id,
        log_group_name=name,
        retention=logs.RetentionDays.INFINITE,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    cfn = group.node.default_child
    assert isinstance(cfn, logs.CfnLogGroup)
    cfn.retention_in_days = days or None  # StageConfig checked it is one CloudWatch accepts
    skip_checkov(group, *LOGS_CHECKOV_SKIP)
    return group
