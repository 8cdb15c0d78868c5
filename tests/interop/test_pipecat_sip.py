"""A real Pipecat pipeline as the agent of a real SIP call, end to end through the local stack.

baresip dials the relay (PCMU, its ``ausine`` source at 440 Hz); the agent's media endpoint is a
stock-shaped Pipecat bot (``FastAPIWebsocketTransport`` + ``TwilioFrameSerializer`` under
uvicorn on 127.0.0.1) that echoes the caller's audio and records DTMF. baresip sends RFC 4733
digits (``sndcode``); ``#`` ends the pipeline, and the serializer's ``auto_hang_up`` posts the
Twilio-compatible hang-up to the stack's control plane, with the credentials of the ``start``
message (``accountSid``, ``callSid``, ``customParameters.auth_token``). A recording proxy in
front of the control plane shows that request and the control plane's answer. The pipeline's
end also closes its socket, which alone would hang up too (``agent_hangup`` either way); in
practice the REST hang-up reaches the relay first (its log: the bridge is stopped, and the agent
"missed the stop message"), a few ms after the POST.

Measured: the tone the pipeline heard (16 kHz, after the serializer's resampler) and the echo
baresip decoded (its ``sndfile`` dump), both 440 Hz within 10 Hz. SIPp cannot record what it
hears, which is why the caller here is baresip.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.interop.baresip import SOURCE_HZ, Baresip
from tests.interop.pipecat_bot import (
    PIPELINE_RATE_HZ,
    Bot,
    BotRecord,
    serve_bot,
    serve_http,
    twilio_bot_app,
)
from tests.interop.stack import InteropStack
from tests.interop.tone import dominant_frequency, pcm16, read_wav, sounding

pytestmark = pytest.mark.interop

TOLERANCE_HZ = 10
ECHO_S = 2.5  # how long the caller talks before pressing keys
DIGITS = ["1", "2", "*"]


@dataclass
class Proxy:
    url: str
    exchanges: list[dict[str, Any]]


@pytest.fixture
def control_proxy(stack: InteropStack) -> Iterator[Proxy]:
    """An HTTP proxy on 127.0.0.1 to the stack's control plane that records each exchange."""
    exchanges: list[dict[str, Any]] = []
    upstream = stack.local.api_url

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {
            name: request.headers[name]
            for name in ("Authorization", "Content-Type")
            if name in request.headers
        }
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                request.method, upstream + request.path_qs, data=body, headers=headers
            ) as answer,
        ):
            answer_body = await answer.read()
            exchanges.append(
                {
                    "at": time.time(),
                    "method": request.method,
                    "path": request.path,
                    "authorization": request.headers.get("Authorization", ""),
                    "content_type": request.headers.get("Content-Type", ""),
                    "body": body.decode(),
                    "status": answer.status,
                    "answer": answer_body.decode(errors="replace"),
                }
            )
            return web.Response(
                body=answer_body, status=answer.status, content_type=answer.content_type
            )

    with serve_http([("*", "/{tail:.*}", forward)]) as url:
        yield Proxy(url, exchanges)


@pytest.fixture
def pipecat_bot(control_proxy: Proxy) -> Iterator[Bot]:
    """Run the bot under uvicorn on 127.0.0.1 in a thread; stop it at the end."""
    record = BotRecord()
    with serve_bot(twilio_bot_app(record, control_proxy.url), record) as bot:
        yield bot


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s}s"
        time.sleep(0.05)


def test_a_pipecat_bot_hears_echoes_takes_dtmf_and_hangs_up_a_sip_call(
    stack: InteropStack, pipecat_bot: Bot, control_proxy: Proxy, tmp_path: Path
) -> None:
    record = pipecat_bot.record
    agent_id = stack.add_agent("interop-pipecat-sip", "^interop_pipecat_sip$", pipecat_bot.url)

    with Baresip(tmp_path, account_params=";audio_codecs=PCMU/8000/1", lifetime_s=40) as phone:
        phone.dial(f"sip:interop_pipecat_sip@127.0.0.1:{stack.sip_port}")
        phone.wait_event("CALL_ESTABLISHED")
        assert record.connected.wait(5), "the bot got no start message"
        time.sleep(ECHO_S)
        for digit in DIGITS:
            _sndcode(phone, digit)
            time.sleep(0.4)
        _wait(lambda: record.digits == DIGITS, 5, f"digits {DIGITS} at the bot ({record.digits})")
        pressed_pound = time.time()
        _sndcode(phone, "#")
        closed = phone.wait_event("CALL_CLOSED", timeout_s=8)
    assert record.finished.wait(10), "the pipeline did not end"

    # (3) the hang-up: Twilio's REST call reached the control plane, the relay sent BYE.
    assert closed["param"] == "Connection reset by peer", closed  # baresip's word for a BYE
    start = record.start
    account, call_sid = start["accountSid"], start["callSid"]
    token = start["customParameters"]["auth_token"]
    credentials = base64.b64encode(f"{account}:{token}".encode()).decode()
    assert [
        {key: exchange[key] for key in ("method", "path", "authorization", "body", "status")}
        for exchange in control_proxy.exchanges
    ] == [
        {
            "method": "POST",
            "path": f"/2010-04-01/Accounts/{account}/Calls/{call_sid}.json",
            "authorization": f"Basic {credentials}",
            "body": "Status=completed",
            "status": 200,
        }
    ], control_proxy.exchanges
    [call] = stack.wait_for_call(agent_id)
    assert call["endReason"] == "agent_hangup", call
    assert call["sipDetails"]["terminationReason"] == "SIP_TERMINATION_NORMAL", call

    # (1) the caller's audio and digits reached the pipeline.
    assert record.digits == [*DIGITS, "#"]
    heard_by_bot = sounding(pcm16(bytes(record.audio_in)), PIPELINE_RATE_HZ)
    assert len(heard_by_bot) >= PIPELINE_RATE_HZ * 2, (
        f"the pipeline heard {len(heard_by_bot) / PIPELINE_RATE_HZ:.2f}s of sound"
    )
    at_bot_hz = dominant_frequency(heard_by_bot, PIPELINE_RATE_HZ)
    assert abs(at_bot_hz - SOURCE_HZ) <= TOLERANCE_HZ

    # (2) the pipeline's echo reached the caller.
    heard_by_phone, rate = read_wav(phone.heard())
    echoed = sounding(heard_by_phone, rate)
    assert len(echoed) >= rate * 2, f"baresip heard {len(echoed) / rate:.2f}s of sound"
    at_phone_hz = dominant_frequency(echoed, rate)
    assert abs(at_phone_hz - SOURCE_HZ) <= TOLERANCE_HZ

    post_at = control_proxy.exchanges[0]["at"]
    print(
        f"\npipecat over SIP: {SOURCE_HZ} Hz heard by the pipeline as {at_bot_hz:.1f} Hz "
        f"({len(heard_by_bot) / PIPELINE_RATE_HZ:.2f}s of sound), its echo heard by baresip as "
        f"{at_phone_hz:.1f} Hz ({len(echoed) / rate:.2f}s); # -> hang-up POST "
        f"{(post_at - pressed_pound) * 1000:.0f} ms, # -> BYE at baresip "
        f"{(closed['received_at'] - pressed_pound) * 1000:.0f} ms; call {call['endReason']}"
    )


def _sndcode(phone: Baresip, digit: str) -> None:
    """Press one key on baresip (its menu's ``sndcode``: RFC 4733 telephone-event)."""
    phone._send({"command": "sndcode", "params": digit, "token": "sndcode"})  # noqa: SLF001
