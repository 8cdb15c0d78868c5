"""A checkov finding suppressed next to the resource it concerns, with its reason.

cdk-nag findings are acknowledged with ``cdk.Validations.of(construct).acknowledge``; checkov
reads the template, so its suppressions go into the resource's CloudFormation ``Metadata``
(``checkov: skip: [{id, comment}]``), where the reason travels with the resource.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import IConstruct


def checkov_skip(construct: IConstruct, check: str, reason: str) -> None:
    """Skip checkov's ``check`` (``CKV_AWS_91``) on ``construct``'s CloudFormation resource."""
    resource = construct if isinstance(construct, cdk.CfnResource) else construct.node.default_child
    assert isinstance(resource, cdk.CfnResource), f"{construct.node.path} has no resource"
    metadata: Any = resource.get_metadata("checkov") or {"skip": []}
    metadata["skip"].append({"id": check, "comment": reason})
    resource.add_metadata("checkov", metadata)
