"""The security tests run the app as deployed: no private targets allowed, and a DNS they control.

The route-test fixtures (``tests/integration/conftest.py``) are reused, except ``services``: here
it has the deployment default, ``SIPLINE_ALLOWED_PRIVATE_TARGETS`` unset, and resolves names with
``tests.support.fakes.FakeDns``.
"""

from __future__ import annotations

import pytest

from chalicelib.commands import SqsCommandSender
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
from tests.support.fakes import PUBLIC_ADDRESS, FakeDns, FixedClock, make_services


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
