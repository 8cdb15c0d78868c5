"""dnsmasq (Debian's ``dnsmasq-base``) as a real DNS server on loopback, with the test's records.

:class:`Dnsmasq` writes its own configuration file and starts ``dnsmasq`` in the foreground on
127.0.0.1 and a free port (UDP and TCP), with ``--no-resolv --no-hosts`` and no ``server=``
line: it answers only from the records it is given and never forwards a query upstream.
``local=/test/`` makes it the authority for ``.test`` (RFC 6761 §6.2), so a name it has no
record for gets NXDOMAIN (and a known name asked for another type, NODATA) rather than
REFUSED. It logs every query (``log-queries``) to a file the test reads (:meth:`queries`).

Records are dnsmasq option lines, as its manual writes them::

    naptr-record=example.test,50,50,s,SIPS+D2T,,_sips._tcp.example.test
    srv-host=_sip._udp.example.test,server1.example.test,5060,0,1
    host-record=server1.example.test,93.184.215.1,2606:2800:220:1::1
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.nameserver
import dns.resolver

from tests.interop.stack import require
from tests.support.ports import LOOPBACK, PortTaken, address_in_use, free_sip_port, with_fresh_ports

READY_NAME = "ready.sipline.test"
START_TIMEOUT_S = 10.0
CONFIG = """\
port={port}
listen-address={address}
bind-interfaces
no-resolv
no-hosts
no-negcache
log-queries
log-facility=-
local=/test/
{records}
"""


class DnsmasqError(AssertionError):
    """dnsmasq did not start or answer; the message carries its log."""


class Dnsmasq:
    """One dnsmasq serving ``records`` on 127.0.0.1 (see the module docstring); a context manager."""

    def __init__(self, directory: Path, records: Sequence[str]) -> None:
        self.directory = directory
        self.records = tuple(records)
        self.address = LOOPBACK
        self.port = 0
        self.log_path = directory / "dnsmasq.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def nameserver(self) -> tuple[str, int]:
        """Return ``(address, port)`` to point a resolver at."""
        return self.address, self.port

    def __enter__(self) -> Dnsmasq:
        executable = require("dnsmasq")
        with_fresh_ports(lambda: self._start(executable))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _start(self, executable: str) -> None:
        self.port = free_sip_port()  # free for UDP and TCP alike, as DNS needs
        config = self.directory / "dnsmasq.conf"
        config.write_text(
            CONFIG.format(port=self.port, address=self.address, records="\n".join(self.records))
        )
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [executable, "--keep-in-foreground", "--no-resolv", "--no-hosts",
                 f"--conf-file={config}", "--pid-file"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._wait_until_it_answers()

    def _wait_until_it_answers(self) -> None:
        resolver = self.resolver(lifetime_s=0.3)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                log = self.log()
                self._process = None
                if address_in_use(log):
                    raise PortTaken(log)
                raise DnsmasqError(f"dnsmasq exited at start:\n{log}")
            try:
                resolver.resolve(READY_NAME + ".", "A", raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN:
                return  # an answer: it is serving .test
            except dns.exception.DNSException:
                time.sleep(0.05)
                continue
            return
        self.stop()
        raise DnsmasqError(f"dnsmasq did not answer within {START_TIMEOUT_S} s:\n{self.log()}")

    def resolver(self, *, lifetime_s: float = 2.0) -> dns.resolver.Resolver:
        """Return a blocking dnspython resolver pointed at this server only."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(self.address, self.port)]
        resolver.lifetime = lifetime_s
        return resolver

    def log(self) -> str:
        """Return what dnsmasq has logged so far."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def queries(self) -> list[str]:
        """Return the queries logged so far as ``"TYPE name"``, in order (the readiness probe's
        excluded)."""
        found: list[str] = []
        for line in self.log().splitlines():
            _, marker, rest = line.partition(": query[")
            if marker:
                rdtype, _, query = rest.partition("] ")
                name = query.split(" from ", 1)[0]
                if name != READY_NAME:
                    found.append(f"{rdtype} {name}")
        return found

    def wait_for_queries(self, *wanted: str, timeout_s: float = 5.0) -> list[str]:
        """Return :meth:`queries` once each of ``wanted`` (``"TYPE name"``) is among them.

        Raises:
            DnsmasqError: one was not logged within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            queries = self.queries()
            if all(query in queries for query in wanted):
                return queries
            time.sleep(0.02)
        raise DnsmasqError(f"dnsmasq did not log {wanted} within {timeout_s} s:\n{self.log()}")

    def stop(self) -> None:
        """Stop dnsmasq (SIGTERM, then SIGKILL after 5 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
