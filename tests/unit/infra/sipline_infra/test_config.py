"""``StageConfig.from_context``: defaults per stage, values from ``-c key=value`` or cdk.json, and
a clear error naming the key for anything malformed (docs/deployment.md, "The CDK app")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sipline_infra.config import ConfigError, StageConfig


def read(context: dict[str, Any]) -> StageConfig:
    return StageConfig.from_context(context.get)


def test_dev_is_the_default_stage_with_the_contracts_defaults() -> None:
    config = read({})
    assert config.stage == "dev" and config.name("edge-") == "sipline-dev-edge-"
    assert config.removal_retain is False and config.deletion_protection is True
    assert config.rtp_port_range == (20000, 20999)
    assert (config.relay_cpu, config.relay_memory) == (1024, 2048)
    assert (config.min_relays, config.max_relays) == (2, 10)
    assert (config.target_calls_per_relay, config.drain_seconds) == (100, 100)
    assert config.carrier_cidrs == ("0.0.0.0/0",)
    assert config.sip_domain is config.tls_secret_arn is config.alarm_email is None
    assert config.snap_start is False and config.tracing is False
    assert config.lambda_package_dir is None and config.api_reserved_concurrency is None
    assert config.log_retention_days == 30
    assert config.max_concurrent_calls == 50  # the control plane's default (docs/api.md)


def test_prod_retains_its_data_and_may_grow_further() -> None:
    config = read({"stage": "prod"})
    assert config.name("table") == "sipline-prod-table"
    assert config.removal_retain is True and config.max_relays == 20


def test_command_line_strings_and_cdk_json_values_read_alike(tmp_path: Path) -> None:
    strings = read(
        {
            "stage": "staging",
            "snap_start": "true",
            "tracing": "false",
            "min_relays": "3",
            "max_relays": "4",
            "rtp_port_range": "30000-30999",
            "carrier_cidrs": "203.0.113.0/24, 198.51.100.7/32",
            "package_dir": str(tmp_path),
            "log_retention_days": "0",
            "api_reserved_concurrency": "50",
        }
    )
    values = read(
        {
            "stage": "staging",
            "snap_start": True,
            "tracing": False,
            "min_relays": 3,
            "max_relays": 4,
            "rtp_port_range": "30000-30999",
            "carrier_cidrs": ["203.0.113.0/24", "198.51.100.7/32"],
            "package_dir": str(tmp_path),
            "log_retention_days": 0,
            "api_reserved_concurrency": 50,
        }
    )
    assert strings == values
    assert strings.snap_start is True and strings.rtp_port_range == (30000, 30999)
    assert strings.carrier_cidrs == ("203.0.113.0/24", "198.51.100.7/32")
    assert strings.lambda_package_dir == tmp_path and strings.api_reserved_concurrency == 50


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"stage": "Prod"}, "context stage"),
        ({"stage": "averyverylongstage"}, "context stage"),
        ({"snap_start": "yes"}, "context snap_start: expected true or false"),
        ({"min_relays": "0"}, "context min_relays: expected a whole number from 1"),
        ({"min_relays": "two"}, "context min_relays"),
        ({"min_relays": "5", "max_relays": "4"}, "max_relays .4. is below min_relays .5."),
        ({"rtp_port_range": "20000"}, "context rtp_port_range: expected FIRST-LAST"),
        ({"rtp_port_range": "999-2000"}, "context rtp_port_range"),
        ({"log_retention_days": "31"}, "context log_retention_days: expected one of"),
        ({"carrier_cidrs": " , "}, "context carrier_cidrs"),
        ({"sip_domain": 7}, "context sip_domain: expected a string"),
    ],
)
def test_a_malformed_value_names_its_key(context: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read(context)
