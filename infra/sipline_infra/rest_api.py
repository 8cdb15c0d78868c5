"""The REST API: Chalice's swagger, served by API Gateway, invoking the control plane's function.

``chalice package`` writes the API as swagger in ``sam.json`` (every route of ``app.py``, binary
media types, ``aws_proxy`` integrations whose URI is ``Fn::Sub`` of ``${APIHandler.Arn}``).
:func:`rest_api` points those URIs at the function (or alias) it is given, refuses the swagger if
any other intrinsic is left in it, and deploys it as a ``SpecRestApi``:

- stage ``api`` (``sam.json``'s ``StageName``, as Chalice deploys it), so the paths are those of
  docs/api.md under ``https://<id>.execute-api.<region>.amazonaws.com/api``;
- a regional endpoint: the relays call it from the same region and the INVITE decision is on the
  call's path, which an edge-optimized endpoint's CloudFront hop would lengthen;
- stage throttling (``StageConfig.api_throttle_rate``/``_burst``), JSON access logs to a log group
  with the stage's retention (status, source IP, method, path, time; no caller or user fields);
- a new deployment whenever the swagger changes (its content is part of the deployment's
  logical id; otherwise the stage would keep serving the old definition);
- permission for API Gateway to invoke the target, from this API only.

Authentication is the function's: API keys (``chalicelib/api_keys.py``), the relays' HMAC-signed
webhooks (docs/webhooks.md), the Twilio-style hang-up's token; ``/health`` is public.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from sipline_infra.checks import acknowledge, skip_checkov
from sipline_infra.config import StageConfig
from sipline_infra.lambda_package import LambdaPackage, intrinsics, point_swagger_at
from sipline_infra.log_groups import retained_log_group


def rest_api(
    scope: Construct, config: StageConfig, package: LambdaPackage, target: lambda_.IFunction
) -> apigateway.SpecRestApi:
    """Deploy ``package``'s swagger with every route invoking ``target``."""
    stack = cdk.Stack.of(scope)
    invoke_arn = (
        f"arn:{stack.partition}:apigateway:{stack.region}:lambda:path/2015-03-31/functions/"
        f"{target.function_arn}/invocations"
    )
    swagger = point_swagger_at(package.swagger, package.api_function_logical_id, invoke_arn)
    if left := intrinsics(swagger):
        raise ValueError(f"sam.json's swagger has intrinsics this app does not resolve: {left}")
    swagger["info"]["title"] = config.name("api")
    access_logs = retained_log_group(scope, "ApiAccessLogs", config.log_retention_days, None)
    api = apigateway.SpecRestApi(
        scope,
        "RestApi",
        rest_api_name=config.name("api"),
        api_definition=apigateway.ApiDefinition.from_inline(swagger),
        endpoint_types=[apigateway.EndpointType.REGIONAL],
        cloud_watch_role=False,
        deploy_options=apigateway.StageOptions(
            stage_name=package.stage_name,
            throttling_rate_limit=config.api_throttle_rate,
            throttling_burst_limit=config.api_throttle_burst,
            tracing_enabled=config.tracing,
            access_log_destination=apigateway.LogGroupLogDestination(access_logs),
            access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                caller=False,
                http_method=True,
                ip=True,
                protocol=True,
                request_time=True,
                resource_path=True,
                response_length=True,
                status=True,
                user=False,
            ),
        ),
    )
    # A changed definition must make a new deployment, or the stage keeps serving the old one.
    assert api.latest_deployment is not None
    api.latest_deployment.add_to_logical_id(swagger)
    target.add_permission(
        "ApiInvoke",
        principal=iam.ServicePrincipal("apigateway.amazonaws.com"),
        source_arn=api.arn_for_execute_api(),
    )
    _acknowledge_api(api)
    return api


def _acknowledge_api(api: apigateway.SpecRestApi) -> None:
    stage = api.deployment_stage
    for rule, reason in (
        (
            "AwsSolutions-APIG2",
            "The function validates every body against its pydantic models and answers 400"
            " naming the field (docs/api.md); a second validator in API Gateway would answer"
            " differently from the documented errors.",
        ),
    ):
        acknowledge(api, rule, reason)
    for rule, reason in (
        (
            "AwsSolutions-APIG3",
            "Requests are authenticated per call in the function and the stage's throttling bounds"
            " the rate; a WAF web ACL is a per-deployment choice (docs/deployment.md, The CDK app).",
        ),
        (
            "AwsSolutions-APIG6",
            "Access logs record every request; execution logging needs API Gateway's account-wide"
            " CloudWatch role, a per-account singleton this stack does not take over.",
        ),
    ):
        acknowledge(stage, rule, reason)
    skip_checkov(
        stage,
        "CKV_AWS_73",
        "X-Ray is off by default (its SDK costs cold-start time, docs/deployment.md);"
        " -c tracing=true turns it on for the stage and the functions.",
    )
    skip_checkov(
        stage,
        "CKV_AWS_120",
        "Every response is per caller and per moment (calls, agents, INVITE decisions):"
        " a cache would serve one caller's or an earlier state to another request.",
    )
