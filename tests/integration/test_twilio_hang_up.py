"""Stock bots end calls with Twilio's REST call: sipline answers it and hangs up the call."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from moto import mock_aws

import app
from chalicelib import calls, reaper, runtime, twilio_compat
from chalicelib.agents import create_agent
from chalicelib.call_models import AgentCallCreate
from chalicelib.commands import MemoryCommandSender
from chalicelib.contracts import EdgeHeartbeat, HangUpCommand
from chalicelib.models import AgentFields
from chalicelib.services import Services
from tests.support.fakes import WEBHOOK_SECRET, make_services


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        built = make_services(default_media_endpoint="ws://127.0.0.1:9/agent")
        runtime.install(built)
        yield built
        runtime.install(None)


def a_call(services: Services) -> str:
    agent = create_agent(services, "default", AgentFields(name="bot"))
    body = AgentCallCreate.model_validate(
        {"medium": {"sip": {"outgoing": {"to": "sip:+15557654321@trunk.example", "from": "+1555"}}}}
    )
    return calls.create_agent_call(services, "default", agent.agent_id, body).call_id


def post(
    call_id: str, *, token: str | None = None, account: str = "default", status: str = "completed"
) -> Any:
    sid = twilio_compat.call_sid(call_id)
    account_sid = twilio_compat.account_sid(account)
    token = token if token is not None else twilio_compat.auth_token(WEBHOOK_SECRET, sid)
    basic = base64.b64encode(f"{account_sid}:{token}".encode()).decode()
    with Client(app.app) as client:
        return client.http.post(
            f"/2010-04-01/Accounts/{account_sid}/Calls/{sid}.json",
            headers={
                "Authorization": f"Basic {basic}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            body=f"Status={status}",
        )


def hangups(services: Services) -> list[HangUpCommand]:
    assert isinstance(services.commands, MemoryCommandSender)
    return [c for c in services.commands.sent if isinstance(c, HangUpCommand)]


def test_status_completed_with_the_calls_credentials_hangs_up(services: Services) -> None:
    call_id = a_call(services)
    held = EdgeHeartbeat(edge_id="edge-1", sent_at=services.clock(), call_ids=[call_id])
    reaper.record_heartbeat(services, held)  # a relay holds the call (a bot talks on it)
    response = post(call_id)
    assert response.status_code == 200
    assert response.json_body["status"] == "completed"
    assert [c.call_id for c in hangups(services)] == [call_id]


def test_a_token_of_another_call_is_refused(services: Services) -> None:
    first, second = a_call(services), a_call(services)
    other_token = twilio_compat.auth_token(WEBHOOK_SECRET, twilio_compat.call_sid(second))
    response = post(first, token=other_token)
    assert response.status_code == 401
    assert hangups(services) == []


def test_another_accounts_sid_is_refused(services: Services) -> None:
    response = post(a_call(services), account="other")
    assert response.status_code == 401


def test_a_status_other_than_completed_is_a_400(services: Services) -> None:
    response = post(a_call(services), status="in-progress")
    assert response.status_code == 400
    assert response.json_body["field"] == "Status"


def test_sids_round_trip() -> None:
    call_id = "01a212bd-32ac-7ff8-8b5a-5ba91e2853a8"
    sid = twilio_compat.call_sid(call_id)
    assert sid.startswith("CA") and len(sid) == 34
    assert twilio_compat.call_id_from_sid(sid) == call_id
    assert twilio_compat.call_id_from_sid("CAnothex") is None
