"""``Sipline-<stage>``: the whole deployment of one stage in one stack, so one ``cdk deploy``.

State first (nothing depends on it being elsewhere), then the control plane that uses it; the
edge (relays behind the NLB) and the operations (alarms, dashboard) use both. The outputs are
what an operator needs next: the API's URL, where SIP goes, and the secret holding the first
API key (docs/deployment.md).
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from sipline_infra.config import StageConfig
from sipline_infra.control_plane import ControlPlane
from sipline_infra.edge import Edge
from sipline_infra.lambda_package import LambdaPackage
from sipline_infra.operations import Operations
from sipline_infra.state import State


class SiplineStack(cdk.Stack):
    """One stage of sipline."""

    def __init__(
        self,
        scope: Construct,
        *,
        config: StageConfig,
        package: LambdaPackage,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            f"Sipline-{config.stage}",
            description=f"sipline, stage {config.stage}: SIP front door for voice-AI agents",
            **kwargs,
        )
        self.config = config
        self.state = State(self, "State", config=config)
        self.control_plane = ControlPlane(
            self, "ControlPlane", config=config, state=self.state, package=package
        )
        self.edge = Edge(
            self, "Edge", config=config, state=self.state, control_plane=self.control_plane
        )
        self.control_plane.use_sip_domain(self.edge.sip_host)
        self.operations = Operations(
            self,
            "Operations",
            config=config,
            state=self.state,
            control_plane=self.control_plane,
            edge=self.edge,
        )
        cdk.CfnOutput(
            self, "ApiUrl", value=self.control_plane.api_url, description="SIPLINE_CONTROL_URL"
        )
        cdk.CfnOutput(
            self, "SipHost", value=self.edge.sip_host, description="where carriers send SIP"
        )
        cdk.CfnOutput(
            self,
            "SipAddresses",
            value=cdk.Fn.join(",", [address.ref for address in self.edge.addresses]),
            description="the SIP host's Elastic IPs, one per zone (carriers' allowlists)",
        )
        cdk.CfnOutput(
            self,
            "FirstApiKeySecretName",
            value=config.name("api-keys"),
            description="aws secretsmanager get-secret-value --secret-id <this>",
        )
