"""Helpers of the route tests: a JSON client over ``chalice.test.Client``, the edge's queue."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from chalice.test import Client

from chalicelib.contracts import EdgeCommand, parse_command
from tests.support.event_vectors import VECTORS as VECTORS  # the tests read it from here
from tests.support.event_vectors import vector_events
from tests.support.fakes import (
    API_KEY,
    START,
    FixedClock,
    as_json,
    invite_body,
    signed_headers,
)

REGION = "us-east-1"
TABLE = "sipline-test"
MEDIA_URL = "ws://127.0.0.1:9000/agent"
FALLBACK_SECRET = "fallback-secret-5b7e"


@dataclass
class Aws:
    """The mocked AWS clients and resources of one test."""

    dynamodb: Any
    sqs: Any
    queue_url: str


@dataclass(frozen=True)
class Reply:
    """An HTTP response, with its JSON body decoded (None when empty)."""

    status: int
    body: Any
    headers: dict[str, str]


class Api:
    """The Chalice test client with JSON in and out, the API key and the edge's signatures."""

    def __init__(self, client: Client, clock: FixedClock, key: str = API_KEY) -> None:
        self.client = client
        self.clock = clock
        self.key = key

    def as_key(self, key: str) -> Api:
        """The same client, authenticated with another API key."""
        return Api(self.client, self.clock, key)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = {"X-API-Key": self.key} if self.key else {}
        raw = b""
        if body is not None:
            raw = body if isinstance(body, bytes) else as_json(body)
            sent["Content-Type"] = "application/json"
        response = self.client.http.request(method, path, headers=sent | (headers or {}), body=raw)
        decoded = json.loads(response.body) if response.body else None
        return Reply(response.status_code, decoded, dict(response.headers))

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("PATCH", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Reply:
        return self.request("DELETE", path, **kwargs)

    def webhook(self, path: str, body: Any, **sign: Any) -> Reply:
        """POST ``body`` to a webhook, signed by the edge now (``sign``: ``signed_headers``'s)."""
        raw = body if isinstance(body, bytes) else as_json(body)
        headers = signed_headers(raw, path=path, **({"at": self.clock()} | sign))
        response = self.client.http.post(path, headers=headers, body=raw)
        return Reply(response.status_code, json.loads(response.body), dict(response.headers))

    def invite(self, **overrides: Any) -> Reply:
        """Post an INVITE webhook (``tests.support.fakes.invite_body`` with ``overrides``)."""
        return self.webhook("/webhooks/sip/invite", invite_body(**overrides))

    def events(self, events: list[dict[str, Any]]) -> Reply:
        """Post a batch of call events."""
        return self.webhook("/webhooks/sip/events", {"events": events})

    def heartbeat(self, edge_id: str, call_ids: list[str], **fields: Any) -> Reply:
        """Post a relay's heartbeat, sent now, listing ``call_ids`` as the calls it holds."""
        body = {"edgeId": edge_id, "sentAt": self.clock().isoformat(), "callIds": call_ids}
        return self.webhook("/webhooks/sip/heartbeat", body | fields)

    # --- resources the tests need as a starting point ---------------------------------------

    def create_agent(self, name: str = "sales", **template: Any) -> dict[str, Any]:
        call_template = {"mediaEndpoint": {"url": MEDIA_URL}} | template
        reply = self.post("/api/agents", {"name": name, "callTemplate": call_template})
        assert reply.status == 201, reply.body
        return dict(reply.body)

    def patch_sip(self, **fields: Any) -> dict[str, Any]:
        reply = self.patch("/api/sip", fields)
        assert reply.status == 200, reply.body
        return dict(reply.body)

    def create_registration(self, **fields: Any) -> dict[str, Any]:
        body = {"username": "1001", "password": "s3cret-pw", "proxy": "pbx.example.test"} | fields
        reply = self.post("/api/sip/registrations", body)
        assert reply.status == 201, reply.body
        return dict(reply.body)

    def dial(
        self,
        agent_id: str,
        to: str = "sip:+15557654321@pbx.example.test",
        *,
        outgoing: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Reply:
        """Place an outgoing call for ``agent_id`` (``fields`` go beside ``medium``)."""
        sip = {"to": to, "from": "+15551110000"} | (outgoing or {})
        return self.post(
            f"/api/agents/{agent_id}/calls", {"medium": {"sip": {"outgoing": sip}}} | fields
        )


class Queue:
    """The edge's side of the command queue."""

    def __init__(self, aws: Aws) -> None:
        self._aws = aws

    def drain(self) -> list[EdgeCommand]:
        """Receive (and delete) every queued command, parsed as the edge parses them."""
        commands: list[EdgeCommand] = []
        while True:
            response = self._aws.sqs.receive_message(
                QueueUrl=self._aws.queue_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            )
            messages = response.get("Messages", [])
            if not messages:
                return commands
            for message in messages:
                command = parse_command(message["Body"])
                assert message["MessageAttributes"]["type"]["StringValue"] == command.type
                commands.append(command)
                self._aws.sqs.delete_message(
                    QueueUrl=self._aws.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )


def stored_items(aws: Aws) -> list[dict[str, Any]]:
    """Every item of the table, as DynamoDB holds it."""
    return list(aws.dynamodb.scan(TableName=TABLE)["Items"])


def load_vector(name: str, call_id: str, *, at: datetime = START) -> list[dict[str, Any]]:
    """The events of ``tests/vectors/events/<name>.json``, naming ``call_id``, t=0 at ``at``."""
    return vector_events(name, call_id, at=at)


def path_of(url: str) -> str:
    """The path and query of a full URL (a page link), as the test client takes them."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


@dataclass(frozen=True)
class FallbackCall:
    """One request the fallback handler received."""

    body: dict[str, Any]
    headers: dict[str, str]
    signature_ok: bool


class FallbackServer:
    """A real fallback handler on 127.0.0.1: checks sipline's signature, answers from a script.

    A request whose ``X-Sipline-Signature`` does not match ``secret`` is answered 401 (so the
    INVITE falls back to 480), as a careful handler would.
    """

    def __init__(
        self,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.secret = secret
        self.status = 200
        self.answer: bytes = b"{}"
        self.calls: list[FallbackCall] = []
        self.hits = 0
        """Requests of any method, redirected or not."""
        self.hosts: list[str] = []
        """The Host header of each request."""
        self.location: str | None = None
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._scheme = "http" if tls is None else "https"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"{self._scheme}://{self._server.server_address[0]}:{self.port}/sip/fallback"

    def redirect_to(self, url: str) -> None:
        """Answer every request with ``302 Found`` to ``url`` from now on."""
        self.location = url

    def answer_with(self, body: Any, status: int = 200) -> None:
        self.status = status
        self.answer = body if isinstance(body, bytes) else as_json(body)

    def start(self) -> FallbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def signature_ok(self, headers: dict[str, str], body: bytes) -> bool:
        """Check the documented scheme: one of the comma-separated ``v1=`` values is the
        HMAC-SHA256 of ``<timestamp>.<body>`` under our secret, and the timestamp is fresh."""
        timestamp = headers.get("X-Sipline-Timestamp", "")
        offered = [v.strip() for v in headers.get("X-Sipline-Signature", "").split(",")]
        expected = hmac.new(
            self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 60
        return fresh and any(hmac.compare_digest(v, f"v1={expected}") for v in offered)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.hits += 1
                server.hosts.append(self.headers.get("Host", ""))
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                server.hits += 1
                server.hosts.append(self.headers.get("Host", ""))
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if server.location is not None:
                    server.calls.append(FallbackCall(json.loads(body), {}, False))
                    self.send_response(302)
                    self.send_header("Location", server.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = dict(self.headers.items())
                ok = server.signature_ok(headers, body)
                server.calls.append(FallbackCall(json.loads(body), headers, ok))
                status, answer = (server.status, server.answer) if ok else (401, b"{}")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def apply(api: Api, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Post a batch of events that must be taken (200); return the acknowledgement."""
    reply = api.events(events)
    assert reply.status == 200, reply.body
    return dict(reply.body)
