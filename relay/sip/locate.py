"""Locating the SIP server of a request's target: RFC 3263 §4 as a sans-I/O core.

A :class:`Locator` is given the URI to reach (an outgoing call's ``to``, or the outbound proxy
that stands in front of it, RFC 3261 §8.1.2) and asks for DNS records; the caller
(``relay/transport/dns.py``) answers each batch of :class:`Query` with one :class:`Answer` each,
and when no query is left, :attr:`Locator.targets` is the ordered list of places to try: on a 503
or a timeout from one, the next (RFC 3263 §4.3). The rules, in the order they apply:

1. **TARGET** is the URI's ``maddr`` parameter if it has one, else its host (RFC 3263 §4).
2. **A numeric IP** needs no DNS: the target is that address, at the URI's port or the
   transport's default (5060; 5061 for TLS) (§4.2). So is ``localhost`` (and ``*.localhost``),
   which stands for 127.0.0.1 (RFC 6761 §6.3) and is never asked of DNS.
3. **The transport** is the URI's ``transport`` parameter when it has one (udp, tcp or tls; any
   other is refused). Else, for a numeric IP or an explicit port: UDP for ``sip:``, TLS for
   ``sips:`` (§4.1).
4. **An explicit port** means A/AAAA lookups of TARGET only, no NAPTR or SRV (§4.2).
5. **NAPTR**, when neither a transport nor a port is given (§4.1): the records whose flag is
   ``s`` and whose service is one we speak, ``SIP+D2U`` (UDP), ``SIP+D2T`` (TCP) or
   ``SIPS+D2T`` (TLS) — only ``SIPS+D2T`` for a ``sips:`` URI — at the lowest ``order`` among
   them (RFC 3403 §4.1: a client must not consider a higher order once one matched), by
   ``preference``. Each names the SRV record set of its transport (its replacement).
6. **SRV** (§4.2): of the NAPTR replacements; or, without a usable NAPTR record, of
   ``_sips._tcp`` (TLS), ``_sip._tcp`` (TCP) and ``_sip._udp`` (UDP) under TARGET, in that order
   (only ``_sips._tcp`` for ``sips:``); or, with a ``transport`` parameter but no port, of that
   transport's name alone (``_sips._tcp`` for TLS). The SRV records of one set are ordered by
   priority, and within a priority by RFC 2782's weighted random selection (:func:`order_srv`);
   a target of ``.`` means "not offered here" and is dropped. Each SRV target is looked up with
   A and AAAA, at the SRV's port.
7. **No SRV record at all**: A/AAAA of TARGET at the transport's default port, the transport
   being the first NAPTR service's, else UDP (TLS for ``sips:``) (§4.1, §4.2).
8. **Addresses** of one name: the A records, then the AAAA records, as the server gave them.
   A repeated (address, port, transport) is listed once.
9. **The name a TLS server proves** is TARGET, the domain located (RFC 5922 §4; RFC 3263 §4:
   the AUS), never an SRV target or a NAPTR replacement: a zone that points ``_sips._tcp`` of
   ``trunk.test`` at ``edge1.provider.test`` is still served by a certificate for
   ``trunk.test``. :attr:`Located.addresses` hands it to the transport with each TLS target.

Queries of one step are asked together (the SRV sets, then every A/AAAA), so a lookup takes at
most three round trips: NAPTR, SRV, addresses. A query that fails (timeout, SERVFAIL) counts as
no records and the walk goes on; it is remembered, so that an empty result says why
(:class:`LocateError`). Limits on what a hostile zone can make the relay do (docs/relay.md):
:data:`MAX_NAPTR_SERVICES` NAPTR records followed, :data:`MAX_SRV_RECORDS` records of one SRV
set ordered, :data:`MAX_SRV_HOSTS` SRV targets looked up, :data:`MAX_TARGETS` targets returned;
so at most 1 + 4 + 2 × 8 = 21 queries (:data:`MAX_QUERIES`). CNAME chains inside an answer are
the recursive server's and the resolver library's to follow; a NAPTR record with another flag
than ``s`` (a further NAPTR step, a URI rewrite) is not followed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from chalicelib.egress import loopback_name
from chalicelib.sip_uri import normalize_server, normalize_target
from relay.ids import IdSource
from relay.sip.address import Address, Transport
from relay.sip.dns_records import (
    MAX_NAPTR_SERVICES,
    Answer,
    LookupFailure,
    NaptrRecord,
    Query,
    RecordType,
    SrvRecord,
    order_srv,
    select_naptr,
)
from relay.sip.errors import SipParseError
from relay.sip.syntax.uri import SipUri

__all__ = [
    "DEFAULT_PORTS",
    "MAX_QUERIES",
    "MAX_SRV_HOSTS",
    "MAX_TARGETS",
    "LocateError",
    "LocateFailure",
    "Located",
    "Locator",
    "Target",
    "parse_server",
    "parse_target",
]

DEFAULT_PORTS = {Transport.UDP: 5060, Transport.TCP: 5060, Transport.TLS: 5061}  # RFC 3261 §19.1.2
MAX_SRV_HOSTS = 8
"""SRV targets, over all sets in order, whose addresses are looked up (two queries each)."""
MAX_TARGETS = 16
"""Targets returned at most."""
MAX_QUERIES = 1 + MAX_NAPTR_SERVICES + 2 * MAX_SRV_HOSTS
"""Queries one location asks at most: NAPTR, the SRV sets, A and AAAA of each SRV target."""

SRV_PREFIXES = {  # RFC 3263 §4.1/§4.2; in the order we ask them without NAPTR
    Transport.TLS: "_sips._tcp.",
    Transport.TCP: "_sip._tcp.",
    Transport.UDP: "_sip._udp.",
}
_LOOPBACK = "127.0.0.1"


_R = TypeVar("_R")
Steps = Generator[tuple[Query, ...], tuple[Answer, ...], _R]
"""A step of the walk: yields queries, is sent their answers, returns its result."""


@dataclass(frozen=True, slots=True)
class Target:
    """One place to send the request to, in the order to try them."""

    host: str
    """An IP address as text (IPv6 without brackets): what the socket is given."""
    port: int
    transport: Transport
    name: str
    """The domain name ``host`` was found under (an SRV target, or TARGET); the address itself
    for a numeric IP. For logs and the egress policy; a TLS server proves the URI's domain
    instead (:attr:`Located.domain`), never this name."""


@dataclass(frozen=True, slots=True)
class Located:
    """Where to send a request: the targets to try, best first, and what they were found for."""

    uri: SipUri
    """The URI that was located: the outbound proxy when there is one, else the target."""
    domain: str
    """TARGET (rule 1) without brackets: the name a TLS server must prove (RFC 5922 §4)."""
    targets: tuple[Target, ...]
    """One or more, best first; on a 503 or a timeout from one, try the next (RFC 3263 §4.3)."""

    @property
    def addresses(self) -> tuple[Address, ...]:
        """Return the targets as the SIP endpoint takes them: a TLS one names :attr:`domain`
        as the server it must reach (its ``server_name``, the SNI and the name its certificate
        is checked for; RFC 5922 §4), not the SRV target nor the address."""
        return tuple(
            Address(
                target.host,
                target.port,
                target.transport,
                server_name=self.domain if target.transport is Transport.TLS else None,
            )
            for target in self.targets
        )


class LocateFailure(StrEnum):
    """What kind of failure a :class:`LocateError` is."""

    INVALID = "invalid"
    """The URI cannot be located (not a SIP URI, a transport we do not speak)."""
    NOT_FOUND = "not_found"
    """DNS answered, and there is no such domain or no address for it."""
    UNAVAILABLE = "unavailable"
    """DNS did not answer (timeouts, server failures, the deadline)."""
    REFUSED = "refused"
    """Every address found is refused by the egress policy (chalicelib/egress.py)."""


class LocateError(Exception):
    """No target could be found; the message says which name and why (never a secret)."""

    def __init__(self, message: str, kind: LocateFailure) -> None:
        super().__init__(message)
        self.kind = kind


def parse_target(text: str) -> SipUri:
    """Parse an outgoing call's ``to`` (any form ``chalicelib/sip_uri.py`` accepts).

    Raises:
        LocateError: ``INVALID``: it is not a SIP or SIPS URI with a host.
    """
    return _sip_uri(normalize_target(text), text)


def parse_server(text: str) -> SipUri:
    """Parse an outbound proxy: ``host``, ``host:port``, ``[v6]:port`` or a SIP URI.

    Raises:
        LocateError: ``INVALID``: it is none of these.
    """
    try:
        normal = normalize_server(text)
    except ValueError as error:
        raise LocateError(str(error), LocateFailure.INVALID) from None
    return _sip_uri(normal, text)


def _sip_uri(normal: str, text: str) -> SipUri:
    try:
        uri = SipUri.parse(normal)
    except SipParseError as error:
        raise LocateError(error.message, LocateFailure.INVALID) from None
    if uri.scheme not in ("sip", "sips") or not uri.host:
        raise LocateError(f"{text[:80]!r} is not a SIP URI", LocateFailure.INVALID)
    return uri


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


@dataclass
class Locator:
    """One RFC 3263 location of ``uri`` (see the module docstring); drive it with
    :meth:`pending` and :meth:`receive` until :meth:`pending` is empty, then read :attr:`targets`.

    Raises (at construction):
        LocateError: ``INVALID``: the URI names a transport we do not speak.
    """

    uri: SipUri
    ids: IdSource
    domain: str = field(init=False)
    """TARGET (rule 1), lower-cased, IPv6 without brackets: what a TLS server must prove."""
    queries_asked: int = field(init=False, default=0)
    """Queries asked so far (at most :data:`MAX_QUERIES`)."""
    _transport: Transport | None = field(init=False, default=None)
    _pending: tuple[Query, ...] = field(init=False, default=())
    _failures: list[Answer] = field(init=False, default_factory=list)
    _result: list[Target] | None = field(init=False, default=None)
    _steps: Steps[list[Target]] = field(init=False)

    def __post_init__(self) -> None:
        if self.uri.scheme not in ("sip", "sips") or not self.uri.host:
            raise LocateError(f"cannot locate {self.uri.scheme}: URIs", LocateFailure.INVALID)
        self.domain = (self.uri.param("maddr") or self.uri.host).strip("[]").rstrip(".").lower()
        self._transport = self._named_transport()
        self._steps = self._walk()
        self._advance(None)

    @property
    def secure(self) -> bool:
        """Return True for a ``sips:`` URI (only TLS may carry it)."""
        return self.uri.scheme == "sips"

    def pending(self) -> tuple[Query, ...]:
        """Return the queries to answer now (all of them, in one :meth:`receive`); () when done."""
        return self._pending

    def receive(self, answers: Sequence[Answer]) -> None:
        """Take the answers to :meth:`pending`, one per query, in any order.

        Raises:
            ValueError: the answers are not exactly those of the pending queries.
        """
        by_query = {answer.query: answer for answer in answers}
        if len(answers) != len(self._pending) or set(by_query) != set(self._pending):
            raise ValueError("receive() needs one answer for each pending query")
        ordered = tuple(by_query[query] for query in self._pending)
        self._failures.extend(answer for answer in ordered if answer.failure is not None)
        self._advance(ordered)

    @property
    def targets(self) -> list[Target]:
        """Return the targets, best first.

        Raises:
            LocateError: there is none (``NOT_FOUND`` or ``UNAVAILABLE``, naming the lookups).
            RuntimeError: queries are still pending.
        """
        if self._result is None:
            raise RuntimeError("the location is not finished: answer pending() first")
        if not self._result:
            raise self._no_target()
        return list(self._result)

    def _advance(self, answers: tuple[Answer, ...] | None) -> None:
        try:
            queries = next(self._steps) if answers is None else self._steps.send(answers)
            while not queries:  # a step with nothing to ask (no SRV target to look up)
                queries = self._steps.send(())
        except StopIteration as stop:
            self._pending, self._result = (), list(stop.value)[:MAX_TARGETS]
            return
        self.queries_asked += len(queries)
        self._pending = queries

    def _named_transport(self) -> Transport | None:
        named = self.uri.transport
        if named is None:
            return None
        if named not in ("udp", "tcp", "tls"):
            raise LocateError(
                f"{self.uri.host} names transport {named!r}; sipline speaks udp, tcp and tls",
                LocateFailure.INVALID,
            )
        if self.secure and named == "udp":
            raise LocateError("a sips: URI cannot be reached over udp", LocateFailure.INVALID)
        return Transport.TLS if self.secure else Transport(named)  # sips;transport=tcp is TLS

    def _fallback_transport(self) -> Transport:
        return self._transport or (Transport.TLS if self.secure else Transport.UDP)

    def _walk(self) -> Steps[list[Target]]:
        literal = _literal(self.domain)
        if literal is None and loopback_name(self.domain):
            literal = _LOOPBACK
        if literal is not None:  # rule 2
            transport = self._fallback_transport()
            port = self.uri.port or DEFAULT_PORTS[transport]
            return [Target(literal, port, transport, literal)]
        if self.uri.port is not None:  # rule 4
            places = [(self.domain, self.uri.port)]
            return (yield from self._addresses(places, self._fallback_transport()))
        services, from_naptr = yield from self._services()
        srv_answers = yield tuple(Query(name, RecordType.SRV) for name, _ in services)
        hosts: list[tuple[str, int, Transport]] = []
        for (_, transport), answer in zip(services, srv_answers, strict=True):
            records = [r for r in answer.records if isinstance(r, SrvRecord)]
            hosts += [(r.target, r.port, transport) for r in order_srv(records, self.ids)]
        if any(answer.records for answer in srv_answers):
            return (yield from self._srv_addresses(hosts))
        transport = services[0][1] if from_naptr else self._fallback_transport()  # rule 7
        return (yield from self._addresses([(self.domain, DEFAULT_PORTS[transport])], transport))

    def _services(self) -> Steps[tuple[list[tuple[str, Transport]], bool]]:
        """Return the SRV names to ask with their transports, and whether NAPTR chose them."""
        if self._transport is not None:  # rule 6, a transport but no port
            return [(SRV_PREFIXES[self._transport] + self.domain, self._transport)], False
        (naptr,) = yield (Query(self.domain, RecordType.NAPTR),)
        records = [r for r in naptr.records if isinstance(r, NaptrRecord)]
        chosen = select_naptr(records, secure=self.secure)
        if chosen:
            return chosen, True
        wanted = [Transport.TLS] if self.secure else list(SRV_PREFIXES)
        return [(SRV_PREFIXES[t] + self.domain, t) for t in wanted], False

    def _srv_addresses(self, hosts: list[tuple[str, int, Transport]]) -> Steps[list[Target]]:
        targets: list[Target] = []
        names = list(dict.fromkeys(name for name, _, _ in hosts))[:MAX_SRV_HOSTS]
        found = yield from self._lookup(names)
        for name, port, transport in hosts:
            targets += [Target(ip, port, transport, name) for ip in found.get(name, [])]
        return _unique(targets)

    def _addresses(
        self, places: list[tuple[str, int]], transport: Transport
    ) -> Steps[list[Target]]:
        found = yield from self._lookup([name for name, _ in places])
        targets = [Target(ip, port, transport, name) for name, port in places for ip in found[name]]
        return _unique(targets)

    def _lookup(self, names: list[str]) -> Steps[dict[str, list[str]]]:
        queries = tuple(Query(n, t) for n in names for t in (RecordType.A, RecordType.AAAA))
        answers = yield queries
        found: dict[str, list[str]] = {name: [] for name in names}
        for answer in answers:  # in query order: each name's A records, then its AAAA
            found[answer.query.name] += [
                address for r in answer.records if isinstance(r, str) and (address := _literal(r))
            ]
        return found

    def _no_target(self) -> LocateError:
        unanswered = [a for a in self._failures if a.failure is not LookupFailure.NXDOMAIN]
        if unanswered:
            first = unanswered[0]
            return LocateError(
                f"cannot locate {self.domain}: {first.query.rdtype} lookup of "
                f"{first.query.name} {first.failure}",
                LocateFailure.UNAVAILABLE,
            )
        if any(a.query.name == self.domain for a in self._failures):
            return LocateError(
                f"cannot locate {self.domain}: no such domain (NXDOMAIN)", LocateFailure.NOT_FOUND
            )
        return LocateError(
            f"cannot locate {self.domain}: no SIP server or address records found",
            LocateFailure.NOT_FOUND,
        )


def _unique(targets: list[Target]) -> list[Target]:
    seen: set[tuple[str, int, Transport]] = set()
    unique: list[Target] = []
    for target in targets:
        key = (target.host, target.port, target.transport)
        if key not in seen:
            seen.add(key)
            unique.append(target)
    return unique
