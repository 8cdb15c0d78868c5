"""The edge under abuse (issue 8 §5): what a hostile SIP peer or API user can make sipline send,
hold or open, and the limits that stop it (docs/relay.md, docs/api.md, docs/routing.md).

- A forged-source INVITE is refused with exactly one response, never amplified (RFC 3261 §8.2.7).
- An INVITE flood from one source gets 503 with Retry-After before any webhook is called, and an
  attacker rotating source addresses cannot grow the relay's memory.
- An account cannot hold more concurrent calls than its limit, incoming (SIP 503) or outgoing
  (HTTP 429), each with Retry-After; a call that ends, by any path, frees its slot once.
- A SIP registration does not open the IP guard to other sources.

The SIP attacks run against a real relay (``RelayService``) on 127.0.0.1 with the relay tests'
control plane stand-in; the account attacks against the Chalice app on moto.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from chalicelib.call_models import Call
from chalicelib.contracts import AllowlistSnapshot, MediaEndpoint
from chalicelib.errors import TooManyActiveCalls
from chalicelib.services import Services
from chalicelib.store.dynamodb import DynamoTable
from chalicelib.store.repository import Store
from relay.admission import InviteAdmission
from relay.config import RelaySettings
from relay.control.webhooks import AllowlistCache
from relay.rate_limit import RateLimit, SourceRateLimiter
from relay.service import RelayService
from relay.sip.address import Address
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.parser import parse_message
from tests.integration import conftest as route_tests
from tests.integration.harness import TABLE, Api, Aws, apply, load_vector
from tests.integration.relay.control.fake_control_plane import SECRET, FakeControlPlane
from tests.integration.relay.transport.fake_core import UdpClient, until
from tests.support.fakes import START, signed_headers
from tests.support.ports import free_port_range, free_sip_port

# The route tests' fixtures (moto table and queue, services, the Chalice client), as they are.
boto_clients, aws, clock = route_tests.boto_clients, route_tests.aws, route_tests.clock
services, api = route_tests.services, route_tests.api

LOOPBACK = "127.0.0.1"
TIMER_G_SPAN_S = 2.0
"""Past the first two Timer G retransmissions of a stateful final response (T1 and 3*T1 after it,
RFC 3261 §17.2.1, T1 = 0.5 s): a 403 sent through an INVITE transaction would show twice more."""
CARRIER = "203.0.113.0/24"


# --- a real relay on 127.0.0.1 ---------------------------------------------------------------


@asynccontextmanager
async def relay(control: FakeControlPlane, spool: Path, **settings: Any) -> AsyncIterator[int]:
    """Run a relay against ``control`` until the block ends; yield its SIP port."""
    await control.start()
    port = free_sip_port()
    rtp_low, rtp_high = free_port_range(20)
    service = RelayService(
        RelaySettings(
            control_url=control.url,
            webhook_secret=SECRET,
            sip_host=LOOPBACK,
            sip_port=port,
            tls_port=free_sip_port(avoid=(port,)),
            rtp_port_min=rtp_low,
            rtp_port_max=rtp_high,
            spool_dir=spool,
            **settings,
        )
    )
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await until(lambda: service.allowlist.snapshot is not None or task.done(), 10)
        assert not task.done(), task
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await control.stop()


@asynccontextmanager
async def sip_client() -> AsyncIterator[tuple[asyncio.DatagramTransport, UdpClient, int]]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        UdpClient, local_addr=(LOOPBACK, 0), family=socket.AF_INET
    )
    try:
        yield transport, client, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


def invite(client_port: int, n: int) -> bytes:
    body = (
        f"v=0\r\no=- {n} 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    return (
        f"INVITE sip:sales@{LOOPBACK} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{client_port};branch=z9hG4bK-attack-{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:scanner@{LOOPBACK}>;tag=attack{n}\r\n"
        f"To: <sip:sales@{LOOPBACK}>\r\n"
        f"Call-ID: attack-{n}@{LOOPBACK}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:scanner@{LOOPBACK}:{client_port}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


async def collect(client: UdpClient, seconds: float) -> list[Response]:
    """Every response that arrives within ``seconds``."""
    replies: list[Response] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(client.received.get(), left)
        except TimeoutError:
            break
        reply = parse_message(data)
        assert isinstance(reply, Response)
        replies.append(reply)
    return replies


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


# --- SIP: amplification and floods -----------------------------------------------------------


def test_a_forged_source_invite_over_udp_is_answered_once_not_amplified(tmp_path: Path) -> None:
    """A scanner forging a victim's address gets the victim one 403: no 100 Trying before it,
    no Timer G copies after it (they were ~10 per INVITE through the INVITE transaction)."""

    async def scenario() -> None:
        control = FakeControlPlane()  # its allowlist is 203.0.113.0/24: 127.0.0.1 is outside
        async with relay(control, tmp_path) as port, sip_client() as (transport, client, mine):
            transport.sendto(invite(mine, 1), (LOOPBACK, port))
            first = parse_message(await asyncio.wait_for(client.received.get(), 5))
            assert isinstance(first, Response)
            replies = [first, *await collect(client, TIMER_G_SPAN_S)]

            assert [r.status for r in replies] == [403]
            assert first.reason == "Source Address Not Allowed"
            assert control.invites == []  # and the control plane never heard of it

    run(scenario)


def test_an_invite_flood_from_one_source_gets_503_with_retry_after_before_any_webhook(
    tmp_path: Path,
) -> None:
    """Beyond its burst a source's INVITEs are refused at the edge, one 503 each, so the flood
    never reaches the control plane (one Lambda invocation per INVITE)."""

    async def scenario() -> None:
        control = FakeControlPlane()
        control.allowlist = {"allowedCidrRanges": [f"{LOOPBACK}/32"], "version": 1}
        control.decision = {"action": "reject", "sipStatus": 404, "reason": "no_agent_matched"}
        limits = {"invite_burst": 3, "invite_rate_per_s": 0.001}  # no refill within the test
        async with (
            relay(control, tmp_path, **limits) as port,
            sip_client() as (transport, client, mine),
        ):
            for n in range(8):
                transport.sendto(invite(mine, n), (LOOPBACK, port))
            replies = await collect(client, TIMER_G_SPAN_S)

            refused = [r for r in replies if r.status == 503]
            assert len(control.invites) == 3
            assert len(refused) == 5  # one per refused INVITE, never retransmitted
            # Retry-After: when the next token comes, 1 / 0.001 s (RFC 3261 §20.33)
            assert {r.headers.get("Retry-After") for r in refused} == {"1000"}
            assert {r.reason for r in refused} == {"INVITE Rate Exceeded"}
            assert 100 not in [r.status for r in refused]

    run(scenario)


def test_rotating_source_addresses_cannot_grow_the_relays_memory() -> None:
    """The per-source table forgets the least recently used source: 50,000 addresses leave it at
    its documented bound (10,000 sources), and the edge keeps answering."""
    gate = InviteAdmission(AllowlistCache(), SourceRateLimiter())  # no list yet: all rate-limited
    request = parse_message(invite(5060, 0))
    assert isinstance(request, Request)

    for n in range(50_000):
        source = Address(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 5060)
        assert gate.refusal(request, source, now=1.0) is None  # each one's first INVITE passes

    assert len(gate.rate) == RateLimit().max_sources == 10_000


# --- the IP guard and registrations ----------------------------------------------------------


def allowlist(api: Api) -> AllowlistSnapshot:
    """``GET /webhooks/sip/allowlist`` as the relay fetches it (signed, empty body)."""
    headers = signed_headers(
        b"", path="/webhooks/sip/allowlist", method="GET", at=api.clock()
    )
    response = api.client.http.request("GET", "/webhooks/sip/allowlist", headers=headers)
    assert response.status_code == 200, response.body
    return AllowlistSnapshot.model_validate_json(response.body)


def test_a_registration_does_not_open_the_ip_guard_to_other_sources(api: Api) -> None:
    """Creating any registration used to switch the guard off for the whole deployment
    (``hasRegistrations``): every scanner's INVITE then cost a webhook call."""
    api.patch_sip(allowedCidrRanges=[CARRIER])
    api.create_registration()
    guard = AllowlistCache()

    guard.update(allowlist(api), now=0.0)

    assert guard.allowed("198.51.100.7", now=1.0) is False
    assert guard.allowed("203.0.113.10", now=1.0) is True


# --- accounts: concurrent calls --------------------------------------------------------------

LIMIT = 2


def limited(services: Services, limit: int = LIMIT) -> None:
    services.settings = dataclasses.replace(services.settings, max_concurrent_calls=limit)


def routed_agent(api: Api) -> str:
    agent_id = str(api.create_agent("sales")["agentId"])
    api.patch_sip(
        allowedCidrRanges=[CARRIER],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )
    return agent_id


def dial(api: Api, agent_id: str) -> str:
    reply = api.dial(agent_id)
    assert reply.status == 201, reply.body
    return str(reply.body["callId"])


def test_an_account_cannot_place_more_concurrent_outgoing_calls_than_its_limit(
    api: Api, services: Services
) -> None:
    """A leaked API key cannot dial without bound: beyond the limit, 429 with Retry-After and
    the limit named; once a call ends, its slot is free again."""
    limited(services)
    agent_id = routed_agent(api)
    first = dial(api, agent_id)
    dial(api, agent_id)

    refused = api.dial(agent_id)

    assert refused.status == 429
    assert refused.headers["Retry-After"] == "10"
    assert refused.body["code"] == "too_many_active_calls"
    assert "2 calls going on" in refused.body["detail"]
    assert "SIPLINE_MAX_CONCURRENT_CALLS" in refused.body["detail"]
    apply(api, load_vector("outgoing_busy", first))  # the first call ends
    assert api.dial(agent_id).status == 201


def test_incoming_invites_beyond_the_accounts_limit_get_503_with_retry_after(
    api: Api, services: Services
) -> None:
    """A carrier or PBX looping INVITEs at an account cannot open calls without bound; the
    decision carries the Retry-After the relay answers with."""
    limited(services)
    routed_agent(api)
    for n in range(LIMIT):
        assert api.invite(sipCallId=f"in-{n}@carrier.example").body["action"] == "accept"

    rejected = api.invite(sipCallId="one-too-many@carrier.example").body

    assert rejected["action"] == "reject"
    assert (rejected["sipStatus"], rejected["reason"]) == (503, "too_many_active_calls")
    assert rejected["retryAfterS"] == 10
    retried = api.invite(sipCallId="in-0@carrier.example").body  # a retried webhook still
    assert retried["action"] == "accept"  # gets the decision it got before


def test_the_relay_answers_an_account_at_its_limit_with_the_decisions_retry_after(
    tmp_path: Path,
) -> None:
    """The caller of an account at its limit gets the control plane's 503 with its Retry-After
    (10 s), not the relay's own 5 s for a control plane that is down."""

    async def scenario() -> None:
        control = FakeControlPlane()
        control.allowlist = {"allowedCidrRanges": [f"{LOOPBACK}/32"], "version": 1}
        control.decision = {
            "action": "reject",
            "sipStatus": 503,
            "reason": "too_many_active_calls",
            "retryAfterS": 10,
        }
        async with relay(control, tmp_path) as port, sip_client() as (transport, client, mine):
            transport.sendto(invite(mine, 1), (LOOPBACK, port))
            replies = await collect(client, 1.0)

            final = [r for r in replies if r.status >= 200]
            assert final and final[0].status == 503
            assert final[0].headers.get("Retry-After") == "10"

    run(scenario)


def test_incoming_and_outgoing_calls_share_the_accounts_limit(api: Api, services: Services) -> None:
    limited(services)
    agent_id = routed_agent(api)
    dial(api, agent_id)
    assert api.invite(sipCallId="in-1@carrier.example").body["action"] == "accept"

    assert api.dial(agent_id).status == 429
    assert api.invite(sipCallId="in-2@carrier.example").body["sipStatus"] == 503


def test_a_call_ended_twice_frees_its_slot_once(api: Api, services: Services) -> None:
    """Redelivered and duplicated end events (and a reaper closing the call through the same
    events) must not free a slot twice: that would let the account past its limit."""
    limited(services)
    agent_id = routed_agent(api)
    ended = dial(api, agent_id)
    dial(api, agent_id)
    apply(api, load_vector("outgoing_busy", ended))
    apply(api, load_vector("outgoing_busy", ended))  # the same batch again

    assert services.store.active_calls("default") == 1
    dial(api, agent_id)
    assert api.dial(agent_id).status == 429


def test_a_dial_the_edge_never_receives_frees_its_slot(
    api: Api, services: Services, aws: Aws
) -> None:
    """An outgoing call whose command cannot be queued is recorded as ended at once: it must not
    keep a slot, or an SQS outage would lock the account out for good."""
    limited(services, 1)
    agent_id = routed_agent(api)
    aws.sqs.delete_queue(QueueUrl=aws.queue_url)
    assert api.dial(agent_id).status == 503  # command_not_sent
    aws.sqs.create_queue(QueueName=aws.queue_url.rsplit("/", 1)[1])

    assert api.dial(agent_id).status == 201


def test_control_plane_instances_racing_for_the_last_slots_never_pass_the_limit(aws: Aws) -> None:
    """Concurrent Lambdas must not read the count and then write it (two could both see room).
    Each takes its slot in the one ``TransactWriteItems`` that creates the call, conditioned on
    the count: DynamoDB runs a transaction's conditions and writes atomically (its API
    reference), so however instances interleave, exactly the limit gets through.

    What is checked here is that shape, request by request, and the limit over many instances.
    (Racing threads against moto would not test it: moto's transactions are not atomic across
    threads, and a loaded CI machine let three calls through a limit of two that way.)
    """
    instances = [Store(DynamoTable(aws.dynamodb, TABLE)) for _ in range(12)]
    requests: list[tuple[str, dict[str, Any]]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        requests.append((model.name, params))

    aws.dynamodb.meta.events.register("provide-client-params.dynamodb.*", record)

    def place(n: int) -> bool:
        new = Call(
            call_id=f"race-{n}",
            account_id="default",
            created=START,
            direction="outgoing",
            caller="+1",
            callee="+2",
            media_endpoint=MediaEndpoint(url="ws://127.0.0.1:9000/agent"),
            holds_slot=True,
        )
        try:
            instances[n].create_call(new, slot_limit=LIMIT)
        except TooManyActiveCalls:
            return False
        return True

    placed = [place(n) for n in range(len(instances))]
    aws.dynamodb.meta.events.unregister("provide-client-params.dynamodb.*", record)

    assert placed.count(True) == LIMIT and placed[:LIMIT] == [True] * LIMIT
    assert instances[0].active_calls("default") == LIMIT
    # Each attempt is one request: a transaction whose count update carries the limit as its
    # condition, with no read of the count before it.
    assert [name for name, _ in requests] == ["TransactWriteItems"] * len(instances)
    for _, params in requests:
        updates = [i["Update"] for i in params["TransactItems"] if "Update" in i]
        assert len(updates) == 1, params
        (update,) = updates
        # The count may be at most LIMIT - 1 before this call adds one (or not exist yet).
        condition, values = update["ConditionExpression"], update["ExpressionAttributeValues"]
        bound = [name for name, value in values.items() if f"<= {name}" in condition]
        assert [values[name] for name in bound] == [{"N": str(LIMIT - 1)}], update


def test_the_relays_settings_never_show_its_secrets_in_a_repr() -> None:
    """A settings object reaches log lines and tracebacks whole: its repr carries no secret."""
    from relay.config import RelaySettings

    env = {
        "SIPLINE_WEBHOOK_SECRET": "whsec-do-not-print-0123456789abcdef",
        "SIPLINE_PASSWORD_KEY": "fernet-do-not-print-0123456789abcdef",
    }
    settings = RelaySettings.from_env(env)
    assert settings.webhook_secret == env["SIPLINE_WEBHOOK_SECRET"]
    shown = repr(settings) + str(settings)
    for value in env.values():
        assert value not in shown
