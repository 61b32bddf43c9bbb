"""The bot's outbound HTTP (bot.http_transport): httpx's API over aiohttp.

What the retry rule in bot.providers.http depends on is checked here against real
sockets on 127.0.0.1: only a request that never left is a connect error; a connection
dropped after the request was sent is a read-side error, so a paid create is never
repeated. Also: bodies and headers pass through unchanged and exactly once, gzip is
decoded once, and a body abandoned halfway does not poison the next request.
"""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from aiohttp import web

from bot.http_transport import new_http_client
from bot.jobs.downloads import read_capped
from tests.support import HANG_GUARD_SECONDS, serving

BODY = os.urandom(1_200_000)  # a Kontext-sized result
PEER = web.RequestKey("peer", tuple)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []

    def note(request: web.Request) -> None:
        assert request.transport is not None
        request[PEER] = request.transport.get_extra_info("peername")
        seen.append(request)

    async def image(request: web.Request) -> web.Response:
        note(request)
        return web.Response(body=BODY, content_type="image/png")

    async def echo(request: web.Request) -> web.Response:
        note(request)
        return web.json_response({"length": len(await request.read())})

    async def zipped(request: web.Request) -> web.Response:
        note(request)
        return web.Response(
            body=gzip.compress(b'{"ok": true}'),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    app = web.Application(client_max_size=10_000_000)
    app.router.add_get("/image", image)
    app.router.add_post("/echo", echo)
    app.router.add_get("/zipped", zipped)
    async with serving(app) as base:
        yield base, seen


async def raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, str]:
    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    return listener, f"http://127.0.0.1:{port}"


async def test_a_large_body_arrives_whole_and_the_connection_is_reused(
    server: tuple[str, list[web.Request]],
) -> None:
    base, seen = server
    async with new_http_client(timeout=HANG_GUARD_SECONDS) as client:
        for _ in range(2):
            async with client.stream("GET", f"{base}/image") as response:
                assert response.status_code == 200
                assert await read_capped(response, 5_000_000) == BODY
        answer = await client.post(f"{base}/echo", content=BODY)
    assert answer.json() == {"length": len(BODY)}
    peers = {request[PEER] for request in seen}
    assert len(peers) == 1  # one keep-alive connection served all three


async def test_headers_are_sent_once_and_gzip_is_decoded_once(
    server: tuple[str, list[web.Request]],
) -> None:
    base, seen = server
    async with new_http_client(timeout=HANG_GUARD_SECONDS) as client:
        answer = await client.get(f"{base}/zipped", headers={"Authorization": "Bearer k"})
    assert answer.json() == {"ok": True}
    assert seen[0].headers.getall("Authorization") == ["Bearer k"]
    assert len(seen[0].headers.getall("Host")) == 1


async def test_a_body_abandoned_over_the_cap_leaves_the_client_usable(
    server: tuple[str, list[web.Request]],
) -> None:
    base, _ = server
    async with new_http_client(timeout=HANG_GUARD_SECONDS) as client:
        async with client.stream("GET", f"{base}/image") as response:
            assert await read_capped(response, 100_000) is None
        async with client.stream("GET", f"{base}/image") as response:
            assert await read_capped(response, 5_000_000) == BODY


async def test_a_refused_connection_is_a_connect_error() -> None:
    listener, base = await raw_server(lambda _r, _w: asyncio.sleep(0))
    listener.close()
    await listener.wait_closed()
    async with new_http_client(timeout=HANG_GUARD_SECONDS) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"{base}/create", json={})


async def test_a_connection_dropped_after_the_request_is_not_a_connect_error() -> None:
    """The request reached the server, which closed without answering: the work may have
    started, so this must not look like "never sent" (which the retry rule repeats)."""
    received = asyncio.Event()

    async def read_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        received.set()
        writer.close()

    listener, base = await raw_server(read_then_hang_up)
    async with listener, new_http_client(timeout=HANG_GUARD_SECONDS) as client:
        with pytest.raises(httpx.TransportError) as info:
            await client.post(f"{base}/create", json={})
    assert received.is_set()
    assert not isinstance(info.value, httpx.ConnectError | httpx.ConnectTimeout)


async def test_a_body_cut_short_is_a_read_error() -> None:
    async def half_a_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.close()

    listener, base = await raw_server(half_a_body)
    async with listener, new_http_client(timeout=HANG_GUARD_SECONDS) as client:
        with pytest.raises(httpx.TransportError) as info:
            async with client.stream("GET", f"{base}/image") as response:
                await read_capped(response, 5_000_000)
    assert not isinstance(info.value, httpx.ConnectError | httpx.ConnectTimeout)


async def test_the_environments_proxy_is_used_as_httpx_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_PROXY and NO_PROXY are honoured, as httpx's own transport honours them (read
    when the client is made)."""
    request_lines: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_lines.append(head.split(b"\r\n", 1)[0])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nvia proxy")
        await writer.drain()
        writer.close()

    closed, direct = await raw_server(proxy)
    closed.close()
    await closed.wait_closed()
    listener, proxy_url = await raw_server(proxy)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with listener, new_http_client(timeout=HANG_GUARD_SECONDS) as client:
        answer = await client.get("http://provider.invalid/v1/result.png")
        with pytest.raises(httpx.ConnectError):  # straight to a closed port, not the proxy
            await client.get(f"{direct}/v1/result.png")
    assert answer.text == "via proxy"
    assert request_lines == [b"GET http://provider.invalid/v1/result.png HTTP/1.1"]
