"""Refusing, when they are saved, the places a user asks sipline to connect to (SSRF).

The address policy is ``chalicelib/egress.py``; here each user-supplied target is read (a URL, a
SIP URI, a ``host[:port]``) and checked against it, and a refusal becomes a 400 naming the field.
The check is repeated on every connection (the fallback client, the relay), which is what
protects: a name may resolve differently later, and a name that does not resolve now is accepted.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from chalicelib.egress import TargetRefused, check_when_saved
from chalicelib.errors import InvalidInput
from chalicelib.services import Services
from chalicelib.sip_uri import parse_host_port, parse_sip_uri

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
SIP_PORT = 5060  # RFC 3261 §19.1.2


def _check(services: Services, field: str, text: str, host: str, port: int) -> None:
    try:
        check_when_saved(services.settings.egress, host, port, services.resolve)
    except TargetRefused as refused:
        raise InvalidInput(field, f"{text!r}: {refused}") from None


def check_url(services: Services, field: str, url: str) -> None:
    """Refuse an http(s) or ws(s) URL whose host is not a public address."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:  # "Invalid IPv6 URL", "Port out of range 0-65535"
        raise InvalidInput(field, f"{url!r} is not a valid URL ({error})") from None
    if not parts.hostname:
        raise InvalidInput(field, f"{url!r} names no host")
    _check(services, field, url, parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme, 443))


def check_host_port(services: Services, field: str, text: str) -> None:
    """Refuse a SIP server address (``host[:port]`` or a SIP URI) that is not public."""
    try:
        host, port = parse_host_port(text)
    except ValueError as error:
        raise InvalidInput(field, str(error)) from None
    _check(services, field, text, host, port or SIP_PORT)


def check_sip_uri(services: Services, field: str, uri: str) -> None:
    """Refuse a SIP URI (an outgoing call's ``to``) whose host, or ``maddr`` (which overrides
    where the request is sent, RFC 3261 §19.1.1), is not public."""
    address = parse_sip_uri(uri)  # already validated by the request model
    port = address.port or SIP_PORT
    _check(services, field, uri, address.host.strip("[]"), port)
    if "maddr" in address.params:
        _check(services, field, uri, address.params["maddr"].strip("[]"), port)
