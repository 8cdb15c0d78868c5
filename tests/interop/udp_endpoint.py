"""The sans-I/O SIP endpoint on a real UDP socket of 127.0.0.1, driven by the test itself.

For interop tests of ``relay/sip`` usages before the relay's glue uses them (the REFER usages
of issue 11): `UdpEndpoint` owns a :class:`~relay.sip.endpoint.SipEndpoint` and a socket,
sends what the endpoint queues, feeds it what arrives with ``time.monotonic()`` as ``now``,
fires its timers when due, and keeps its events. `UdpEndpoint.run_until` is the only wait: on
a condition over the events, bounded; it raises when the bound passes first.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from types import TracebackType

from relay.ids import SecureIdSource
from relay.sip.address import Address, Transport
from relay.sip.endpoint import SipEndpoint
from relay.sip.events import Event
from relay.sip.transaction.timers import Timers
from relay.sip.usage.table import UsageStarter
from tests.support.ports import LOOPBACK

MAX_DATAGRAM = 65535


class UdpEndpoint:
    """A SipEndpoint listening on a free UDP port of 127.0.0.1; a context manager."""

    def __init__(self, *, usage_starters: tuple[UsageStarter, ...] | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.address = Address(LOOPBACK, self.sock.getsockname()[1], Transport.UDP)
        self.core = SipEndpoint({Transport.UDP: self.address}, user_agent="sipline-interop",
                                timers=Timers(), ids=SecureIdSource(),
                                usage_starters=usage_starters)  # fmt: skip
        self.events: list[Event] = []

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def flush(self) -> None:
        """Send what the endpoint queued and collect its events."""
        for data, to in self.core.datagrams_to_send():
            self.sock.sendto(data, (to.host, to.port))
        while (event := self.core.next_event()) is not None:
            self.events.append(event)

    def run_until(self, done: Callable[[], bool], bound_s: float) -> None:
        """Serve the endpoint until ``done()`` holds; fail after ``bound_s`` seconds."""
        give_up = self.now() + bound_s
        while True:
            self.flush()
            if done():
                return
            now = self.now()
            if now >= give_up:
                raise AssertionError(f"not done within {bound_s} s; events: {self.events}")
            timer = self.core.get_timer()
            wake = give_up if timer is None else min(give_up, timer)
            self.sock.settimeout(max(0.001, wake - now))
            try:
                data, (host, port) = self.sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                pass
            else:
                self.core.receive_datagram(data, Address(host, port, Transport.UDP), self.now())
            timer = self.core.get_timer()
            if timer is not None and timer <= self.now():
                self.core.handle_timer(self.now())

    def of(self, kind: type) -> list[Event]:
        """The events of type ``kind`` so far."""
        return [event for event in self.events if isinstance(event, kind)]

    def __enter__(self) -> UdpEndpoint:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.sock.close()
