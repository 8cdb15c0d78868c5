"""One HTTP(S) request to a user's URL, sent to an address the egress policy has checked.

``urllib.request.urlopen`` resolves the host itself (a second lookup after any check: DNS
rebinding) and follows redirects (a handler answering ``302 Location: http://169.254.169.254/``
made the control plane fetch it). Here:

1. the host is resolved once and every address checked (``chalicelib/egress.py``);
2. the TCP connection goes to the first checked address that accepts it (no second lookup);
3. the ``Host`` header, TLS SNI and the certificate check still use the URL's host name;
4. the status is returned as it is: a 3xx is never followed (the caller treats it as a failure);
5. at most ``max_bytes + 1`` bytes of the answer are read.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalicelib.egress import EgressPolicy, IpAddress, Resolver, resolve_checked, system_resolver


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """The status and the first bytes of an answer."""

    status: int
    body: bytes


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to ``host`` whose socket goes to the checked ``addresses``."""

    def __init__(
        self,
        host: str,
        port: int,
        addresses: list[IpAddress],
        *,
        timeout_s: float,
        tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(host, port, timeout=timeout_s)
        self.default_port = 443 if tls is not None else 80  # Host: names a port only if unusual
        self._addresses = addresses
        self._tls = tls

    def connect(self) -> None:
        """Connect to the first checked address that answers; wrap in TLS for the host name."""
        error: OSError = OSError(f"no address to connect to for {self.host}")
        for address in self._addresses:
            try:
                sock = socket.create_connection((str(address), self.port), self.timeout)
                break
            except OSError as failure:
                error = failure
        else:
            raise error
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is None:
            self.sock = sock
            return
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:  # a failed handshake must not leave the socket to the GC
            sock.close()
            raise


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    egress: EgressPolicy,
    max_bytes: int,
    resolve: Resolver = system_resolver,
    tls: ssl.SSLContext | None = None,
) -> HttpAnswer:
    """POST ``body`` to ``url`` (http or https) by the rules of the module docstring.

    Args:
        tls: the TLS context of ``https`` URLs (default: the system's trust store, hostname checked).

    Raises:
        TargetRefused: the host, or an address it resolves to, is not allowed.
        OSError: resolving, connecting, TLS or the exchange failed (``TimeoutError`` included).
        http.client.HTTPException: the server's answer is not HTTP.
        ValueError: the URL is not http(s) or has a bad port.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL with a host")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    addresses = resolve_checked(egress, parts.hostname, port, resolve)
    context = (tls or ssl.create_default_context()) if secure else None
    connection = _PinnedConnection(
        parts.hostname, port, addresses, timeout_s=timeout_s, tls=context
    )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers=headers)
        with connection.getresponse() as response:  # its file holds the socket open: close both
            return HttpAnswer(response.status, response.read(max_bytes + 1))
    finally:
        connection.close()
