"""Stock Twilio bots transfer by updating their call with TwiML (issue 11): sipline maps
``<Dial><Sip>``, ``<Dial><Number>`` and ``<Refer><Sip>`` onto the transfer decision, and answers
everything else, hostile documents included, in Twilio's error shape (``code``, ``message``,
``more_info``, ``status``), never a 500. On moto's DynamoDB and SQS.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib import twilio_compat
from chalicelib.contracts import TransferCommand
from tests.integration.harness import Api, Queue
from tests.integration.test_api_transfers import COLD, FREE, basic, joined_call
from tests.unit.chalicelib.test_twiml import BILLION_LAUGHS, EXTERNAL

TWILIO_ERROR_KEYS = {"code", "message", "more_info", "status"}


def update(api: Api, call_id: str, body: bytes | str, **auth: Any) -> Any:
    sid = twilio_compat.call_sid(call_id)
    account_sid = twilio_compat.account_sid("default")
    raw = body.encode() if isinstance(body, str) else body
    return api.client.http.post(
        f"/2010-04-01/Accounts/{account_sid}/Calls/{sid}.json",
        headers=basic(call_id, **auth) | {"Content-Type": "application/x-www-form-urlencoded"},
        body=raw,
    )


def twiml(document: str) -> str:
    return urlencode({"Twiml": document})


def transfers(queue: Queue) -> list[TransferCommand]:
    return [c for c in queue.drain() if isinstance(c, TransferCommand)]


def test_dial_sip_is_a_bridged_cold_transfer_to_a_configured_target(
    api: Api, queue: Queue
) -> None:
    call_id = joined_call(api, queue, COLD)
    document = "<Response><Dial><Sip>sip:operator@pbx.example.test</Sip></Dial></Response>"
    response = update(api, call_id, twiml(document))
    assert response.status_code == 200, response.json_body
    body = response.json_body
    assert (body["sid"], body["status"]) == (twilio_compat.call_sid(call_id), "in-progress")
    assert (body["transfer"]["method"], body["transfer"]["status"]) == ("INVITE", "requested")
    [command] = transfers(queue)
    assert command.target == "sip:operator@pbx.example.test"


def test_refer_sip_and_dial_number_go_through_a_tool_without_a_fixed_target(
    api: Api, queue: Queue
) -> None:
    api.patch_sip(allowFreeTransferTargets=True, transferTrunk="sip:trunk.example.test")
    call_id = joined_call(api, queue, FREE)
    refer = "<Response><Refer><Sip>sip:desk@partner.example.test</Sip></Refer></Response>"
    assert update(api, call_id, twiml(refer)).status_code == 200
    [command] = transfers(queue)
    assert (command.method, command.target) == ("REFER", "sip:desk@partner.example.test")
    # No event came from the relay: the REFER is still in progress, so a second one is refused.
    second = update(
        api, call_id, twiml("<Response><Dial><Number>+14155551212</Number></Dial></Response>")
    )
    assert second.status_code == 409
    assert set(second.json_body) == TWILIO_ERROR_KEYS
    assert second.json_body["code"] == 21220


def test_dial_number_is_a_bridged_transfer_over_the_trunk(api: Api, queue: Queue) -> None:
    api.patch_sip(allowFreeTransferTargets=True, transferTrunk="sip:trunk.example.test")
    call_id = joined_call(api, queue, FREE)
    document = '<Response><Dial callerId="+15551112222"><Number>+14155551212</Number></Dial></Response>'
    assert update(api, call_id, twiml(document)).status_code == 200
    [command] = transfers(queue)
    assert (command.method, command.target, command.from_) == (
        "INVITE",
        "sip:+14155551212@trunk.example.test",
        "+15551112222",
    )


def test_a_target_the_account_did_not_configure_is_refused_in_twilios_shape(
    api: Api, queue: Queue
) -> None:
    call_id = joined_call(api, queue, COLD)
    document = "<Response><Dial><Number>+19005550100</Number></Dial></Response>"
    response = update(api, call_id, twiml(document))
    assert response.status_code == 403
    assert response.json_body == {
        "code": 20003,
        "message": response.json_body["message"],
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 403,
    }
    assert "parameters.target" in response.json_body["message"]
    assert transfers(queue) == []


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        (twiml("<Response><Say>Please hold</Say></Response>"), 400, 12200, "<Say>"),
        (twiml("<Response><Dial><Conference>r</Conference></Dial></Response>"), 400, 12200,
         "<Conference>"),
        (twiml(BILLION_LAUGHS), 400, 12100, "DTDForbidden"),
        (twiml(EXTERNAL), 400, 12100, "DTDForbidden"),
        (twiml("<Response>" + "<Dial>" * 280 + "</Dial>" * 280 + "</Response>"), 400, 12200,
         "elements"),
        (twiml("<Response>" + " " * 500_000 + "</Response>"), 400, 12100, "limit is 4000"),
        (twiml("<Response><Dial>"), 400, 12100, "does not parse"),
        (b"Twiml=%FF%FE%00<Response/>", 400, 12100, "Twiml"),
        (twiml("x") + "&" + "a" * (1024 * 1024), 413, 20001, "limit"),
    ],
    ids=["say", "conference", "billion-laughs", "external-entity", "deep-nesting",
         "huge-twiml", "unclosed", "bad-bytes", "huge-body"],
)  # fmt: skip
def test_hostile_or_unsupported_twiml_is_answered_in_twilios_error_shape(
    api: Api, queue: Queue, body: str | bytes, status: int, code: int, says: str
) -> None:
    call_id = joined_call(api, queue, COLD)
    response = update(api, call_id, body)
    assert response.status_code == status
    assert set(response.json_body) == TWILIO_ERROR_KEYS
    assert (response.json_body["code"], response.json_body["status"]) == (code, status)
    assert response.json_body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert says in response.json_body["message"]
    assert transfers(queue) == []


def test_twiml_with_the_wrong_credentials_is_refused_in_twilios_shape(
    api: Api, queue: Queue
) -> None:
    call_id = joined_call(api, queue, COLD)
    document = twiml("<Response><Dial><Sip>sip:operator@pbx.example.test</Sip></Dial></Response>")
    response = update(api, call_id, document, token="0" * 32)
    assert (response.status_code, response.json_body["code"]) == (401, 20003)
    assert transfers(queue) == []


def test_the_sip_password_attribute_is_encrypted_into_the_command_and_never_echoed(
    api: Api, queue: Queue
) -> None:
    api.patch_sip(allowFreeTransferTargets=True)
    call_id = joined_call(api, queue, FREE)
    document = (
        '<Response><Dial><Sip username="admin" password="tw1ml-s3cret">'
        "sip:desk@partner.example.test</Sip></Dial></Response>"
    )
    response = update(api, call_id, twiml(document))
    assert response.status_code == 200
    assert "tw1ml-s3cret" not in response.body.decode()
    [command] = transfers(queue)
    assert command.username == "admin" and command.password_ciphertext is not None
    assert "tw1ml-s3cret" not in command.model_dump_json()
