"""What crosses 127.0.0.1 to some UDP ports, seen from outside every process: a packet socket on ``lo``.

An ``AF_PACKET`` socket bound to the loopback interface (root, as the interop suite runs)
receives every frame on ``lo``; each datagram shows up twice there (sent, then received), and
only the received copy (packet type ``PACKET_HOST``) is kept. Frames are Ethernet II (``lo``'s
link type), IPv4 (RFC 791: header length in 32-bit words), UDP (RFC 768). A thread reads until
:meth:`LoopbackCapture.stop`; :meth:`payloads` gives what went to one port. Used to see that a
SIPp peer's RTP reached another SIPp peer through the relay, which neither SIPp can report.
"""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType

ETH_P_ALL = 0x0003
ETHERTYPE_IPV4 = 0x0800
PACKET_OUTGOING = 4
MAX_DATAGRAMS = 100_000
"""Bound on what one capture keeps (a test's RTP is hundreds of packets)."""


class LoopbackCapture:
    """UDP datagrams to ``ports`` on ``lo`` while the with-block runs."""

    def __init__(self, *ports: int) -> None:
        self.ports = set(ports)
        self.datagrams: list[tuple[int, bytes]] = []
        """(destination port, UDP payload), in capture order."""
        self._stop = threading.Event()
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
        self._socket.bind(("lo", 0))
        self._socket.settimeout(0.1)
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> LoopbackCapture:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def payloads(self, port: int) -> list[bytes]:
        return [payload for to, payload in self.datagrams if to == port]

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                frame, address = self._socket.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] == PACKET_OUTGOING or len(frame) < 14 + 20 + 8:
                continue
            if struct.unpack_from("!H", frame, 12)[0] != ETHERTYPE_IPV4:
                continue
            ip = frame[14:]
            header = (ip[0] & 0x0F) * 4
            if ip[9] != socket.IPPROTO_UDP:
                continue
            _, destination, length, _ = struct.unpack_from("!HHHH", ip, header)
            if destination in self.ports and len(self.datagrams) < MAX_DATAGRAMS:
                self.datagrams.append((destination, ip[header + 8 : header + length]))
