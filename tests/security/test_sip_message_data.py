"""Data that comes from a SIP message: what a caller can put in an INVITE, and what it must not do.

A caller controls every byte of its INVITE: the ``X-`` headers that become the call's template
context, and the From display name. These tests send what a hostile (or merely old) caller sends
and check the limits of ``docs/routing.md`` (context from SIP headers), ``docs/api.md`` (lists,
``droppedContext``), ``docs/storage.md`` (unreadable records, counting) and ``docs/relay.md``
(undecodable bytes).

The control-plane tests run the app through ``chalice.test.Client`` on moto (the fixtures of
``tests/integration/conftest.py``); the relay test runs the real relay in-process on 127.0.0.1
against the fake control plane of ``tests/integration/relay/control/fake_control_plane.py``.
"""

# ruff: noqa: F811  (the fixtures of tests/integration/conftest.py are imported by name)

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from chalicelib.context import CallerInfo, incoming_context
from chalicelib.store import keys
from relay.config import RelaySettings
from relay.service import RelayService
from tests.integration.conftest import (  # noqa: F401  (fixtures)
    api,
    aws,
    boto_clients,
    clock,
    fallback_server,
    log_output,
    services,
)
from tests.integration.harness import FALLBACK_SECRET, TABLE, Api, Aws, FallbackServer
from tests.integration.relay.control.fake_control_plane import ALLOWLIST, SECRET, FakeControlPlane
from tests.support.ports import free_port_range, free_sip_port

CARRIER = "203.0.113.0/24"
# docs/routing.md, "Context from SIP headers": the limits an INVITE's X- headers meet.
MAX_DEPTH = 16
MAX_ENTRY_BYTES = 8 * 1024
MAX_KEYS = 1000
MAX_CONTEXT_BYTES = 32 * 1024


def nested(depth: int) -> str:
    """A JSON array nested ``depth`` deep: ``[[...]]``."""
    return "[" * depth + "]" * depth


def accepted(reply: Any) -> dict[str, Any]:
    assert reply.status == 200, reply.body
    assert reply.body["action"] == "accept", reply.body
    return dict(reply.body)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def sales(api: Api) -> str:
    """An agent routed by ``^sales$`` for callers from the carrier's range (no contextSchema)."""
    agent_id = str(api.create_agent("sales")["agentId"])
    api.patch_sip(
        allowedCidrRanges=[CARRIER],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )
    return agent_id


def invite_with(api: Api, *headers: tuple[str, str], call_id: str = "c1@carrier") -> dict[str, Any]:
    return accepted(api.invite(sipCallId=call_id, headers=[list(h) for h in headers]))


def dropped_context(api: Api, call_id: str) -> list[dict[str, Any]]:
    reply = api.get(f"/api/calls/{call_id}")
    assert reply.status == 200, reply.body
    return list(reply.body["droppedContext"])


# --- 1. the X- header context is bounded ---------------------------------------------------------


@pytest.mark.parametrize("depth", [210, 2000])
def test_a_header_of_json_nested_hundreds_deep_stays_a_string_and_breaks_no_list(
    api: Api, sales: str, depth: int
) -> None:
    """Attack: ``X-Deep: [[[[...]]]]`` 210 deep was stored as JSON that pydantic cannot read back
    (lists and usage answered 500, and so did every retry of the INVITE); 2,000 deep was a
    RecursionError. Deeper than 16 levels, a value is not parsed: it stays the string sent."""
    value = nested(depth)

    decision = invite_with(api, ("X-Deep", value))

    assert decision["templateContext"]["deep"] == value
    assert accepted(api.invite(sipCallId="c1@carrier", headers=[["X-Deep", value]])) == decision
    listed = api.get("/api/calls")
    assert listed.status == 200, listed.body
    assert listed.body["total"] == 1
    assert listed.body["results"][0]["templateContext"]["deep"] == value
    assert api.get("/api/accounts/me/billing/usage").status == 200


def test_json_nested_exactly_16_deep_is_still_parsed(api: Api, sales: str) -> None:
    """The limit is the documented one: 16 levels parse, 17 stay a string."""
    decision = invite_with(api, ("X-Ok", nested(MAX_DEPTH)), ("X-Deep", nested(MAX_DEPTH + 1)))

    assert decision["templateContext"]["ok"] == json.loads(nested(MAX_DEPTH))
    assert decision["templateContext"]["deep"] == nested(MAX_DEPTH + 1)


def test_a_header_value_over_8_kib_is_dropped_and_the_call_record_says_why(
    api: Api, sales: str
) -> None:
    """Attack: one huge X- header copied into the call record, the agent's prompt and every list
    page. Over 8 KiB (key and value) it is dropped, and the call says which and why."""
    decision = invite_with(api, ("X-Big", "x" * MAX_ENTRY_BYTES), ("X-Small", "kept"))

    assert "big" not in decision["templateContext"]
    assert decision["templateContext"]["small"] == "kept"
    assert dropped_context(api, decision["callId"]) == [
        {"reason": "too_large", "count": 1, "keys": ["big"]}
    ]


def test_x_headers_past_the_thousandth_key_are_dropped_and_counted(api: Api, sales: str) -> None:
    """Attack: thousands of X- headers in one INVITE. The first 1,000 keys are taken; the rest
    are dropped, counted, and the first few named."""
    headers = [(f"X-K{i}", str(i)) for i in range(MAX_KEYS + 25)]

    decision = invite_with(api, *headers)

    taken = {k for k in decision["templateContext"] if k != "sipline"}
    assert taken == {f"k{i}" for i in range(MAX_KEYS)}
    [entry] = dropped_context(api, decision["callId"])
    assert (entry["reason"], entry["count"]) == ("too_many", 25)
    assert entry["keys"][:3] == [f"k{MAX_KEYS}", f"k{MAX_KEYS + 1}", f"k{MAX_KEYS + 2}"]


def test_headers_past_32_kib_in_total_are_dropped_but_smaller_ones_still_fit(
    api: Api, sales: str
) -> None:
    """Attack: many values just under the per-value limit. The context takes at most 32 KiB."""
    value = "v" * 7000  # with its key and quotes, about 7 KB: four fit in 32 KiB, the fifth not
    headers = [(f"X-Fill{i}", value) for i in range(5)] + [("X-Tail", "small")]

    decision = invite_with(api, *headers)

    context = decision["templateContext"]
    assert [k for k in context if k.startswith("fill")] == ["fill0", "fill1", "fill2", "fill3"]
    assert context["tail"] == "small"
    assert len(json.dumps({k: v for k, v in context.items() if k != "sipline"})) <= (
        MAX_CONTEXT_BYTES
    )
    assert dropped_context(api, decision["callId"]) == [
        {"reason": "context_full", "count": 1, "keys": ["fill4"]}
    ]


def test_keys_the_contextschema_refuses_are_listed_on_the_call(api: Api) -> None:
    """Dropped keys used to be only logged; the call record now says so too."""
    schema = {
        "type": "object",
        "properties": {"customer_name": {"type": "string"}, "sipline": {"type": "object"}},
        "additionalProperties": False,
    }
    agent = api.create_agent("strict", contextSchema=schema)["agentId"]
    api.patch_sip(allowedCidrRanges=[CARRIER], allowedAgents=[{"agentId": agent}])

    decision = accepted(
        api.invite(
            toUri=f"sip:agent_{agent}@x",
            headers=[["X-Customer-Name", "Bob"], ["X-Plan", "gold"], ["X-Sipline", "{}"]],
        )
    )

    assert decision["templateContext"]["customer_name"] == "Bob"
    assert dropped_context(api, decision["callId"]) == [
        {"reason": "reserved", "count": 1, "keys": ["sipline"]},
        {"reason": "schema", "count": 1, "keys": ["plan"]},
    ]


def test_a_fallback_handlers_context_nested_too_deep_is_dropped(
    api: Api, fallback_server: FallbackServer
) -> None:
    """The fallback handler's templateContext joins the same context: it meets the same depth
    limit (an already parsed value cannot stay a string, so it is dropped)."""
    agent = api.create_agent("fallback")["agentId"]
    api.patch_sip(
        allowedCidrRanges=[CARRIER],
        fallbackHandler={"url": fallback_server.url, "secrets": [FALLBACK_SECRET]},
    )
    deep = json.loads(nested(MAX_DEPTH + 1))
    fallback_server.answer_with(
        {"startAgentCall": {"agentId": agent, "templateContext": {"deep": deep, "tier": "gold"}}}
    )

    decision = accepted(api.invite(toUri="sip:unknown@sip.example.test"))

    assert decision["templateContext"]["tier"] == "gold"
    assert "deep" not in decision["templateContext"]
    assert dropped_context(api, decision["callId"]) == [
        {"reason": "too_deep", "count": 1, "keys": ["deep"]}
    ]


def test_a_thousand_x_headers_cost_a_few_schema_validations_not_one_per_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Attack: 1,000 X- headers to an agent with a contextSchema took ~4 s to decide, because the
    whole context was validated again for every key (quadratic). Now it is validated a bounded
    number of times whatever the header count (the timing is bench/context.py's)."""
    from jsonschema import Draft202012Validator

    validations: list[int] = []
    original = Draft202012Validator.iter_errors

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        validations.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Draft202012Validator, "iter_errors", counted)
    schema = {"type": "object", "properties": {"n_1": {"type": "string"}}}
    caller = CallerInfo("+15551234567", None, "sip:+15551234567@carrier.example")

    built = incoming_context([(f"X-N-{i}", str(i)) for i in range(MAX_KEYS)], caller, schema)

    assert built.dropped_keys == ("n_1",)  # 1 is a number, and n_1 must be a string
    assert len(built.context) == MAX_KEYS  # 999 header keys and sipline
    assert len(validations) <= 3


# --- 2. one unreadable record never breaks a list ------------------------------------------------

UNREADABLE_DATA = [
    "{not json",
    # what an unbounded X- header used to leave behind: valid JSON pydantic cannot read back
    '{"callId": "x", "templateContext": {"deep": ' + nested(250) + "}}",
]


def put_raw(aws: Aws, item: dict[str, str]) -> None:
    """Write an item straight into the table, the way a bug or an old version could have."""
    wire = {name: {"S": value} for name, value in item.items()} | {"version": {"N": "1"}}
    aws.dynamodb.put_item(TableName=TABLE, Item=wire)


def unreadable_call(aws: Aws, n: int, data: str) -> None:
    call_id = f"01900000-0000-7000-8000-00000000000{n}"
    put_raw(
        aws,
        {
            "pk": keys.call_pk(call_id),
            "sk": keys.CALL_SK,
            "gsi1pk": keys.calls_gsi1pk("default"),
            "gsi1sk": keys.calls_gsi1sk(f"2026-11-25T11:00:0{n}.000000Z", call_id),
            "data": data,
        },
    )


def metric_lines(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if name in line and "_aws" in line]


def test_an_unreadable_call_is_skipped_logged_and_counted_by_the_calls_list_and_usage(
    api: Api, aws: Aws, sales: str, log_output: pytest.CaptureFixture[str]
) -> None:
    """Attack (or accident): one stored call that does not parse made ``GET /api/calls`` and the
    usage report answer 500 for the whole account, for good."""
    good = invite_with(api)["callId"]
    for n, data in enumerate(UNREADABLE_DATA):
        unreadable_call(aws, n, data)
    log_output.readouterr()

    listed = api.get("/api/calls")
    usage = api.get("/api/accounts/me/billing/usage")

    assert listed.status == 200, listed.body
    assert [c["callId"] for c in listed.body["results"]] == [good]
    assert listed.body["total"] == 3  # counted, not loaded: see docs/storage.md
    assert usage.status == 200, usage.body
    lines = json_lines(log_output.readouterr().out)
    skipped = [line for line in lines if line.get("message") == "unreadable record skipped"]
    assert len(skipped) == 2 * len(UNREADABLE_DATA)  # the list and the usage report
    assert all(line["pk"].startswith("CALL#") for line in skipped)
    metrics = metric_lines(lines, "UnreadableRecord")
    assert sum(sum(m["UnreadableRecord"]) for m in metrics) == 2 * len(UNREADABLE_DATA)
    assert {m["record"] for m in metrics} == {"call"}


def test_an_unreadable_agent_or_registration_is_skipped_by_its_list(
    api: Api, aws: Aws, sales: str
) -> None:
    """The same for agents (``ACCOUNT#/AGENT#`` items) and registrations (GSI1)."""
    put_raw(
        aws,
        {"pk": keys.account_pk("default"), "sk": keys.agent_sk("01900000-0000-7000-8000-0"),
         "data": UNREADABLE_DATA[1]},
    )  # fmt: skip
    registration = api.create_registration()["registrationId"]
    put_raw(
        aws,
        {
            "pk": keys.registration_pk("01900000-0000-7000-8000-1"),
            "sk": keys.REGISTRATION_SK,
            "account": "default",
            "gsi1pk": keys.registrations_gsi1pk("default"),
            "gsi1sk": "01900000-0000-7000-8000-1",
            "data": UNREADABLE_DATA[0],
        },
    )

    agents = api.get("/api/agents")
    registrations = api.get("/api/sip/registrations")

    assert agents.status == 200, agents.body
    assert [a["agentId"] for a in agents.body["results"]] == [sales]
    assert registrations.status == 200, registrations.body
    assert [r["registrationId"] for r in registrations.body["results"]] == [registration]



# The single reads: a stored record that does not read is answered 409 ``unreadable_record``
# (docs/api.md, errors), logged and counted like a list's skip, instead of a 500.
CALL_ID = "01900000-0000-7000-8000-000000000007"
AGENT_ID = "01900000-0000-7000-8000-0"
REGISTRATION_ID = "01900000-0000-7000-8000-1"


def unreadable_agent(aws: Aws, data: str) -> None:
    put_raw(aws, {"pk": keys.account_pk("default"), "sk": keys.agent_sk(AGENT_ID), "data": data})


def unreadable_registration(aws: Aws, data: str, account: str = "default") -> None:
    put_raw(
        aws,
        {
            "pk": keys.registration_pk(REGISTRATION_ID),
            "sk": keys.REGISTRATION_SK,
            "account": account,
            "gsi1pk": keys.registrations_gsi1pk(account),
            "gsi1sk": REGISTRATION_ID,
            "data": data,
        },
    )


def unreadable_call_of(aws: Aws, account: str, data: str) -> None:
    put_raw(
        aws,
        {
            "pk": keys.call_pk(CALL_ID),
            "sk": keys.CALL_SK,
            "gsi1pk": keys.calls_gsi1pk(account),
            "gsi1sk": keys.calls_gsi1sk("2026-11-25T11:00:07.000000Z", CALL_ID),
            "data": data,
        },
    )


def assert_unreadable(reply: Any, what: str) -> None:
    assert reply.status == 409, reply.body
    assert reply.body["code"] == "unreadable_record"
    assert reply.body["detail"].startswith(f"{what} is stored but cannot be read"), reply.body
    assert "not json" not in reply.body["detail"]  # never the stored value


@pytest.mark.parametrize("data", UNREADABLE_DATA, ids=["not-json", "nested-250-deep"])
def test_reading_one_unreadable_record_answers_409_unreadable_record_not_500(
    api: Api, aws: Aws, log_output: pytest.CaptureFixture[str], data: str
) -> None:
    """Attack (or accident): a stored call, agent or registration that does not parse made
    ``GET`` of that one record answer 500. It answers 409 ``unreadable_record``, saying what
    happened, and is logged and counted like a skipped list item."""
    unreadable_call_of(aws, "default", data)
    unreadable_agent(aws, data)
    unreadable_registration(aws, data)
    log_output.readouterr()

    call = api.get(f"/api/calls/{CALL_ID}")
    agent = api.get(f"/api/agents/{AGENT_ID}")
    registration = api.get(f"/api/sip/registrations/{REGISTRATION_ID}")

    assert_unreadable(call, f"call {CALL_ID!r}")
    assert_unreadable(agent, f"agent {AGENT_ID!r}")
    assert_unreadable(registration, f"registration {REGISTRATION_ID!r}")
    lines = json_lines(log_output.readouterr().out)
    logged = [line for line in lines if line.get("message") == "unreadable record refused"]
    assert [line["record"] for line in logged] == ["call", "agent", "registration"]
    metrics = metric_lines(lines, "UnreadableRecord")
    assert sorted(m["record"] for m in metrics) == ["agent", "call", "registration"]


def test_an_unreadable_call_of_another_account_is_still_not_found(api: Api, aws: Aws) -> None:
    """The 409 must not tell one account that another account's call id exists."""
    unreadable_call_of(aws, "someone-else", UNREADABLE_DATA[0])
    unreadable_registration(aws, UNREADABLE_DATA[0], account="someone-else")

    assert api.get(f"/api/calls/{CALL_ID}").status == 404
    assert api.get(f"/api/sip/registrations/{REGISTRATION_ID}").status == 404
    assert api.delete(f"/api/sip/registrations/{REGISTRATION_ID}").status == 404


def test_an_unreadable_agent_or_registration_can_still_be_deleted(api: Api, aws: Aws) -> None:
    """The way out the 409 points to: DELETE does not need to read the record."""
    unreadable_agent(aws, UNREADABLE_DATA[1])
    unreadable_registration(aws, UNREADABLE_DATA[0])

    assert api.delete(f"/api/agents/{AGENT_ID}").status == 204
    assert api.delete(f"/api/sip/registrations/{REGISTRATION_ID}").status == 204
    assert api.get(f"/api/agents/{AGENT_ID}").status == 404
    assert api.get(f"/api/sip/registrations/{REGISTRATION_ID}").status == 404


def test_an_unreadable_sip_configuration_answers_409_and_rejects_invites_cleanly(
    api: Api, aws: Aws
) -> None:
    """The SIP configuration is one item read by ``GET /api/sip`` and by every INVITE: unreadable,
    it made both 500 (the caller heard 503 from the relay's failed webhook)."""
    put_raw(
        aws,
        {"pk": keys.account_pk("default"), "sk": keys.SIP_CONFIG_SK, "data": UNREADABLE_DATA[1]},
    )

    config = api.get("/api/sip")
    decision = api.invite()

    assert_unreadable(config, "the SIP configuration")
    assert decision.status == 200, decision.body
    assert decision.body["action"] == "reject"
    assert (decision.body["sipStatus"], decision.body["reason"]) == (480, "unreadable_record")


def test_the_reaper_skips_an_unreadable_open_call_and_closes_the_others(
    api: Api, aws: Aws, sales: str, services: Any
) -> None:
    """An unreadable call among the open ones (GSI2) must not stop the reaper for everyone."""
    from chalicelib import reaper

    good = invite_with(api)["callId"]
    unreadable_call_of(aws, "default", UNREADABLE_DATA[0])
    aws.dynamodb.update_item(
        TableName=TABLE,
        Key={"pk": {"S": keys.call_pk(CALL_ID)}, "sk": {"S": keys.CALL_SK}},
        UpdateExpression="SET gsi2pk = :p, gsi2sk = :s",
        ExpressionAttributeValues={
            ":p": {"S": keys.open_calls_gsi2pk(keys.open_call_shard(CALL_ID))},
            ":s": {"S": keys.calls_gsi1sk("2026-11-25T11:00:07.000000Z", CALL_ID)},
        },
    )
    api.clock.advance(24 * 3600)

    reaper.reap(services)

    assert api.get(f"/api/calls/{good}").body["ended"] is not None

@contextmanager
def items_read(aws: Aws) -> Iterator[list[int]]:
    """Count the items DynamoDB hands back to Query calls while the block runs."""
    counted: list[int] = []

    def after_query(parsed: dict[str, Any], **_: Any) -> None:
        counted.append(len(parsed.get("Items", [])))

    events = aws.dynamodb.meta.events
    events.register("after-call.dynamodb.Query", after_query)
    try:
        yield counted
    finally:
        events.unregister("after-call.dynamodb.Query", after_query)


def test_total_is_counted_without_loading_every_call(api: Api, aws: Aws, sales: str) -> None:
    """Attack: a list request that reads (and parses) every call of the account to print
    ``total``. A page of 2 now reads the page and the table counts the rest."""
    other = str(api.create_agent("support")["agentId"])
    api.patch_sip(
        allowedAgents=[
            {"agentId": sales, "toUserPattern": "^sales$"},
            {"agentId": other, "toUserPattern": "^support$"},
        ]
    )
    for n in range(12):
        callee = "sales" if n % 3 else "support"
        invite_with_to = api.invite(sipCallId=f"c{n}@carrier", toUri=f"sip:{callee}@x")
        accepted(invite_with_to)

    with items_read(aws) as read:
        page = api.get("/api/calls?pageSize=2")
        filtered = api.get(f"/api/calls?pageSize=2&agentIds={other}")

    assert (page.body["total"], len(page.body["results"])) == (12, 2)
    assert (filtered.body["total"], len(filtered.body["results"])) == (4, 2)
    assert {c["agentId"] for c in filtered.body["results"]} == {other}
    # each list reads its page of 2, one more to know there is a next page, and one more to
    # know whether that was the last; the count reads none
    assert sum(read) <= 2 * (2 + 2)


def test_a_calls_filter_of_more_than_100_agent_ids_is_refused_naming_the_field(api: Api) -> None:
    """The agentIds filter is one DynamoDB ``IN`` (at most 100 values): more would be a 500."""
    ids = ",".join(f"01900000-0000-7000-8000-{n:012d}" for n in range(101))

    reply = api.get(f"/api/calls?agentIds={ids}")

    assert reply.status == 400, reply.body
    assert reply.body["field"] == "agentIds"
    assert reply.body["detail"] == "agentIds: at most 100 agent ids (got 101)"


# --- 3. bytes that are not UTF-8 ---------------------------------------------------------------

LATIN1_INVITE = (
    b"INVITE sip:sales@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKlatin1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: {display}<sip:pbx@127.0.0.1>;tag=old-pbx\r\n"
    b"To: <sip:sales@127.0.0.1>\r\n"
    b"Call-ID: latin1-display-name@old-pbx\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:pbx@127.0.0.1:{port}>\r\n"
    b"X-Customer-Name: Ren\xe9\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: {length}\r\n\r\n"
)
SDP = (
    b"v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
BUSY = {"action": "reject", "sipStatus": 486, "reason": "busy_here", "message": ""}


class _Phone(asyncio.DatagramProtocol):
    """An old PBX's UDP socket: keeps every datagram it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait(data)


async def _final_status(phone: _Phone) -> int:
    """The status of the first final response (provisional ones are skipped)."""
    while True:
        status = int((await phone.received.get()).split(b" ", 2)[1])
        if status >= 200:
            return status


@pytest.mark.parametrize(
    ("display", "decoded"),
    [(b'"Caf\xc3\xa9 caf\xe9" ', "Café caf\ufffd"), (b"", None)],
    ids=["latin1-display-name", "latin1-x-header-only"],
)
def test_a_latin1_display_name_reaches_the_invite_webhook_decoded_with_replacement_characters(
    tmp_path: Path, display: bytes, decoded: str | None
) -> None:
    """Attack (or an older PBX): a From display name in Latin-1 (``caf\\xe9``), not UTF-8. The
    relay could not serialize the INVITE webhook body (PydanticSerializationError) and answered
    480. The call must reach the control plane, UTF-8 decoded where it is UTF-8 and with U+FFFD
    for each byte that is not, and be answered with the control plane's decision."""

    async def scenario() -> None:
        control = FakeControlPlane(
            decision=BUSY, allowlist=dict(ALLOWLIST, allowedCidrRanges=["127.0.0.0/8"])
        )
        await control.start()
        sip_port = free_sip_port()
        settings = RelaySettings(
            control_url=control.url,
            webhook_secret=SECRET,
            sip_port=sip_port,
            spool_dir=tmp_path / "spool",
            rtp_port_min=(ports := free_port_range(10))[0],
            rtp_port_max=ports[1],
        )
        relay, stop = RelayService(settings), asyncio.Event()
        running = asyncio.ensure_future(relay.run(stop))
        loop = asyncio.get_running_loop()
        transport, phone = await loop.create_datagram_endpoint(
            _Phone, local_addr=("127.0.0.1", 0), remote_addr=("127.0.0.1", sip_port)
        )
        try:
            await asyncio.wait_for(relay.ready.wait(), 10)
            port = transport.get_extra_info("sockname")[1]
            head = LATIN1_INVITE.replace(b"{port}", str(port).encode())
            head = head.replace(b"{display}", display)
            transport.sendto(head.replace(b"{length}", str(len(SDP)).encode()) + SDP)
            status = await asyncio.wait_for(_final_status(phone), 10)
        finally:
            transport.close()
            stop.set()
            await asyncio.wait_for(running, 15)
            await control.stop()

        assert status == BUSY["sipStatus"]  # the control plane's answer, not 480
        [invite] = control.invites
        assert invite.from_display_name == decoded
        assert ("X-Customer-Name", "Ren\ufffd") in invite.headers

    asyncio.run(asyncio.wait_for(scenario(), 60))
