"""A stand-in ECS task metadata endpoint, and a task's network interface in moto's EC2.

``MetadataServer`` is a real HTTP server on an address of the test's (127.0.0.1, or one inside a
network namespace the test made) that answers ``GET /v4/<id>/task`` with a document (AWS's
documented example of tests/vectors/ecs/, adapted), or with a status, or holds the connection
without answering; it counts what it was asked. ``task_interface`` makes, in moto's EC2, the
ENI the document describes (a VPC, a subnet, the ENI at the document's private address) and,
when asked, an Elastic IP associated with it, which moto then reports as the ENI's
``Association.PublicIp``, as EC2 does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

VECTOR = Path(__file__).parents[1] / "vectors" / "ecs" / "task_metadata_v4_fargate.json"
DOCUMENTED_PRIVATE_IPV4 = "172.31.42.189"
DOCUMENTED_MAC = "0e:98:9f:33:76:d3"
DOCUMENTED_TASK_ID = "bfa2636268144d039771334145e490c5"
"""The vector's values (tests/vectors/ecs/README.md)."""
METADATA_PATH = "/v4/bfa2636268144d039771334145e490c5-1117626119"
"""What ``ECS_CONTAINER_METADATA_URI_V4`` names after its host (the container's DockerId)."""
HOLD_BOUND_S = 30.0
"""A held request is released after this at the latest, so no test hangs on one."""


def task_document(
    *, private_ipv4: str = DOCUMENTED_PRIVATE_IPV4, mac: str = DOCUMENTED_MAC
) -> bytes:
    """AWS's documented ``/task`` answer, with the ENI's address and MAC replaced."""
    document: dict[str, Any] = json.loads(VECTOR.read_text())
    for container in document["Containers"]:
        for network in container["Networks"]:
            network["IPv4Addresses"] = [private_ipv4]
            network["MACAddress"] = mac
    return json.dumps(document, indent=2).encode()


@dataclass
class MetadataServer:
    """What the endpoint answers (``body`` with ``status``, or nothing while ``hold``)."""

    body: bytes = b""
    status: int = 200
    hold: bool = False
    host: str = "127.0.0.1"
    requests: list[str] = field(default_factory=list)
    _release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The value of ``ECS_CONTAINER_METADATA_URI_V4``."""
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}{METADATA_PATH}"

    @contextmanager
    def running(self) -> Iterator[MetadataServer]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                endpoint.requests.append(self.path)
                if endpoint.hold:
                    endpoint._release.wait(HOLD_BOUND_S)
                    return
                found = self.path == f"{METADATA_PATH}/task"
                self.send_response(endpoint.status if found else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(endpoint.body if found else b"{}")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer((self.host, 0), Handler)
        server.daemon_threads = True
        self._server = server
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._release.set()
            server.shutdown()
            server.server_close()
            thread.join(timeout=HOLD_BOUND_S)


def task_interface(
    ec2: Any,
    *,
    private_ipv4: str = DOCUMENTED_PRIVATE_IPV4,
    subnet_cidr: str = "172.31.32.0/20",
    vpc_cidr: str = "172.31.0.0/16",
    public_ipv4: str | None = None,
) -> str:
    """Make the task's ENI in moto's EC2 (with ``public_ipv4`` as its Elastic IP); return its MAC."""
    vpc = ec2.create_vpc(CidrBlock=vpc_cidr)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=subnet_cidr)["Subnet"]["SubnetId"]
    interface = ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress=private_ipv4)[
        "NetworkInterface"
    ]
    if public_ipv4 is not None:
        allocation = ec2.allocate_address(Domain="vpc", Address=public_ipv4)["AllocationId"]
        ec2.associate_address(
            AllocationId=allocation, NetworkInterfaceId=interface["NetworkInterfaceId"]
        )
    mac: str = interface["MacAddress"]
    return mac
