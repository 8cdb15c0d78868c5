"""Reading AWS's documented task metadata answer (tests/vectors/ecs/README.md), and refusing others.

The expected values are the example's own (AWS's "task metadata v4 examples for tasks on
Fargate"): its TaskARN, and the one awsvpc interface both its containers share.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from relay.config import RelaySettings
from relay.ecs_identity import EcsIdentityError, parse_task_metadata, resolve

VECTOR = Path(__file__).parents[2] / "vectors" / "ecs" / "task_metadata_v4_fargate.json"


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(VECTOR.read_text())
    return document


def test_the_documented_answer_names_the_task_and_its_one_interface() -> None:
    network = parse_task_metadata(VECTOR.read_bytes())

    assert network.task_arn == (
        "arn:aws:ecs:us-east-1:123456789012:task/MyEmptyCluster/bfa2636268144d039771334145e490c5"
    )
    assert network.task_id == "bfa2636268144d039771334145e490c5"
    assert network.region == "us-east-1"
    assert (network.private_ipv4, network.mac_address) == ("172.31.42.189", "0e:98:9f:33:76:d3")


def test_a_task_arn_of_the_old_format_without_cluster_names_the_task() -> None:
    """The v3 examples' ARN form, ``task/<uuid>``, is still what older accounts see."""
    document = _document()
    document["TaskARN"] = (
        "arn:aws:ecs:us-east-2:012345678910:task/9781c248-0edd-4cdb-9a93-f63cb662a5d3"
    )

    network = parse_task_metadata(json.dumps(document).encode())

    assert (network.task_id, network.region) == (
        "9781c248-0edd-4cdb-9a93-f63cb662a5d3",
        "us-east-2",
    )


def _without_networks(document: dict[str, Any]) -> None:
    for container in document["Containers"]:
        container["Networks"] = []


def _two_interfaces(document: dict[str, Any]) -> None:
    document["Containers"][1]["Networks"][0]["IPv4Addresses"] = ["172.31.42.190"]


def _bridge_mode(document: dict[str, Any]) -> None:
    for container in document["Containers"]:
        container["Networks"][0]["NetworkMode"] = "bridge"


def _bad_arn(document: dict[str, Any]) -> None:
    document["TaskARN"] = "arn:aws:ecs:us-east-1:123456789012:cluster/MyEmptyCluster"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_without_networks, "exactly one awsvpc network interface"),
        (_two_interfaces, "found: 172.31.42.189 0e:98:9f:33:76:d3, 172.31.42.190"),
        (_bridge_mode, "found: none"),
        (_bad_arn, "no valid TaskARN"),
    ],
)
def test_an_answer_not_of_the_documented_shape_is_refused_with_what_is_wrong(
    change: Any, message: str
) -> None:
    document = _document()
    change(document)

    with pytest.raises(EcsIdentityError, match=message):
        parse_task_metadata(json.dumps(document).encode())


@pytest.mark.parametrize("body", [b"<html>", b"[]", b'"task"'])
def test_an_answer_that_is_no_json_object_is_refused(body: bytes) -> None:
    with pytest.raises(EcsIdentityError, match="not (JSON|a JSON object)"):
        parse_task_metadata(body)


def test_settings_without_ecs_values_ask_nothing() -> None:
    settings = RelaySettings(public_address="198.51.100.20", edge_id="edge-7")

    assert resolve(settings, {}) is settings


@pytest.mark.parametrize("field", ["public_address", "edge_id"])
def test_ecs_outside_ecs_is_refused_naming_the_variable(field: str) -> None:
    settings = RelaySettings(**{field: "ecs"})  # type: ignore[arg-type]

    with pytest.raises(
        EcsIdentityError, match="=ecs, but ECS_CONTAINER_METADATA_URI_V4 is not set"
    ):
        resolve(settings, {})


def test_a_metadata_url_that_is_not_http_is_refused() -> None:
    settings = RelaySettings(public_address="ecs")

    with pytest.raises(EcsIdentityError, match="must be an http URL"):
        resolve(settings, {"ECS_CONTAINER_METADATA_URI_V4": "file:///etc/passwd"})
