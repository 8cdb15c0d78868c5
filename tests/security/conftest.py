"""The security tests attack the same app the route tests drive: reuse their fixtures (a fresh
moto table and queue, the fixed clock, services on DynamoDB, the JSON client, log capture).

A module may replace ``services`` (``test_templates_and_urls.py`` runs the deployment's default
egress policy with a DNS it controls).
"""

from tests.integration.conftest import (  # noqa: F401 (fixtures, found by pytest by name)
    api,
    aws,
    boto_clients,
    clock,
    fallback_server,
    log_output,
    queue,
    services,
)
