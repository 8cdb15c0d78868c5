"""``SIPLINE_TLS_CERT_PEM`` / ``SIPLINE_TLS_KEY_PEM``: the TLS pair as text, as ECS injects a secret.

docs/relay.md (Configuration) and docs/security.md (TLS private key): the text is written to 0600
files in a 0700 directory under the spool directory and loaded like ``SIPLINE_TLS_CERT``/``_KEY``;
it is exclusive with them, both of a pair or neither, and no error message quotes it.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from relay.config import RelayConfigError, RelaySettings
from relay.transport.tls import PEM_MAX_BYTES, ensure_self_signed


@pytest.fixture
def pem(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "made" / "edge.pem", tmp_path / "made" / "edge.key"
    ensure_self_signed(cert, key, ["sip.example.com"])
    return cert.read_text(), key.read_text()


def _env(spool: Path, cert: str | None, key: str | None, **more: str) -> dict[str, str]:
    env = {"SIPLINE_SPOOL_DIR": str(spool), **more}
    if cert is not None:
        env["SIPLINE_TLS_CERT_PEM"] = cert
    if key is not None:
        env["SIPLINE_TLS_KEY_PEM"] = key
    return env


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_pem_text_becomes_private_files_under_the_spool(
    tmp_path: Path, pem: tuple[str, str]
) -> None:
    spool = tmp_path / "spool"

    settings = RelaySettings.from_env(_env(spool, *pem))

    assert settings.tls_enabled
    assert settings.tls_cert_path == spool / "tls" / "relay.pem"
    assert settings.tls_key_path == spool / "tls" / "relay.key"
    assert settings.tls_cert_path.read_text() == pem[0]
    assert settings.tls_key_path.read_text() == pem[1]
    assert _mode(spool / "tls") == 0o700
    assert (_mode(settings.tls_cert_path), _mode(settings.tls_key_path)) == (0o600, 0o600)
    assert "PRIVATE KEY" not in repr(settings)


def test_a_restart_rewrites_the_files_and_makes_the_directory_private_again(
    tmp_path: Path, pem: tuple[str, str]
) -> None:
    spool = tmp_path / "spool"
    (spool / "tls").mkdir(parents=True, mode=0o755)
    (spool / "tls").chmod(0o755)
    (spool / "tls" / "relay.key").write_text("an old key")
    (spool / "tls" / "relay.key").chmod(0o644)

    settings = RelaySettings.from_env(_env(spool, *pem))

    assert settings.tls_key_path is not None
    assert settings.tls_key_path.read_text() == pem[1]
    assert (_mode(spool / "tls"), _mode(settings.tls_key_path)) == (0o700, 0o600)


def test_the_pem_pair_and_the_path_pair_are_exclusive(tmp_path: Path, pem: tuple[str, str]) -> None:
    env = _env(tmp_path, *pem, SIPLINE_TLS_CERT="/certs/edge.pem", SIPLINE_TLS_KEY="/k")

    with pytest.raises(RelayConfigError) as raised:
        RelaySettings.from_env(env)

    assert str(raised.value) == (
        "SIPLINE_TLS_CERT/_KEY and SIPLINE_TLS_CERT_PEM/_KEY_PEM both give the TLS certificate: "
        "set one pair, not both"
    )
    assert not (tmp_path / "tls").exists()


@pytest.mark.parametrize("missing", ["cert", "key"])
def test_half_a_pem_pair_is_refused(tmp_path: Path, pem: tuple[str, str], missing: str) -> None:
    cert, key = pem
    env = _env(tmp_path, None if missing == "cert" else cert, None if missing == "key" else key)

    with pytest.raises(RelayConfigError, match="must be set together"):
        RelaySettings.from_env(env)


def test_a_key_that_is_not_the_certificates_is_refused_without_quoting_it(
    tmp_path: Path, pem: tuple[str, str]
) -> None:
    other = tmp_path / "other"
    ensure_self_signed(other / "c.pem", other / "k.pem", ["other.example.com"])
    wrong_key = (other / "k.pem").read_text()

    with pytest.raises(RelayConfigError) as raised:
        RelaySettings.from_env(_env(tmp_path / "spool", pem[0], wrong_key))

    message = str(raised.value)
    assert message.startswith("SIPLINE_TLS_CERT_PEM/_KEY_PEM: they do not load"), message
    body = wrong_key.splitlines()[1]
    assert body not in message and "PRIVATE KEY" not in message


def test_text_that_is_not_pem_is_refused_without_quoting_it(
    tmp_path: Path, pem: tuple[str, str]
) -> None:
    with pytest.raises(RelayConfigError) as raised:
        RelaySettings.from_env(_env(tmp_path, pem[0], "hunter2-not-a-key"))

    assert str(raised.value) == (
        "SIPLINE_TLS_CERT_PEM/_KEY_PEM: the key is not PEM text (no -----BEGIN line)"
    )


def test_a_certificate_over_the_secrets_manager_limit_is_refused(
    tmp_path: Path, pem: tuple[str, str]
) -> None:
    chain = pem[0] * (PEM_MAX_BYTES // len(pem[0]) + 1)

    with pytest.raises(RelayConfigError, match=f"the certificate is over {PEM_MAX_BYTES} bytes"):
        RelaySettings.from_env(_env(tmp_path, chain, pem[1]))
