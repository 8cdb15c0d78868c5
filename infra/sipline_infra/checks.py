"""Acknowledging a static check's finding, with its reason, next to the construct it concerns.

Two checkers read the stack. cdk-nag (AwsSolutions rules) runs inside the synth and fails it on
any finding not acknowledged with :func:`acknowledge` (CDK's ``Validations.of(...).acknowledge``;
a finding on one resource of a statement is named ``Rule[Resource::...]``). checkov reads the
synthesized template; :func:`skip_checkov` writes the skip into the resource's CloudFormation
metadata (``Metadata.checkov.skip``, checkov's own inline form), where the reason travels with the
resource. Each reason must say why the finding does not apply or what covers it instead.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct


def acknowledge(construct: Construct, rule: str, reason: str) -> None:
    """Acknowledge cdk-nag's ``rule`` (e.g. ``AwsSolutions-L1``) on ``construct``."""
    cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def skip_checkov(construct: Construct, check: str, reason: str) -> None:
    """Skip checkov's ``check`` (e.g. ``CKV_AWS_117``) on ``construct``'s CloudFormation resource."""
    resource = construct if isinstance(construct, cdk.CfnResource) else construct.node.default_child
    assert isinstance(resource, cdk.CfnResource), f"{construct.node.path} has no L1 resource"
    metadata: dict[str, Any] = resource.get_metadata("checkov") or {"skip": []}
    metadata["skip"] = [*metadata["skip"], {"id": check, "comment": reason}]
    resource.add_metadata("checkov", metadata)
