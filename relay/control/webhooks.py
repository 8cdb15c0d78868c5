"""The relay's signed HTTP client to the control plane (contracts 1, 2 and 5, the heartbeat and the dial claim), and the IP guard's cache.

Theory of operation:

1. Every request is signed with :func:`chalicelib.signing.sign` over its timestamp, method, path
   (relative to the control plane's base URL) and body (empty for ``GET``), the timestamp taken
   from an injected wall clock.
2. One :class:`aiohttp.ClientSession` per client keeps connections alive between requests, so a
   decision costs one round trip, not a TCP (and TLS) handshake.
3. Every request is bounded by a total timeout (``asyncio.timeout`` around connect, send and read).
   Whatever goes wrong (timeout, refused connection, 5xx, 401, an answer that does not parse)
   raises :class:`ControlPlaneUnavailable` carrying a ``retry_after_s`` hint, so the SIP layer
   answers the caller ``503`` with ``Retry-After`` within a bounded time, never silence.
4. A ``401`` means this edge's ``SIPLINE_WEBHOOK_SECRET`` differs from the control plane's: it is
   logged as an error on every occurrence. Only a ``400`` whose body says ``invalid_input`` means
   the control plane's contract refuses what the edge sent (a bug, final for that request): it
   raises :class:`RequestRefused` (a subclass, so callers that only need "no answer" catch one
   type), logged as an error. Every other status, ``4xx`` included (a 409 race loser, a 404 for a
   record deleted meanwhile, a 403 from a WAF in front of the API), may pass on a retry: it
   raises :class:`ControlPlaneUnavailable`.
5. The IP guard (:class:`AllowlistCache`) is *advisory*. It answers 403 without a webhook only when
   it holds a fresh snapshot that excludes the source. With no snapshot, or one older than
   ``max_age_s``, it says ``None`` (unknown) and the INVITE goes to the webhook, which is the
   authoritative check (``chalicelib/invites.py::admit``). A control plane outage therefore never
   turns into 403s for legitimate callers; at worst a scanner costs webhook calls while it lasts.

Size: a little over 400 lines: one client of the five signed routes, and the IP guard's cache and
refresher, which are the seam to split out (``relay/control/allowlist.py``) when it grows more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

import aiohttp
from pydantic import ValidationError

from chalicelib.allowlist import source_allowed
from chalicelib.contracts import (
    AllowlistSnapshot,
    CallEventBatch,
    CallEventBatchResult,
    DialClaim,
    DialClaimResult,
    EdgeHeartbeat,
    EdgeHeartbeatResult,
    InviteAccepted,
    InviteRejected,
    InviteWebhook,
    parse_decision,
)
from chalicelib.signing import sign

logger = logging.getLogger(__name__)

INVITE_PATH = "/webhooks/sip/invite"
EVENTS_PATH = "/webhooks/sip/events"
HEARTBEAT_PATH = "/webhooks/sip/heartbeat"
DIAL_PATH = "/webhooks/sip/dial"
ALLOWLIST_PATH = "/webhooks/sip/allowlist"
INVALID_INPUT = "invalid_input"
"""The control plane's code for a request its contract refuses (``chalicelib/errors.py``)."""
MAX_RETRY_AFTER_S = 300
"""Cap on a Retry-After taken from the control plane's answer."""


class ControlPlaneUnavailable(Exception):
    """The control plane gave no usable answer; the caller should get 503 + Retry-After."""

    def __init__(self, reason: str, *, retry_after_s: int, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s
        """Seconds to put in the 503's Retry-After (RFC 3261 §20.33)."""
        self.status = status
        """The HTTP status that was answered, or None when there was no answer."""


class RequestRefused(ControlPlaneUnavailable):
    """The control plane answered 400 ``invalid_input``: it refuses what this edge sent (a bug)."""


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    retry_after: str | None


class ControlPlaneClient:
    """Signed, bounded, keep-alive HTTP client of the control plane's ``/webhooks/sip`` routes.

    Use it as an async context manager (or call :meth:`close`) so that its connections close.
    """

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        decision_timeout_s: float = 2.0,
        events_timeout_s: float = 10.0,
        retry_after_s: int = 5,
        epoch: Callable[[], float] = time.time,
        max_connections: int = 100,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._secret = secret
        self._decision_timeout_s = decision_timeout_s
        self._events_timeout_s = events_timeout_s
        self._retry_after_s = retry_after_s
        self._epoch = epoch
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the kept-alive connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def decide(self, invite: InviteWebhook) -> InviteAccepted | InviteRejected:
        """Ask the control plane what to do with an INVITE (contract 1).

        Raises:
            ControlPlaneUnavailable: no usable decision within ``decision_timeout_s``.
        """
        body = invite.model_dump_json(by_alias=True).encode()
        answer = await self._request("POST", INVITE_PATH, body, self._decision_timeout_s)
        try:
            return parse_decision(answer.body)
        except ValidationError as error:
            raise self._unparseable(INVITE_PATH, error) from None

    async def post_events(self, batch: CallEventBatch) -> CallEventBatchResult:
        """Deliver a batch of events (contract 2); the control plane is idempotent by event id.

        Raises:
            RequestRefused: the control plane refuses the batch as invalid (do not resend as is).
            ControlPlaneUnavailable: no acknowledgement within ``events_timeout_s``.
        """
        body = batch.model_dump_json(by_alias=True).encode()
        answer = await self._request("POST", EVENTS_PATH, body, self._events_timeout_s)
        try:
            return CallEventBatchResult.model_validate_json(answer.body)
        except ValidationError as error:
            raise self._unparseable(EVENTS_PATH, error) from None

    async def post_heartbeat(self, heartbeat: EdgeHeartbeat) -> EdgeHeartbeatResult:
        """Tell the control plane this edge is alive and which calls it holds.

        Raises:
            ControlPlaneUnavailable: no acknowledgement within ``decision_timeout_s``.
        """
        # Without a queue, no ``commandQueueUrl`` key: a control plane older than relay queues
        # refuses unknown fields (upgrade the control plane first, docs/deployment.md).
        body = heartbeat.model_dump_json(by_alias=True, exclude_none=True).encode()
        answer = await self._request("POST", HEARTBEAT_PATH, body, self._decision_timeout_s)
        try:
            return EdgeHeartbeatResult.model_validate_json(answer.body)
        except ValidationError as error:
            raise self._unparseable(HEARTBEAT_PATH, error) from None

    async def claim_dial(self, claim: DialClaim) -> DialClaimResult:
        """Ask to place the call of a ``dial`` this edge took, before its INVITE (docs/relay.md,
        Commands): ``proceed`` False means drop the dial (hung up, or taken by another relay).

        Raises:
            ControlPlaneUnavailable: no usable answer within ``decision_timeout_s`` (the dial
                handler fails, and the command comes back later).
        """
        body = claim.model_dump_json(by_alias=True).encode()
        answer = await self._request("POST", DIAL_PATH, body, self._decision_timeout_s)
        try:
            return DialClaimResult.model_validate_json(answer.body)
        except ValidationError as error:
            raise self._unparseable(DIAL_PATH, error) from None

    async def fetch_allowlist(self) -> AllowlistSnapshot:
        """Fetch what the IP guard needs (``GET /webhooks/sip/allowlist``, signed empty body).

        Raises:
            ControlPlaneUnavailable: no usable answer within ``decision_timeout_s``.
        """
        answer = await self._request("GET", ALLOWLIST_PATH, b"", self._decision_timeout_s)
        try:
            return AllowlistSnapshot.model_validate_json(answer.body)
        except ValidationError as error:
            raise self._unparseable(ALLOWLIST_PATH, error) from None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def _request(self, method: str, path: str, body: bytes, timeout_s: float) -> _Answer:
        headers = sign(self._secret, int(self._epoch()), body, method=method, path=path)
        if body:
            headers["Content-Type"] = "application/json"
        url = self._base_url + path
        try:
            async with asyncio.timeout(timeout_s):
                session = self._session_now()
                async with session.request(
                    method, url, data=body or None, headers=headers
                ) as response:
                    answer = _Answer(
                        response.status, await response.read(), response.headers.get("Retry-After")
                    )
        except TimeoutError:
            raise self._unavailable(f"{method} {path}: no answer within {timeout_s}s") from None
        except aiohttp.ClientError as error:
            raise self._unavailable(f"{method} {path}: {type(error).__name__}: {error}") from None
        return self._check(method, path, answer)

    def _check(self, method: str, path: str, answer: _Answer) -> _Answer:
        status = answer.status
        if status == 200:
            return answer
        detail = answer.body[:300].decode("utf-8", "replace")
        where = f"{method} {path} answered {status}"
        if status == 401:
            logger.error(
                "%s: the control plane refuses this edge's signature; check that"
                " SIPLINE_WEBHOOK_SECRET matches the control plane's (%s)",
                where,
                detail,
            )
            raise self._unavailable(f"{where}: unauthorized", status=status)
        if status == 400 and _error_code(answer.body) == INVALID_INPUT:
            logger.error(
                "%s: the control plane refuses what the edge sent (a bug): %s", where, detail
            )
            raise RequestRefused(
                f"{where}: {detail}", retry_after_s=self._retry_after_s, status=status
            )
        retry_after = _retry_after(answer.retry_after) or self._retry_after_s
        logger.warning("%s: %s", where, detail)
        raise ControlPlaneUnavailable(
            f"{where}: {detail}", retry_after_s=retry_after, status=status
        )

    def _unavailable(self, reason: str, *, status: int | None = None) -> ControlPlaneUnavailable:
        logger.warning("control plane unavailable: %s", reason)
        return ControlPlaneUnavailable(reason, retry_after_s=self._retry_after_s, status=status)

    def _unparseable(self, path: str, error: ValidationError) -> ControlPlaneUnavailable:
        count = error.error_count()
        logger.error("%s: the control plane's answer does not parse (%d errors)", path, count)
        return ControlPlaneUnavailable(
            f"{path}: unparseable answer: {error.errors()[0]['msg']}",
            retry_after_s=self._retry_after_s,
            status=200,
        )


def _error_code(body: bytes) -> str | None:
    """Return the ``code`` of a control-plane error body (``{"code": ..., "detail": ...}``)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return code if isinstance(code, str) else None


def _retry_after(raw: str | None) -> int | None:
    """Return a Retry-After given in seconds, capped; None for dates or garbage."""
    if raw is None or not raw.strip().isdigit():
        return None
    return max(1, min(int(raw.strip()), MAX_RETRY_AFTER_S))


class AllowlistCache:
    """The control plane's allowlist as last fetched, with its age (pure: ``now`` is an argument).

    ``now`` is monotonic seconds. The cache answers only while it is fresh (see the module's rule 5).
    """

    def __init__(self, *, refresh_interval_s: float = 15.0, max_age_s: float = 120.0) -> None:
        self.refresh_interval_s = refresh_interval_s
        self.max_age_s = max_age_s
        self._snapshot: AllowlistSnapshot | None = None
        self._fetched_at: float | None = None
        self._refresh_requested = False

    @property
    def snapshot(self) -> AllowlistSnapshot | None:
        """Return the snapshot last stored, fresh or not."""
        return self._snapshot

    def update(self, snapshot: AllowlistSnapshot, now: float) -> bool:
        """Store a freshly fetched snapshot; return True if its version differs from the last one."""
        changed = self._snapshot is None or self._snapshot.version != snapshot.version
        self._snapshot, self._fetched_at = snapshot, now
        self._refresh_requested = False
        return changed

    def allowed(self, ip: str, now: float) -> bool | None:
        """Return whether ``ip`` may send INVITEs, or None when the cache cannot tell (fail open).

        Registrations open nothing: until the relay registers (a later issue), no INVITE arrives
        over one, and a registration must not weaken the guard for the whole deployment.
        """
        if self._snapshot is None or self._fetched_at is None:
            return None
        if now - self._fetched_at > self.max_age_s:
            return None
        return source_allowed(ip, self._snapshot.allowed_cidr_ranges)

    def request_refresh(self) -> None:
        """Ask for a fetch at once (e.g. the webhook disagreed with the cache)."""
        self._refresh_requested = True

    def next_refresh_at(self, now: float) -> float:
        """Return when the next fetch is due (``now`` if it is due already)."""
        if self._fetched_at is None or self._refresh_requested:
            return now
        return max(now, self._fetched_at + self.refresh_interval_s)


class AllowlistSource(Protocol):
    """Where snapshots come from (:class:`ControlPlaneClient`)."""

    async def fetch_allowlist(self) -> AllowlistSnapshot: ...


class AllowlistRefresher:
    """Keeps an :class:`AllowlistCache` fresh: a fetch every interval, and on demand.

    A failed fetch keeps the old snapshot, which the cache stops trusting after ``max_age_s``;
    the next attempt comes ``retry_s`` later.
    """

    def __init__(
        self,
        client: AllowlistSource,
        cache: AllowlistCache,
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_s: float = 5.0,
    ) -> None:
        self._client = client
        self._cache = cache
        self._clock = clock
        self._retry_s = retry_s
        self._wake = asyncio.Event()
        self.failures = 0

    def refresh_soon(self) -> None:
        """Fetch now rather than at the next interval."""
        self._cache.request_refresh()
        self._wake.set()

    async def refresh(self) -> bool:
        """Fetch once; return True if the cache now holds a new snapshot."""
        try:
            snapshot = await self._client.fetch_allowlist()
        except ControlPlaneUnavailable:
            self.failures += 1
            return False
        if self._cache.update(snapshot, self._clock()):
            logger.info(
                "allowlist version %d: %d ranges",
                snapshot.version,
                len(snapshot.allowed_cidr_ranges),
            )
        return True

    async def run(self) -> None:
        """Refresh forever (until cancelled)."""
        while True:
            now = self._clock()
            delay = self._cache.next_refresh_at(now) - now
            if delay <= 0 and not await self.refresh():
                delay = self._retry_s
            if delay > 0:
                self._wake.clear()
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
