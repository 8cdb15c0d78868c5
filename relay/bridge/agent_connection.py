"""The agent's WebSocket, read and written from the callbacks that have the bytes: no task per message.

Theory of operation:

1. **Read.** :class:`AgentConnection` is websockets' client connection with one change: a
   complete (unfragmented) text or binary frame goes to ``on_message`` as websockets parses
   it, in the callback that read its bytes, instead of into the queue ``recv()`` reads. The
   bridge applies it there and then (``media`` to the media core, ``mark``, ``clear``,
   ``dtmf``). Waking a reader task instead put each echo one loop iteration behind, 9-10 ms at
   100 calls, when the callers' RTP comes in one burst per 20 ms. The first fragmented message
   switches the callback off for good: from then on every message goes through ``recv()``, in
   order (the bridge keeps one task reading, for that and to see the socket close). Text that is
   not UTF-8 fails the connection with 1007, as ``recv()`` would. Control frames (ping, pong,
   close) are websockets' own, untouched.
2. **Write.** :func:`send_now` writes one message in the callback that produced it (caller
   audio, a played mark, a digit), with websockets' ``broadcast``: no await and no task, so
   messages leave in the order they were framed, which is ``sequenceNumber`` order. A socket
   that is closing is skipped; how it closed is for the reading side to report.

``relay.bridge.agent_ws`` sets ``on_message`` for the session and clears it after; the connect
attempts (:mod:`relay.bridge.connect`) create the connection with this class.
"""

from __future__ import annotations

from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.connection import broadcast
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Event, State

__all__ = ["AgentConnection", "send_now"]

_DATA = (Opcode.TEXT, Opcode.BINARY)


class AgentConnection(ClientConnection):
    """websockets' client connection, handing each whole data message to ``on_message`` at once.

    A complete (unfragmented) text or binary frame goes to ``on_message`` as it is parsed,
    instead of into the queue ``recv()`` reads, so it is applied without a task switch. The
    first fragmented message switches that off for good: from then on every message goes
    through ``recv()``, in order. Text that is not UTF-8 fails the connection with 1007, as
    ``recv()`` would.
    """

    on_message: Callable[[str | bytes], None] | None = None

    def process_event(self, event: Event) -> None:
        handler = self.on_message
        if handler is None or not isinstance(event, Frame) or event.opcode not in _DATA:
            super().process_event(event)
            return
        if not event.fin:  # a fragmented message: recv() assembles it and all that follows
            self.on_message = None
            super().process_event(event)
            return
        if event.opcode is Opcode.BINARY:
            handler(bytes(event.data))
            return
        try:
            text = bytes(event.data).decode()
        except UnicodeDecodeError as exc:
            self.set_connection_exc(exc)
            self.protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            self.send_data()
            return
        handler(text)


def send_now(connection: ClientConnection, message: str | bytes) -> None:
    """Write one message now, in call order (websockets' ``broadcast``: no await, no task).

    A socket that is closing is skipped; how it closed is the read task's to report.
    """
    if connection.protocol.state is State.OPEN:
        broadcast((connection,), message)
