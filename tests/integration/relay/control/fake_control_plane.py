"""An in-process stand-in for the control plane's ``/webhooks/sip`` routes, on 127.0.0.1.

It checks signatures with the real :func:`chalicelib.signing.verify`, keeps events once per
``eventId`` (like ``chalicelib/events.py``), and can be told to be slow, fail, answer garbage or
be down (nothing listening on its port), so the relay's client can be tested against each.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from chalicelib.contracts import CallEventBatch, DialClaim, EdgeHeartbeat, InviteWebhook
from chalicelib.signing import SignatureError, verify
from tests.support.ports import free_port  # below the ephemeral range: it can come back

SECRET = "whsec_relay_test"
ACCEPT = {
    "action": "accept",
    "callId": "call-1",
    "agentId": "agent-1",
    "mediaEndpoint": {"url": "ws://127.0.0.1:9/agent", "framing": "twilio"},
    "templateContext": {"customer_name": "Bob"},
    "codecPreference": ["PCMU/8000"],
}
REJECT = {"action": "reject", "sipStatus": 403, "reason": "source_ip_not_allowed"}
ALLOWLIST = {"allowedCidrRanges": ["203.0.113.0/24"], "version": 3}

Script = Callable[[str], "Reply | None"]
"""Given the path, return the reply to give instead of the normal one (None: normal)."""


@dataclass(frozen=True)
class Reply:
    """A scripted answer: a status and a raw body, after an optional delay."""

    status: int = 200
    body: bytes = b""
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeControlPlane:
    """The fake; ``start()`` listens on ``port`` (fixed, so it can come back after ``stop()``)."""

    port: int = field(default_factory=free_port)
    secret: str = SECRET
    decision: dict[str, Any] = field(default_factory=lambda: dict(ACCEPT))
    allowlist: dict[str, Any] = field(default_factory=lambda: dict(ALLOWLIST))
    script: Script = lambda path: None
    body_script: Callable[[str, bytes], Reply | None] = lambda path, body: None
    """Like ``script``, given the request's body too (to answer one batch, not another)."""
    invites: list[InviteWebhook] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    """Event ids of every batch posted (signed and valid), duplicates included."""
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Events kept, once per eventId."""
    heartbeats: list[EdgeHeartbeat] = field(default_factory=list)
    claims: list[DialClaim] = field(default_factory=list)
    """Every dial claim posted; a call is bound to the first relay that claims it, as
    ``chalicelib/command_routing.py`` does (docs/relay.md, Commands)."""
    hung_up: set[str] = field(default_factory=set)
    """Calls a claim is refused for with ``hung_up`` (the API hung them up first)."""
    requests: int = 0
    peers: set[tuple[str, int]] = field(default_factory=set)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhooks/sip/invite", self._invite)
        app.router.add_post("/webhooks/sip/events", self._events)
        app.router.add_get("/webhooks/sip/allowlist", self._allowlist)
        app.router.add_post("/webhooks/sip/heartbeat", self._heartbeat)
        app.router.add_post("/webhooks/sip/dial", self._dial)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _checked(self, request: web.Request) -> tuple[bytes, web.Response | None]:
        self.requests += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers.add((peer[0], peer[1]))
        body = await request.read()
        reply = self.script(request.path) or self.body_script(request.path, body)
        if reply is not None:
            await asyncio.sleep(reply.delay_s)
            if reply.status:
                return body, web.Response(
                    status=reply.status, body=reply.body, headers=reply.headers
                )
        try:
            verify(
                [self.secret],
                dict(request.headers),
                body,
                method=request.method,
                path=request.path,
                now=time.time(),
                window_s=60,
            )
        except SignatureError as error:
            return body, web.json_response(
                {"code": "unauthorized", "detail": str(error)}, status=401
            )
        return body, None

    async def _invite(self, request: web.Request) -> web.Response:
        body, early = await self._checked(request)
        if early is not None:
            return early
        self.invites.append(InviteWebhook.model_validate_json(body))
        return web.json_response(self.decision)

    async def _events(self, request: web.Request) -> web.Response:
        body, early = await self._checked(request)
        if early is not None:
            return early
        batch = CallEventBatch.model_validate_json(body)
        self.batches.append([e.event_id for e in batch.events])
        applied = duplicates = 0
        for event in json.loads(body)["events"]:
            if event["eventId"] in self.applied:
                duplicates += 1
            else:
                self.applied[event["eventId"]] = event
                applied += 1
        return web.json_response({"applied": applied, "duplicates": duplicates, "unknown": 0})

    async def _allowlist(self, request: web.Request) -> web.Response:
        body, early = await self._checked(request)
        if early is not None:
            return early
        assert body == b""
        return web.json_response(self.allowlist)

    async def _heartbeat(self, request: web.Request) -> web.Response:
        body, early = await self._checked(request)
        if early is not None:
            return early
        self.heartbeats.append(EdgeHeartbeat.model_validate_json(body))
        return web.json_response({"stored": True})

    async def _dial(self, request: web.Request) -> web.Response:
        body, early = await self._checked(request)
        if early is not None:
            return early
        claim = DialClaim.model_validate_json(body)
        holder = next((c.edge_id for c in self.claims if c.call_id == claim.call_id), None)
        self.claims.append(claim)
        if claim.call_id in self.hung_up:
            return web.json_response({"proceed": False, "reason": "hung_up"})
        if holder is not None and holder != claim.edge_id:
            return web.json_response({"proceed": False, "reason": "taken"})
        return web.json_response({"proceed": True, "reason": None})
