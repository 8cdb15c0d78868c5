"""``/api/agents``: agents and their call templates, with sipline's ``mediaEndpoint``."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from chalicelib.services import Services
from tests.integration.harness import MEDIA_URL, Api, path_of

CONTEXT_SCHEMA = {
    "type": "object",
    "properties": {
        "customer_name": {"type": "string"},
        "account": {"type": "object", "properties": {"tier": {"type": "string"}}},
    },
    "additionalProperties": False,
}
TEMPLATE = {
    "systemPrompt": "You help {{customer_name}} ({{account.tier}} tier).",
    "contextSchema": CONTEXT_SCHEMA,
    "selectedTools": [
        {"toolName": "hangUp"},
        {"toolName": "queryCorpus", "parameterOverrides": {"k": 3}},
    ],
    "firstSpeakerSettings": {"agent": {"uninterruptible": True, "text": "Hello!"}},
    "joinTimeout": "30s",
    "maxDuration": "600s",
    "temperature": 0.4,
    "voice": "Mark",
    "languageHint": "en",
    "timeExceededMessage": "Time is up.",
    "inactivityMessages": [{"duration": "30s", "message": "Still there?"}],
    "recordingEnabled": False,
    "vadSettings": {"turnEndpointDelay": "0.384s"},
    "metadata": {"team": "sales"},
    "mediaEndpoint": {"url": "wss://agents.example.test/media", "framing": "pcm16k"},
}


def test_create_returns_201_and_every_call_template_field_round_trips(api: Api) -> None:
    reply = api.post("/api/agents", {"name": "sales-agent", "callTemplate": TEMPLATE})

    assert reply.status == 201
    assert reply.body["name"] == "sales-agent"
    assert reply.body["created"] == "2026-11-25T12:00:00Z"
    assert reply.body["callTemplate"] == TEMPLATE
    read = api.get(f"/api/agents/{reply.body['agentId']}")
    assert read.status == 200
    assert read.body == reply.body


def test_media_endpoint_framing_defaults_to_twilio(api: Api) -> None:
    agent = api.create_agent()

    assert agent["callTemplate"]["mediaEndpoint"] == {"url": MEDIA_URL, "framing": "twilio"}


def test_list_returns_agents_newest_first_in_pages(api: Api) -> None:
    ids = [api.create_agent(f"agent{i}")["agentId"] for i in range(3)]

    first = api.get("/api/agents?pageSize=2")

    assert first.status == 200
    assert [a["agentId"] for a in first.body["results"]] == [ids[2], ids[1]]
    assert first.body["total"] == 3
    assert first.body["results"][0]["callTemplate"]["mediaEndpoint"]["url"] == MEDIA_URL
    second = api.get(path_of(first.body["next"]))
    assert [a["agentId"] for a in second.body["results"]] == [ids[0]]
    assert second.body["next"] is None


def test_patch_replaces_the_name_and_only_the_template_fields_given(api: Api) -> None:
    agent_id = api.post("/api/agents", {"name": "sales", "callTemplate": TEMPLATE}).body["agentId"]

    reply = api.patch(
        f"/api/agents/{agent_id}",
        {"name": "sales-2", "callTemplate": {"systemPrompt": "Be brief, {{customer_name}}."}},
    )

    assert reply.status == 200
    assert reply.body["name"] == "sales-2"
    assert reply.body["callTemplate"] == TEMPLATE | {"systemPrompt": "Be brief, {{customer_name}}."}
    assert api.get(f"/api/agents/{agent_id}").body == reply.body


def test_delete_returns_204_and_the_agent_is_gone(api: Api) -> None:
    agent_id = api.create_agent()["agentId"]

    reply = api.delete(f"/api/agents/{agent_id}")

    assert reply.status == 204
    assert api.get(f"/api/agents/{agent_id}").status == 404
    assert api.get("/api/agents").body["total"] == 0


def test_delete_is_refused_while_allowed_agents_routes_to_the_agent(api: Api) -> None:
    agent_id = api.create_agent()["agentId"]
    api.patch_sip(allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}])

    refused = api.delete(f"/api/agents/{agent_id}")

    assert refused.status == 409
    assert "allowedAgents[0]" in refused.body["detail"]
    assert api.get(f"/api/agents/{agent_id}").status == 200
    api.patch_sip(allowedAgents=[])
    assert api.delete(f"/api/agents/{agent_id}").status == 204


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_unknown_agent_is_404(api: Api, method: str) -> None:
    reply = api.request(
        method, "/api/agents/no-such-agent", {"name": "x"} if method == "PATCH" else None
    )

    assert reply.status == 404
    assert reply.body["code"] == "not_found"


@pytest.mark.parametrize("duration", ["30", "30 s", "thirty", "-5s", "30m", ""])
def test_create_with_a_bad_duration_is_refused_naming_the_field(api: Api, duration: str) -> None:
    reply = api.post(
        "/api/agents",
        {
            "name": "sales",
            "callTemplate": {"joinTimeout": duration, "mediaEndpoint": {"url": MEDIA_URL}},
        },
    )

    assert reply.status == 400
    assert reply.body["field"] == "callTemplate.joinTimeout"
    assert repr(duration) in reply.body["detail"]
    assert api.get("/api/agents").body["total"] == 0


def test_patch_with_a_bad_duration_is_refused_and_changes_nothing(api: Api) -> None:
    agent = api.create_agent(joinTimeout="30s")

    reply = api.patch(f"/api/agents/{agent['agentId']}", {"callTemplate": {"maxDuration": "1h"}})

    assert reply.status == 400
    assert reply.body["field"] == "callTemplate.maxDuration"
    assert api.get(f"/api/agents/{agent['agentId']}").body == agent


@pytest.mark.parametrize(
    "schema",
    [{"type": "not-a-type"}, {"properties": {"a": {"minLength": -1}}}, {"required": "a"}],
)
def test_create_with_an_invalid_context_schema_is_refused(
    api: Api, schema: dict[str, object]
) -> None:
    reply = api.post(
        "/api/agents",
        {
            "name": "sales",
            "callTemplate": {"contextSchema": schema, "mediaEndpoint": {"url": MEDIA_URL}},
        },
    )

    assert reply.status == 400
    assert reply.body["field"] == "callTemplate.contextSchema"
    assert api.get("/api/agents").body["total"] == 0


def test_patch_with_an_invalid_context_schema_is_refused_and_changes_nothing(api: Api) -> None:
    agent = api.create_agent(contextSchema=CONTEXT_SCHEMA)

    reply = api.patch(
        f"/api/agents/{agent['agentId']}", {"callTemplate": {"contextSchema": {"type": 7}}}
    )

    assert reply.status == 400
    assert reply.body["field"] == "callTemplate.contextSchema"
    assert api.get(f"/api/agents/{agent['agentId']}").body == agent


def test_media_endpoint_is_required_when_no_default_is_configured(api: Api) -> None:
    reply = api.post("/api/agents", {"name": "sales", "callTemplate": {"systemPrompt": "Hi"}})

    assert reply.status == 400
    assert reply.body["field"] == "callTemplate.mediaEndpoint"
    assert api.get("/api/agents").body["total"] == 0


def test_media_endpoint_may_be_left_out_when_a_default_is_configured(
    api: Api, services: Services
) -> None:
    services.settings = dataclasses.replace(
        services.settings, default_media_endpoint="ws://127.0.0.1:9100/default"
    )

    reply = api.post("/api/agents", {"name": "sales", "callTemplate": {"systemPrompt": "Hi"}})

    assert reply.status == 201
    assert "mediaEndpoint" not in reply.body["callTemplate"]


def test_patch_cannot_remove_the_media_endpoint_when_no_default_is_configured(api: Api) -> None:
    agent = api.create_agent()

    reply = api.patch(f"/api/agents/{agent['agentId']}", {"callTemplate": {"mediaEndpoint": None}})

    assert reply.status == 400
    assert reply.body["field"] == "callTemplate.mediaEndpoint"
    assert api.get(f"/api/agents/{agent['agentId']}").body == agent


@pytest.mark.parametrize(
    ("endpoint", "field"),
    [
        ({"url": "http://agents.example.test"}, "callTemplate.mediaEndpoint.url"),
        ({"url": "wss://a.example.test", "framing": "mp3"}, "callTemplate.mediaEndpoint.framing"),
        ({"url": "wss://a.example.test", "codec": "opus"}, "callTemplate.mediaEndpoint.codec"),
    ],
)
def test_bad_media_endpoint_is_refused_naming_the_field(
    api: Api, endpoint: dict[str, str], field: str
) -> None:
    reply = api.post("/api/agents", {"name": "sales", "callTemplate": {"mediaEndpoint": endpoint}})

    assert reply.status == 400
    assert reply.body["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "has spaces"}, "name"),
        ({"name": ""}, "name"),
        ({}, "name"),
        ({"name": "ok", "callTemplate": {"sytemPrompt": "typo"}}, "callTemplate.sytemPrompt"),
        ({"name": "ok", "agentId": "mine"}, "agentId"),
        ({"name": "ok", "callTemplate": {"temperature": 3}}, "callTemplate.temperature"),
    ],
)
def test_bad_agent_fields_are_refused_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    template = {"mediaEndpoint": {"url": MEDIA_URL}} | body.get("callTemplate", {})
    body = body | {"callTemplate": template}

    reply = api.post("/api/agents", body)

    assert reply.status == 400
    assert reply.body["field"] == field
    assert api.get("/api/agents").body["total"] == 0


def test_patch_with_an_unknown_template_field_is_refused(api: Api) -> None:
    agent = api.create_agent()

    reply = api.patch(f"/api/agents/{agent['agentId']}", {"callTemplate": {"sytemPrompt": "x"}})

    assert reply.status == 400
    assert reply.body["field"] == "callTemplate.sytemPrompt"
    assert api.get(f"/api/agents/{agent['agentId']}").body == agent
