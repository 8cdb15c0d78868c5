"""The relay process (``relay/service.py``) in the test's event loop: when it answers 503, and
the commands it takes from SQS.

The 503s run against the relay tests' control plane stand-in; the commands against moto server
and, for ``DELETE /api/calls/{callId}``, the real control plane (``chalice local``) started the
way ``make dev`` starts it (``scripts/localstack.py``). Expected values come from docs/relay.md
(The call, step 3; Shutting down; Commands) and docs/api.md (``DELETE /api/calls/{callId}``,
``endReason``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from chalicelib.commands import SqsCommandSender
from chalicelib.contracts import (
    DialClaim,
    EdgeCommand,
    HangUpCommand,
    RegisterCommand,
    TransferCommand,
    TransferOutcomeCommand,
    UnregisterCommand,
)
from relay.config import RelaySettings
from relay.control.webhooks import INVITE_PATH, ControlPlaneUnavailable
from scripts.localstack import Credentials, LocalStack, free_port
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.calls.dialing import dial_command
from tests.integration.relay.calls.udp_callee import UdpCallee
from tests.integration.relay.control.fake_control_plane import FakeControlPlane, Reply
from tests.integration.relay.harness import (
    WAIT_S,
    ControlPlane,
    GatedControlPlane,
    Phone,
    accepting,
    run,
    running,
    settings_for,
    start,
    until,
)
from tests.interop import digest
from tests.support.queues import queue_name

NOBODY = "ws://127.0.0.1:9/agent"
DIAL_REDELIVERED_S = 45.0
"""Bound on a command's arrival on the shared queue when a relay an earlier test stopped still
had a long poll there, which took it: its 30 s visibility timeout, then the next poll."""

BUSY = {"action": "reject", "sipStatus": 486, "reason": "busy_here"}


async def _connected(agent: Agent) -> None:
    assert (await agent.next_json())["event"] == "connected"
    assert (await agent.next_json())["event"] == "start"


# --- 503 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("control", "decision_timeout_s", "retry_after"),
    [
        (None, 4.0, "5"),
        (
            {"script": lambda path: Reply(503, b"busy", headers={"Retry-After": "30"})
             if path == INVITE_PATH else None},
            4.0,
            "30",
        ),
        ("gated", 0.2, "5"),
    ],
    ids=["refused-connection", "503-with-retry-after", "no-answer-in-time"],
)  # fmt: skip
def test_the_caller_gets_503_with_retry_after_while_the_control_plane_is_down(
    tmp_path: Path, control: Any, decision_timeout_s: float, retry_after: str
) -> None:
    """docs/relay.md, The call, step 3: when the control plane refuses the connection, does not
    answer in time or answers 5xx, the caller gets ``503 Service Unavailable`` with Retry-After:
    the control plane's own when it sent one, else ``SIPLINE_RETRY_AFTER_S`` (default 5)."""

    async def scenario() -> None:
        if control == "gated":
            stand_in: FakeControlPlane = GatedControlPlane()
        else:
            stand_in = ControlPlane(**(control or {}))
        if control is not None:
            await stand_in.start()
        settings = settings_for(stand_in.url, tmp_path, decision_timeout_s=decision_timeout_s)
        assert settings.retry_after_s == RelaySettings().retry_after_s == 5
        try:
            async with running(settings) as relay, Phone(relay.port) as phone:
                phone.invite()
                final = await phone.answered()
                await until(lambda: not relay.service.flows)
        finally:
            if isinstance(stand_in, GatedControlPlane):
                stand_in.gate.set()
            await stand_in.stop()

        assert (final.status, final.reason) == (503, "Service Unavailable")
        assert final.headers.get("Retry-After") == retry_after
        assert stand_in.applied == {}  # no call, no event

    run(scenario)


def test_an_invite_arriving_while_the_relay_shuts_down_gets_503_with_retry_after_1(
    tmp_path: Path,
) -> None:
    """docs/relay.md, Shutting down: INVITEs that arrive before the relay is ready, or once it
    has begun to shut down, get 503 with ``Retry-After: 1`` (the carrier tries another relay),
    never a call the relay will drop when it exits. The shutdown is held open by a call whose
    decision the control plane has not given yet."""

    async def scenario() -> None:
        control = GatedControlPlane(decision=BUSY)
        await control.start()
        try:
            relay = await start(settings_for(control.url, tmp_path))
            async with Phone(relay.port) as first, Phone(relay.port) as second:
                first.invite()
                await until(lambda: control.waiting == 1)
                relay.stop_event.set()  # what SIGTERM does: the shutdown hangs up every call
                [flow] = relay.service.flows.values()
                await until(flow.signals.hang_up_requested.is_set)
                second.invite()
                answer = asyncio.ensure_future(second.answered())
                await until(lambda: answer.done() or control.waiting > 1)
                assert control.waiting == 1, "a call was started during the shutdown"
                refused = await answer
                control.gate.set()  # the first call's decision; the shutdown goes on
                held = await first.answered()
                await relay.stop()
        finally:
            control.gate.set()
            await control.stop()

        assert (refused.status, refused.reason) == (503, "Service Unavailable")
        assert refused.headers.get("Retry-After") == "1"
        assert held.status == BUSY["sipStatus"]
        assert control.waiting == 1  # the second INVITE never reached the control plane

    run(scenario)


# --- commands ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """moto server and ``chalice local`` on free ports, as ``make dev`` runs them (no relay)."""
    home = tmp_path_factory.mktemp("control-plane")
    local = LocalStack(
        Credentials.load_or_create(home / "credentials.json"),
        moto_port=free_port(),
        api_port=free_port(),
        log_dir=home / "logs",
        state_dir=home,
    )
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture
def sqs(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An SQS client of the stack's moto; the relay's own client finds it through the same
    environment (``AWS_ENDPOINT_URL``)."""
    for name, value in stack.aws_environment().items():
        monkeypatch.setenv(name, value)
    return boto3.client("sqs")


def _queues(sqs: Any, name: str) -> tuple[str, str]:
    """A command queue and a dead-letter queue of their own (no redrive policy between them)."""
    name = queue_name(name)
    return (
        sqs.create_queue(QueueName=name)["QueueUrl"],
        sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"],
    )


def _held(sqs: Any, url: str) -> int:
    """Messages the queue holds: visible, in flight or delayed."""
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(
        int(attributes[name])
        for name in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    )


def _commands_settings(
    control_url: str, spool: Path, queue: str, dead_letters: str, **overrides: Any
) -> RelaySettings:
    return settings_for(
        control_url,
        spool,
        command_queue_url=queue,
        command_dead_letter_queue_url=dead_letters,
        **overrides,
    )


def _api(stack: LocalStack, method: str, path: str, body: Any = None) -> requests.Response:
    headers = {"X-API-Key": stack.credentials.api_key}
    return requests.request(method, stack.api_url + path, json=body, headers=headers, timeout=10)


def _routed_agent(stack: LocalStack, agent_url: str, pattern: str) -> str:
    """An agent at ``agent_url`` for To users matching ``pattern``; 127.0.0.1 allowed in."""
    template = {"mediaEndpoint": {"url": agent_url, "framing": "twilio"}}
    name = pattern.strip("^$")
    created = _api(stack, "POST", "/api/agents", {"name": name, "callTemplate": template})
    assert created.status_code == 201, created.text
    agent_id: str = created.json()["agentId"]
    rules = [{"agentId": agent_id, "toUserPattern": pattern}]
    patched = _api(
        stack,
        "PATCH",
        "/api/sip",
        {"allowedAgents": rules, "allowedCidrRanges": ["127.0.0.1/32"]},
    )
    assert patched.status_code == 200, patched.text
    return agent_id


async def _call_of(stack: LocalStack, agent_id: str) -> dict[str, Any]:
    listed = await asyncio.to_thread(_api, stack, "GET", f"/api/calls?agentIds={agent_id}")
    assert listed.status_code == 200, listed.text
    [call] = listed.json()["results"]
    return dict(call)


async def _ended(stack: LocalStack, call_id: str) -> dict[str, Any]:
    """Poll the call until it has ended (bounded)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            reply = await asyncio.to_thread(_api, stack, "GET", f"/api/calls/{call_id}")
            assert reply.status_code == 200, reply.text
            if reply.json().get("ended") is not None:
                return dict(reply.json())
            await asyncio.sleep(0.1)


@pytest.mark.e2e
def test_a_hang_up_through_the_api_reaches_the_caller_as_bye(
    stack: LocalStack, sqs: Any, tmp_path: Path
) -> None:
    """docs/api.md: ``DELETE /api/calls/{callId}`` answers 204 and sends a ``hangup`` command to
    the relay holding the call, on its own queue (docs/relay.md, Commands); the relay sends
    ``stop`` to the agent and BYE to the caller, and the call ends with ``endReason``
    ``agent_hangup``."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url:
            agent_id = await asyncio.to_thread(_routed_agent, stack, url, "^api_hang_up$")
            settings = _commands_settings(
                stack.api_url,
                tmp_path,
                stack.queue_url,
                stack.dead_letter_queue_url,
                webhook_secret=stack.credentials.webhook_secret,
            )
            async with running(settings) as relay, Phone(relay.port) as phone:
                phone.invite("api_hang_up")
                assert (await phone.answered()).status == 200
                await _connected(agent)
                call = await _call_of(stack, agent_id)
                deleted = await asyncio.to_thread(
                    _api, stack, "DELETE", f"/api/calls/{call['callId']}"
                )
                assert deleted.status_code == 204, deleted.text
                bye = await phone.request("BYE")
                stop = await agent.next_event("stop")
                ended = await _ended(stack, call["callId"])
                assert relay.service.commands is not None
                assert relay.service.edge_commands is not None
                handled = relay.service.commands.stats.handled
                handled_here = relay.service.edge_commands.stats.handled

        assert bye.call_id == phone.call_id
        assert stop["event"] == "stop"
        assert ended["endReason"] == "agent_hangup"
        assert (handled, handled_here) == (0, 1)
        assert _held(sqs, stack.queue_url) == 0  # taken in charge, then deleted

    run(scenario)


OTHER_CALL = "01a212bf-0000-7000-8000-000000000000"


@pytest.mark.parametrize(
    "other",
    [
        HangUpCommand(call_id=OTHER_CALL),
        TransferCommand(
            call_id=OTHER_CALL, transfer_id="t-1", kind="cold", method="REFER",
            target="sip:desk@pbx.example.com",
        ),
        TransferOutcomeCommand(call_id=OTHER_CALL, transfer_id="t-1", accepted=True),
    ],
    ids=["hangup", "transfer", "transfer_outcome"],
)  # fmt: skip
def test_a_command_for_a_call_this_relay_does_not_hold_is_passed_on_not_deleted(
    stack: LocalStack,
    sqs: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    other: HangUpCommand | TransferCommand | TransferOutcomeCommand,
) -> None:
    """docs/relay.md, Commands: a ``hangup`` (or a ``transfer``, a ``transfer_outcome``) for a
    call this relay does not hold is re-sent to the queue with ``hops`` one higher (for the relay
    that holds it), never deleted; the call the relay does hold goes on."""
    queue, dead_letters = _queues(sqs, request.node.name)

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url:
            control = ControlPlane(decision=accepting(url))
            await control.start()
            try:
                settings = _commands_settings(control.url, tmp_path, queue, dead_letters)
                async with running(settings) as relay, Phone(relay.port) as phone:
                    phone.invite()
                    assert (await phone.answered()).status == 200
                    await _connected(agent)
                    await asyncio.to_thread(SqsCommandSender(sqs, queue).send, other)
                    consumer = relay.service.commands
                    assert consumer is not None
                    await until(lambda: consumer.stats.passed_on >= 2)
                    assert consumer.stats.handled == 0
                    assert not any(r.method == "BYE" for r in phone.requests)
                    assert (await phone.bye()).status == 200
            finally:
                await control.stop()

    run(scenario)
    assert _held(sqs, queue) >= 1  # still there for the relay that holds the call
    assert _held(sqs, dead_letters) == 0


def _register() -> RegisterCommand:
    return RegisterCommand(
        registration_id="reg-1",
        username="1001",
        password_ciphertext="fernet:x",
        proxy="pbx.example.test",
    )


@pytest.mark.parametrize(
    "command",
    [_register(), UnregisterCommand(registration_id="reg-1")],
    ids=["register", "unregister"],
)
def test_a_command_type_the_relay_has_no_handler_for_is_passed_on_not_deleted(
    stack: LocalStack,
    sqs: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    command: EdgeCommand,
) -> None:
    """docs/relay.md, Commands: ``register`` and ``unregister`` are not implemented
    yet: passed on (re-sent with ``hops``), then dead-lettered after 200 hops; never deleted
    as if handled."""
    queue, dead_letters = _queues(sqs, request.node.name)
    SqsCommandSender(sqs, queue).send(command)

    async def scenario() -> None:
        settings = _commands_settings(free_control_url(), tmp_path, queue, dead_letters)
        async with running(settings) as relay:
            consumer = relay.service.commands
            assert consumer is not None
            await until(lambda: consumer.stats.passed_on >= 2)
            assert consumer.stats.handled == 0

    run(scenario)
    assert _held(sqs, queue) >= 1  # passed on, still there (a relay's last poll may hold it)
    assert _held(sqs, dead_letters) == 0


def free_control_url() -> str:
    """A control plane URL nobody answers (these tests need none)."""
    return f"http://127.0.0.1:{free_port()}"


def test_a_poison_command_is_moved_to_the_dead_letter_queue_with_its_reason(
    stack: LocalStack, sqs: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """docs/relay.md, Commands: a message that does not parse is handed back until it has been
    received 5 times, then dead-lettered: moved to ``SIPLINE_COMMAND_DLQ_URL`` with a ``reason``
    attribute. (Received 4 times already here, so the relay's receive is the fifth.)"""
    queue, dead_letters = _queues(sqs, request.node.name)
    sqs.send_message(QueueUrl=queue, MessageBody="not a command")
    for _ in range(4):
        [message] = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0)["Messages"]

    async def scenario() -> None:
        settings = _commands_settings(free_control_url(), tmp_path, queue, dead_letters)
        async with running(settings) as relay:
            consumer = relay.service.commands
            assert consumer is not None
            await until(lambda: consumer.stats.poison == 1)

    run(scenario)
    assert _held(sqs, queue) == 0
    [moved] = sqs.receive_message(QueueUrl=dead_letters, MessageAttributeNames=["All"])["Messages"]
    assert moved["Body"] == "not a command"
    assert moved["MessageAttributes"]["reason"]["StringValue"].startswith("unparseable")


# --- dial --------------------------------------------------------------------------------------

CHALLENGE = (
    'WWW-Authenticate: Digest realm="sipline.test", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
    'algorithm=MD5, qop="auth"\r\n'
)


def test_a_call_placed_through_the_api_is_dialled_and_a_hang_up_while_ringing_cancels_it(
    stack: LocalStack, sqs: Any, tmp_path: Path
) -> None:
    """docs/api.md: ``POST /api/agents/{agentId}/calls`` with ``medium.sip.outgoing`` sends a
    ``dial``; the relay answers the trunk's 401 with the password given to the API (encrypted by
    the control plane, decrypted by the relay: RFC 7616 §3.4.1, checked by
    ``tests/interop/digest.py``); a ``hangup`` while it rings is a CANCEL (RFC 3261 §9.1), and
    the call ends ``unjoined`` with ``SIP_TERMINATION_CANCELED`` (docs/relay.md, How an unanswered
    outgoing call ends)."""

    async def scenario() -> None:
        agent = Agent()
        async with agent_server(agent) as url, UdpCallee() as callee:
            agent_id = await asyncio.to_thread(_routed_agent, stack, url, "^dial_cancel$")
            settings = _commands_settings(
                stack.api_url,
                tmp_path,
                stack.queue_url,
                stack.dead_letter_queue_url,
                webhook_secret=stack.credentials.webhook_secret,
                password_key=stack.credentials.password_key,
            )
            async with running(settings):
                outgoing = {
                    "to": callee.uri(),
                    "from": "+15557654321",
                    "username": "trunkuser",
                    "password": "trunk-secret-1",
                }
                body = {"medium": {"sip": {"outgoing": outgoing}}}
                created = await asyncio.to_thread(
                    _api, stack, "POST", f"/api/agents/{agent_id}/calls", body
                )
                assert created.status_code == 201, created.text
                call_id = created.json()["callId"]
                # A relay an earlier test stopped may still hold a long poll on this shared
                # queue (docs/relay.md: "its messages come back"): the dial can then come after
                # that poll's 30 s visibility timeout.
                first = await callee.request("INVITE", timeout_s=DIAL_REDELIVERED_S)
                callee.send(callee.texts.response(first, 401, "Unauthorized", extra=CHALLENGE))
                retry = await callee.request("INVITE", nth=2)
                callee.send(callee.texts.ringing(retry))
                hang_up = HangUpCommand(call_id=call_id)
                await asyncio.to_thread(SqsCommandSender(sqs, stack.queue_url).send, hang_up)
                cancel = await callee.request("CANCEL", timeout_s=DIAL_REDELIVERED_S)  # likewise
                callee.send(callee.texts.response(cancel, 200, "OK"))
                callee.send(callee.texts.response(retry, 487, "Request Terminated"))
                await until(lambda: len(callee.distinct("ACK")) == 2)
                ended = await _ended(stack, call_id)

        answer = retry.headers.get("Authorization")
        assert answer is not None
        assert digest.verify(
            answer,
            method="INVITE",
            password="trunk-secret-1",
            challenge=CHALLENGE.split(": ", 1)[1].strip(),
            username="trunkuser",
        )
        assert "<sip:+15557654321@" in (first.headers.get("From") or "")
        assert cancel.cseq.number == retry.cseq.number
        assert len(callee.distinct("INVITE")) == 2  # none after the CANCEL
        assert ended["endReason"] == "unjoined"
        assert ended["sipDetails"]["terminationReason"] == "SIP_TERMINATION_CANCELED"
        assert ended["direction"] == "outgoing"

    run(scenario)


def test_a_dial_delivered_twice_places_one_call(tmp_path: Path) -> None:
    """SQS delivers at least once (docs/relay.md, An outgoing call, step 1): the same ``callId``
    dialled twice sends one INVITE; the callee's 486 ends it ``rejected``."""

    async def scenario() -> None:
        control = ControlPlane()
        await control.start()
        try:
            async with UdpCallee() as callee, running(settings_for(control.url, tmp_path)) as relay:
                command = dial_command(NOBODY, to=callee.uri())
                await relay.service._dial_command(command)
                await relay.service._dial_command(command)
                invite = await callee.request("INVITE")
                callee.send(callee.texts.response(invite, 486, "Busy Here"))
                await callee.request("ACK")
                await until(lambda: not relay.service.held_call_ids())
                await until(lambda: _types(control) == ["invite_sent", "leg_ended"])
                invites = callee.distinct("INVITE")
        finally:
            await control.stop()
        assert len(invites) == 1
        ended = list(control.applied.values())[-1]
        assert (ended["reason"], ended["sipStatus"]) == ("rejected", 486)

    run(scenario)


def test_a_dial_whose_claim_is_refused_places_no_call(tmp_path: Path) -> None:
    """docs/relay.md, Commands: a ``dial`` is claimed before its INVITE; when the API hung the
    call up first (the claim answers ``hung_up``), or another relay took a duplicate
    (``taken``), the callee's phone never rings and no event is recorded."""

    async def scenario() -> None:
        control = ControlPlane()
        await control.start()
        try:
            async with UdpCallee() as callee, running(settings_for(control.url, tmp_path)) as relay:
                hung_up = dial_command(NOBODY, to=callee.uri())
                control.hung_up.add(hung_up.call_id)
                await relay.service._dial_command(hung_up)
                taken = dial_command(
                    NOBODY, to=callee.uri(), callId="01a212be-9d7e-752c-b962-0000000000aa"
                )
                control.claims.append(DialClaim(call_id=taken.call_id, edge_id="another-relay"))
                await relay.service._dial_command(taken)
                claims = len(control.claims)
                await until(lambda: not relay.service._call_tasks)  # the flows gave up
                invites = callee.distinct("INVITE")
        finally:
            await control.stop()
        assert claims == 3
        assert invites == []
        assert _types(control) == []

    run(scenario)


def test_a_dial_whose_claim_gets_no_answer_is_retried_and_places_one_call(tmp_path: Path) -> None:
    """docs/relay.md, Commands: a control plane that cannot answer the claim (503) makes the dial
    handler fail, so SQS gives the command back; nothing was sent meanwhile, and the retried
    command places the call once."""

    async def scenario() -> None:
        control = ControlPlane()
        outage = {"on": True}
        control.script = lambda path: (
            Reply(503) if path == "/webhooks/sip/dial" and outage["on"] else None
        )
        await control.start()
        try:
            async with UdpCallee() as callee, running(settings_for(control.url, tmp_path)) as relay:
                command = dial_command(NOBODY, to=callee.uri())
                with pytest.raises(ControlPlaneUnavailable):
                    await relay.service._dial_command(command)
                await until(lambda: not relay.service._call_tasks)  # the waiting flow is gone
                before = callee.distinct("INVITE")
                outage["on"] = False
                await relay.service._dial_command(command)  # SQS's redelivery
                invite = await callee.request("INVITE")
                callee.send(callee.texts.response(invite, 486, "Busy Here"))
                await callee.request("ACK")
                await until(lambda: _types(control) == ["invite_sent", "leg_ended"])
                invites = callee.distinct("INVITE")
        finally:
            await control.stop()
        assert before == []
        assert len(invites) == 1

    run(scenario)


def _types(control: ControlPlane) -> list[str]:
    return [event["type"] for event in control.applied.values()]


def test_shutting_down_cancels_a_ringing_outgoing_call(tmp_path: Path) -> None:
    """docs/relay.md, Shutting down: the relay hangs up every call, an outgoing one still
    ringing with CANCEL (RFC 3261 §9.1), and records its end before it stops."""

    async def scenario() -> None:
        control = ControlPlane()
        await control.start()
        try:
            async with UdpCallee() as callee:
                relay = await start(settings_for(control.url, tmp_path))
                try:
                    await relay.service._dial_command(dial_command(NOBODY, to=callee.uri()))
                    invite = await callee.request("INVITE")
                    callee.send(callee.texts.ringing(invite))
                    await until(lambda: "ringing" in _types(control))
                    relay.stop_event.set()
                    cancel = await callee.request("CANCEL")
                    callee.send(callee.texts.response(cancel, 200, "OK"))
                    callee.send(callee.texts.response(invite, 487, "Request Terminated"))
                finally:
                    await relay.stop()
        finally:
            await control.stop()
        ended = list(control.applied.values())[-1]
        assert (ended["type"], ended["reason"], ended["sipStatus"]) == (
            "leg_ended", "local_hangup", 487
        )  # fmt: skip

    run(scenario)
