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

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from http import HTTPStatus
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from chalicelib.commands import SqsCommandSender
from chalicelib.config import load_settings
from chalicelib.contracts import MediaEndpoint
from chalicelib.egress import EgressPolicy
from chalicelib.fallback import HttpFallbackClient
from chalicelib.models import Agent, CallTemplate, FallbackHandler
from chalicelib.services import Services
from chalicelib.store.dynamodb import DynamoTable
from chalicelib.store.repository import Store
from relay.bridge.agent_ws import AgentBridge, AgentUnreachable, BridgeSettings
from relay.config import RelayConfigError, RelaySettings
from relay.transport.tls import ensure_self_signed, server_context
from tests.integration.harness import FALLBACK_SECRET, TABLE, Api, Aws, FallbackServer
from tests.integration.relay.bridge.harness import (
    CALL,
    FAST,
    IDENTITY,
    FakeMediaPort,
    agent_server,
    run,
)
from tests.integration.relay.bridge.harness import (
    Agent as ScriptedAgent,
)
from tests.support.fakes import PUBLIC_ADDRESS, START, FakeDns, FixedClock, make_services

CARRIER = "203.0.113.0/24"
MEDIA_URL = "wss://agent.example.com/media"
"""A public media endpoint (the fake resolver ``dns`` below gives its address)."""
UNROUTED = {"toUri": "sip:unknown-number@sip.example.test"}


# The app as deployed: no private targets allowed, and a DNS the tests control. The route tests'
# fixtures (tests/integration/conftest.py) are reused, except ``services``: here it has the
# deployment default, ``SIPLINE_ALLOWED_PRIVATE_TARGETS`` unset, and resolves names with ``dns``.


@pytest.fixture
def dns() -> FakeDns:
    return FakeDns(
        {
            "agent.example.com": [[PUBLIC_ADDRESS]],
            "pbx.corp.example": [["10.20.30.40"]],
            "mixed.example.com": [[PUBLIC_ADDRESS, "169.254.169.254"]],
            "rebind.example.com": [[PUBLIC_ADDRESS], ["127.0.0.1"]],
        }
    )


@pytest.fixture
def services(aws: Aws, clock: FixedClock, dns: FakeDns) -> Services:  # noqa: F811 (fixtures)
    """The route tests' services with the deployment's default egress policy and ``dns``."""
    built = make_services(
        commands=SqsCommandSender(aws.sqs, aws.queue_url), clock=clock, table_name=TABLE
    )
    built.store = Store(DynamoTable(aws.dynamodb, TABLE))
    built.resolve = dns
    built.fallback = HttpFallbackClient(timeout_s=5.0, egress=built.settings.egress, resolve=dns)
    return built


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


# --- context schemas -----------------------------------------------------------------------------

OUTGOING = {"to": "sip:+15557654321@carrier.example.test", "from": "+15551110000"}
# (schema, what the 400's detail names): each would fail every call routed to the agent, or make
# the control plane fetch a URL of the schema's choosing (jsonschema retrieves remote $refs).
REFUSED_SCHEMAS = [
    pytest.param(
        {"$ref": "http://127.0.0.1:1/latest/meta-data"},  # loopback: this test sends nothing
        "$ref 'http://127.0.0.1:1/latest/meta-data' is not local",
        id="remote-ref-inside-the-network",
    ),
    pytest.param(
        {"properties": {"a": {"$ref": "other.json#/x"}}},
        "$ref 'other.json#/x' is not local",
        id="relative-ref-to-another-document",
    ),
    pytest.param(
        {"properties": {"a": {"$ref": "#/$defs/nope"}}},
        "$ref '#/$defs/nope' does not resolve",
        id="pointer-to-nowhere",
    ),
    pytest.param({"$dynamicRef": "#nope"}, "$dynamicRef '#nope' does not resolve", id="dynamic"),
    pytest.param(
        {"type": "object", "$ref": "#/type"},
        "$ref '#/type' does not point to a schema",
        id="not-a-schema",
    ),
    pytest.param(
        {"$defs": {"a": {"$id": "http://127.0.0.1:1/", "type": "string"}}},
        "$id is only allowed at the top of the schema",
        id="nested-id-rebases-references",
    ),
    pytest.param({"$ref": "#"}, "$ref '#' loops", id="ref-to-itself"),
    pytest.param({"allOf": [{"$ref": "#"}]}, "$ref '#' loops", id="allof-back-to-the-root"),
    pytest.param(
        {
            "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"not": {"$ref": "#/$defs/a"}}},
            "properties": {"x": {"$ref": "#/$defs/a"}},
        },
        "loops",
        id="two-definitions-in-a-loop",
    ),  # fmt: skip
    pytest.param(
        {
            "$defs": {f"d{n}": {"allOf": [{"$ref": f"#/$defs/d{n + 1}"}] * 2} for n in range(12)}
            | {"d12": {"type": "string"}},
            "$ref": "#/$defs/d0",
        },
        "more than 1000 subschemas",
        id="references-that-multiply",
    ),  # fmt: skip
    pytest.param(
        {"$defs": {f"d{n}": {"$ref": f"#/$defs/d{n + 1}"} for n in range(17)} | {"d17": {}},
         "$ref": "#/$defs/d0"},
        "chains more than 16 references",
        id="a-long-chain-of-references",
    ),  # fmt: skip
    pytest.param(
        {"properties": {"a": {"pattern": "^(?=x)"}}},
        "pattern '^(?=x)' is not a valid RE2 pattern",
        id="lookahead-pattern",
    ),
    pytest.param(
        {"patternProperties": {"(a)\\1": {}}},
        "patternProperties '(a)\\\\1' is not a valid RE2 pattern",
        id="backreference-in-pattern-properties",
    ),
    pytest.param(
        {"patternProperties": {"^x": {}}, "unevaluatedProperties": False},
        "unevaluatedProperties cannot be combined with patternProperties",
        id="unevaluated-with-pattern-properties",
    ),
    pytest.param(
        json.loads('{"not": ' * 70 + "{}" + "}" * 70),
        "is nested more than 64 levels deep",
        id="nested-past-the-recursion-limit",
    ),
]


def _dial_inline(api: Api, **template: Any) -> Any:
    return api.post(
        "/api/calls",
        {"medium": {"sip": {"outgoing": OUTGOING}}, "mediaEndpoint": {"url": MEDIA_URL}} | template,
    )


@pytest.mark.parametrize(("schema", "reason"), REFUSED_SCHEMAS)
def test_a_context_schema_that_would_break_every_call_is_refused_when_saved(
    api: Api, schema: dict[str, Any], reason: str
) -> None:
    """A schema with ``{"$ref": "#/$defs/nope"}`` used to be stored (201), then every INVITE to
    the agent failed with 500; a remote ``$ref`` was fetched by the control plane on every call.
    Agent create, agent patch and an inline ``POST /api/calls`` refuse each with 400."""
    created = api.post(
        "/api/agents",
        {
            "name": "a",
            "callTemplate": {"contextSchema": schema, "mediaEndpoint": {"url": MEDIA_URL}},
        },
    )
    agent = api.create_agent(mediaEndpoint={"url": MEDIA_URL})
    patched = api.patch(
        f"/api/agents/{agent['agentId']}", {"callTemplate": {"contextSchema": schema}}
    )
    placed = _dial_inline(api, contextSchema=schema)

    _refused(created, "callTemplate.contextSchema", reason)
    _refused(patched, "callTemplate.contextSchema", reason)
    _refused(placed, "contextSchema", reason)
    assert api.get("/api/agents").body["total"] == 1
    assert "contextSchema" not in api.get(f"/api/agents/{agent['agentId']}").body["callTemplate"]
    assert api.get("/api/calls").body["total"] == 0


def test_local_references_anchors_a_top_level_id_and_recursion_are_still_accepted(
    api: Api,
) -> None:
    """What a real schema does with references keeps working, on INVITEs too: ``#/$defs/...``
    pointers, ``$anchor`` names, a ``$id`` at the top, and a recursive definition (it descends
    into the context, so it ends)."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.com/caller.schema.json",
        "type": "object",
        "$defs": {
            "name": {"$anchor": "name", "type": "string", "pattern": "^[A-Z]"},
            "tree": {"type": "object", "properties": {"child": {"$ref": "#/$defs/tree"}}},
        },
        "properties": {
            "customer_name": {"$ref": "#name"},
            "tree": {"$ref": "#/$defs/tree"},
            "sipline": {"type": "object"},
        },
        "additionalProperties": False,
    }
    agent_id = api.create_agent(contextSchema=schema, mediaEndpoint={"url": MEDIA_URL})["agentId"]
    _route_to(api, agent_id)

    decision = _decision(
        api.invite(
            headers=[
                ["X-Customer-Name", "Bob"],
                ["X-Tree", '{"child": {"child": {}}}'],
                ["X-Plan", "gold"],
            ]
        )
    )
    lowercase = _decision(api.invite(sipCallId="c2@x", headers=[["X-Customer-Name", "bob"]]))

    assert decision["action"] == "accept", decision
    context = decision["templateContext"]
    assert (context["customer_name"], context["tree"]) == ("Bob", {"child": {"child": {}}})
    assert "plan" not in context
    assert "customer_name" not in lowercase["templateContext"]  # the pattern still applies


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        pytest.param(
            {"$ref": "#/$defs/nope"}, "$ref '#/$defs/nope' does not resolve", id="nowhere"
        ),
        pytest.param({"$ref": "#"}, "$ref '#' loops", id="loop"),
        pytest.param(
            {"properties": {"a": {"pattern": "^(?=x)"}}}, "not a valid RE2 pattern", id="lookahead"
        ),
    ],
)
def test_a_stored_context_schema_that_cannot_be_used_rejects_the_invite_cleanly_not_with_500(
    api: Api, services: Services, schema: dict[str, Any], reason: str
) -> None:
    """An agent saved before the check: the caller gets 480 naming the field and the reason (the
    same as a stored prompt that does not parse), not a 500 (503 to the caller) on every call."""
    agent_id = _store_agent(services, contextSchema=schema)
    _route_to(api, agent_id)

    decision = _decision(api.invite(headers=[["X-A", "xyz"]]))

    assert decision["action"] == "reject"
    assert (decision["sipStatus"], decision["reason"]) == (480, "agent_unavailable")
    assert "callTemplate.contextSchema" in decision["message"]
    assert reason in decision["message"]
    assert api.get("/api/calls").body["total"] == 0


def test_a_stored_context_schema_with_a_remote_reference_is_never_fetched(
    api: Api, services: Services, fallback_server: FallbackServer
) -> None:
    """Attack: a ``$ref`` to an address inside the network, stored before the check. jsonschema
    fetched it (``urlopen``, redirects followed) on every INVITE to the agent: SSRF from the
    control plane. Now nothing is fetched and the call is refused with 480."""
    url = f"http://127.0.0.1:{fallback_server.port}/latest/meta-data"
    agent_id = _store_agent(services, contextSchema={"$ref": url})
    _route_to(api, agent_id)

    decision = _decision(api.invite())

    assert (decision["sipStatus"], decision["reason"]) == (480, "agent_unavailable")
    assert f"$ref '{url}' is not local" in decision["message"]
    assert fallback_server.hits == 0


def test_a_stored_context_schema_that_cannot_be_used_refuses_an_agent_call_with_409_not_500(
    api: Api, services: Services
) -> None:
    """``POST /api/agents/{id}/calls`` validates its ``templateContext`` with the stored schema."""
    agent_id = _store_agent(services, contextSchema={"$ref": "#/$defs/nope"})

    reply = api.dial(agent_id, templateContext={"a": 1})

    assert reply.status == 409, reply.body
    assert reply.body["code"] == "agent_unavailable"
    assert "callTemplate.contextSchema" in reply.body["detail"]
    assert api.get("/api/calls").body["total"] == 0


@pytest.mark.timeout(30)  # the catastrophic case never finishes: this turns a hang into a failure
@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}}, id="pattern"),
        pytest.param(
            {"patternProperties": {"^(a+)+$": {"type": "string"}}}, id="pattern-properties"
        ),
        pytest.param(
            {"patternProperties": {"^(a+)+$": {}}, "additionalProperties": False},
            id="additional-properties",
        ),
    ],
)
def test_a_context_schema_pattern_cannot_be_made_to_backtrack_by_a_callers_header(
    api: Api, schema: dict[str, Any]
) -> None:
    """Attack (ReDoS): the agent's schema has ``^(a+)+$``, a pattern Python's ``re`` takes
    exponential time on; the caller sends ``X-A: aaaa...a!`` (or a header named so). One INVITE
    held the control plane forever. Patterns are RE2 expressions, run by RE2 in linear time."""
    agent_id = api.create_agent(contextSchema=schema, mediaEndpoint={"url": MEDIA_URL})["agentId"]
    _route_to(api, agent_id)
    attack = "a" * 64 + "!"

    decision = _decision(api.invite(headers=[["X-A", attack], [f"X-{attack[:-1]}-b", "v"]]))

    assert decision["action"] == "accept", decision


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


def test_an_outgoing_call_cannot_be_redirected_inside_the_network_with_maddr(api: Api) -> None:
    """``maddr`` overrides where a SIP request is sent (RFC 3261 §19.1.1): it is a target too."""
    agent = api.create_agent(mediaEndpoint={"url": MEDIA_URL})

    reply = api.dial(agent["agentId"], to=f"sip:+15557654321@{PUBLIC_ADDRESS};maddr=127.0.0.1")

    _refused(reply, "medium.sip.outgoing.to", "127.0.0.1 is not a public address (loopback)")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/sip", {"fallbackHandler": {"url": "http://[::1/fb"}}, "fallbackHandler.url"),
        (
            "/api/agents",
            {"name": "a", "callTemplate": {"mediaEndpoint": {"url": "wss://[fd00::1/media"}}},
            "callTemplate.mediaEndpoint.url",
        ),
    ],
)
def test_a_url_whose_host_cannot_be_read_is_refused_not_stored(
    api: Api, path: str, body: dict[str, Any], field: str
) -> None:
    """A URL the address check cannot read must not be stored for a connection to read later."""
    reply = api.request("PATCH" if path == "/api/sip" else "POST", path, body)

    _refused(reply, field, "is not a valid URL (Invalid IPv6 URL)")


def test_a_name_that_resolves_inside_the_network_is_refused_when_saved(api: Api) -> None:
    """``pbx.corp.example`` is 10.20.30.40: a name is no way around the address policy."""
    reply = api.post(
        "/api/sip/registrations",
        {"username": "1001", "password": "s3cret-pw", "proxy": "pbx.corp.example"},
    )

    _refused(reply, "proxy", "pbx.corp.example resolves to 10.20.30.40", "(private)")


def test_a_name_with_one_internal_address_among_public_ones_is_refused(api: Api) -> None:
    """Every address of the name must pass, or a connection may pick the internal one."""
    reply = api.patch(
        "/api/sip", {"fallbackHandler": {"url": "https://mixed.example.com/fallback"}}
    )

    _refused(reply, "fallbackHandler.url", "169.254.169.254", "(cloud metadata)")


def test_a_name_that_does_not_resolve_yet_is_accepted_and_left_to_the_connect_time_check(
    api: Api, dns: FakeDns
) -> None:
    """A PBX's name may resolve only inside its VPC; every connection checks it again."""
    dns.zone["pbx.nowhere.example"] = [[]]

    reply = api.post(
        "/api/sip/registrations",
        {"username": "1001", "password": "s3cret-pw", "proxy": "pbx.nowhere.example:5060"},
    )

    assert reply.status == 201, reply.body


def test_public_targets_are_accepted(api: Api) -> None:
    """The policy refuses what is inside; an Internet address or name goes through."""
    agent = api.create_agent(mediaEndpoint={"url": "wss://agent.example.com:8443/media"})
    sip = api.patch("/api/sip", {"fallbackHandler": {"url": f"https://{PUBLIC_ADDRESS}/fb"}})
    registration = api.post(
        "/api/sip/registrations",
        {"username": "1", "password": "p", "proxy": "[2606:4700:4700::1111]:5061"},
    )
    call = api.dial(agent["agentId"], to=f"sip:+15557654321@{PUBLIC_ADDRESS};transport=tls")

    assert (sip.status, registration.status, call.status) == (200, 201, 201)


def test_the_deployment_can_allow_its_own_private_range_and_nothing_more(
    api: Api, services: Services, dns: FakeDns
) -> None:
    """A PBX on the VPC (10.20.0.0/16) is allowed; the rest of 10/8 and loopback are not."""
    _allow(services, dns, "10.20.0.0/16")
    body = {"username": "1001", "password": "s3cret-pw"}

    inside = api.post("/api/sip/registrations", body | {"proxy": "10.20.30.40:5060"})
    by_name = api.post("/api/sip/registrations", body | {"proxy": "pbx.corp.example"})
    beyond = api.post("/api/sip/registrations", body | {"proxy": "10.21.0.1"})
    loopback = api.post("/api/sip/registrations", body | {"proxy": "127.0.0.1"})

    assert (inside.status, by_name.status) == (201, 201)
    _refused(beyond, "proxy", "(private)")
    _refused(loopback, "proxy", "(loopback)")


def test_no_allowance_opens_the_metadata_service(
    api: Api, services: Services, dns: FakeDns
) -> None:
    """Even ``0.0.0.0/0`` leaves the credentials endpoints closed (v4, v6, mapped, NAT64)."""
    _allow(services, dns, "0.0.0.0/0,::/0")
    for host in ("169.254.169.254", "[fd00:ec2::254]", "[::ffff:a9fe:a9fe]", "169.254.170.2"):
        reply = api.patch("/api/sip", {"fallbackHandler": {"url": f"http://{host}/latest"}})
        _refused(reply, "fallbackHandler.url", "(cloud metadata)")


# --- user-supplied targets: connect time (the control plane's fallback client) -------------------


def _allow(services: Services, dns: FakeDns, cidrs: str) -> None:
    """Set ``SIPLINE_ALLOWED_PRIVATE_TARGETS`` to ``cidrs`` for the app and the fallback client."""
    egress = EgressPolicy.from_setting(cidrs)
    services.settings = replace(services.settings, egress=egress)
    services.fallback = HttpFallbackClient(timeout_s=5.0, egress=egress, resolve=dns)


def _store_fallback(services: Services, url: str) -> None:
    """Write a fallback handler straight into the store, as one saved before these checks."""
    stored = services.store.get_sip_config("default")
    handler = FallbackHandler(
        url=url, secret_ciphertexts=[services.cipher.encrypt(FALLBACK_SECRET)]
    )
    update = {"fallback_handler": handler, "allowed_cidr_ranges": [CARRIER]}
    services.store.save_sip_config(
        "default", stored.value.model_copy(update=update), stored.version
    )


def test_a_stored_fallback_handler_on_loopback_is_refused_when_called(
    api: Api, services: Services, fallback_server: FallbackServer
) -> None:
    """A URL saved before the save-time check is checked again before every request."""
    _store_fallback(services, fallback_server.url)

    decision = _decision(api.invite(**UNROUTED))

    assert (decision["sipStatus"], decision["reason"]) == (480, "fallback_failed")
    assert "refused" in decision["message"] and "(loopback)" in decision["message"]
    assert fallback_server.hits == 0


def test_a_fallback_name_that_resolves_to_loopback_after_it_was_saved_is_refused_when_called(
    api: Api, fallback_server: FallbackServer, dns: FakeDns
) -> None:
    """``rebind.example.com`` was public when saved and is 127.0.0.1 when the INVITE comes."""
    url = f"http://rebind.example.com:{fallback_server.port}/sip/fallback"
    api.patch_sip(
        allowedCidrRanges=[CARRIER], fallbackHandler={"url": url, "secrets": [FALLBACK_SECRET]}
    )

    decision = _decision(api.invite(**UNROUTED))

    assert (decision["sipStatus"], decision["reason"]) == (480, "fallback_failed")
    assert "rebind.example.com resolves to 127.0.0.1" in decision["message"]
    assert fallback_server.hits == 0
    assert dns.lookups["rebind.example.com"] == 2  # once when saved, once when called


def test_the_fallback_request_goes_to_the_address_that_was_checked(
    api: Api, services: Services, dns: FakeDns
) -> None:
    """DNS rebinding: the name answers 127.0.0.1 once, then 127.0.0.2. Only one lookup is made
    and the request goes to its answer, with the name still in ``Host``; a client that looked
    the name up again (or let a library do it) would reach the second server."""
    _allow(services, dns, "127.0.0.0/8")  # both would pass: what protects is the single lookup
    with _servers_on_one_port() as (checked, other):
        agent_id = api.create_agent(mediaEndpoint={"url": MEDIA_URL})["agentId"]
        checked.answer_with({"startAgentCall": {"agentId": agent_id}})
        dns.zone["fallback.rebind.test"] = [["127.0.0.1"], ["127.0.0.2"]]
        url = f"http://fallback.rebind.test:{checked.port}/sip/fallback"
        _store_fallback(services, url)

        decision = _decision(api.invite(**UNROUTED))

        assert decision["action"] == "accept", decision
        assert dns.lookups["fallback.rebind.test"] == 1
        assert checked.hosts == [f"fallback.rebind.test:{checked.port}"]
        assert other.hits == 0


def test_a_fallback_handler_redirect_is_not_followed(
    api: Api, services: Services, dns: FakeDns, fallback_server: FallbackServer
) -> None:
    """A handler answering 302 to an internal address must not make sipline request it
    (``urlopen`` followed it, turning the POST into a GET of the internal URL)."""
    _allow(services, dns, "127.0.0.0/8")  # make dev's loopback allowance: both are reachable
    inside = FallbackServer("unused").start()
    try:
        fallback_server.redirect_to(inside.url)
        api.patch_sip(allowedCidrRanges=[CARRIER], fallbackHandler={"url": fallback_server.url})

        decision = _decision(api.invite(**UNROUTED))

        assert len(fallback_server.calls) == 1
        assert inside.hits == 0
        assert (decision["sipStatus"], decision["reason"]) == (480, "fallback_failed")
        assert "HTTP 302 (redirects are not followed)" in decision["message"]
    finally:
        inside.stop()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "fallback.pem", tmp_path / "fallback.key"
    ensure_self_signed(cert, key, ["fallback.tls.test"])
    return cert, key


@pytest.mark.parametrize(
    ("name", "accepted"), [("fallback.tls.test", True), ("other.tls.test", False)]
)
def test_https_to_a_checked_address_still_checks_the_certificate_against_the_name(
    api: Api,
    services: Services,
    dns: FakeDns,
    tls_files: tuple[Path, Path],
    name: str,
    accepted: bool,
) -> None:
    """Connecting to the address does not weaken TLS: SNI and the certificate check use the
    URL's name (the certificate names ``fallback.tls.test`` only, not 127.0.0.1)."""
    cert, key = tls_files
    _allow(services, dns, "127.0.0.0/8")
    services.fallback = HttpFallbackClient(
        timeout_s=5.0,
        egress=services.settings.egress,
        resolve=dns,
        tls=ssl.create_default_context(cafile=str(cert)),
    )
    server = FallbackServer(FALLBACK_SECRET, tls=server_context(cert, key)).start()
    try:
        agent_id = api.create_agent(mediaEndpoint={"url": MEDIA_URL})["agentId"]
        server.answer_with({"startAgentCall": {"agentId": agent_id}})
        dns.zone[name] = [["127.0.0.1"]]
        _store_fallback(services, f"https://{name}:{server.port}/sip/fallback")

        decision = _decision(api.invite(**UNROUTED))
    finally:
        server.stop()

    if accepted:
        assert decision["action"] == "accept", decision
        assert server.hosts == [f"fallback.tls.test:{server.port}"]
    else:
        assert (decision["sipStatus"], decision["reason"]) == (480, "fallback_failed")
        assert "certificate verify failed" in decision["message"]
        assert server.hits == 0


class _servers_on_one_port:  # noqa: N801 (used as a context manager, like a function)
    """Two fallback servers on the same port: the checked one on 127.0.0.1 and another on
    127.0.0.2 (Linux routes all of 127/8 to loopback)."""

    def __enter__(self) -> tuple[FallbackServer, FallbackServer]:
        for _ in range(20):
            other = FallbackServer(FALLBACK_SECRET, "127.0.0.2").start()
            try:
                checked = FallbackServer(FALLBACK_SECRET, "127.0.0.1", other.port).start()
            except OSError:  # that port is taken on 127.0.0.1: try another
                other.stop()
                continue
            self.servers = (checked, other)
            return self.servers
        raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            server.stop()


# --- user-supplied targets: connect time (the relay's agent WebSocket) ---------------------------


def _bridge(url: str, settings: BridgeSettings, resolve: Any = None) -> AgentBridge:
    extra = {} if resolve is None else {"resolve": resolve}
    return AgentBridge(
        MediaEndpoint(url=url),
        FakeMediaPort(),
        identity=IDENTITY,
        call=CALL,
        settings=settings,
        **extra,
    )


STRICT = replace(FAST, egress=EgressPolicy())
"""The harness's bounds with the deployment default: no private target allowed."""


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_relay_refuses_an_agent_on_loopback_when_it_connects(host: str) -> None:
    """A media endpoint stored before the save-time check (or the deployment's default one)
    is checked again for every call: the relay never opens the socket."""

    async def scenario() -> None:
        agent = ScriptedAgent()
        async with agent_server(agent) as url:
            port = url.rsplit(":", 1)[1].split("/")[0]
            outcome = await _bridge(f"ws://{host}:{port}/agent", STRICT).run()
        assert isinstance(outcome, AgentUnreachable)
        assert outcome.attempts == 1  # refused at once, not retried
        assert "refused" in outcome.error and "(loopback)" in outcome.error
        assert not agent.connected.is_set()

    run(scenario)


def test_a_media_endpoint_url_the_relay_cannot_read_ends_as_unreachable_not_as_a_bug() -> None:
    """Such a URL, stored before the save-time check, is refused without a traceback."""

    async def scenario() -> None:
        outcome = await _bridge("ws://[::1/agent", STRICT).run()
        assert isinstance(outcome, AgentUnreachable)
        assert "Invalid IPv6 URL" in outcome.error

    run(scenario)


def test_the_relay_refuses_an_agent_name_that_resolves_to_the_metadata_service() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["169.254.169.254"]

    async def scenario() -> None:
        outcome = await _bridge("wss://agent.evil.example/media", STRICT, resolve).run()
        assert isinstance(outcome, AgentUnreachable)
        assert "agent.evil.example resolves to 169.254.169.254" in outcome.error
        assert "(cloud metadata)" in outcome.error

    run(scenario)


@asynccontextmanager
async def _agents_on_one_port() -> AsyncIterator[tuple[int, ScriptedAgent, ScriptedAgent]]:
    """Two agents on the same port: the checked one on 127.0.0.1, another on 127.0.0.2."""
    for _ in range(20):
        checked, other = ScriptedAgent(), ScriptedAgent()
        async with serve(other.handle, "127.0.0.2", 0) as other_server:
            port = other_server.sockets[0].getsockname()[1]
            try:
                checked_server = await serve(checked.handle, "127.0.0.1", port)
            except OSError:
                continue
            async with checked_server:
                yield port, checked, other
                return
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


def test_the_agent_socket_goes_to_the_address_that_was_checked() -> None:
    """DNS rebinding: the name answers 127.0.0.1 once, then 127.0.0.2. The relay looks it up
    once per attempt and connects to that answer, with the name in ``Host``."""
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if len(lookups) == 1 else ["127.0.0.2"]

    async def scenario() -> None:
        async with _agents_on_one_port() as (port, checked, other):
            under_test = _bridge(f"ws://agent.rebind.test:{port}/agent", FAST, rebinding)
            task = asyncio.create_task(under_test.run())
            assert await under_test.connected()
            under_test.stop()
            await task
        assert lookups == ["agent.rebind.test"]
        assert checked.connection is not None and checked.connection.request is not None
        assert checked.connection.request.headers["Host"] == f"agent.rebind.test:{port}"
        assert not other.connected.is_set()

    run(scenario)


def test_an_agent_redirect_is_not_followed() -> None:
    """An agent endpoint answering the upgrade with 302 to an internal address: the relay
    gives up (websockets would follow it to a host the policy never checked)."""

    async def scenario() -> None:
        inside = ScriptedAgent()
        async with agent_server(inside) as inside_url:

            def redirect(connection: ServerConnection, request: Request) -> Response:
                response = connection.respond(HTTPStatus.FOUND, "")
                response.headers["Location"] = inside_url
                return response

            async with serve(
                ScriptedAgent().handle, "127.0.0.1", 0, process_request=redirect
            ) as server:
                port = server.sockets[0].getsockname()[1]
                outcome = await _bridge(f"ws://127.0.0.1:{port}/agent", FAST).run()
        assert isinstance(outcome, AgentUnreachable)
        assert outcome.error == "HTTP 302 (not followed)"
        assert outcome.attempts == 1
        assert not inside.connected.is_set()

    run(scenario)


# --- the address policy itself -------------------------------------------------------------------

REGISTRY = [
    # One address per block of the IANA IPv4 and IPv6 Special-Purpose Address Registries
    # (RFC 6890 §2.2.2-2.2.3 and later entries) that is not globally reachable, multicast
    # (RFC 5771, RFC 4291 §2.7), and the block's name in the registry. Boundaries are the first
    # and last addresses of the prefix the RFC defines.
    ("0.0.0.0", "unspecified"),
    ("0.255.255.255", "unspecified"),
    ("10.0.0.0", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.0", "shared address space"),
    ("100.127.255.255", "shared address space"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.0.1", "link-local"),
    ("169.254.255.254", "link-local"),
    ("172.16.0.0", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.8", "IETF protocol assignment"),
    ("192.0.2.1", "documentation"),
    ("192.88.99.1", "reserved"),
    ("192.168.0.1", "private"),
    ("192.168.255.255", "private"),
    ("198.18.0.0", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.255", "documentation"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::7f00:1", "IPv4-compatible"),
    ("64:ff9b:1::1", "NAT64 local use"),
    ("100::1", "discard-only"),
    ("2001::1", "IETF protocol assignment"),  # Teredo
    ("2001:2::1", "IETF protocol assignment"),  # benchmarking
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("fc00::1", "private"),
    ("fdff:ffff::1", "private"),
    ("fe80::1", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::fb", "multicast"),
    ("4000::1", "reserved"),  # outside global unicast 2000::/3 (RFC 4291 §2.4)
    # The metadata and credentials services (AWS EC2, ECS, EKS).
    ("169.254.169.254", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    # IPv6 spellings of refused IPv4 addresses: mapped (RFC 4291 §2.5.5.2), NAT64 (RFC 6052),
    # 6to4 (RFC 3056).
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.1.1.1", "private"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "cloud metadata"),
    ("2002:a00:1::1", "private"),
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",  # just below 100.64.0.0/10
    "100.128.0.0",  # just above it
    "172.15.255.255",  # around 172.16.0.0/12
    "172.32.0.0",
    "192.167.255.255",  # around 192.168.0.0/16
    "192.169.0.0",
    "198.17.255.255",  # around 198.18.0.0/15
    "198.20.0.0",
    "223.255.255.255",  # the last unicast address before multicast
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize(("address", "kind"), REGISTRY)
def test_every_special_purpose_block_is_refused_by_default(address: str, kind: str) -> None:
    refusal = EgressPolicy().refusal(ip_address(address))

    assert refusal is not None and kind in refusal


@pytest.mark.parametrize("address", PUBLIC)
def test_globally_reachable_addresses_are_allowed(address: str) -> None:
    assert EgressPolicy().refusal(ip_address(address)) is None


def test_a_malformed_allowance_stops_both_components_at_start_naming_the_variable() -> None:
    env = {"SIPLINE_ALLOWED_PRIVATE_TARGETS": "10.0.0.0/16, 10.1.0.1/16"}

    with pytest.raises(ValueError, match=r"SIPLINE_ALLOWED_PRIVATE_TARGETS: '10.1.0.1/16'"):
        load_settings(env)
    with pytest.raises(RelayConfigError, match=r"SIPLINE_ALLOWED_PRIVATE_TARGETS: '10.1.0.1/16'"):
        RelaySettings.from_env(env)


def test_both_components_read_the_same_allowance() -> None:
    env = {"SIPLINE_ALLOWED_PRIVATE_TARGETS": "10.20.0.0/16, fd00:1::/64"}
    expected = (ip_network("10.20.0.0/16"), ip_network("fd00:1::/64"))

    assert load_settings(env).egress.allowed == expected
    assert RelaySettings.from_env(env).egress.allowed == expected
    assert load_settings({}).egress == RelaySettings.from_env({}).egress == EgressPolicy()
