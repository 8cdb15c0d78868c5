"""An incoming call transferred in-process: the real SIP endpoint, the caller and the target in the test.

:class:`TransferWire` is :class:`~tests.integration.relay.calls.harness.Wire` (an incoming call's
flow around the real sans-I/O endpoint) with what transfers need, as ``RelayService`` builds it:

- :class:`~relay.calls.deps.DialDeps` for the second leg (the endpoint's ``place_call``, a real
  ``SipLocator``: the target is an IP literal, no DNS is asked; a Fernet cipher; ``hold``
  routes the leg's events to it) and :class:`~relay.calls.deps.TransferDeps` (the endpoint's
  ``send_refer``, the real ``HoldMusicLoader`` with the shipped default loop);
- the drain routes the endpoint's events as ``RelayService._dispatch`` does, REFER outcomes and
  the second leg's ``CallProgress`` included, and re-arms the endpoint's timer (REFER's NOTIFY
  bound, the ring timeout);
- the endpoint's REFER policy is the service's (``RelayService._follows_refer``: the call's
  ``incomingRefer``), and a far end's REFER is routed as the service routes it
  (``far_refer.referred``; the followed leg's ``CallProgress`` to its ``ReferLeg``);
- :meth:`TransferWire.transfer` hands a ``transfer`` command to the call as the service's
  handler does (``CallSignals.transfers``), :meth:`TransferWire.outcome` a ``transfer_outcome``
  (``CallSignals.outcomes``);
- :func:`agents_server` serves the call's agent and, on the second WebSocket to the same URL, a
  warm transfer's operator-leg agent;
- ``record`` stamps each event with the simulated clock (``T0`` + loop time), as a relay's wall
  clock would advance, so that ``chalicelib/billing.py`` can bill what the flow recorded.

:func:`notify` and :func:`reply` write the transferee's messages as RFC 3515 / RFC 3261 text.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from chalicelib.contracts import CallEvent, TransferCommand, TransferOutcomeCommand
from chalicelib.crypto import FernetCipher
from relay.calls.deps import CallDeps, CallFlow, DialDeps, TransferDeps
from relay.calls.far_refer import ReferLeg, referred
from relay.calls.incoming import IncomingCallFlow
from relay.calls.transfer_leg import TransferLeg
from relay.ids import SeededIdSource
from relay.sip.address import Address, Transport
from relay.sip.endpoint import SipEndpoint
from relay.sip.events import IncomingCallReceived
from relay.sip.syntax.message import Request
from relay.sip.syntax.parser import parse_message
from relay.sip.syntax.uri import AbsoluteUri, SipUri
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
from relay.sip.usage.refer import (
    ReferAccepted,
    ReferFailed,
    ReferProgress,
    ReferSucceeded,
    send_refer,
)
from relay.sip.usage.refer_server import ReferReceived, ReferServers
from relay.transport.dns import DnsSettings, SipLocator
from relay.transport.hold_music_fetch import HoldMusicFetchSettings, HoldMusicLoader
from tests.integration.relay.bridge.harness import LOCAL_EGRESS, Agent
from tests.integration.relay.calls.dialing import CALLEE, PASSWORD_KEY
from tests.integration.relay.calls.harness import CALLER, LOOPBACK, RELAY, Caller, Wire

T0 = datetime(2025, 3, 14, 9, 0, 0, tzinfo=UTC)
TRANSFER_ID = "01a212c0-0000-7000-8000-000000000001"
NOTIFY_TIMEOUT_S = 60.0
REFERRED_BYE_S = 5.0
RING_TIMEOUT_S = 60.0
DECISION_TIMEOUT_S = 120.0


CALL_ID = "01a212bf-1dc0-7935-87f3-1a9f9d14bb2f"
WARM_PROMPT = "Brief the operator: Bob wants to change his delivery address."
"""A ``transferSystemPromptTemplate`` with ``{context}`` filled (docs/api.md's example)."""


def warm_command(method: str, **overrides: Any) -> TransferCommand:
    """A warm ``transfer`` command (docs/webhooks.md) to the operator on 127.0.0.1."""
    body = {"kind": "warm", "prompt": WARM_PROMPT} | overrides
    return transfer_command(method, **body)


@asynccontextmanager
async def agents_server(agent: Agent, operator: Agent) -> AsyncIterator[str]:
    """Serve ``agent`` on 127.0.0.1 and, on the next connection, ``operator``; yield the URL."""

    async def handle(connection: ServerConnection) -> None:
        await (operator if agent.connected.is_set() else agent).handle(connection)

    async with serve(handle, LOOPBACK, 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://{LOOPBACK}:{port}/agent"


def transfer_command(method: str, **overrides: Any) -> TransferCommand:
    """A cold ``transfer`` command as docs/webhooks.md shows it, to the target on 127.0.0.1."""
    body: dict[str, Any] = {
        "type": "transfer",
        "callId": CALL_ID,
        "transferId": TRANSFER_ID,
        "kind": "cold",
        "method": method,
        "target": f"sip:+15550100@{LOOPBACK}:{CALLEE.port}",
        "referHeaders": [["X-Case", "42 & urgent"]],
        "inviteHeaders": [["X-Case", "42"]],
        "from": None,
        "username": None,
        "passwordCiphertext": None,
        "holdMusicUrl": None,
        "holdMusic": "default",
        "prompt": None,
    }
    return TransferCommand.model_validate(body | overrides)


@dataclass
class TransferWire(Wire):
    """An incoming call's wire that can transfer (see the module docstring)."""

    flows: dict[InviteSession, CallFlow] = field(default_factory=dict)
    sources: list[Address] = field(default_factory=list)
    """Where each of ``sent`` went."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.endpoint = SipEndpoint(
            {Transport.UDP: RELAY},
            user_agent="sipline",
            timers=Timers(),
            ids=SeededIdSource(1),
            usage_starters=(ReferServers(accept_in=self._follows_refer),),
        )
        locator = SipLocator(
            DnsSettings(nameservers=((LOOPBACK, 9),)), egress=LOCAL_EGRESS, ids=self.deps.ids
        )
        loader = HoldMusicLoader(HoldMusicFetchSettings(egress=LOCAL_EGRESS))
        self.deps = CallDeps(
            **{name: getattr(self.deps, name) for name in _CALL_DEPS},
            dial=DialDeps(
                place_call=partial(place_call, self.endpoint),
                hold=self.flows.__setitem__,
                locate=locator.locate,
                cipher=FernetCipher(PASSWORD_KEY),
                ring_timeout_s=RING_TIMEOUT_S,
            ),
            transfer=TransferDeps(
                send_refer=partial(send_refer, self.endpoint),
                hold_music=loader.choose,
                notify_timeout_s=NOTIFY_TIMEOUT_S,
                referred_bye_s=REFERRED_BYE_S,
                decision_timeout_s=DECISION_TIMEOUT_S,
            ),
        )
        self._timer: asyncio.TimerHandle | None = None

    def _follows_refer(
        self,
        session: InviteSession,
        uri: SipUri | AbsoluteUri,
        referred_by: str | None,
        headers: tuple[tuple[str, str], ...],
    ) -> bool:
        flow = self.flows.get(session)
        return isinstance(flow, IncomingCallFlow) and flow.follows_refer(uri, headers)

    def _record(self, event: CallEvent) -> None:
        now = T0 + timedelta(seconds=asyncio.get_running_loop().time())
        super()._record(event.model_copy(update={"occurred_at": now}))

    def transfer(self, command: TransferCommand) -> None:
        """What ``RelayService._transfer_command`` does with a command for this call."""
        assert self.flow is not None
        self.flow.signals.transfers.put_nowait(command)

    def outcome(self, accepted: bool, reason: str | None = None, **overrides: Any) -> None:
        """What ``RelayService._transfer_outcome_command`` does with the operator's outcome."""
        assert self.flow is not None
        body = {
            "type": "transfer_outcome",
            "callId": CALL_ID,
            "transferId": TRANSFER_ID,
            "accepted": accepted,
            "reason": reason,
        }
        command = TransferOutcomeCommand.model_validate(body | overrides)
        self.flow.signals.outcomes.put_nowait(command)

    def send_from(self, text: str, source: Address) -> None:
        """Hand the endpoint one datagram from ``source`` (the target), then drain it."""
        self.endpoint.receive_datagram(text.encode(), source, asyncio.get_running_loop().time())
        self.drain()

    def to(self, destination: Address) -> list[Any]:
        """The messages sent to ``destination``, in order."""
        return [m for m, where in zip(self.sent, self.sources, strict=True) if where == destination]

    def drain(self) -> None:
        """``RelayService._drain``: datagrams out, events routed, the timer re-armed."""
        for data, destination in self.endpoint.datagrams_to_send():
            self.sent.append(parse_message(data))
            self.sources.append(destination)
            self._arrived.set()
        while (event := self.endpoint.next_event()) is not None:
            match event:
                case IncomingCallReceived(call=call, request=request):
                    self.flow = IncomingCallFlow(call, request, self.deps)
                    self.flows[call] = self.flow
                    self.task = asyncio.get_running_loop().create_task(self.flow.run())
                case CallAnswered(call=call, media=media):
                    if (flow := self.flows.get(call)) and not flow.signals.answered.done():
                        flow.signals.answered.set_result(media)
                case CallEnded(call=call):
                    if (flow := self.flows.pop(call, None)) and not flow.signals.ended.done():
                        flow.signals.ended.set_result(event)
                case MediaUpdated(call=call, media=media):
                    if (flow := self.flows.get(call)) and flow.session is not None:
                        flow.session.update(media)
                case InfoReceived(call=call, content_type=content_type, body=body):
                    if flow := self.flows.get(call):
                        flow.info_dtmf(content_type, body)
                case CallProgress(call=call):
                    if isinstance(flow := self.flows.get(call), (TransferLeg, ReferLeg)):
                        flow.progress(event)
                case ReferReceived(session=session):
                    if flow := self.flows.get(session):
                        referred(flow, event, asyncio.get_running_loop().time())
                case ReferAccepted() | ReferProgress() | ReferSucceeded() | ReferFailed():
                    if flow := self.flows.get(event.session):
                        flow.signals.refer.put_nowait(event)
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


_CALL_DEPS = (
    "decide", "record", "transmit", "now", "ports", "ids", "advertised_address", "edge_id",
    "webhook_secret", "retry_after_s", "egress",
)  # fmt: skip


def reply(request: Request, status: int, reason: str) -> str:
    """The caller's response to a request from the relay (RFC 3261 §8.2.6.2)."""
    via = "".join(f"Via: {value}\r\n" for value in request.headers.get_all("Via"))
    return (
        f"SIP/2.0 {status} {reason}\r\n"
        f"{via}"
        f"From: {request.headers.get('From')}\r\n"
        f"To: {request.headers.get('To')}\r\n"
        f"Call-ID: {request.call_id}\r\n"
        f"CSeq: {request.cseq.number} {request.method}\r\n"
        f"Contact: <sip:alice@{LOOPBACK}:{CALLER.port}>\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    )


def notify(caller: Caller, refer: Request, sipfrag: str, *, terminated: bool) -> str:
    """The transferee's NOTIFY (RFC 3515 §2.4.4-§2.4.5, RFC 5589 §6.1's flow):
    ``Event: refer`` with the REFER's CSeq as ``id``, a ``message/sipfrag`` status line."""
    caller.cseq += 1
    body = f"{sipfrag}\r\n"
    state = "terminated;reason=noresource" if terminated else "active;expires=60"
    return (
        f"NOTIFY {caller.remote_target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{CALLER.port};branch=z9hG4bKnotify{caller.cseq}\r\n"
        "Max-Forwards: 70\r\n"
        f'From: "Alice Caller" <sip:+15551234567@{LOOPBACK}>;tag={caller.tag}\r\n'
        f"To: <sip:sales@{LOOPBACK}>;tag={caller.to_tag}\r\n"
        f"Call-ID: {caller.call_id}\r\n"
        f"CSeq: {caller.cseq} NOTIFY\r\n"
        f"Contact: <sip:alice@{LOOPBACK}:{CALLER.port}>\r\n"
        f"Event: refer;id={refer.cseq.number}\r\n"
        f"Subscription-State: {state}\r\n"
        "Content-Type: message/sipfrag\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
        f"{body}"
    )


class _Peer(asyncio.DatagramProtocol):
    def __init__(self, received: list[bytes]) -> None:
        self.received = received

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)


PAYLOAD = bytes([0x55]) * 160
"""20 ms of PCMU (RFC 3551 §4.5.14) that is not silence: what a peer says, recognisable."""


class RtpPeer:
    """A phone's RTP socket on 127.0.0.1 (RFC 3550 §5.1 packets of PCMU, payload type 0): it
    keeps what it receives and, while :meth:`talk` runs, sends a packet a second so that the
    relay's 30 s media timeout never fires."""

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.received: list[bytes] = []
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._seq = 0

    async def __aenter__(self) -> RtpPeer:
        self._transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Peer(self.received), local_addr=(LOOPBACK, 0)
        )
        self.port = int(self._transport.get_extra_info("sockname")[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.close()

    def packet(self) -> bytes:
        self._seq += 1
        header = bytes([0x80, 0x00]) + self._seq.to_bytes(2, "big")
        header += (self._seq * 160).to_bytes(4, "big") + self.ssrc.to_bytes(4, "big")
        return header + PAYLOAD

    def talk(self, port: int) -> None:
        """Send a packet a second to the relay's ``port`` from now on."""

        async def loop() -> None:
            while True:
                assert self._transport is not None
                self._transport.sendto(self.packet(), (LOOPBACK, port))
                await asyncio.sleep(1.0)

        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(loop())

    def quiet(self) -> None:
        """Stop sending (the phone hung up)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def heard(self) -> int:
        """Packets received whose payload is the other peer's :data:`PAYLOAD`."""
        return sum(1 for data in self.received if data[12:] == PAYLOAD)


def sdp_port(body: bytes) -> int:
    """The m=audio port of an SDP body (RFC 4566 §5.14)."""
    for line in body.decode().splitlines():
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise AssertionError(f"no m=audio line in {body!r}")
