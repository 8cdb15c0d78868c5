"""``/api/calls`` and ``POST /api/agents/{agentId}/calls``: outgoing calls, reading, hanging up."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.contracts import DialCommand, HangUpCommand, MediaEndpoint
from chalicelib.crypto import FernetCipher
from tests.integration.harness import (
    MEDIA_URL,
    Api,
    Aws,
    Queue,
    apply,
    load_vector,
    path_of,
    stored_items,
)
from tests.support.fakes import PASSWORD_KEY, FixedClock

TRUNK_PASSWORD = "trunk-pw-Zx81"
SCHEMA = {
    "type": "object",
    "properties": {"customer_name": {"type": "string"}, "order": {"type": "integer"}},
    "required": ["customer_name"],
    "additionalProperties": False,
}
OUTGOING = {
    "to": "sip:+15557654321@carrier.example.test",
    "from": "+15551110000",
    "username": "trunk-user",
    "password": TRUNK_PASSWORD,
}


@pytest.fixture
def agent_id(api: Api) -> str:
    agent = api.create_agent(
        systemPrompt="Call {{customer_name}} about order {{order}}.",
        contextSchema=SCHEMA,
        joinTimeout="30s",
        maxDuration="300s",
        metadata={"team": "sales"},
    )
    return str(agent["agentId"])


def _dial(api: Api, agent_id: str, **fields: Any) -> dict[str, Any]:
    context = {"customer_name": "Bob", "order": 42}
    reply = api.dial(agent_id, outgoing=OUTGOING, templateContext=context, **fields)
    assert reply.status == 201, reply.body
    return dict(reply.body)


def test_agent_call_returns_201_and_the_call_with_caller_and_callee(
    api: Api, agent_id: str
) -> None:
    call = _dial(api, agent_id, metadata={"ticket": "T-1"})

    assert call == {
        "callId": call["callId"],
        "created": "2026-11-25T12:00:00Z",
        "joined": None,
        "ended": None,
        "endReason": None,
        "billedDuration": None,
        "billingStatus": "BILLING_STATUS_PENDING",
        "agentId": agent_id,
        "direction": "outgoing",
        "caller": "+15551110000",
        "callee": "+15557654321",
        "medium": {
            "sip": {
                "outgoing": {
                    "to": "sip:+15557654321@carrier.example.test",
                    "from": "+15551110000",
                    "username": "trunk-user",
                }
            }
        },
        "metadata": {"team": "sales", "ticket": "T-1"},
        "templateContext": {"customer_name": "Bob", "order": 42},
        "droppedContext": [],
        "joinTimeout": "30s",
        "maxDuration": "300s",
        "sipDetails": {
            "billedDuration": None,
            "terminationReason": None,
            "from": "+15551110000",
            "to": "sip:+15557654321@carrier.example.test",
            "fromDisplayName": None,
            "callerId": "+15551110000",
        },
    }


def test_agent_call_queues_a_dial_command_with_the_password_only_encrypted(
    api: Api, agent_id: str, queue: Queue, aws: Aws
) -> None:
    call = _dial(api, agent_id)

    [command] = queue.drain()

    assert isinstance(command, DialCommand)
    assert command.call_id == call["callId"]
    assert command.agent_id == agent_id
    assert (command.to, command.from_) == (OUTGOING["to"], OUTGOING["from"])
    assert command.username == "trunk-user"
    assert command.password_ciphertext is not None
    assert TRUNK_PASSWORD not in command.password_ciphertext
    assert FernetCipher(PASSWORD_KEY).decrypt(command.password_ciphertext) == TRUNK_PASSWORD
    assert command.media_endpoint == MediaEndpoint(url=MEDIA_URL)
    assert command.system_prompt == "Call Bob about order 42."
    assert command.template_context == {"customer_name": "Bob", "order": 42}
    assert (command.join_timeout_s, command.max_duration_s) == (30.0, 300.0)
    assert TRUNK_PASSWORD not in json.dumps(call)
    assert TRUNK_PASSWORD not in json.dumps(stored_items(aws))


def test_dial_command_passes_the_templates_other_fields_to_the_agent(
    api: Api, queue: Queue
) -> None:
    tools = [{"toolName": "hangUp"}]
    agent_id = api.create_agent(selectedTools=tools, firstSpeakerSettings={"user": {}})["agentId"]

    assert api.dial(agent_id).status == 201

    [command] = queue.drain()
    assert isinstance(command, DialCommand)
    assert command.call_template["selectedTools"] == tools
    assert command.call_template["firstSpeakerSettings"] == {"user": {}}
    assert "mediaEndpoint" not in command.call_template


def test_agent_call_can_override_the_templates_timeouts(
    api: Api, agent_id: str, queue: Queue
) -> None:
    call = _dial(api, agent_id, joinTimeout="45s", maxDuration="60s")

    [command] = queue.drain()

    assert isinstance(command, DialCommand)
    assert (command.join_timeout_s, command.max_duration_s) == (45.0, 60.0)
    assert (call["joinTimeout"], call["maxDuration"]) == ("45s", "60s")


def test_call_without_a_password_sends_no_ciphertext(api: Api, queue: Queue) -> None:
    agent_id = api.create_agent()["agentId"]

    assert api.dial(agent_id).status == 201

    [command] = queue.drain()
    assert isinstance(command, DialCommand)
    assert command.password_ciphertext is None


def test_inline_call_returns_201_and_queues_a_dial_command_without_agent(
    api: Api, queue: Queue
) -> None:
    reply = api.post(
        "/api/calls",
        {
            "systemPrompt": "Remind {{name}} of the appointment.",
            "mediaEndpoint": {"url": "wss://agents.example.test/inline", "framing": "pcm48k"},
            "joinTimeout": "10s",
            "medium": {"sip": {"outgoing": OUTGOING}},
            "templateContext": {"name": "Ann"},
        },
    )

    assert reply.status == 201
    assert reply.body["agentId"] is None
    assert reply.body["callee"] == "+15557654321"
    [command] = queue.drain()
    assert isinstance(command, DialCommand)
    assert command.call_id == reply.body["callId"]
    assert command.agent_id is None
    assert command.system_prompt == "Remind Ann of the appointment."
    assert command.media_endpoint.url == "wss://agents.example.test/inline"
    assert command.join_timeout_s == 10.0
    assert FernetCipher(PASSWORD_KEY).decrypt(command.password_ciphertext or "") == TRUNK_PASSWORD


def test_inline_call_with_an_invalid_context_schema_is_refused(api: Api, queue: Queue) -> None:
    reply = api.post(
        "/api/calls",
        {
            "mediaEndpoint": {"url": MEDIA_URL},
            "contextSchema": {"type": "nope"},
            "medium": {"sip": {"outgoing": OUTGOING}},
        },
    )

    assert reply.status == 400
    assert reply.body["field"] == "contextSchema"
    assert api.get("/api/calls").body["total"] == 0
    assert queue.drain() == []


def test_inline_call_checks_the_context_against_its_schema(api: Api, queue: Queue) -> None:
    reply = api.post(
        "/api/calls",
        {
            "mediaEndpoint": {"url": MEDIA_URL},
            "contextSchema": SCHEMA,
            "medium": {"sip": {"outgoing": OUTGOING}},
            "templateContext": {"customer_name": 7},
        },
    )

    assert reply.status == 400
    assert reply.body["field"] == "templateContext.customer_name"
    assert queue.drain() == []


@pytest.mark.parametrize(
    "to",
    [
        "+15557654321",
        "tel:+15557654321",
        "http://example.test/",
        "sip:",
        "sip:user@",
        "sip:user@host:99999",
        "sip:user@host;transport=sctp",
        "sip:user@host:5060;transport=SCTP",
        "sip:user@host;transport=ws",
    ],
)
def test_target_that_is_not_a_usable_sip_uri_is_refused(
    api: Api, agent_id: str, queue: Queue, to: str
) -> None:
    reply = api.dial(agent_id, to, templateContext={"customer_name": "Bob"})

    assert reply.status == 400
    assert reply.body["field"] == "medium.sip.outgoing.to"
    assert repr(to) in reply.body["detail"]
    assert api.get("/api/calls").body["total"] == 0
    assert queue.drain() == []


@pytest.mark.parametrize(
    "to",
    [
        "sip:sales@pbx.example.test",
        "sip:+15557654321@93.184.215.14:5080",  # public: documentation ranges are refused
        "sip:sales@pbx.example.test:5060;transport=tcp",
        "sip:sales@pbx.example.test:5061;transport=tls",
        "sips:sales@pbx.example.test",
    ],
)
def test_target_over_udp_tcp_or_tls_is_accepted(api: Api, agent_id: str, to: str) -> None:
    reply = api.dial(agent_id, to, templateContext={"customer_name": "Bob"})

    assert reply.status == 201
    assert reply.body["medium"]["sip"]["outgoing"]["to"] == to


@pytest.mark.parametrize(
    ("to", "stored"),
    [
        # The seed docs' Twilio example, without a scheme (docs/api.md).
        (
            "+15551234567@trunkname.pstn.twilio.com",
            "sip:+15551234567@trunkname.pstn.twilio.com",
        ),
        ("SIP:sales@pbx.example.test", "sip:sales@pbx.example.test"),
        (" <sips:sales@pbx.example.test> ", "sips:sales@pbx.example.test"),
    ],
)
def test_target_is_stored_returned_and_dialled_in_its_normalised_sip_form(
    api: Api, agent_id: str, queue: Queue, to: str, stored: str
) -> None:
    reply = api.dial(agent_id, to, templateContext={"customer_name": "Bob"})

    assert reply.status == 201, reply.body
    assert reply.body["medium"]["sip"]["outgoing"]["to"] == stored
    assert reply.body["sipDetails"]["to"] == stored
    assert reply.body["callee"] == stored.partition(":")[2].partition("@")[0]
    assert (
        api.get(f"/api/calls/{reply.body['callId']}").body["medium"]["sip"]["outgoing"]["to"]
        == stored
    )
    [command] = queue.drain()
    assert isinstance(command, DialCommand)
    assert command.to == stored


def test_target_without_scheme_still_meets_the_egress_policy(
    api: Api, agent_id: str, queue: Queue
) -> None:
    reply = api.dial(agent_id, "+15551234567@192.168.1.10", templateContext={"customer_name": "B"})

    assert reply.status == 400
    assert reply.body["field"] == "medium.sip.outgoing.to"
    assert "192.168.1.10 is not a public address (private)" in reply.body["detail"]
    assert queue.drain() == []


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({"customer_name": 7}, "templateContext.customer_name"),
        ({"customer_name": "Bob", "order": "forty-two"}, "templateContext.order"),
        ({"customer_name": "Bob", "extra": 1}, "templateContext"),
        ({}, "templateContext"),
    ],
)
def test_context_violating_the_agents_schema_is_refused_and_nothing_is_stored(
    api: Api, agent_id: str, queue: Queue, aws: Aws, context: dict[str, object], field: str
) -> None:
    items_before = len(stored_items(aws))

    reply = api.dial(agent_id, outgoing=OUTGOING, templateContext=context)

    assert reply.status == 400
    assert reply.body["field"] == field
    assert api.get("/api/calls").body["total"] == 0
    assert len(stored_items(aws)) == items_before
    assert queue.drain() == []


@pytest.mark.parametrize(
    ("outgoing", "field"),
    [
        ({"to": "sip:a@b.test"}, "medium.sip.outgoing.from"),
        ({"from": "+1555"}, "medium.sip.outgoing.to"),
        ({"to": "sip:a@b.test", "from": "x", "pasword": "typo"}, "medium.sip.outgoing.pasword"),
    ],
)
def test_outgoing_medium_with_missing_or_unknown_fields_is_refused(
    api: Api, agent_id: str, outgoing: dict[str, str], field: str
) -> None:
    reply = api.post(f"/api/agents/{agent_id}/calls", {"medium": {"sip": {"outgoing": outgoing}}})

    assert reply.status == 400
    assert reply.body["field"] == field


def test_call_for_an_unknown_agent_is_404(api: Api, queue: Queue) -> None:
    reply = api.dial("no-such-agent")

    assert reply.status == 404
    assert queue.drain() == []


def test_get_returns_the_call(api: Api, agent_id: str) -> None:
    call = _dial(api, agent_id)

    reply = api.get(f"/api/calls/{call['callId']}")

    assert reply.status == 200
    assert reply.body == call
    assert (reply.body["caller"], reply.body["callee"]) == ("+15551110000", "+15557654321")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_unknown_call_is_404(api: Api, queue: Queue, method: str) -> None:
    reply = api.request(method, "/api/calls/no-such-call")

    assert reply.status == 404
    assert reply.body["code"] == "not_found"
    assert queue.drain() == []


def test_list_filters_by_agent_ids(api: Api) -> None:
    first = api.create_agent("first")["agentId"]
    second = api.create_agent("second")["agentId"]
    third = api.create_agent("third")["agentId"]
    calls = {agent: api.dial(agent).body["callId"] for agent in (first, second, third)}

    def listed(query: str) -> set[str]:
        reply = api.get(f"/api/calls?{query}")
        assert reply.status == 200
        assert reply.body["total"] == len(reply.body["results"])
        return {c["callId"] for c in reply.body["results"]}

    assert listed(f"agentIds={first}") == {calls[first]}
    assert listed(f"agentIds={first},{third}") == {calls[first], calls[third]}
    assert listed(f"agentIds={second}&agentIds={third}") == {calls[second], calls[third]}
    assert listed("") == set(calls.values())


def test_list_filters_by_days_inclusive(api: Api, clock: FixedClock) -> None:
    agent_id = api.create_agent()["agentId"]
    by_day = {}
    for day in ("2026-11-25", "2026-11-26", "2026-11-27"):
        by_day[day] = api.dial(agent_id).body["callId"]
        clock.advance(24 * 3600)

    def listed(query: str) -> list[str]:
        return [c["callId"] for c in api.get(f"/api/calls?{query}").body["results"]]

    assert listed("fromDate=2026-11-26") == [by_day["2026-11-27"], by_day["2026-11-26"]]
    assert listed("toDate=2026-11-25") == [by_day["2026-11-25"]]
    assert listed("fromDate=2026-11-26&toDate=2026-11-26") == [by_day["2026-11-26"]]
    assert listed("fromDate=2026-11-28") == []
    assert api.get("/api/calls?fromDate=2026-11-26").body["total"] == 2


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("fromDate=yesterday", "fromDate"),
        ("toDate=2026-13-01", "toDate"),
        ("fromDate=2026-11-27&toDate=2026-11-26", "toDate"),
    ],
)
def test_list_with_bad_dates_is_refused(api: Api, query: str, field: str) -> None:
    reply = api.get(f"/api/calls?{query}")

    assert reply.status == 400
    assert reply.body["field"] == field


def test_list_pages_through_calls(api: Api) -> None:
    agent_id = api.create_agent()["agentId"]
    ids = [api.dial(agent_id).body["callId"] for _ in range(3)]

    first = api.get("/api/calls?pageSize=2")
    second = api.get(path_of(first.body["next"]))

    assert [c["callId"] for c in first.body["results"]] == [ids[2], ids[1]]
    assert [c["callId"] for c in second.body["results"]] == [ids[0]]
    assert (first.body["total"], second.body["total"]) == (3, 3)


def test_delete_of_an_active_call_returns_204_and_queues_a_hang_up(
    api: Api, agent_id: str, queue: Queue
) -> None:
    call_id = _dial(api, agent_id)["callId"]
    queue.drain()
    api.heartbeat("edge-1", [call_id])  # a relay holds the call

    reply = api.delete(f"/api/calls/{call_id}")

    assert reply.status == 204
    assert queue.drain() == [HangUpCommand(call_id=str(call_id))]
    assert api.get(f"/api/calls/{call_id}").body["ended"] is None  # until the relay's events


def test_delete_of_an_ended_call_is_409_and_queues_nothing(api: Api, queue: Queue) -> None:
    agent_id = api.create_agent()["agentId"]
    call_id = api.dial(agent_id).body["callId"]
    apply(api, load_vector("outgoing_busy", call_id))
    queue.drain()

    reply = api.delete(f"/api/calls/{call_id}")

    assert reply.status == 409
    assert reply.body["code"] == "conflict"
    assert queue.drain() == []


def test_page_links_keep_every_filter_of_the_list(api: Api) -> None:
    first, second, third = (api.create_agent(name)["agentId"] for name in ("a", "b", "c"))
    wanted = {api.dial(agent).body["callId"] for agent in (first, second) for _ in range(2)}
    api.dial(third)

    page = api.get(f"/api/calls?agentIds={first}&agentIds={second}&pageSize=1")
    pages = [page]
    while page.body["next"]:
        page = api.get(path_of(page.body["next"]))
        pages.append(page)
    back = api.get(path_of(pages[-1].body["previous"]))

    assert [p.body["total"] for p in pages] == [4, 4, 4, 4]
    assert {c["callId"] for p in pages for c in p.body["results"]} == wanted
    assert back.body["results"] == pages[-2].body["results"]
    assert back.body["total"] == 4


def test_call_placed_while_the_queue_is_down_is_503_and_recorded_as_failed(
    api: Api, aws: Aws
) -> None:
    agent_id = api.create_agent()["agentId"]
    aws.sqs.delete_queue(QueueUrl=aws.queue_url)

    reply = api.dial(agent_id)

    assert reply.status == 503
    assert reply.body["code"] == "command_not_sent"
    [call] = api.get("/api/calls").body["results"]
    assert (call["endReason"], call["ended"]) == ("system_error", "2026-11-25T12:00:00Z")


def test_hang_up_while_the_queue_is_down_is_503_and_leaves_the_call_active(
    api: Api, aws: Aws
) -> None:
    call_id = api.dial(api.create_agent()["agentId"]).body["callId"]
    api.heartbeat("edge-1", [call_id])  # a relay holds the call
    aws.sqs.delete_queue(QueueUrl=aws.queue_url)

    reply = api.delete(f"/api/calls/{call_id}")

    assert reply.status == 503
    assert reply.body["code"] == "command_not_sent"
    assert api.get(f"/api/calls/{call_id}").body["ended"] is None


def test_inline_call_without_a_media_endpoint_is_refused_naming_it(api: Api, queue: Queue) -> None:
    reply = api.post("/api/calls", {"medium": {"sip": {"outgoing": OUTGOING}}})

    assert reply.status == 400
    assert reply.body["field"] == "mediaEndpoint"
    assert api.get("/api/calls").body["total"] == 0
    assert queue.drain() == []


def test_refused_trunk_password_is_not_echoed_in_the_error(api: Api, agent_id: str) -> None:
    long_password = "z" * 257

    reply = api.dial(agent_id, outgoing=OUTGOING | {"password": long_password})

    assert reply.status == 400
    assert reply.body["field"] == "medium.sip.outgoing.password"
    assert long_password not in json.dumps(reply.body)
