"""An outgoing call's flow (``relay/calls/outgoing.py``) driven directly, in-process.

The real SIP endpoint places the call; the callee is written here from RFC 3261's text
(``dialing.py``); the agent is a scripted WebSocket server on 127.0.0.1; the clock simulated.

Expected values come from independent sources: the outcome of each final status from issue 9's
table ("486/600 BUSY, 404/484/604 INVALID_NUMBER, 408/480/no answer TIMEOUT, 487 CANCELED,
403/603 REJECTED, 502/503/504 DESTINATION_UNAVAILABLE, anything else UNKNOWN; endReason
``unjoined`` when never answered"), read from the recorded events by the control plane's own
summary (``chalicelib.call_outcome.summarize``); the messages from RFC 3261 (§9.1 CANCEL,
§17.1.1.3 the ACK of a failure, §22 the digest retry with a new CSeq); the digest answer checked
by ``tests/interop/digest.py`` (RFC 7616 §3.4.1 in hashlib); what the agent is told from
docs/agents.md; the events from docs/relay.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from chalicelib.call_outcome import summarize
from chalicelib.contracts import CallEvent
from relay.sip.address import Address, Transport, TransportFailure
from relay.sip.syntax.message import Request
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.calls.dialing import (
    CALL_ID,
    Callee,
    DialWire,
    dial_command,
    encrypted,
)
from tests.interop import digest
from tests.support.ports import free_port
from tests.support.virtual_time import run_in_virtual_time

NOBODY = "ws://127.0.0.1:9/agent"
"""An agent URL for calls that are never answered (nothing listens; it is never tried)."""


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    run_in_virtual_time(scenario, timeout_s=300.0)


def outcome(events: list[CallEvent]) -> tuple[str | None, str | None]:
    """The call's ``endReason`` and ``sipDetails.terminationReason``, as the API reports them."""
    summary = summarize(events)
    end = summary.end_reason.value if summary.end_reason else None
    termination = summary.termination_reason.value if summary.termination_reason else None
    return end, termination


async def rejected_with(status: int, reason: str) -> DialWire:
    """Dial; the callee sends 100, 180, then ``status``; the relay ACKs it (§17.1.1.3)."""
    wire = DialWire()
    callee = Callee()
    wire.dial(dial_command(NOBODY))
    invite = await wire.request("INVITE")
    wire.send(callee.response(invite, 100, "Trying"))
    wire.send(callee.ringing(invite))
    wire.send(callee.response(invite, status, reason))
    ack = await wire.request("ACK")
    assert ack.cseq.number == invite.cseq.number and ack.headers.get("Via") == invite.headers.get(
        "Via"
    )  # the ACK of a non-2xx is part of the INVITE transaction
    await wire.until_done()
    return wire


ISSUE_TABLE = [
    (486, "Busy Here", "SIP_TERMINATION_BUSY"),
    (600, "Busy Everywhere", "SIP_TERMINATION_BUSY"),
    (404, "Not Found", "SIP_TERMINATION_INVALID_NUMBER"),
    (484, "Address Incomplete", "SIP_TERMINATION_INVALID_NUMBER"),
    (604, "Does Not Exist Anywhere", "SIP_TERMINATION_INVALID_NUMBER"),
    (408, "Request Timeout", "SIP_TERMINATION_TIMEOUT"),
    (480, "Temporarily Unavailable", "SIP_TERMINATION_TIMEOUT"),
    (487, "Request Terminated", "SIP_TERMINATION_CANCELED"),
    (403, "Forbidden", "SIP_TERMINATION_REJECTED"),
    (603, "Decline", "SIP_TERMINATION_REJECTED"),
    (502, "Bad Gateway", "SIP_TERMINATION_DESTINATION_UNAVAILABLE"),
    (503, "Service Unavailable", "SIP_TERMINATION_DESTINATION_UNAVAILABLE"),
    (504, "Server Time-out", "SIP_TERMINATION_DESTINATION_UNAVAILABLE"),
    (488, "Not Acceptable Here", "SIP_TERMINATION_UNKNOWN"),
    (500, "Server Internal Error", "SIP_TERMINATION_UNKNOWN"),
    (302, "Moved Temporarily", "SIP_TERMINATION_UNKNOWN"),
]


@pytest.mark.parametrize(("status", "reason", "termination"), ISSUE_TABLE)
def test_each_final_status_ends_the_call_as_the_issue_table_says(
    status: int, reason: str, termination: str
) -> None:
    async def scenario() -> None:
        wire = await rejected_with(status, reason)
        assert wire.kinds() == ["invite_sent", "ringing", "leg_ended"]
        ended = wire.events[-1]
        assert (ended.reason, ended.sip_status) == ("rejected", status)
        assert outcome(wire.events) == ("unjoined", termination)

    run(scenario)


def test_the_leg_is_the_calls_caller_leg_and_starts_with_invite_sent() -> None:
    """docs/relay.md (Call events) and chalicelib/call_outcome.py: the outgoing call's callee is
    the caller-role leg; ids ``<callId>:<legId>:<n>``; ``ringing`` carries the 180."""

    async def scenario() -> None:
        wire = await rejected_with(486, "Busy Here")
        leg = wire.events[0].leg_id
        assert leg is not None and re.fullmatch(r"[0-9a-f]{16}", leg)
        for n, event in enumerate(wire.events, start=1):
            assert event.event_id == f"{CALL_ID}:{leg}:{n}"
            assert (event.call_id, event.leg_id, event.leg_role) == (CALL_ID, leg, "caller")
        assert wire.events[1].sip_status == 180
        assert wire.events[0].occurred_at <= wire.events[1].occurred_at

    run(scenario)


def test_the_invite_offers_the_commands_codecs_with_telephone_event_from_the_from_user() -> None:
    """RFC 3264 §5 / RFC 4733: our offer; the From user is the command's ``from``; the
    Request-URI the normalised ``to`` (docs/api.md)."""

    async def scenario() -> None:
        wire = DialWire()
        wire.dial(dial_command(NOBODY, to="+15551234567@127.0.0.1:5070"))  # Twilio's form
        invite = await wire.request("INVITE")
        wire.send(Callee().response(invite, 486, "Busy Here"))
        await wire.until_done()
        assert str(invite.uri) == "sip:+15551234567@127.0.0.1:5070"
        assert "<sip:+15557654321@" in (invite.headers.get("From") or "")
        sdp = invite.body.decode()
        assert invite.headers.get("Content-Type") == "application/sdp"
        assert re.search(r"^m=audio \d+ RTP/AVP 0 8 101\r$", sdp, re.M), sdp
        assert "a=rtpmap:101 telephone-event/8000" in sdp

    run(scenario)


# --- answered -------------------------------------------------------------------------------


async def answered(wire: DialWire, agent: Agent, callee: Callee) -> tuple[Request, dict[str, Any]]:
    invite = await wire.request("INVITE")
    wire.send(callee.response(invite, 100, "Trying"))
    wire.send(callee.ringing(invite))
    wire.send(callee.answer(invite))
    await wire.request("ACK")
    assert (await agent.next_json())["event"] == "connected"
    start = await agent.next_json()
    assert start["event"] == "start"
    return invite, start


def test_an_answered_call_reaches_the_agent_and_the_callees_bye_ends_it() -> None:
    """docs/relay.md: ``invite_sent``, ``ringing`` (180), ``answered`` (200), ``agent_joined``;
    the callee's BYE gets 200, the agent ``stop``; ``agent_left``, ``leg_ended``
    ``remote_hangup``: ``hangup`` and SIP_TERMINATION_NORMAL. docs/agents.md: the agent is told
    ``direction`` ``outgoing``, ``from_number`` the From user, ``to_number`` the callee."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url:
            wire = DialWire()
            callee = Callee()
            wire.dial(dial_command(url))
            invite, start = await answered(wire, agent, callee)
            wire.send(callee.bye(invite))
            await wire.next_sent(lambda m: not isinstance(m, Request) and m.cseq.method == "BYE")
            await wire.until_done()
            assert (await agent.next_event("stop"))["event"] == "stop"

        parameters = start["start"]["customParameters"]
        assert parameters["direction"] == "outgoing"
        assert (parameters["from_number"], parameters["to_number"]) == (
            "+15557654321", "+15551234567"
        )  # fmt: skip
        assert parameters["call_id"] == CALL_ID
        assert start["start"]["callSid"] == "CA" + CALL_ID.replace("-", "")
        assert [(e.type.value, e.sip_status) for e in wire.events] == [
            ("invite_sent", None), ("ringing", 180), ("answered", 200), ("agent_joined", None),
            ("agent_left", None), ("leg_ended", None),
        ]  # fmt: skip
        assert wire.events[-1].reason == "remote_hangup"
        assert outcome(wire.events) == ("hangup", "SIP_TERMINATION_NORMAL")

    run(scenario)


def test_an_api_hang_up_after_the_answer_sends_bye() -> None:
    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url:
            wire = DialWire()
            callee = Callee()
            flow = wire.dial(dial_command(url))
            await answered(wire, agent, callee)
            flow.signals.hang_up_requested.set()
            bye = await wire.request("BYE")
            wire.send(callee.response(bye, 200, "OK"))
            await wire.until_done()

        assert wire.kinds()[-2:] == ["agent_left", "leg_ended"]
        assert (wire.events[-1].reason, wire.events[-1].detail) == ("local_hangup", "api_hang_up")
        assert outcome(wire.events) == ("agent_hangup", "SIP_TERMINATION_NORMAL")

    run(scenario)


def test_max_duration_counts_from_the_answer() -> None:
    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url:
            wire = DialWire()
            callee = Callee()
            wire.dial(dial_command(url, maxDurationS=20.0))  # under the 30 s media timeout
            await answered(wire, agent, callee)
            answered_at = asyncio.get_running_loop().time()
            bye = await wire.request("BYE", timeout_s=60.0)
            ended_at = asyncio.get_running_loop().time()
            wire.send(callee.response(bye, 200, "OK"))
            await wire.until_done()

        assert ended_at - answered_at == pytest.approx(20.0, abs=0.1)
        assert (wire.events[-1].reason, wire.events[-1].detail) == ("timeout", "max_duration")

    run(scenario)


def test_an_agent_that_cannot_be_reached_after_the_answer_gets_the_callee_a_bye() -> None:
    """The brief: "An agent that cannot be reached after the answer -> BYE and leg_ended error
    agent_unreachable"; the agent never joined: ``unjoined``."""

    async def scenario() -> None:
        wire = DialWire()
        callee = Callee()
        wire.dial(dial_command(f"ws://127.0.0.1:{free_port()}/agent", joinTimeoutS=1))
        invite = await wire.request("INVITE")
        wire.send(callee.answer(invite))
        bye = await wire.request("BYE")
        wire.send(callee.response(bye, 200, "OK"))
        await wire.until_done()
        assert wire.kinds() == ["invite_sent", "answered", "leg_ended"]
        ended = wire.events[-1]
        assert (ended.reason, ended.detail) == ("error", "agent_unreachable")
        assert outcome(wire.events) == ("unjoined", "SIP_TERMINATION_ERROR")

    run(scenario)


def test_the_agents_digits_go_as_sip_info_when_the_callee_has_no_telephone_event() -> None:
    """docs/agents.md (sending digits to the caller) and docs/codecs.md: without
    ``telephone-event`` in the answer, each digit is an INFO ``application/dtmf-relay``
    (``Signal=1``, ``Duration=100``) in the dialog."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url:
            wire = DialWire()
            callee = Callee()
            wire.dial(dial_command(url))
            invite = await wire.request("INVITE")
            wire.send(callee.answer(invite, events=False))
            assert (await agent.next_json())["event"] == "connected"
            await agent.next_json()
            await agent.send({"event": "dtmf", "dtmf": {"digits": "1#"}})
            first = await wire.request("INFO")
            wire.send(callee.response(first, 200, "OK"))
            second = await wire.request("INFO", nth=2)
            wire.send(callee.response(second, 200, "OK"))
            wire.send(callee.bye(invite))
            await wire.until_done()

        assert [r.headers.get("Content-Type") for r in (first, second)] == [
            "application/dtmf-relay"
        ] * 2
        assert [r.body for r in (first, second)] == [
            b"Signal=1\r\nDuration=100\r\n",
            b"Signal=#\r\nDuration=100\r\n",
        ]
        assert first.call_id == invite.call_id

    run(scenario)


# --- cancelled, timed out -------------------------------------------------------------------


async def cancelled(wire: DialWire, callee: Callee) -> Request:
    """The callee rings; after the relay's CANCEL, answers it 200 and the INVITE 487 (§9.2)."""
    invite = await wire.request("INVITE")
    wire.send(callee.response(invite, 100, "Trying"))
    wire.send(callee.ringing(invite))
    cancel = await wire.request("CANCEL")
    wire.send(callee.response(cancel, 200, "OK"))
    wire.send(callee.response(invite, 487, "Request Terminated"))
    await wire.request("ACK")
    await wire.until_done()
    return cancel


def test_an_api_hang_up_while_ringing_cancels_and_ends_canceled() -> None:
    """RFC 3261 §9.1: the CANCEL has the INVITE's Request-URI, Call-ID, From, To, CSeq number
    and top Via; no INVITE follows it."""

    async def scenario() -> None:
        wire = DialWire()
        callee = Callee()
        flow = wire.dial(dial_command(NOBODY))
        invite = await wire.request("INVITE")
        wire.send(callee.response(invite, 100, "Trying"))
        wire.send(callee.ringing(invite))
        await asyncio.sleep(3)
        flow.signals.hang_up_requested.set()
        cancel = await cancelled(wire, callee)
        assert str(cancel.uri) == str(invite.uri)
        assert cancel.call_id == invite.call_id
        assert (cancel.cseq.number, cancel.cseq.method) == (invite.cseq.number, "CANCEL")
        assert cancel.headers.get("Via") == invite.headers.get("Via")
        assert cancel.headers.get("From") == invite.headers.get("From")
        assert len(wire.requests("INVITE")) == 1 or all(
            r.headers.get("Via") == invite.headers.get("Via") for r in wire.requests("INVITE")
        )  # retransmissions of the one INVITE only
        assert wire.kinds() == ["invite_sent", "ringing", "leg_ended"]
        assert (wire.events[-1].reason, wire.events[-1].sip_status) == ("local_hangup", 487)
        assert outcome(wire.events) == ("unjoined", "SIP_TERMINATION_CANCELED")

    run(scenario)


def test_no_answer_within_the_ring_timeout_cancels_and_ends_timeout() -> None:
    async def scenario() -> None:
        wire = DialWire(ring_timeout_s=20.0)
        callee = Callee()
        wire.dial(dial_command(NOBODY))
        invite = await wire.request("INVITE")
        started = asyncio.get_running_loop().time()
        wire.send(callee.ringing(invite))
        await wire.request("CANCEL", timeout_s=60.0)
        cancelled_after = asyncio.get_running_loop().time() - started
        await cancelled(wire, callee)
        assert cancelled_after == pytest.approx(20.0, abs=0.1)
        assert wire.kinds() == ["invite_sent", "ringing", "leg_ended"]
        assert wire.events[-1].reason == "timeout"
        assert outcome(wire.events) == ("unjoined", "SIP_TERMINATION_TIMEOUT")

    run(scenario)


# --- digest ---------------------------------------------------------------------------------

CHALLENGE = (
    'Digest realm="sipline.test", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
    'opaque="5ccc069c403ebaf9f0171e9517f40e41", algorithm={algorithm}, qop="auth"'
)


@pytest.mark.parametrize(
    ("status", "header"), [(401, "WWW-Authenticate"), (407, "Proxy-Authenticate")]
)
@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_a_challenge_is_answered_with_the_decrypted_password(
    status: int, header: str, algorithm: str
) -> None:
    """RFC 3261 §22.2/§22.3: a new INVITE with a CSeq one higher and the credentials; the
    answer checks out against the password the API was given (RFC 7616 §3.4.1)."""
    answer_header = "Authorization" if status == 401 else "Proxy-Authorization"

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url:
            wire = DialWire()
            callee = Callee()
            command = dial_command(
                url, username="trunkuser", passwordCiphertext=encrypted("trunk-secret-1")
            )
            wire.dial(command)
            first = await wire.request("INVITE")
            challenge = CHALLENGE.format(algorithm=algorithm)
            wire.send(
                callee.response(first, status, "Unauthorized", extra=f"{header}: {challenge}\r\n")
            )
            retry = await wire.next_sent(
                lambda m: isinstance(m, Request) and m.method == "INVITE"
                and m.cseq.number == first.cseq.number + 1
            )  # fmt: skip
            assert isinstance(retry, Request)
            wire.send(callee.answer(retry))
            await wire.request("ACK", nth=2)
            assert (await agent.next_json())["event"] == "connected"
            wire.send(callee.bye(retry))
            await wire.until_done()

        credentials = retry.headers.get(answer_header)
        assert credentials is not None
        assert digest.verify(
            credentials,
            method="INVITE",
            password="trunk-secret-1",
            challenge=challenge,
            username="trunkuser",
        )
        assert retry.call_id == first.call_id
        assert "trunk-secret-1" not in repr(wire.events) and "trunk-secret-1" not in repr(wire.flow)
        assert outcome(wire.events) == ("hangup", "SIP_TERMINATION_NORMAL")

    run(scenario)


def test_a_second_challenge_after_credentials_ends_rejected_with_its_status() -> None:
    """Issue 9: "a second challenge after credentials were sent ends the call
    SIP_TERMINATION_REJECTED with the status, never a loop"."""

    async def scenario() -> None:
        wire = DialWire()
        callee = Callee()
        wire.dial(dial_command(NOBODY, username="trunkuser", passwordCiphertext=encrypted("bad")))
        challenge = "WWW-Authenticate: " + CHALLENGE.format(algorithm="MD5") + "\r\n"
        first = await wire.request("INVITE")
        wire.send(callee.response(first, 401, "Unauthorized", extra=challenge))
        retry = await wire.next_sent(
            lambda m: isinstance(m, Request) and m.method == "INVITE" and m.cseq.number == 2
        )
        assert isinstance(retry, Request)
        wire.send(callee.response(retry, 401, "Unauthorized", extra=challenge))
        await wire.until_done()
        assert {r.cseq.number for r in wire.requests("INVITE")} == {1, 2}
        assert (wire.events[-1].reason, wire.events[-1].sip_status) == ("rejected", 401)
        assert outcome(wire.events) == ("unjoined", "SIP_TERMINATION_REJECTED")

    run(scenario)


# --- before the INVITE ----------------------------------------------------------------------


def test_a_password_under_another_key_ends_the_call_without_an_invite() -> None:
    async def scenario() -> None:
        from chalicelib.crypto import FernetCipher, generate_fernet_key

        other = FernetCipher(generate_fernet_key()).encrypt("trunk-secret-1")
        wire = DialWire()
        wire.dial(dial_command(NOBODY, username="trunkuser", passwordCiphertext=other))
        await wire.until_done()
        assert wire.sent == []
        assert wire.kinds() == ["invite_sent", "leg_ended"]
        ended = wire.events[-1]
        assert (ended.reason, ended.detail) == ("error", "credentials_unavailable")
        assert ended.occurred_at == wire.events[0].occurred_at  # no SIP time billed
        assert summarize(wire.events).bill.billed_sip_seconds == 0
        assert outcome(wire.events) == ("unjoined", "SIP_TERMINATION_ERROR")

    run(scenario)


def test_a_destination_the_egress_policy_refuses_ends_destination_unavailable() -> None:
    """docs/relay.md (Finding the callee's server): a private address is refused unless
    ``SIPLINE_ALLOWED_PRIVATE_TARGETS`` opens its range; no INVITE is sent."""

    async def scenario() -> None:
        wire = DialWire()
        wire.dial(dial_command(NOBODY, to="sip:+15551234567@192.168.1.10"))
        await wire.until_done()
        assert wire.sent == []
        ended = wire.events[-1]
        assert (ended.sip_status, ended.detail) == (503, "destination_unavailable")
        assert outcome(wire.events) == ("unjoined", "SIP_TERMINATION_DESTINATION_UNAVAILABLE")

    run(scenario)


def test_a_tls_target_whose_certificate_does_not_verify_ends_tls_verification_failed() -> None:
    """docs/relay.md (How an unanswered outgoing call ends): the transport's TLS verification
    failure (``TransportFailure.TLS_UNVERIFIED``) ends the call 503 with a detail that says so;
    the target named its server (the IP literal of ``to``) for the transport to check."""

    async def scenario() -> None:
        wire = DialWire()
        wire.dial(dial_command(NOBODY, to="sip:+15551234567@127.0.0.1:5071;transport=tls"))
        await wire.request("INVITE")
        [(_, destination)] = wire.sent
        assert destination == Address("127.0.0.1", 5071, Transport.TLS, server_name="127.0.0.1")
        now = asyncio.get_running_loop().time()
        wire.endpoint.transport_error(destination, now, TransportFailure.TLS_UNVERIFIED)
        wire.drain()
        await wire.until_done()
        ended = wire.events[-1]
        assert (ended.reason, ended.sip_status) == ("rejected", 503)
        assert ended.detail == "tls_verification_failed"
        assert outcome(wire.events) == ("unjoined", "SIP_TERMINATION_DESTINATION_UNAVAILABLE")

    run(scenario)
