"""Asking DNS what ``relay/sip/locate.py`` wants to know, with dnspython's asyncio resolver.

:class:`SipLocator` is the asyncio side of RFC 3263 location (docs/relay.md, "Finding the callee's
server"): it runs a :class:`~relay.sip.locate.Locator`, answering each batch of its queries
together, then checks every address found against the egress policy.

1. **Servers.** ``SIPLINE_DNS_SERVERS`` (``ip`` or ``ip:port``, comma-separated) when set, else
   the system's ``/etc/resolv.conf``. Names are absolute: no search domains are appended.
2. **Time.** One query is bounded by ``SIPLINE_DNS_TIMEOUT_S`` (all servers and retries
   included), the whole location by ``SIPLINE_DNS_DEADLINE_S``: a query that would start after
   the deadline is not asked, and is reported to the core as not answered. So a location takes
   at most the deadline, whatever the zone holds. Nothing is cached here: the recursive server
   caches, and every call draws its own SRV order.
3. **Answers.** NXDOMAIN, an empty answer (NODATA), a timeout and a server failure are told
   apart (``LookupFailure``); the core treats all but an answer as "no records" and goes on.
4. **Egress** (``chalicelib/egress.py``). Every address found is checked; a name with one refused
   address among its addresses is dropped whole, as the control plane refuses such a name
   (rule 5 there). When every target is refused, :class:`LocateError` ``REFUSED`` names the
   address and why. The caller connects to the checked addresses, never to a name.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

from chalicelib.egress import EgressPolicy, TargetRefused
from relay.ids import IdSource
from relay.sip.dns_records import (
    Answer,
    LookupFailure,
    NaptrRecord,
    Query,
    Record,
    RecordType,
    SrvRecord,
)
from relay.sip.locate import (
    Located,
    LocateError,
    LocateFailure,
    Locator,
    Target,
    parse_server,
    parse_target,
)
from relay.sip.syntax.uri import SipUri

__all__ = ["DnsSettings", "Nameserver", "SipLocator", "parse_nameservers"]

DNS_PORT = 53
Nameserver = tuple[str, int]
"""A DNS server: IP address (IPv6 without brackets) and port."""


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """How the relay asks DNS (``SIPLINE_DNS_*``, relay/config.py)."""

    nameservers: tuple[Nameserver, ...] = ()
    """Empty: the system's (``/etc/resolv.conf``)."""
    timeout_s: float = 2.0
    """Bound on one query."""
    deadline_s: float = 5.0
    """Bound on one whole location."""


def parse_nameservers(text: str) -> tuple[Nameserver, ...]:
    """Parse ``SIPLINE_DNS_SERVERS``: comma-separated ``ip``, ``ip:port`` or ``[v6]:port``.

    Raises:
        ValueError: an item is not an IP address with an optional port (the message quotes it).
    """
    servers: list[Nameserver] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, port = item, DNS_PORT
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else -1
        elif item.count(":") == 1:
            host, _, number = item.partition(":")
            port = int(number) if number.isdigit() else -1
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is None or not 0 < port < 65536:
            raise ValueError(f"{item!r} is not a DNS server address (ip, ip:port or [v6]:port)")
        servers.append((str(address), port))
    return tuple(servers)


class SipLocator:
    """Locate SIP targets (RFC 3263) with dnspython, honouring the egress policy."""

    def __init__(self, settings: DnsSettings, *, egress: EgressPolicy, ids: IdSource) -> None:
        """Build the resolver.

        Raises:
            OSError: no servers are configured and ``/etc/resolv.conf`` cannot be read.
        """
        self._settings = settings
        self._egress = egress
        self._ids = ids
        try:
            resolver = dns.asyncresolver.Resolver(configure=not settings.nameservers)
        except dns.resolver.NoResolverConfiguration as error:
            raise OSError(f"no DNS servers: set SIPLINE_DNS_SERVERS ({error})") from None
        if settings.nameservers:
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port) for host, port in settings.nameservers
            ]
        resolver.timeout = settings.timeout_s
        resolver.lifetime = settings.timeout_s
        self._resolver = resolver

    async def locate(
        self, to: str | SipUri, *, outbound_proxy: str | SipUri | None = None
    ) -> Located:
        """Return where to send a request for ``to``: through ``outbound_proxy`` when given
        (RFC 3261 §8.1.2: the proxy's URI is located instead), else to ``to``'s own server.

        Raises:
            LocateError: ``INVALID`` (not a SIP URI, a transport we do not speak), ``NOT_FOUND``,
                ``UNAVAILABLE`` (DNS did not answer in time) or ``REFUSED`` (egress policy).
        """
        if outbound_proxy is not None:
            uri = (
                outbound_proxy
                if isinstance(outbound_proxy, SipUri)
                else parse_server(outbound_proxy)
            )
        else:
            uri = to if isinstance(to, SipUri) else parse_target(to)
        locator = Locator(uri, self._ids)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.deadline_s
        while queries := locator.pending():
            answers = await asyncio.gather(*(self._ask(query, deadline) for query in queries))
            locator.receive(answers)
        targets = self._allowed(locator.targets)
        return Located(uri=uri, domain=locator.domain, targets=tuple(targets))

    async def _ask(self, query: Query, deadline: float) -> Answer:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return Answer(query, failure=LookupFailure.DEADLINE)
        bound = min(self._settings.timeout_s, remaining)
        try:
            async with asyncio.timeout(bound):
                answer = await self._resolver.resolve(
                    query.name + ".",
                    query.rdtype.value,
                    search=False,
                    raise_on_no_answer=False,
                    lifetime=bound,
                )
        except dns.resolver.NXDOMAIN:
            return Answer(query, failure=LookupFailure.NXDOMAIN)
        except (TimeoutError, dns.exception.Timeout):
            return Answer(query, failure=LookupFailure.TIMEOUT)
        except dns.exception.DNSException:  # NoNameservers (SERVFAIL, REFUSED), a bad name
            return Answer(query, failure=LookupFailure.SERVER_FAILURE)
        return Answer(query, records=_records(query.rdtype, answer.rrset or ()))

    def _allowed(self, targets: Sequence[Target]) -> list[Target]:
        by_name: dict[str, list[str]] = {}
        for target in targets:
            by_name.setdefault(target.name, []).append(target.host)
        refused: dict[str, TargetRefused] = {}
        for name, hosts in by_name.items():
            try:
                self._egress.check_all(name, hosts)
            except TargetRefused as error:
                refused[name] = error
        allowed = [target for target in targets if target.name not in refused]
        if not allowed:
            raise LocateError(str(next(iter(refused.values()))), LocateFailure.REFUSED)
        return allowed


def _records(rdtype: RecordType, rrset: object) -> tuple[Record, ...]:
    records: list[Record] = []
    for rdata in rrset:  # type: ignore[attr-defined]
        if rdtype is RecordType.NAPTR:
            records.append(
                NaptrRecord(
                    order=rdata.order,
                    preference=rdata.preference,
                    flags=rdata.flags.decode("ascii", "replace"),
                    service=rdata.service.decode("ascii", "replace"),
                    regexp=rdata.regexp.decode("ascii", "replace"),
                    replacement=_name(rdata.replacement),
                )
            )
        elif rdtype is RecordType.SRV:
            records.append(SrvRecord(rdata.priority, rdata.weight, rdata.port, _name(rdata.target)))
        else:
            records.append(str(rdata.address))
    return tuple(records)


def _name(name: dns.name.Name) -> str:
    text: str = name.to_text(omit_final_dot=True)
    return text or "."  # the root name: "." in NAPTR replacements and SRV targets
