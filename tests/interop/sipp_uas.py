"""SIPp as the callee of an outgoing call: a UAS scenario on 127.0.0.1, and what it received.

`SippUas` starts one SIPp UAS scenario of ``scenarios/`` (``uas_*.xml``) on a free port of
127.0.0.1 (UDP or TCP; this SIPp has no TLS, see below), under ``timeout -k 3`` with SIPp's own
``-timeout`` as the bound, in the test's directory, with ``-trace_msg``/``-trace_err`` there. The
test points its caller at `SippUas.uri`, then `SippUas.wait` gives SIPp's exit code (0: every call
went as the scenario says; 1: one failed, e.g. a check in the scenario; 255: fatal) with the trace,
and `SippUas.received` the messages SIPp received, parsed (`SipMessage`), for assertions on what
the caller sent: the INVITE's From user, its Authorization, its X- headers, CSeq numbers, that a
CANCEL came and no INVITE after it. The trace is complete once SIPp has exited (it writes it as
it goes, buffered).

Settings the scenarios read, always passed (a scenario ignores what it does not use):
- ``-key auth_user U -key auth_pass P``: the credentials ``uas_auth_md5`` verifies
  (`AUTH_USER`, `AUTH_PASSWORD` by default);
- ``-set bye_after_ms N``: ``uas_answer``, ``uas_early_media`` and ``uas_answer_tone`` hang up
  themselves N ms after the ACK when N > 0, else wait for the caller's BYE (only for the
  scenarios that declare the variable: SIPp refuses ``-set`` of an undeclared one);
- ``tone.ul`` in the working directory, for ``uas_answer_tone``: `TONE_S` seconds of a sine of
  `TONE_HZ` Hz, raw mu-law at 8 kHz, made with sox, which SIPp's ``rtp_stream`` sends as PCMU
  in 20 ms packets, looped, from the ACK until the call ends.

What SIPp 3.6.1 (Debian 12's sip-tester) can and cannot do, measured here:
- no TLS (``-t l1``: "To use a TLS transport you must compile SIPp with OpenSSL");
- ``verifyauth`` checks an ``Authorization`` header with MD5 only (another algorithm is
  false), and never a ``Proxy-Authorization`` (it looks for a line starting "Authorization:");
  it hashes with the realm, nonce and uri the caller sent, so it does not check that they are
  the challenge's: `digest.py` checks those, and SHA-256, independently;
- ``[authentication]`` (a SIPp caller answering a challenge) does MD5 and AKAv1-MD5 only; a
  SHA-256 challenge is fatal (rc 255: "createAuthHeader: authentication must use MD5 or
  AKAv1-MD5"); its digest ``uri`` is ``sip:<remote host:port>``, not the Request-URI, and its
  cnonce is the same in every run (libc ``rand()`` unseeded);
- ``-set`` makes string variables: a scenario converts one with ``todouble`` before ``test``
  or ``pause`` use it;
- over TCP, SIPp fails a call whose connection closes before the call reaches its
  ``timewait`` (a caller closing right after its last message can race it);
- a message that arrives while a UAS scenario is between two ``send``
  steps is unexpected (so ``uas_forked`` waits for the first ACK before the second 200).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.interop.sipp import SCENARIOS, TRANSPORTS, SippRun
from tests.interop.stack import require
from tests.support.ports import (
    LOOPBACK,
    PortTaken,
    address_in_use,
    free_port_range,
    free_sip_port,
    with_fresh_ports,
)

AUTH_USER = "trunkuser"
AUTH_PASSWORD = "trunk-secret-1"
TONE_HZ = 1000
TONE_S = 1  # a whole number of cycles: the loop joins without a click
TONE_FILE = "tone.ul"
READY_S = 5.0
"""How long SIPp may take to bind its port: a bound on a wait, not a duration asserted."""
HANGUP_VARIABLE = 'variables="bye_after_ms"'
TRACE_SEPARATOR = re.compile(r"^-{20,} .*$", re.MULTILINE)
TRACE_HEADING = re.compile(r"^(UDP|TCP|TLS|SCTP) message (sent|received)\b.*$", re.MULTILINE)
COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact", "l": "content-length",
           "c": "content-type", "k": "supported", "e": "content-encoding", "s": "subject"}  # fmt: skip
"""RFC 3261 §7.3.3's compact header names."""


@dataclass(frozen=True)
class SipMessage:
    """One message of a SIPp trace, as SIPp sent or received it."""

    direction: str  # "sent" or "received"
    text: str

    @property
    def start_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def method(self) -> str | None:
        """The request's method; None for a response."""
        first = self.start_line.split()
        return None if not first or first[0] == "SIP/2.0" else first[0]

    @property
    def status(self) -> int | None:
        """The response's status code; None for a request."""
        first = self.start_line.split()
        return int(first[1]) if len(first) > 1 and first[0] == "SIP/2.0" else None

    @property
    def request_uri(self) -> str | None:
        return self.start_line.split()[1] if self.method else None

    @property
    def kind(self) -> str:
        """The method of a request, the status (as text) of a response."""
        return self.method or str(self.status)

    def headers(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive, compact forms too), in order."""
        wanted = name.lower()
        head = self.text.replace("\r\n", "\n").split("\n\n", 1)[0]
        values = []
        for line in head.split("\n")[1:]:
            field, colon, value = line.partition(":")
            field = field.strip().lower()
            if colon and COMPACT.get(field, field) == wanted:
                values.append(value.strip())
        return values

    def header(self, name: str) -> str | None:
        """The first value of header ``name``, or None."""
        values = self.headers(name)
        return values[0] if values else None

    @property
    def body(self) -> str:
        parts = self.text.replace("\r\n", "\n").split("\n\n", 1)
        return parts[1] if len(parts) == 2 else ""

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        """The CSeq number and method."""
        number, method = (self.header("CSeq") or "").split()
        return int(number), method


def parse_trace(trace: str) -> list[SipMessage]:
    """Split a SIPp ``-trace_msg`` file into its messages, in order."""
    messages = []
    for block in TRACE_SEPARATOR.split(trace):
        heading = TRACE_HEADING.search(block)
        if heading is None:
            continue
        text = block[heading.end() :].strip("\r\n")
        if text:
            messages.append(SipMessage(direction=heading.group(2), text=text + "\n"))
    return messages


def write_tone(path: Path, frequency_hz: int = TONE_HZ, seconds: int = TONE_S) -> Path:
    """Write ``seconds`` of a sine of ``frequency_hz`` as raw mu-law at 8 kHz (with sox)."""
    subprocess.run(
        ["timeout", "-k", "3", "20", require("sox"), "-n", "-r", "8000", "-c", "1", "-e",
         "u-law", "-t", "raw", str(path), "synth", str(seconds), "sine", str(frequency_hz),
         "vol", "0.5"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return path


def _bound(port: int, kind: socket.SocketKind) -> bool:
    """True if something holds ``port`` on 127.0.0.1 for ``kind`` (our bind is refused)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return True
        return False


class SippUas:
    """One SIPp UAS scenario on 127.0.0.1 (see the module docstring); a context manager."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        *,
        transport: str = "udp",
        hangup_after_ms: int = 0,
        auth: tuple[str, str] = (AUTH_USER, AUTH_PASSWORD),
        calls: int = 1,
        timeout_s: int = 30,
        tone_hz: int = TONE_HZ,
        extra: tuple[str, ...] = (),
    ) -> None:
        assert transport in ("udp", "tcp"), f"SIPp 3.6.1 has no {transport} (no TLS build)"
        self.scenario = SCENARIOS / f"{name}.xml"
        assert self.scenario.exists(), f"no scenario {self.scenario}"
        self.name, self.workdir, self.transport = name, workdir, transport
        self.hangup_after_ms, self.auth, self.calls = hangup_after_ms, auth, calls
        self.timeout_s, self.tone_hz, self.extra = timeout_s, tone_hz, extra
        self.port = 0
        self.media_port = 0
        self._process: subprocess.Popen[str] | None = None
        self._run: SippRun | None = None
        self.messages_file = workdir / f"{name}-messages.log"
        self.errors_file = workdir / f"{name}-errors.log"
        self.output_file = workdir / f"{name}-stdout.log"

    @property
    def address(self) -> tuple[str, int]:
        return LOOPBACK, self.port

    @property
    def hostport(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def uri(self, user: str = "service") -> str:
        """A SIP URI that reaches this UAS (``;transport=tcp`` when it listens on TCP)."""
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{user}@{self.hostport}{suffix}"

    def __enter__(self) -> SippUas:
        self.workdir.mkdir(parents=True, exist_ok=True)
        text = self.scenario.read_text()
        if TONE_FILE in text:
            write_tone(self.workdir / TONE_FILE, self.tone_hz)
        if self.hangup_after_ms and HANGUP_VARIABLE not in text:
            raise AssertionError(f"{self.name} cannot hang up by itself")
        with_fresh_ports(self._start)
        return self

    def _command(self) -> list[str]:
        user, password = self.auth
        command = [
            "timeout", "-k", "3", str(self.timeout_s + 5), require("sipp"),
            "-sf", str(self.scenario), "-i", LOOPBACK, "-p", str(self.port),
            "-t", TRANSPORTS[self.transport], "-mi", LOOPBACK, "-mp", str(self.media_port),
            "-m", str(self.calls), "-nostdin", "-timeout", f"{self.timeout_s}s", "-timeout_error",
            "-trace_msg", "-message_file", str(self.messages_file),
            "-trace_err", "-error_file", str(self.errors_file),
            "-key", "auth_user", user, "-key", "auth_pass", password,
        ]  # fmt: skip
        if HANGUP_VARIABLE in self.scenario.read_text():
            command += ["-set", "bye_after_ms", str(self.hangup_after_ms)]
        return command + list(self.extra)

    def _start(self) -> None:
        """Start SIPp on fresh ports and wait until it holds its SIP port."""
        for stale in (self.messages_file, self.errors_file):
            stale.unlink(missing_ok=True)
        self.port = free_sip_port()
        self.media_port = free_port_range(4)[0]
        with open(self.output_file, "w") as output:
            self._process = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
        deadline = time.monotonic() + READY_S
        while not _bound(self.port, kind):
            if self._process.poll() is not None:
                run = self._collect()
                if address_in_use(run.stdout + run.errors):
                    raise PortTaken(run.explain())
                raise AssertionError(f"SIPp {self.name} exited before listening:\n{run.explain()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"SIPp {self.name} never bound {self.hostport}")
            time.sleep(0.05)

    def _collect(self) -> SippRun:
        assert self._process is not None

        def read(path: Path) -> str:
            return path.read_text(errors="replace") if path.exists() else ""

        return SippRun(
            returncode=self._process.returncode,
            stdout=read(self.output_file),
            messages=read(self.messages_file),
            errors=read(self.errors_file),
        )

    def wait(self, timeout_s: float | None = None) -> SippRun:
        """Wait (at most ``timeout_s``, else SIPp's own bound) for SIPp's exit; its outcome."""
        assert self._process is not None, "not started"
        if self._run is None:
            self._process.wait(timeout=timeout_s if timeout_s is not None else self.timeout_s + 10)
            self._run = self._collect()
        return self._run

    def messages(self) -> list[SipMessage]:
        """Every message of the trace so far (complete once SIPp has exited)."""
        return parse_trace(self._run.messages if self._run else self._collect_now())

    def _collect_now(self) -> str:
        return self.messages_file.read_text(errors="replace") if self.messages_file.exists() else ""

    def received(self, kind: str | None = None) -> list[SipMessage]:
        """The messages SIPp received; only requests of method ``kind`` / responses of that
        status (``"INVITE"``, ``"200"``) when given."""
        return [
            message
            for message in self.messages()
            if message.direction == "received" and (kind is None or message.kind == kind)
        ]

    def sent(self, kind: str | None = None) -> list[SipMessage]:
        """The messages SIPp sent, filtered as in `received`."""
        return [
            message
            for message in self.messages()
            if message.direction == "sent" and (kind is None or message.kind == kind)
        ]

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)  # the session we started: timeout + SIPp
            self._process.wait(timeout=10)
