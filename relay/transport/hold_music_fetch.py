"""Fetching a transfer's hold music: one bounded GET to an address the egress policy allows, cached.

Theory of operation:

1. **Where** (``chalicelib/egress.py``, as for agents' WebSockets: ``relay/transport/egress.py``).
   The URL's host is resolved once and every address checked; aiohttp is then given exactly
   those addresses (a resolver that answers only them), so no second lookup can send the
   request elsewhere (DNS rebinding), while ``Host`` and TLS still name the host. No proxy from
   the environment is used, no redirect is followed (a 3xx is a refusal), no credentials are
   sent, and the answer is not decompressed (``Accept-Encoding: identity``).
2. **How much.** A ``Content-Length`` over ``max_bytes`` (5 MB) is refused before any of the
   body is read; without one, the body is read up to ``max_bytes + 1`` bytes and refused there.
   Only ``200`` is accepted. The whole exchange (lookup, connection, TLS, headers, body) has
   ``timeout_s``.
3. **What.** The bytes are decoded (``relay/media/hold_music.py``: mp3 or WAV by their content,
   whatever the ``Content-Type``) in a worker thread, so the relay's RTP never waits on FFmpeg.
4. **Once.** A decoded clip is kept in the `HoldMusicCache` (LRU by count and bytes, with a TTL);
   two transfers asking for the same URL at the same time share one fetch. A refusal is not
   cached: the next transfer tries again.
5. **Choice.** `HoldMusicLoader.choose` turns a transfer command's ``holdMusic`` (``default``,
   ``url``, ``none``) into the clip to play: ``none`` is silence (None), and a URL that is
   refused falls back to the default loop, with a warning naming the reason (the caller hears
   music either way). Logs name the URL's scheme and host only: a presigned URL's query is a
   credential.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from chalicelib.egress import EgressPolicy, IpAddress, TargetRefused
from relay.media.hold_music import (
    MAX_DOWNLOAD_BYTES,
    HoldClip,
    HoldMusicCache,
    HoldMusicRefused,
    decode_hold_music,
    default_hold_music,
)
from relay.transport.egress import AsyncResolver, loop_resolver, resolve_checked

__all__ = ["HoldMusicFetchSettings", "HoldMusicLoader", "url_origin"]

logger = logging.getLogger("sipline.relay.hold_music")

READ_CHUNK_BYTES = 64 * 1024
USER_AGENT = "sipline-relay"


@dataclass(frozen=True, slots=True)
class HoldMusicFetchSettings:
    """Bounds of a hold music fetch (defaults as ``docs/relay.md`` states; tests shrink them)."""

    egress: EgressPolicy = field(default_factory=EgressPolicy)
    """Where hold music may be: the deployment's ``SIPLINE_ALLOWED_PRIVATE_TARGETS``."""
    timeout_s: float = 5.0
    max_bytes: int = MAX_DOWNLOAD_BYTES


def url_origin(url: str) -> str:
    """Return ``scheme://host[:port]`` of a URL, for logs and reasons (never path or query)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class _PinnedResolver(AbstractResolver):
    """Answers aiohttp with the addresses already checked for the one host it may connect to."""

    def __init__(self, host: str, addresses: list[IpAddress]) -> None:
        self._host, self._addresses = host, addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != self._host:  # aiohttp asks only for the URL's host: anything else is refused
            raise OSError(f"{host} was not checked")
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self._addresses
        ]

    async def close(self) -> None:
        return None


class HoldMusicLoader:
    """Fetch, decode and cache hold music by URL (see the module docstring)."""

    def __init__(
        self,
        settings: HoldMusicFetchSettings,
        *,
        cache: HoldMusicCache | None = None,
        resolve: AsyncResolver = loop_resolver,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """Load under ``settings``; ``clock`` (default: the loop's) dates the cache's entries."""
        self.settings = settings
        self.cache = cache or HoldMusicCache()
        self._resolve = resolve
        self._clock = clock
        self._inflight: dict[str, asyncio.Future[HoldClip]] = {}
        self.fetches = 0
        """HTTP requests made (a cache hit or a shared fetch makes none)."""

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def choose(self, hold_music: str, url: str | None) -> HoldClip | None:
        """Return the clip a transfer plays: ``none`` → None, ``default``, or the URL's (else default)."""
        if hold_music == "none":
            return None
        if hold_music != "url" or not url:
            return default_hold_music()
        try:
            return await self.load(url)
        except HoldMusicRefused as refused:
            logger.warning(
                "hold music %s refused (%s); playing the default", url_origin(url), refused
            )
            return default_hold_music()

    async def load(self, url: str) -> HoldClip:
        """Return the clip at ``url``, from the cache or fetched once.

        Raises:
            HoldMusicRefused: the URL, its host, the answer or the file is refused (the reason).
        """
        cached = self.cache.get(url, self._now())
        if cached is not None:
            return cached
        pending = self._inflight.get(url)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[HoldClip] = asyncio.get_running_loop().create_future()
        self._inflight[url] = future
        try:
            clip = await self._fetch_and_decode(url)
        except BaseException as error:
            refused = error if isinstance(error, HoldMusicRefused) else None
            future.set_exception(refused or HoldMusicRefused("the fetch was abandoned"))
            future.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            self.cache.put(url, clip, self._now())
            future.set_result(clip)
            return clip
        finally:
            del self._inflight[url]

    async def _fetch_and_decode(self, url: str) -> HoldClip:
        data = await self._fetch(url)
        return await asyncio.to_thread(decode_hold_music, data, source=url_origin(url))

    async def _fetch(self, url: str) -> bytes:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HoldMusicRefused("not an http(s) URL with a host")
        if parts.username is not None or parts.password is not None:
            raise HoldMusicRefused("credentials in the URL are not accepted")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise HoldMusicRefused("the URL's port is not a number") from None
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                return await self._get(url, parts.hostname, port)
        except TimeoutError:
            raise HoldMusicRefused(f"no answer within {self.settings.timeout_s:g} s") from None
        except TargetRefused as refused:
            raise HoldMusicRefused(f"refused: {refused}") from None
        except (OSError, aiohttp.ClientError) as failure:
            raise HoldMusicRefused(f"fetch failed ({type(failure).__name__})") from None

    async def _get(self, url: str, host: str, port: int) -> bytes:
        addresses = await resolve_checked(self.settings.egress, host, port, self._resolve)
        connector = aiohttp.TCPConnector(resolver=_PinnedResolver(host, addresses), limit=1)
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            self.fetches += 1
            async with session.get(url, allow_redirects=False, headers=headers) as response:
                return await self._body(response)

    async def _body(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.settings.max_bytes
        if response.status != 200:
            redirect = " (redirects are not followed)" if 300 <= response.status < 400 else ""
            raise HoldMusicRefused(f"HTTP {response.status}{redirect}")
        if response.content_length is not None and response.content_length > limit:
            raise HoldMusicRefused(f"larger than {limit} bytes (Content-Length)")
        body = bytearray()
        while chunk := await response.content.read(min(READ_CHUNK_BYTES, limit + 1 - len(body))):
            body += chunk
            if len(body) > limit:
                raise HoldMusicRefused(f"larger than {limit} bytes")
        return bytes(body)
