"""``X-API-Key`` authentication and account isolation on every ``/api`` route."""

from __future__ import annotations

import pytest

from tests.integration.harness import Api
from tests.support.fakes import OTHER_API_KEY

ROUTES = [
    ("GET", "/api/sip"),
    ("PATCH", "/api/sip"),
    ("GET", "/api/sip/registrations"),
    ("POST", "/api/sip/registrations"),
    ("GET", "/api/agents"),
    ("POST", "/api/agents"),
    ("GET", "/api/calls"),
    ("POST", "/api/calls"),
    ("GET", "/api/accounts/me/billing/usage"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_request_without_api_key_is_refused_with_401(api: Api, method: str, path: str) -> None:
    reply = api.as_key("").request(method, path, {} if method in ("POST", "PATCH") else None)

    assert reply.status == 401
    assert reply.body["code"] == "unauthorized"


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_request_with_unknown_api_key_is_refused_with_401(api: Api, method: str, path: str) -> None:
    reply = api.as_key("sk_nobody").request(
        method, path, {} if method in ("POST", "PATCH") else None
    )

    assert reply.status == 401
    assert reply.body["code"] == "unauthorized"


def test_refused_request_changes_nothing(api: Api) -> None:
    api.as_key("sk_nobody").patch("/api/sip", {"allowAllAgents": True})

    assert api.get("/api/sip").body["allowAllAgents"] is False


def test_api_key_is_not_accepted_as_a_query_parameter(api: Api) -> None:
    reply = api.as_key("").get("/api/sip?apiKey=sk_test_1")

    assert reply.status == 401


def test_another_accounts_key_cannot_see_an_agent(api: Api) -> None:
    agent = api.create_agent()
    other = api.as_key(OTHER_API_KEY)

    assert other.get(f"/api/agents/{agent['agentId']}").status == 404
    assert other.patch(f"/api/agents/{agent['agentId']}", {"name": "stolen"}).status == 404
    assert other.delete(f"/api/agents/{agent['agentId']}").status == 404
    assert other.get("/api/agents").body["total"] == 0
    assert api.get(f"/api/agents/{agent['agentId']}").body["name"] == "sales"


def test_another_accounts_key_cannot_see_a_registration(api: Api) -> None:
    registration_id = api.create_registration()["registrationId"]
    other = api.as_key(OTHER_API_KEY)
    path = f"/api/sip/registrations/{registration_id}"

    assert other.get(path).status == 404
    assert other.patch(path, {"username": "stolen"}).status == 404
    assert other.delete(path).status == 404
    assert other.get("/api/sip/registrations").body["total"] == 0
    assert api.get(path).body["username"] == "1001"


def test_another_accounts_key_cannot_see_or_hang_up_a_call(api: Api) -> None:
    agent = api.create_agent()
    call_id = api.dial(agent["agentId"]).body["callId"]
    other = api.as_key(OTHER_API_KEY)

    assert other.get(f"/api/calls/{call_id}").status == 404
    assert other.delete(f"/api/calls/{call_id}").status == 404
    assert other.get("/api/calls").body["total"] == 0
    assert other.get("/api/accounts/me/billing/usage").body["dailyUsage"] == []


def test_another_account_cannot_place_a_call_with_an_agent_it_does_not_own(api: Api) -> None:
    agent = api.create_agent()

    reply = api.as_key(OTHER_API_KEY).dial(agent["agentId"])

    assert reply.status == 404
    assert api.get("/api/calls").body["total"] == 0


def test_each_account_has_its_own_sip_configuration_and_domain(api: Api) -> None:
    api.patch_sip(allowedCidrRanges=["198.51.100.0/24"])

    other = api.as_key(OTHER_API_KEY).get("/api/sip").body

    assert other["allowedCidrRanges"] == []
    assert other["domain"] == "other.sip.example.test"
    assert api.get("/api/sip").body["domain"] == "sip.example.test"
