"""Opening the agent's WebSocket: bounded attempts, each to an address the egress policy allows.

Theory of operation:

1. :func:`connect_agent` makes at most ``max_attempts`` attempts (``BridgeSettings``), each
   bounded by ``attempt_timeout_s``, all within ``connect_timeout_s``, while the caller hears
   ringing; between attempts it pauses ``retry_delays_s[n]`` (the last repeats), never after
   the last one and never past the total bound (``docs/agents.md``, "Connection and retries").
2. Each attempt resolves the URL's host once, checks every address against the deployment's
   egress policy (``chalicelib/egress.py``: no loopback, private, link-local or metadata
   address unless allowed) and connects the socket to a checked address
   (``relay/transport/egress.py``); the ``Host`` header and TLS still name the host. With
   ``use_env_proxy`` the proxy connects by name instead, and its own egress rules apply.
3. The socket is ours, so websockets can neither follow a redirect (it refuses, on a socket it
   did not open) nor resolve the host again. Some failures end the attempts at once: a URL that
   does not parse, a refused address, and an HTTP refusal of the upgrade that no retry can mend
   (3xx, never followed; 4xx other than 408 and 429). Timeouts, refused TCP connections, failed
   handshakes and the other statuses are retried. What is left after the last attempt is an
   :class:`~relay.bridge.outcome.AgentUnreachable` naming the last error.
4. The connection is an :class:`~relay.bridge.agent_connection.AgentConnection`, with
   websockets' pings, close timeout and message size bound from ``BridgeSettings`` and no
   compression (audio does not compress; deflate would only cost CPU).
"""

from __future__ import annotations

import asyncio
import logging

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.uri import parse_uri

from chalicelib.egress import TargetRefused
from relay.bridge.agent_connection import AgentConnection
from relay.bridge.outcome import AgentUnreachable, BridgeCounters
from relay.bridge.settings import BridgeSettings
from relay.transport.egress import AsyncResolver, connect_checked, resolve_checked

__all__ = ["USER_AGENT", "connect_agent"]

logger = logging.getLogger("sipline.relay.bridge")

USER_AGENT = "sipline-relay"


async def connect_agent(
    url: str, settings: BridgeSettings, counters: BridgeCounters, resolve: AsyncResolver
) -> ClientConnection | AgentUnreachable:
    """Open the agent's socket within the bounds; count each attempt in ``counters``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.connect_timeout_s
    error = "no attempt made"
    for attempt in range(settings.max_attempts):
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        counters.connect_attempts += 1
        try:
            return await _open(url, settings, resolve, min(settings.attempt_timeout_s, remaining))
        except InvalidURI as invalid:
            return AgentUnreachable(counters.connect_attempts, str(invalid))
        except TargetRefused as refused:
            logger.warning("agent %s refused: %s", url, refused)
            return AgentUnreachable(counters.connect_attempts, f"refused: {refused}")
        except InvalidStatus as refused:
            status = refused.response.status_code
            error = f"HTTP {status}" + (" (not followed)" if 300 <= status < 400 else "")
            if _is_permanent(status):
                return AgentUnreachable(counters.connect_attempts, error)
            logger.info("agent %s refused the upgrade (%s)", url, error)
        except (OSError, TimeoutError, InvalidHandshake) as failure:
            error = f"{type(failure).__name__}: {failure}"
            logger.info("agent %s not reachable (%s)", url, error)
        if attempt + 1 == settings.max_attempts:
            break  # pauses come between attempts (docs/agents.md), not after the last
        delay = settings.retry_delays_s[min(attempt, len(settings.retry_delays_s) - 1)]
        await asyncio.sleep(max(0.0, min(delay, deadline - loop.time())))
    return AgentUnreachable(counters.connect_attempts, error)


async def _open(
    url: str, settings: BridgeSettings, resolve: AsyncResolver, timeout_s: float
) -> ClientConnection:
    """One attempt: resolve and check, connect to a checked address, then the upgrade.

    The socket is ours, so websockets cannot follow a redirect (it refuses, on a socket it
    did not open) and never resolves the host again.
    """
    try:
        uri = parse_uri(url)
    except ValueError as error:  # urllib's own, e.g. "Invalid IPv6 URL"
        raise InvalidURI(url, str(error)) from None
    async with asyncio.timeout(timeout_s):
        addresses = await resolve_checked(settings.egress, uri.host, uri.port, resolve)
        sock = None if settings.use_env_proxy else await connect_checked(addresses, uri.port)
        try:
            return await connect(
                url,
                sock=sock,
                open_timeout=None,  # bounded with the lookup and TCP by the timeout above
                ping_interval=settings.ping_interval_s,
                ping_timeout=settings.ping_timeout_s,
                close_timeout=settings.close_timeout_s,
                max_size=settings.max_message_bytes,
                compression=None,  # audio does not compress; deflate would only cost CPU
                proxy=True if settings.use_env_proxy else None,
                user_agent_header=USER_AGENT,
                create_connection=AgentConnection,
            )
        except ValueError as error:  # websockets will not follow a redirect on our socket
            if sock is not None:
                sock.close()
            if isinstance(error.__cause__, InvalidStatus):
                raise error.__cause__ from None
            raise
        except BaseException:
            if sock is not None:
                sock.close()  # websockets closes what it wrapped; this covers the rest
            raise


def _is_permanent(status: int) -> bool:
    """Tell whether an HTTP refusal of the upgrade is worth no retry (3xx; 4xx but 408 and 429)."""
    return 300 <= status < 500 and status not in (408, 429)
