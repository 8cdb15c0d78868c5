"""The relay's draining, capacity and metrics settings (``relay/config.py``), against the
Configuration table of docs/relay.md: defaults that keep today's behaviour, and errors that name
the variable."""

from __future__ import annotations

import pytest

from relay.config import RelayConfigError, RelaySettings


def test_unset_they_keep_todays_behaviour() -> None:
    """docs/relay.md: SIPLINE_DRAIN_S 0 (hang up at once), no health port, no cap, no metrics."""
    settings = RelaySettings.from_env({})
    assert (settings.drain_s, settings.health_port, settings.max_calls) == (0.0, None, 0)
    assert (settings.metrics, settings.stage) == (None, "local")


def test_they_are_read() -> None:
    settings = RelaySettings.from_env(
        {
            "SIPLINE_DRAIN_S": "100",
            "SIPLINE_HEALTH_PORT": "8060",
            "SIPLINE_MAX_CALLS": "200",
            "SIPLINE_METRICS": "emf",
            "SIPLINE_STAGE": "prod",
        }
    )
    assert (settings.drain_s, settings.health_port, settings.max_calls) == (100.0, 8060, 200)
    assert (settings.metrics, settings.stage) == ("emf", "prod")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIPLINE_DRAIN_S": "-1"}, "SIPLINE_DRAIN_S must be from 0 to 3600 (got '-1')"),
        ({"SIPLINE_DRAIN_S": "3601"}, "SIPLINE_DRAIN_S must be from 0 to 3600 (got '3601')"),
        ({"SIPLINE_DRAIN_S": "soon"}, "SIPLINE_DRAIN_S must be a number from 0 (got 'soon')"),
        ({"SIPLINE_DRAIN_S": "nan"}, "SIPLINE_DRAIN_S must be from 0 to 3600 (got 'nan')"),
        ({"SIPLINE_MAX_CALLS": "1.5"}, "SIPLINE_MAX_CALLS must be a whole number from 0"),
        ({"SIPLINE_MAX_CALLS": "-3"}, "SIPLINE_MAX_CALLS must be from 0 to"),
        ({"SIPLINE_HEALTH_PORT": "70000"}, "SIPLINE_HEALTH_PORT must be a port from 1 to 65535"),
        ({"SIPLINE_HEALTH_PORT": "5060"}, "SIPLINE_HEALTH_PORT must differ from the SIP and TLS"),
        (
            {"SIPLINE_HEALTH_PORT": "5081", "SIPLINE_TLS_PORT": "5081"},
            "SIPLINE_HEALTH_PORT must differ from the SIP and TLS",
        ),
        ({"SIPLINE_METRICS": "prometheus"}, "SIPLINE_METRICS must be unset or one of emf"),
    ],
)
def test_a_malformed_value_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(RelayConfigError) as raised:
        RelaySettings.from_env(env)
    assert message in str(raised.value)
