from __future__ import annotations

from typing import Any

import pytest

from chalicelib import agents, registrations, sip_config
from chalicelib.contracts import InviteWebhook
from chalicelib.errors import (
    AgentUnavailable,
    FallbackFailed,
    FallbackRejected,
    NoAgentMatched,
    SourceIpNotAllowed,
)
from chalicelib.invites import decide_invite
from chalicelib.models import AgentFields, RegistrationFields, SipConfigPatch
from chalicelib.services import Services
from chalicelib.store.paging import PageRequest
from tests.support.fakes import FakeFallback, invite_body


def invite(**overrides: Any) -> InviteWebhook:
    return InviteWebhook.model_validate(invite_body(**overrides))


def add_agent(services: Services, name: str = "sales", **template: Any) -> str:
    fields = AgentFields.model_validate({"name": name, "callTemplate": template})
    return agents.create_agent(services, "default", fields).agent_id


def configure(services: Services, **patch: Any) -> None:
    sip_config.patch_sip_config(services, "default", SipConfigPatch.model_validate(patch))


def test_spec_example_routes_sales_and_carries_header_context(services: Services) -> None:
    agent_id = add_agent(
        services, systemPrompt="Greet {{customer_name}} ({{sipline.sip.caller_id}})"
    )
    configure(
        services,
        allowedCidrRanges=["203.0.113.0/24"],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )
    headers = [["X-Customer-Name", "Bob"], ["X-Complex-Value", '{"subkey": "value"}']]
    decision = decide_invite(services, invite(headers=headers))
    assert decision.agent_id == agent_id
    assert decision.template_context["customer_name"] == "Bob"
    assert decision.template_context["complex_value"] == {"subkey": "value"}
    assert decision.system_prompt == "Greet Bob (+15551234567)"
    assert decision.media_endpoint.url == "ws://127.0.0.1:9000/agent"
    call = services.store.get_call(decision.call_id).value
    assert call.direction == "incoming"
    assert call.caller == "+15551234567" and call.callee == "sales"
    assert call.medium_view() == {
        "sip": {
            "incoming": {
                "from": "sip:+15551234567@carrier.example",
                "to": "sip:sales@sip.example.test",
            }
        }
    }


@pytest.mark.parametrize("source", ["198.51.100.1", "", "bogus", "2001:db8::1"])
def test_sources_outside_the_allowlist_get_403(services: Services, source: str) -> None:
    agent_id = add_agent(services)
    configure(services, allowedCidrRanges=["203.0.113.0/24"], allowAllAgents=True)
    with pytest.raises(SourceIpNotAllowed) as raised:
        decide_invite(services, invite(sourceIp=source, toUri=f"sip:agent_{agent_id}@x"))
    assert raised.value.sip_status == 403
    assert raised.value.code == "source_ip_not_allowed"


def test_empty_allowlist_admits_nobody(services: Services) -> None:
    add_agent(services)
    configure(services, allowAllAgents=True)
    with pytest.raises(SourceIpNotAllowed):
        decide_invite(services, invite())


def test_a_header_never_counts_for_admission(services: Services) -> None:
    configure(services, allowedCidrRanges=["203.0.113.0/24"])
    spoofed = [["X-Forwarded-For", "203.0.113.10"], ["Via", "SIP/2.0/UDP 203.0.113.10"]]
    with pytest.raises(SourceIpNotAllowed):
        decide_invite(services, invite(sourceIp="198.51.100.1", headers=spoofed))


def test_invite_over_a_registration_is_admitted_without_an_allowlist(services: Services) -> None:
    agent_id = add_agent(services)
    configure(services, allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}])
    fields = RegistrationFields(username="sales", password="pw", proxy="pbx.example")
    registration = registrations.create_registration(services, "default", fields)
    decision = decide_invite(
        services, invite(sourceIp="198.51.100.1", registrationId=registration.registration_id)
    )
    assert decision.agent_id == agent_id


def test_unknown_registration_is_refused(services: Services) -> None:
    with pytest.raises(SourceIpNotAllowed, match="registration 'nope' does not exist"):
        decide_invite(services, invite(registrationId="nope"))


def test_no_route_and_no_fallback_is_404(services: Services) -> None:
    configure(services, allowedCidrRanges=["0.0.0.0/0"])
    with pytest.raises(NoAgentMatched) as raised:
        decide_invite(services, invite())
    assert raised.value.sip_status == 404
    assert raised.value.message == "no routing rule matched To user 'sales'"


def test_allow_all_agents_reaches_agent_by_id_on_any_domain(services: Services) -> None:
    agent_id = add_agent(services)
    configure(services, allowedCidrRanges=["0.0.0.0/0"], allowAllAgents=True)
    decision = decide_invite(services, invite(toUri=f"sip:agent_{agent_id}@anything.example"))
    assert decision.agent_id == agent_id


def test_allow_all_agents_with_an_unknown_agent_is_no_match(services: Services) -> None:
    configure(services, allowedCidrRanges=["0.0.0.0/0"], allowAllAgents=True)
    with pytest.raises(NoAgentMatched) as raised:
        decide_invite(services, invite(toUri="sip:agent_ghost@x"))
    assert raised.value.sip_status == 404


def test_allow_all_agents_with_an_unknown_agent_falls_back(services: Services) -> None:
    agent_id = add_agent(services)
    configure(
        services,
        allowedCidrRanges=["0.0.0.0/0"],
        allowAllAgents=True,
        fallbackHandler={"url": "https://h.example"},
    )
    fallback(services).answer = {"startAgentCall": {"agentId": agent_id}}
    assert decide_invite(services, invite(toUri="sip:agent_ghost@x")).agent_id == agent_id


def test_a_deleted_agent_named_by_a_pattern_is_unavailable(services: Services) -> None:
    agent_id = add_agent(services)
    configure(
        services,
        allowedCidrRanges=["0.0.0.0/0"],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )
    services.store.delete_agent("default", agent_id)
    with pytest.raises(AgentUnavailable) as raised:
        decide_invite(services, invite())
    assert raised.value.sip_status == 480


def test_fallback_context_is_schema_filtered_and_cannot_set_reserved_keys(
    services: Services,
) -> None:
    schema = {
        "type": "object",
        "properties": {"tier": {"type": "string"}},
        "additionalProperties": False,
    }
    agent_id = add_agent(services, contextSchema=schema)
    configure(
        services, allowedCidrRanges=["0.0.0.0/0"], fallbackHandler={"url": "https://h.example"}
    )
    fallback(services).answer = {
        "startAgentCall": {
            "agentId": agent_id,
            "templateContext": {"tier": "gold", "rogue": 1, "sipline": {"sip": {"caller_id": "x"}}},
        }
    }
    assert decide_invite(services, invite()).template_context == {"tier": "gold"}


def fallback(services: Services) -> FakeFallback:
    assert isinstance(services.fallback, FakeFallback)
    return services.fallback


def test_fallback_start_agent_call_routes_with_its_context(services: Services) -> None:
    agent_id = add_agent(services)
    configure(
        services,
        allowedCidrRanges=["0.0.0.0/0"],
        fallbackHandler={"url": "https://hooks.example/sip", "secrets": ["fb-secret"]},
    )
    fallback(services).answer = {
        "startAgentCall": {"agentId": agent_id, "templateContext": {"tier": "gold"}}
    }
    decision = decide_invite(services, invite(headers=[["X-Plan", "basic"]]))
    assert decision.agent_id == agent_id
    assert decision.template_context["tier"] == "gold"
    url, secrets, request = fallback(services).asked[0]
    assert (url, secrets) == ("https://hooks.example/sip", ["fb-secret"])
    assert request.to_user == "sales"
    assert request.template_context == {"plan": "basic"}


def test_fallback_reject_uses_its_sip_code(services: Services) -> None:
    configure(
        services, allowedCidrRanges=["0.0.0.0/0"], fallbackHandler={"url": "https://h.example"}
    )
    fallback(services).answer = {"reject": {"sipRejectCode": 486, "message": "Busy here"}}
    with pytest.raises(FallbackRejected) as raised:
        decide_invite(services, invite())
    assert (raised.value.sip_status, raised.value.message) == (486, "Busy here")


def test_fallback_failure_rejects_with_480(services: Services) -> None:
    configure(
        services, allowedCidrRanges=["0.0.0.0/0"], fallbackHandler={"url": "https://h.example"}
    )
    with pytest.raises(FallbackFailed) as raised:
        decide_invite(services, invite())
    assert raised.value.sip_status == 480


def test_retried_invite_returns_the_same_call_and_creates_one(services: Services) -> None:
    agent_id = add_agent(services)
    configure(
        services,
        allowedCidrRanges=["0.0.0.0/0"],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )
    first = decide_invite(services, invite())
    second = decide_invite(services, invite())
    assert first == second
    calls = services.store.list_calls("default", PageRequest())
    assert calls.total == 1


def test_a_new_invite_with_another_call_id_is_a_new_call(services: Services) -> None:
    agent_id = add_agent(services)
    configure(
        services,
        allowedCidrRanges=["0.0.0.0/0"],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )
    first = decide_invite(services, invite())
    second = decide_invite(services, invite(sipCallId="another@carrier.example"))
    assert first.call_id != second.call_id


def test_caller_id_prefers_p_asserted_identity(services: Services) -> None:
    agent_id = add_agent(services)
    configure(
        services,
        allowedCidrRanges=["0.0.0.0/0"],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )
    headers = [["P-Asserted-Identity", '"Real" <sip:+442071234567@trunk.example>']]
    decision = decide_invite(
        services, invite(fromUri="sip:anonymous@anonymous.invalid", headers=headers)
    )
    assert decision.template_context["sipline"]["sip"]["caller_id"] == "+442071234567"


def test_accounts_are_told_apart_by_domain(services: Services) -> None:
    agent_id = add_agent(services)
    configure(services, allowedCidrRanges=["0.0.0.0/0"], allowAllAgents=True)
    other_domain = services.settings.account_domain("other")
    with pytest.raises(SourceIpNotAllowed):  # the other account has no allowlist
        decide_invite(services, invite(requestUri=f"sip:agent_{agent_id}@{other_domain}"))


def test_edge_allowlist_is_the_union_of_the_accounts_ranges(services: Services) -> None:
    from chalicelib.sip_config import edge_allowlist

    empty = edge_allowlist(services)
    assert empty.allowed_cidr_ranges == []
    configure(services, allowedCidrRanges=["203.0.113.0/24"])
    sip_config.patch_sip_config(
        services, "other", SipConfigPatch.model_validate({"allowedCidrRanges": ["198.51.100.0/24"]})
    )
    fields = RegistrationFields(username="u", password="p", proxy="pbx.example")
    registrations.create_registration(services, "other", fields)
    snapshot = edge_allowlist(services)
    assert snapshot.allowed_cidr_ranges == ["198.51.100.0/24", "203.0.113.0/24"]
    assert snapshot.version != empty.version
    assert edge_allowlist(services).version == snapshot.version
