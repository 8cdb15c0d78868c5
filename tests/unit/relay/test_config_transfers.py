"""The relay's transfer settings (``relay/config.py``), against the Configuration table of
docs/relay.md: ``SIPLINE_WARM_DECISION_TIMEOUT_S`` 120 unset, a positive number at most 600,
errors that name the variable."""

from __future__ import annotations

import pytest

from relay.config import RelayConfigError, RelaySettings


def test_the_warm_decision_timeout_is_120_s_unset_and_read_when_set() -> None:
    assert RelaySettings.from_env({}).warm_decision_timeout_s == 120.0
    env = {"SIPLINE_WARM_DECISION_TIMEOUT_S": "600"}
    assert RelaySettings.from_env(env).warm_decision_timeout_s == 600.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("601", "SIPLINE_WARM_DECISION_TIMEOUT_S must be at most 600 (got '601')"),
        ("0", "SIPLINE_WARM_DECISION_TIMEOUT_S must be positive (got '0')"),
        ("soon", "SIPLINE_WARM_DECISION_TIMEOUT_S must be a number (got 'soon')"),
    ],
)
def test_a_warm_decision_timeout_out_of_bounds_is_named(value: str, message: str) -> None:
    with pytest.raises(RelayConfigError) as raised:
        RelaySettings.from_env({"SIPLINE_WARM_DECISION_TIMEOUT_S": value})
    assert message in str(raised.value)
