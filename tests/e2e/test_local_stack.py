"""End to end: HTTP to ``chalice local``, state in moto server, commands on moto's SQS."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests

from chalicelib import signing
from chalicelib.contracts import DialCommand, parse_command
from scripts.localstack import ROOT, LocalStack
from tests.support.fakes import invite_body

pytestmark = pytest.mark.e2e


def api(stack: LocalStack, method: str, path: str, body: Any = None) -> requests.Response:
    headers = {"X-API-Key": stack.credentials.api_key}
    return requests.request(method, stack.api_url + path, json=body, headers=headers, timeout=10)


def webhook(stack: LocalStack, path: str, body: Any) -> requests.Response:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    secret = stack.credentials.webhook_secret
    headers |= signing.sign(secret, int(time.time()), raw, method="POST", path=path)
    return requests.post(stack.api_url + path, data=raw, headers=headers, timeout=10)


def test_incoming_call_is_decided_recorded_and_billed(stack: LocalStack) -> None:
    agent = api(
        stack,
        "POST",
        "/api/agents",
        {
            "name": "sales-e2e",
            "callTemplate": {"systemPrompt": "Help {{customer_name}}."},
        },
    )
    assert agent.status_code == 201, agent.text
    agent_id = agent.json()["agentId"]
    config = api(
        stack,
        "PATCH",
        "/api/sip",
        {
            "allowedCidrRanges": ["203.0.113.0/24"],
            "allowedAgents": [{"agentId": agent_id, "toUserPattern": "^sales$"}],
        },
    )
    assert config.status_code == 200, config.text

    headers = [["X-Customer-Name", "Bob"], ["X-Complex-Value", '{"subkey": "value"}']]
    decided = webhook(
        stack,
        "/webhooks/sip/invite",
        invite_body(
            requestUri="sip:sales@sip.localhost", headers=headers, sipCallId="e2e-1@carrier"
        ),
    )
    assert decided.status_code == 200, decided.text
    decision = decided.json()
    assert decision["action"] == "accept"
    assert decision["systemPrompt"] == "Help Bob."
    assert decision["mediaEndpoint"] == {"url": stack.media_endpoint, "framing": "twilio"}

    call_id = decision["callId"]
    start = datetime.now(UTC) - timedelta(seconds=61)  # the call just ended: its last event is now
    events = [
        ("invite_received", 0.0),
        ("answered", 0.0),
        ("agent_joined", 1.0),
        ("leg_ended", 61.0),
        ("agent_left", 61.0),
    ]
    batch = {
        "events": [
            {
                "eventId": f"e2e-{n}",
                "type": kind,
                "occurredAt": (start + timedelta(seconds=at)).isoformat(),
                "callId": call_id,
                "legId": "leg-1",
                "legRole": "caller",
                **({"reason": "remote_hangup"} if kind == "leg_ended" else {}),
            }
            for n, (kind, at) in enumerate(events)
        ]
    }
    applied = webhook(stack, "/webhooks/sip/events", batch)
    assert applied.json() == {"applied": 5, "duplicates": 0, "unknown": 0}
    assert webhook(stack, "/webhooks/sip/events", batch).json()["duplicates"] == 5

    call = api(stack, "GET", f"/api/calls/{call_id}").json()
    assert call["templateContext"]["customer_name"] == "Bob"
    assert call["templateContext"]["complex_value"] == {"subkey": "value"}
    assert call["caller"] == "+15551234567" and call["callee"] == "sales"
    assert call["endReason"] == "hangup"
    assert (call["billedDuration"], call["sipDetails"]["billedDuration"]) == ("60s", "66s")


def test_rejections_name_their_rule(stack: LocalStack) -> None:
    refused = webhook(
        stack,
        "/webhooks/sip/invite",
        invite_body(
            sourceIp="198.51.100.99", requestUri="sip:sales@sip.localhost", sipCallId="e2e-2@c"
        ),
    )
    assert refused.json()["sipStatus"] == 403
    assert refused.json()["reason"] == "source_ip_not_allowed"
    unsigned = requests.post(stack.api_url + "/webhooks/sip/invite", json=invite_body(), timeout=10)
    assert unsigned.status_code == 401


def test_outgoing_call_enqueues_a_dial_command_on_sqs(stack: LocalStack) -> None:
    agent_id = api(stack, "POST", "/api/agents", {"name": "dialer-e2e"}).json()["agentId"]
    created = api(
        stack,
        "POST",
        f"/api/agents/{agent_id}/calls",
        {
            "medium": {
                "sip": {
                    "outgoing": {
                        "to": "sip:+15557654321@trunk.example;transport=tcp",
                        "from": "+15551234567",
                        "username": "trunkuser",
                        "password": "trunk-secret",
                    }
                }
            },
        },
    )
    assert created.status_code == 201, created.text
    assert "trunk-secret" not in created.text
    sqs = boto3.client(
        "sqs",
        endpoint_url=stack.moto_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    messages = sqs.receive_message(
        QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", [])
    dials = [c for m in messages if isinstance(c := parse_command(m["Body"]), DialCommand)]
    assert [d.call_id for d in dials] == [created.json()["callId"]]
    assert dials[0].to == "sip:+15557654321@trunk.example;transport=tcp"
    assert dials[0].password_ciphertext and "trunk-secret" not in dials[0].password_ciphertext


def test_bad_input_is_a_400_naming_the_field(stack: LocalStack) -> None:
    response = api(stack, "PATCH", "/api/sip", {"allowedCidrRanges": ["10.0.0.1/8"]})
    assert response.status_code == 400
    assert response.json()["field"] == "allowedCidrRanges[0]"
    assert "10.0.0.1/8" in response.json()["detail"]


def test_the_reaper_loop_of_make_dev_runs_the_scheduled_handler(stack: LocalStack) -> None:
    assert webhook(stack, "/webhooks/sip/heartbeat", {
        "edgeId": "e2e-edge", "sentAt": datetime.now(UTC).isoformat(), "callIds": []
    }).json() == {"stored": True}  # fmt: skip

    run = subprocess.run(
        [sys.executable, "-m", "scripts.reaper", "--once"],
        env=stack.environment(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )

    assert run.returncode == 0, run.stderr
    assert '"message":"reaper ran"' in run.stdout


def test_hanging_up_a_call_no_relay_took_ends_it_at_once(stack: LocalStack) -> None:
    agent = api(stack, "POST", "/api/agents", {
        "name": "reaped", "callTemplate": {"mediaEndpoint": {"url": "ws://127.0.0.1:9/agent"}}
    }).json()  # fmt: skip
    outgoing = {"to": "sip:+15557654321@trunk.example.com", "from": "+15551234567"}
    call = api(stack, "POST", f"/api/agents/{agent['agentId']}/calls", {
        "medium": {"sip": {"outgoing": outgoing}}
    }).json()  # fmt: skip

    assert api(stack, "DELETE", f"/api/calls/{call['callId']}").status_code == 204
    ended = api(stack, "GET", f"/api/calls/{call['callId']}").json()
    assert (ended["endReason"], ended["billingStatus"]) == ("unjoined", "BILLING_STATUS_BILLED")
