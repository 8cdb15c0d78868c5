"""The control plane: the Chalice app's two handlers as plain Lambda functions behind API Gateway.

**Why ``lambda.Function`` from Chalice's package, not ``chalice.cdk.Chalice``.** The construct
embeds ``chalice package``'s SAM template, so the functions, roles and API are
``AWS::Serverless::*`` resources expanded by CloudFormation's SAM transform at deploy time. That
hides them from every check run at synth: cdk-nag and ``aws_cdk.assertions`` inspect only L1
resources and see neither the functions' runtime nor their roles' policies. The construct also
takes the runtime from the Python running the synth (3.11 here), while the package targets
Python 3.12, and its roles come from ``.chalice/policy.json``, written with ``*`` for region and
account because it cannot know the deployment's ARNs. Building the functions here from the same
``deployment.zip`` and the same handlers (``app.app``, ``app.reap_calls``) keeps Chalice as the
framework and the packager, and gives the stack exact-ARN roles, the runtime it asks for, and
resources every check can read (docs/deployment.md, "The CDK app").

**What is taken from ``sam.json``** (``lambda_package.py``): each function's handler, memory,
timeout and Powertools variables, and the REST API's swagger, whose ``Fn::Sub`` integration URIs
are pointed at the API function (or, with SnapStart, its ``live`` alias). The API is a
``SpecRestApi`` with the stage ``api``, as Chalice names it, so every path is what docs/api.md
says: ``<ApiUrl>/api/sip``, ``<ApiUrl>/webhooks/sip/invite`` with ``ApiUrl`` =
``https://<id>.execute-api.<region>.amazonaws.com/api``. Regional endpoint: the relays call it
from the same region and the INVITE decision is on the call's path; an edge-optimized endpoint
would add a CloudFront hop to every webhook.

**Roles** (one per function, no managed policy): the API function reads and writes the table and
its indexes, sends to the command queue and to ``sipline-<stage>-edge-*``, reads the two secrets
and encrypts and decrypts with the password key, only under the encryption context
``purpose=sipline-secret`` that ``chalicelib/crypto.py`` always sends. The reaper reads and
writes the table, reads the secrets (it loads the same settings), lists queues (``sqs:ListQueues``
has no resource type: ``*``) and reads and deletes ``sipline-<stage>-edge-*``. Each writes only
its own log group, which the stack creates with a retention.

**Environment**: names and ARNs only (``SIPLINE_*_ARN`` for the secrets; ``chalicelib/config.py``
reads them from Secrets Manager once per container), never a secret value.

**SnapStart** (``-c snap_start=true``): the API function publishes a version on each change and
the alias ``live`` points at it; API Gateway invokes the alias, since SnapStart applies only to
published versions. Off by default (docs/deployment.md).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from sipline_infra.checks import acknowledge, skip_checkov
from sipline_infra.config import StageConfig
from sipline_infra.lambda_package import (
    API_HANDLER,
    REAPER_HANDLER,
    FunctionSpec,
    LambdaPackage,
)
from sipline_infra.log_groups import retained_log_group
from sipline_infra.rest_api import rest_api
from sipline_infra.state import State

RUNTIME = lambda_.Runtime.PYTHON_3_12
TABLE_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
]
"""What ``chalicelib/store/dynamodb.py`` calls (transactions are authorized per item as Put and
Update); no Scan, no table management (docs/deployment.md, "The IAM policy")."""
FUNCTION_CHECKOV_SKIPS = {
    "CKV_AWS_115": "Reserved concurrency is StageConfig.api_reserved_concurrency, unset by default:"
    " Lambda refuses a reservation leaving under 10 unreserved, all a new account has"
    " (docs/deployment.md, The CDK app).",
    "CKV_AWS_116": "No asynchronous invocation to catch: API Gateway invokes the API function"
    " synchronously, and a failed reaper run is redone by the next minute's (the reaper is"
    " idempotent, chalicelib/reaper.py), so a DLQ would only hold stale schedule events.",
    "CKV_AWS_117": "The functions reach only AWS APIs and users' public endpoints: there is no"
    " private resource to reach, and a VPC would need a NAT gateway for that egress.",
    "CKV_AWS_173": "The environment holds names and ARNs only (secrets by *_ARN, read from Secrets"
    " Manager); Lambda encrypts it at rest with its service key.",
}
LIST_QUEUES_REASON = (
    "sqs:ListQueues has no resource type in IAM (it takes only *); it returns queue URLs under the"
    " requested prefix and reads no message."
)
XRAY_REASON = (
    "With -c tracing=true, xray:PutTraceSegments and PutTelemetryRecords have no resource type"
    " (*); they only write this function's traces."
)
ENCRYPTION_CONTEXT = {"kms:EncryptionContext:purpose": "sipline-secret"}
"""``chalicelib/crypto.py``'s ``KmsCipher`` sends this context on every Encrypt and Decrypt."""


class ControlPlane(Construct):
    """``api_function`` (``app.app``), ``reaper_function`` (``app.reap_calls``), ``api``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        state: State,
        package: LambdaPackage,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._roles: dict[str, iam.Role] = {}
        code = lambda_.Code.from_asset(str(package.zip_path))
        environment = {
            "SIPLINE_TABLE": state.table.table_name,
            "SIPLINE_COMMAND_QUEUE_URL": state.command_queue.queue_url,
            "SIPLINE_EDGE_QUEUE_PREFIX": state.edge_queue_prefix,
            "SIPLINE_KMS_KEY_ID": state.password_key.key_arn,
            "SIPLINE_WEBHOOK_SECRET_ARN": state.webhook_secret.secret_arn,
            "SIPLINE_API_KEYS_ARN": state.api_keys_secret.secret_arn,
            "SIPLINE_MAX_CONCURRENT_CALLS": str(config.max_concurrent_calls),
            "POWERTOOLS_SERVICE_NAME": "sipline-control-plane",
            "POWERTOOLS_METRICS_NAMESPACE": "sipline",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        if not config.tracing:
            environment["POWERTOOLS_TRACE_DISABLED"] = "1"
        if config.sip_domain:
            environment["SIPLINE_SIP_DOMAIN"] = config.sip_domain

        self.api_function = self._function(
            "Api", "api", package.functions[API_HANDLER], code, environment, state
        )
        self.reaper_function = self._function(
            "Reaper", "reaper", package.functions[REAPER_HANDLER], code, environment, state
        )
        self._grant_api(state)
        self._grant_reaper(state)
        unscoped = {"api": [], "reaper": [LIST_QUEUES_REASON]}
        for suffix, reasons in unscoped.items():
            if config.tracing:  # CDK grants X-Ray's two actions on *
                reasons.append(XRAY_REASON)
            if reasons:
                acknowledge(
                    self._roles[suffix], "AwsSolutions-IAM5[Resource::*]", " ".join(reasons)
                )

        target: lambda_.IFunction = self.api_function
        if config.snap_start:
            target = lambda_.Alias(
                self, "ApiLive", alias_name="live", version=self.api_function.current_version
            )
        self.api = rest_api(self, config, package, target)
        stack = cdk.Stack.of(self)
        self.api_url: str = (
            f"https://{self.api.rest_api_id}.execute-api.{stack.region}.{stack.url_suffix}"
            f"/{self.api.deployment_stage.stage_name}"
        )
        """``https://<id>.execute-api.<region>.amazonaws.com/api``: the relays'
        ``SIPLINE_CONTROL_URL``; docs/api.md's paths follow it."""

        self.reaper_rule = events.Rule(
            self,
            "ReaperSchedule",
            description="Close the calls no relay will end (chalicelib/reaper.py)",
            schedule=events.Schedule.expression("rate(1 minute)"),
            targets=[targets.LambdaFunction(self.reaper_function, retry_attempts=0)],
        )

    def use_sip_domain(self, domain: str) -> None:
        """Set ``SIPLINE_SIP_DOMAIN`` when ``-c sip_domain`` is unset (the NLB's DNS name, which
        exists only once the edge is built)."""
        if not self._config.sip_domain:
            for function in (self.api_function, self.reaper_function):
                function.add_environment("SIPLINE_SIP_DOMAIN", domain)

    def _function(
        self,
        construct_id: str,
        suffix: str,
        spec: FunctionSpec,
        code: lambda_.Code,
        environment: dict[str, str],
        state: State,
    ) -> lambda_.Function:
        config = self._config
        name = config.name(suffix)
        log_group = retained_log_group(
            self, f"{construct_id}Logs", config.log_retention_days, f"/aws/lambda/{name}"
        )
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{name}: its own logs and the sipline-{config.stage} resources it calls",
        )
        self._roles[suffix] = role
        role.add_to_policy(
            iam.PolicyStatement(
                sid="OwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="Table",
                actions=TABLE_ACTIONS,
                resources=[state.table.table_arn, f"{state.table.table_arn}/index/*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="Secrets",
                actions=["secretsmanager:GetSecretValue"],
                resources=[state.webhook_secret.secret_arn, state.api_keys_secret.secret_arn],
            )
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{_logical_path(state.table)}.Arn>/index/*]",
            "The table's own GSIs (gsi1, the sparse gsi2 of open calls): queries name an index,"
            " and index/* covers exactly this table's indexes, none of another table.",
        )
        function = lambda_.Function(
            self,
            construct_id,
            function_name=name,
            runtime=RUNTIME,
            handler=spec.handler,
            code=code,
            memory_size=spec.memory_mb,
            timeout=cdk.Duration.seconds(spec.timeout_s),
            architecture=lambda_.Architecture.X86_64
            if spec.architecture == "x86_64"
            else lambda_.Architecture.ARM_64,
            environment={**spec.environment, **environment},
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE if config.tracing else lambda_.Tracing.DISABLED,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS
            if config.snap_start and suffix == "api"
            else None,
            reserved_concurrent_executions=config.api_reserved_concurrency
            if suffix == "api"
            else None,
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            f"{RUNTIME.name} is the runtime the package's wheels and bytecode are built for"
            " (scripts/package_lambda.py, docs/deployment.md); a newer one is a change of the"
            " package, measured and tested with it, not of this construct alone.",
        )
        for check, reason in FUNCTION_CHECKOV_SKIPS.items():
            skip_checkov(function, check, reason)
        return function

    def _grant_api(self, state: State) -> None:
        role = self._roles["api"]
        role.add_to_policy(
            iam.PolicyStatement(
                sid="SendCommands",
                actions=["sqs:SendMessage"],
                resources=[state.command_queue.queue_arn, state.edge_queue_arn_pattern],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PasswordKey",
                actions=["kms:Encrypt", "kms:Decrypt"],
                resources=[state.password_key.key_arn],
                conditions={"StringEquals": ENCRYPTION_CONTEXT},
            )
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{_edge_pattern_finding(state)}]",
            "The relays' own command queues, created at run time by each relay under this"
            " stage's prefix (docs/relay.md): their names are not known at deploy time, and the"
            " prefix is this stage's alone.",
        )

    def _grant_reaper(self, state: State) -> None:
        role = self._roles["reaper"]
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReapRelayQueues",
                actions=["sqs:GetQueueAttributes", "sqs:DeleteQueue"],
                resources=[state.edge_queue_arn_pattern],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListRelayQueuesHasNoResource", actions=["sqs:ListQueues"], resources=["*"]
            )
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{_edge_pattern_finding(state)}]",
            "The reaper deletes abandoned relay queues, created at run time by each relay under"
            " this stage's prefix (docs/relay.md): names unknown at deploy time.",
        )


def _logical_path(construct: Construct) -> str:
    """cdk-nag's name for a resource in a finding: the L1's logical id."""
    child = construct.node.default_child
    assert isinstance(child, cdk.CfnElement)
    return cdk.Stack.of(construct).resolve(child.logical_id)  # type: ignore[no-any-return]


def _edge_pattern_finding(state: State) -> str:
    return f"arn:<AWS::Partition>:sqs:<AWS::Region>:<AWS::AccountId>:{state.edge_queue_prefix}*"
