"""The SIP edge on AWS: relays as a Fargate service behind a UDP+TCP Network Load Balancer.

What is deployed (docs/deployment.md, "The edge on AWS"):

- A VPC over two availability zones with public subnets only: no NAT gateway (about 33 USD a
  month each, and a relay must be reachable from the internet anyway). VPC flow logs record the
  rejected traffic.
- An ECS cluster and a Fargate service of relays (``relay/Dockerfile``), each task with a public
  IPv4 address of its own, a read-only root filesystem and a task volume for the spool.
- An internet-facing Network Load Balancer with one Elastic IP per zone: SIP over UDP and TCP on
  5060 (one ``TCP_UDP`` listener) and SIP over TLS on 5061 (TCP, passed through to the relay,
  which holds the certificate) when a TLS secret is configured. Targets are the tasks' IPs,
  the client IP is preserved (the relay's IP guard and the control plane's allowlist see the
  carrier, not the balancer), and the health check is TCP on the relay's health port.

Why a balancer with Elastic IPs *and* a public IP per task. A carrier needs a few stable
addresses to send new calls to and to allow in its own firewall: the Elastic IPs give that, and
survive every deployment. But a call does not stay on the balancer: the relay puts the task's own
public address in Via, Contact and the SDP, so the carrier's in-dialog requests (ACK, BYE,
re-INVITE) and both directions of RTP go straight to the task holding the call; a balancer
cannot route those (another task answers 481, and a listener per RTP port is impractical).
Fargate gives each task an ENI with a public IPv4 (``assignPublicIp``); the relay learns it at
start from the task metadata and the ENI (``SIPLINE_PUBLIC_ADDRESS=ecs``). The security group
therefore admits SIP from ``carrier_cidrs`` both through the balancer (client IP preserved) and
directly, and the RTP range from anywhere (see :func:`_ingress`).

What the balancer does *not* do, honestly: a Network Load Balancer pins a UDP *flow* (source
ip:port to listener ip:port) to one target until it has been idle for 120 s. A carrier that
sends all its signalling from one ip:port is one flow, kept alive by its own traffic and OPTIONS
pings, so all its new INVITEs go to the same task for as long as that task is registered: the
balancer spreads *carriers' flows*, not calls. Spreading calls, and draining a task, therefore
rely on the relay and the carrier: a relay at its cap (``SIPLINE_MAX_CALLS``) or draining
answers 503 with Retry-After, and the carrier fails over (to the other Elastic IP, or retries).
When ECS stops a task it first deregisters it (new flows go elsewhere; the deregistration delay
is the drain, and at its end the balancer ends the task's flows so a pinned carrier's next
packet is routed to a healthy task), then sends SIGTERM: the relay closes its health port,
refuses new INVITEs with 503 for ``SIPLINE_DRAIN_S`` while calls continue, then ends the rest
with BYE; ``stopTimeout`` (120 s, the Fargate maximum) covers the drain plus 15 s.

Scaling follows calls, not CPU: target tracking on the relays' ``ActiveCalls`` (EMF, namespace
``sipline``, dimensions ``service`` and ``stage``, Average over the tasks = calls per task) at
``target_calls_per_relay``; CPU at 60 % scales out only, as a backstop for a metric that stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from sipline_infra.checks import skip_checkov
from sipline_infra.log_groups import retained_log_group
from sipline_infra.relay_task import (
    CONTAINER,
    HEALTH_PORT,
    SIP_PORT,
    STOP_MARGIN_S,
    STOP_TIMEOUT_S,
    TLS_PORT,
    relay_metric,
    task_definition,
)

if TYPE_CHECKING:
    from sipline_infra.config import StageConfig
    from sipline_infra.control_plane import ControlPlane
    from sipline_infra.state import State

CPU_BACKSTOP_PERCENT = 60
HEALTH_INTERVAL_S = 10
HEALTH_THRESHOLD = 2
"""Two failed TCP checks 10 s apart: a task whose health port closed stops getting new flows in 20 s."""


class Edge(Construct):
    """The VPC, the cluster, the relays' Fargate service and their load balancer."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        state: State,
        control_plane: ControlPlane,
    ) -> None:
        super().__init__(scope, construct_id)
        if config.drain_seconds + STOP_MARGIN_S > STOP_TIMEOUT_S:
            raise ValueError(
                f"drain_seconds={config.drain_seconds} leaves no {STOP_MARGIN_S} s before "
                f"Fargate's {STOP_TIMEOUT_S} s stop timeout"
            )
        self.config = config
        tls = config.tls_secret_arn is not None
        self.vpc = self._vpc()
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            cluster_name=config.name("edge"),
            container_insights_v2=(
                ecs.ContainerInsights.ENABLED
                if config.stage == "prod"
                else ecs.ContainerInsights.DISABLED
            ),
        )
        if config.stage != "prod":
            no_insights = (
                "Container Insights is on in prod; a dev stage saves its per-task metrics, and "
                "the relays' own EMF metrics and the service's CPU are there"
            )
            cdk.Validations.of(self.cluster).acknowledge(
                cdk.Acknowledgment(id="AwsSolutions-ECS4", reason=no_insights)
            )
            skip_checkov(self.cluster, "CKV_AWS_65", no_insights)
        self.security_group = self._security_group(tls)
        task = task_definition(
            self,
            config=config,
            state=state,
            control_plane=control_plane,
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=task,
            service_name=config.name("relay"),
            desired_count=config.min_relays,
            assign_public_ip=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[self.security_group],
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            health_check_grace_period=cdk.Duration.seconds(60),
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )
        self.addresses, self.load_balancer = self._load_balancer()
        self.sip_host: str = self.load_balancer.load_balancer_dns_name
        self.target_groups = self._listeners(tls)
        self._autoscaling()

    # -- network -------------------------------------------------------------------------------

    def _vpc(self) -> ec2.Vpc:
        vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                )
            ],
        )
        flow_logs = retained_log_group(self, "FlowLogs", self.config.log_retention_days, None)
        vpc.add_flow_log(
            "RejectedTraffic",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        return vpc

    def _security_group(self, tls: bool) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            "Relays",
            vpc=self.vpc,
            description="sipline relays: SIP from carriers, RTP, health checks from the VPC",
            allow_all_outbound=True,
        )
        for rule in _ingress(self.config, self.vpc.vpc_cidr_block, tls):
            group.add_ingress_rule(*rule)
        cdk.Validations.of(group).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-EC23",
                reason="A SIP edge takes calls from the internet: SIP is open to carrier_cidrs "
                "(0.0.0.0/0 until the operator narrows it; the relay's IP guard filters per "
                "account), and RTP to anywhere because the media source is whatever the SDP "
                "names; the relay drops RTP from all but the latched source",
            )
        )
        return group

    # -- the load balancer ---------------------------------------------------------------------

    def _load_balancer(self) -> tuple[list[ec2.CfnEIP], elbv2.NetworkLoadBalancer]:
        subnets = self.vpc.public_subnets
        addresses = []
        for index in range(len(subnets)):
            address = ec2.CfnEIP(self, f"Address{index + 1}", domain="vpc")
            cdk.Tags.of(address).add("Name", self.config.name(f"sip-{index + 1}"))
            address.apply_removal_policy(self._removal())
            addresses.append(address)
        balancer = elbv2.NetworkLoadBalancer(
            self,
            "Balancer",
            vpc=self.vpc,
            internet_facing=True,
            cross_zone_enabled=True,
            deletion_protection=self.config.removal_retain,
            subnet_mappings=[
                elbv2.SubnetMapping(subnet=subnet, allocation_id=address.attr_allocation_id)
                for subnet, address in zip(subnets, addresses, strict=True)
            ],
        )
        no_access_logs = (
            "NLB access logs record TLS listeners only, and this balancer has none (TLS is "
            "passed through to the relay); the VPC flow logs record rejected traffic and the "
            "relays log every call"
        )
        cdk.Validations.of(balancer).acknowledge(
            cdk.Acknowledgment(id="AwsSolutions-ELB2", reason=no_access_logs)
        )
        skip_checkov(balancer, "CKV_AWS_91", no_access_logs)
        return addresses, balancer

    def _listeners(self, tls: bool) -> list[elbv2.NetworkTargetGroup]:
        routes = [("Sip", SIP_PORT, elbv2.Protocol.TCP_UDP, ecs.Protocol.UDP)]
        if tls:
            routes.append(("Tls", TLS_PORT, elbv2.Protocol.TCP, ecs.Protocol.TCP))
        groups = []
        for name, port, protocol, container_protocol in routes:
            group = elbv2.NetworkTargetGroup(
                self,
                f"{name}Targets",
                vpc=self.vpc,
                port=port,
                protocol=protocol,
                target_type=elbv2.TargetType.IP,
                preserve_client_ip=True,
                connection_termination=True,
                deregistration_delay=cdk.Duration.seconds(self.config.drain_seconds),
                health_check=elbv2.HealthCheck(
                    protocol=elbv2.Protocol.TCP,
                    port=str(HEALTH_PORT),
                    interval=cdk.Duration.seconds(HEALTH_INTERVAL_S),
                    healthy_threshold_count=HEALTH_THRESHOLD,
                    unhealthy_threshold_count=HEALTH_THRESHOLD,
                ),
                targets=[
                    self.service.load_balancer_target(
                        container_name=CONTAINER, container_port=port, protocol=container_protocol
                    )
                ],
            )
            self.load_balancer.add_listener(
                name, port=port, protocol=protocol, default_target_groups=[group]
            )
            groups.append(group)
        return groups

    def _autoscaling(self) -> None:
        config = self.config
        scaling = self.service.auto_scale_task_count(
            min_capacity=config.min_relays, max_capacity=config.max_relays
        )
        scaling.scale_to_track_custom_metric(
            "ActiveCalls",
            metric=relay_metric(config.stage, "ActiveCalls", "Average"),
            target_value=config.target_calls_per_relay,
            scale_out_cooldown=cdk.Duration.seconds(60),
            scale_in_cooldown=cdk.Duration.seconds(300),
        )
        scaling.scale_on_cpu_utilization(
            "CpuBackstop",
            target_utilization_percent=CPU_BACKSTOP_PERCENT,
            disable_scale_in=True,
            scale_out_cooldown=cdk.Duration.seconds(60),
        )

    # -- helpers -------------------------------------------------------------------------------

    def _removal(self) -> cdk.RemovalPolicy:
        return cdk.RemovalPolicy.RETAIN if self.config.removal_retain else cdk.RemovalPolicy.DESTROY


Rule = tuple[ec2.IPeer, ec2.Port, str]


def _ingress(config: StageConfig, vpc_cidr: str, tls: bool) -> list[Rule]:
    """The relays' inbound rules.

    - SIP (5060 UDP and TCP, 5061 TCP with TLS) from ``carrier_cidrs``: through the balancer the
      source is the carrier (client IP preserved), and in-dialog requests come straight to the
      task's own address.
    - RTP (the configured UDP range) from anywhere: the media source is whatever address the
      caller's SDP names, often a media gateway outside the carrier's signalling ranges, and it
      is not known before the call; the relay accepts RTP only from the source it latched.
    - The health port from the VPC only: the balancer's checks come from its private addresses.
    """
    rules: list[Rule] = []
    for cidr in config.carrier_cidrs:
        peer = ec2.Peer.ipv4(cidr)
        rules.append((peer, ec2.Port.udp(SIP_PORT), "SIP over UDP from carriers"))
        rules.append((peer, ec2.Port.tcp(SIP_PORT), "SIP over TCP from carriers"))
        if tls:
            rules.append((peer, ec2.Port.tcp(TLS_PORT), "SIP over TLS from carriers"))
    low, high = config.rtp_port_range
    rules.append(
        (ec2.Peer.any_ipv4(), ec2.Port.udp_range(low, high), "RTP from the callers' media")
    )
    rules.append((ec2.Peer.ipv4(vpc_cidr), ec2.Port.tcp(HEALTH_PORT), "health checks of the NLB"))
    return rules
