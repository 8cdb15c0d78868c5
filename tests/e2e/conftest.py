from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.localstack import LocalStack
from tests.support.localstack import local_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """moto server + chalice local on free ports, started the way ``make dev`` starts them."""
    with local_stack(tmp_path_factory.mktemp("localstack")) as local:
        yield local
