"""Running SIPp against the relay: bounded, on 127.0.0.1, with its message trace kept.

``run_sipp`` runs one SIPp UAC (built-in ``-sn`` scenario or a file of ``scenarios/``) under
``timeout -k 3``, with ``-timeout`` as SIPp's own bound, and returns its exit code with the
trace of every message it sent and received, for assertions and failure messages. SIPp's rc:
0 every call succeeded, 1 some failed, 255 fatal (SIPp's documented exit codes). Its SIP and
media ports are probed just before it starts; if one was taken meanwhile (SIPp says "Address
already in use"), it runs again on fresh ones.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.interop.stack import InteropStack, require
from tests.support.ports import (
    PortTaken,
    address_in_use,
    free_port_range,
    free_sip_port,
    with_fresh_ports,
)

SCENARIOS = Path(__file__).parent / "scenarios"
TRANSPORTS = {"udp": "u1", "tcp": "t1", "tls": "l1"}


@dataclass(frozen=True)
class SippRun:
    """One SIPp run's outcome."""

    returncode: int
    stdout: str
    messages: str
    errors: str

    def explain(self) -> str:
        return (
            f"sipp rc {self.returncode}\n--- errors ---\n{self.errors[-3000:]}\n"
            f"--- messages ---\n{self.messages[-6000:]}\n--- stdout ---\n{self.stdout[-1500:]}"
        )

    def exchange(self) -> list[str]:
        """Every SIP message in the trace, in order: a request's method, a response's status."""
        starts = ("SIP/2.0 ", "INVITE ", "ACK ", "BYE ", "CANCEL ", "OPTIONS ")
        lines = [line for line in self.messages.splitlines() if line.startswith(starts)]
        return [line.split()[1] if line.startswith("SIP/") else line.split()[0] for line in lines]

    def count(self, message: str) -> int:
        """How many times ``message`` (``"200"``, ``"INVITE"``) is in the trace."""
        return self.exchange().count(message)


def scenario(name: str, workdir: Path, **replacements: str) -> Path:
    """Return the path of ``scenarios/<name>``, rendered with ``@KEY@`` replacements if any."""
    source = SCENARIOS / name
    if not replacements:
        return source
    text = source.read_text()
    for key, value in replacements.items():
        text = text.replace(f"@{key.upper()}@", value)
    rendered = workdir / f"{source.stem}-{'-'.join(replacements.values())}.xml"
    rendered.write_text(text)
    return rendered


def run_sipp(
    stack: InteropStack,
    workdir: Path,
    *,
    service: str,
    builtin: str | None = None,
    scenario_file: Path | None = None,
    transport: str = "udp",
    timeout_s: int = 20,
    extra: tuple[str, ...] = (),
) -> SippRun:
    """Place one call with SIPp to the relay's ``service`` user; see the module docstring."""
    port = stack.tls_port if transport == "tls" else stack.sip_port
    if transport == "tls":
        cert, key = stack.tls_files
        extra = ("-tls_cert", str(cert), "-tls_key", str(key), *extra)
    return run_sipp_uac(
        f"127.0.0.1:{port}",
        workdir,
        service=service,
        builtin=builtin,
        scenario_file=scenario_file,
        transport=transport,
        timeout_s=timeout_s,
        extra=extra,
    )


def run_sipp_uac(
    target: str,
    workdir: Path,
    *,
    service: str,
    builtin: str | None = None,
    scenario_file: Path | None = None,
    transport: str = "udp",
    timeout_s: int = 20,
    extra: tuple[str, ...] = (),
    local_ip: str = "127.0.0.1",
    prefix: tuple[str, ...] = (),
) -> SippRun:
    """Place one call with SIPp to ``service`` at ``target`` (``host:port``), any peer.

    SIPp binds ``local_ip`` (signalling and media); ``prefix`` goes before its command
    (``ip netns exec <namespace>``: a peer in a network namespace of the test's).
    """
    sipp = require("sipp")
    assert (builtin is None) != (scenario_file is None), "one of builtin or scenario_file"
    workdir.mkdir(parents=True, exist_ok=True)
    messages, errors = workdir / "messages.log", workdir / "errors.log"

    def attempt() -> SippRun:
        for stale in (messages, errors):
            stale.unlink(missing_ok=True)
        command = [*prefix, "timeout", "-k", "3", str(timeout_s + 5), sipp, target]
        command += ["-sn", builtin] if builtin else ["-sf", str(scenario_file)]
        command += [
            "-i", local_ip, "-p", str(free_sip_port()), "-t", TRANSPORTS[transport],
            "-mi", local_ip, "-mp", str(free_port_range(4)[0]),
            "-s", service, "-m", "1", "-nostdin", "-timeout", f"{timeout_s}s", "-timeout_error",
            "-trace_msg", "-message_file", str(messages), "-trace_err", "-error_file", str(errors),
        ]  # fmt: skip
        command += list(extra)
        result = subprocess.run(
            command,
            cwd=workdir,
            capture_output=True,
            text=True,
            errors="replace",  # SIPp echoes what it received, bytes that are not UTF-8 included
            timeout=timeout_s + 15,
        )
        run = SippRun(
            returncode=result.returncode,
            stdout=result.stdout + result.stderr,
            messages=messages.read_text(errors="replace") if messages.exists() else "",
            errors=errors.read_text(errors="replace") if errors.exists() else "",
        )
        if run.returncode != 0 and not run.messages and address_in_use(run.stdout + run.errors):
            raise PortTaken(run.explain())  # it never sent a message: start again
        return run

    return with_fresh_ports(attempt)
