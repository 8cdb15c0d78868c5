"""Connecting the relay to a user's host: resolve once, check every address, connect to one of them.

The policy (which addresses are refused, and the deployment's allowance) is
``chalicelib/egress.py``, shared with the control plane. This is its asyncio side: the lookup runs
on the loop's resolver (or an injected one), and the socket is connected to a checked address, so
that no later lookup (DNS rebinding) can send the connection elsewhere. The caller hands the
connected socket to its protocol (websockets), keeping the host name for ``Host`` and TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Sequence

from chalicelib.egress import EgressPolicy, IpAddress, checked_without_dns

AsyncResolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses`` as text; raises OSError (``socket.gaierror``) when it cannot."""


async def loop_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the event loop's ``getaddrinfo`` (in its executor)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve_checked(
    policy: EgressPolicy, host: str, port: int, resolve: AsyncResolver = loop_resolver
) -> list[IpAddress]:
    """Resolve ``host`` once and check every address it has.

    Raises:
        TargetRefused: the host, or one of its addresses, is refused by ``policy``.
        OSError: the name does not resolve.
    """
    known = checked_without_dns(policy, host)
    if known is not None:
        return known
    try:
        answers = await resolve(host, port)
    except ValueError as error:  # idna refuses the name (UnicodeError), or a NUL in it
        raise OSError(f"{host!r} cannot be resolved ({error})") from None
    return policy.check_all(host, answers)


async def connect_checked(addresses: Sequence[IpAddress], port: int) -> socket.socket:
    """Return a TCP socket connected to the first of ``addresses`` that accepts (non-blocking).

    Raises:
        OSError: none of them accepted (the last error).
    """
    loop = asyncio.get_running_loop()
    error: OSError = OSError("no address to connect to")
    for address in addresses:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (str(address), port))
        except OSError as failure:
            sock.close()
            error = failure
            continue
        except BaseException:  # cancelled or timed out: the socket must not leak
            sock.close()
            raise
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error
