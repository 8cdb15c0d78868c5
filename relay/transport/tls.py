"""TLS contexts for SIP over TLS (RFC 3261 §26.3.1), and a self-signed certificate for local use.

The server context presents a certificate; the client context verifies the peer's chain and
name unless told not to (``verify=False``: local self-signed peers only). Both refuse anything
older than TLS 1.2 (RFC 8996 deprecates 1.0 and 1.1).

Which name the client checks is the caller's to say (``server_hostname``): the transport gives
the destination's ``tls_name``, the domain of the URI that was located (RFC 5922 §4), and
OpenSSL matches it against the certificate's subjectAltName: a DNS name against its DNS
entries, an IP address against its IP entries (the subject's CN only in a certificate without
subjectAltName; a ``sip:`` URI entry, RFC 5922 §7.1, is not read). The chain must end at the system's trust store, or at a certificate of the relay's CA bundle
(``SIPLINE_TLS_CA_FILE``), which is trusted as well as the store. :func:`connect_failure` tells
a certificate that does not verify from any other failure to connect.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from relay.sip.address import TransportFailure

__all__ = [
    "client_context",
    "connect_failure",
    "ensure_self_signed",
    "server_context",
    "write_pem_pair",
]

SELF_SIGNED_VALID_DAYS = 365
PEM_MAX_BYTES = 65536
"""Bound on a certificate chain or a key given as text: Secrets Manager's own limit on a secret
value (the relay's PEM variables come from one, docs/relay.md)."""


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """Return a server context presenting the PEM certificate chain and key.

    Raises:
        OSError: a file is missing; ``ssl.SSLError``: they do not load or do not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context


def client_context(*, verify: bool = True, cafile: Path | None = None) -> ssl.SSLContext:
    """Return a client context for outgoing TLS connections.

    Args:
        verify: check the server's chain and that its certificate names the server wanted
            (the connection's ``server_hostname``). Off only for local self-signed peers.
        cafile: also trust these PEM certificates, besides the system store (a private
            trunk's CA, a local self-signed certificate; verification stays on).

    Raises:
        OSError: ``cafile`` cannot be read; ``ssl.SSLError``: it holds no certificate.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if cafile is not None:
        context.load_verify_locations(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect_failure(error: OSError) -> TransportFailure:
    """Return what kind of failure to connect ``error`` is: a certificate that is not trusted,
    or does not name the server wanted, is ``TLS_UNVERIFIED``; anything else ``UNREACHABLE``."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return TransportFailure.TLS_UNVERIFIED
    return TransportFailure.UNREACHABLE


def ensure_self_signed(
    cert_path: Path,
    key_path: Path,
    hostnames: Sequence[str],
    *,
    valid_days: int = SELF_SIGNED_VALID_DAYS,
) -> bool:
    """Create a self-signed certificate and key for ``hostnames`` unless both files exist.

    Names that parse as IP addresses go in the subjectAltName as addresses, the rest as DNS
    names. The key (P-256, unencrypted PEM) is written with mode 0600.

    Returns:
        True when the files were created, False when both already existed.
    """
    if cert_path.exists() and key_path.exists():
        return False
    names = list(hostnames) or ["localhost"]
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _self_signed(key, names, valid_days)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, mode=0o600)
    _write(cert_path, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return True


def _self_signed(
    key: ec.EllipticCurvePrivateKey, names: list[str], valid_days: int
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.now(UTC)
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _alt_names(names: list[str]) -> list[x509.GeneralName]:
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    return alt_names


def _write(path: Path, data: bytes, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(descriptor, mode)  # the mode above applies only to a file it creates
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def write_pem_pair(directory: Path, cert_pem: str, key_pem: str) -> tuple[Path, Path]:
    """Write a certificate chain and its key, given as PEM text, to files; return their paths.

    ``directory`` is made private (0700; an existing one is set so) and the two files are
    written anew, 0600, never through a link: ``relay.pem`` and ``relay.key``. They are loaded
    once here, so that a bad pair stops the relay at start. No message quotes the text.

    Raises:
        ValueError: a text is over ``PEM_MAX_BYTES``, is not PEM, or the pair does not load.
    """
    for what, text in (("certificate", cert_pem), ("key", key_pem)):
        if len(text.encode()) > PEM_MAX_BYTES:
            raise ValueError(f"the {what} is over {PEM_MAX_BYTES} bytes")
        if "-----BEGIN " not in text:
            raise ValueError(f"the {what} is not PEM text (no -----BEGIN line)")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.is_symlink() or not directory.is_dir():
        raise ValueError(f"{directory} is not a directory")
    directory.chmod(0o700)
    cert_path, key_path = directory / "relay.pem", directory / "relay.key"
    for path, text in ((key_path, key_pem), (cert_path, cert_pem)):
        path.unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(path, flags, 0o600), "w") as file:
            file.write(text.strip() + "\n")
    try:
        server_context(cert_path, key_path)
    except OSError as error:  # ssl.SSLError is an OSError; its text names no key material
        raise ValueError(f"they do not load as a certificate chain and its key: {error}") from None
    return cert_path, key_path
