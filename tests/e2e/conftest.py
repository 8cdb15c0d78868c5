from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.localstack import Credentials, LocalStack, free_port


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """moto server + chalice local on free ports, started the way ``make dev`` starts them."""
    home = tmp_path_factory.mktemp("localstack")
    local = LocalStack(
        Credentials.load_or_create(home / "credentials.json"),
        moto_port=free_port(),
        api_port=free_port(),
        log_dir=home / "logs",
    )
    try:
        local.start()
        yield local
    finally:
        local.stop()
