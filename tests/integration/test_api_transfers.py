"""Transfers through the API (issue 11), on moto's DynamoDB and SQS: the transfer tools on agents,
``POST/GET /api/calls/{callId}/transfers``, the outcome of a warm transfer, the commands the relay
holding the call receives, and the Transfer object derived from the relay's events.

Expected values are the issue's and docs/api.md's words: overrides win over what the bot sent, a
target outside the configured ones is refused unless the account allows free targets, one
transfer at a time, the password is write-only, a REFER success reads ``referred``.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from chalicelib import twilio_compat
from chalicelib.commands import MemoryCommandSender
from chalicelib.contracts import TransferCommand, TransferOutcomeCommand
from chalicelib.services import Services
from tests.integration.harness import MEDIA_URL, Api, Aws, Queue, stored_items
from tests.support.fakes import WEBHOOK_SECRET

OPERATOR = "sip:operator@pbx.example.test"
COLD = {
    "toolName": "coldTransfer",
    "parameterOverrides": {
        "target": OPERATOR,
        "extraHeaders": {"X-Queue": "sales"},
        "username": "xfer",
        "password": "tr4nsfer-s3cret",
    },
}
WARM = {
    "toolName": "warmTransfer",
    "nameOverride": "toSupervisor",
    "parameterOverrides": {
        "target": "sip:supervisor@pbx.example.test",
        "transferType": "BRIDGE",
        "transferSystemPromptTemplate": "Brief the supervisor: {context}",
    },
}
FREE = {"toolName": "coldTransfer", "nameOverride": "anywhere"}


def joined_call(api: Api, queue: Queue, *tools: dict[str, Any]) -> str:
    """An outgoing call of an agent offering ``tools``, answered, its agent joined, held by a
    relay (``edge-1``); the dial command is drained."""
    agent = api.create_agent(selectedTools=list(tools or (COLD, WARM, FREE)))
    reply = api.dial(agent["agentId"])
    assert reply.status == 201, reply.body
    call_id = str(reply.body["callId"])
    queue.drain()
    api.heartbeat("edge-1", [call_id])
    at = api.clock()
    leg = {"callId": call_id, "legId": "leg-1", "legRole": "caller"}
    events = [
        leg | {"eventId": f"{call_id}-1", "type": "invite_sent", "occurredAt": _t(at, 0)},
        leg | {"eventId": f"{call_id}-2", "type": "answered", "occurredAt": _t(at, 1),
               "sipStatus": 200},
        {"eventId": f"{call_id}-3", "type": "agent_joined", "callId": call_id,
         "occurredAt": _t(at, 2)},
    ]  # fmt: skip
    assert api.events(events).status == 200
    api.clock.advance(3)
    return call_id


def _t(at: Any, seconds: float) -> str:
    return str((at + timedelta(seconds=seconds)).isoformat())


def transfer_events(
    api: Api, call_id: str, transfer_id: str, *steps: tuple[str, dict[str, Any]]
) -> None:
    at = api.clock()
    events = [
        {"eventId": f"{transfer_id}-{at.timestamp()}-{n}", "type": kind, "callId": call_id,
         "transferId": transfer_id, "occurredAt": _t(at, n * 0.1)} | fields
        for n, (kind, fields) in enumerate(steps)
    ]  # fmt: skip
    reply = api.events(events)
    assert reply.status == 200, reply.body
    api.clock.advance(1)


def commands(queue: Queue) -> list[Any]:
    return [c for c in queue.drain() if isinstance(c, TransferCommand | TransferOutcomeCommand)]


def basic(call_id: str, account: str = "default", token: str | None = None) -> dict[str, str]:
    sid = twilio_compat.call_sid(call_id)
    token = token if token is not None else twilio_compat.auth_token(WEBHOOK_SECRET, sid)
    raw = f"{twilio_compat.account_sid(account)}:{token}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


# --- transfer tools on agents -------------------------------------------------------------------


def test_a_transfer_tools_password_is_stored_encrypted_and_never_returned(
    api: Api, aws: Aws, services: Services
) -> None:
    agent = api.create_agent(selectedTools=[COLD, {"toolName": "hangUp"}])
    shown = agent["callTemplate"]["selectedTools"]
    assert shown[0]["parameterOverrides"] == {
        "target": OPERATOR,
        "extraHeaders": {"X-Queue": "sales"},
        "username": "xfer",
    }
    assert shown[1] == {"toolName": "hangUp"}
    assert api.get(f"/api/agents/{agent['agentId']}").body == agent
    raw = json.dumps(stored_items(aws))
    assert "tr4nsfer-s3cret" not in raw and "passwordCiphertext" in raw
    # A GET, edit, PATCH round trip keeps the password; null removes it.
    edited = [dict(shown[0], descriptionOverride="to sales"), shown[1]]
    path = f"/api/agents/{agent['agentId']}"
    assert api.patch(path, {"callTemplate": {"selectedTools": edited}}).status == 200
    assert "passwordCiphertext" in json.dumps(stored_items(aws))
    removed = [
        dict(shown[0], parameterOverrides=shown[0]["parameterOverrides"] | {"password": None})
    ]
    assert api.patch(path, {"callTemplate": {"selectedTools": removed}}).status == 200
    assert "passwordCiphertext" not in json.dumps(stored_items(aws))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"sipVerb": "BYE"}, "parameterOverrides.sipVerb"),
        ({"extraHeaders": {"Refer-To": "sip:x@y"}}, "parameterOverrides.extraHeaders"),
        ({"target": "tel:premium"}, "parameterOverrides.target"),
        ({"target": "sip:op@10.0.0.1"}, "parameterOverrides.target"),
        ({"username": "a\r\nX-Evil: 1"}, "parameterOverrides.username"),
        ({"holdMusicUrl": "ftp://music.example.test/a.wav"}, "parameterOverrides.holdMusicUrl"),
        ({"passwordCiphertext": "fernet:x"}, "parameterOverrides.passwordCiphertext"),
        ({"transferType": "REFER"}, "parameterOverrides.transferType"),  # a warm field on cold
    ],
)
def test_a_transfer_tool_with_a_bad_parameter_is_refused_naming_it(
    api: Api, overrides: dict[str, Any], field: str
) -> None:
    tool = {"toolName": "coldTransfer", "parameterOverrides": overrides}
    template = {"mediaEndpoint": {"url": MEDIA_URL}, "selectedTools": [tool]}
    reply = api.post("/api/agents", {"name": "a", "callTemplate": template})
    assert reply.status == 400, reply.body
    assert reply.body["field"].startswith("callTemplate.selectedTools[0].")
    assert reply.body["field"].startswith(f"callTemplate.selectedTools[0].{field}")


def test_the_agent_receives_its_tools_without_the_password(api: Api, queue: Queue) -> None:
    agent = api.create_agent(selectedTools=[COLD])
    api.dial(agent["agentId"])
    [dial] = queue.drain()
    [tool] = dial.call_template["selectedTools"]
    assert tool["parameterOverrides"] == {
        "target": OPERATOR,
        "extraHeaders": {"X-Queue": "sales"},
        "username": "xfer",
    }


# --- POST /api/calls/{callId}/transfers ---------------------------------------------------------


def test_a_cold_transfer_is_decided_recorded_and_sent_to_the_relay_holding_the_call(
    api: Api, queue: Queue, services: Services
) -> None:
    call_id = joined_call(api, queue)
    reply = api.post(
        f"/api/calls/{call_id}/transfers",
        {"toolName": "coldTransfer", "parameters": {"target": "sip:elsewhere@evil.example.test"}},
    )
    assert reply.status == 201, reply.body
    transfer = reply.body
    assert {k: transfer[k] for k in ("toolName", "kind", "method", "target", "status")} == {
        "toolName": "coldTransfer",
        "kind": "cold",
        "method": "REFER",
        "target": OPERATOR,  # the override wins over what the bot sent
        "status": "requested",
    }
    [command] = commands(queue)
    assert isinstance(command, TransferCommand)
    assert (command.call_id, command.transfer_id) == (call_id, transfer["transferId"])
    assert command.refer_headers == [("X-Queue", "sales")] and command.invite_headers == []
    assert command.hold_music == "default" and command.username == "xfer"
    assert command.password_ciphertext is not None
    assert services.cipher.decrypt(command.password_ciphertext) == "tr4nsfer-s3cret"
    assert "tr4nsfer-s3cret" not in json.dumps(reply.body)
    listed = api.get(f"/api/calls/{call_id}/transfers")
    assert listed.status == 200 and listed.body == {"results": [transfer]}


def test_one_transfer_at_a_time(api: Api, queue: Queue) -> None:
    call_id = joined_call(api, queue)
    first = api.post(f"/api/calls/{call_id}/transfers", {"toolName": "coldTransfer"})
    assert first.status == 201
    second = api.post(f"/api/calls/{call_id}/transfers", {"toolName": "toSupervisor"})
    assert second.status == 409 and "one transfer at a time" in second.body["detail"]
    transfer_events(
        api, call_id, first.body["transferId"],
        ("refer_sent", {"legId": "leg-1", "legRole": "caller"}),
        ("refer_failed", {"legId": "leg-1", "legRole": "caller", "sipStatus": 603,
                          "detail": "sipfrag 603 Decline"}),
    )  # fmt: skip
    [failed] = api.get(f"/api/calls/{call_id}/transfers").body["results"]
    assert (failed["status"], failed["sipStatus"]) == ("failed", 603)
    assert api.post(f"/api/calls/{call_id}/transfers", {"toolName": "toSupervisor"}).status == 201


def test_a_refer_that_succeeds_reads_referred_with_its_sip_status_and_times(
    api: Api, queue: Queue
) -> None:
    call_id = joined_call(api, queue)
    transfer = api.post(f"/api/calls/{call_id}/transfers", {"toolName": "coldTransfer"}).body
    leg = {"legId": "leg-1", "legRole": "caller"}
    transfer_events(
        api, call_id, transfer["transferId"],
        ("refer_sent", leg), ("refer_accepted", leg | {"sipStatus": 202}),
        ("refer_succeeded", leg | {"sipStatus": 200}),
    )  # fmt: skip
    [read] = api.get(f"/api/calls/{call_id}/transfers").body["results"]
    assert (read["status"], read["sipStatus"], read["answered"]) == ("referred", 200, None)
    assert read["ended"] is not None


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"toolName": "blindTransfer"}, 403, "toolName"),
        ({"toolName": "anywhere", "parameters": {"target": "sip:+1900555@premium.example"}},
         403, "parameters.target"),
        ({"toolName": "anywhere"}, 400, "parameters.target"),
        ({"toolName": "anywhere", "parameters": {"target": "+19005550100"}}, 403,
         "parameters.target"),
        ({"toolName": "coldTransfer", "parameters": {"sipVerb": "PUBLISH"}}, 400,
         "parameters.sipVerb"),
        ({"toolName": "coldTransfer", "parameters": {"extraHeaders": {"Contact": "x"}}}, 400,
         "parameters.extraHeaders"),
        ({"toolName": "toSupervisor", "context": "x" * 5000}, 400, "context"),
        ({"toolName": "coldTransfer", "parameters": {"passwordCiphertext": "fernet:x"}}, 400,
         "parameters.passwordCiphertext"),
    ],
)  # fmt: skip
def test_a_transfer_the_rules_refuse_names_the_field(
    api: Api, queue: Queue, body: dict[str, Any], status: int, field: str
) -> None:
    call_id = joined_call(api, queue)
    reply = api.post(f"/api/calls/{call_id}/transfers", body)
    assert (reply.status, reply.body["field"]) == (status, field), reply.body
    assert commands(queue) == []


def test_free_targets_are_allowed_only_when_the_account_says_so(api: Api, queue: Queue) -> None:
    call_id = joined_call(api, queue)
    ask = {"toolName": "anywhere", "parameters": {"target": "sip:desk@partner.example.test"}}
    assert api.post(f"/api/calls/{call_id}/transfers", ask).status == 403
    assert api.get("/api/sip").body["allowFreeTransferTargets"] is False
    api.patch_sip(allowFreeTransferTargets=True)
    reply = api.post(f"/api/calls/{call_id}/transfers", ask)
    assert reply.status == 201 and reply.body["target"] == "sip:desk@partner.example.test"


def test_a_configured_target_named_by_the_bot_passes_through_a_tool_without_one(
    api: Api, queue: Queue
) -> None:
    call_id = joined_call(api, queue)
    ask = {"toolName": "anywhere", "parameters": {"target": "sip:supervisor@pbx.example.test"}}
    reply = api.post(f"/api/calls/{call_id}/transfers", ask)
    assert reply.status == 201 and reply.body["target"] == "sip:supervisor@pbx.example.test"


def test_an_e164_number_goes_over_the_accounts_transfer_trunk(api: Api, queue: Queue) -> None:
    tool = {"toolName": "coldTransfer", "parameterOverrides": {"target": "+15551230000",
                                                               "sipVerb": "INVITE"}}  # fmt: skip
    call_id = joined_call(api, queue, tool)
    refused = api.post(f"/api/calls/{call_id}/transfers", {"toolName": "coldTransfer"})
    assert (refused.status, refused.body["field"]) == (400, "parameters.target")
    assert "transferTrunk" in refused.body["detail"]
    assert api.patch_sip(transferTrunk="sip:trunk.example.test:5061;transport=tls")[
        "transferTrunk"
    ] == ("sip:trunk.example.test:5061;transport=tls")
    reply = api.post(f"/api/calls/{call_id}/transfers", {"toolName": "coldTransfer"})
    assert reply.status == 201
    assert reply.body["target"] == "sip:+15551230000@trunk.example.test:5061;transport=tls"
    [command] = commands(queue)
    assert command.method == "INVITE" and command.invite_headers == []


def test_a_call_whose_agent_has_not_joined_cannot_be_transferred(api: Api, queue: Queue) -> None:
    agent = api.create_agent(selectedTools=[COLD])
    call_id = api.dial(agent["agentId"]).body["callId"]
    reply = api.post(f"/api/calls/{call_id}/transfers", {"toolName": "coldTransfer"})
    assert reply.status == 409 and "not joined" in reply.body["detail"]


def test_a_transfer_the_relay_never_starts_fails_after_30_s(api: Api, queue: Queue) -> None:
    call_id = joined_call(api, queue)
    api.post(f"/api/calls/{call_id}/transfers", {"toolName": "coldTransfer"})
    api.clock.advance(29)
    [waiting] = api.get(f"/api/calls/{call_id}/transfers").body["results"]
    assert waiting["status"] == "requested"
    api.clock.advance(1)
    [failed] = api.get(f"/api/calls/{call_id}/transfers").body["results"]
    assert (failed["status"], failed["reason"]) == ("failed", "relay_did_not_start")


def test_a_transfer_while_the_queue_is_down_is_503_and_recorded_failed(
    api: Api, queue: Queue, services: Services
) -> None:
    call_id = joined_call(api, queue)

    class Down(MemoryCommandSender):
        def send(self, command: Any, queue_url: str | None = None) -> None:
            raise ConnectionError("SQS unreachable")

    services.commands = Down()
    reply = api.post(f"/api/calls/{call_id}/transfers", {"toolName": "coldTransfer"})
    assert reply.status == 503
    [failed] = api.get(f"/api/calls/{call_id}/transfers").body["results"]
    assert (failed["status"], failed["reason"]) == ("failed", "command_not_sent")


# --- the bot's own credentials ------------------------------------------------------------------


def test_the_bot_transfers_its_own_call_with_its_per_call_credentials(
    api: Api, queue: Queue
) -> None:
    call_id = joined_call(api, queue)
    other = joined_call(api, queue)
    api.heartbeat("edge-1", [call_id, other])
    bot = api.as_key("")
    path = f"/api/calls/{call_id}/transfers"
    assert bot.post(path, {"toolName": "coldTransfer"}, headers=basic(other)).status == 401
    assert bot.post(path, {"toolName": "coldTransfer"}).status == 401
    reply = bot.post(path, {"toolName": "coldTransfer"}, headers=basic(call_id))
    assert reply.status == 201
    assert bot.get(path, headers=basic(call_id)).body["results"][0] == reply.body


def test_another_accounts_key_does_not_see_the_call(api: Api, queue: Queue) -> None:
    from tests.support.fakes import OTHER_API_KEY

    call_id = joined_call(api, queue)
    reply = api.as_key(OTHER_API_KEY).get(f"/api/calls/{call_id}/transfers")
    assert reply.status == 404


# --- warm transfers: the outcome ----------------------------------------------------------------


def test_a_warm_transfers_outcome_is_reported_once_and_sent_to_the_relay(
    api: Api, queue: Queue
) -> None:
    call_id = joined_call(api, queue)
    reply = api.post(
        f"/api/calls/{call_id}/transfers",
        {"toolName": "toSupervisor", "context": "caller wants a refund"},
    )
    assert reply.status == 201 and reply.body["method"] == "BRIDGE"
    transfer_id = reply.body["transferId"]
    [command] = commands(queue)
    assert command.prompt == "Brief the supervisor: caller wants a refund"
    outcome = f"/api/calls/{call_id}/transfers/{transfer_id}/outcome"
    early = api.post(outcome, {"accepted": True})
    assert early.status == 409 and "requested" in early.body["detail"]
    op = {"legId": "leg-op", "legRole": "transfer_target"}
    transfer_events(
        api, call_id, transfer_id,
        ("invite_sent", op), ("ringing", op | {"sipStatus": 180}),
        ("answered", op | {"sipStatus": 200}), ("agent_joined", op),
    )  # fmt: skip
    [briefing] = api.get(f"/api/calls/{call_id}/transfers").body["results"]
    assert briefing["status"] == "briefing" and briefing["answered"] is not None
    accepted = api.post(outcome, {"accepted": True}, headers=basic(call_id))
    assert accepted.status == 200 and accepted.body["status"] == "accepted"
    [sent] = commands(queue)
    assert sent == TransferOutcomeCommand(
        call_id=call_id, transfer_id=transfer_id, accepted=True, reason=None
    )
    assert api.post(outcome, {"accepted": True}).status == 200  # the same report again
    assert commands(queue) == []
    assert api.post(outcome, {"accepted": False}).status == 409
    transfer_events(api, call_id, transfer_id, ("bridged", op))
    [bridged] = api.get(f"/api/calls/{call_id}/transfers").body["results"]
    assert bridged["status"] == "bridged"


def test_a_declined_warm_transfer_reads_declined_with_the_reason(api: Api, queue: Queue) -> None:
    call_id = joined_call(api, queue)
    transfer_id = api.post(f"/api/calls/{call_id}/transfers", {"toolName": "toSupervisor"}).body[
        "transferId"
    ]
    op = {"legId": "leg-op", "legRole": "transfer_target"}
    transfer_events(api, call_id, transfer_id, ("answered", op | {"sipStatus": 200}))
    outcome = f"/api/calls/{call_id}/transfers/{transfer_id}/outcome"
    reply = api.post(outcome, {"accepted": False, "reason": "busy with another caller"})
    assert reply.status == 200
    assert (reply.body["status"], reply.body["reason"]) == ("declined", "busy with another caller")


def test_a_cold_transfer_has_no_outcome_and_an_unknown_one_is_404(api: Api, queue: Queue) -> None:
    call_id = joined_call(api, queue)
    transfer_id = api.post(f"/api/calls/{call_id}/transfers", {"toolName": "coldTransfer"}).body[
        "transferId"
    ]
    base = f"/api/calls/{call_id}/transfers"
    assert api.post(f"{base}/{transfer_id}/outcome", {"accepted": True}).status == 409
    assert api.post(f"{base}/nope/outcome", {"accepted": True}).status == 404
    assert api.post(f"{base}/{transfer_id}/outcome", {"accepted": "yes"}).status == 400
