"""Fixed clocks, in-memory services and signed-request helpers shared by the tests."""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib import signing
from chalicelib.api_keys import parse_api_keys
from chalicelib.commands import CommandSender, MemoryCommandSender
from chalicelib.config import Settings
from chalicelib.crypto import FernetCipher
from chalicelib.egress import system_resolver
from chalicelib.errors import FallbackFailed
from chalicelib.fallback import FallbackAnswer, FallbackRequest
from chalicelib.ids import counting_id_factory
from chalicelib.services import Services
from chalicelib.store.memory import MemoryTable
from chalicelib.store.repository import Store
from chalicelib.store.table import Table

START = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
API_KEY = "sk_test_iWErCHfgL_SJ7iscWH1ZXtRm1OgRL7QABDHVgPvK"
"""The ``default`` account's key, id ``test`` (made with ``chalicelib.api_keys.new_key``)."""
OTHER_API_KEY = "sk_test_p8SFYXJd2PDrdrlfo4DjQ2DJPQ17cCEjJ2Uia9JT"
"""The ``other`` account's key, id ``other``."""
WEBHOOK_SECRET = "whsec_test"
PASSWORD_KEY = "m2b3oZ0Kp6Zt4q8q2Zx8HFWQx2Zb0wXcZq1jS4yR6uE="


@dataclass
class FixedClock:
    """A wall clock that moves only when told to."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeFallback:
    """A fallback handler that answers from a script and remembers what it was asked."""

    answer: dict[str, Any] | None = None
    asked: list[tuple[str, list[str], FallbackRequest]] = field(default_factory=list)

    def ask(self, url: str, secrets: list[str], request: FallbackRequest) -> FallbackAnswer:
        self.asked.append((url, secrets, request))
        if self.answer is None:
            raise FallbackFailed("fallback handler unreachable: scripted failure")
        return FallbackAnswer.model_validate(self.answer)


def test_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_keys": parse_api_keys(f"test:default:{API_KEY},other:other:{OTHER_API_KEY}"),
        "webhook_secret": WEBHOOK_SECRET,
        "password_key": PASSWORD_KEY,
        "sip_domain": "sip.example.test",
        "default_media_endpoint": None,
    }
    return Settings(**(values | overrides))


def make_services(
    table: Table | None = None,
    *,
    commands: CommandSender | None = None,
    clock: FixedClock | None = None,
    **settings: Any,
) -> Services:
    clock = clock or FixedClock()
    return Services(
        settings=test_settings(**settings),
        store=Store(table if table is not None else MemoryTable()),
        cipher=FernetCipher(PASSWORD_KEY),
        commands=commands if commands is not None else MemoryCommandSender(),
        fallback=FakeFallback(),
        new_id=counting_id_factory(clock),
        clock=clock,
        epoch_seconds=lambda: clock().timestamp(),
    )


def signed_headers(
    body: bytes,
    *,
    path: str,
    method: str = "POST",
    at: datetime = START,
    secret: str = WEBHOOK_SECRET,
) -> dict[str, str]:
    """The edge's headers for a webhook request to ``path`` (signature ``v2``, docs/webhooks.md)."""
    headers = signing.sign(secret, int(at.timestamp()), body, method=method, path=path)
    return {"Content-Type": "application/json", **headers}


def invite_body(**overrides: Any) -> dict[str, Any]:
    """An INVITE webhook body as the edge sends it, for a caller at 203.0.113.10."""
    body: dict[str, Any] = {
        "sourceIp": "203.0.113.10",
        "sourcePort": 5060,
        "transport": "udp",
        "requestUri": "sip:sales@sip.example.test",
        "fromUri": "sip:+15551234567@carrier.example",
        "fromDisplayName": "Alice Caller",
        "fromTag": "a73kszlfl",
        "toUri": "sip:sales@sip.example.test",
        "sipCallId": "3848276298220188511@carrier.example",
        "headers": [["Via", "SIP/2.0/UDP 203.0.113.10;branch=z9hG4bK74bf9"]],
        "offeredCodecs": ["PCMU/8000", "PCMA/8000", "telephone-event/8000"],
    }
    return body | overrides


def as_json(body: Any) -> bytes:
    return json.dumps(body).encode()


PUBLIC_ADDRESS = "93.184.215.14"
"""A globally reachable address (no test connects to it)."""


@dataclass
class FakeDns:
    """A DNS for the egress checks (``chalicelib/egress.py``).

    Answers from ``zone``: a list of answers per name, later lookups taking the next one, the last
    one repeating (as a rebinding DNS server would); an empty answer is NXDOMAIN. Counts the
    lookups of each name. Names it does not know go to the system's resolver, which answers
    ``localhost`` and numeric forms such as ``2130706433`` itself.
    """

    zone: dict[str, list[list[str]]] = field(default_factory=dict)
    lookups: dict[str, int] = field(default_factory=dict)

    def __call__(self, host: str, port: int) -> Sequence[str]:
        answers = self.zone.get(host)
        if answers is None:
            return system_resolver(host, port)
        count = self.lookups.get(host, 0)
        self.lookups[host] = count + 1
        answer = answers[min(count, len(answers) - 1)]
        if not answer:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answer
