"""RFC 3263 §4 location with hand-made record sets, and RFC 2782 ordering with scripted draws.

Each zone here is a dict of the records a DNS server would hold; :func:`locate` answers the
core's queries from it, as ``relay/transport/dns.py`` does from dnspython. Expectations come from
the RFC text quoted beside each test, and from the spec's table of transports ("TCP:
sip:<destination>@<sip_domain>:5060;transport=tcp").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest

from relay.sip.address import Address, Transport
from relay.sip.dns_records import (
    MAX_NAPTR_SERVICES,
    MAX_SRV_RECORDS,
    Answer,
    LookupFailure,
    NaptrRecord,
    Query,
    Record,
    RecordType,
    SrvRecord,
    order_srv,
    select_naptr,
)
from relay.sip.locate import (
    MAX_QUERIES,
    MAX_SRV_HOSTS,
    MAX_TARGETS,
    Located,
    LocateError,
    LocateFailure,
    Locator,
    Target,
    parse_server,
    parse_target,
)
from relay.sip.syntax.uri import SipUri

NAPTR, SRV, A, AAAA = RecordType.NAPTR, RecordType.SRV, RecordType.A, RecordType.AAAA
UDP, TCP, TLS = Transport.UDP, Transport.TCP, Transport.TLS
Zone = Mapping[tuple[str, RecordType], tuple[Record, ...] | LookupFailure]


class ScriptedDraws:
    """An IdSource whose ``bits`` returns the given numbers in turn (RFC 2782's random draws)."""

    def __init__(self, draws: Iterable[int] = ()) -> None:
        self.draws = list(draws)
        self.asked: list[int] = []

    def token(self, nbytes: int = 8) -> str:
        raise AssertionError("locating draws numbers, never tokens")

    def bits(self, n: int) -> int:
        self.asked.append(n)
        return self.draws.pop(0) if self.draws else 0


def locate(uri: str, zone: Zone, draws: Iterable[int] = ()) -> tuple[list[Target], list[Query]]:
    """Run a Locator over ``zone``; return its targets and every query it asked, in order."""
    locator = Locator(parse_target(uri), ScriptedDraws(draws))
    asked: list[Query] = []
    while queries := locator.pending():
        asked += queries
        locator.receive([_answer(query, zone) for query in queries])
    assert locator.queries_asked == len(asked) <= MAX_QUERIES
    return locator.targets, asked


def _answer(query: Query, zone: Zone) -> Answer:
    held = zone.get((query.name, query.rdtype), ())
    if isinstance(held, LookupFailure):
        return Answer(query, failure=held)
    return Answer(query, records=held)


def naptr(order: int, pref: int, service: str, replacement: str, flags: str = "s") -> NaptrRecord:
    return NaptrRecord(order, pref, flags, service, "", replacement)


# RFC 3263 §4.1's example: "the server supports TLS over TCP, TCP, and UDP, in that order".
RFC3263_NAPTR = (
    naptr(50, 50, "SIPS+D2T", "_sips._tcp.example.com"),
    naptr(90, 50, "SIP+D2T", "_sip._tcp.example.com"),
    naptr(100, 50, "SIP+D2U", "_sip._udp.example.com"),
)
# RFC 3263 §4.2's example SRV set, and its servers.
RFC3263_SRV = (
    SrvRecord(0, 1, 5060, "server1.example.com"),
    SrvRecord(0, 2, 5060, "server2.example.com"),
)
SERVERS: Zone = {
    ("server1.example.com", A): ("93.184.215.1",),
    ("server2.example.com", A): ("93.184.215.2",),
}


# -- numeric IPs and explicit ports (RFC 3263 §4.1, §4.2) ---------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sip:+15551234567@93.184.215.14", Target("93.184.215.14", 5060, UDP, "93.184.215.14")),
        ("sips:alice@93.184.215.14", Target("93.184.215.14", 5061, TLS, "93.184.215.14")),
        ("sip:a@93.184.215.14;transport=tcp", Target("93.184.215.14", 5060, TCP, "93.184.215.14")),
        ("sip:a@93.184.215.14;transport=tls", Target("93.184.215.14", 5061, TLS, "93.184.215.14")),
        ("sip:a@93.184.215.14:5080", Target("93.184.215.14", 5080, UDP, "93.184.215.14")),
        ("sip:a@[2001:db8::1]:5070", Target("2001:db8::1", 5070, UDP, "2001:db8::1")),
        ("sip:a@pbx.test;maddr=93.184.215.9", Target("93.184.215.9", 5060, UDP, "93.184.215.9")),
        ("sip:a@localhost:5070", Target("127.0.0.1", 5070, UDP, "127.0.0.1")),
    ],
)
def test_a_numeric_ip_is_used_without_any_dns_query(uri: str, expected: Target) -> None:
    # §4.2: "If the TARGET was a numeric IP address, the client uses that address. If the URI
    # also contains a port, it uses that port. If no port is specified, it uses the default port
    # for the particular transport protocol." localhost: RFC 6761 §6.3.
    assert locate(uri, {}) == ([expected], [])


def test_an_explicit_port_means_address_records_only() -> None:
    # §4.2: "If the TARGET was not a numeric IP address, but a port is present in the URI, the
    # client performs an A or AAAA record lookup of the domain name." (the spec's TCP form)
    zone = {("host.test", A): ("93.184.215.5",), ("host.test", AAAA): ("2606:2800:220:1::5",)}

    targets, asked = locate("sip:dest@host.test:5060;transport=tcp", zone)

    assert asked == [Query("host.test", A), Query("host.test", AAAA)]
    assert targets == [
        Target("93.184.215.5", 5060, TCP, "host.test"),
        Target("2606:2800:220:1::5", 5060, TCP, "host.test"),
    ]


def test_an_explicit_port_without_transport_is_udp_or_tls_for_sips() -> None:
    # §4.1: "if no transport protocol is specified, and the TARGET is not numeric, but an
    # explicit port is provided, the client SHOULD use UDP for a SIP URI, and TCP for a SIPS URI"
    zone = {("host.test", A): ("93.184.215.5",)}
    assert locate("sip:a@host.test:5070", zone)[0] == [
        Target("93.184.215.5", 5070, UDP, "host.test")
    ]
    assert locate("sips:a@host.test:5071", zone)[0] == [
        Target("93.184.215.5", 5071, TLS, "host.test")
    ]


# -- a transport parameter without port (RFC 3263 §4.2) ----------------------------------------


@pytest.mark.parametrize(
    ("uri", "srv_name", "transport"),
    [
        ("sip:a@example.com;transport=tcp", "_sip._tcp.example.com", TCP),
        ("sip:a@example.com;transport=udp", "_sip._udp.example.com", UDP),
        ("sip:a@example.com;transport=tls", "_sips._tcp.example.com", TLS),
        ("sips:a@example.com;transport=tcp", "_sips._tcp.example.com", TLS),
    ],
)
def test_a_transport_parameter_skips_naptr_and_asks_that_transports_srv(
    uri: str, srv_name: str, transport: Transport
) -> None:
    # §4.2: "If it was not [NAPTR], because a transport was specified explicitly, the client
    # performs an SRV query for that specific transport, using the service identifier "_sips"
    # for SIPS URIs. For a SIP URI, if the client wishes to use TLS, it also uses "_sips"."
    zone = {(srv_name, SRV): RFC3263_SRV, **SERVERS}

    targets, asked = locate(uri, zone, draws=[0])

    assert asked[0] == Query(srv_name, SRV)
    assert {target.transport for target in targets} == {transport}


# -- NAPTR (RFC 3263 §4.1, RFC 3403 §4.1) ------------------------------------------------------


def test_naptr_picks_the_most_preferred_transport_and_follows_it_to_srv() -> None:
    # §4.1's example: TLS is "the most preferred transport protocol of the server that is
    # supported by the client"; RFC 3403 §4.1: once a record matched at an order, records of a
    # higher order are not considered (so no downgrade to TCP or UDP).
    zone = {
        ("example.com", NAPTR): RFC3263_NAPTR,
        ("_sips._tcp.example.com", SRV): RFC3263_SRV,
        ("_sip._udp.example.com", SRV): (SrvRecord(0, 0, 5060, "udp.example.com"),),
        **SERVERS,
    }

    targets, asked = locate("sip:+15551234567@example.com", zone, draws=[0])

    assert asked[:2] == [Query("example.com", NAPTR), Query("_sips._tcp.example.com", SRV)]
    assert {(t.port, t.transport) for t in targets} == {(5060, TLS)}
    assert {t.name for t in targets} == {"server1.example.com", "server2.example.com"}


def test_naptr_records_of_one_order_are_taken_by_preference() -> None:
    records = (
        naptr(10, 20, "SIP+D2U", "_sip._udp.example.com"),
        naptr(10, 10, "SIP+D2T", "_sip._tcp.example.com"),
        naptr(20, 1, "SIPS+D2T", "_sips._tcp.example.com"),
    )
    assert select_naptr(records, secure=False) == [
        ("_sip._tcp.example.com", TCP),
        ("_sip._udp.example.com", UDP),
    ]


def test_a_sips_uri_keeps_only_sips_naptr_services() -> None:
    # §4.1: "a client resolving a SIPS URI MUST discard any services that do not contain "SIPS"
    # as the protocol in the service field. The converse is not true".
    records = (
        naptr(10, 10, "SIP+D2T", "_sip._tcp.example.com"),
        naptr(20, 10, "SIPS+D2T", "_sips._tcp.example.com"),
    )
    assert select_naptr(records, secure=True) == [("_sips._tcp.example.com", TLS)]
    assert select_naptr(records, secure=False) == [("_sip._tcp.example.com", TCP)]


def test_naptr_records_for_other_services_or_flags_count_as_none() -> None:
    # RFC 3403 §4.1's own example (no SIP service), a SIP+D2S (SCTP, which we do not speak),
    # and a non-terminal SIP record: none is usable, so §4.1's "no NAPTR records" SRV queries
    # follow, for each transport we speak, TLS first.
    zone = {
        ("example.com", NAPTR): (
            NaptrRecord(100, 50, "a", "z3950+N2L+N2C", "", "cidserver.example.com"),
            NaptrRecord(100, 50, "s", "http+N2L+N2C+N2R", "", "www.example.com"),
            naptr(10, 10, "SIP+D2S", "_sip._sctp.example.com"),
            naptr(10, 10, "SIP+D2T", "_sip._tcp.example.com", flags=""),
        ),
        ("_sip._udp.example.com", SRV): RFC3263_SRV,
        **SERVERS,
    }

    targets, asked = locate("sip:a@example.com", zone, draws=[0])

    assert asked[1:4] == [
        Query("_sips._tcp.example.com", SRV),
        Query("_sip._tcp.example.com", SRV),
        Query("_sip._udp.example.com", SRV),
    ]
    assert {t.transport for t in targets} == {UDP}


def test_without_naptr_a_sips_uri_asks_only_sips_srv() -> None:
    # §4.1: "Queries are done using the service identifier "_sip" for SIP URIs and "_sips" for
    # SIPS URIs."
    _, asked = locate("sips:a@example.com", {("example.com", A): ("93.184.215.7",)})
    assert asked == [
        Query("example.com", NAPTR),
        Query("_sips._tcp.example.com", SRV),
        Query("example.com", A),
        Query("example.com", AAAA),
    ]


def test_srv_sets_of_several_transports_are_tried_tls_then_tcp_then_udp() -> None:
    zone = {
        ("_sip._udp.example.com", SRV): (SrvRecord(0, 0, 5060, "server1.example.com"),),
        ("_sip._tcp.example.com", SRV): (SrvRecord(0, 0, 5070, "server2.example.com"),),
        **SERVERS,
    }

    targets, _ = locate("sip:a@example.com", zone)

    assert targets == [
        Target("93.184.215.2", 5070, TCP, "server2.example.com"),
        Target("93.184.215.1", 5060, UDP, "server1.example.com"),
    ]


# -- no SRV: A/AAAA at the default port (RFC 3263 §4.1, §4.2) -----------------------------------


@pytest.mark.parametrize(
    ("uri", "port", "transport"),
    [("sip:a@example.com", 5060, UDP), ("sips:a@example.com", 5061, TLS)],
)
def test_without_naptr_or_srv_the_domains_addresses_at_the_default_port(
    uri: str, port: int, transport: Transport
) -> None:
    # §4.1: "If no SRV records are found, the client SHOULD use TCP for a SIPS URI, and UDP for
    # a SIP URI." §4.2: "...at the default port for that transport."
    zone = {
        ("example.com", A): ("93.184.215.7",),
        ("example.com", AAAA): ("2606:2800:220:1::7",),
    }
    targets, _ = locate(uri, zone)
    assert targets == [
        Target("93.184.215.7", port, transport, "example.com"),
        Target("2606:2800:220:1::7", port, transport, "example.com"),
    ]


def test_naptr_without_srv_falls_back_to_addresses_with_the_naptr_transport() -> None:
    # §4.2: "If no SRV records were found, the client performs an A or AAAA record lookup of the
    # domain name ... using the transport protocol determined previously, at the default port".
    zone = {
        ("example.com", NAPTR): (naptr(10, 10, "SIP+D2T", "_sip._tcp.example.com"),),
        ("example.com", A): ("93.184.215.7",),
    }
    assert locate("sip:a@example.com", zone)[0] == [
        Target("93.184.215.7", 5060, TCP, "example.com")
    ]


def test_an_srv_target_of_dot_means_not_offered_and_no_address_fallback() -> None:
    # RFC 2782: 'A Target of "." means that the service is decidedly not available at this
    # domain.'
    zone = {
        ("_sip._udp.example.com", SRV): (SrvRecord(0, 0, 0, "."),),
        ("example.com", A): ("93.184.215.7",),
    }
    with pytest.raises(LocateError) as caught:
        locate("sip:a@example.com", zone)
    assert caught.value.kind is LocateFailure.NOT_FOUND


# -- RFC 2782 ordering -------------------------------------------------------------------------

# RFC 2782's example set ("SRV 0 1 389 old-slow-box", "SRV 0 3 389 new-fast-box", and two
# priority-1 boxes of weight 0), under SIP names.
RFC2782_SET = (
    SrvRecord(0, 1, 5060, "old-slow-box.example.com"),
    SrvRecord(0, 3, 5060, "new-fast-box.example.com"),
    SrvRecord(1, 0, 5060, "sysadmins-box.example.com"),
    SrvRecord(1, 0, 5060, "server.example.com"),
)


@pytest.mark.parametrize(
    ("draw", "first"),
    [(0, "old-slow-box"), (1, "old-slow-box"), (2, "new-fast-box"), (4, "new-fast-box")],
)
def test_weighted_selection_takes_the_first_record_whose_running_sum_reaches_the_draw(
    draw: int, first: str
) -> None:
    # RFC 2782: "compute the sum of the weights of those RRs, and with each RR associate the
    # running sum ... Then choose a uniform random number between 0 and the sum computed
    # (inclusive), and select the RR whose running sum value is the first in the selected order
    # which is greater than or equal to the random number selected." Sums: 1 and 4.
    draws = ScriptedDraws([draw])

    ordered = order_srv(RFC2782_SET, draws)

    assert ordered[0].target == f"{first}.example.com"
    assert {r.target for r in ordered[:2]} == {
        "old-slow-box.example.com",
        "new-fast-box.example.com",
    }
    assert draws.asked[0] == 32


def test_lower_priority_values_come_first_and_zero_weights_keep_their_order() -> None:
    # RFC 2782: "A client MUST attempt to contact the target host with the lowest-numbered
    # priority it can reach"; zero-weight records are placed "at the beginning of the list".
    ordered = order_srv(RFC2782_SET, ScriptedDraws([3, 0, 0, 0]))
    assert [r.target.split(".")[0] for r in ordered] == [
        "new-fast-box",
        "old-slow-box",
        "sysadmins-box",
        "server",
    ]


def test_zero_weight_records_go_first_among_weighted_ones() -> None:
    records = (SrvRecord(0, 5, 5060, "heavy.test"), SrvRecord(0, 0, 5060, "light.test"))
    # Sums after placing the weight-0 record first: light 0, heavy 5; a draw of 0 takes light.
    assert order_srv(records, ScriptedDraws([0, 0]))[0].target == "light.test"
    assert order_srv(records, ScriptedDraws([1, 0]))[0].target == "heavy.test"


def test_srv_order_reaches_the_located_targets() -> None:
    zone = {
        ("_sip._udp.example.com", SRV): RFC3263_SRV,
        **SERVERS,
    }
    # Weights 1 and 2: a draw of 2 passes server1 (sum 1) and takes server2 (sum 3).
    targets, _ = locate("sip:a@example.com", zone, draws=[2])
    assert [t.name for t in targets] == ["server2.example.com", "server1.example.com"]


# -- failures and limits ------------------------------------------------------------------------


def test_a_domain_that_does_not_exist_is_a_clear_not_found() -> None:
    zone: Zone = {
        (name, kind): LookupFailure.NXDOMAIN
        for name in ("example.com", "_sips._tcp.example.com", "_sip._tcp.example.com")
        for kind in (NAPTR, SRV, A, AAAA)
    } | {("_sip._udp.example.com", SRV): LookupFailure.NXDOMAIN}
    with pytest.raises(LocateError) as caught:
        locate("sip:a@example.com", zone)
    assert caught.value.kind is LocateFailure.NOT_FOUND
    assert str(caught.value) == "cannot locate example.com: no such domain (NXDOMAIN)"


def test_timeouts_make_an_unavailable_error_naming_the_lookup() -> None:
    zone: Zone = {("example.com", NAPTR): LookupFailure.TIMEOUT}
    with pytest.raises(LocateError) as caught:
        locate("sip:a@example.com", zone)
    assert caught.value.kind is LocateFailure.UNAVAILABLE
    assert str(caught.value) == "cannot locate example.com: NAPTR lookup of example.com timed out"


def test_a_failed_naptr_query_still_leads_to_srv_and_addresses() -> None:
    zone: Zone = {("example.com", NAPTR): LookupFailure.SERVER_FAILURE, **SERVERS}
    zone = {**zone, ("_sip._udp.example.com", SRV): RFC3263_SRV}
    targets, _ = locate("sip:a@example.com", zone)
    assert len(targets) == 2


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("sip:a@example.com;transport=sctp", "example.com names transport 'sctp'"),
        ("sips:a@example.com;transport=udp", "a sips: URI cannot be reached over udp"),
    ],
)
def test_a_transport_we_do_not_speak_is_refused_before_any_query(uri: str, message: str) -> None:
    with pytest.raises(LocateError) as caught:
        Locator(parse_target(uri), ScriptedDraws())
    assert caught.value.kind is LocateFailure.INVALID
    assert message in str(caught.value)


def test_a_tel_uri_cannot_be_located() -> None:
    with pytest.raises(LocateError) as caught:
        Locator(SipUri.parse("tel:+15551234567"), ScriptedDraws())
    assert caught.value.kind is LocateFailure.INVALID


def test_a_hostile_zone_is_bounded() -> None:
    many_naptr = tuple(naptr(10, i, "SIP+D2U", f"_sip._udp.n{i}.test") for i in range(20))
    many_srv = tuple(SrvRecord(0, 1, 5060, f"host{i}.test") for i in range(500))
    zone: dict[tuple[str, RecordType], tuple[Record, ...] | LookupFailure] = {
        ("example.com", NAPTR): many_naptr
    }
    for i in range(20):
        zone[(f"_sip._udp.n{i}.test", SRV)] = many_srv
    for i in range(500):
        zone[(f"host{i}.test", A)] = tuple(f"93.184.{i % 250}.{j}" for j in range(1, 40))

    targets, asked = locate("sip:a@example.com", zone, draws=range(1000))

    assert len([q for q in asked if q.rdtype is SRV]) == MAX_NAPTR_SERVICES
    assert len({q.name for q in asked if q.rdtype is A}) == MAX_SRV_HOSTS
    assert len(asked) == MAX_QUERIES
    assert len(targets) == MAX_TARGETS


def test_only_the_best_priorities_of_a_long_srv_set_are_ordered() -> None:
    records = [SrvRecord(1, 1, 5060, f"late{i}.test") for i in range(100)]
    records.insert(50, SrvRecord(0, 1, 5060, "best.test"))
    ordered = order_srv(records, ScriptedDraws(range(200)))
    assert len(ordered) == MAX_SRV_RECORDS
    assert ordered[0].target == "best.test"


def test_a_target_found_twice_is_listed_once() -> None:
    zone = {
        ("_sip._udp.example.com", SRV): (
            SrvRecord(0, 0, 5060, "server1.example.com"),
            SrvRecord(1, 0, 5060, "server1.example.com"),
        ),
        **SERVERS,
    }
    assert len(locate("sip:a@example.com", zone)[0]) == 1


def test_answers_must_match_the_pending_queries() -> None:
    locator = Locator(parse_target("sip:a@example.com"), ScriptedDraws())
    with pytest.raises(ValueError, match="one answer for each pending query"):
        locator.receive([Answer(Query("other.test", A))])
    with pytest.raises(RuntimeError, match="not finished"):
        _ = locator.targets


# -- the forms a target and a proxy are written in ---------------------------------------------


def test_the_twilio_form_without_scheme_is_located_as_sip() -> None:
    # The seed docs' Twilio example: "+15551234567@trunkname.pstn.twilio.com".
    uri = parse_target("+15551234567@trunkname.pstn.twilio.com")
    assert str(uri) == "sip:+15551234567@trunkname.pstn.twilio.com"
    locator = Locator(uri, ScriptedDraws())
    assert locator.pending() == (Query("trunkname.pstn.twilio.com", NAPTR),)


@pytest.mark.parametrize(
    ("text", "uri"),
    [
        ("proxy.example.com", "sip:proxy.example.com"),
        ("proxy.example.com:5070", "sip:proxy.example.com:5070"),
        ("[2001:db8::1]:5060", "sip:[2001:db8::1]:5060"),
        ("sip:proxy.example.com;transport=tcp;lr", "sip:proxy.example.com;transport=tcp;lr"),
    ],
)
def test_an_outbound_proxy_is_read_as_a_sip_uri(text: str, uri: str) -> None:
    assert str(parse_server(text)) == uri


@pytest.mark.parametrize("text", ["tel:+15551234567", "+15551234567", "sip:", "http://x.test/"])
def test_what_is_not_a_sip_target_is_refused_as_invalid(text: str) -> None:
    with pytest.raises(LocateError) as caught:
        parse_target(text)
    assert caught.value.kind is LocateFailure.INVALID


def located(uri: str, zone: Zone) -> Located:
    """Locate ``uri`` over ``zone`` as ``SipLocator.locate`` does, without DNS or egress."""
    locator = Locator(parse_target(uri), ScriptedDraws())
    while queries := locator.pending():
        locator.receive([_answer(query, zone) for query in queries])
    return Located(locator.uri, locator.domain, tuple(locator.targets))


def test_a_tls_target_names_the_domain_dialled_not_the_srv_target_it_was_found_under() -> None:
    # RFC 5922 §4: the identity checked is the domain of the URI (RFC 3263's AUS), not a name
    # DNS returned: the SRV target edge1.provider.test is only where trunk.test is served.
    zone: Zone = {
        ("_sips._tcp.trunk.test", SRV): (SrvRecord(0, 1, 5061, "edge1.provider.test"),),
        ("edge1.provider.test", A): ("93.184.215.21",),
    }

    found = located("sips:+15551234567@Trunk.Test", zone)

    assert found.targets == (Target("93.184.215.21", 5061, TLS, "edge1.provider.test"),)
    assert found.addresses == (
        Address("93.184.215.21", 5061, TLS, server_name="trunk.test"),
    )
    assert found.addresses[0].tls_name == "trunk.test"


@pytest.mark.parametrize(
    ("uri", "address"),
    [
        ("sips:a@[2001:db8::1]", Address("2001:db8::1", 5061, TLS, server_name="2001:db8::1")),
        ("sip:a@93.184.215.14;transport=tls", Address("93.184.215.14", 5061, TLS,
                                                      server_name="93.184.215.14")),
        ("sip:a@93.184.215.14;transport=tcp", Address("93.184.215.14", 5060, TCP)),
        ("sip:a@93.184.215.14", Address("93.184.215.14", 5060, UDP)),
    ],
)  # fmt: skip
def test_an_ip_literal_is_the_name_its_tls_server_proves_and_other_transports_name_none(
    uri: str, address: Address
) -> None:
    assert located(uri, {}).addresses == (address,)
