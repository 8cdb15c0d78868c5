"""The little SIP URI reading the control plane needs (RFC 3261 §19.1): user, host, transport.

The relay has the full parser; here a URI only has to be checked and its user part read. This is
also the one place where the forms a user may write are turned into the URI sipline stores and
dials (:func:`normalize_target`, :func:`normalize_server`): the control plane stores what they
return, and the relay (``relay/sip/locate.py``) reads its input through them too.
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


_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):")


def normalize_target(text: str) -> str:
    """Return an outgoing call's ``to`` as the ``sip:``/``sips:`` URI sipline dials.

    Accepted: a ``sip:``/``sips:`` URI (the scheme is lower-cased; ``<...>`` and surrounding
    blanks are dropped) and, without a scheme, ``user@host[:port][;params]`` as in Twilio's
    ``+15551234567@trunkname.pstn.twilio.com``, which becomes ``sip:`` + the text. Any other
    scheme (``tel:``, ``http:``) and a text without ``user@`` stay as they are, for
    :func:`validate_target` to refuse.
    """
    candidate = text.strip()
    if candidate.startswith("<") and candidate.endswith(">"):
        candidate = candidate[1:-1].strip()
    scheme = _SCHEME.match(candidate)
    user, at, _ = candidate.partition("@")
    if at and user and ":" not in user:  # no scheme before the "@": the scheme-less form
        return "sip:" + candidate
    if scheme and scheme["scheme"].lower() in ("sip", "sips"):
        return scheme["scheme"].lower() + candidate[scheme.end() - 1 :]
    return candidate


def validate_target(text: str) -> str:
    """Check an outgoing call's target (a SIP URI whose transport is udp, tcp or tls, or the
    scheme-less ``user@host`` form) and return it normalised by :func:`normalize_target`."""
    normal = normalize_target(text)
    try:
        address = parse_sip_uri(normal)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a SIP URI like sip:user@host[:port][;transport=tcp]"
        ) from None
    if address.transport not in TRANSPORTS:
        raise ValueError(f"{text!r} names transport {address.transport!r}; use udp, tcp or tls")
    return normal


def normalize_server(text: str) -> str:
    """Return a SIP server address (``host``, ``host:port``, ``[v6]:port``, a bare IPv6 address
    or a ``sip:``/``sips:`` URI, as a registration's ``proxy`` takes it) as a SIP URI.

    Raises:
        ValueError: the text is none of these.
    """
    candidate = text.strip()
    if candidate.lower().startswith(("sip:", "sips:", "<sip:", "<sips:")):
        parse_sip_uri(candidate)
        return normalize_target(candidate)
    host, port = parse_host_port(candidate)
    host = f"[{host}]" if ":" in host else host
    return f"sip:{host}" + (f":{port}" if port else "")


def user_part(uri: str) -> str:
    """Return the user part of a SIP or tel URI ('' when there is none or it is unreadable)."""
    if uri.strip().lower().startswith("tel:"):
        return unquote(uri.strip()[4:].split(";", 1)[0])
    try:
        return parse_sip_uri(uri).user
    except ValueError:
        return ""
