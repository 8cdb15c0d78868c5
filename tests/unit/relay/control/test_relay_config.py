"""Relay settings from the environment: local defaults, every variable, precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.config import RelayConfigError, RelaySettings
from relay.transport.dns import DnsSettings
from relay.transport.tls import ensure_self_signed


def test_an_empty_environment_runs_next_to_make_dev() -> None:
    settings = RelaySettings.from_env({})
    assert settings == RelaySettings()
    assert settings.control_url == "http://127.0.0.1:8000"
    assert (settings.sip_host, settings.sip_port, settings.tls_port) == ("127.0.0.1", 5060, 5061)
    assert (settings.rtp_port_min, settings.rtp_port_max) == (20000, 20999)
    assert settings.decision_timeout_s == 4.0
    assert (settings.invite_burst, settings.invite_rate_per_s) == (20, 5.0)  # docs/relay.md
    assert settings.spool_dir == Path(".dev/relay-spool")
    assert settings.advertised_address == "127.0.0.1"
    assert not settings.tls_enabled


def test_every_variable_is_read() -> None:
    settings = RelaySettings.from_env(
        {
            "SIPLINE_CONTROL_URL": "https://api.example/prod/",
            "SIPLINE_WEBHOOK_SECRET": "whsec_1",
            "SIPLINE_COMMAND_QUEUE_URL": "https://sqs.example/1/commands",
            "SIPLINE_COMMAND_DLQ_URL": "https://sqs.example/1/commands-dlq",
            "SIPLINE_PASSWORD_KEY": "fernet-key",
            "SIPLINE_KMS_KEY_ID": "alias/sipline",
            "SIPLINE_SIP_HOST": "0.0.0.0",
            "SIPLINE_SIP_PORT": "5080",
            "SIPLINE_TLS_PORT": "5081",
            "SIPLINE_PUBLIC_ADDRESS": "198.51.100.20",
            "SIPLINE_RTP_PORTS": "30000 - 30099",
            "SIPLINE_TLS_CERT": "/certs/edge.pem",
            "SIPLINE_TLS_KEY": "/certs/edge.key",
            "SIPLINE_DECISION_TIMEOUT_S": "1.5",
            "SIPLINE_EVENTS_TIMEOUT_S": "4",
            "SIPLINE_RETRY_AFTER_S": "9",
            "SIPLINE_SPOOL_DIR": "/var/spool/sipline",
            "SIPLINE_SPOOL_MAX_BYTES": "1048576",
            "SIPLINE_ALLOWLIST_REFRESH_S": "30",
            "SIPLINE_ALLOWLIST_MAX_AGE_S": "600",
            "SIPLINE_INVITE_RATE_PER_S": "50",
            "SIPLINE_INVITE_BURST": "200",
            "SIPLINE_EDGE_ID": "edge-7",
            "SIPLINE_DNS_SERVERS": "10.0.0.2, 127.0.0.1:5353, [::1]:53",
            "SIPLINE_DNS_TIMEOUT_S": "0.5",
            "SIPLINE_DNS_DEADLINE_S": "3",
        }
    )
    assert settings == RelaySettings(
        control_url="https://api.example/prod",
        webhook_secret="whsec_1",
        command_queue_url="https://sqs.example/1/commands",
        command_dead_letter_queue_url="https://sqs.example/1/commands-dlq",
        password_key="fernet-key",
        kms_key_id="alias/sipline",
        sip_host="0.0.0.0",
        sip_port=5080,
        tls_port=5081,
        public_address="198.51.100.20",
        rtp_port_min=30000,
        rtp_port_max=30099,
        tls_cert_path=Path("/certs/edge.pem"),
        tls_key_path=Path("/certs/edge.key"),
        decision_timeout_s=1.5,
        events_timeout_s=4.0,
        retry_after_s=9,
        spool_dir=Path("/var/spool/sipline"),
        spool_max_bytes=1048576,
        allowlist_refresh_s=30.0,
        allowlist_max_age_s=600.0,
        invite_rate_per_s=50.0,
        invite_burst=200,
        edge_id="edge-7",
        dns=DnsSettings(
            nameservers=(("10.0.0.2", 53), ("127.0.0.1", 5353), ("::1", 53)),
            timeout_s=0.5,
            deadline_s=3.0,
        ),
    )
    assert settings.advertised_address == "198.51.100.20"
    assert settings.tls_enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SIPLINE_SIP_PORT": "70000"},
            "SIPLINE_SIP_PORT must be a port from 1 to 65535 (got '70000')",
        ),
        (
            {"SIPLINE_TLS_PORT": "tls"},
            "SIPLINE_TLS_PORT must be a port from 1 to 65535 (got 'tls')",
        ),
        (
            {"SIPLINE_RTP_PORTS": "20000"},
            "SIPLINE_RTP_PORTS must look like 20000-20999 (got '20000')",
        ),
        ({"SIPLINE_RTP_PORTS": "21000-20000"}, "SIPLINE_RTP_PORTS must go from low to high"),
        ({"SIPLINE_DECISION_TIMEOUT_S": "soon"}, "SIPLINE_DECISION_TIMEOUT_S must be a number"),
        ({"SIPLINE_DECISION_TIMEOUT_S": "0"}, "SIPLINE_DECISION_TIMEOUT_S must be positive"),
        ({"SIPLINE_INVITE_RATE_PER_S": "0"}, "SIPLINE_INVITE_RATE_PER_S must be positive"),
        (
            {"SIPLINE_INVITE_BURST": "2.5"},
            "SIPLINE_INVITE_BURST must be a whole number from 1 (got '2.5')",
        ),
        (
            {"SIPLINE_DNS_SERVERS": "10.0.0.2,dns.example"},
            "SIPLINE_DNS_SERVERS: 'dns.example' is not a DNS server address",
        ),
        (
            {"SIPLINE_DNS_SERVERS": "127.0.0.1:0"},
            "SIPLINE_DNS_SERVERS: '127.0.0.1:0' is not a DNS server address",
        ),
        ({"SIPLINE_DNS_TIMEOUT_S": "0"}, "SIPLINE_DNS_TIMEOUT_S must be positive"),
        ({"SIPLINE_DNS_DEADLINE_S": "never"}, "SIPLINE_DNS_DEADLINE_S must be a number"),
        (
            {"SIPLINE_TLS_CERT": "/c.pem"},
            "SIPLINE_TLS_CERT and SIPLINE_TLS_KEY must be set together",
        ),
    ],
)
def test_a_malformed_variable_is_named_in_the_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(RelayConfigError) as raised:
        RelaySettings.from_env(env)
    assert str(raised.value).startswith(message)


def test_the_own_command_queue_prefix_defaults_to_sipline_edge_and_is_checked() -> None:
    """docs/relay.md, Configuration: 1 to 40 of A-Z a-z 0-9 _ -, as SQS names allow."""
    assert RelaySettings.from_env({}).edge_queue_prefix == "sipline-edge-"
    given = RelaySettings.from_env({"SIPLINE_EDGE_QUEUE_PREFIX": "prod_edge-"})
    assert given.edge_queue_prefix == "prod_edge-"
    with pytest.raises(RelayConfigError, match="SIPLINE_EDGE_QUEUE_PREFIX must be 1 to 40"):
        RelaySettings.from_env({"SIPLINE_EDGE_QUEUE_PREFIX": "edge.queue"})


def test_a_tls_ca_file_is_loaded_at_start_and_a_bad_one_is_named(tmp_path: Path) -> None:
    assert RelaySettings.from_env({}).tls_ca_file is None  # the system store alone
    bundle = tmp_path / "trunks-ca.pem"
    ensure_self_signed(bundle, tmp_path / "ca.key", ["trunk.test"])
    assert RelaySettings.from_env({"SIPLINE_TLS_CA_FILE": str(bundle)}).tls_ca_file == bundle

    (tmp_path / "empty.pem").write_text("not a certificate\n")
    for path in (tmp_path / "missing.pem", tmp_path / "empty.pem"):
        with pytest.raises(RelayConfigError, match="SIPLINE_TLS_CA_FILE: cannot load CA"):
            RelaySettings.from_env({"SIPLINE_TLS_CA_FILE": str(path)})
