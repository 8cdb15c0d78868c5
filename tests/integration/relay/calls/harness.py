"""One call's flow in the test's event loop: the real SIP endpoint, fakes for the rest of the relay.

:class:`Wire` is what ``RelayService`` is around a call, and nothing more:

- a real sans-I/O :class:`~relay.sip.endpoint.SipEndpoint`, fed datagrams directly (no
  socket): :meth:`Wire.send` hands it a caller's literal message, as the UDP transport would;
- the drain loop: after every call into the endpoint, its datagrams are collected
  (:attr:`Wire.sent`, in order) and its events routed to the call's flow, as the service
  routes them (``CallAnswered``, ``CallEnded``, ``InfoReceived``);
- :class:`~relay.calls.deps.CallDeps` with fakes: ``decide`` is the test's function, ``record``
  appends to :attr:`Wire.events` (or raises, for ``fault_at``), ``transmit`` is the drain; a real RTP port allocator on
  127.0.0.1 (a window below the ephemeral range, ``tests/support/ports.py``).

:class:`Caller` writes the caller's SIP messages as literal RFC 3261 text (not with the relay's
builders); what comes back is read with the relay's parser, to look at fields.

Runs on a simulated clock (``tests/support/virtual_time.py``): ``maxDuration`` and the agent's
connection bounds pass in no real time, and the agent (``tests/integration/relay/bridge/
harness.py``) listens on 127.0.0.1 in the same loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from chalicelib.contracts import (
    CallEvent,
    CallEventType,
    InviteAccepted,
    InviteRejected,
    InviteWebhook,
)
from relay.calls.deps import CallDeps
from relay.calls.incoming import IncomingCallFlow
from relay.ids import SeededIdSource
from relay.sip.address import Address, Transport
from relay.sip.endpoint import SipEndpoint
from relay.sip.events import IncomingCallReceived
from relay.sip.syntax.message import Request, Response
from relay.sip.syntax.parser import parse_message
from relay.sip.transaction.timers import Timers
from relay.sip.usage.invite_session import CallAnswered, CallEnded, InfoReceived
from relay.transport.rtp_session import RtpPortAllocator
from tests.integration.relay.bridge.harness import LOCAL_EGRESS
from tests.support.ports import free_port_range

LOOPBACK = "127.0.0.1"
RELAY = Address(LOOPBACK, 5060, Transport.UDP)
"""The relay's SIP address as its endpoint advertises it (nothing listens: datagrams go in
through :meth:`Wire.send`)."""
CALLER = Address(LOOPBACK, 5062, Transport.UDP)
"""Where the caller's datagrams come from."""
RETRY_AFTER_S = 5
"""``SIPLINE_RETRY_AFTER_S``'s default (docs/relay.md, Settings)."""
SECRET = "test-webhook-secret"
WAIT_S = 10.0

Decide = Callable[[InviteWebhook], Awaitable[InviteAccepted | InviteRejected]]


@dataclass
class Wire:
    """The endpoint, its drain loop and the call's fake dependencies (see the module docstring)."""

    decide: Decide
    ports: RtpPortAllocator = field(
        default_factory=lambda: RtpPortAllocator(LOOPBACK, *free_port_range(8))
    )
    sent: list[Request | Response] = field(default_factory=list)
    """Every message the endpoint transmitted, in order."""
    events: list[CallEvent] = field(default_factory=list)
    """Every call event the flow recorded, in order."""
    webhooks: list[InviteWebhook] = field(default_factory=list)
    fault_at: CallEventType | None = None
    """Recording an event of this type raises (a bug in the call's glue)."""
    flow: IncomingCallFlow | None = None
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.endpoint = SipEndpoint(
            {Transport.UDP: RELAY}, user_agent="sipline", timers=Timers(), ids=SeededIdSource(1)
        )
        self.deps = CallDeps(
            decide=self._decide,
            record=self._record,
            transmit=self.drain,
            now=lambda: asyncio.get_running_loop().time(),
            ports=self.ports,
            ids=SeededIdSource(2),
            advertised_address=LOOPBACK,
            edge_id="edge-1",
            webhook_secret=SECRET,
            retry_after_s=RETRY_AFTER_S,
            egress=LOCAL_EGRESS,
        )
        self._arrived = asyncio.Event()

    def _record(self, event: CallEvent) -> None:
        if event.type is self.fault_at:
            raise RuntimeError(f"injected fault: recording {event.type.value}")
        self.events.append(event)

    async def _decide(self, webhook: InviteWebhook) -> InviteAccepted | InviteRejected:
        self.webhooks.append(webhook)
        return await self.decide(webhook)

    # --- the caller's side ----------------------------------------------------------------

    def send(self, text: str) -> None:
        """Hand the endpoint one datagram from the caller, then drain it."""
        now = asyncio.get_running_loop().time()
        self.endpoint.receive_datagram(text.encode(), CALLER, now)
        self.drain()

    async def next_sent(
        self, wanted: Callable[[Request | Response], bool], after: int = 0
    ) -> Request | Response:
        """Wait for the first message the endpoint sent, from index ``after``, that is ``wanted``."""
        async with asyncio.timeout(WAIT_S):
            while True:
                for message in self.sent[after:]:
                    if wanted(message):
                        return message
                self._arrived.clear()
                await self._arrived.wait()

    async def final(self, method: str = "INVITE") -> Response:
        """The first final response the endpoint sent to a ``method`` request."""
        found = await self.next_sent(
            lambda m: isinstance(m, Response) and m.status >= 200 and m.cseq.method == method
        )
        assert isinstance(found, Response)
        return found

    async def request(self, method: str) -> Request:
        """The first ``method`` request the endpoint sent."""
        found = await self.next_sent(lambda m: isinstance(m, Request) and m.method == method)
        assert isinstance(found, Request)
        return found

    async def until_done(self) -> None:
        """Wait for the call's task to end (bounded)."""
        assert self.task is not None
        await asyncio.wait_for(asyncio.shield(self.task), WAIT_S)

    # --- the service's part ---------------------------------------------------------------

    def drain(self) -> None:
        """Collect the endpoint's datagrams and route its events (``RelayService._drain``)."""
        for data, _ in self.endpoint.datagrams_to_send():
            self.sent.append(parse_message(data))
            self._arrived.set()
        while (event := self.endpoint.next_event()) is not None:
            flow = self.flow
            match event:
                case IncomingCallReceived(call=call, request=request):
                    self.flow = IncomingCallFlow(call, request, self.deps)
                    self.task = asyncio.get_running_loop().create_task(self.flow.run())
                case CallAnswered(media=media) if flow and not flow.signals.answered.done():
                    flow.signals.answered.set_result(media)
                case CallEnded() if flow and not flow.signals.ended.done():
                    flow.signals.ended.set_result(event)
                case InfoReceived(content_type=content_type, body=body) if flow:
                    flow.info_dtmf(content_type, body)
                case _:
                    pass

    def kinds(self) -> list[str]:
        """The recorded events' types, in order."""
        return [event.type.value for event in self.events]


SDP_OFFER = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio {rtp_port} RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=sendrecv\r\n"
)


@dataclass
class Caller:
    """A caller's SIP messages, written as RFC 3261 text (§8.1.1, §13.2.2.4, §15.1.1)."""

    rtp_port: int
    call_id: str = "3848276298220188511@carrier.example"
    tag: str = "a73kszlfl"
    to_tag: str = ""
    remote_target: str = ""
    cseq: int = 1

    def invite(self) -> str:
        body = SDP_OFFER.format(rtp_port=self.rtp_port)
        return (
            f"INVITE sip:sales@{LOOPBACK}:{RELAY.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{CALLER.port};branch=z9hG4bK776asdhds\r\n"
            "Max-Forwards: 70\r\n"
            f'From: "Alice Caller" <sip:+15551234567@{LOOPBACK}>;tag={self.tag}\r\n'
            f"To: <sip:sales@{LOOPBACK}>\r\n"
            f"Call-ID: {self.call_id}\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:alice@{LOOPBACK}:{CALLER.port}>\r\n"
            "X-Customer-Name: Bob\r\n"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n"
            f"{body}"
        )

    def answered(self, final: Response) -> str:
        """The ACK to the INVITE's final response (a 2xx's in the dialog, else the INVITE's)."""
        self.to_tag = final.to.tag or ""
        if 200 <= final.status < 300:
            self.remote_target = str(final.contacts[0].uri)
            return self.in_dialog("ACK", cseq=1)
        return (
            f"ACK sip:sales@{LOOPBACK}:{RELAY.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{CALLER.port};branch=z9hG4bK776asdhds\r\n"
            "Max-Forwards: 70\r\n"
            f'From: "Alice Caller" <sip:+15551234567@{LOOPBACK}>;tag={self.tag}\r\n'
            f"To: <sip:sales@{LOOPBACK}>;tag={self.to_tag}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            "CSeq: 1 ACK\r\n"
            "Content-Length: 0\r\n"
            "\r\n"
        )

    def in_dialog(self, method: str, *, cseq: int | None = None) -> str:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        return (
            f"{method} {self.remote_target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{CALLER.port};branch=z9hG4bK{method.lower()}{cseq}\r\n"
            "Max-Forwards: 70\r\n"
            f'From: "Alice Caller" <sip:+15551234567@{LOOPBACK}>;tag={self.tag}\r\n'
            f"To: <sip:sales@{LOOPBACK}>;tag={self.to_tag}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            "Content-Length: 0\r\n"
            "\r\n"
        )

    @staticmethod
    def ok(request: Request) -> str:
        """The caller's 200 to a request from the relay (its BYE), copying what §8.2.6.2 says."""
        via = "\r\n".join(f"Via: {value}" for value in request.headers.get_all("Via"))
        return (
            "SIP/2.0 200 OK\r\n"
            f"{via}\r\n"
            f"From: {request.headers.get('From')}\r\n"
            f"To: {request.headers.get('To')}\r\n"
            f"Call-ID: {request.call_id}\r\n"
            f"CSeq: {request.cseq.number} {request.method}\r\n"
            "Content-Length: 0\r\n"
            "\r\n"
        )


def fields(event: CallEvent) -> dict[str, Any]:
    """An event's wire fields that are set (docs/relay.md leaves the ``null`` ones out too)."""
    return {k: v for k, v in event.model_dump(mode="json", by_alias=True).items() if v is not None}
