"""An echo agent for the relay benchmarks, cheap per message, that timestamps latency probes.

``python -m bench.echo_agent --port N`` serves on 127.0.0.1 only, until SIGTERM:

- a WebSocket (any path) in the Twilio Media Streams framing: every ``media`` is answered at
  once with a ``media`` carrying the same payload; other messages (``connected``, ``start``,
  ``stop``, ...) are parsed as JSON, ``start`` for its ``streamSid``;
- ``GET /stats``: counters, media frames per open socket, the process's CPU seconds, and the
  last times its own event loop ran a 20 ms timer more than 10 ms late (``stalls``: the agent,
  not the relay, delayed echoes then);
- ``GET /probes``: the probe frames seen since the last ``/probes`` (then forgotten), as
  ``[key, received, echoed]`` rows: ``key`` is characters 8-16 of the base64 payload (probe id
  and counter, see ``bench.latency_probe``), the two times ``time.monotonic()``.

It has to carry a few hundred calls x 50 messages a second each way on a 2-core machine next
to the relay, so per message the work is kept small:

1. The WebSocket is an ``asyncio.Protocol`` of its own (RFC 6455: the opening handshake,
   unfragmented frames, ping, close), not a library connection: no coroutine, future or lock
   per message. websockets' C ``apply_mask`` unmasks the client's frames. The relay (the
   client, ``relay/bridge/agent_ws.py``) never fragments a message and negotiates no extension.
2. The relay's ``media`` messages are compact JSON whose text starts with ``{"event":"media"``
   (``relay/bridge/twilio_framing.py``, ``TwilioFraming.media``): the payload is sliced out of
   the raw bytes (no UTF-8 decode, no ``json.loads``) and the echo is built by concatenation.
3. A probe frame is recognized by its base64 prefix: the probe's 6-byte magic encodes to the
   same 8 characters whatever follows. Its receipt time is taken in ``data_received``, as the
   bytes come off the socket, and its echo time just before ``transport.write`` (on loopback
   the relay may have read and forwarded the echo before that ``write`` returns).

It runs on uvloop when that is installed (less event-loop work per message), else asyncio;
``/stats`` says which.

Measured alone (100 websockets clients x 50 ``media`` a second, asyncio, 2026-11-25): 28 µs of
CPU per echoed message (17 user + 11 system), half of what the same echo on a websockets 15
server connection costs (57 µs: 31 + 26); so ~0.14 % of a core per call.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import signal
import time

from websockets.speedups import apply_mask

from bench.latency_probe import PROBE_PREFIX_B64

HOST = "127.0.0.1"
MEDIA_PREFIX = b'{"event":"media"'
PAYLOAD_KEY = b'"payload":"'
KEY_SLICE = slice(8, 16)  # base64 of the probe id and counter (bytes 6-12 of the payload)
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
MAX_HEAD_BYTES = 16384
MAX_FRAME_BYTES = 1 << 20
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_UNSUPPORTED = 1003  # RFC 6455 §7.4.1
WATCH_INTERVAL_S = 0.020
STALL_S = 0.010  # a timer this late: the agent itself delayed echoes
STALLS_KEPT = 200


def frame(opcode: int, payload: bytes) -> bytes:
    """Return one unmasked, final server frame (RFC 6455 §5.2)."""
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    if length < 1 << 16:
        return bytes((0x80 | opcode, 126)) + length.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + length.to_bytes(8, "big") + payload


class EchoAgent:
    """Counters and probe records shared by every connection of one agent process."""

    def __init__(self) -> None:
        self.stats = {"media": 0, "echoed": 0, "open": 0, "connections": 0, "closed": 0}
        self.per: dict[int, int] = {}  # open connection -> media frames so far
        self.probes: list[tuple[str, float, float]] = []
        self.stalls: list[tuple[float, float]] = []  # (monotonic, seconds late), last STALLS_KEPT

    def watch_loop(self, due: float) -> None:
        """Note when this loop ran a timer ``STALL_S`` late: the agent, not the relay, lagged."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - due > STALL_S:
            self.stalls = [*self.stalls[-STALLS_KEPT + 1 :], (now, now - due)]
        loop.call_at(now + WATCH_INTERVAL_S, self.watch_loop, now + WATCH_INTERVAL_S)

    def http(self, path: str) -> bytes | None:
        """Return the body for ``GET /stats`` or ``GET /probes``, else None."""
        if path.startswith("/stats"):
            user_s, system_s = os.times()[:2]
            stats = {**self.stats, "per": self.per, "cpu_s": user_s + system_s,
                     "cpu_sys_s": system_s, "t": time.monotonic(), "stalls": self.stalls,
                     "loop": type(asyncio.get_running_loop()).__module__}  # fmt: skip
            return json.dumps(stats).encode()
        if path.startswith("/probes"):
            rows, self.probes = self.probes, []
            return json.dumps(rows).encode()
        return None


class EchoConnection(asyncio.Protocol):
    """One TCP connection: an HTTP request for the counters, or one call's WebSocket."""

    def __init__(self, agent: EchoAgent) -> None:
        self.agent = agent
        self.buffer = bytearray()
        self.open = False
        self.key = 0
        self.head = b'{"event":"media","streamSid":"","media":{"payload":"'
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open:
            self.open = False
            self.agent.stats["open"] -= 1
            self.agent.stats["closed"] += 1
            self.agent.per.pop(self.key, None)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buffer += data
        if not self.open and not self._handshake():
            return
        self._frames(now)

    def _handshake(self) -> bool:
        """Answer the HTTP request once its head is in; return True once the WebSocket is open."""
        assert self.transport is not None
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                self.transport.close()
            return False
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        path = lines[0].split(" ")[1] if lines[0].count(" ") >= 2 else "/"
        fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        body = self.agent.http(path)
        key = fields.get("sec-websocket-key")
        if body is not None or key is None:
            status = "200 OK" if body is not None else "404 Not Found"
            body = body or b""
            self.transport.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            self.transport.close()
            return False
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        self.transport.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        self.open = True
        stats = self.agent.stats
        stats["open"] += 1
        stats["connections"] += 1
        self.key = stats["connections"]
        self.agent.per[self.key] = 0
        return True

    def _frames(self, now: float) -> None:
        """Take every complete frame off the buffer (RFC 6455 §5.2)."""
        buf = self.buffer
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            masked = b1 & 0x80
            end = pos + head + (4 if masked else 0) + length
            if length > MAX_FRAME_BYTES or end > size:
                if length > MAX_FRAME_BYTES:
                    self._close(1009)
                break
            payload = bytes(buf[end - length : end])
            if masked:
                payload = apply_mask(payload, bytes(buf[end - length - 4 : end - length]))
            pos = end
            if not self._message(b0, payload, now):
                break
        del buf[:pos]

    def _message(self, b0: int, payload: bytes, now: float) -> bool:
        """Act on one frame; return False once the connection is closing."""
        assert self.transport is not None
        opcode = b0 & 0x0F
        if opcode == OP_TEXT and b0 & 0x80 and payload.startswith(MEDIA_PREFIX):
            start = payload.find(PAYLOAD_KEY) + len(PAYLOAD_KEY)
            audio = payload[start : payload.find(b'"', start)]
            agent = self.agent
            agent.stats["media"] += 1
            agent.per[self.key] += 1
            echo = frame(OP_TEXT, self.head + audio + b'"}}')
            if audio.startswith(PROBE_PREFIX_B64):  # the echo's time: as it goes to the kernel
                agent.probes.append((audio[KEY_SLICE].decode(), now, time.monotonic()))
            self.transport.write(echo)
            agent.stats["echoed"] += 1
        elif opcode in (OP_TEXT, OP_BINARY) and b0 & 0x80:
            event = json.loads(payload)
            if event.get("event") == "start":
                sid = event["streamSid"].encode()
                self.head = b'{"event":"media","streamSid":"' + sid + b'","media":{"payload":"'
        elif opcode == OP_PING:
            self.transport.write(frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.transport.write(frame(OP_CLOSE, payload[:2]))
            self.transport.close()
            return False
        elif opcode != OP_PONG:  # a fragmented message: the relay never sends one
            self._close(CLOSE_UNSUPPORTED)
            return False
        return True

    def _close(self, code: int) -> None:
        assert self.transport is not None
        self.transport.write(frame(OP_CLOSE, code.to_bytes(2, "big")))
        self.transport.close()


async def serve_until_stopped(port: int) -> None:
    """Serve on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    agent = EchoAgent()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(lambda: EchoConnection(agent), HOST, port, backlog=1024)
    agent.watch_loop(loop.time())
    print(f"echo agent on ws://{HOST}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve_until_stopped(args.port))
    else:
        uvloop.run(serve_until_stopped(args.port))


if __name__ == "__main__":
    main()
