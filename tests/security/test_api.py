"""Attacks on the control plane's HTTP edge, each test named for the attack it stops.

The route tests run ``app.app`` through ``chalice.test.Client`` on moto, with the fixtures of
``tests/integration/conftest.py`` (imported by ``tests/security/conftest.py``). Limits and error texts are the ones ``docs/api.md``, ``docs/webhooks.md`` and
``docs/deployment.md`` document.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from chalicelib import signing, twilio_compat
from chalicelib.api_keys import ApiKeyError
from chalicelib.config import load_settings
from tests.integration.harness import Api, load_vector
from tests.support.fakes import API_KEY, START, WEBHOOK_SECRET, FixedClock, as_json, invite_body

PASSWORD = "hunter2-do-not-echo"
MIB = 1024 * 1024
THREE_MB = 3 * 1000 * 1000


def _raw(api: Api, method: str, path: str, body: bytes, **headers: str) -> Any:
    """Send raw bytes with the API key; return chalice's response (status, headers, body)."""
    sent = {"X-API-Key": api.key, "Content-Type": "application/json"} | headers
    return api.client.http.request(method, path, headers=sent, body=body)


# --- bodies are never echoed --------------------------------------------------------------------


def test_malformed_json_carrying_a_password_is_refused_without_echoing_it(api: Api) -> None:
    """A JSON syntax error answers 400 with the line and column, never the body's text."""
    body = b'{"username": "1001", "password": "' + PASSWORD.encode() + b'", "proxy": '

    response = _raw(api, "POST", "/api/sip/registrations", body)

    assert response.status_code == 400
    assert PASSWORD.encode() not in response.body
    error = json.loads(response.body)
    assert error["field"] == "body"
    # The body is one line; the parser reports the end of input at its last character.
    eof = len(body)
    assert (
        error["detail"] == f"body: invalid JSON: EOF while parsing a value at line 1 column {eof}"
    )


def test_misspelled_password_field_is_named_but_its_value_is_not_echoed(api: Api) -> None:
    """An unknown field may be a mistyped secret: the 400 names it and leaves its value out."""
    body = {"username": "1001", "password": "x", "proxy": "pbx.example.test", "passwd": PASSWORD}

    reply = api.post("/api/sip/registrations", body)

    assert reply.status == 400
    assert reply.body == {
        "code": "invalid_input",
        "detail": "passwd: unknown field",
        "field": "passwd",
    }


def test_non_string_password_is_refused_without_echoing_it(api: Api) -> None:
    """A password of the wrong type is named as the field at fault, its value left out."""
    reply = api.post(
        "/api/sip/registrations", {"username": "1001", "password": 48151623, "proxy": "pbx"}
    )

    assert reply.status == 400
    assert reply.body["field"] == "password"
    assert "48151623" not in json.dumps(reply.body)


def test_long_value_is_not_echoed_whole(api: Api) -> None:
    """A huge non-secret value is refused with a short error, not quoted back in full."""
    reply = api.post("/api/agents", {"name": "n" * 200_000})

    assert reply.status == 400
    assert reply.body["field"] == "name"
    assert len(json.dumps(reply.body)) < 400


def test_a_non_secret_value_is_still_named_in_the_error(api: Api) -> None:
    """The README's bad CIDR keeps its useful error: the field and the value it refused."""
    reply = api.patch("/api/sip", {"allowedCidrRanges": ["10.0.0.1/8"]})

    assert reply.status == 400
    assert reply.body["field"] == "allowedCidrRanges[0]"
    assert "'10.0.0.1/8'" in reply.body["detail"]


# --- bodies are bounded ---------------------------------------------------------------------------


def test_three_megabyte_api_body_is_refused_with_413_and_a_small_error(api: Api) -> None:
    """A 3 MB body gets a 413 that names the 1 MiB limit, in a few hundred bytes."""
    body = as_json({"name": "x" * THREE_MB})

    response = _raw(api, "POST", "/api/agents", body)

    assert response.status_code == 413
    assert len(response.body) < 300
    assert json.loads(response.body) == {
        "code": "payload_too_large",
        "detail": f"the request body is {len(body)} bytes; the limit is 1048576 bytes (1 MiB)",
    }
    assert api.get("/api/agents").body["total"] == 0


def test_body_at_the_api_limit_is_read(api: Api) -> None:
    """A body of exactly 1 MiB passes the size check (and is judged on its fields)."""
    padding = MIB - len(as_json({"name": ""}))
    body = as_json({"name": "x" * padding})
    assert len(body) == MIB

    response = _raw(api, "POST", "/api/agents", body)

    assert response.status_code == 400
    assert json.loads(response.body)["field"] == "name"


def test_three_megabyte_webhook_body_is_refused_with_413(api: Api) -> None:
    """Signed or not, an event batch over the webhooks' 2 MiB limit is refused before parsing."""
    body = as_json({"events": [], "pad": "x" * THREE_MB})
    headers = signing.sign(
        WEBHOOK_SECRET, int(START.timestamp()), body, method="POST", path="/webhooks/sip/events"
    )

    response = api.client.http.post(
        "/webhooks/sip/events", headers={"Content-Type": "application/json", **headers}, body=body
    )

    assert response.status_code == 413
    assert json.loads(response.body)["detail"].endswith("the limit is 2097152 bytes (2 MiB)")


def test_three_megabyte_twilio_hang_up_body_is_refused_with_413(api: Api) -> None:
    """The Twilio-compatible hang-up takes a small form: a 3 MB one gets 413, not parsed."""
    sid = "CA" + "0" * 32
    account_sid = twilio_compat.account_sid("default")
    basic = base64.b64encode(f"{account_sid}:token".encode()).decode()

    response = api.client.http.post(
        f"/2010-04-01/Accounts/{account_sid}/Calls/{sid}.json",
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=b"Status=" + b"x" * THREE_MB,
    )

    assert response.status_code == 413
    assert len(response.body) < 300


def test_huge_twilio_status_is_not_echoed_whole(api: Api) -> None:
    """A bad ``Status`` is named in the 400, but only a short prefix of it is quoted."""
    agent = api.create_agent("bot")
    call_id = api.dial(agent["agentId"]).body["callId"]
    sid = twilio_compat.call_sid(call_id)
    account_sid = twilio_compat.account_sid("default")
    token = twilio_compat.auth_token(WEBHOOK_SECRET, sid)
    basic = base64.b64encode(f"{account_sid}:{token}".encode()).decode()

    response = api.client.http.post(
        f"/2010-04-01/Accounts/{account_sid}/Calls/{sid}.json",
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=b"Status=" + b"y" * 500_000,
    )

    assert response.status_code == 400
    assert len(response.body) < 300



# --- records are bounded: one DynamoDB item holds at most 400 KB ---------------------------------

ITEM_LIMIT_DETAIL = "409600 bytes (400 KB)"
"""DynamoDB's item size limit, attribute names and values together ("Service quotas": 400 KB)."""


def _too_large(reply: Any, field: str) -> None:
    assert reply.status == 413, reply.body
    assert reply.body["code"] == "record_too_large"
    assert reply.body["field"] == field
    assert ITEM_LIMIT_DETAIL in reply.body["detail"], reply.body["detail"]
    assert len(json.dumps(reply.body)) < 600  # the error is small, whatever was sent


def test_a_sip_configuration_over_400_kb_is_refused_with_413_naming_allowed_agents(
    api: Api,
) -> None:
    """2,000 rules of 200-character patterns fit the 1 MiB body limit but not the one DynamoDB
    item the configuration is: the write answered 500. Half of them still fit."""
    agent = api.create_agent()["agentId"]
    rules = [{"agentId": agent, "toUserPattern": f"^{n:04d}{'x' * 194}$"} for n in range(2000)]

    refused = api.patch("/api/sip", {"allowedAgents": rules})
    half = api.patch("/api/sip", {"allowedAgents": rules[:1000]})

    _too_large(refused, "allowedAgents")
    assert half.status == 200, half.body
    assert len(api.get("/api/sip").body["allowedAgents"]) == 1000


def test_an_agent_over_400_kb_is_refused_with_413_naming_its_largest_field(api: Api) -> None:
    """A 100,000-character prompt in a 3-byte script (300 KB) and a large contextSchema are each
    allowed, but together are over one item: create and patch answered 500."""
    prompt = "€" * 100_000
    schema = {"enum": ["y" * 1000] * 120}
    template = {"mediaEndpoint": {"url": "ws://127.0.0.1:9000/agent"}, "systemPrompt": prompt}

    created = api.post(
        "/api/agents", {"name": "big", "callTemplate": template | {"contextSchema": schema}}
    )
    agent = api.post("/api/agents", {"name": "big", "callTemplate": template}).body["agentId"]
    patched = api.patch(f"/api/agents/{agent}", {"callTemplate": {"contextSchema": schema}})

    _too_large(created, "callTemplate.systemPrompt")
    _too_large(patched, "callTemplate.systemPrompt")
    assert "contextSchema" not in api.get(f"/api/agents/{agent}").body["callTemplate"]


def test_an_outgoing_call_over_400_kb_is_refused_with_413_and_not_placed(api: Api) -> None:
    """``templateContext`` is stored in the call record: 500 KB of it answered 500."""
    outgoing = {"to": "sip:+15557654321@carrier.example.test", "from": "+15551110000"}
    body = {
        "medium": {"sip": {"outgoing": outgoing}},
        "mediaEndpoint": {"url": "ws://127.0.0.1:9000/agent"},
        "templateContext": {"notes": "z" * 500_000},
    }

    reply = api.post("/api/calls", body)

    _too_large(reply, "templateContext.notes")
    assert api.get("/api/calls").body["total"] == 0


def test_an_invite_whose_rendered_prompt_is_over_400_kb_is_rejected_cleanly(api: Api) -> None:
    """Attack: a caller's 8 KB header inserted 60 times by the agent's prompt makes a 480 KB call
    record; the INVITE webhook answered 500. It is rejected with 480, naming the field."""
    agent = api.create_agent(systemPrompt="{{big}}" * 60)["agentId"]
    api.patch_sip(
        allowedCidrRanges=["203.0.113.0/24"],
        allowedAgents=[{"agentId": agent, "toUserPattern": "^sales$"}],
    )

    decision = api.invite(headers=[["X-Big", "b" * 8000]])

    assert decision.status == 200, decision.body
    assert decision.body["action"] == "reject"
    assert (decision.body["sipStatus"], decision.body["reason"]) == (480, "record_too_large")
    assert decision.body["message"].startswith("systemPrompt: ")
    assert api.get("/api/calls").body["total"] == 0

# --- API keys -----------------------------------------------------------------------------------


def test_short_api_key_is_refused_at_start_without_printing_it() -> None:
    """A guessable key never starts the control plane, and the refusal does not show the key."""
    with pytest.raises(ApiKeyError) as refused:
        load_settings({"SIPLINE_API_KEYS": "ops:default:sk_test_1"})

    message = str(refused.value)
    assert "sk_test_1" not in message
    assert "'ops'" in message and "at least 32 characters" in message


def test_long_but_repetitive_api_key_is_refused_at_start() -> None:
    """Length alone is not enough: 40 characters drawn from two letters are refused."""
    with pytest.raises(ApiKeyError, match="128 bits"):
        load_settings({"SIPLINE_API_KEYS": "ops:default:" + "ab" * 20})


def test_api_key_in_the_old_format_without_an_id_is_refused_at_start() -> None:
    """``account:key`` (no id) is refused with the format to use, and without the key."""
    key = "sk_live_Zq8Lr2Vt5Nw9Xc3Bm7Kp1Hs6Dg4Fj0Ay"
    with pytest.raises(ApiKeyError) as refused:
        load_settings({"SIPLINE_API_KEYS": f"default:{key}"})

    assert key not in str(refused.value)
    assert "<keyId>:<accountId>:" in str(refused.value)


def test_settings_hold_only_a_hash_of_each_api_key() -> None:
    """Whatever the settings keep (and show in a traceback) is the SHA-256, never the key."""
    settings = load_settings({"SIPLINE_API_KEYS": f"ops:default:{API_KEY}"})

    assert API_KEY not in repr(settings)
    assert API_KEY not in repr(settings.api_keys)
    (key,) = settings.api_keys
    assert (key.key_id, key.account_id) == ("ops", "default")
    # The SHA-256 of API_KEY, computed with: printf %s "$API_KEY" | sha256sum
    assert key.sha256 == "9843586a7023f52c6f52df2c57034e65611882437c2a909e51ca4bddffb81575"


def test_requests_are_logged_with_the_key_id_never_the_key(
    api: Api, log_output: pytest.CaptureFixture[str]
) -> None:
    """A stolen log does not carry a usable key: lines name the key by its id."""
    agent = api.create_agent("sales")
    assert api.dial(agent["agentId"]).status == 201  # logs "outgoing call created"

    lines = log_output.readouterr().out
    assert API_KEY not in lines
    assert '"key_id":"test"' in lines.replace(" ", "")


def test_a_key_that_only_shares_a_prefix_with_a_real_key_is_refused(api: Api) -> None:
    """Near misses (a prefix, an extra character, other case) are unknown keys: 401."""
    for wrong in (API_KEY[:-1], API_KEY + "x", API_KEY.upper(), API_KEY[:8]):
        assert api.as_key(wrong).get("/api/sip").status == 401


# --- signatures cover the method and the path --------------------------------------------------


def test_invite_signature_replayed_to_the_events_path_is_refused(api: Api) -> None:
    """A captured signed INVITE webhook cannot be posted to another webhook path."""
    body = as_json(invite_body())
    headers = signing.sign(
        WEBHOOK_SECRET, int(START.timestamp()), body, method="POST", path="/webhooks/sip/invite"
    )

    response = api.client.http.post(
        "/webhooks/sip/events", headers={"Content-Type": "application/json", **headers}, body=body
    )

    assert response.status_code == 401
    assert json.loads(response.body)["detail"] == "signature does not match"


def test_signature_made_for_a_get_is_refused_on_a_post() -> None:
    """The method is signed: a GET's signature (empty body) does not pass for a POST."""
    now = int(START.timestamp())
    headers = signing.sign(WEBHOOK_SECRET, now, b"", method="GET", path="/webhooks/sip/events")

    with pytest.raises(signing.SignatureError, match="signature does not match"):
        signing.verify(
            [WEBHOOK_SECRET],
            headers,
            b"",
            method="POST",
            path="/webhooks/sip/events",
            now=now,
            window_s=60,
        )


def test_body_only_v1_signature_is_refused_by_the_webhooks(api: Api) -> None:
    """The old scheme (timestamp and body only, replayable across paths) is no longer taken."""
    body = as_json(invite_body())
    headers = signing.sign_body(WEBHOOK_SECRET, int(START.timestamp()), body)

    response = api.client.http.post(
        "/webhooks/sip/invite", headers={"Content-Type": "application/json", **headers}, body=body
    )

    assert response.status_code == 401


# --- event timestamps are bounded -------------------------------------------------------------------


@pytest.fixture
def routed_call(api: Api) -> str:
    agent_id = api.create_agent("sales")["agentId"]
    api.patch_sip(
        allowedCidrRanges=["203.0.113.0/24"],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )
    decision = api.invite().body
    assert decision["action"] == "accept", decision
    return str(decision["callId"])


def _event(call_id: str, n: int, kind: str, at: str, **fields: Any) -> dict[str, Any]:
    return {
        "eventId": f"probe-{n}",
        "type": kind,
        "occurredAt": at,
        "callId": call_id,
        "legId": "leg-1",
        "legRole": "caller",
    } | fields


def test_event_far_in_the_future_is_refused_naming_it(api: Api, routed_call: str) -> None:
    """An event dated more than 5 minutes past the control plane's clock is a 400, and the
    whole batch is refused (nothing stored)."""
    batch = [
        _event(routed_call, 0, "invite_received", "2026-11-25T12:00:00Z"),
        _event(routed_call, 1, "answered", "2026-11-25T12:00:01Z"),
        _event(routed_call, 2, "leg_ended", "9999-12-31T23:59:59Z", reason="remote_hangup"),
    ]

    reply = api.events(batch)

    assert reply.status == 400
    assert reply.body["field"] == "events[2].occurredAt"
    assert api.get(f"/api/calls/{routed_call}").body["ended"] is None


def test_event_just_inside_the_skew_is_taken(api: Api, routed_call: str, clock: FixedClock) -> None:
    """Up to 5 minutes ahead of the control plane's clock is an edge's clock skew, not an attack."""
    at = (clock() + timedelta(minutes=5)).isoformat()

    reply = api.events([_event(routed_call, 0, "invite_received", at)])

    assert reply.status == 200
    assert reply.body == {"applied": 1, "duplicates": 0, "unknown": 0}


def test_probe_dated_year_one_is_not_billed_for_two_thousand_years(
    api: Api, routed_call: str
) -> None:
    """The probe that billed 315 billion SIP seconds: an answer dated 0001-01-01. Event times are
    clamped to no earlier than the call's creation minus 5 minutes (docs/billing.md), so the leg
    bills from 11:55:00 (created 12:00:00) to its end at 12:01:00: 360 s."""
    batch = [
        _event(routed_call, 0, "invite_received", "0001-01-01T00:00:00Z"),
        _event(routed_call, 1, "answered", "0001-01-01T00:00:00Z"),
        _event(routed_call, 2, "leg_ended", "2026-11-25T12:01:00Z", reason="remote_hangup"),
    ]

    reply = api.events(batch)

    assert reply.status == 200
    call = api.get(f"/api/calls/{routed_call}").body
    assert call["sipDetails"]["billedDuration"] == "360s"
    usage = api.get("/api/accounts/me/billing/usage").body
    assert usage["totalSipMinutes"] == 6.0


def test_vector_events_still_bill_as_before(api: Api, routed_call: str) -> None:
    """Events inside the call's lifetime are untouched by the bounds (66 s of SIP time)."""
    assert api.events(load_vector("incoming_hangup", routed_call)).status == 200

    assert api.get(f"/api/calls/{routed_call}").body["sipDetails"]["billedDuration"] == "66s"


def test_twilio_hang_up_with_a_non_ascii_token_is_refused_with_401(api: Api) -> None:
    """The per-call token is compared as bytes: a non-ASCII one is a wrong token, not a 500."""
    agent = api.create_agent("bot")
    sid = twilio_compat.call_sid(api.dial(agent["agentId"]).body["callId"])
    account_sid = twilio_compat.account_sid("default")
    basic = base64.b64encode(f"{account_sid}:tökén".encode()).decode()

    response = api.client.http.post(
        f"/2010-04-01/Accounts/{account_sid}/Calls/{sid}.json",
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=b"Status=completed",
    )

    assert response.status_code == 401


def test_webhook_signature_with_non_ascii_characters_is_refused_with_401(api: Api) -> None:
    """A forged ``X-Sipline-Signature`` with non-ASCII text is a bad signature, not a 500."""
    body = as_json(invite_body())
    headers = {
        "X-Sipline-Timestamp": str(int(START.timestamp())),
        "X-Sipline-Signature": "v2=é",
    }

    response = api.client.http.post(
        "/webhooks/sip/invite", headers={"Content-Type": "application/json", **headers}, body=body
    )

    assert response.status_code == 401


@pytest.mark.parametrize("field", ["callId", "legId", "eventId"])
def test_oversized_event_ids_are_refused_naming_the_field(api: Api, field: str) -> None:
    """Ids become DynamoDB keys (2 KB at most): a 3,000-character id is a 400, not a 500."""
    event = _event("c" * 10, 0, "invite_received", "2026-11-25T12:00:00Z") | {field: "i" * 3000}

    reply = api.events([event])

    assert reply.status == 400
    assert reply.body["field"] == f"events[0].{field}"


# --- SIP header injection through stored fields ----------------------------------------------

INJECTIONS = ["1001\r\nVia: SIP/2.0/UDP evil.example.com", "1001\nX-Evil: 1", "1001\x00tail"]
"""A CR LF (or a bare LF, which many SIP parsers accept) would end the header and start another
in the REGISTER or INVITE sipline builds from the field; a NUL would cut the value short."""


@pytest.mark.parametrize("value", INJECTIONS, ids=["crlf", "lf", "nul"])
@pytest.mark.parametrize("field", ["username", "authUser", "proxy", "outboundProxy"])
def test_a_registration_field_cannot_carry_a_sip_header_injection(
    api: Api, field: str, value: str
) -> None:
    body = {"username": "1001", "password": "s3cret-pw", "proxy": "pbx.example.test"}
    reply = api.post("/api/sip/registrations", body | {field: value})
    assert reply.status == 400, reply.body
    assert reply.body["field"] == field
    assert "control characters" in reply.body["detail"]
    registration = api.create_registration()
    patched = api.patch(f"/api/sip/registrations/{registration['registrationId']}", {field: value})
    assert patched.status == 400 and patched.body["field"] == field, patched.body


@pytest.mark.parametrize("value", INJECTIONS, ids=["crlf", "lf", "nul"])
@pytest.mark.parametrize("field", ["from", "username"])
def test_an_outgoing_call_field_cannot_carry_a_sip_header_injection(
    api: Api, field: str, value: str
) -> None:
    agent = api.create_agent("dialer")
    outgoing = {"to": "sip:+15557654321@8.8.8.8", "from": "+15551234567"} | {field: value}
    reply = api.post(
        f"/api/agents/{agent['agentId']}/calls", {"medium": {"sip": {"outgoing": outgoing}}}
    )
    assert reply.status == 400, reply.body
    assert reply.body["field"] == f"medium.sip.outgoing.{field}"


# --- durations that would keep a call (and its slot) for months ------------------------------


@pytest.mark.parametrize(
    ("field", "value"), [("joinTimeout", "301s"), ("maxDuration", "86401s"), ("maxDuration", "9999999s")]
)
def test_a_template_duration_past_its_maximum_is_refused(api: Api, field: str, value: str) -> None:
    """An hours-long ``joinTimeout`` rings a caller for hours; a months-long ``maxDuration`` keeps
    a call open (and, with a silent control plane, its concurrent-call slot) for months."""
    reply = api.post("/api/agents", {"name": "long", "callTemplate": {field: value}})
    assert reply.status == 400 and reply.body["field"] == f"callTemplate.{field}", reply.body
    agent = api.create_agent("dialer")
    outgoing = {"to": "sip:+15557654321@8.8.8.8", "from": "+15551234567"}
    override = api.post(
        f"/api/agents/{agent['agentId']}/calls",
        {"medium": {"sip": {"outgoing": outgoing}}, field: value},
    )
    assert override.status == 400 and override.body["field"] == field, override.body


def test_durations_at_their_maximum_are_accepted(api: Api) -> None:
    agent = api.create_agent("longest", joinTimeout="300s", maxDuration="86400s")
    assert (agent["callTemplate"]["joinTimeout"], agent["callTemplate"]["maxDuration"]) == (
        "300s",
        "86400s",
    )


def test_a_duration_with_too_many_digits_says_so(api: Api) -> None:
    reply = api.post("/api/agents", {"name": "n", "callTemplate": {"maxDuration": "99999999s"}})
    assert reply.status == 400 and "too many digits" in reply.body["detail"], reply.body


def test_settings_never_print_their_secrets() -> None:
    """A traceback or a debug log that prints the settings must not carry the webhook secret or
    the password encryption key."""
    settings = load_settings(
        {
            "SIPLINE_WEBHOOK_SECRET": "whsec-" + "w" * 40,
            "SIPLINE_PASSWORD_KEY": "pk-" + "p" * 40,
        }
    )
    assert settings.webhook_secret.startswith("whsec-")
    assert "whsec-" not in repr(settings) and "pk-ppp" not in repr(settings)
