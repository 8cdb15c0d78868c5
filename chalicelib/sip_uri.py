"""The little SIP URI reading the control plane needs (RFC 3261 §19.1): user, host, transport.

The relay has the full parser; here a URI only has to be checked and its user part read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

# SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]   (RFC 3261 §25.1)
_SIP_URI = re.compile(
    r"""^(?P<scheme>sips?):
        (?:(?P<user>[^@;?:]*)(?::[^@;?]*)?@)?
        (?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)
        (?::(?P<port>\d{1,5}))?
        (?P<params>(?:;[^;?]*)*)
        (?:\?(?P<headers>.*))?$""",
    re.VERBOSE,
)
TRANSPORTS = ("udp", "tcp", "tls")


@dataclass(frozen=True, slots=True)
class SipAddress:
    """The parts of a SIP URI the control plane looks at."""

    scheme: str
    user: str
    host: str
    port: int | None
    params: dict[str, str]

    @property
    def transport(self) -> str:
        """The ``;transport=`` parameter, lower-cased (``udp`` when absent, ``tls`` for sips)."""
        default = "tls" if self.scheme == "sips" else "udp"
        return self.params.get("transport", default).lower()


def parse_sip_uri(text: str) -> SipAddress:
    """Parse a ``sip:``/``sips:`` URI, optionally inside ``<...>``; raise ValueError if it is not."""
    candidate = text.strip()
    if candidate.startswith("<") and candidate.endswith(">"):
        candidate = candidate[1:-1]
    match = _SIP_URI.match(candidate)
    if not match or (match["port"] and not 0 < int(match["port"]) < 65536):
        raise ValueError(f"{text!r} is not a SIP URI like sip:user@host[:port][;transport=tcp]")
    params = {}
    for item in filter(None, (match["params"] or "").split(";")):
        name, _, value = item.partition("=")
        params[name.lower()] = value
    return SipAddress(
        scheme=match["scheme"].lower(),
        user=unquote(match["user"] or ""),
        host=match["host"].lower(),
        port=int(match["port"]) if match["port"] else None,
        params=params,
    )


_HOST_PORT = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-_]+))(?::(?P<port>\d{1,5}))?$"
)


def parse_host_port(text: str) -> tuple[str, int | None]:
    """Read a SIP server address as a registration gives it: ``host``, ``host:port``,
    ``[v6]:port``, a bare IPv6 address, or a SIP URI; raise ValueError if it is none of these."""
    candidate = text.strip()
    if candidate.lower().startswith(("sip:", "sips:", "<sip:", "<sips:")):
        address = parse_sip_uri(candidate)
        return address.host.strip("[]"), address.port
    if candidate.count(":") > 1 and not candidate.startswith("["):
        candidate = f"[{candidate}]"  # a bare IPv6 address has no port
    match = _HOST_PORT.match(candidate)
    if not match or (match["port"] and not 0 < int(match["port"]) < 65536):
        raise ValueError(f"{text!r} is not a host name or IP address with an optional :port")
    port = int(match["port"]) if match["port"] else None
    return match["v6"] or match["host"], port


def validate_target(text: str) -> str:
    """Check an outgoing call's target: a SIP URI whose transport is udp, tcp or tls."""
    address = parse_sip_uri(text)
    if address.transport not in TRANSPORTS:
        raise ValueError(f"{text!r} names transport {address.transport!r}; use udp, tcp or tls")
    return text.strip()


def user_part(uri: str) -> str:
    """Return the user part of a SIP or tel URI ('' when there is none or it is unreadable)."""
    if uri.strip().lower().startswith("tel:"):
        return unquote(uri.strip()[4:].split(";", 1)[0])
    try:
        return parse_sip_uri(uri).user
    except ValueError:
        return ""
