"""The DNS records RFC 3263 reads, and the orders RFC 3403 and RFC 2782 put them in (pure).

``relay/sip/locate.py`` walks RFC 3263 §4 with these: it asks :class:`Query` values, is answered
with :class:`Answer` values (filled by ``relay/transport/dns.py`` from dnspython), and orders what
it gets with :func:`select_naptr` and :func:`order_srv`.

1. **NAPTR** (RFC 3403 §4.1, RFC 3263 §4.1): only records with flag ``s`` and a service we speak
   count; of those, only the lowest ``order`` (a client must not consider a higher order once a
   record matched), by ``preference``; at most :data:`MAX_NAPTR_SERVICES`.
2. **SRV** (RFC 2782, "Usage rules"): by ``priority``; within one, weighted random selection.
   Randomness is an argument (an ``IdSource``), so tests script the draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from relay.ids import IdSource
from relay.sip.address import Transport

__all__ = [
    "MAX_NAPTR_SERVICES",
    "MAX_SRV_RECORDS",
    "NAPTR_SERVICES",
    "Answer",
    "LookupFailure",
    "NaptrRecord",
    "Query",
    "Record",
    "RecordType",
    "SrvRecord",
    "order_srv",
    "select_naptr",
]

MAX_NAPTR_SERVICES = 4
"""NAPTR records followed (each one SRV query), after filtering and ordering."""
MAX_SRV_RECORDS = 32
"""Records of one SRV set that are ordered (by priority first); the rest are ignored."""
NAPTR_SERVICES = {  # RFC 3263 §4.1, IANA "SIP NAPTR Resource Record Services Field"
    "SIPS+D2T": Transport.TLS,
    "SIP+D2T": Transport.TCP,
    "SIP+D2U": Transport.UDP,
}


class RecordType(StrEnum):
    """The DNS record types RFC 3263 uses."""

    NAPTR = "NAPTR"
    SRV = "SRV"
    A = "A"
    AAAA = "AAAA"


@dataclass(frozen=True, slots=True)
class Query:
    """One DNS question: ``name`` (absolute, without the trailing dot) and type."""

    name: str
    rdtype: RecordType


@dataclass(frozen=True, slots=True)
class NaptrRecord:
    """A NAPTR record (RFC 3403 §4.1); text fields as in the zone, ``replacement`` without dot."""

    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str


@dataclass(frozen=True, slots=True)
class SrvRecord:
    """An SRV record (RFC 2782); ``target`` without the trailing dot (``"."`` stays ``"."``)."""

    priority: int
    weight: int
    port: int
    target: str


class LookupFailure(StrEnum):
    """Why a query has no answer (an empty answer, NODATA, is not a failure)."""

    NXDOMAIN = "no such domain (NXDOMAIN)"
    TIMEOUT = "timed out"
    SERVER_FAILURE = "the DNS servers failed to answer (SERVFAIL or refused)"
    DEADLINE = "not asked: the lookup's overall deadline passed"


Record = NaptrRecord | SrvRecord | str
"""What an answer holds: NAPTR or SRV records, or addresses as text for A and AAAA."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to one :class:`Query`: its records, or why there are none."""

    query: Query
    records: tuple[Record, ...] = ()
    failure: LookupFailure | None = None


def select_naptr(records: Sequence[NaptrRecord], *, secure: bool) -> list[tuple[str, Transport]]:
    """Return the SRV names and transports NAPTR records point to, best first (rule 5).

    Args:
        records: the NAPTR answer of TARGET.
        secure: the URI is ``sips:`` (only ``SIPS+D2T`` is kept).
    """
    usable = [
        record
        for record in records
        if record.flags.lower() == "s"
        and record.service.upper() in NAPTR_SERVICES
        and (not secure or record.service.upper().startswith("SIPS+"))
        and record.replacement not in ("", ".")
    ]
    if not usable:
        return []
    lowest = min(record.order for record in usable)
    best = sorted((r for r in usable if r.order == lowest), key=lambda r: r.preference)
    chosen = [(r.replacement, NAPTR_SERVICES[r.service.upper()]) for r in best]
    return list(dict.fromkeys(chosen))[:MAX_NAPTR_SERVICES]


def order_srv(records: Sequence[SrvRecord], ids: IdSource) -> list[SrvRecord]:
    """Order an SRV record set as RFC 2782's "Usage rules" say.

    By priority, lowest first; within a priority, repeatedly: put the weight-0 records first,
    draw a uniform random integer between 0 and the sum of the remaining weights, and take the
    first record whose running sum of weights is at least that number. Records whose target is
    ``.`` are dropped; at most :data:`MAX_SRV_RECORDS` records (the best priorities) are ordered.
    """
    offered = [record for record in records if record.target != "."]
    offered.sort(key=lambda record: record.priority)
    offered = offered[:MAX_SRV_RECORDS]
    ordered: list[SrvRecord] = []
    for priority in sorted({record.priority for record in offered}):
        remaining = [record for record in offered if record.priority == priority]
        remaining.sort(key=lambda record: record.weight != 0)  # stable: zero weights first
        while remaining:
            chosen = _weighted_pick(remaining, ids)
            ordered.append(remaining.pop(chosen))
    return ordered


def _weighted_pick(records: list[SrvRecord], ids: IdSource) -> int:
    total = sum(record.weight for record in records)
    draw = _uniform(total, ids)
    running = 0
    for index, record in enumerate(records):
        running += record.weight
        if running >= draw:
            return index
    return len(records) - 1  # unreachable: the last running sum is the total


def _uniform(highest: int, ids: IdSource) -> int:
    """Return an integer uniform in 0..highest from 32-bit draws (rejection, then modulo)."""
    span = highest + 1
    limit = (1 << 32) - (1 << 32) % span
    draw = ids.bits(32)
    for _ in range(8):  # each draw is rejected with probability < span / 2**32 (< 2**-11)
        if draw < limit:
            break
        draw = ids.bits(32)
    return draw % span
