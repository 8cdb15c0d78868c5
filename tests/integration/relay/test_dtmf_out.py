"""The agent's digits reach the caller through a running relay: RFC 4733 or SIP INFO.

A phone on UDP calls the relay and a scripted agent sends docs/agents.md's extension message,
``{"event":"dtmf","dtmf":{"digits":"1#"}}``. What the phone receives is read with
``tests/support/rfc4733.py`` (RFC 3550 and RFC 4733's layouts), not with the relay's parser.
Expected values: RFC 4733 §2.5.1 (marker on the first packet of an event, one timestamp, End
bit on the last, sent three times) and docs/codecs.md (100 ms tones by default: 800 units at
8 kHz; the payload type the phone's SDP gave telephone-event; INFO ``application/dtmf-relay``
with ``Signal=1`` and ``Duration=100`` when the phone offers no telephone-event).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from relay.sip.syntax.message import Request
from tests.integration.relay.bridge.harness import Agent, agent_server
from tests.integration.relay.harness import (
    SDP_OFFER,
    ControlPlane,
    Phone,
    accepting,
    run,
    running,
    settings_for,
    until,
)
from tests.support.rfc4733 import parse_event, parse_rtp

EVENT_PT = 96  # not the relay's own 101: the phone's number is the one to use (RFC 3264 §6.1)
OFFER_EVENTS_AT_96 = (
    SDP_OFFER.replace("RTP/AVP 0 101", f"RTP/AVP 0 {EVENT_PT}")
    .replace("rtpmap:101", f"rtpmap:{EVENT_PT}")
    .replace("fmtp:101", f"fmtp:{EVENT_PT}")
)
OFFER_NO_EVENTS = "".join(
    line + "\r\n"
    for line in SDP_OFFER.replace("RTP/AVP 0 101", "RTP/AVP 0").splitlines()
    if "101" not in line
)
DIGITS = {"event": "dtmf", "dtmf": {"digits": "1#"}}


async def _call(tmp_path: Path, offer: str, check: Callable[[Phone], Awaitable[None]]) -> None:
    """Call with ``offer``; once answered, the agent sends "1#"; ``check`` waits for them."""
    agent = Agent()
    async with agent_server(agent) as url:
        control = ControlPlane(decision=accepting(url))
        await control.start()
        try:
            async with (
                running(settings_for(control.url, tmp_path)) as relay,
                Phone(relay.port) as phone,
            ):
                phone.invite(offer=offer)
                assert (await phone.answered()).status == 200
                assert (await agent.next_json())["event"] == "connected"
                start = await agent.next_json()
                await agent.send({**DIGITS, "streamSid": start["streamSid"]})
                await check(phone)
                assert (await phone.bye()).status == 200
                await until(agent.closed.is_set)
        finally:
            await control.stop()


def test_the_agents_digits_reach_the_phone_as_rfc_4733_events_with_its_payload_type(
    tmp_path: Path,
) -> None:
    received: list[bytes] = []

    def events() -> list[bytes]:
        return [d for d in received if parse_rtp(d).payload_type == EVENT_PT]

    async def check(phone: Phone) -> None:
        def copied() -> list[bytes]:
            received[:] = phone.rtp
            return events()

        await until(lambda: len(copied()) >= 14)

    async def scenario() -> None:
        await _call(tmp_path, OFFER_EVENTS_AT_96, check)

    run(scenario)
    packets = [parse_rtp(d) for d in events()]
    assert len(packets) == 14 and {p.version for p in packets} == {2}
    for digit, of_digit in (("1", packets[:7]), ("#", packets[7:])):
        payloads = [parse_event(p.payload) for p in of_digit]
        assert {e.digit for e in payloads} == {digit}
        assert [p.marker for p in of_digit] == [True] + [False] * 6
        assert [e.end for e in payloads] == [False] * 4 + [True] * 3
        assert [e.duration for e in payloads] == [160, 320, 480, 640, 800, 800, 800]
        assert len({p.timestamp for p in of_digit}) == 1
    audio = [parse_rtp(d) for d in received if parse_rtp(d).payload_type == 0]
    assert {p.ssrc for p in packets} == {p.ssrc for p in audio}  # one stream (RFC 4733 §2.1)


def test_without_telephone_event_in_the_phones_offer_each_digit_is_a_sip_info(
    tmp_path: Path,
) -> None:
    infos: list[Request] = []

    async def check(phone: Phone) -> None:
        await until(lambda: sum(r.method == "INFO" for r in phone.requests) == 2)
        infos.extend(r for r in phone.requests if r.method == "INFO")
        assert not [d for d in phone.rtp if parse_rtp(d).payload_type != 0]

    async def scenario() -> None:
        await _call(tmp_path, OFFER_NO_EVENTS, check)

    run(scenario)
    assert [r.headers.get("Content-Type") for r in infos] == ["application/dtmf-relay"] * 2
    assert [r.body for r in infos] == [
        b"Signal=1\r\nDuration=100\r\n",
        b"Signal=#\r\nDuration=100\r\n",
    ]
    assert infos[0].cseq.number + 1 == infos[1].cseq.number
