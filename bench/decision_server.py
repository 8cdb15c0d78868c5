"""A minimal stand-in for the control plane and an agent, to load the relay on its own.

``python -m bench.decision_server --port N --mode reject`` serves, on 127.0.0.1 only:

- ``POST /webhooks/sip/invite``: an immediate decision, with no signature check, no parsing of
  the INVITE beyond nothing at all, and no storage. ``--mode reject`` answers
  ``InviteRejected`` (``--status``, 404 by default); ``--mode accept`` answers ``InviteAccepted``
  with a fresh call id and the media endpoint ``ws://127.0.0.1:<port>/agent`` (Twilio framing),
  or, with ``--agent-url URL`` (repeatable), those URLs in turn (round-robin), e.g. the echo
  agents of ``bench/relay_calls.py``.
- ``POST /webhooks/sip/events``: acknowledges every event of the batch (counted, not stored).
- ``POST /webhooks/sip/dial``: every dial claim proceeds (no store: the benchmarks never send a
  dial twice nor hang one up before it is placed), counted.
- ``GET /webhooks/sip/allowlist``: ``--allow`` (``127.0.0.0/8`` by default) as the relay's IP
  guard snapshot. ``--allow 10.0.0.0/8`` makes the guard refuse 127.0.0.1 with a 403 before
  any webhook: the relay's SIP cost alone.
- ``GET /agent`` (WebSocket): a trivial agent that reads and discards whatever the relay sends
  until the relay closes (it never speaks and never hangs up).
- ``GET /agent-leaves`` (WebSocket): an agent that leaves at once: it notes the wall-clock time
  (``time.time()``) at which the Twilio ``start`` message came off the socket, under the call id
  of its ``customParameters``, then closes (the relay then hangs up the call). The outgoing-call
  benchmark (``bench/outgoing.py``) gives it as the dial commands' media endpoint.
- ``GET /starts``: those times, ``{callId: seconds since the epoch}``.
- ``GET /calls``: the call ids it accepted, in order, and the event types the relay reported
  for each (``{"accepted": [callId], "events": {callId: [type]}}``): ``bench/transfer.py``
  transfers the calls once their agent joined and counts them bridged from these.
- ``GET /stats``: what was served so far, as JSON.

The benchmarks (``bench/sip_load.py``, ``bench/relay_calls.py``) run it as its own process so
that its CPU time is measured apart from the relay's and SIPp's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Sequence

from aiohttp import WSMsgType, web

HOST = "127.0.0.1"
REJECT_REASON = "no_agent_matched"


def build_app(
    mode: str, status: int, allow: list[str], port: int, *, agent_urls: Sequence[str] = ()
) -> web.Application:
    """Return the aiohttp application described in the module docstring."""
    counts: Counter[str] = Counter()
    agent_url = itertools.cycle(agent_urls or [f"ws://{HOST}:{port}/agent"])
    rejected = json.dumps(
        {"action": "reject", "sipStatus": status, "reason": REJECT_REASON, "message": ""}
    ).encode()
    allowlist = json.dumps({"allowedCidrRanges": allow, "version": 1}).encode()

    accepted: list[str] = []
    call_events: dict[str, list[str]] = {}

    async def invite(request: web.Request) -> web.Response:
        await request.read()
        counts["invites"] += 1
        if mode == "reject":
            body = rejected
        else:
            accepted.append(call_id := str(uuid.uuid4()))
            body = json.dumps(
                {
                    "action": "accept",
                    "callId": call_id,
                    "accountId": "default",
                    "agentId": None,
                    "mediaEndpoint": {"url": next(agent_url), "framing": "twilio"},
                }
            ).encode()
        return web.Response(body=body, content_type="application/json")

    async def events(request: web.Request) -> web.Response:
        batch = json.loads(await request.read())
        applied = len(batch.get("events", ()))
        for event in batch.get("events", ()):
            call_events.setdefault(event.get("callId"), []).append(event.get("type"))
        counts["event_batches"] += 1
        counts["events"] += applied
        body = json.dumps({"applied": applied, "duplicates": 0, "unknown": 0}).encode()
        return web.Response(body=body, content_type="application/json")

    async def allowlist_route(request: web.Request) -> web.Response:
        counts["allowlist"] += 1
        return web.Response(body=allowlist, content_type="application/json")

    async def agent(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=None, autoping=True)
        await socket.prepare(request)
        counts["agent_connections"] += 1
        async for message in socket:  # bounded by the relay: it closes after its "stop"
            if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
            counts["agent_messages"] += 1
        return socket

    starts: dict[str, float] = {}

    async def agent_leaves(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=None, autoping=True)
        await socket.prepare(request)
        counts["agent_connections"] += 1
        async for message in socket:  # bounded: it leaves after the start, or the relay closes
            if message.type != WSMsgType.TEXT:
                break
            at = time.time()
            if '"start"' in message.data:
                start = json.loads(message.data).get("start", {})
                starts[start.get("customParameters", {}).get("call_id", "?")] = at
                counts["starts"] += 1
                break
        await socket.close()
        return socket

    async def dial_claim(request: web.Request) -> web.Response:
        await request.read()
        counts["dial_claims"] += 1
        return web.json_response({"proceed": True, "reason": None})

    async def starts_route(request: web.Request) -> web.Response:
        return web.json_response(starts)

    async def calls_route(request: web.Request) -> web.Response:
        return web.json_response({"accepted": accepted, "events": call_events})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(dict(counts))

    app = web.Application()
    app.router.add_post("/webhooks/sip/invite", invite)
    app.router.add_post("/webhooks/sip/events", events)
    app.router.add_post("/webhooks/sip/dial", dial_claim)
    app.router.add_get("/webhooks/sip/allowlist", allowlist_route)
    app.router.add_get("/agent", agent)
    app.router.add_get("/agent-leaves", agent_leaves)
    app.router.add_get("/starts", starts_route)
    app.router.add_get("/calls", calls_route)
    app.router.add_get("/stats", stats)
    return app


async def serve(
    mode: str, status: int, allow: list[str], port: int, *, agent_urls: Sequence[str] = ()
) -> None:
    """Serve on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    runner = web.AppRunner(
        build_app(mode, status, allow, port, agent_urls=agent_urls), access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"decision server on http://{HOST}:{port} ({mode})", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("reject", "accept"), default="reject")
    parser.add_argument("--status", type=int, default=404)
    parser.add_argument("--allow", nargs="*", default=["127.0.0.0/8"])
    parser.add_argument(
        "--agent-url", action="append", default=[],
        help="media endpoint of accepted calls (repeatable: round-robin); default: this server's",
    )  # fmt: skip
    args = parser.parse_args()
    asyncio.run(serve(args.mode, args.status, args.allow, args.port, agent_urls=args.agent_url))


if __name__ == "__main__":
    main()
