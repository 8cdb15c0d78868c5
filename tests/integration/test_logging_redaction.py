"""No log line, metric or trace log carries a password, a fallback secret or a webhook secret."""

from __future__ import annotations

import pytest

from chalicelib.observability import logger
from tests.integration.harness import FALLBACK_SECRET, Api, FallbackServer, apply, load_vector
from tests.support.fakes import WEBHOOK_SECRET

REGISTRATION_PASSWORD = "hunter2-secret"
NEW_REGISTRATION_PASSWORD = "hunter3-secret"
TRUNK_PASSWORD = "trunk-secret-77"
SECOND_FALLBACK_SECRET = "fallback-secret-second-31"
SECRETS = [
    REGISTRATION_PASSWORD,
    NEW_REGISTRATION_PASSWORD,
    TRUNK_PASSWORD,
    FALLBACK_SECRET,
    SECOND_FALLBACK_SECRET,
    WEBHOOK_SECRET,
]


def _everything_a_user_does(api: Api, fallback: FallbackServer) -> None:
    registration_id = api.create_registration(password=REGISTRATION_PASSWORD)["registrationId"]
    api.patch(f"/api/sip/registrations/{registration_id}", {"password": NEW_REGISTRATION_PASSWORD})
    api.post(
        "/api/sip/registrations",
        {"username": "1002", "password": REGISTRATION_PASSWORD, "proxy": "pbx", "nope": 1},
    )
    apply(
        api,
        [
            {
                "eventId": "reg-1",
                "type": "registration_failed",
                "occurredAt": "2026-11-25T12:00:01Z",
                "registrationId": registration_id,
                "sipStatus": 403,
            }
        ],
    )
    sales = api.create_agent("sales")["agentId"]
    api.patch_sip(
        allowedCidrRanges=["203.0.113.0/24"],
        allowedAgents=[{"agentId": sales, "toUserPattern": "^sales$"}],
        fallbackHandler={"url": fallback.url, "secrets": [FALLBACK_SECRET, SECOND_FALLBACK_SECRET]},
    )
    fallback.answer_with({"startAgentCall": {"agentId": sales}})
    routed = api.invite().body["callId"]
    api.invite(sipCallId="fallback-1@carrier", toUri="sip:unknown@sip.example.test")
    fallback.answer_with(b"garbage")
    api.invite(sipCallId="fallback-2@carrier", toUri="sip:unknown@sip.example.test")
    api.invite(sipCallId="refused@carrier", sourceIp="198.51.100.1")
    assert [call.signature_ok for call in fallback.calls] == [True, True]
    apply(api, load_vector("incoming_hangup", routed))
    outgoing = {"to": "sip:+15557654321@carrier.test", "from": "+1555", "password": TRUNK_PASSWORD}
    placed = api.dial(sales, outgoing=outgoing)
    assert placed.status == 201
    call_id = placed.body["callId"]
    api.dial(sales, outgoing=outgoing | {"to": "not a uri"})
    api.delete(f"/api/calls/{call_id}")
    api.webhook("/webhooks/sip/invite", b"{}", secret="wrong")


def test_no_log_line_carries_a_password_or_a_secret(
    api: Api,
    fallback_server: FallbackServer,
    log_output: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _everything_a_user_does(api, fallback_server)

    captured = log_output.readouterr()
    text = captured.out + captured.err + caplog.text

    assert '"message":"outgoing call created"' in captured.out  # the logs were captured
    assert '"message":"invite accepted"' in captured.out
    assert '"message":"webhook refused"' in captured.out
    assert [secret for secret in SECRETS if secret in text] == []


def test_secret_looking_fields_given_to_the_logger_are_redacted(
    log_output: pytest.CaptureFixture[str],
) -> None:
    logger.info(
        "diagnostic",
        extra={
            "password": REGISTRATION_PASSWORD,
            "nested": {"fallback_secrets": [FALLBACK_SECRET]},
        },
    )

    out = log_output.readouterr().out

    assert '"message":"diagnostic"' in out
    assert REGISTRATION_PASSWORD not in out
    assert FALLBACK_SECRET not in out
