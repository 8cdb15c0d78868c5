"""One outgoing call's flow in the test's event loop: the real SIP endpoint, a callee in the test.

:class:`DialWire` is what ``RelayService`` is around an outgoing call, and nothing more:

- a real sans-I/O :class:`~relay.sip.endpoint.SipEndpoint`; what it transmits is collected with
  its destination (:attr:`DialWire.sent`), and the callee's answers are handed to it with
  :meth:`DialWire.send`, as the UDP transport would;
- :class:`~relay.calls.deps.CallDeps` with :class:`~relay.calls.deps.DialDeps`: the endpoint's
  own ``place_call``, a real ``SipLocator`` (the targets are IP literals, so it asks no DNS),
  a Fernet cipher under a test key (the control plane's class, ``chalicelib/crypto.py``), the
  ring timeout; ``record`` appends to :attr:`DialWire.events`; ``hold`` keeps the call's flow,
  and the drain routes the endpoint's events to it as the service does.

:class:`Callee` writes the callee's responses as literal RFC 3261 text (§8.2.6: Via, From,
Call-ID and CSeq copied, a To tag added; §13.3.1: Contact; RFC 3264 §6: the SDP answer), not
with the relay's builders; what arrives is read with the relay's parser, to look at fields.

Runs on the simulated clock (``tests/support/virtual_time.py``): ring timeouts, ``maxDuration``
and the agent's connection bounds pass in no real time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from chalicelib.contracts import CallEvent, DialCommand, InviteAccepted, InviteWebhook
from chalicelib.crypto import FernetCipher, generate_fernet_key
from relay.calls.deps import CallDeps, CallFlow, DialDeps
from relay.calls.outgoing import OutgoingCallFlow
from relay.ids import SeededIdSource
from relay.sip.address import Address, Transport
from relay.sip.endpoint import SipEndpoint
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.parser import parse_message
from relay.sip.transaction.timers import Timers
from relay.sip.usage.dial import place_call
from relay.sip.usage.invite_session import (
    CallAnswered,
    CallEnded,
    CallProgress,
    InfoReceived,
    InviteSession,
    MediaUpdated,
)
from relay.transport.dns import DnsSettings, SipLocator
from relay.transport.rtp_session import RtpPortAllocator
from tests.integration.relay.bridge.harness import LOCAL_EGRESS
from tests.support.ports import free_port_range

LOOPBACK = "127.0.0.1"
RELAY = Address(LOOPBACK, 5060, Transport.UDP)
"""The relay's SIP address as its endpoint advertises it (nothing listens)."""
RELAY_TLS = Address(LOOPBACK, 5061, Transport.TLS)
CALLEE_PORT = 5070
CALLEE = Address(LOOPBACK, CALLEE_PORT, Transport.UDP)
"""Where the callee's responses come from (the ``to`` of the commands below)."""
SECRET = "test-webhook-secret"
WAIT_S = 10.0
PASSWORD_KEY = generate_fernet_key()
"""The deployment's key, as the control plane and the relay share it."""
CALL_ID = "01a212bf-7716-7562-9041-795e062bbff2"


def dial_command(url: str, **overrides: Any) -> DialCommand:
    """docs/webhooks.md's ``dial`` example, to the callee on 127.0.0.1, the agent at ``url``."""
    body: dict[str, Any] = {
        "type": "dial",
        "callId": CALL_ID,
        "accountId": "default",
        "agentId": "01a212be-9d7e-752c-b962-86df546a0c80",
        "to": f"sip:+15551234567@{LOOPBACK}:{CALLEE_PORT}",
        "from": "+15557654321",
        "username": None,
        "passwordCiphertext": None,
        "mediaEndpoint": {"url": url, "framing": "twilio"},
        "systemPrompt": "You are Ada, a sales agent.",
        "templateContext": {"customer_name": "Carol"},
        "callTemplate": {"voice": "Mark"},
        "joinTimeoutS": None,
        "maxDurationS": 600.0,
        "codecPreference": ["PCMU/8000", "PCMA/8000"],
    }
    return DialCommand.model_validate(body | overrides)


def encrypted(password: str) -> str:
    """``passwordCiphertext`` as the control plane writes it (``chalicelib/calls.py``)."""
    return FernetCipher(PASSWORD_KEY).encrypt(password)


async def _no_decisions(_: InviteWebhook) -> InviteAccepted:
    raise AssertionError("an outgoing call asks the control plane nothing")


@dataclass
class DialWire:
    """The endpoint, its drain loop and the call's dependencies (see the module docstring)."""

    ring_timeout_s: float = 60.0
    ports: RtpPortAllocator = field(
        default_factory=lambda: RtpPortAllocator(LOOPBACK, *free_port_range(8))
    )
    sent: list[tuple[Request | Response, Address]] = field(default_factory=list)
    """Every message the endpoint transmitted, with where it went, in order."""
    events: list[CallEvent] = field(default_factory=list)
    flows: dict[InviteSession, CallFlow] = field(default_factory=dict)
    flow: OutgoingCallFlow | None = None
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        local = {Transport.UDP: RELAY, Transport.TLS: RELAY_TLS}
        self.endpoint = SipEndpoint(
            local, user_agent="sipline", timers=Timers(), ids=SeededIdSource(1)
        )
        ids = SeededIdSource(2)
        locator = SipLocator(
            DnsSettings(nameservers=((LOOPBACK, 9),)), egress=LOCAL_EGRESS, ids=ids
        )
        self.deps = CallDeps(
            decide=_no_decisions,
            record=self.events.append,
            transmit=self.drain,
            now=lambda: asyncio.get_running_loop().time(),
            ports=self.ports,
            ids=ids,
            advertised_address=LOOPBACK,
            edge_id="edge-1",
            webhook_secret=SECRET,
            retry_after_s=5,
            egress=LOCAL_EGRESS,
            dial=DialDeps(
                place_call=partial(place_call, self.endpoint),
                hold=self.flows.__setitem__,
                locate=locator.locate,
                cipher=FernetCipher(PASSWORD_KEY),
                ring_timeout_s=self.ring_timeout_s,
            ),
        )
        self._arrived = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None

    def dial(self, command: DialCommand) -> OutgoingCallFlow:
        """Start the flow of ``command`` in its own task, as the ``dial`` handler does."""
        self.flow = OutgoingCallFlow(command, self.deps)
        self.task = asyncio.get_running_loop().create_task(self.flow.run())
        return self.flow

    # --- the callee's side ----------------------------------------------------------------

    def send(self, text: str, source: Address = CALLEE) -> None:
        """Hand the endpoint one datagram from the callee, then drain it."""
        now = asyncio.get_running_loop().time()
        self.endpoint.receive_datagram(text.encode(), source, now)
        self.drain()

    async def next_sent(
        self, wanted: Callable[[Request | Response], bool], after: int = 0
    ) -> Request | Response:
        """The first message sent, from index ``after``, that is ``wanted`` (bounded wait)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                for message, _ in self.sent[after:]:
                    if wanted(message):
                        return message
                self._arrived.clear()
                await self._arrived.wait()

    async def request(self, method: str, nth: int = 1, timeout_s: float = WAIT_S) -> Request:
        """The ``nth`` ``method`` request the endpoint sent (waiting at most ``timeout_s``)."""

        def wanted(message: Request | Response) -> bool:
            return isinstance(message, Request) and message.method == method

        async with asyncio.timeout(timeout_s):
            while len(found := [m for m, _ in self.sent if wanted(m)]) < nth:
                self._arrived.clear()
                await self._arrived.wait()
        request = found[nth - 1]
        assert isinstance(request, Request)
        return request

    def requests(self, method: str) -> list[Request]:
        return [m for m, _ in self.sent if isinstance(m, Request) and m.method == method]

    async def until_done(self) -> None:
        """Wait for the call's task to end (bounded)."""
        assert self.task is not None
        await asyncio.wait_for(asyncio.shield(self.task), WAIT_S * 6)

    # --- the service's part ---------------------------------------------------------------

    def drain(self) -> None:
        """Collect the datagrams, route the events (``RelayService._drain``), re-arm the timer."""
        for data, destination in self.endpoint.datagrams_to_send():
            self.sent.append((parse_message(data), destination))
            self._arrived.set()
        while (event := self.endpoint.next_event()) is not None:
            flow = self.flows.get(event.call) if hasattr(event, "call") else None
            match event:
                case CallProgress() if isinstance(flow, OutgoingCallFlow):
                    flow.progress(event)
                case CallAnswered(media=media) if flow and not flow.signals.answered.done():
                    flow.signals.answered.set_result(media)
                case CallEnded() if flow and not flow.signals.ended.done():
                    flow.signals.ended.set_result(event)
                case MediaUpdated(media=media) if flow and flow.session is not None:
                    flow.session.update(media)
                case InfoReceived(content_type=content_type, body=body) if flow:
                    flow.info_dtmf(content_type, body)
                case _:
                    pass
        self._rearm()

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.endpoint.get_timer()
        if when is not None:
            self._timer = asyncio.get_running_loop().call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.endpoint.handle_timer(asyncio.get_running_loop().time())
        self.drain()

    def kinds(self) -> list[str]:
        """The recorded events' types, in order."""
        return [event.type.value for event in self.events]


def telephone_event_type(offer: str) -> str:
    """The payload type our offer gave telephone-event/8000 (RFC 4733 §7.1.1)."""
    found = re.search(r"^a=rtpmap:(\d+) telephone-event/8000\r?$", offer, re.M)
    assert found, offer
    return found.group(1)


@dataclass
class Callee:
    """The called party's responses, as RFC 3261 text (see the module docstring)."""

    rtp_port: int = 4000
    tag: str = "callee-tag-1"
    port: int = CALLEE_PORT
    """The callee's SIP port (its Contact and Via)."""

    def response(
        self, request: Request, status: int, reason: str, *, extra: str = "", body: str = ""
    ) -> str:
        """A response to ``request`` (§8.2.6.2), with our To tag unless it is 100 Trying."""
        via = "".join(f"Via: {value}\r\n" for value in request.headers.get_all("Via"))
        to = request.headers.get("To") or ""
        if status != 100 and ";tag=" not in to:
            to += f";tag={self.tag}"
        content = "Content-Type: application/sdp\r\n" if body else ""
        return (
            f"SIP/2.0 {status} {reason}\r\n"
            f"{via}"
            f"From: {request.headers.get('From')}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {request.call_id}\r\n"
            f"CSeq: {request.cseq.number} {request.cseq.method}\r\n"
            f"{extra}{content}"
            f"Content-Length: {len(body.encode())}\r\n"
            "\r\n"
            f"{body}"
        )

    def ringing(self, invite: Request) -> str:
        return self.response(invite, 180, "Ringing", extra=self._contact())

    def answer(self, invite: Request, *, events: bool = True) -> str:
        """200 OK with an SDP answer choosing PCMU and (``events``) the offer's telephone-event
        (RFC 3264 §6)."""
        offer = invite.body.decode()
        event = telephone_event_type(offer)
        formats = f"0 {event}" if events else "0"
        telephone_event = (
            f"a=rtpmap:{event} telephone-event/8000\r\na=fmtp:{event} 0-15\r\n" if events else ""
        )
        sdp = (
            "v=0\r\n"
            f"o=callee 53655765 2353687637 IN IP4 {LOOPBACK}\r\n"
            "s=-\r\n"
            f"c=IN IP4 {LOOPBACK}\r\n"
            "t=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP {formats}\r\n"
            "a=rtpmap:0 PCMU/8000\r\n"
            f"{telephone_event}"
            "a=sendrecv\r\n"
        )
        return self.response(invite, 200, "OK", extra=self._contact(), body=sdp)

    def _contact(self) -> str:
        return f"Contact: <sip:callee@{LOOPBACK}:{self.port}>\r\n"

    def bye(self, invite: Request, cseq: int = 1) -> str:
        """The callee's BYE (§15.1.1): its dialog's From/To reversed, to our Contact."""
        contact = invite.headers.get("Contact") or ""
        target = contact.strip().removeprefix("<").split(">", 1)[0]
        return (
            f"BYE {target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bKcalleebye{cseq}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: {invite.headers.get('To')};tag={self.tag}\r\n"
            f"To: {invite.headers.get('From')}\r\n"
            f"Call-ID: {invite.call_id}\r\n"
            f"CSeq: {cseq} BYE\r\n"
            "Content-Length: 0\r\n"
            "\r\n"
        )
