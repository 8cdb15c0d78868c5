"""The connect attempts' retry policy."""

from __future__ import annotations

import pytest

from relay.bridge.connect import _is_permanent


@pytest.mark.parametrize(
    ("status", "permanent"), [(404, True), (403, True), (408, False), (429, False), (503, False)]
)
def test_only_client_errors_stop_the_retries(status: int, permanent: bool) -> None:
    assert _is_permanent(status) is permanent
