"""TLS contexts and the local self-signed certificate (files only, no sockets)."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from relay.transport.tls import client_context, ensure_self_signed, server_context


def test_ensure_self_signed_creates_a_certificate_naming_every_host(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls" / "sip.crt", tmp_path / "tls" / "sip.key"

    assert ensure_self_signed(cert, key, ["localhost", "127.0.0.1", "::1"]) is True

    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert certificate.issuer == certificate.subject
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert 365 <= lifetime.days <= 366
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_ensure_self_signed_keeps_existing_files(tmp_path: Path) -> None:
    cert, key = tmp_path / "sip.crt", tmp_path / "sip.key"
    ensure_self_signed(cert, key, ["localhost"])
    before = cert.read_bytes(), key.read_bytes()

    assert ensure_self_signed(cert, key, ["other.example"]) is False
    assert (cert.read_bytes(), key.read_bytes()) == before


def test_ensure_self_signed_replaces_a_pair_with_a_missing_half(tmp_path: Path) -> None:
    cert, key = tmp_path / "sip.crt", tmp_path / "sip.key"
    ensure_self_signed(cert, key, ["localhost"])
    key.unlink()

    assert ensure_self_signed(cert, key, ["localhost"]) is True
    server_context(cert, key)  # the new key matches the new certificate


def test_the_server_context_loads_the_pair_and_refuses_a_mismatched_key(tmp_path: Path) -> None:
    cert, key = tmp_path / "a.crt", tmp_path / "a.key"
    other_cert, other_key = tmp_path / "b.crt", tmp_path / "b.key"
    ensure_self_signed(cert, key, ["localhost"])
    ensure_self_signed(other_cert, other_key, ["localhost"])

    context = server_context(cert, key)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        server_context(cert, other_key)


def test_the_client_context_verifies_chain_and_name_unless_told_not_to(tmp_path: Path) -> None:
    cert, key = tmp_path / "sip.crt", tmp_path / "sip.key"
    ensure_self_signed(cert, key, ["localhost"])

    strict, lax = client_context(cafile=cert), client_context(verify=False)

    assert (strict.verify_mode, strict.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert (lax.verify_mode, lax.check_hostname) == (ssl.CERT_NONE, False)
    assert strict.minimum_version is lax.minimum_version is ssl.TLSVersion.TLSv1_2


def test_a_ca_file_is_trusted_as_well_as_the_system_store(tmp_path: Path) -> None:
    # SIPLINE_TLS_CA_FILE adds a private trunk's CA; public trunks keep the system's CAs.
    cert, key = tmp_path / "ca.crt", tmp_path / "ca.key"
    ensure_self_signed(cert, key, ["trunk.test"])
    system = ssl.create_default_context().cert_store_stats()["x509"]

    assert client_context(cafile=cert).cert_store_stats()["x509"] == system + 1
