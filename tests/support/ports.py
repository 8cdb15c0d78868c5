"""Ports for tests on 127.0.0.1: chosen below Linux's ephemeral range, probed, never trusted.

Linux hands out ephemeral ports (a bind to port 0, an outgoing connect) from
``net.ipv4.ip_local_port_range`` (32768-60999 by default). A port a test chooses inside that range
can be taken by any socket of any process between the choice and the bind; below it, only by a
process that chooses the same number on purpose. So:

1. Every port or window a test chooses lies below the ephemeral range, in one of three pools that
   do not overlap: `SINGLE_PORTS` (SIP, HTTP services), `RELAY_RTP_PORTS` (the relay's RTP range in
   the stacks the tests start) and `WINDOW_PORTS` (the RTP windows of SIPp, baresip, linphone and
   of in-process sessions).
2. Each is bind-probed before it is returned, from a random place of its pool, so that runs side
   by side (two ``make test``) rarely meet.
3. A probe says only that the port was free a moment ago. Where a child process binds it later, a
   collision shows as the child's "Address already in use": the caller raises `PortTaken` and
   `with_fresh_ports` tries again with new ports.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

__all__ = [
    "LOOPBACK",
    "RELAY_RTP_PORTS",
    "SINGLE_PORTS",
    "WINDOW_PORTS",
    "PortTaken",
    "address_in_use",
    "ephemeral_range",
    "free_port",
    "free_port_range",
    "free_sip_port",
    "with_fresh_ports",
]

LOOPBACK = "127.0.0.1"
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_DEFAULT_EPHEMERAL = (32768, 60999)
SINGLE_PORTS = (10000, 20000)
RELAY_RTP_PORTS = (20000, 26000)
WINDOW_PORTS = (26000, 32768)
ATTEMPTS = 200
IN_USE_MARKERS = ("Address already in use", "EADDRINUSE", "errno = 98", "[Errno 98]")
"""How SIPp, baresip, linphone and Python report a port taken (errno 98 on Linux)."""

_T = TypeVar("_T")


class PortTaken(RuntimeError):
    """A child process found a probed port taken after all: try again with fresh ports."""


def ephemeral_range() -> tuple[int, int]:
    """Return the kernel's ephemeral port range (Linux's default where it cannot be read)."""
    try:
        low, high = EPHEMERAL_RANGE_FILE.read_text().split()
    except (OSError, ValueError):
        return LINUX_DEFAULT_EPHEMERAL
    return int(low), int(high)


def _below_ephemeral(pool: tuple[int, int]) -> tuple[int, int]:
    low, high = pool[0], min(pool[1], ephemeral_range()[0])
    if high - low < 100:
        raise RuntimeError(
            f"the test port pool {pool} lies in the ephemeral range {ephemeral_range()}: lower "
            "net.ipv4.ip_local_port_range's start above it (tests/support/ports.py)"
        )
    return low, high


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def free_port(
    *,
    kinds: Iterable[socket.SocketKind] = (socket.SOCK_STREAM,),
    pool: tuple[int, int] = SINGLE_PORTS,
    avoid: Iterable[int] = (),
) -> int:
    """Return a port of ``pool`` that every socket kind of ``kinds`` could bind a moment ago."""
    low, high = _below_ephemeral(pool)
    wanted, avoided = tuple(kinds), set(avoid)
    for _ in range(ATTEMPTS):
        port = random.randrange(low, high)
        if port not in avoided and all(_bindable(port, kind) for kind in wanted):
            return port
    raise RuntimeError(f"no free port in {low}-{high} on {LOOPBACK}")


def free_sip_port(*, tls_above: bool = False, avoid: Iterable[int] = ()) -> int:
    """Return a port free for both UDP and TCP (SIP listens on both).

    ``tls_above``: the port above it must be free for TCP too (baresip listens for TLS there).
    ``avoid``: ports already promised to something else (they are not bound yet).
    """
    both = (socket.SOCK_DGRAM, socket.SOCK_STREAM)
    avoided = set(avoid)
    for _ in range(ATTEMPTS):
        port = free_port(kinds=both, avoid=avoided)
        if not tls_above or (port + 1 not in avoided and _bindable(port + 1, socket.SOCK_STREAM)):
            return port
        avoided.add(port)
    raise RuntimeError(f"no port free for both UDP and TCP on {LOOPBACK}")


def free_port_range(size: int, pool: tuple[int, int] = WINDOW_PORTS) -> tuple[int, int]:
    """Return ``(first, last)`` of ``size`` consecutive UDP ports of ``pool``, ``first`` even.

    All were free a moment ago: an RTP allocator skips a pair taken since, a child process that
    finds one taken reports it (`PortTaken`).
    """
    low, high = _below_ephemeral(pool)
    for _ in range(ATTEMPTS // 2):
        first = random.randrange(low, high - size) & ~1
        if all(_bindable(port, socket.SOCK_DGRAM) for port in range(first, first + size)):
            return first, first + size - 1
    raise RuntimeError(f"no {size} consecutive free UDP ports in {low}-{high}")


def address_in_use(text: str) -> bool:
    """Return True if a child's output says that a port it wanted was taken."""
    return any(marker in text for marker in IN_USE_MARKERS)


def with_fresh_ports(attempt: Callable[[], _T], *, attempts: int = 3) -> _T:
    """Return ``attempt()``, called again (choosing its ports anew) while it raises `PortTaken`."""
    for _ in range(attempts - 1):
        try:
            return attempt()
        except PortTaken:
            continue
    return attempt()
