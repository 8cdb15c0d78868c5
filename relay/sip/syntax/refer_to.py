"""Refer-To and Replaces: the target of a REFER and the header fields it carries (pure).

RFC 3515 §2.1, RFC 3261 §19.1.1, RFC 3891 §6.1. Theory of operation
===================================================================

1. A REFER names its target in ``Refer-To``, a name-addr whose URI may embed header fields
   the referee copies into the request it sends (RFC 3515 §2.1, RFC 3261 §19.1.5):
   ``<sip:bob@biloxi.example.net?Accept-Contact=...&Replaces=...>``. In a URI, a header
   value is ``hvalue = *( hnv-unreserved / unreserved / escaped )`` (RFC 3261 §25.1):
   everything else, ``;`` ``=`` ``@`` ``%`` ``&`` and spaces included, is percent-escaped.
   :func:`escape_header_value` does that, :func:`format_refer_to` builds the whole value.
2. ``Replaces`` (RFC 3891 §6.1) names the dialog the new INVITE replaces:
   ``callid *(;to-tag=..|;from-tag=..|;early-only)``; embedded in Refer-To it is escaped
   like any header value: ``Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994``.
   :func:`replaces_value` writes it from the dialog to replace, seen from the UA that receives
   the new INVITE (its own to-tag and from-tag).
3. :func:`parse_refer_to` reads a received ``Refer-To`` (the REFER a PBX sends us) into a
   :class:`ReferTo`: the URI (its embedded headers removed) and those headers, decoded. It is
   bounded: at most :data:`MAX_REFER_TO_CHARS` characters and :data:`MAX_EMBEDDED_HEADERS`
   embedded header fields; beyond, or malformed, it raises ``SipParseError`` naming
   ``Refer-To`` (a 400 with that reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote

from relay.sip.errors import LocalProtocolError, SipParseError
from relay.sip.syntax.uri import AbsoluteUri, NameAddr, SipUri

__all__ = [
    "MAX_EMBEDDED_HEADERS",
    "MAX_REFER_TO_CHARS",
    "ReferTo",
    "escape_header_value",
    "format_refer_to",
    "parse_refer_to",
    "replaces_value",
]

MAX_REFER_TO_CHARS = 2048
"""Longest Refer-To value accepted in a REFER we receive (rule 3)."""
MAX_EMBEDDED_HEADERS = 16
"""Most header fields a received Refer-To URI may embed (rule 3)."""
_HVALUE_SAFE = "[]/?:+$-_.!~*'()"  # hnv-unreserved and unreserved's marks (RFC 3261 §25.1)
HEADER = "Refer-To"


def escape_header_value(value: str) -> str:
    """Percent-escape ``value`` for a URI's header part (rule 1, RFC 3261 §19.1.1)."""
    return quote(value, safe=_HVALUE_SAFE)


def replaces_value(call_id: str, *, to_tag: str, from_tag: str, early_only: bool = False) -> str:
    """Return a ``Replaces`` value naming a dialog (RFC 3891 §6.1), unescaped (rule 2).

    ``to_tag`` and ``from_tag`` are the tags of the dialog as the recipient of the new INVITE
    sees it: its own tag is the ``to-tag``.
    """
    value = f"{call_id};to-tag={to_tag};from-tag={from_tag}"
    return value + ";early-only" if early_only else value


def format_refer_to(target: SipUri, headers: Sequence[tuple[str, str]] = ()) -> str:
    """Return the ``Refer-To`` value for ``target`` embedding ``headers`` (rules 1 and 2).

    Raises:
        LocalProtocolError: ``target`` already embeds headers, or a name is not a token.
    """
    if target.headers:
        raise LocalProtocolError("Refer-To target already embeds header fields")
    embedded = []
    for name, value in headers:
        if not name or escape_header_value(name) != name:
            raise LocalProtocolError(f"header field name {name[:40]!r} cannot be embedded")
        embedded.append((name, escape_header_value(value)))
    return str(NameAddr(uri=replace(target, headers=tuple(embedded))))


@dataclass(frozen=True, slots=True)
class ReferTo:
    """A received ``Refer-To`` (rule 3)."""

    uri: SipUri | AbsoluteUri
    """The target, without its embedded header fields."""
    headers: tuple[tuple[str, str], ...]
    """The embedded header fields, names and values percent-decoded, in order."""

    def header(self, name: str) -> str | None:
        """Return the first embedded field named ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


def parse_refer_to(value: str) -> ReferTo:
    """Parse a received ``Refer-To`` value (rule 3).

    Raises:
        SipParseError: too long, too many embedded headers, or not a name-addr.
    """
    if len(value) > MAX_REFER_TO_CHARS:
        raise SipParseError(f"Refer-To longer than {MAX_REFER_TO_CHARS} characters", header=HEADER)
    uri = NameAddr.parse(value, header=HEADER).uri
    if not isinstance(uri, SipUri):
        return ReferTo(uri, ())
    if len(uri.headers) > MAX_EMBEDDED_HEADERS:
        raise SipParseError(
            f"Refer-To embeds more than {MAX_EMBEDDED_HEADERS} header fields", header=HEADER
        )
    decoded = tuple((unquote(name), unquote(text)) for name, text in uri.headers)
    return ReferTo(replace(uri, headers=()), decoded)
