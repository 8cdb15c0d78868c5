from __future__ import annotations

import pytest

from chalicelib.services import Services
from tests.support.fakes import FixedClock, make_services


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def services(clock: FixedClock) -> Services:
    return make_services(clock=clock, default_media_endpoint="ws://127.0.0.1:9000/agent")
