"""Who this relay is on ECS: its public address and its edge id, found once at start.

A relay on Fargate (``awsvpc`` networking) owns one elastic network interface (ENI) with a
private IPv4 address in a public subnet. With ``assignPublicIp`` the VPC gives that ENI a public
IPv4 address too, but the task never sees it: the internet gateway translates it 1:1 to the
private one, outside the task. Carriers must be told the public one, in ``Via``, ``Contact`` and
the SDP (``c=``, ``o=``), or their in-dialog requests and the call's audio go nowhere. So, when
``SIPLINE_PUBLIC_ADDRESS`` is ``ecs`` (and ``SIPLINE_EDGE_ID`` is ``ecs``), the relay asks two
questions before it serves (docs/relay.md, "Running on ECS: the public address"):

1. **The task metadata endpoint, version 4**: ``GET $ECS_CONTAINER_METADATA_URI_V4/task``
   (ECS sets the variable in every container of Fargate platform 1.4.0 and later). The answer
   names the task (``TaskARN``; its last segment is the task id, which becomes the edge id) and,
   for each container, its networks (``Containers[].Networks[]``): in ``awsvpc`` mode, the ENI's
   private address (``IPv4Addresses``) and MAC address (``MACAddress``). Every container of a
   task shares the one ENI, so exactly one (address, MAC) pair must come out.
2. **EC2 ``DescribeNetworkInterfaces``**, filtered by ``private-ip-address`` and ``mac-address``
   (a private address alone may repeat across VPCs; with the MAC it names one ENI), in the
   region of the task's ARN. The ENI's ``Association.PublicIp`` is the public address. The task
   role needs ``ec2:DescribeNetworkInterfaces`` (an action with no resource-level scope).

Both are bounded, since a relay that hangs at start is worse than one that stops: the metadata
request has ``METADATA_TIMEOUT_S`` per attempt (connect, and the whole body), at most
``METADATA_MAX_BYTES`` of answer and ``METADATA_ATTEMPTS`` attempts; the EC2 client has
``EC2_TIMEOUT_S`` per connect and read and ``EC2_ATTEMPTS`` attempts in all (botocore's
"standard" retry mode). Any failure, and an ENI without a public address, is an
:class:`EcsIdentityError` whose one-line message says which step failed and why;
``relay/__main__.py`` prints it and exits with status 2, as for a malformed setting: ECS then
stops the task, and the service's circuit breaker sees a task that never became healthy.

Only these two settings take the value ``ecs``; a relay configured otherwise asks nothing.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import re
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from relay.config import RelayConfigError, RelaySettings

__all__ = [
    "ECS",
    "METADATA_VARIABLE",
    "EcsIdentityError",
    "TaskNetwork",
    "fetch_task_metadata",
    "parse_task_metadata",
    "public_ipv4",
    "resolve",
]

logger = logging.getLogger("sipline.relay")

ECS = "ecs"
"""The value of ``SIPLINE_PUBLIC_ADDRESS`` / ``SIPLINE_EDGE_ID`` that asks for discovery."""
METADATA_VARIABLE = "ECS_CONTAINER_METADATA_URI_V4"
METADATA_TIMEOUT_S = 2.0
"""Bound on one metadata request (connecting, then reading the whole answer). The endpoint is
a local agent of the task's host: it answers in milliseconds or not at all."""
METADATA_MAX_BYTES = 256 * 1024
"""Bound on the metadata answer: AWS's documented two-container example is 3.5 KB; a task of
ten sidecars stays far below this."""
METADATA_ATTEMPTS = 3
METADATA_RETRY_PAUSE_S = 0.5
"""Pause before the second attempt, twice that before the third."""
EC2_TIMEOUT_S = 5.0
EC2_ATTEMPTS = 3
"""Attempts in all of the one EC2 call, with botocore's standard back-off between them."""
ERROR_DETAIL_CHARS = 300
"""A library's error message is cut to this, and its line breaks removed: one log line."""

_TASK_ARN = re.compile(
    r"^arn:aws[a-z-]*:ecs:(?P<region>[a-z0-9-]+):\d{12}:task/(?:[A-Za-z0-9_-]+/)?"
    r"(?P<task_id>[A-Za-z0-9-]{1,64})$"
)
_MAC_ADDRESS = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$")


class EcsIdentityError(RelayConfigError):
    """The relay could not find its public address or task id on ECS (it must not start)."""


@dataclass(frozen=True, slots=True)
class TaskNetwork:
    """What the task metadata says about this task and its ENI."""

    task_arn: str
    region: str
    task_id: str
    private_ipv4: str
    mac_address: str


def resolve(
    settings: RelaySettings,
    env: Mapping[str, str],
    *,
    ec2: Any = None,
    metadata_timeout_s: float = METADATA_TIMEOUT_S,
) -> RelaySettings:
    """Return ``settings`` with ``ecs`` values replaced by what ECS and EC2 say.

    ``env`` gives ``ECS_CONTAINER_METADATA_URI_V4``; ``ec2`` is a boto3 EC2 client (default:
    one for the task's region, bounded as the module docstring says).

    Raises:
        EcsIdentityError: any step failed, or the ENI has no public address.
    """
    wants_address = settings.public_address == ECS
    wants_id = settings.edge_id == ECS
    if not (wants_address or wants_id):
        return settings
    asked = "SIPLINE_PUBLIC_ADDRESS" if wants_address else "SIPLINE_EDGE_ID"
    base = env.get(METADATA_VARIABLE, "").strip()
    if not base:
        raise EcsIdentityError(
            f"{asked}=ecs, but {METADATA_VARIABLE} is not set: ECS sets it in tasks on Fargate "
            "platform 1.4.0 or later (elsewhere, give the address itself)"
        )
    body = fetch_task_metadata(base.rstrip("/") + "/task", timeout_s=metadata_timeout_s)
    network = parse_task_metadata(body)
    public_address = settings.public_address
    if wants_address:
        public_address = public_ipv4(ec2 or _ec2_client(network.region), network)
    edge_id = network.task_id if wants_id else settings.edge_id
    logger.info(
        "on ECS: task %s, private address %s, public address %s, edge id %s",
        network.task_id,
        network.private_ipv4,
        public_address,
        edge_id,
    )
    return replace(settings, public_address=public_address, edge_id=edge_id)


def fetch_task_metadata(
    url: str,
    *,
    timeout_s: float = METADATA_TIMEOUT_S,
    max_bytes: int = METADATA_MAX_BYTES,
    attempts: int = METADATA_ATTEMPTS,
    pause_s: float = METADATA_RETRY_PAUSE_S,
) -> bytes:
    """GET ``url`` (no proxy), bounded as the module docstring says; return the body.

    A refused connection, a timeout or an error status (4xx, 5xx) is tried again, up to
    ``attempts`` in all; an answer over ``max_bytes`` is not.

    Raises:
        EcsIdentityError: no attempt succeeded, or the answer is too large.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise EcsIdentityError(f"{METADATA_VARIABLE} must be an http URL (got {url!r})")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    failure = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(pause_s * attempt)
        try:
            return _read_bounded(opener, url, timeout_s, max_bytes)
        except (OSError, http.client.HTTPException) as error:  # URLError, HTTPError, timeouts
            failure = _one_line(error)
    raise EcsIdentityError(f"task metadata endpoint {url} failed {attempts} times, last: {failure}")


def _read_bounded(
    opener: urllib.request.OpenerDirector, url: str, timeout_s: float, max_bytes: int
) -> bytes:
    deadline = time.monotonic() + timeout_s
    with opener.open(url, timeout=timeout_s) as response:
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read1(16 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise EcsIdentityError(
                    f"task metadata endpoint {url} answered more than {max_bytes} bytes"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"the answer took more than {timeout_s:g} s")
            chunks.append(chunk)
    return b"".join(chunks)


def parse_task_metadata(body: bytes) -> TaskNetwork:
    """Read the task ARN and the ENI's private address and MAC from a ``/task`` answer.

    Raises:
        EcsIdentityError: the answer is not the documented shape (the message says how).
    """
    try:
        document = json.loads(body)
    except ValueError:
        raise EcsIdentityError("the task metadata is not JSON") from None
    if not isinstance(document, dict):
        raise EcsIdentityError("the task metadata is not a JSON object")
    arn = document.get("TaskARN")
    matched = _TASK_ARN.match(arn) if isinstance(arn, str) else None
    if matched is None:
        raise EcsIdentityError(f"the task metadata has no valid TaskARN (got {str(arn)[:120]!r})")
    pairs = _awsvpc_pairs(document.get("Containers"))
    if len(pairs) != 1:
        found = ", ".join(f"{ip} {mac}" for ip, mac in sorted(pairs)) or "none"
        raise EcsIdentityError(
            "the task metadata must name exactly one awsvpc network interface "
            f"(IPv4Addresses and MACAddress); found: {found}"
        )
    [(private_ipv4, mac_address)] = pairs
    return TaskNetwork(
        task_arn=str(arn),
        region=matched["region"],
        task_id=matched["task_id"],
        private_ipv4=private_ipv4,
        mac_address=mac_address,
    )


def _awsvpc_pairs(containers: object) -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for container in containers if isinstance(containers, list) else []:
        networks = container.get("Networks") if isinstance(container, dict) else None
        for network in networks if isinstance(networks, list) else []:
            if not isinstance(network, dict) or network.get("NetworkMode") != "awsvpc":
                continue
            mac = str(network.get("MACAddress", "")).lower()
            addresses = network.get("IPv4Addresses")
            for address in addresses if isinstance(addresses, list) else []:
                if _is_ipv4(address) and _MAC_ADDRESS.match(mac):
                    pairs.add((str(address), mac))
    return pairs


def public_ipv4(ec2: Any, network: TaskNetwork) -> str:
    """Return the public IPv4 address associated with the task's ENI (EC2's answer).

    Raises:
        EcsIdentityError: the call failed, no single ENI matched, or it has no public address.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    described = f"{network.private_ipv4} {network.mac_address}"
    try:
        answer = ec2.describe_network_interfaces(
            Filters=[
                {"Name": "private-ip-address", "Values": [network.private_ipv4]},
                {"Name": "mac-address", "Values": [network.mac_address]},
            ]
        )
    except (BotoCoreError, ClientError) as error:
        raise EcsIdentityError(
            f"ec2:DescribeNetworkInterfaces for {described} failed: {_one_line(error)}"
        ) from None
    interfaces = answer.get("NetworkInterfaces", [])
    if len(interfaces) != 1:
        raise EcsIdentityError(
            f"ec2:DescribeNetworkInterfaces found {len(interfaces)} network interfaces "
            f"for {described} (expected one)"
        )
    [interface] = interfaces
    public = interface.get("Association", {}).get("PublicIp")
    if not _is_ipv4(public):
        raise EcsIdentityError(
            f"network interface {interface.get('NetworkInterfaceId')} ({described}) has no "
            "public IPv4 address: run the service's tasks in a public subnet with "
            "assignPublicIp ENABLED"
        )
    return str(public)


def _ec2_client(region: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=EC2_TIMEOUT_S,
        read_timeout=EC2_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": EC2_ATTEMPTS},
    )
    return boto3.client("ec2", region_name=region, config=config)


def _is_ipv4(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:ERROR_DETAIL_CHARS]
