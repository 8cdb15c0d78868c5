"""Header fields: the ordered multi-value :class:`Headers` and the typed Via / CSeq parsers.

Theory of operation (RFC 3261 §7.3):

1. Names are case-insensitive and have compact forms (§7.3.3); :func:`canonical_name` maps
   both to one spelling (``v`` and ``VIA`` become ``Via``), so lookups are dictionary hits
   and ``Headers`` built by hand compare equal to the ones parsed from their bytes.
2. A header field is one ``(name, value)`` pair per line, in wire order, folding undone.
   Lines of a comma-list field (Via, Route, Contact, Allow...; §7.3.1) are split into
   elements only on demand by :meth:`Headers.get_all`, honouring quoted strings and
   ``<...>``; other fields (Date, Authorization...) are never split.
3. ``Headers`` is immutable: ``with_*`` methods return copies. Typed values (a parsed Via,
   a CSeq...) are computed lazily through :meth:`Headers.typed` / :meth:`Headers.typed_all`
   and cached on the instance, so each is parsed at most once per message.
4. Content-Length is framing, not a header the application sets: the parser consumes it and
   serialization writes it from the body (see ``relay.sip.syntax.message``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Self, TypeVar, cast

from relay.sip.errors import LocalProtocolError, SipParseError
from relay.sip.syntax import abnf
from relay.sip.syntax.uri import Params, find_param, format_params, parse_params

__all__ = [
    "COMPACT_FORMS",
    "CSeq",
    "Headers",
    "Via",
    "canonical_name",
    "parse_max_forwards",
    "split_values",
]

T = TypeVar("T")

# RFC 3261 §7.3.3, plus RFC 3515 (r), 3841 (a, j, d), 3892 (b), 4028 (x), 6665 (o, u), 8224 (y).
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact", "k": "Supported",
    "l": "Content-Length", "m": "Contact", "o": "Event", "r": "Refer-To", "s": "Subject",
    "t": "To", "u": "Allow-Events", "v": "Via", "x": "Session-Expires", "y": "Identity",
}  # fmt: skip

_KNOWN_NAMES = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Identity",
    "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization",
    "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority", "Privacy",
    "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Replaces", "Reply-To",
    "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Server", "Service-Route",
    "Session-Expires", "Subject", "Subscription-State", "Supported", "Timestamp", "To",
    "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
)  # fmt: skip

# Header fields whose grammar is a comma-separated list (RFC 3261 §7.3.1 and §20).
_COMMA_LIST_NAMES = (
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Call-Info", "Contact", "Content-Encoding", "Content-Language", "Error-Info", "In-Reply-To",
    "P-Asserted-Identity", "Path", "Proxy-Require", "Reason", "Record-Route", "Require",
    "Route", "Service-Route", "Supported", "Unsupported", "Via", "Warning",
)  # fmt: skip
_COMMA_LISTS = frozenset(name.lower() for name in _COMMA_LIST_NAMES)

_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN_NAMES}
_CANONICAL.update(COMPACT_FORMS)
# Index keys for every known spelling we look up by: "Via", "via", "v" all map to "via".
_KEYS: dict[str, str] = {name: full.lower() for name, full in _CANONICAL.items()}
_KEYS.update({full: full.lower() for full in _CANONICAL.values()})
_TOKEN = re.compile(abnf.TOKEN)
_CSEQ = re.compile(abnf.CSEQ)
_VIA_HEAD = re.compile(abnf.VIA_PARM_HEAD)
_DIGITS = re.compile(r"[0-9]{1,10}")
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n]")


def canonical_name(name: str) -> str:
    """Return the canonical spelling of a header field name (compact forms expanded).

    Unknown names are kept as spelled.

    Raises:
        SipParseError: ``name`` is not a token (RFC 3261 §25.1 ``header-name``).
    """
    found = _CANONICAL.get(name.lower())
    if found is not None:
        return found
    if not _TOKEN.fullmatch(name):
        raise SipParseError(f"Invalid header field name: {name[:40]!r}")
    return name


def split_values(value: str) -> list[str]:
    """Split a comma-list field value into its elements (RFC 3261 §7.3.1).

    Commas inside quoted strings and ``<...>`` do not split; empty elements are dropped.
    """
    if "," not in value:
        return [value] if value else []
    parts: list[str] = []
    start = depth = 0
    quoted = escaped = False
    for i, char in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            escaped, quoted = char == "\\", char != '"'
        elif char == '"':
            quoted = True
        elif char == "<":
            depth += 1
        elif char == ">":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return [part.strip(" \t") for part in parts if part.strip(" \t")]


class Headers:
    """Immutable, ordered, case-insensitive multi-value header fields of one message."""

    __slots__ = ("_fields", "_index", "_cache")

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        """Build from ``(name, value)`` pairs, canonicalizing names and stripping values.

        Raises:
            LocalProtocolError: a name is not a token or a value holds CR or LF.
        """
        checked: list[tuple[str, str]] = []
        for name, value in fields:
            try:
                canonical = canonical_name(name)
            except SipParseError as err:
                raise LocalProtocolError(err.message) from None
            if _FORBIDDEN_IN_VALUE.search(value):
                raise LocalProtocolError(f"Header field {canonical} value contains CR or LF")
            checked.append((canonical, value.strip(" \t")))
        self._set(tuple(checked))

    @classmethod
    def _trusted(cls, fields: tuple[tuple[str, str], ...]) -> Headers:
        """Wrap fields the parser already canonicalized (no re-validation)."""
        headers = cls.__new__(cls)
        headers._set(fields)
        return headers

    def _set(self, fields: tuple[tuple[str, str], ...]) -> None:
        index: dict[str, list[int]] = {}
        for position, (name, _) in enumerate(fields):
            index.setdefault(name.lower(), []).append(position)
        self._fields = fields
        self._index = index
        self._cache: dict[tuple[str, Any, bool], Any] = {}

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """Iterate over ``(name, value)`` fields in wire order."""
        return iter(self._fields)

    def __len__(self) -> int:
        """Return the number of header field lines."""
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        """Compare field by field (names are already canonical)."""
        return isinstance(other, Headers) and self._fields == other._fields

    def __hash__(self) -> int:
        """Hash the fields, so messages holding headers stay hashable."""
        return hash(self._fields)

    def __repr__(self) -> str:
        """Show the fields."""
        return f"Headers({list(self._fields)!r})"

    def __contains__(self, name: object) -> bool:
        """Return whether a field named ``name`` (any spelling) is present."""
        return isinstance(name, str) and _key(name) in self._index

    def count(self, name: str) -> int:
        """Return how many lines carry field ``name`` (before comma splitting)."""
        return len(self._index.get(_key(name), ()))

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the value of the first ``name`` line, unsplit, or ``default``."""
        positions = self._index.get(_key(name))
        return default if not positions else self._fields[positions[0]][1]

    def get_all(self, name: str) -> list[str]:
        """Return every value of ``name`` in order, comma-lists split into elements."""
        key = _key(name)
        values = [self._fields[i][1] for i in self._index.get(key, ())]
        if key not in _COMMA_LISTS:
            return values
        return [element for value in values for element in split_values(value)]

    def typed(self, name: str, parser: Callable[[str], T]) -> T | None:
        """Return ``parser(first value)``, cached; ``None`` when the field is absent.

        Raises:
            SipParseError: from ``parser`` (not cached, so it is raised on every call).
        """
        key = (_key(name), parser, False)
        if key not in self._cache:
            value = self.get(name)
            self._cache[key] = None if value is None else parser(value)
        return cast("T | None", self._cache[key])

    def typed_all(self, name: str, parser: Callable[[str], T]) -> tuple[T, ...]:
        """Return ``parser`` applied to every element of :meth:`get_all`, cached."""
        key = (_key(name), parser, True)
        if key not in self._cache:
            self._cache[key] = tuple(parser(value) for value in self.get_all(name))
        return cast("tuple[T, ...]", self._cache[key])

    def with_added(self, name: str, value: str) -> Headers:
        """Return a copy with ``name: value`` appended."""
        return Headers((*self._fields, (name, value)))

    def with_prepended(self, name: str, value: str) -> Headers:
        """Return a copy with ``name: value`` first (a proxy's new top Via, §16.6)."""
        return Headers(((name, value), *self._fields))

    def with_replaced(self, name: str, value: str) -> Headers:
        """Return a copy where ``name`` has the single value ``value`` (added if absent)."""
        key = _key(name)
        fields = [field for field in self._fields if field[0].lower() != key]
        positions = self._index.get(key)
        fields.insert(positions[0] if positions else len(fields), (name, value))
        return Headers(fields)

    def without(self, name: str) -> Headers:
        """Return a copy without any ``name`` field."""
        key = _key(name)
        return Headers._trusted(tuple(f for f in self._fields if f[0].lower() != key))


def _key(name: str) -> str:
    """Return the index key of ``name``: its canonical name, lower-cased."""
    key = _KEYS.get(name)
    if key is None:
        lower = name.lower()
        key = _KEYS.get(lower, lower)
    return key


@dataclass(frozen=True, slots=True)
class CSeq:
    """A CSeq value: sequence number and method (RFC 3261 §8.1.1.5, §20.16)."""

    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``1*DIGIT LWS Method``; the number must fit in 32 bits.

        Raises:
            SipParseError: naming CSeq.
        """
        match = _CSEQ.fullmatch(text.strip(" \t"))
        if match is None:
            raise SipParseError(f"Invalid CSeq header field: {text[:60]!r}", header="CSeq")
        number = int(match.group(1))
        if number >= 2**32:
            raise SipParseError("CSeq sequence number exceeds 2**32-1", header="CSeq")
        return cls(number, match.group(2))

    def __str__(self) -> str:
        """Format as ``number SP method``."""
        return f"{self.number} {self.method}"


def parse_max_forwards(text: str) -> int:
    """Parse a Max-Forwards value, 0 to 255 (RFC 3261 §20.22).

    Raises:
        SipParseError: naming Max-Forwards.
    """
    value = text.strip(" \t")
    if not _DIGITS.fullmatch(value) or int(value) > 255:
        raise SipParseError(
            f"Invalid Max-Forwards header field: {text[:20]!r}", header="Max-Forwards"
        )
    return int(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    """One Via element (RFC 3261 §20.42) with RFC 3581 ``rport``.

    ``params`` keeps every via-param in order, values as received; ``branch``, ``received``,
    ``rport`` and ``maddr`` read from it.
    """

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``sent-protocol LWS sent-by *( SEMI via-params )``.

        Raises:
            SipParseError: naming Via.
        """
        match = _VIA_HEAD.match(text)
        if match is None:
            raise SipParseError(f"Invalid Via header field: {text[:60]!r}", header="Via")
        name, version, transport, host, port = match.groups()
        if port is not None and int(port) > 65535:
            raise SipParseError(f"Via port out of range: {port}", header="Via")
        return cls(
            protocol=f"{name.upper()}/{version}",
            transport=transport.upper(),
            host=host,
            port=None if port is None else int(port),
            params=parse_params(text[match.end() :], header="Via"),
        )

    def __str__(self) -> str:
        """Format as ``SIP/2.0/UDP host:port;params``."""
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    def param(self, name: str) -> str | None:
        """Return via-param ``name`` (case-insensitive); ``""`` if valueless, else ``None``."""
        return find_param(self.params, name)

    @property
    def branch(self) -> str | None:
        """Return the branch parameter (RFC 3261 §8.1.1.7)."""
        return self.param("branch")

    @property
    def received(self) -> str | None:
        """Return the received parameter (RFC 3261 §18.2.1)."""
        return self.param("received")

    @property
    def maddr(self) -> str | None:
        """Return the maddr parameter."""
        return self.param("maddr")

    @property
    def rport_requested(self) -> bool:
        """Return whether ``rport`` is present, with or without a value (RFC 3581 §3)."""
        return self.param("rport") is not None

    @property
    def rport(self) -> int | None:
        """Return the numeric ``rport`` value filled in by a server (RFC 3581 §4), or ``None``."""
        value = self.param("rport")
        return int(value) if value and _DIGITS.fullmatch(value) else None

    def stamped(self, source_host: str, source_port: int) -> Via:
        """Return this Via as a server stamps it on receipt (RFC 3261 §18.2.1, RFC 3581 §4).

        ``received`` is added when the sent-by host differs from the packet's source or when
        the client asked for ``rport``; a valueless ``rport`` gets the source port.
        """
        params = list(self.params)
        if self.rport_requested:
            params = [(k, str(source_port)) if k.lower() == "rport" else (k, v) for k, v in params]
        if self.rport_requested or self.host != source_host:
            params = [(k, v) for k, v in params if k.lower() != "received"]
            params.append(("received", source_host))
        return Via(
            protocol=self.protocol,
            transport=self.transport,
            host=self.host,
            port=self.port,
            params=tuple(params),
        )

    def response_address(self, default_port: int = 5060) -> tuple[str, int]:
        """Return where an unreliable transport sends responses (RFC 3261 §18.2.2, RFC 3581 §4).

        ``maddr`` wins, then ``received`` (with ``rport`` when filled in), then sent-by.
        """
        if self.maddr:
            return self.maddr, self.port or default_port
        host = self.received or self.host
        port = self.rport if self.received and self.rport else self.port
        return host, port or default_port
