"""``SIPLINE_PUBLIC_ADDRESS=ecs``: the task metadata endpoint, then EC2, then the relay's settings.

A real HTTP server answers as the task metadata endpoint v4 does (AWS's documented example,
tests/vectors/ecs/); moto's EC2 holds the task's ENI with an Elastic IP associated, and reports
it as ``Association.PublicIp`` as EC2 does. The failures of docs/relay.md ("Running on ECS: the
public address") each stop the relay: no public address, a metadata endpoint that fails, answers
too much or never answers, an EC2 that cannot be reached; ``python -m relay`` then prints one line
and exits with status 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from relay.config import RelaySettings
from relay.ecs_identity import (
    METADATA_ATTEMPTS,
    METADATA_MAX_BYTES,
    EcsIdentityError,
    resolve,
)
from scripts.localstack import ROOT
from tests.support.ecs_metadata import (
    DOCUMENTED_PRIVATE_IPV4,
    DOCUMENTED_TASK_ID,
    MetadataServer,
    task_document,
    task_interface,
)
from tests.support.ports import free_port

PUBLIC_IPV4 = "203.0.113.10"  # RFC 5737 TEST-NET-3
ECS_SETTINGS = RelaySettings(sip_host="0.0.0.0", public_address="ecs", edge_id="ecs")


@pytest.fixture
def ec2() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ec2", region_name="us-east-1")


def _env(server: MetadataServer) -> dict[str, str]:
    return {"ECS_CONTAINER_METADATA_URI_V4": server.url}


def test_the_public_address_and_the_task_id_come_from_the_metadata_and_ec2(ec2: Any) -> None:
    mac = task_interface(ec2, public_ipv4=PUBLIC_IPV4)
    with MetadataServer(task_document(mac=mac)).running() as server:
        settings = resolve(ECS_SETTINGS, _env(server))

    assert settings.public_address == PUBLIC_IPV4
    assert settings.advertised_address == PUBLIC_IPV4  # what Via, Contact and the SDP carry
    assert settings.edge_id == DOCUMENTED_TASK_ID
    assert settings.sip_host == "0.0.0.0"
    assert server.requests == ["/v4/bfa2636268144d039771334145e490c5-1117626119/task"]


def test_edge_id_alone_asks_the_metadata_and_not_ec2(ec2: Any) -> None:
    """No ENI exists in EC2 here: were EC2 asked, the relay would refuse to start."""
    wanted = RelaySettings(public_address="198.51.100.20", edge_id="ecs")
    with MetadataServer(task_document()).running() as server:
        settings = resolve(wanted, _env(server))

    assert (settings.public_address, settings.edge_id) == ("198.51.100.20", DOCUMENTED_TASK_ID)


def test_an_interface_without_a_public_address_stops_the_relay(ec2: Any) -> None:
    mac = task_interface(ec2)  # no Elastic IP: a private subnet, or assignPublicIp DISABLED
    with (
        MetadataServer(task_document(mac=mac)).running() as server,
        pytest.raises(
            EcsIdentityError, match=f"\\({DOCUMENTED_PRIVATE_IPV4} {mac}\\) has no public IPv4"
        ),
    ):
        resolve(ECS_SETTINGS, _env(server))


def test_an_interface_ec2_does_not_know_stops_the_relay(ec2: Any) -> None:
    task_interface(ec2, public_ipv4=PUBLIC_IPV4)  # the same address, another MAC
    with (
        MetadataServer(task_document(mac="0e:00:00:00:00:01")).running() as server,
        pytest.raises(EcsIdentityError, match="found 0 network interfaces"),
    ):
        resolve(ECS_SETTINGS, _env(server))


def test_a_failing_metadata_endpoint_is_asked_a_bounded_number_of_times(ec2: Any) -> None:
    with (
        MetadataServer(b"{}", status=500).running() as server,
        pytest.raises(EcsIdentityError, match="failed 3 times, last: HTTP Error 500"),
    ):
        resolve(ECS_SETTINGS, _env(server))

    assert len(server.requests) == METADATA_ATTEMPTS == 3


def test_an_oversized_metadata_answer_is_refused_at_once(ec2: Any) -> None:
    body = b" " * METADATA_MAX_BYTES + b"{}"
    with (
        MetadataServer(body).running() as server,
        pytest.raises(EcsIdentityError, match=f"more than {METADATA_MAX_BYTES} bytes"),
    ):
        resolve(ECS_SETTINGS, _env(server))

    assert len(server.requests) == 1


def test_a_metadata_endpoint_that_never_answers_times_out(ec2: Any) -> None:
    with (
        MetadataServer(hold=True).running() as server,
        pytest.raises(EcsIdentityError, match="failed 3 times, last: .*timed out"),
    ):
        resolve(ECS_SETTINGS, _env(server), metadata_timeout_s=0.2)

    assert len(server.requests) == METADATA_ATTEMPTS


def test_an_unreachable_ec2_stops_the_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client the relay builds itself (bounded retries), pointed at a port nothing listens on."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with (
        MetadataServer(task_document()).running() as server,
        pytest.raises(
            EcsIdentityError, match="ec2:DescribeNetworkInterfaces for .* failed: Could not connect"
        ),
    ):
        resolve(ECS_SETTINGS, _env(server))


def test_python_m_relay_prints_one_line_and_exits_2_when_discovery_fails() -> None:
    with MetadataServer(b"{}", status=500).running() as server:
        env = {
            **os.environ,
            "SIPLINE_PUBLIC_ADDRESS": "ecs",
            "SIPLINE_SIP_PORT": str(free_port()),
            "ECS_CONTAINER_METADATA_URI_V4": server.url,
        }
        ran = subprocess.run(
            [sys.executable, "-m", "relay"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    lines = [line for line in (ran.stdout + ran.stderr).splitlines() if line.strip()]
    assert ran.returncode == 2, lines
    assert lines == [
        f"relay: task metadata endpoint {server.url}/task failed 3 times, last: "
        "HTTP Error 500: Internal Server Error"
    ]
