"""A whole relay (``RelayService``) in the test's event loop, and a phone to call it.

- :func:`running` starts a relay on 127.0.0.1 and stops it the way SIGTERM does (its ``stop``
  event). Its SIP port is probed, then bound by the relay itself; when something took the port
  in between, the relay fails to bind and the next port is tried, so no "free port" is trusted.
  Its RTP range lies below Linux's ephemeral range (32768-60999); the relay's allocator skips a
  pair another process holds.
- :class:`Phone` is a SIP user agent over UDP written from RFC 3261's text, not from the relay's
  SIP code: it sends INVITE, ACK, INFO and BYE as literal messages and answers the relay's
  requests 200. It reads what arrives with the relay's parser, to look at fields.
- :class:`ControlPlane` is the relay tests' control plane stand-in with an allowlist that admits
  the phone; :class:`GatedControlPlane` answers the INVITE webhook only once the test opens its
  gate.

Every wait is on a condition, bounded by a timeout that fails the test.
"""

from __future__ import annotations

import asyncio
import errno
import secrets
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from chalicelib.contracts import CallEvent
from relay.config import RelaySettings
from relay.control.spool import SEGMENT_PREFIX
from relay.service import RelayService
from relay.sip.syntax.message import Request, Response, make_response
from relay.sip.syntax.parser import parse_message
from tests.integration.relay.bridge.harness import LOCAL_EGRESS
from tests.integration.relay.control.fake_control_plane import (
    ACCEPT,
    ALLOWLIST,
    SECRET,
    FakeControlPlane,
)

LOOPBACK = "127.0.0.1"
RTP_PORTS = (26000, 26199)
RTP_KEPT = 500  # 10 s of 20 ms packets
WAIT_S = 10.0
"""Bound on any one wait for the relay, the phone or the agent (a failure, never a pass)."""
STOP_S = 30.0
"""Bound on a relay's shutdown: 5 s for the calls, 5 s for the outbox, 1 s for the sockets."""
BIND_ATTEMPTS = 20


def run(scenario: Callable[[], Awaitable[None]], timeout_s: float = 90.0) -> None:
    """Run an async scenario in a fresh event loop, bounded by ``timeout_s``."""
    asyncio.run(asyncio.wait_for(scenario(), timeout_s))


async def until(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Wait until ``predicate()`` holds, polling the loop; fail after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


def settings_for(control_url: str, spool_dir: Path, **overrides: Any) -> RelaySettings:
    """Relay settings on 127.0.0.1 (the SIP port is chosen by :func:`running`)."""
    fields: dict[str, Any] = {
        "control_url": control_url,
        "webhook_secret": SECRET,
        "sip_host": LOOPBACK,
        "sip_port": 5060,
        "rtp_port_min": RTP_PORTS[0],
        "rtp_port_max": RTP_PORTS[1],
        "spool_dir": spool_dir,
        "egress": LOCAL_EGRESS,
    }
    return RelaySettings(**(fields | overrides))


CALL_ID = "01a212bf-7716-7562-9041-795e062bbff2"
"""The id the stand-in gives its accepted call (the control plane's ids are UUIDs, and the
relay derives the Twilio CallSid from one)."""


def accepting(agent_url: str) -> dict[str, Any]:
    """The stand-in's decision: accept as :data:`CALL_ID`, with the agent at ``agent_url``."""
    return dict(ACCEPT, callId=CALL_ID, mediaEndpoint={"url": agent_url, "framing": "twilio"})


@dataclass
class Relay:
    """A running relay: its service, SIP port, the task running it and its stop event."""

    service: RelayService
    port: int
    task: asyncio.Task[None]
    stop_event: asyncio.Event

    async def stop(self) -> None:
        """Shut down as SIGTERM does (``relay/__main__.py`` sets this event) and wait for it."""
        self.stop_event.set()
        await asyncio.wait_for(asyncio.shield(self.task), STOP_S)


def _probe_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


async def start(
    settings: RelaySettings,
    serve: Callable[[RelayService, asyncio.Event], Awaitable[None]] | None = None,
    *,
    consumer_options: dict[str, Any] | None = None,
) -> Relay:
    """Start a relay on a port it could bind; return once it is ready.

    ``serve(service, stop)`` runs it (default: ``service.run(stop)``); ``consumer_options`` are
    its command consumers' (``RelayService``).
    """
    for _ in range(BIND_ATTEMPTS):
        service = RelayService(
            replace(settings, sip_port=_probe_port()), consumer_options=consumer_options
        )
        stop = asyncio.Event()
        runner = serve(service, stop) if serve is not None else service.run(stop)
        task: asyncio.Task[None] = asyncio.ensure_future(runner)
        ready = asyncio.ensure_future(service.ready.wait())
        await asyncio.wait({task, ready}, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if service.ready.is_set():
            return Relay(service, service.settings.sip_port, task, stop)
        if not task.done():
            task.cancel()
            raise AssertionError(f"the relay was not ready within {WAIT_S}s")
        error = task.exception()
        if not (isinstance(error, OSError) and error.errno == errno.EADDRINUSE):
            raise AssertionError(f"the relay did not start: {error!r}") from error
    raise AssertionError(f"no SIP port the relay could bind in {BIND_ATTEMPTS} attempts")


@asynccontextmanager
async def running(
    settings: RelaySettings, *, consumer_options: dict[str, Any] | None = None
) -> AsyncIterator[Relay]:
    """Run a relay for the block; stop it (the SIGTERM path) when the block ends."""
    relay = await start(settings, consumer_options=consumer_options)
    try:
        yield relay
    finally:
        await relay.stop()


def spooled(spool_dir: Path) -> list[CallEvent]:
    """The events in the spool's segment files, in file order."""
    events: list[CallEvent] = []
    for path in sorted(spool_dir.glob(f"{SEGMENT_PREFIX}*")):
        for line in path.read_bytes().splitlines():
            events.append(CallEvent.model_validate_json(line))
    return events


@dataclass
class ControlPlane(FakeControlPlane):
    """The relay tests' stand-in, whose allowlist admits the phone (127.0.0.1)."""

    allowlist: dict[str, Any] = field(
        default_factory=lambda: dict(ALLOWLIST, allowedCidrRanges=[f"{LOOPBACK}/32"])
    )


@dataclass
class GatedControlPlane(ControlPlane):
    """The stand-in, but its INVITE webhook waits until :attr:`gate` is set."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0
    """INVITE webhooks received and held at the gate."""

    async def _invite(self, request: web.Request) -> web.Response:
        self.waiting += 1
        await self.gate.wait()
        return await super()._invite(request)


# --- the phone ----------------------------------------------------------------------------------

SDP_OFFER = (
    "v=0\r\n"
    "o=phone 2890844526 2890844526 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio {rtp_port} RTP/AVP 0 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=sendrecv\r\n"
)


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, phone: Phone) -> None:
        self.phone = phone

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.phone.received(data, (addr[0], addr[1]))


class _RtpSocket(asyncio.DatagramProtocol):
    """The phone's RTP socket: what the relay sends there is kept, the latest few seconds."""

    def __init__(self, phone: Phone) -> None:
        self.phone = phone

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.phone.rtp.append(data)


class Phone:
    """A UDP SIP phone on 127.0.0.1 making one call to ``relay_port`` (see the module docstring).

    Requests from the relay (BYE) are answered 200 at once and kept in :attr:`requests`.
    """

    def __init__(self, relay_port: int) -> None:
        self.relay = (LOOPBACK, relay_port)
        self.call_id = f"{secrets.token_hex(8)}@phone"
        self.tag = secrets.token_hex(4)
        self.to_tag: str | None = None
        self.remote_target: str | None = None
        self.cseq = 1
        self.invite_branch = ""
        self.user = "sales"
        self.requests: list[Request] = []
        self._unclaimed: list[Response] = []
        self._arrived = asyncio.Event()
        self._sip: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self.rtp: deque[bytes] = deque(maxlen=RTP_KEPT)
        """The datagrams the relay sent to the phone's RTP port (RTCP goes to the next port)."""

    async def __aenter__(self) -> Phone:
        loop = asyncio.get_running_loop()
        self._sip, _ = await loop.create_datagram_endpoint(
            lambda: _Socket(self), local_addr=(LOOPBACK, 0), family=socket.AF_INET
        )
        self._rtp, _ = await loop.create_datagram_endpoint(
            lambda: _RtpSocket(self), local_addr=(LOOPBACK, 0), family=socket.AF_INET
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for transport in (self._sip, self._rtp):
            if transport is not None:
                transport.close()

    @property
    def port(self) -> int:
        assert self._sip is not None
        return int(self._sip.get_extra_info("sockname")[1])

    @property
    def rtp_port(self) -> int:
        assert self._rtp is not None
        return int(self._rtp.get_extra_info("sockname")[1])

    # --- receiving ------------------------------------------------------------------------

    def received(self, data: bytes, source: tuple[str, int]) -> None:
        message = parse_message(data)
        if isinstance(message, Request):
            self.requests.append(message)
            if message.method != "ACK":
                answer = make_response(message, 200)
                assert self._sip is not None
                self._sip.sendto(bytes(answer), source)
        else:
            self._unclaimed.append(message)
        self._arrived.set()

    async def _claim(self, wanted: Callable[[Response], bool]) -> Response:
        async with asyncio.timeout(WAIT_S):
            while True:
                for index, response in enumerate(self._unclaimed):
                    if wanted(response):
                        return self._unclaimed.pop(index)
                self._arrived.clear()
                await self._arrived.wait()

    async def final(self, method: str = "INVITE") -> Response:
        """Return the next final response to a ``method`` request (provisional ones are skipped)."""
        return await self._claim(lambda r: r.status >= 200 and r.cseq.method == method)

    async def request(self, method: str) -> Request:
        """Wait for a request ``method`` from the relay (already answered 200)."""
        await until(lambda: any(r.method == method for r in self.requests))
        return next(r for r in self.requests if r.method == method)

    # --- sending --------------------------------------------------------------------------

    def _send(self, text: str, body: str = "") -> None:
        assert self._sip is not None
        head = text.replace("\n", "\r\n")
        self._sip.sendto(f"{head}Content-Length: {len(body)}\r\n\r\n{body}".encode(), self.relay)

    def _branch(self) -> str:
        return f"z9hG4bK{secrets.token_hex(6)}"

    def invite(self, user: str = "sales", *, offer: str = SDP_OFFER) -> None:
        """Send the INVITE (PCMU and telephone-event offered, unless ``offer`` says otherwise)."""
        self.user = user
        self.invite_branch = self._branch()
        sdp = offer.format(rtp_port=self.rtp_port)
        self._send(
            f"INVITE sip:{user}@{LOOPBACK}:{self.relay[1]} SIP/2.0\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch={self.invite_branch};rport\n"
            "Max-Forwards: 70\n"
            f"From: <sip:+15550100@{LOOPBACK}>;tag={self.tag}\n"
            f"To: <sip:{user}@{LOOPBACK}>\n"
            f"Call-ID: {self.call_id}\n"
            "CSeq: 1 INVITE\n"
            f"Contact: <sip:caller@{LOOPBACK}:{self.port}>\n"
            "Content-Type: application/sdp\n",
            sdp,
        )

    async def answered(self) -> Response:
        """Wait for the INVITE's final response; ACK it (RFC 3261 §13.2.2.4, §17.1.1.3)."""
        response = await self.final()
        self.to_tag = response.to.tag
        if 200 <= response.status < 300:
            contact = response.contacts[0].uri
            self.remote_target = str(contact)
            self._in_dialog("ACK", cseq=1)
        else:  # the ACK of a failure is part of the INVITE transaction: same branch
            self._send(
                f"ACK sip:{self.user}@{LOOPBACK}:{self.relay[1]} SIP/2.0\n"
                f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch={self.invite_branch};rport\n"
                "Max-Forwards: 70\n"
                f"From: <sip:+15550100@{LOOPBACK}>;tag={self.tag}\n"
                f"To: <sip:{self.user}@{LOOPBACK}>;tag={self.to_tag}\n"
                f"Call-ID: {self.call_id}\n"
                "CSeq: 1 ACK\n"
            )
        return response

    def _in_dialog(
        self, method: str, *, cseq: int | None = None, headers: str = "", body: str = ""
    ) -> None:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        self._send(
            f"{method} {self.remote_target} SIP/2.0\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch={self._branch()};rport\n"
            "Max-Forwards: 70\n"
            f"From: <sip:+15550100@{LOOPBACK}>;tag={self.tag}\n"
            f"To: <sip:{self.user}@{LOOPBACK}>;tag={self.to_tag}\n"
            f"Call-ID: {self.call_id}\n"
            f"CSeq: {cseq} {method}\n"
            f"{headers}",
            body,
        )

    async def info(self, content_type: str, body: str) -> Response:
        """Send an INFO in the dialog; return its final response."""
        self._in_dialog("INFO", headers=f"Content-Type: {content_type}\n", body=body)
        return await self.final("INFO")

    async def bye(self) -> Response:
        """Hang up; return the BYE's final response."""
        self._in_dialog("BYE")
        return await self.final("BYE")
