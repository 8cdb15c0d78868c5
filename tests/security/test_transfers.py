"""Transfers a bot asks for: toll fraud, header injection, and the tool's password (issue 11).

The attacker is a caller who talks the bot into it (prompt injection), or whoever holds one
call's token. docs/security.md ("Toll fraud") is the defence each test checks: the bot asks by
tool name, the tool's overrides win, targets outside the configured ones are refused while
``allowFreeTransferTargets`` is off (the default), a call's token acts on that call only, headers
are X- only, and the tool's password never leaves in a response, the agent's template or a log.
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.contracts import TransferCommand
from tests.integration.harness import Api, Queue
from tests.integration.test_api_transfers import COLD, FREE, basic, joined_call

PREMIUM = "sip:+19005550199@premium-rate.example.test"
COLD_TARGET = COLD["parameterOverrides"]["target"]


def sent(queue: Queue) -> list[TransferCommand]:
    return [c for c in queue.drain() if isinstance(c, TransferCommand)]


@pytest.mark.parametrize(
    "ask",
    [
        {"toolName": "anywhere", "parameters": {"target": PREMIUM}},
        {"toolName": "anywhere", "parameters": {"target": "+19005550199"}},
        {"toolName": "coldTransfer", "parameters": {"target": PREMIUM}},  # override wins instead
    ],
)
def test_a_prompt_injected_bot_cannot_dial_a_premium_number(
    api: Api, queue: Queue, ask: dict[str, Any]
) -> None:
    call_id = joined_call(api, queue, COLD, FREE)
    reply = api.as_key("").post(f"/api/calls/{call_id}/transfers", ask, headers=basic(call_id))
    commands = sent(queue)
    if ask["toolName"] == "coldTransfer":  # the tool fixes its target: the bot's is ignored
        assert reply.status == 201 and [c.target for c in commands] == [COLD_TARGET]
    else:
        assert (reply.status, reply.body["code"]) == (403, "transfer_not_allowed")
        assert commands == []


def test_one_calls_token_cannot_transfer_another_call(api: Api, queue: Queue) -> None:
    victim = joined_call(api, queue, COLD)
    attacker = joined_call(api, queue, COLD)
    api.heartbeat("edge-1", [victim, attacker])
    bot = api.as_key("")
    reply = bot.post(
        f"/api/calls/{victim}/transfers", {"toolName": "coldTransfer"}, headers=basic(attacker)
    )
    assert reply.status == 401
    assert bot.get(f"/api/calls/{victim}/transfers", headers=basic(attacker)).status == 401
    assert sent(queue) == []


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"target": "sip:desk@partner.example.test?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2"},
         "parameters.target"),
        ({"target": "sip:desk@partner.example.test?Route=%3Csip:10.0.0.1%3E"}, "parameters.target"),
        ({"target": "sip:desk@partner.example.test", "extraHeaders": {"Refer-To": PREMIUM}},
         "parameters.extraHeaders"),
        ({"target": "sip:desk@partner.example.test",
          "extraHeaders": {"X-Note": "a\r\nRefer-To: <" + PREMIUM + ">"}},
         "parameters.extraHeaders.X-Note"),
        ({"target": "sip:desk@partner.example.test\r\nRoute: <sip:10.0.0.1>"},
         "parameters.target"),
    ],
)  # fmt: skip
def test_a_bot_cannot_inject_sip_headers_through_a_transfer(
    api: Api, queue: Queue, parameters: dict[str, Any], field: str
) -> None:
    api.patch_sip(allowFreeTransferTargets=True)  # even with free targets
    call_id = joined_call(api, queue, FREE)
    reply = api.post(f"/api/calls/{call_id}/transfers", {"toolName": "anywhere",
                                                         "parameters": parameters})  # fmt: skip
    assert (reply.status, reply.body["field"]) == (400, field)
    assert sent(queue) == []


def test_the_tools_password_never_leaves(
    api: Api, queue: Queue, log_output: pytest.CaptureFixture[str]
) -> None:
    password = COLD["parameterOverrides"]["password"]
    call_id = joined_call(api, queue, COLD)
    agents = api.get("/api/agents").body
    transfer = api.post(f"/api/calls/{call_id}/transfers", {"toolName": "coldTransfer"})
    listed = api.get(f"/api/calls/{call_id}/transfers")
    refused = api.post(
        "/api/agents",
        {"name": "x", "callTemplate": {"selectedTools": [
            {"toolName": "coldTransfer", "parameterOverrides": {"password": password, "bad": 1}}
        ]}},
    )  # fmt: skip
    assert refused.status == 400
    for body in (agents, transfer.body, listed.body, refused.body):
        assert password not in str(body) and "passwordCiphertext" not in str(body)
    assert password not in log_output.readouterr().out
    [command] = sent(queue)
    assert password not in command.model_dump_json()  # only its ciphertext
