"""Kamailio 5.6 as a SIP trunk on 127.0.0.1: Digest authentication, then on to one callee.

`KamailioTrunk` renders ``kamailio/trunk.cfg`` and ``kamailio/tls.cfg`` (their ``@KEY@`` values)
into its own runtime directory, makes a throwaway CA and a server certificate it signs there with
``openssl`` (P-256, two days; subjectAltName ``IP:127.0.0.1`` unless told other names, e.g.
``DNS:trunk.test``; the CA's certificate is `certificate`, what a client trusts), checks the
config (``kamailio -c``) and runs
Kamailio in the foreground under ``timeout -k 3`` on free ports: UDP and TCP on `sip_port`, TLS
on `tls_port`. Every new INVITE is challenged for `TRUNK_USER`/`TRUNK_PASSWORD` in realm
`TRUNK_REALM` (401, or 407 with ``proxy_auth``; MD5, or SHA-256 with ``sha256``; qop=auth); a
wrong password or another user gets 403; the authenticated INVITE is relayed, record-routed,
over UDP to ``sip:<callee_user>@127.0.0.1:<callee_port>`` whatever the Request-URI's user. The
log (stderr, ``debug=2``) is in `log`; the script logs one ``trunk:`` line per INVITE and its
verdict. Stopped (its process group, which the harness started) at exit.

`KamailioProxy` is the same Kamailio with ``kamailio/proxy.cfg``: no authentication; a new
INVITE for `KamailioProxy.operator_user` is record-routed to the operator softphone on
``operator_port`` (the target of a transfer: `KamailioProxy.operator_uri`), any other user gets
404; in-dialog requests follow the route set. With ``auth=True`` it first challenges each new
INVITE with 407 for `TRUNK_USER`/`TRUNK_PASSWORD` (403 for a wrong password).
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tests.interop.stack import require, stop_group
from tests.support.ports import (
    LOOPBACK,
    PortTaken,
    address_in_use,
    free_port,
    free_sip_port,
    with_fresh_ports,
)

CONFIG_DIR = Path(__file__).parent / "kamailio"
TRUNK_USER = "trunkuser"
TRUNK_PASSWORD = "trunk-secret-1"
TRUNK_REALM = "trunk.test"
PLACEHOLDER = re.compile(r"@[A-Z_]+@")
READY_S = 10.0
"""How long Kamailio may take to bind its three sockets: a bound on a wait, not a timing."""


def _bound(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return True
        return False


def _openssl(*arguments: str) -> None:
    subprocess.run([require("openssl"), *arguments], check=True, capture_output=True, timeout=30)


def signed_certificate(folder: Path, names: Sequence[str]) -> Path:
    """Make ``ca.crt`` and ``trunk.crt``/``trunk.key`` in ``folder`` with openssl (not with
    sipline's code): a throwaway CA, and a server certificate it signs whose subjectAltName is
    ``names`` (openssl's form: ``IP:127.0.0.1``, ``DNS:trunk.test``). Return the CA's path."""
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    request, extensions = folder / "trunk.csr", folder / "trunk.ext"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
             "-subj", "/CN=sipline interop test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(folder / "trunk.key"), "-out", str(request),
             "-subj", f"/CN={names[0].partition(':')[2]}")  # fmt: skip
    extensions.write_text(
        f"subjectAltName={','.join(names)}\nbasicConstraints=critical,CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(folder / "trunk.crt"), "-days", "2",
             "-extfile", str(extensions))  # fmt: skip
    return ca


class KamailioTrunk:
    """One Kamailio trunk (see the module docstring); a context manager."""

    config_name = "trunk.cfg"

    def __init__(
        self,
        workdir: Path,
        *,
        callee_port: int,
        callee_user: str = "bob",
        proxy_auth: bool = False,
        sha256: bool = False,
        certificate_names: Sequence[str] = ("IP:127.0.0.1",),
        lifetime_s: int = 120,
    ) -> None:
        self.run_dir = workdir
        self.callee_port, self.callee_user = callee_port, callee_user
        self.defines = [
            name for name, on in (("PROXY_AUTH", proxy_auth), ("WITH_SHA256", sha256)) if on
        ]
        self.lifetime_s = lifetime_s
        self.sip_port = self.tls_port = 0
        self.certificate_names = tuple(certificate_names)
        self.certificate = workdir / "ca.crt"
        """The CA that signed the trunk's certificate: what a TLS client trusts."""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        path = self.run_dir / "kamailio.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def uri(self, user: str, transport: str = "udp") -> str:
        """A Request-URI that reaches the trunk over ``transport`` (udp, tcp or tls)."""
        if transport == "udp":
            return f"sip:{user}@{LOOPBACK}:{self.sip_port}"
        port = self.tls_port if transport == "tls" else self.sip_port
        return f"sip:{user}@{LOOPBACK}:{port};transport={transport}"

    def hostport(self, transport: str = "udp") -> str:
        return f"{LOOPBACK}:{self.tls_port if transport == 'tls' else self.sip_port}"

    def _values(self) -> dict[str, str]:
        return {
            "RUN_DIR": str(self.run_dir),
            "SIP_PORT": str(self.sip_port),
            "TLS_PORT": str(self.tls_port),
            "USER": TRUNK_USER,
            "PASSWORD": TRUNK_PASSWORD,
            "REALM": TRUNK_REALM,
            "CALLEE_USER": self.callee_user,
            "CALLEE_PORT": str(self.callee_port),
        }

    def _render(self) -> Path:
        values = self._values()
        for name in (self.config_name, "tls.cfg"):
            text = (CONFIG_DIR / name).read_text()
            for key, value in values.items():
                text = text.replace(f"@{key}@", value)
            left = PLACEHOLDER.findall(text)
            assert not left, f"{name}: no value for {left}"
            (self.run_dir / name).write_text(text)
        return self.run_dir / self.config_name

    def __enter__(self) -> KamailioTrunk:
        kamailio = require("kamailio")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        signed_certificate(self.run_dir, self.certificate_names)
        with_fresh_ports(lambda: self._start(kamailio))
        return self

    def _command(self, kamailio: str, config: Path) -> list[str]:
        defines = [item for name in self.defines for item in ("-A", name)]
        return [
            kamailio, "-f", str(config), *defines, "-Y", str(self.run_dir),
            "-P", str(self.run_dir / "kamailio.pid"), "-m", "32", "-M", "8",
        ]  # fmt: skip

    def _start(self, kamailio: str) -> None:
        self.sip_port = free_sip_port()
        self.tls_port = free_port(avoid=(self.sip_port,))
        config = self._render()
        check = subprocess.run(
            [*self._command(kamailio, config), "-c"], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, f"kamailio -c:\n{check.stdout}{check.stderr}"
        with open(self.run_dir / "kamailio.log", "wb") as log:
            self._process = subprocess.Popen(
                ["timeout", "-k", "3", str(self.lifetime_s),
                 *self._command(kamailio, config), "-DD", "-E"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wanted = [(self.sip_port, socket.SOCK_DGRAM), (self.sip_port, socket.SOCK_STREAM),
                  (self.tls_port, socket.SOCK_STREAM)]  # fmt: skip
        deadline = time.monotonic() + READY_S
        while not all(_bound(port, kind) for port, kind in wanted):
            if self._process.poll() is not None:
                if address_in_use(self.log) or "Address already in use" in self.log:
                    raise PortTaken(self.log)
                raise AssertionError(
                    f"kamailio exited with {self._process.returncode}:\n{self.log}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"kamailio never bound its ports:\n{self.log}")
            time.sleep(0.1)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        stop_group(self._process)  # the session we started


class KamailioProxy(KamailioTrunk):
    """Kamailio as the record-routing proxy in front of an operator (see the module docstring)."""

    config_name = "proxy.cfg"

    def __init__(
        self,
        workdir: Path,
        *,
        operator_port: int,
        operator_user: str = "operator",
        auth: bool = False,
        lifetime_s: int = 120,
    ) -> None:
        super().__init__(
            workdir, callee_port=operator_port, callee_user=operator_user, lifetime_s=lifetime_s
        )
        self.operator_user = operator_user
        self.defines = ["WITH_AUTH"] if auth else []

    def _values(self) -> dict[str, str]:
        return {
            "RUN_DIR": str(self.run_dir),
            "SIP_PORT": str(self.sip_port),
            "TLS_PORT": str(self.tls_port),
            "OPERATOR_USER": self.operator_user,
            "USER": TRUNK_USER,
            "PASSWORD": TRUNK_PASSWORD,
            "REALM": TRUNK_REALM,
            "OPERATOR_PORT": str(self.callee_port),
        }

    @property
    def operator_uri(self) -> str:
        """``sip:operator@<proxy>``: what a transfer names as its target."""
        return self.uri(self.operator_user)
