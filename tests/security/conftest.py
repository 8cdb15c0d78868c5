"""The security tests run the app as deployed: no private targets allowed, and a DNS they control.

The route-test fixtures (``tests/integration/conftest.py``) are reused, except ``services``: here
it has the deployment default, ``SIPLINE_ALLOWED_PRIVATE_TARGETS`` unset, and resolves names with
:class:`FakeDns` (names it does not know go to the system's resolver, which answers ``localhost``
and numeric forms such as ``2130706433`` itself).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from chalicelib.commands import SqsCommandSender
from chalicelib.egress import system_resolver
from chalicelib.fallback import HttpFallbackClient
from chalicelib.services import Services
from chalicelib.store.dynamodb import DynamoTable
from chalicelib.store.repository import Store
from tests.integration.conftest import (  # noqa: F401 (fixtures pytest finds by name)
    api,
    aws,
    boto_clients,
    clock,
    fallback_server,
    queue,
)
from tests.integration.harness import TABLE, Aws
from tests.support.fakes import FixedClock, make_services

PUBLIC_ADDRESS = "93.184.215.14"
"""A globally reachable address (no test connects to it)."""


@dataclass
class FakeDns:
    """Answers from ``zone`` (a list per name: later lookups take the next answer, the last one
    repeating, as a rebinding DNS server would); counts the lookups of each name."""

    zone: dict[str, list[list[str]]] = field(default_factory=dict)
    lookups: dict[str, int] = field(default_factory=dict)

    def __call__(self, host: str, port: int) -> Sequence[str]:
        answers = self.zone.get(host)
        if answers is None:
            return system_resolver(host, port)
        count = self.lookups.get(host, 0)
        self.lookups[host] = count + 1
        answer = answers[min(count, len(answers) - 1)]
        if not answer:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answer


@pytest.fixture
def dns() -> FakeDns:
    return FakeDns(
        {
            "agent.example.com": [[PUBLIC_ADDRESS]],
            "pbx.corp.example": [["10.20.30.40"]],
            "mixed.example.com": [[PUBLIC_ADDRESS, "169.254.169.254"]],
            "rebind.example.com": [[PUBLIC_ADDRESS], ["127.0.0.1"]],
        }
    )


@pytest.fixture
def services(aws: Aws, clock: FixedClock, dns: FakeDns) -> Services:  # noqa: F811 (fixtures)
    """The route tests' services with the deployment's default egress policy and ``dns``."""
    built = make_services(
        commands=SqsCommandSender(aws.sqs, aws.queue_url), clock=clock, table_name=TABLE
    )
    built.store = Store(DynamoTable(aws.dynamodb, TABLE))
    built.resolve = dns
    built.fallback = HttpFallbackClient(timeout_s=5.0, egress=built.settings.egress, resolve=dns)
    return built
