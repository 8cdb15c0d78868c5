"""A callee on a real UDP socket of 127.0.0.1, for a running relay (``RelayService``) to dial.

Its messages are the ones :class:`~tests.integration.relay.calls.dialing.Callee` writes from
RFC 3261's text; what arrives is read with the relay's parser, to look at fields (which
transaction, which dialog, from where). Two modes:

- by default it answers nothing but BYE: the test answers each INVITE itself (:meth:`UdpCallee.send`
  to the last request's source), to script rings, challenges and failures;
- ``answering``: each INVITE is answered at once with 200 and an SDP answer, sent back to where
  the INVITE came from, so one callee takes any number of calls from any number of relays at
  once. Each call is told apart by its Request-URI user (:meth:`UdpCallee.dialog`); where each
  request came from (:attr:`UdpCallee.sources`) says which relay sent it. It does not
  retransmit its 200 (RFC 3261 §13.3.1.4): on loopback the datagram is not lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

from relay.sip.syntax.message import Request
from relay.sip.syntax.parser import parse_message
from relay.sip.syntax.uri import SipUri
from tests.integration.relay.calls.dialing import LOOPBACK, WAIT_S, Callee


class _CalleeSocket(asyncio.DatagramProtocol):
    def __init__(self, callee: UdpCallee) -> None:
        self.callee = callee

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.callee.received(data, (addr[0], addr[1]))


class UdpCallee:
    """A callee on a UDP socket of 127.0.0.1 for a running relay to dial (a context manager).

    It keeps every request it receives (:attr:`requests`, from :attr:`sources`) and answers
    nothing by itself but BYE (200, to where the BYE came from): the test sends the responses,
    written by :attr:`texts`, with :meth:`send`. ``answering``: it also answers each INVITE at
    once with 200 and an SDP answer (its own RTP sink), to where the INVITE came from, for any
    number of calls from any number of relays (one per Request-URI user: :meth:`dialog`).
    """

    def __init__(self, *, answering: bool = False) -> None:
        self.requests: list[Request] = []
        self.sources: list[tuple[str, int]] = []
        """Where each of :attr:`requests` came from."""
        self.peer: tuple[str, int] | None = None
        self.answering = answering
        self._arrived = asyncio.Event()
        self._socket: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self.texts = Callee()

    async def __aenter__(self) -> UdpCallee:
        loop = asyncio.get_running_loop()
        self._socket, _ = await loop.create_datagram_endpoint(
            lambda: _CalleeSocket(self), local_addr=(LOOPBACK, 0)
        )
        self.texts.port = self.port
        if self.answering:  # the relay's RTP lands here, unread
            self._rtp, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=(LOOPBACK, 0)
            )
            self.texts.rtp_port = int(self._rtp.get_extra_info("sockname")[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        for transport in (self._socket, self._rtp):
            if transport is not None:
                transport.close()

    @property
    def port(self) -> int:
        assert self._socket is not None
        return int(self._socket.get_extra_info("sockname")[1])

    def uri(self, user: str = "+15551234567") -> str:
        return f"sip:{user}@{LOOPBACK}:{self.port}"

    def received(self, data: bytes, source: tuple[str, int]) -> None:
        message = parse_message(data)
        if isinstance(message, Request):
            self.requests.append(message)
            self.sources.append(source)
            self.peer = source
            reply = None
            if message.method == "BYE":
                reply = self.texts.response(message, 200, "OK")
            elif message.method == "INVITE" and self.answering:
                reply = self.texts.answer(message)
            if reply is not None:
                assert self._socket is not None
                self._socket.sendto(reply.encode(), source)
        self._arrived.set()

    def send(self, text: str) -> None:
        assert self._socket is not None and self.peer is not None
        self._socket.sendto(text.encode(), self.peer)

    async def request(self, method: str, nth: int = 1, timeout_s: float = WAIT_S) -> Request:
        """The ``nth`` distinct ``method`` request received (retransmissions not counted)."""
        async with asyncio.timeout(timeout_s):
            while True:
                found = self.distinct(method)
                if len(found) >= nth:
                    return found[nth - 1]
                self._arrived.clear()
                await self._arrived.wait()

    def distinct(self, method: str, user: str | None = None) -> list[Request]:
        """The ``method`` requests received, each transaction once (by Via branch); with
        ``user``, only those of the calls to ``user`` (:meth:`dialog`)."""
        requests = self.requests if user is None else [r for r, _ in self.dialog(user)]
        seen: dict[str, Request] = {}
        for request in requests:
            if request.method == method:
                seen.setdefault(request.headers.get("Via") or "", request)
        return list(seen.values())

    def dialog(self, user: str) -> list[tuple[Request, tuple[str, int]]]:
        """The requests of the calls to ``user`` (the Call-IDs of the INVITEs whose Request-URI
        user is ``user``), each with where it came from, in arrival order."""
        call_ids = {
            r.call_id
            for r in self.requests
            if r.method == "INVITE" and isinstance(r.uri, SipUri) and r.uri.user == user
        }
        pairs = zip(self.requests, self.sources, strict=True)
        return [(r, source) for r, source in pairs if r.call_id in call_ids]
