"""Stock Pipecat bots transferring real SIP calls: cold the Twilio way, warm with a second session.

The bots are ``tests/interop/pipecat_bot.py``'s echo pipeline (``FastAPIWebsocketTransport`` +
``TwilioFrameSerializer``, nothing sipline-specific) plus what a bot's tool handler does beside
its pipeline, with the credentials of its own ``start`` message (``accountSid``,
``customParameters.auth_token``; docs/agents.md):

- cold: once it has heard the caller for a second, the bot updates its call with TwiML, as a
  Twilio bot does: ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` with
  ``Twiml=<Response><Refer><Sip>...</Sip></Refer></Response>`` (docs/api.md, Transferring the
  Twilio way). The caller is SIPp's ``uac_transferee.xml`` (RFC 5589 §6.1's transferee: REFER,
  202, NOTIFY 100, NOTIFY 200, BYE; SIPp fails the run when the relay does otherwise). With
  ``<Dial><Sip>`` instead, the transfer is bridged: a SIPp UAS target answers and echoes, the
  caller's tone reaches it (RTP seen on ``lo``).
- warm: the agent's ``mediaEndpoint`` serves both sessions. The caller's session asks the
  ``warmTransfer`` tool (``POST /api/calls/{callId}/transfers`` with a ``context``); the relay
  calls the operator (a SIPp UAS that answers and echoes RTP) and opens a second session whose
  ``start.customParameters`` carry ``sipline_leg=operator`` and the rendered prompt; that
  session briefs the operator (it speaks first: a second of 660 Hz stands in for TTS), hears
  the operator answer (SIPp echoing the briefing) and reports ``{"accepted": true}`` on
  ``.../transfers/{transferId}/outcome``. The operator hears the briefing, then the caller.

Every request the bots send goes through the recording proxy of ``test_pipecat_sip.py`` to the
stack's control plane. Expected outcomes: docs/billing.md's scenarios table
(``refer_cold_transfer``: ``transferred`` / ``REFERRED``, the SIP clock stopped at the NOTIFY 200;
a bridged cold transfer and ``bridged_warm_transfer``: ``transferred`` / ``NORMAL``, both legs
billed until each ends) and docs/api.md (the Transfer's status and method).

A report sent as soon as the operator's session starts can meet a control plane that does not yet
have the relay's events saying the operator answered: 409 until it has; the bot retries, as
docs/agents.md (Warm transfers: the outcome) says.

The serializer is built as ``pipecat_bot.twilio_bot_app`` builds it, ``auto_hang_up`` on (Pipecat's
default): it would post ``Status=completed`` for the call (ending a bridged transfer, docs/relay.md
Transfers step 5) if it serialized the ``CancelFrame`` that ends the pipeline; it does not, as the
relay has closed the stream by then and Pipecat's transport serializes nothing on a closed socket.
The tests show it: the bots' requests are the transfer's, and no hang-up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import numpy as np
import pytest
from fastapi import FastAPI, WebSocket
from pipecat.frames.frames import OutputAudioRawFrame
from pipecat.serializers.twilio import TwilioFrameSerializer

from chalicelib.billing import bill
from chalicelib.contracts import CallEventType, LegRole
from tests.interop.loopback_capture import LoopbackCapture
from tests.interop.pipecat_bot import (
    PIPELINE_RATE_HZ,
    Bot,
    BotRecord,
    run_echo_pipeline,
    serve_bot,
)
from tests.interop.sipp import SippRun, run_sipp, scenario
from tests.interop.sipp_uas import SippUas, write_tone
from tests.interop.stack import InteropStack
from tests.interop.test_pipecat_sip import Proxy, control_proxy
from tests.interop.test_transfer_sipp import (
    CALLER_TONE_HZ,
    first,
    pool,
    rounded_up,
    stored_events,
    transfers,
)
from tests.interop.tone import dominant_frequency, pcm16, sounding, ulaw_samples

pytestmark = pytest.mark.interop
__all__ = ["control_proxy", "pool"]  # fixtures, imported to be used here

BRIEFING_HZ = 660
TOLERANCE_HZ = 10
HEARD_BYTES = 32000  # one second of the caller at the pipeline's 16 kHz (16-bit samples)
BOT_WAIT_S = 15.0
TEMPLATE = "You are briefing an operator. {context}"
CONTEXT = "Bob wants to change his delivery address."

Action = Callable[[dict[str, Any], BotRecord], Coroutine[Any, Any, Any]]


@dataclass
class Sessions:
    """Each session's record and its action's outcome, in the order they started."""

    records: list[BotRecord] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)  # by leg: caller, operator


def acting_bot_app(sessions: Sessions, action: Action, control_url: str) -> FastAPI:
    """The echo bot of pipecat_bot.py (its serializer hangs up through ``control_url``); beside
    its pipeline, ``action(start, record)`` runs once (a tool handler's work: it may wait on what
    the pipeline heard)."""
    app = FastAPI()

    @app.websocket("/ws")
    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_json()  # connected
        start = (await websocket.receive_json())["start"]
        record = BotRecord(start=start)
        sessions.records.append(record)
        record.connected.set()
        serializer = TwilioFrameSerializer(
            stream_sid=start["streamSid"],
            call_sid=start["callSid"],
            account_sid=start["accountSid"],
            auth_token=start["customParameters"]["auth_token"],
            base_url=control_url,
        )
        operator = start["customParameters"].get("sipline_leg") == "operator"
        acting = asyncio.create_task(action(start, record))
        try:
            await run_echo_pipeline(websocket, record, serializer, briefing() if operator else None)
        finally:  # the call may end first (an accepted outcome stops this stream): let it answer
            await asyncio.wait({acting}, timeout=BOT_WAIT_S)
            acting.cancel()

    return app


def briefing() -> OutputAudioRawFrame:
    """What the operator's bot says first: a second of ``BRIEFING_HZ`` (a TTS stand-in)."""
    n = np.arange(PIPELINE_RATE_HZ)
    samples = 8000 * np.sin(2 * np.pi * BRIEFING_HZ * n / PIPELINE_RATE_HZ)
    return OutputAudioRawFrame(
        audio=samples.astype("<i2").tobytes(), sample_rate=PIPELINE_RATE_HZ, num_channels=1
    )


def heard_in_turn(samples: np.ndarray, rate_hz: int) -> list[tuple[int, float]]:
    """The tones in ``samples`` in turn, as (the expected tone, seconds), from the dominant
    frequency of each 100 ms; a window that is neither (a switch straddles it) is left out, and
    there are at most 3 of those."""
    size = rate_hz // 10
    turns: list[tuple[int, float]] = []
    neither = 0
    for start in range(0, len(samples) - size + 1, size):
        found = dominant_frequency(samples[start : start + size], rate_hz)
        tone = [t for t in (BRIEFING_HZ, CALLER_TONE_HZ) if abs(found - t) <= TOLERANCE_HZ]
        if not tone:
            neither += 1
        elif turns and turns[-1][0] == tone[0]:
            turns[-1] = (tone[0], round(turns[-1][1] + 0.1, 1))
        else:
            turns.append((tone[0], 0.1))
    assert neither <= 3, f"{neither} windows of neither tone among {turns}"
    return turns


def basic(start: dict[str, Any]) -> dict[str, str]:
    """The call's HTTP Basic credentials, from its ``start`` message (docs/agents.md)."""
    token = start["customParameters"]["auth_token"]
    return {"Authorization": aiohttp.encode_basic_auth(start["accountSid"], token)}


async def heard_the_far_end(record: BotRecord) -> None:
    deadline = time.monotonic() + BOT_WAIT_S
    while len(record.audio_in) < HEARD_BYTES:
        assert time.monotonic() < deadline, "the bot heard nobody"
        await asyncio.sleep(0.05)


@contextmanager
def serve_acting_bot(action: Action, control_url: str) -> Iterator[tuple[Sessions, Bot]]:
    """Serve ``acting_bot_app`` under uvicorn on 127.0.0.1; an action's exception is its answer."""
    sessions = Sessions()

    async def act(start: dict[str, Any], record: BotRecord) -> None:
        leg = start["customParameters"].get("sipline_leg", "caller")
        sessions.answers[leg] = "cancelled"  # until the action ends
        try:
            sessions.answers[leg] = await action(start, record)
        except Exception as error:  # noqa: BLE001 - the test shows it
            sessions.answers[leg] = error

    with serve_bot(acting_bot_app(sessions, act, control_url), BotRecord()) as bot:
        yield sessions, bot


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s}s"
        time.sleep(0.05)


REFER_TARGET = "sip:+15550100@pbx.example.com"


def call_update_path(start: dict[str, Any]) -> str:
    return f"/2010-04-01/Accounts/{start['accountSid']}/Calls/{start['callSid']}.json"


def twiml_update(proxy: Proxy, twiml: str) -> Action:
    """A Twilio bot's transfer: once it heard the caller, update its call with ``twiml``."""

    async def transfer_the_twilio_way(start: dict[str, Any], record: BotRecord) -> int:
        await heard_the_far_end(record)
        async with (
            aiohttp.ClientSession(headers=basic(start)) as http,
            http.post(proxy.url + call_update_path(start), data={"Twiml": twiml}) as reply,
        ):
            return reply.status

    return transfer_the_twilio_way


def bot_ended(sessions: Sessions) -> None:
    wait_for(
        lambda: bool(sessions.records) and sessions.records[0].finished.is_set(), 10, "bot end"
    )


def the_one_request(proxy: Proxy, start: dict[str, Any], twiml: str) -> dict[str, Any]:
    """The bot's only request: its call update, with its call's Basic credentials; 200 and
    Twilio's Call resource with the Transfer (docs/api.md). No hang-up followed it."""
    [asked] = proxy.exchanges
    path = call_update_path(start)
    assert (asked["method"], asked["path"], asked["status"]) == ("POST", path, 200), asked
    token = start["customParameters"]["auth_token"]
    credentials = base64.b64encode(f"{start['accountSid']}:{token}".encode()).decode()
    assert asked["authorization"] == f"Basic {credentials}"
    assert parse_qs(asked["body"]) == {"Twiml": [twiml]}
    answer: dict[str, Any] = json.loads(asked["answer"])
    assert (answer["sid"], answer["status"]) == (start["callSid"], "in-progress")
    return answer


def test_a_pipecat_bot_transfers_its_call_with_twiml_refer(
    stack: InteropStack, control_proxy: Proxy, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    """The bot posts ``<Refer><Sip>`` with its ``start`` credentials: 200 with the Transfer
    (``REFER``); SIPp sees ``Refer-To: <target>`` and completes it (rc 0); the call reads
    ``transferred`` / ``SIP_TERMINATION_REFERRED``, billed to the NOTIFY 200 (docs/billing.md,
    ``refer_cold_transfer``, rule 3); the Transfer reads ``referred``."""
    twiml = f"<Response><Refer><Sip>{REFER_TARGET}</Sip></Refer></Response>"

    with serve_acting_bot(twiml_update(control_proxy, twiml), control_proxy.url) as (sessions, bot):
        tool = {
            "toolName": "coldTransfer",
            "parameterOverrides": {"target": REFER_TARGET, "sipVerb": "REFER"},
        }
        agent_id = stack.add_agent(
            "pipecat-twiml-refer", "^interop_pipecat_refer$", bot.url, selectedTools=[tool]
        )
        write_tone(tmp_path / "tone.ul", CALLER_TONE_HZ)
        sipp: Future[SippRun] = pool.submit(
            run_sipp,
            stack,
            tmp_path,
            service="interop_pipecat_refer",
            scenario_file=scenario("uac_transferee.xml", tmp_path),
            timeout_s=40,
            extra=("-key", "refer_final", "200 OK", "-d", "1500"),
        )
        run = sipp.result(timeout=60)
        bot_ended(sessions)

    assert run.returncode == 0, run.explain() + stack.relay_log()[-4000:]
    assert sessions.answers == {"caller": 200}, sessions.answers
    assert f"Refer-To: <{REFER_TARGET}>" in run.messages, run.explain()
    [record] = sessions.records
    answer = the_one_request(control_proxy, record.start, twiml)
    assert (answer["transfer"]["method"], answer["transfer"]["kind"]) == ("REFER", "cold")

    [ended] = stack.wait_for_call(agent_id, timeout_s=15.0)
    assert (ended["endReason"], ended["sipDetails"]["terminationReason"]) == (
        "transferred", "SIP_TERMINATION_REFERRED"
    )  # fmt: skip
    call_id = ended["callId"]
    [transfer] = transfers(stack, call_id)
    assert (transfer["status"], transfer["sipStatus"], transfer["target"]) == (
        "referred", 200, REFER_TARGET
    )  # fmt: skip
    events = stored_events(stack, call_id)
    answered = first(events, CallEventType.ANSWERED)
    succeeded = first(events, CallEventType.REFER_SUCCEEDED)
    assert abs(bill(events).sip_seconds - (succeeded - answered)) < 1e-3
    assert ended["sipDetails"]["billedDuration"] == f"{rounded_up(succeeded - answered)}s"


def test_a_pipecat_bot_transfers_its_call_with_twiml_dial_sip(
    stack: InteropStack, control_proxy: Proxy, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    """The bot posts ``<Dial><Sip>``: a bridged cold transfer (``INVITE``) to a SIPp UAS that
    answers and echoes RTP; the caller's tone reaches it through the relay; the bot's stream
    ends (and sends no hang-up) while the caller's leg goes on; the caller's BYE ends the
    target's leg with the relay's BYE (SIPp rc 0 both). docs/billing.md: ``transferred`` /
    ``NORMAL``, both legs billed until each ends (rules 2 and 5); the Transfer reads ``bridged``."""
    with SippUas("uas_answer", tmp_path / "target", extra=("-rtp_echo",)) as target:
        target_uri = target.uri("+15550100")
        twiml = f"<Response><Dial><Sip>{target_uri}</Sip></Dial></Response>"
        with serve_acting_bot(twiml_update(control_proxy, twiml), control_proxy.url) as (
            sessions,
            bot,
        ):
            tool = {
                "toolName": "coldTransfer",
                "parameterOverrides": {"target": target_uri, "sipVerb": "INVITE"},
            }
            agent_id = stack.add_agent(
                "pipecat-twiml-dial", "^interop_pipecat_dial$", bot.url, selectedTools=[tool]
            )
            write_tone(tmp_path / "tone.ul", CALLER_TONE_HZ)
            with LoopbackCapture(target.media_port) as capture:
                sipp: Future[SippRun] = pool.submit(
                    run_sipp,
                    stack,
                    tmp_path,
                    service="interop_pipecat_dial",
                    scenario_file=scenario("uac_call_tone.xml", tmp_path),
                    timeout_s=40,
                    extra=("-d", "12000"),
                )
                run = sipp.result(timeout=60)
            bot_ended(sessions)
        target_run = target.wait()

    assert run.returncode == 0, run.explain() + stack.relay_log()[-4000:]
    assert target_run.returncode == 0, target_run.explain()
    assert sessions.answers == {"caller": 200}, sessions.answers
    [record] = sessions.records
    answer = the_one_request(control_proxy, record.start, twiml)
    assert (answer["transfer"]["method"], answer["transfer"]["kind"]) == ("INVITE", "cold")
    heard = b"".join(payload[12:] for payload in capture.payloads(target.media_port))
    assert len(heard) >= 8000, f"{len(heard)} bytes of RTP reached the target"
    assert abs(dominant_frequency(ulaw_samples(heard), 8000) - CALLER_TONE_HZ) < 5

    [ended] = stack.wait_for_call(agent_id, timeout_s=15.0)
    assert (ended["endReason"], ended["sipDetails"]["terminationReason"]) == (
        "transferred", "SIP_TERMINATION_NORMAL"
    )  # fmt: skip
    call_id = ended["callId"]
    [transfer] = transfers(stack, call_id)
    assert (transfer["status"], transfer["method"]) == ("bridged", "INVITE")
    assert_both_legs_billed(stack, call_id, ended)


def assert_both_legs_billed(stack: InteropStack, call_id: str, ended: dict[str, Any]) -> None:
    """docs/billing.md rules 2 and 5: the caller's leg from its answer, the second leg from its
    INVITE, each until it ended; the call's billed duration rounded up (rule 8)."""
    events = stored_events(stack, call_id)
    second_leg = LegRole.TRANSFER_TARGET
    caller_end = first(events, CallEventType.LEG_ENDED)
    second_end = first(events, CallEventType.LEG_ENDED, role=second_leg)
    expected = (caller_end - first(events, CallEventType.ANSWERED)) + (
        second_end - first(events, CallEventType.INVITE_SENT, role=second_leg)
    )
    assert abs(bill(events).sip_seconds - expected) < 1e-3
    assert ended["sipDetails"]["billedDuration"] == f"{rounded_up(expected)}s"


def test_a_second_pipecat_session_briefs_the_operator_and_accepts_a_bridged_warm_transfer(
    stack: InteropStack, control_proxy: Proxy, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    """The caller's session asks ``warmTransfer`` (BRIDGE); the operator's session gets
    ``sipline_leg=operator`` and the rendered prompt, briefs the operator and reports
    ``accepted``; RTP to the operator (on ``lo``) is the briefing, then the caller's tone; both SIPp runs rc 0; the Transfer reads
    ``bridged``; the call ``transferred`` / ``SIP_TERMINATION_NORMAL``, both legs billed until
    each ends (docs/billing.md, ``bridged_warm_transfer``, rules 2 and 5)."""

    async def caller_or_operator(start: dict[str, Any], record: BotRecord) -> Any:
        params = start["customParameters"]
        async with aiohttp.ClientSession(headers=basic(start)) as http:
            if params.get("sipline_leg") != "operator":  # the caller's bot: its tool handler
                await heard_the_far_end(record)
                url = f"{control_proxy.url}/api/calls/{params['call_id']}/transfers"
                body = {"toolName": "warmTransfer", "context": CONTEXT}
                async with http.post(url, json=body) as reply:
                    return reply.status, await reply.json()
            # the operator's bot: briefs (it speaks first), hears the operator answer, reports
            await heard_the_far_end(record)  # the operator, echoing the briefing
            url = (
                f"{control_proxy.url}/api/calls/{params['sipline_call_id']}/transfers/"
                f"{params['sipline_transfer_id']}/outcome"
            )
            deadline = time.monotonic() + BOT_WAIT_S
            while True:  # 409 until the control plane has recorded the briefing
                async with http.post(url, json={"accepted": True}) as reply:
                    if reply.status != 409 or time.monotonic() > deadline:
                        return reply.status, await reply.json()
                await asyncio.sleep(0.2)

    with (
        SippUas("uas_answer", tmp_path / "operator", extra=("-rtp_echo",)) as operator,
        serve_acting_bot(caller_or_operator, control_proxy.url) as (sessions, bot),
    ):
        tool = {
            "toolName": "warmTransfer",
            "parameterOverrides": {
                "target": operator.uri("operator"),
                "transferType": "BRIDGE",
                "transferSystemPromptTemplate": TEMPLATE,
            },
        }
        agent_id = stack.add_agent(
            "pipecat-warm", "^interop_pipecat_warm$", bot.url, selectedTools=[tool]
        )
        write_tone(tmp_path / "tone.ul", CALLER_TONE_HZ)
        with LoopbackCapture(operator.media_port) as capture:
            sipp: Future[SippRun] = pool.submit(
                run_sipp,
                stack,
                tmp_path,
                service="interop_pipecat_warm",
                scenario_file=scenario("uac_call_tone.xml", tmp_path),
                timeout_s=40,
                extra=("-d", "12000"),
            )
            run = sipp.result(timeout=60)
        operator_run = operator.wait()

    assert run.returncode == 0, run.explain() + stack.relay_log()[-4000:]
    assert operator_run.returncode == 0, operator_run.explain()
    caller_bot, operator_bot = sessions.records
    asked, reported = sessions.answers["caller"], sessions.answers["operator"]
    assert asked[0] == 201, asked
    transfer_id = asked[1]["transferId"]
    assert reported[0] == 200, reported
    call_id = caller_bot.start["customParameters"]["call_id"]
    params = operator_bot.start["customParameters"]
    assert (params["sipline_leg"], params["sipline_call_id"]) == ("operator", call_id)
    assert params["sipline_transfer_id"] == transfer_id
    assert params["system_prompt"] == TEMPLATE.format(context=CONTEXT)
    assert "sipline_leg" not in caller_bot.start["customParameters"]
    wait_for(lambda: caller_bot.finished.is_set() and operator_bot.finished.is_set(), 10, "ends")
    outcome_path = f"/api/calls/{call_id}/transfers/{transfer_id}/outcome"
    assert [
        (e["method"], e["path"], e["status"]) for e in control_proxy.exchanges if e["status"] != 409
    ] == [  # the ask, the report, and no hang-up from either bot when its stream closed
        ("POST", f"/api/calls/{call_id}/transfers", 201),
        ("POST", outcome_path, 200),
    ], control_proxy.exchanges

    # the operator heard the briefing (its echo of it is what the operator's bot heard), then
    # the caller: RTP to the operator, in order, is the briefing's tone then the caller's
    at_bot_hz = dominant_frequency(pcm16(bytes(operator_bot.audio_in)), PIPELINE_RATE_HZ)
    assert abs(at_bot_hz - BRIEFING_HZ) <= TOLERANCE_HZ
    heard = b"".join(payload[12:] for payload in capture.payloads(operator.media_port))
    tones = heard_in_turn(sounding(ulaw_samples(heard), 8000), 8000)
    assert [hz for hz, _ in tones] == [BRIEFING_HZ, CALLER_TONE_HZ], tones
    assert tones[0][1] >= 0.5 and tones[1][1] >= 5.0, tones  # seconds of each
    [transfer] = transfers(stack, call_id)
    assert (transfer["status"], transfer["method"], transfer["kind"]) == (
        "bridged",
        "BRIDGE",
        "warm",
    )
    [ended] = stack.wait_for_call(agent_id, timeout_s=15.0)
    assert (ended["endReason"], ended["sipDetails"]["terminationReason"]) == (
        "transferred", "SIP_TERMINATION_NORMAL"
    )  # fmt: skip
    assert_both_legs_billed(stack, call_id, ended)
