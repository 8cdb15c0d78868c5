"""Fixtures of the interop suite: one local stack (moto, chalice local, relay) and one test agent.

The stack runs the way ``make dev`` runs it, on free ports of 127.0.0.1, with the demo agent as
the default media endpoint. Every module creates its own agents and patterns on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.localstack import Credentials, LocalStack, free_port
from tests.interop.agent_server import AgentServer
from tests.interop.stack import (
    LOOPBACK,
    RELAY_RTP_PORTS,
    InteropStack,
    free_port_range,
    free_sip_port,
)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteropStack]:
    home = tmp_path_factory.mktemp("interop-stack")
    local = LocalStack(
        Credentials.load_or_create(home / "credentials.json"),
        moto_port=free_port(),
        api_port=free_port(),
        log_dir=home / "logs",
        state_dir=home,
        sip_port=free_sip_port(),
        tls_port=free_port(),
        rtp_ports=free_port_range(200, *RELAY_RTP_PORTS),
        agent_port=free_port(),
    )
    try:
        local.start()
        local.start_demo_agent()
        local.start_relay()
        interop = InteropStack(local, home)
        interop.set_allowed_cidrs([f"{LOOPBACK}/32"])
        yield interop
    finally:
        local.stop()


@pytest.fixture(scope="session")
def agent_server() -> Iterator[AgentServer]:
    with AgentServer() as server:
        yield server
