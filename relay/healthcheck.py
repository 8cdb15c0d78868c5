"""``python -m relay.healthcheck``: the relay image's HEALTHCHECK, one SIP OPTIONS over UDP.

The probe asks the relay what a carrier or a load balancer would ask: it sends one OPTIONS
outside any dialog to the relay's own SIP port (``SIPLINE_SIP_HOST`` and ``SIPLINE_SIP_PORT``,
read by ``relay/config.py`` as the relay reads them; a wildcard listen address is probed on
loopback) and waits at most ``PROBE_TIMEOUT_S`` for the answer. The relay answers OPTIONS
with 200 (RFC 3261 §11.2) from the same event loop that handles INVITEs, so a 200 means the
process is up, its SIP listener is bound and its loop is not stuck. Exit status 0 is healthy;
1 is not (no answer, or an answer that is not 200); 2 is a configuration the relay itself would
refuse (docs/deployment.md, "The relay image").

A draining relay (``relay/drain.py``) still answers OPTIONS 200, so this check keeps passing
during a drain: the container is healthy and must not be replaced while its calls finish; a
load balancer learns that new calls should go elsewhere from the health port
(``relay/health_port.py``), which closes at the first SIGTERM (docs/relay.md, Shutting down).

It matches the answer to its request by Call-ID, so a late answer to an earlier probe is not
taken for this one. It reads at most one datagram of ``MAX_DATAGRAM`` bytes per wait.
"""

from __future__ import annotations

import secrets
import socket
import sys
import time

from relay.config import RelayConfigError, RelaySettings

PROBE_TIMEOUT_S = 2.0
MAX_DATAGRAM = 65535
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def options_request(host: str, port: int, local_port: int, call_id: str) -> bytes:
    """Return one OPTIONS request to ``host:port`` from ``local_port`` (RFC 3261 §11)."""
    target = f"[{host}]" if ":" in host else host
    return (
        f"OPTIONS sip:health@{target}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {target}:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:healthcheck@{target}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:health@{target}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def answer_status(datagram: bytes, call_id: str) -> int | None:
    """Return the status code of ``datagram`` if it is a response to ``call_id``, else None."""
    head, _, _ = datagram.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", errors="replace").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
        return None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() in ("call-id", "i") and value.strip() == call_id:
            return int(parts[1])
    return None


def probe(host: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> int | None:
    """Send one OPTIONS to ``host:port``; return the answer's status, or None without one."""
    host = _WILDCARDS.get(host, host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    call_id = f"{secrets.token_hex(8)}@healthcheck"
    deadline = time.monotonic() + timeout_s
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.sendto(options_request(host, port, sock.getsockname()[1], call_id), (host, port))
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                datagram = sock.recv(MAX_DATAGRAM)
            except OSError:  # the timeout, or an ICMP port unreachable: nobody listens
                return None
            status = answer_status(datagram, call_id)
            if status is not None and status >= 200:
                return status
    return None


def main() -> int:
    try:
        settings = RelaySettings.from_env()
    except RelayConfigError as error:
        print(f"healthcheck: {error}", file=sys.stderr)
        return 2
    status = probe(settings.sip_host, settings.sip_port)
    if status == 200:
        return 0
    said = "no answer" if status is None else f"answered {status}"
    print(
        f"healthcheck: OPTIONS to {settings.sip_host}:{settings.sip_port}: {said}", file=sys.stderr
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
