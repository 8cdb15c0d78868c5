"""``POST /webhooks/sip/invite``: admission, routing, context and the call record (contract 1)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.contracts import InviteAccepted, parse_decision
from tests.integration.harness import (
    FALLBACK_SECRET,
    MEDIA_URL,
    Api,
    Aws,
    FallbackServer,
    stored_items,
)
from tests.support.fakes import OTHER_API_KEY, as_json, invite_body, signed_headers

CARRIER = "203.0.113.0/24"
CONTEXT_HEADERS = [
    ["Via", "SIP/2.0/UDP 203.0.113.10;branch=z9hG4bK74bf9"],
    ["X-Customer-Name", "Bob"],
    ["X-Complex-Value", '{"subkey": "value"}'],
]


def _accept(reply: Any) -> dict[str, Any]:
    assert reply.status == 200
    assert reply.body["action"] == "accept", reply.body
    return dict(reply.body)


def _reject(reply: Any, sip_status: int, reason: str) -> dict[str, Any]:
    assert reply.status == 200
    assert reply.body["action"] == "reject", reply.body
    assert (reply.body["sipStatus"], reply.body["reason"]) == (sip_status, reason)
    return dict(reply.body)


def _calls(api: Api, key: str | None = None) -> int:
    client = api.as_key(key) if key else api
    return int(client.get("/api/calls").body["total"])


@pytest.fixture
def sales(api: Api) -> str:
    """An agent routed by ``^sales$`` for callers from the carrier's range."""
    agent_id = str(
        api.create_agent(
            "sales",
            systemPrompt="Greet {{customer_name}} ({{complex_value.subkey}}).",
            joinTimeout="30s",
            maxDuration="600s",
        )["agentId"]
    )
    api.patch_sip(
        allowedCidrRanges=[CARRIER],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )
    return agent_id


# --- acceptance and the call record --------------------------------------------------------------


def test_the_decision_carries_the_accounts_incoming_refer_setting(api: Api, sales: str) -> None:
    assert _accept(api.invite())["incomingRefer"] == "decline"  # the default: 603

    api.patch_sip(incomingRefer="follow")

    decision = _accept(api.invite(sipCallId="second-call@carrier.example"))
    assert decision["incomingRefer"] == "follow"
    assert InviteAccepted.model_validate(decision).incoming_refer == "follow"



def test_invite_matching_a_pattern_is_accepted_with_the_rendered_template_and_context(
    api: Api, sales: str
) -> None:
    decision = _accept(api.invite(headers=CONTEXT_HEADERS))

    assert decision["agentId"] == sales
    assert decision["callId"]
    assert decision["mediaEndpoint"] == {"url": MEDIA_URL, "framing": "twilio"}
    assert decision["systemPrompt"] == "Greet Bob (value)."
    assert decision["templateContext"]["customer_name"] == "Bob"
    assert decision["templateContext"]["complex_value"] == {"subkey": "value"}
    assert (decision["joinTimeoutS"], decision["maxDurationS"]) == (30.0, 600.0)
    assert decision["codecPreference"]


def test_decision_passes_the_templates_other_fields_to_the_agent(api: Api) -> None:
    tools = [{"toolName": "hangUp"}]
    first_speaker = {"agent": {"text": "Hello, sales here."}}
    agent = api.create_agent(
        "tools",
        systemPrompt="Hi {{customer_name}}",
        selectedTools=tools,
        firstSpeakerSettings=first_speaker,
        voice="Mark",
        contextSchema={"type": "object"},
    )
    api.patch_sip(allowedCidrRanges=[CARRIER], allowedAgents=[{"agentId": agent["agentId"]}])

    decision = _accept(api.invite(toUri=f"sip:agent_{agent['agentId']}@x"))

    template = decision["callTemplate"]
    assert template["selectedTools"] == tools
    assert template["firstSpeakerSettings"] == first_speaker
    assert template["voice"] == "Mark"
    assert not {"systemPrompt", "mediaEndpoint", "contextSchema"} & template.keys()


def test_decision_parses_as_the_contract_the_edge_reads(api: Api, sales: str) -> None:
    body = as_json(invite_body())

    reply = api.client.http.post("/webhooks/sip/invite", headers=signed_headers(body, path="/webhooks/sip/invite"), body=body)

    decision = parse_decision(reply.body)
    assert isinstance(decision, InviteAccepted)
    assert decision.agent_id == sales


def test_accepted_invite_creates_an_incoming_call_record(api: Api, sales: str) -> None:
    decision = _accept(api.invite(headers=CONTEXT_HEADERS))

    call = api.get(f"/api/calls/{decision['callId']}").body

    assert call["direction"] == "incoming"
    assert call["agentId"] == sales
    assert call["medium"] == {
        "sip": {
            "incoming": {
                "from": "sip:+15551234567@carrier.example",
                "to": "sip:sales@sip.example.test",
            }
        }
    }
    assert (call["caller"], call["callee"]) == ("+15551234567", "sales")
    assert call["sipDetails"]["callerId"] == "+15551234567"
    assert call["sipDetails"]["fromDisplayName"] == "Alice Caller"
    assert call["templateContext"] == decision["templateContext"]
    assert call["ended"] is None
    assert call["billingStatus"] == "BILLING_STATUS_PENDING"
    assert _calls(api) == 1


def test_caller_id_comes_from_p_asserted_identity_when_present(api: Api, sales: str) -> None:
    headers = [["P-Asserted-Identity", '"Bob" <sip:+15550001111@carrier.example>']]

    decision = _accept(api.invite(headers=headers))

    call = api.get(f"/api/calls/{decision['callId']}").body
    assert call["caller"] == "+15550001111"
    assert decision["templateContext"]["sipline"]["sip"]["caller_id"] == "+15550001111"


def test_retried_invite_gets_the_same_call_and_creates_no_second_one(api: Api, sales: str) -> None:
    first = _accept(api.invite())

    second = _accept(api.invite())

    assert second == first
    assert _calls(api) == 1


def test_a_different_invite_creates_a_different_call(api: Api, sales: str) -> None:
    first = _accept(api.invite())

    second = _accept(api.invite(sipCallId="another-call@carrier.example"))

    assert second["callId"] != first["callId"]
    assert _calls(api) == 2


# --- admission -----------------------------------------------------------------------------------


def test_invite_from_outside_the_allowed_ranges_is_rejected_403(api: Api, sales: str) -> None:
    decision = _reject(api.invite(sourceIp="198.51.100.7"), 403, "source_ip_not_allowed")

    assert "198.51.100.7" in decision["message"]
    assert _calls(api) == 0


def test_empty_allowed_ranges_admit_nobody(api: Api, sales: str) -> None:
    api.patch_sip(allowedCidrRanges=[])

    _reject(api.invite(), 403, "source_ip_not_allowed")
    assert _calls(api) == 0


@pytest.mark.parametrize(
    "source", ["", "not-an-ip", "999.1.1.1", "203.0.113.10:5060", "2001:db8::1"]
)
def test_unreadable_source_ip_is_rejected_403(api: Api, sales: str, source: str) -> None:
    api.patch_sip(allowedCidrRanges=[CARRIER, "0.0.0.0/0"])

    _reject(api.invite(sourceIp=source), 403, "source_ip_not_allowed")
    assert _calls(api) == 0


def test_headers_naming_an_allowed_address_do_not_admit(api: Api, sales: str) -> None:
    headers = [
        ["Via", "SIP/2.0/UDP 203.0.113.10;branch=z9hG4bK74bf9"],
        ["X-Forwarded-For", "203.0.113.10"],
        ["Contact", "<sip:+15551234567@203.0.113.10>"],
    ]

    _reject(api.invite(sourceIp="198.51.100.7", headers=headers), 403, "source_ip_not_allowed")


def test_ipv4_mapped_source_inside_the_range_is_admitted(api: Api, sales: str) -> None:
    _accept(api.invite(sourceIp="::ffff:203.0.113.10"))


def test_invite_over_a_registration_is_admitted_whatever_its_source(api: Api, sales: str) -> None:
    registration_id = api.create_registration(username="1001")["registrationId"]
    api.patch_sip(
        allowedCidrRanges=[],
        allowedAgents=[{"agentId": sales, "toUserPattern": "^1001$"}],
    )

    decision = _accept(
        api.invite(
            sourceIp="192.0.2.99",
            registrationId=registration_id,
            requestUri="sip:1001@192.0.2.50:5060",
            toUri="sip:1001@pbx.example.test",
        )
    )

    assert decision["agentId"] == sales
    assert _calls(api) == 1


def test_invite_over_another_accounts_registration_is_routed_in_that_account(
    api: Api, sales: str
) -> None:
    other = api.as_key(OTHER_API_KEY)
    other_agent = other.create_agent("other-sales")["agentId"]
    other.patch_sip(allowedAgents=[{"agentId": other_agent, "toUserPattern": "^1001$"}])
    registration_id = other.create_registration(username="1001")["registrationId"]

    decision = _accept(
        api.invite(registrationId=registration_id, toUri="sip:1001@pbx.example.test")
    )

    assert decision["agentId"] == other_agent
    assert _calls(api, OTHER_API_KEY) == 1
    assert _calls(api) == 0


def test_invite_naming_an_unknown_registration_is_rejected_403(api: Api, sales: str) -> None:
    _reject(api.invite(registrationId="no-such-registration"), 403, "source_ip_not_allowed")
    assert _calls(api) == 0


# --- routing -------------------------------------------------------------------------------------


def test_invite_matching_no_rule_is_rejected_404(api: Api, sales: str) -> None:
    decision = _reject(api.invite(toUri="sip:nobody@sip.example.test"), 404, "no_agent_matched")

    assert "'nobody'" in decision["message"]
    assert _calls(api) == 0


def test_first_matching_pattern_wins(api: Api, sales: str) -> None:
    broad = api.create_agent("broad")["agentId"]
    api.patch_sip(
        allowedAgents=[
            {"agentId": broad, "toUserPattern": "^sa"},
            {"agentId": sales, "toUserPattern": "^sales$"},
        ]
    )
    assert _accept(api.invite())["agentId"] == broad

    api.patch_sip(
        allowedAgents=[
            {"agentId": sales, "toUserPattern": "^sales$"},
            {"agentId": broad, "toUserPattern": "^sa"},
        ]
    )
    assert _accept(api.invite(sipCallId="second@carrier.example"))["agentId"] == sales


def test_pattern_matches_the_to_user_only(api: Api, sales: str) -> None:
    _reject(
        api.invite(toUri="sip:support@sales", requestUri="sip:sales@sip.example.test"),
        404,
        "no_agent_matched",
    )


def test_pattern_with_alternatives_routes_phone_numbers(api: Api, sales: str) -> None:
    api.patch_sip(
        allowedAgents=[{"agentId": sales, "toUserPattern": "^15551234567$|^15557654321$"}]
    )

    assert _accept(api.invite(toUri="sip:15557654321@sip.example.test"))["agentId"] == sales


def test_rule_without_pattern_routes_agent_underscore_id(api: Api, sales: str) -> None:
    api.patch_sip(allowedAgents=[{"agentId": sales}])

    decision = _accept(api.invite(toUri=f"sip:agent_{sales}@sip.example.test"))

    assert decision["agentId"] == sales


def test_allow_all_agents_routes_agent_underscore_id_on_any_domain(api: Api, sales: str) -> None:
    other = api.create_agent("other")["agentId"]
    to = f"sip:agent_{other}@anything.example"
    _reject(api.invite(toUri=to), 404, "no_agent_matched")

    api.patch_sip(allowAllAgents=True)

    assert _accept(api.invite(toUri=to, sipCallId="retry@carrier.example"))["agentId"] == other


def test_patterns_are_tried_before_allow_all_agents(api: Api, sales: str) -> None:
    other = api.create_agent("other")["agentId"]
    api.patch_sip(
        allowAllAgents=True,
        allowedAgents=[{"agentId": sales, "toUserPattern": "^agent_"}],
    )

    assert _accept(api.invite(toUri=f"sip:agent_{other}@sip.example.test"))["agentId"] == sales


def test_allow_all_agents_to_an_unknown_agent_matches_nothing(api: Api, sales: str) -> None:
    api.patch_sip(allowAllAgents=True)

    _reject(api.invite(toUri="sip:agent_missing@sip.example.test"), 404, "no_agent_matched")
    assert _calls(api) == 0


def test_allow_all_agents_to_an_unknown_agent_falls_back_to_the_handler(
    api: Api, with_fallback: FallbackServer, sales: str
) -> None:
    api.patch_sip(allowAllAgents=True)
    with_fallback.answer_with({"startAgentCall": {"agentId": sales}})

    decision = _accept(api.invite(toUri="sip:agent_missing@sip.example.test"))

    assert decision["agentId"] == sales
    assert len(with_fallback.calls) == 1


def test_allow_all_agents_cannot_reach_another_accounts_agent(api: Api, sales: str) -> None:
    foreign = api.as_key(OTHER_API_KEY).create_agent("foreign")["agentId"]
    api.patch_sip(allowAllAgents=True)

    _reject(api.invite(toUri=f"sip:agent_{foreign}@sip.example.test"), 404, "no_agent_matched")
    assert _calls(api, OTHER_API_KEY) == 0


def test_invite_to_another_accounts_domain_uses_that_accounts_configuration(
    api: Api, sales: str
) -> None:
    other = api.as_key(OTHER_API_KEY)
    other_agent = other.create_agent("other")["agentId"]
    other.patch_sip(
        allowedCidrRanges=["198.51.100.0/24"],
        allowedAgents=[{"agentId": other_agent, "toUserPattern": "^sales$"}],
    )
    to = "sip:sales@other.sip.example.test"

    decision = _accept(api.invite(sourceIp="198.51.100.7", requestUri=to, toUri=to))

    assert decision["agentId"] == other_agent
    _reject(api.invite(sipCallId="2@c", requestUri=to, toUri=to), 403, "source_ip_not_allowed")


# --- context -------------------------------------------------------------------------------------


def test_reserved_sip_keys_are_added_when_the_schema_allows_them(api: Api) -> None:
    schema = {
        "type": "object",
        "properties": {
            "customer_name": {"type": "string"},
            "sipline": {
                "type": "object",
                "properties": {
                    "sip": {
                        "type": "object",
                        "properties": {
                            "caller_id": {"type": "string"},
                            "from_display_name": {"type": "string"},
                            "from_uri": {"type": "string"},
                        },
                        "additionalProperties": False,
                    }
                },
            },
        },
        "additionalProperties": False,
    }
    agent = api.create_agent("ctx", contextSchema=schema, systemPrompt="{{sipline.sip.caller_id}}")
    api.patch_sip(allowedCidrRanges=[CARRIER], allowedAgents=[{"agentId": agent["agentId"]}])

    decision = _accept(api.invite(toUri=f"sip:agent_{agent['agentId']}@x", headers=CONTEXT_HEADERS))

    assert decision["templateContext"] == {
        "customer_name": "Bob",
        "sipline": {
            "sip": {
                "caller_id": "+15551234567",
                "from_display_name": "Alice Caller",
                "from_uri": "sip:+15551234567@carrier.example",
            }
        },
    }
    assert decision["systemPrompt"] == "+15551234567"


def test_reserved_sip_keys_are_left_out_when_the_schema_does_not_allow_them(api: Api) -> None:
    schema = {
        "type": "object",
        "properties": {"customer_name": {"type": "string"}},
        "additionalProperties": False,
    }
    agent = api.create_agent("ctx", contextSchema=schema)
    api.patch_sip(allowedCidrRanges=[CARRIER], allowedAgents=[{"agentId": agent["agentId"]}])

    decision = _accept(api.invite(toUri=f"sip:agent_{agent['agentId']}@x", headers=CONTEXT_HEADERS))

    assert decision["templateContext"] == {"customer_name": "Bob"}


def test_only_some_reserved_keys_are_added_when_the_schema_allows_only_some(api: Api) -> None:
    schema = {
        "type": "object",
        "properties": {
            "sipline": {
                "type": "object",
                "properties": {
                    "sip": {
                        "type": "object",
                        "properties": {"caller_id": {"type": "string"}},
                        "additionalProperties": False,
                    }
                },
                "additionalProperties": False,
            }
        },
        "additionalProperties": False,
    }
    agent = api.create_agent("ctx", contextSchema=schema)
    api.patch_sip(allowedCidrRanges=[CARRIER], allowedAgents=[{"agentId": agent["agentId"]}])

    decision = _accept(api.invite(toUri=f"sip:agent_{agent['agentId']}@x"))

    assert decision["templateContext"] == {"sipline": {"sip": {"caller_id": "+15551234567"}}}


def test_a_header_cannot_set_the_reserved_key(api: Api, sales: str) -> None:
    headers = [["X-Sipline", '{"sip": {"caller_id": "spoofed"}}']]

    decision = _accept(api.invite(headers=headers))

    assert decision["templateContext"]["sipline"]["sip"]["caller_id"] == "+15551234567"


def test_header_values_that_are_not_json_stay_strings(api: Api, sales: str) -> None:
    headers = [["X-Order-Id", "A-17"], ["X-Count", "3"], ["X-VIP", "true"]]

    context = _accept(api.invite(headers=headers))["templateContext"]

    assert (context["order_id"], context["count"], context["vip"]) == ("A-17", 3, True)


# --- fallback handler ----------------------------------------------------------------------------


@pytest.fixture
def with_fallback(api: Api, sales: str, fallback_server: FallbackServer) -> FallbackServer:
    api.patch_sip(fallbackHandler={"url": fallback_server.url, "secrets": [FALLBACK_SECRET]})
    return fallback_server


UNROUTED = {"toUri": "sip:unknown-number@sip.example.test", "headers": CONTEXT_HEADERS}


def test_fallback_handler_is_asked_with_a_signed_request_and_can_start_an_agent_call(
    api: Api, sales: str, with_fallback: FallbackServer
) -> None:
    other = api.create_agent("other", systemPrompt="VIP: {{vip}}")["agentId"]
    with_fallback.answer_with(
        {"startAgentCall": {"agentId": other, "templateContext": {"vip": True}}}
    )

    decision = _accept(api.invite(**UNROUTED))

    assert decision["agentId"] == other
    assert decision["templateContext"]["vip"] is True
    assert decision["templateContext"]["customer_name"] == "Bob"
    assert decision["systemPrompt"] == "VIP: True"
    [asked] = with_fallback.calls
    assert asked.signature_ok
    assert asked.body["event"] == "sip.invite.unrouted"
    assert asked.body["toUser"] == "unknown-number"
    assert asked.body["callerId"] == "+15551234567"
    assert asked.body["sourceIp"] == "203.0.113.10"
    assert asked.body["templateContext"] == {
        "customer_name": "Bob",
        "complex_value": {"subkey": "value"},
    }
    assert api.get(f"/api/calls/{decision['callId']}").body["agentId"] == other


def test_fallback_handler_can_reject_with_its_own_sip_code(
    api: Api, with_fallback: FallbackServer
) -> None:
    with_fallback.answer_with({"reject": {"sipRejectCode": 486, "message": "all agents busy"}})

    decision = _reject(api.invite(**UNROUTED), 486, "fallback_rejected")

    assert decision["message"] == "all agents busy"
    assert _calls(api) == 0


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (200, b"this is not json"),
        (200, {"startAgentCall": {}}),
        (200, {"reject": {"sipRejectCode": 200}}),
        (200, {"startAgentCall": {"agentId": "x"}, "reject": {"sipRejectCode": 486}}),
        (200, {}),
        (500, {"startAgentCall": {"agentId": "x"}}),
    ],
)
def test_fallback_handler_answering_badly_rejects_480(
    api: Api, with_fallback: FallbackServer, status: int, answer: Any
) -> None:
    with_fallback.answer_with(answer, status=status)

    _reject(api.invite(**UNROUTED), 480, "fallback_failed")
    assert _calls(api) == 0


def test_fallback_handler_naming_an_unknown_agent_rejects_480(
    api: Api, with_fallback: FallbackServer
) -> None:
    with_fallback.answer_with({"startAgentCall": {"agentId": "no-such-agent"}})

    _reject(api.invite(**UNROUTED), 480, "agent_unavailable")


def test_unreachable_fallback_handler_rejects_480(api: Api, sales: str) -> None:
    server = FallbackServer(FALLBACK_SECRET).start()
    url = server.url
    server.stop()  # the port is closed: nothing listens there any more
    api.patch_sip(fallbackHandler={"url": url, "secrets": [FALLBACK_SECRET]})

    _reject(api.invite(**UNROUTED), 480, "fallback_failed")


def test_fallback_handler_signed_with_the_wrong_secret_is_refused_by_it(
    api: Api, sales: str, with_fallback: FallbackServer
) -> None:
    api.patch_sip(fallbackHandler={"url": with_fallback.url, "secrets": ["not-the-secret"]})
    with_fallback.answer_with({"startAgentCall": {"agentId": sales}})

    _reject(api.invite(**UNROUTED), 480, "fallback_failed")
    assert [c.signature_ok for c in with_fallback.calls] == [False]


def test_fallback_request_is_signed_with_every_configured_secret(
    api: Api, sales: str, with_fallback: FallbackServer
) -> None:
    secrets = ["the-new-secret", FALLBACK_SECRET]  # the handler still knows only the old one
    api.patch_sip(fallbackHandler={"url": with_fallback.url, "secrets": secrets})
    with_fallback.answer_with({"startAgentCall": {"agentId": sales}})

    _accept(api.invite(**UNROUTED))

    [asked] = with_fallback.calls
    assert asked.signature_ok
    assert asked.headers["X-Sipline-Signature"].count("v1=") == 2


def test_fallback_handler_is_not_asked_when_a_rule_matches(
    api: Api, sales: str, with_fallback: FallbackServer
) -> None:
    assert _accept(api.invite())["agentId"] == sales
    assert with_fallback.calls == []


def test_fallback_handler_is_not_asked_for_a_caller_refused_admission(
    api: Api, with_fallback: FallbackServer
) -> None:
    _reject(api.invite(sourceIp="198.51.100.7", **UNROUTED), 403, "source_ip_not_allowed")
    assert with_fallback.calls == []


def test_retried_invite_routed_by_the_fallback_asks_it_once(
    api: Api, sales: str, with_fallback: FallbackServer
) -> None:
    with_fallback.answer_with({"startAgentCall": {"agentId": sales}})

    first = _accept(api.invite(**UNROUTED))
    second = _accept(api.invite(**UNROUTED))

    assert second["callId"] == first["callId"]
    assert len(with_fallback.calls) == 1
    assert _calls(api) == 1


# --- bad bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"sipCallId": ""}, "sipCallId"),
        ({"transport": "sctp"}, "transport"),
        ({"sourcePort": 70000}, "sourcePort"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_malformed_invite_webhook_is_400_naming_the_field(
    api: Api, sales: str, aws: Aws, overrides: dict[str, Any], field: str
) -> None:
    items = len(stored_items(aws))

    reply = api.invite(**overrides)

    assert reply.status == 400
    assert reply.body["field"] == field
    assert len(stored_items(aws)) == items


# --- every rejection names its rule: response, log line, metric ----------------------------------


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"sourceIp": "198.51.100.7"}, "source_ip_not_allowed"),
        ({"sourceIp": ""}, "source_ip_not_allowed"),
        ({"toUri": "sip:nobody@sip.example.test"}, "no_agent_matched"),
    ],
)
def test_every_rejection_names_its_rule_in_the_log_and_the_metrics(
    api: Api,
    sales: str,
    log_output: pytest.CaptureFixture[str],
    overrides: dict[str, Any],
    reason: str,
) -> None:
    log_output.readouterr()

    decision = api.invite(**overrides).body

    lines = _json_lines(log_output.readouterr().out)
    assert decision["reason"] == reason
    [logged] = [line for line in lines if line.get("message") == "invite rejected"]
    assert logged["reason"] == reason
    assert logged["sip_call_id"] == "3848276298220188511@carrier.example"
    [metric] = [line for line in lines if "InviteRejected" in line]
    assert metric["reason"] == reason
    assert ["service", "reason"] in metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"]


def test_an_accepted_invite_is_logged_with_its_call_and_agent(
    api: Api, sales: str, log_output: pytest.CaptureFixture[str]
) -> None:
    log_output.readouterr()

    decision = _accept(api.invite())

    lines = _json_lines(log_output.readouterr().out)
    [logged] = [line for line in lines if line.get("message") == "invite accepted"]
    assert (logged["call_id"], logged["agent_id"]) == (decision["callId"], sales)
    assert any("InviteAccepted" in line for line in lines)
