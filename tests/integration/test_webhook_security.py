"""The edge's webhooks: HMAC-SHA256 over timestamp, method, path and body, a replay window, 401
otherwise."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from chalicelib import signing
from chalicelib.services import Services
from tests.integration.harness import Api, Aws, Reply, load_vector, stored_items
from tests.support.fakes import START, WEBHOOK_SECRET, as_json, invite_body

INVITE = "/webhooks/sip/invite"
EVENTS = "/webhooks/sip/events"


@pytest.fixture
def sales(api: Api) -> str:
    agent_id = str(api.create_agent("sales")["agentId"])
    api.patch_sip(
        allowedCidrRanges=["203.0.113.0/24"],
        allowedAgents=[{"agentId": agent_id, "toUserPattern": "^sales$"}],
    )
    return agent_id


def _post(api: Api, path: str, body: bytes, headers: dict[str, str]) -> Reply:
    """POST raw bytes with exactly ``headers`` (no API key, no signature added)."""
    return api.as_key("").request("POST", path, body, headers=headers)


def _signed(
    body: bytes, *, at_s: float = 0, secret: str = WEBHOOK_SECRET, path: str = INVITE
) -> dict[str, str]:
    timestamp = int((START + timedelta(seconds=at_s)).timestamp())
    return signing.sign(secret, timestamp, body, method="POST", path=path)


BODY = as_json(invite_body())
OTHER_BODY = as_json(invite_body(toUri="sip:support@sip.example.test"))

REFUSED: dict[str, Callable[[], tuple[bytes, dict[str, str]]]] = {
    "unsigned": lambda: (BODY, {}),
    "timestamp only": lambda: (BODY, {"X-Sipline-Timestamp": str(int(START.timestamp()))}),
    "signature only": lambda: (BODY, {"X-Sipline-Signature": _signed(BODY)["X-Sipline-Signature"]}),
    "stale by 61 s": lambda: (BODY, _signed(BODY, at_s=-61)),
    "an hour old": lambda: (BODY, _signed(BODY, at_s=-3600)),
    "61 s in the future": lambda: (BODY, _signed(BODY, at_s=61)),
    "tampered body": lambda: (OTHER_BODY, _signed(BODY)),
    "wrong secret": lambda: (BODY, _signed(BODY, secret="not-the-secret")),
    "timestamp not unix seconds": lambda: (
        BODY,
        _signed(BODY) | {"X-Sipline-Timestamp": START.isoformat()},
    ),
    "timestamp changed after signing": lambda: (
        BODY,
        _signed(BODY) | {"X-Sipline-Timestamp": str(int(START.timestamp()) + 1)},
    ),
    "other scheme": lambda: (
        BODY,
        _signed(BODY)
        | {"X-Sipline-Signature": _signed(BODY)["X-Sipline-Signature"].replace("v2=", "v0=")},
    ),
    "api key instead": lambda: (BODY, {"X-API-Key": "sk_test_1"}),
    "signed for the events path": lambda: (BODY, _signed(BODY, path=EVENTS)),
    "body-only v1 signature": lambda: (
        BODY,
        signing.sign_body(WEBHOOK_SECRET, int(START.timestamp()), BODY),
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_invite_webhook_refuses_bad_signatures_with_401_and_creates_no_call(
    api: Api, aws: Aws, sales: str, case: str
) -> None:
    body, headers = REFUSED[case]()
    items = stored_items(aws)

    reply = _post(api, INVITE, body, {"Content-Type": "application/json"} | headers)

    assert reply.status == 401
    assert reply.body["code"] == "unauthorized"
    assert "action" not in reply.body
    assert api.get("/api/calls").body["total"] == 0
    assert stored_items(aws) == items


@pytest.mark.parametrize("case", ["unsigned", "stale", "future", "tampered", "wrong secret"])
def test_events_webhook_refuses_bad_signatures_with_401_and_changes_no_call(
    api: Api, aws: Aws, sales: str, case: str
) -> None:
    call_id = api.invite().body["callId"]
    before = api.get(f"/api/calls/{call_id}").body
    body = as_json({"events": load_vector("incoming_hangup", call_id)})
    headers: dict[str, Any] = {
        "unsigned": {},
        "stale": _signed(body, at_s=-61, path=EVENTS),
        "future": _signed(body, at_s=61, path=EVENTS),
        "tampered": _signed(body.replace(b"remote_hangup", b"local_hangup"), path=EVENTS),
        "wrong secret": _signed(body, secret="whsec_other", path=EVENTS),
    }[case]
    items = stored_items(aws)

    reply = _post(api, EVENTS, body, {"Content-Type": "application/json"} | headers)

    assert reply.status == 401
    assert api.get(f"/api/calls/{call_id}").body == before
    assert stored_items(aws) == items


@pytest.mark.parametrize("at_s", [-60, 60])
def test_signature_at_the_edge_of_the_window_is_accepted(api: Api, sales: str, at_s: int) -> None:
    reply = _post(
        api, INVITE, BODY, {"Content-Type": "application/json"} | _signed(BODY, at_s=at_s)
    )

    assert reply.status == 200
    assert reply.body["action"] == "accept"


def test_the_window_follows_the_clock(api: Api, sales: str, services: Services) -> None:
    signed = {"Content-Type": "application/json"} | _signed(BODY)
    services.epoch_seconds = lambda: START.timestamp() + 61

    assert _post(api, INVITE, BODY, signed).status == 401


def test_any_of_several_signatures_may_match(api: Api, sales: str) -> None:
    good = _signed(BODY)
    bad = _signed(BODY, secret="old-secret")["X-Sipline-Signature"]
    headers = good | {"X-Sipline-Signature": f"{bad},{good['X-Sipline-Signature']}"}

    reply = _post(api, INVITE, BODY, {"Content-Type": "application/json"} | headers)

    assert reply.status == 200


def test_a_rotated_secret_is_accepted_beside_the_new_one(
    api: Api, sales: str, services: Services
) -> None:
    services.settings = dataclasses.replace(
        services.settings, webhook_secret=f"whsec_new,{WEBHOOK_SECRET}"
    )

    old = _post(api, INVITE, BODY, {"Content-Type": "application/json"} | _signed(BODY))
    new = _post(
        api,
        INVITE,
        OTHER_BODY,
        {"Content-Type": "application/json"} | _signed(OTHER_BODY, secret="whsec_new"),
    )

    assert (old.status, new.status) == (200, 200)


def test_webhooks_refuse_everything_when_no_secret_is_configured(
    api: Api, sales: str, services: Services
) -> None:
    services.settings = dataclasses.replace(services.settings, webhook_secret="")
    signed_with_an_empty_key = signing.sign(
        "", int(START.timestamp()), BODY, method="POST", path=INVITE
    )

    reply = _post(
        api, INVITE, BODY, {"Content-Type": "application/json"} | signed_with_an_empty_key
    )

    assert reply.status == 401
    assert api.get("/api/calls").body["total"] == 0


def test_header_names_are_case_insensitive(api: Api, sales: str) -> None:
    headers = {k.lower(): v for k, v in _signed(BODY).items()}

    reply = _post(api, INVITE, BODY, {"content-type": "application/json"} | headers)

    assert reply.status == 200
