"""Issue 8 §3: templates that break calls or read files, and URLs that reach inside the network.

Each test is an attack and its refusal. Templates: a system prompt that does not parse is refused
when saved (400 naming the field) and, stored before that check existed, rejects the INVITE
cleanly (480) instead of failing it (500); a Mustache partial never reads a file. Targets: every
address a user gives sipline to connect to (``fallbackHandler.url``,
``callTemplate.mediaEndpoint.url``, a registration's ``proxy``/``outboundProxy``, an outgoing
call's ``to``) is refused at save time when it is loopback, private, link-local, metadata,
multicast or otherwise not globally reachable, and checked again at connect time, where the
connection goes to the address that was checked and redirects are not followed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from chalicelib.models import Agent, CallTemplate
from chalicelib.services import Services
from tests.integration.harness import Api, FallbackServer
from tests.support.fakes import START

CARRIER = "203.0.113.0/24"
MEDIA_URL = "wss://agent.example.com/media"
"""A public media endpoint (the fake resolver of ``conftest.py`` gives its address)."""
UNROUTED = {"toUri": "sip:unknown-number@sip.example.test"}


def _refused(reply: Any, field: str, *fragments: str) -> None:
    assert reply.status == 400, reply.body
    assert reply.body["code"] == "invalid_input"
    assert reply.body["field"] == field
    for fragment in fragments:
        assert fragment in reply.body["detail"], reply.body["detail"]


def _decision(reply: Any) -> dict[str, Any]:
    assert reply.status == 200, reply.body
    return dict(reply.body)


def _store_agent(services: Services, **template: Any) -> str:
    """Write an agent straight into the store, as one saved before these checks existed."""
    agent = Agent(
        agent_id="agent-stored-before-the-fix",
        name="legacy",
        created=START,
        call_template=CallTemplate.model_validate({"mediaEndpoint": {"url": MEDIA_URL}} | template),
    )
    services.store.create_agent("default", agent)
    return agent.agent_id


def _route_to(api: Api, agent_id: str) -> None:
    api.patch_sip(
        allowedCidrRanges=[CARRIER],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )


# --- templates -----------------------------------------------------------------------------------

BROKEN_TEMPLATES = [
    pytest.param("Hello {{/a}}", "Section end tag mismatch", id="end-without-start"),
    pytest.param("{{#vip}}VIP caller", "Did not find a matching tag for {{#vip}}", id="unclosed"),
    pytest.param("{{#a}}x{{/b}}", "Section end tag mismatch", id="crossed-sections"),
    pytest.param("{{=a=}}", "set-delimiter tag needs two delimiters", id="one-delimiter"),
    pytest.param("Read {{> secret}}", "partials ({{> name}}) are not supported", id="partial"),
    pytest.param(
        "{{=<% %>=}}Read <%> secret%>",
        "partials ({{> name}}) are not supported",
        id="partial-behind-new-delimiters",
    ),
    pytest.param(
        "{{#a}}{{> secret}}{{/a}}", "partials ({{> name}}) are not supported", id="nested-partial"
    ),
]


@pytest.mark.parametrize(("prompt", "reason"), BROKEN_TEMPLATES)
def test_a_system_prompt_that_would_break_every_call_is_refused_when_an_agent_is_created(
    api: Api, prompt: str, reason: str
) -> None:
    """``{{/a}}`` used to be stored (201), then every INVITE to the agent failed with 500."""
    reply = api.post(
        "/api/agents",
        {
            "name": "broken",
            "callTemplate": {"systemPrompt": prompt, "mediaEndpoint": {"url": MEDIA_URL}},
        },
    )

    _refused(reply, "callTemplate.systemPrompt", reason)
    assert api.get("/api/agents").body["total"] == 0


@pytest.mark.parametrize(("prompt", "reason"), BROKEN_TEMPLATES)
def test_a_system_prompt_that_would_break_every_call_is_refused_when_an_agent_is_patched(
    api: Api, prompt: str, reason: str
) -> None:
    """A PATCH cannot slip in what a create refuses; the stored prompt stays as it was."""
    agent = api.create_agent(
        systemPrompt="Hello {{customer_name}}", mediaEndpoint={"url": MEDIA_URL}
    )

    reply = api.patch(f"/api/agents/{agent['agentId']}", {"callTemplate": {"systemPrompt": prompt}})

    _refused(reply, "callTemplate.systemPrompt", reason)
    stored = api.get(f"/api/agents/{agent['agentId']}").body
    assert stored["callTemplate"]["systemPrompt"] == "Hello {{customer_name}}"


@pytest.mark.parametrize(("prompt", "reason"), BROKEN_TEMPLATES)
def test_an_inline_system_prompt_that_does_not_parse_is_refused_before_the_call_is_placed(
    api: Api, prompt: str, reason: str
) -> None:
    """``POST /api/calls`` used to answer 500 for ``{{/a}}`` (and place ``{{> x}}`` calls)."""
    outgoing = {"to": "sip:+15557654321@carrier.example.test", "from": "+15551110000"}
    reply = api.post(
        "/api/calls",
        {
            "medium": {"sip": {"outgoing": outgoing}},
            "systemPrompt": prompt,
            "mediaEndpoint": {"url": MEDIA_URL},
        },
    )

    _refused(reply, "systemPrompt", reason)
    assert api.get("/api/calls").body["total"] == 0


def test_a_stored_prompt_that_does_not_parse_rejects_the_invite_cleanly_not_with_500(
    api: Api, services: Services
) -> None:
    """An agent saved before the check: the caller gets 480 with the reason, not a 500 (503)."""
    agent_id = _store_agent(services, systemPrompt="Hello {{/a}}")
    _route_to(api, agent_id)

    decision = _decision(api.invite())

    assert decision["action"] == "reject"
    assert (decision["sipStatus"], decision["reason"]) == (480, "agent_unavailable")
    assert "callTemplate.systemPrompt" in decision["message"]
    assert "Section end tag mismatch" in decision["message"]
    assert api.get("/api/calls").body["total"] == 0


def test_a_stored_prompt_that_does_not_parse_refuses_an_agent_call_with_409_not_500(
    api: Api, services: Services
) -> None:
    """``POST /api/agents/{id}/calls`` on such an agent says what to fix instead of failing."""
    agent_id = _store_agent(services, systemPrompt="Hello {{/a}}")

    reply = api.dial(agent_id)

    assert reply.status == 409, reply.body
    assert reply.body["code"] == "agent_unavailable"
    assert "callTemplate.systemPrompt" in reply.body["detail"]
    assert api.get("/api/calls").body["total"] == 0


def test_a_stored_partial_never_reads_a_file_from_the_control_plane(
    api: Api, services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``{{> secret}}`` loaded ``secret.mustache`` from the working directory into the prompt."""
    (tmp_path / "secret.mustache").write_text("AWS_SECRET_ACCESS_KEY=leaked")
    monkeypatch.chdir(tmp_path)
    agent_id = _store_agent(services, systemPrompt="Hi {{customer_name}}.{{> secret}}")
    _route_to(api, agent_id)

    decision = _decision(api.invite(headers=[["X-Customer-Name", "Bob"]]))

    assert decision["action"] == "accept", decision
    assert decision["systemPrompt"] == "Hi Bob."
    assert os.getcwd() == str(tmp_path)  # the file was there to be read


# --- user-supplied targets: save time ------------------------------------------------------------

SAVE_TIME_HOSTS = [
    pytest.param("127.0.0.1", "loopback", id="loopback"),
    pytest.param("[::1]", "loopback", id="loopback-v6"),
    pytest.param("localhost", "loopback", id="localhost-name"),
    pytest.param("2130706433", "loopback", id="loopback-as-one-number"),
    pytest.param("10.0.0.5", "private", id="rfc1918"),
    pytest.param("[fd12:3456::1]", "private", id="ula"),
    pytest.param("169.254.169.254", "cloud metadata", id="metadata"),
    pytest.param("[fd00:ec2::254]", "cloud metadata", id="metadata-v6"),
    pytest.param("[::ffff:169.254.169.254]", "cloud metadata", id="metadata-v4-mapped"),
    pytest.param("169.254.10.1", "link-local", id="link-local"),
    pytest.param("224.0.0.1", "multicast", id="multicast"),
    pytest.param("0.0.0.0", "unspecified", id="unspecified"),
    pytest.param("100.64.0.1", "shared address space", id="cgnat"),
]


@pytest.mark.parametrize(("host", "kind"), SAVE_TIME_HOSTS)
def test_a_fallback_handler_inside_the_network_is_refused_when_saved(
    api: Api, host: str, kind: str
) -> None:
    """The control plane POSTs to this URL: pointing it inside the network is SSRF."""
    reply = api.patch("/api/sip", {"fallbackHandler": {"url": f"http://{host}:8080/fallback"}})

    _refused(reply, "fallbackHandler.url", kind)
    assert api.get("/api/sip").body["fallbackHandler"] is None


@pytest.mark.parametrize(("host", "kind"), SAVE_TIME_HOSTS)
def test_an_agent_media_endpoint_inside_the_network_is_refused_when_saved(
    api: Api, host: str, kind: str
) -> None:
    """The relay opens a WebSocket to this URL for every call to the agent."""
    url = f"wss://{host}/media"
    created = api.post(
        "/api/agents", {"name": "a", "callTemplate": {"mediaEndpoint": {"url": url}}}
    )
    agent = api.create_agent(mediaEndpoint={"url": MEDIA_URL})
    patched = api.patch(
        f"/api/agents/{agent['agentId']}", {"callTemplate": {"mediaEndpoint": {"url": url}}}
    )

    _refused(created, "callTemplate.mediaEndpoint.url", kind)
    _refused(patched, "callTemplate.mediaEndpoint.url", kind)


@pytest.mark.parametrize(("host", "kind"), SAVE_TIME_HOSTS)
def test_an_inline_media_endpoint_inside_the_network_is_refused_when_the_call_is_placed(
    api: Api, host: str, kind: str
) -> None:
    outgoing = {"to": "sip:+15557654321@carrier.example.test", "from": "+15551110000"}
    reply = api.post(
        "/api/calls",
        {"medium": {"sip": {"outgoing": outgoing}}, "mediaEndpoint": {"url": f"ws://{host}/m"}},
    )

    _refused(reply, "mediaEndpoint.url", kind)


@pytest.mark.parametrize(("host", "kind"), SAVE_TIME_HOSTS)
@pytest.mark.parametrize("field", ["proxy", "outboundProxy"])
def test_a_registration_proxy_inside_the_network_is_refused_when_saved(
    api: Api, host: str, kind: str, field: str
) -> None:
    """The relay will send REGISTER (with the user's credentials) to this host."""
    body = {"username": "1001", "password": "s3cret-pw", "proxy": "pbx.example.test"}
    created = api.post("/api/sip/registrations", body | {field: f"{host}:5060"})
    registration = api.create_registration()
    patched = api.patch(f"/api/sip/registrations/{registration['registrationId']}", {field: host})

    _refused(created, field, kind)
    _refused(patched, field, kind)


@pytest.mark.parametrize(("host", "kind"), SAVE_TIME_HOSTS)
def test_an_outgoing_call_to_a_host_inside_the_network_is_refused(
    api: Api, host: str, kind: str
) -> None:
    """The relay will send the INVITE (and the trunk password's digest) to this host."""
    agent = api.create_agent(mediaEndpoint={"url": MEDIA_URL})
    to = f"sip:+15557654321@{host}:5060;transport=tcp"
    by_agent = api.dial(agent["agentId"], to=to)
    inline = api.post(
        "/api/calls",
        {
            "medium": {"sip": {"outgoing": {"to": to, "from": "+15551110000"}}},
            "mediaEndpoint": {"url": MEDIA_URL},
        },
    )

    _refused(by_agent, "medium.sip.outgoing.to", kind)
    _refused(inline, "medium.sip.outgoing.to", kind)
    assert api.get("/api/calls").body["total"] == 0


# --- user-supplied targets: connect time ---------------------------------------------------------


def test_a_fallback_handler_redirect_is_not_followed(
    api: Api, services: Services, fallback_server: FallbackServer
) -> None:
    """A handler answering 302 to an internal address must not make sipline request it."""
    inside = FallbackServer("unused").start()
    try:
        fallback_server.redirect_to(inside.url)
        agent_id = api.create_agent(mediaEndpoint={"url": MEDIA_URL})["agentId"]
        api.patch_sip(allowedCidrRanges=[CARRIER], fallbackHandler={"url": fallback_server.url})

        decision = _decision(api.invite(**UNROUTED))

        assert inside.hits == 0
        assert len(fallback_server.calls) == 1
        assert (decision["sipStatus"], decision["reason"]) == (480, "fallback_failed")
        assert "302" in decision["message"]
        assert agent_id
    finally:
        inside.stop()
