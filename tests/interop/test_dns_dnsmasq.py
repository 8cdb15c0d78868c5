"""RFC 3263 location against a real DNS server: dnsmasq on loopback serving the test's zone.

``relay/transport/dns.py`` (dnspython's asyncio resolver) asks dnsmasq (tests/interop/dnsmasq.py)
what ``relay/sip/locate.py`` wants to know. What the relay must find is read from the zone and
RFC 3263 §4 (quoted in tests/unit/relay/sip/test_locate.py); what it asked is read from dnsmasq's
own query log, not from our code.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Iterator

import dns.resolver
import pytest

from chalicelib.egress import EgressPolicy
from relay.ids import SeededIdSource
from relay.sip.address import Transport
from relay.sip.locate import Located, LocateError, LocateFailure, Target
from relay.transport.dns import DnsSettings, Nameserver, SipLocator
from tests.interop.dnsmasq import Dnsmasq
from tests.support.ports import LOOPBACK, free_port

pytestmark = pytest.mark.interop

UDP, TCP, TLS = Transport.UDP, Transport.TCP, Transport.TLS
ZONE = [
    # RFC 3263 §4.1's example shape: TLS, TCP and UDP offered in that order.
    "naptr-record=naptr.test,50,50,s,SIPS+D2T,,_sips._tcp.naptr.test",
    "naptr-record=naptr.test,90,50,s,SIP+D2T,,_sip._tcp.naptr.test",
    "naptr-record=naptr.test,100,50,s,SIP+D2U,,_sip._udp.naptr.test",
    "srv-host=_sips._tcp.naptr.test,tls1.naptr.test,5061,0,0",
    "srv-host=_sip._udp.naptr.test,udp1.naptr.test,5060,0,0",
    "host-record=tls1.naptr.test,93.184.215.11",
    "host-record=udp1.naptr.test,93.184.215.12",
    # Two servers of priority 10 weighted 3:1, and a backup of priority 20.
    "srv-host=_sip._udp.weights.test,heavy.weights.test,5060,10,3",
    "srv-host=_sip._udp.weights.test,light.weights.test,5070,10,1",
    "srv-host=_sip._udp.weights.test,backup.weights.test,5080,20,0",
    "host-record=heavy.weights.test,93.184.215.21",
    "host-record=light.weights.test,93.184.215.22",
    "host-record=backup.weights.test,93.184.215.23",
    # SRV without NAPTR, TCP only.
    "srv-host=_sip._tcp.srvonly.test,pbx.srvonly.test,5062,0,0",
    "host-record=pbx.srvonly.test,93.184.215.31",
    # Address records only.
    "host-record=aonly.test,93.184.215.41",
    "host-record=v6.test,2606:2800:220:1::51",
    "host-record=private.test,10.0.0.5",
    "host-record=mixed.test,93.184.215.61,fd00::61",
]


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    with Dnsmasq(tmp_path_factory.mktemp("dnsmasq"), ZONE) as server:
        yield server


def locate(
    nameserver: Nameserver,
    to: str,
    *,
    outbound_proxy: str | None = None,
    egress: EgressPolicy | None = None,
    seed: int = 0,
    timeout_s: float = 2.0,
    deadline_s: float = 5.0,
) -> Located:
    settings = DnsSettings(nameservers=(nameserver,), timeout_s=timeout_s, deadline_s=deadline_s)
    locator = SipLocator(settings, egress=egress or EgressPolicy(), ids=SeededIdSource(seed))
    return asyncio.run(locator.locate(to, outbound_proxy=outbound_proxy))


def test_naptr_leads_to_srv_and_addresses_of_the_most_preferred_transport(
    dnsmasq: Dnsmasq,
) -> None:
    located = locate(dnsmasq.nameserver, "sip:+15551234567@naptr.test")

    assert located.targets == (Target("93.184.215.11", 5061, TLS, "tls1.naptr.test"),)
    assert located.domain == "naptr.test"
    queries = dnsmasq.wait_for_queries("A tls1.naptr.test", "AAAA tls1.naptr.test")
    assert queries[-4:-2] == ["NAPTR naptr.test", "SRV _sips._tcp.naptr.test"]
    assert set(queries[-2:]) == {"A tls1.naptr.test", "AAAA tls1.naptr.test"}  # asked together
    assert "SRV _sip._udp.naptr.test" not in queries


def test_srv_priority_orders_and_weights_share_first_place_over_many_calls(
    dnsmasq: Dnsmasq,
) -> None:
    firsts: Counter[str] = Counter()
    for seed in range(60):
        targets = locate(dnsmasq.nameserver, "sip:a@weights.test", seed=seed).targets
        assert {t.name for t in targets[:2]} == {"heavy.weights.test", "light.weights.test"}
        assert targets[2] == Target("93.184.215.23", 5080, UDP, "backup.weights.test")
        firsts[targets[0].name] += 1

    # RFC 2782: weights 3 and 1 make heavy first about three times in four.
    assert firsts["heavy.weights.test"] > firsts["light.weights.test"] > 0


def test_srv_without_naptr_is_found_under_the_transport_it_is_offered_on(
    dnsmasq: Dnsmasq,
) -> None:
    located = locate(dnsmasq.nameserver, "sip:sales@srvonly.test")

    assert located.targets == (Target("93.184.215.31", 5062, TCP, "pbx.srvonly.test"),)
    queries = dnsmasq.wait_for_queries("A pbx.srvonly.test", "AAAA pbx.srvonly.test")
    assert queries[-6] == "NAPTR srvonly.test"
    assert set(queries[-5:-2]) == {
        "SRV _sips._tcp.srvonly.test",
        "SRV _sip._tcp.srvonly.test",
        "SRV _sip._udp.srvonly.test",
    }
    assert set(queries[-2:]) == {"A pbx.srvonly.test", "AAAA pbx.srvonly.test"}


def test_a_domain_with_address_records_only_is_reached_over_udp_at_5060(
    dnsmasq: Dnsmasq,
) -> None:
    located = locate(dnsmasq.nameserver, "+15551234567@aonly.test")  # the Twilio form

    assert str(located.uri) == "sip:+15551234567@aonly.test"
    assert located.targets == (Target("93.184.215.41", 5060, UDP, "aonly.test"),)


def test_an_ipv6_only_domain_gives_its_aaaa_address(dnsmasq: Dnsmasq) -> None:
    located = locate(dnsmasq.nameserver, "sips:bob@v6.test")

    assert located.targets == (Target("2606:2800:220:1::51", 5061, TLS, "v6.test"),)


def test_the_spec_tcp_form_asks_address_records_only(dnsmasq: Dnsmasq) -> None:
    before = len(dnsmasq.queries())
    located = locate(dnsmasq.nameserver, "sip:dest@aonly.test:5060;transport=tcp")

    assert located.targets == (Target("93.184.215.41", 5060, TCP, "aonly.test"),)
    queries = dnsmasq.wait_for_queries("A aonly.test", "AAAA aonly.test")
    assert sorted(queries[before:]) == ["A aonly.test", "AAAA aonly.test"]


def test_an_outbound_proxy_is_located_instead_of_the_target(dnsmasq: Dnsmasq) -> None:
    located = locate(dnsmasq.nameserver, "sip:bob@elsewhere.test", outbound_proxy="aonly.test:5070")

    assert located.targets == (Target("93.184.215.41", 5070, UDP, "aonly.test"),)
    assert not any("elsewhere.test" in query for query in dnsmasq.queries())


def test_a_literal_ip_asks_dns_nothing(dnsmasq: Dnsmasq) -> None:
    before = len(dnsmasq.queries())

    located = locate(dnsmasq.nameserver, "sip:+15551234567@93.184.215.14:5080;transport=tcp")
    with pytest.raises(dns.resolver.NXDOMAIN):  # a query of ours, logged after any of the relay's
        dnsmasq.resolver().resolve("sentinel.test.", "A")

    assert located.targets == (Target("93.184.215.14", 5080, TCP, "93.184.215.14"),)
    assert dnsmasq.wait_for_queries("A sentinel.test")[before:] == ["A sentinel.test"]


def test_a_literal_ip_is_located_with_no_dns_server_reachable() -> None:
    dead = (LOOPBACK, free_port(kinds=(socket.SOCK_DGRAM, socket.SOCK_STREAM)))

    located = locate(dead, "sips:alice@[2606:2800:220:1::14]", timeout_s=0.2, deadline_s=0.5)

    assert located.targets == (Target("2606:2800:220:1::14", 5061, TLS, "2606:2800:220:1::14"),)


def test_a_domain_that_does_not_exist_is_a_not_found_error(dnsmasq: Dnsmasq) -> None:
    with pytest.raises(LocateError) as caught:
        locate(dnsmasq.nameserver, "sip:bob@nothing.test")

    assert caught.value.kind is LocateFailure.NOT_FOUND
    assert str(caught.value) == "cannot locate nothing.test: no such domain (NXDOMAIN)"


def test_a_server_that_never_answers_is_an_unavailable_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((LOOPBACK, 0))  # bound, so no ICMP "port unreachable"; never read
        with pytest.raises(LocateError) as caught:
            locate(silent.getsockname(), "sip:bob@pbx.test", timeout_s=0.2, deadline_s=0.5)

    assert caught.value.kind is LocateFailure.UNAVAILABLE
    assert str(caught.value) == "cannot locate pbx.test: NAPTR lookup of pbx.test timed out"


def test_a_private_address_is_refused_unless_the_deployment_allows_it(dnsmasq: Dnsmasq) -> None:
    with pytest.raises(LocateError) as caught:
        locate(dnsmasq.nameserver, "sip:pbx@private.test")
    assert caught.value.kind is LocateFailure.REFUSED
    assert str(caught.value) == (
        "private.test resolves to 10.0.0.5, which is not a public address (private)"
    )

    allowed = EgressPolicy.from_setting("10.0.0.0/16")
    located = locate(dnsmasq.nameserver, "sip:pbx@private.test", egress=allowed)
    assert located.targets == (Target("10.0.0.5", 5060, UDP, "private.test"),)


def test_a_name_with_one_private_address_among_public_ones_is_refused(dnsmasq: Dnsmasq) -> None:
    with pytest.raises(LocateError) as caught:
        locate(dnsmasq.nameserver, "sip:pbx@mixed.test")

    assert caught.value.kind is LocateFailure.REFUSED
    assert "fd00::61" in str(caught.value)


def test_dnsmasq_listens_on_loopback_only_and_forwards_nothing(dnsmasq: Dnsmasq) -> None:
    config = (dnsmasq.directory / "dnsmasq.conf").read_text().splitlines()
    assert f"listen-address={LOOPBACK}" in config
    assert "bind-interfaces" in config and "no-resolv" in config
    assert not any(line.startswith("server=") for line in config)

    with pytest.raises(dns.resolver.NoNameservers, match="REFUSED"):  # not forwarded upstream
        dnsmasq.resolver().resolve("example.com.", "A")
