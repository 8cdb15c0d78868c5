"""Hold music fetched from real HTTP servers on 127.0.0.1 (relay/transport/hold_music_fetch.py).

The servers are raw asyncio streams, so a test decides every byte: a body larger than 5 MB that
never ends, a ``Content-Length`` with no body behind it, a redirect. Loopback is allowed as
``make dev`` allows it (``LOCAL_PRIVATE_TARGETS``), except where the default policy is the point.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
import pytest

from chalicelib.egress import EgressPolicy
from relay.media.hold_music import (
    CLIP_RATE_HZ,
    MAX_DOWNLOAD_BYTES,
    HoldMusicRefused,
    default_hold_music,
)
from relay.transport.hold_music_fetch import HoldMusicFetchSettings, HoldMusicLoader
from scripts.localstack import LOCAL_PRIVATE_TARGETS
from tests.support.audio_files import mp3_tone, ogg_opus_tone, wav_tone
from tests.unit.relay.media.codecs.audio_checks import dominant_frequency_hz

LOCAL = HoldMusicFetchSettings(egress=EgressPolicy.from_setting(LOCAL_PRIVATE_TARGETS))
HOLD_S = 10.0  # how long a server keeps a connection open waiting for the client to go


@dataclass
class Server:
    """What the test's HTTP server saw: requests (first lines) and bytes of body it wrote."""

    port: int = 0
    requests: list[str] = field(default_factory=list)

    def url(self, path: str = "/hold.mp3") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


Respond = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def http_server(respond: Respond) -> AsyncIterator[Server]:
    server = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        server.requests.append(head.split(b"\r\n", 1)[0].decode())
        try:
            await respond(reader, writer)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


def serve(body: bytes, *, status: str = "200 OK", headers: str = "") -> Respond:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}"
            "Connection: close\r\n\r\n".encode()
        )
        writer.write(body)

    return respond


async def until_client_gone(reader: asyncio.StreamReader) -> None:
    """Keep the connection open until the client closes it (at most ``HOLD_S``)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.read(), HOLD_S)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), 30)

    asyncio.run(bounded())


def test_an_mp3_is_fetched_decoded_and_its_tone_kept() -> None:
    async def scenario() -> None:
        async with http_server(serve(mp3_tone(frequency_hz=523.25))) as server:
            clip = await HoldMusicLoader(LOCAL).load(server.url())
        assert server.requests == ["GET /hold.mp3 HTTP/1.1"]
        assert clip.source == f"http://127.0.0.1:{server.port}"
        pcm = np.frombuffer(clip.pcm, dtype="<i2")[4000:28000]
        assert dominant_frequency_hz(pcm, CLIP_RATE_HZ) == pytest.approx(523.25, abs=1)

    run(scenario)


def test_two_uses_make_one_fetch_one_after_the_other_or_at_once() -> None:
    async def scenario() -> None:
        async with http_server(serve(wav_tone(seconds=1.0))) as server:
            loader = HoldMusicLoader(LOCAL)
            first = await loader.load(server.url("/a.wav"))
            second = await loader.load(server.url("/a.wav"))
            assert second is first and loader.fetches == 1
            together = await asyncio.gather(
                loader.load(server.url("/b.wav")), loader.load(server.url("/b.wav"))
            )
            assert together[0] is together[1] and loader.fetches == 2
        assert server.requests == ["GET /a.wav HTTP/1.1", "GET /b.wav HTTP/1.1"]

    run(scenario)


def test_a_declared_length_over_5_mb_is_refused_before_any_body_is_read() -> None:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000001\r\n\r\n")
        await until_client_gone(reader)  # no body at all: reading it would time out

    async def scenario() -> None:
        async with http_server(respond) as server:
            with pytest.raises(HoldMusicRefused) as refused:
                await HoldMusicLoader(LOCAL).load(server.url())
        assert str(refused.value) == "larger than 5000000 bytes (Content-Length)"

    run(scenario)


def test_an_endless_body_is_refused_once_it_passes_5_mb_not_read_to_its_end() -> None:
    sent = MAX_DOWNLOAD_BYTES + 1

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\n\r\n")  # no length
        writer.write(b"ID3" + bytes(sent - 3))
        await until_client_gone(reader)  # and the body never ends

    async def scenario() -> None:
        async with http_server(respond) as server:
            with pytest.raises(HoldMusicRefused) as refused:
                await HoldMusicLoader(LOCAL).load(server.url())
        assert str(refused.value) == "larger than 5000000 bytes"

    run(scenario)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (ogg_opus_tone(seconds=0.5), "audio/mpeg"),
        (b"<html><body>Here is your music</body></html>", "audio/wav"),
    ],
    ids=["ogg-labelled-mp3", "html-labelled-wav"],
)
def test_the_bytes_not_the_content_type_decide_the_format(body: bytes, content_type: str) -> None:
    async def scenario() -> None:
        headers = f"Content-Type: {content_type}\r\n"
        async with http_server(serve(body, headers=headers)) as server:
            with pytest.raises(HoldMusicRefused, match="^not an mp3 or WAV file$"):
                await HoldMusicLoader(LOCAL).load(server.url())

    run(scenario)


def test_a_loopback_server_is_refused_under_the_default_policy_and_never_contacted() -> None:
    async def scenario() -> None:
        async with http_server(serve(wav_tone())) as server:
            loader = HoldMusicLoader(HoldMusicFetchSettings())  # default: public addresses only
            with pytest.raises(HoldMusicRefused) as by_address:
                await loader.load(server.url())
            with pytest.raises(HoldMusicRefused) as by_name:
                await loader.load(f"http://localhost:{server.port}/hold.wav")
        assert server.requests == [] and loader.fetches == 0
        assert str(by_address.value) == "refused: 127.0.0.1 is not a public address (loopback)"
        assert "localhost resolves to 127.0.0.1" in str(by_name.value)

    run(scenario)


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    async def private(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.1.2.3"]

    async def scenario() -> None:
        loader = HoldMusicLoader(HoldMusicFetchSettings(), resolve=private)
        with pytest.raises(HoldMusicRefused) as refused:
            await loader.load("https://music.example.com/hold.mp3?X-Amz-Signature=secret")
        assert str(refused.value) == (
            "refused: music.example.com resolves to 10.1.2.3, which is not a public address"
            " (private)"
        )

    run(scenario)


def test_a_redirect_is_not_followed() -> None:
    async def scenario() -> None:
        async with http_server(serve(wav_tone())) as target:
            location = f"Location: {target.url()}\r\n"
            async with http_server(serve(b"", status="302 Found", headers=location)) as server:
                with pytest.raises(HoldMusicRefused, match=r"^HTTP 302 \(redirects are not"):
                    await HoldMusicLoader(LOCAL).load(server.url())
        assert target.requests == []

    run(scenario)


def test_an_error_status_and_a_silent_server_are_refusals() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await until_client_gone(reader)

    async def scenario() -> None:
        async with http_server(serve(b"gone", status="404 Not Found")) as server:
            with pytest.raises(HoldMusicRefused, match="^HTTP 404$"):
                await HoldMusicLoader(LOCAL).load(server.url())
        quick = HoldMusicFetchSettings(egress=LOCAL.egress, timeout_s=0.3)
        async with http_server(silent) as server:
            with pytest.raises(HoldMusicRefused, match=r"^no answer within 0.3 s$"):
                await HoldMusicLoader(quick).load(server.url())

    run(scenario)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hold.mp3", "not an http(s) URL with a host"),
        ("https://user:pw@example.com/hold.mp3", "credentials in the URL are not accepted"),
        ("http://example.com:99999/hold.mp3", "the URL's port is not a number"),
    ],
)
def test_urls_we_do_not_fetch_are_refused_without_a_request(url: str, reason: str) -> None:
    async def scenario() -> None:
        loader = HoldMusicLoader(HoldMusicFetchSettings())
        with pytest.raises(HoldMusicRefused) as refused:
            await loader.load(url)
        assert str(refused.value) == reason and loader.fetches == 0

    run(scenario)


def test_choose_plays_the_url_else_the_default_and_none_is_silence() -> None:
    async def scenario() -> None:
        loader = HoldMusicLoader(LOCAL)
        async with http_server(serve(wav_tone())) as server:
            chosen = await loader.choose("url", server.url())
            assert chosen is not None and chosen.source == f"http://127.0.0.1:{server.port}"
        async with http_server(serve(b"nope", status="403 Forbidden")) as server:
            assert await loader.choose("url", server.url()) is default_hold_music()
        assert await loader.choose("default", None) is default_hold_music()
        assert await loader.choose("none", None) is None

    run(scenario)
