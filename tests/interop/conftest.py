"""Fixtures of the interop suite: one local stack (moto, chalice local, relay) and one test agent.

The stack runs the way ``make dev`` runs it, on free ports of 127.0.0.1 below the ephemeral range
(tests/support/ports.py), with the demo agent as the default media endpoint. Every module creates
its own agents and patterns on it. The account admits 127.0.0.1 for the whole session; a test
that changes the allowlist does it for itself only (``InteropStack.allowed_cidrs``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.agent_server import AgentServer
from tests.interop.stack import LOOPBACK, InteropStack
from tests.support.localstack import local_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteropStack]:
    home = tmp_path_factory.mktemp("interop-stack")
    with local_stack(home, relay=True) as local:
        interop = InteropStack(local, home)
        interop.set_allowed_cidrs([f"{LOOPBACK}/32"])
        yield interop


@pytest.fixture(scope="session")
def agent_server() -> Iterator[AgentServer]:
    with AgentServer() as server:
        yield server
