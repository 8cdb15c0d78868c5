"""SIP, SIPS and tel URIs, other absolute URIs, and name-addr values (RFC 3261 §19.1, §20.10).

Theory of operation:

1. :meth:`SipUri.parse` accepts ``sip:``, ``sips:`` and ``tel:`` URIs; :func:`parse_uri`
   also accepts any other ``scheme:opaque`` absolute URI as an :class:`AbsoluteUri`, because
   RFC 4475 §3.3.2-§3.3.4 says a parser must not break on unknown schemes (the application
   answers 416 instead).
2. The user and password are stored percent-decoded and re-escaped by ``__str__``; host,
   parameters and headers are stored as received. So ``SipUri.parse(str(u)) == u`` holds
   for every URI built from valid parts, and dataclass equality is structural.
3. :meth:`SipUri.equivalent` is the RFC 3261 §19.1.4 comparison, which is not an equivalence
   relation (parameters present on one side only are ignored), hence not ``__eq__``.
4. A URI at the top of a header field value without ``<...>`` ends at the first ``;``: what
   follows are header parameters (RFC 3261 §20.10); such a URI must not contain ``,``, ``?``
   or ``;`` of its own, else it must be enclosed in angle brackets.

Size: at 400 lines: SIP URI, absolute URI and name-addr share the parameter grammar.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Self
from urllib.parse import quote, unquote

from relay.sip.errors import SipParseError
from relay.sip.syntax import abnf

__all__ = [
    "AbsoluteUri",
    "NameAddr",
    "Params",
    "SipUri",
    "find_param",
    "format_params",
    "parse_params",
    "parse_uri",
    "unquote_string",
]

Params = tuple[tuple[str, str | None], ...]

_USER = re.compile(abnf.USER)
_PASSWORD = re.compile(abnf.PASSWORD)
_HOST_PORT = re.compile(rf"({abnf.HOST})(?::({abnf.PORT}))?")
_URI_PARAM = re.compile(rf"({abnf.PARAMCHARS})(?:=({abnf.PARAMCHARS}))?")
_URI_HEADER = re.compile(rf"({abnf.HNV_CHARS})=({abnf.HNV_CHARS})")
_SCHEME = re.compile(abnf.SCHEME)
_OPAQUE = re.compile(r"[!#-;=?-\[\]_a-z~]+")  # absoluteURI chars, no SP, DQUOTE, <, >, \, ^, `
_TEL_NUMBER = re.compile(r"\+?[0-9A-Fa-f*#.()\-]+")
_GENERIC_PARAM = re.compile(abnf.GENERIC_PARAM)
_DISPLAY_TOKENS = re.compile(abnf.DISPLAY_TOKENS)
_QUOTED = re.compile(abnf.QUOTED_STRING)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_NEEDS_QUOTING = re.compile(r'[\x00-\x08\x0b\x0c\x0e-\x1f\x7f"\\]')  # quoted-pair them
_SIP_SCHEMES = frozenset({"sip", "sips", "tel"})
_USER_SAFE = "-_.!~*'()&=+$,;?/"
_PASSWORD_SAFE = "-_.!~*'()&=+$,"
# RFC 3261 §19.1.4: these parameters must match whenever either URI carries them.
_MUST_MATCH_PARAMS = frozenset({"user", "ttl", "method", "maddr", "transport"})


def _error(message: str, header: str | None = None) -> SipParseError:
    return SipParseError(message, header=header)


def _decode(text: str) -> str:
    return unquote(text, errors="surrogateescape")


@dataclass(frozen=True, slots=True, kw_only=True)
class SipUri:
    """A ``sip:``, ``sips:`` or ``tel:`` URI (RFC 3261 §19.1.1; RFC 3966 for ``tel``).

    For ``tel`` URIs the number is in ``user`` and ``host`` is empty. IPv6 hosts keep their
    brackets (``"[2001:db8::1]"``), as in the URI text.
    """

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse a SIP, SIPS or tel URI.

        Raises:
            SipParseError: the text is not such a URI (the message quotes it).
        """
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in _SIP_SCHEMES:
            raise _error(f"Not a SIP URI: {text[:80]!r}")
        if scheme == "tel":
            return cls._parse_tel(rest, text)
        user = password = None
        at = rest.find("@")  # userinfo may hold "?" and ";" but never a literal "@"
        if at >= 0:
            user, password = _parse_userinfo(rest[:at], text)
            rest = rest[at + 1 :]
        rest, _, headers = rest.partition("?")
        host, port, params = _parse_hostport_params(rest, text)
        return cls(
            scheme=scheme,
            user=user,
            password=password,
            host=host,
            port=port,
            params=params,
            headers=_parse_uri_headers(headers, text) if headers else (),
        )

    @classmethod
    def _parse_tel(cls, rest: str, text: str) -> Self:
        number, _, params = rest.partition(";")
        if not _TEL_NUMBER.fullmatch(number):
            raise _error(f"Malformed tel URI: {text[:80]!r}")
        return cls(scheme="tel", user=number, host="", params=_parse_uri_params(params, text))

    def __str__(self) -> str:
        """Format the URI, escaping the user and password as RFC 3261 §19.1.2 requires."""
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        userinfo = ""
        if self.user is not None:
            userinfo = quote(self.user, safe=_USER_SAFE, errors="surrogateescape")
            if self.password is not None:
                userinfo += ":" + quote(
                    self.password, safe=_PASSWORD_SAFE, errors="surrogateescape"
                )
            userinfo += "@"
        port = "" if self.port is None else f":{self.port}"
        headers = "&".join(f"{name}={value}" for name, value in self.headers)
        return f"{self.scheme}:{userinfo}{self.host}{port}{format_params(self.params)}" + (
            f"?{headers}" if headers else ""
        )

    def param(self, name: str) -> str | None:
        """Return the value of URI parameter ``name`` (case-insensitive); ``""`` if valueless."""
        return find_param(self.params, name)

    @property
    def transport(self) -> str | None:
        """Return the ``transport`` parameter, lower-cased (``"udp"``, ``"tcp"``, ``"tls"``...)."""
        value = self.param("transport")
        return None if value is None else value.lower()

    def equivalent(self, other: SipUri) -> bool:
        """Compare two URIs as RFC 3261 §19.1.4 prescribes.

        Userinfo is case-sensitive, host case-insensitive, escapes are decoded, a default
        port does not match an absent one; user/ttl/method/maddr/transport parameters must
        match when either side has them, other parameters only when both do; headers must
        all match.
        """
        if (self.scheme, self.user, self.password, self.port) != (
            other.scheme,
            other.user,
            other.password,
            other.port,
        ):
            return False
        if _decode(self.host).lower() != _decode(other.host).lower():
            return False
        return _params_equivalent(self.params, other.params) and _decoded_headers(
            self.headers
        ) == _decoded_headers(other.headers)


@dataclass(frozen=True, slots=True, kw_only=True)
class AbsoluteUri:
    """Any other absolute URI (``http:``, ``isbn:``, ``urn:``...), kept opaque (RFC 3261 §25.1)."""

    scheme: str
    opaque: str

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``scheme ":" opaque``; the scheme is lower-cased.

        Raises:
            SipParseError: no scheme, or characters an absolute URI cannot hold.
        """
        scheme, colon, opaque = text.partition(":")
        if not colon or not _SCHEME.fullmatch(scheme) or not _OPAQUE.fullmatch(opaque):
            raise _error(f"Malformed URI: {text[:80]!r}")
        return cls(scheme=scheme.lower(), opaque=opaque)

    def __str__(self) -> str:
        """Format the URI as received."""
        return f"{self.scheme}:{self.opaque}"


def parse_uri(text: str) -> SipUri | AbsoluteUri:
    """Parse a Request-URI or header URI: a :class:`SipUri` for sip/sips/tel, else absolute.

    Raises:
        SipParseError: the text is no URI at all.
    """
    if text.partition(":")[0].lower() in _SIP_SCHEMES:
        return SipUri.parse(text)
    return AbsoluteUri.parse(text)


def _parse_userinfo(userinfo: str, text: str) -> tuple[str, str | None]:
    user, colon, password = userinfo.partition(":")
    if not _USER.fullmatch(user) or (colon and not _PASSWORD.fullmatch(password)):
        raise _error(f"Malformed user part in URI: {text[:80]!r}")
    return _decode(user), _decode(password) if colon else None


def _parse_hostport_params(rest: str, text: str) -> tuple[str, int | None, Params]:
    match = _HOST_PORT.match(rest)
    if match is None:
        raise _error(f"Malformed host in URI: {text[:80]!r}")
    host, port = match.group(1), match.group(2)
    if host.startswith("["):
        _check_ipv6(host, text)
    if port is not None and int(port) > 65535:
        raise _error(f"Port out of range in URI: {text[:80]!r}")
    params = rest[match.end() :]
    if params and params[0] != ";":
        raise _error(f"Malformed host in URI: {text[:80]!r}")
    return host, None if port is None else int(port), _parse_uri_params(params[1:], text)


def _check_ipv6(host: str, text: str) -> None:
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        raise _error(f"Malformed IPv6 reference in URI: {text[:80]!r}") from None


def _parse_uri_params(text: str, uri: str) -> Params:
    if not text:
        return ()
    params: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        match = _URI_PARAM.fullmatch(item)
        if match is None:
            raise _error(f"Malformed parameter in URI: {uri[:80]!r}")
        params.append((match.group(1), match.group(2)))
    return tuple(params)


def _parse_uri_headers(text: str, uri: str) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for item in text.split("&"):
        match = _URI_HEADER.fullmatch(item)
        if match is None or not match.group(1):
            raise _error(f"Malformed header in URI: {uri[:80]!r}")
        headers.append((match.group(1), match.group(2)))
    return tuple(headers)


def format_params(params: Params) -> str:
    """Format parameters as ``;name`` / ``;name=value``, in order."""
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def _params_equivalent(mine: Params, theirs: Params) -> bool:
    left = {_decode(k).lower(): _decode(v or "").lower() for k, v in mine}
    right = {_decode(k).lower(): _decode(v or "").lower() for k, v in theirs}
    for name in left.keys() | right.keys():
        both = name in left and name in right
        if (both or name in _MUST_MATCH_PARAMS) and left.get(name) != right.get(name):
            return False
    return True


def _decoded_headers(headers: tuple[tuple[str, str], ...]) -> set[tuple[str, str]]:
    return {(_decode(name).lower(), _decode(value)) for name, value in headers}


def find_param(params: Params, name: str) -> str | None:
    """Return the raw value of parameter ``name`` (case-insensitive), ``""`` if valueless."""
    wanted = name.lower()
    for key, value in params:
        if key.lower() == wanted:
            return "" if value is None else value
    return None


def parse_params(text: str, *, header: str) -> Params:
    """Parse ``*( SEMI generic-param )`` from a header field value (RFC 3261 §25.1).

    Values keep their quotes when they are quoted strings, so formatting is lossless.

    Raises:
        SipParseError: naming ``header`` when a parameter is malformed or empty.
    """
    params: list[tuple[str, str | None]] = []
    pos, end = 0, len(text)
    while pos < end:
        match = _GENERIC_PARAM.match(text, pos)
        if match is None:
            raise _error(
                f"Malformed parameter in {header} header field: {text[pos : pos + 40]!r}", header
            )
        params.append((match.group(1), match.group(2)))
        pos = match.end()
    return tuple(params)


def unquote_string(quoted: str) -> str:
    """Return the content of a quoted-string with its quoted-pairs resolved (RFC 3261 §25.1)."""
    return _QUOTED_PAIR.sub(r"\1", quoted[1:-1])


def _quote_display(display: str) -> str:
    return '"' + _NEEDS_QUOTING.sub(r"\\\g<0>", display) + '"'


@dataclass(frozen=True, slots=True, kw_only=True)
class NameAddr:
    """``[display-name] <URI> *(;param)`` or ``addr-spec *(;param)`` (RFC 3261 §20.10, §20.20).

    Used for From, To, Contact, Route, Record-Route, Refer-To and the like. ``display`` is
    the unquoted, unescaped display name; ``params`` are the header parameters (``tag``...),
    values kept as received (quoted strings keep their quotes).
    """

    uri: SipUri | AbsoluteUri
    display: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str, *, header: str = "From") -> Self:
        """Parse one name-addr or addr-spec value of header field ``header``.

        Raises:
            SipParseError: naming ``header`` (unbalanced quotes, spaces inside ``<...>``,
                a bare URI holding ``?`` or ``,``, a display name with non-token characters).
        """
        value = text.strip(" \t")
        if value.startswith('"'):
            match = _QUOTED.match(value)
            if match is None:
                raise _error(f"Unterminated quoted display name in {header} header field", header)
            display: str | None = unquote_string(match.group(0))
            rest = value[match.end() :].lstrip(" \t")
            if not rest.startswith("<"):
                raise _error(f"Missing <URI> after display name in {header} header field", header)
            return cls._from_angle(rest, display, header)
        lt = value.find("<")
        if lt >= 0:
            display = " ".join(value[:lt].split()) or None
            if display is not None and not _DISPLAY_TOKENS.fullmatch(display):
                raise _error(f"Invalid display name in {header} header field", header)
            return cls._from_angle(value[lt:], display, header)
        return cls._from_addr_spec(value, header)

    @classmethod
    def _from_angle(cls, rest: str, display: str | None, header: str) -> Self:
        gt = rest.find(">")
        if gt < 0:
            raise _error(f"Missing '>' in {header} header field", header)
        uri_text = rest[1:gt]
        if not uri_text or " " in uri_text or "\t" in uri_text:
            raise _error(f"Whitespace inside <URI> in {header} header field", header)
        uri = _header_uri(uri_text, header)
        return cls(uri=uri, display=display, params=parse_params(rest[gt + 1 :], header=header))

    @classmethod
    def _from_addr_spec(cls, value: str, header: str) -> Self:
        uri_text, semi, params = value.partition(";")
        uri_text = uri_text.rstrip(" \t")
        if not uri_text or any(c in uri_text for c in " \t,?"):
            raise _error(f"URI in {header} header field must be enclosed in <>", header)
        uri = _header_uri(uri_text, header)
        return cls(uri=uri, params=parse_params(semi + params, header=header))

    def __str__(self) -> str:
        """Format as a name-addr: always with ``<...>``, the display name always quoted."""
        display = "" if self.display is None else _quote_display(self.display) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"

    def param(self, name: str) -> str | None:
        """Return header parameter ``name`` (case-insensitive) unquoted; ``""`` if valueless."""
        value = find_param(self.params, name)
        return unquote_string(value) if value and value.startswith('"') else value

    @property
    def tag(self) -> str | None:
        """Return the ``tag`` parameter (RFC 3261 §19.3), or ``None``."""
        return self.param("tag")

    def with_tag(self, tag: str) -> Self:
        """Return a copy carrying ``tag`` (replacing any tag it had)."""
        kept = tuple((k, v) for k, v in self.params if k.lower() != "tag")
        return type(self)(uri=self.uri, display=self.display, params=(*kept, ("tag", tag)))


def _header_uri(text: str, header: str) -> SipUri | AbsoluteUri:
    try:
        return parse_uri(text)
    except SipParseError as err:
        raise _error(f"Invalid URI in {header} header field: {err.message}", header) from None
