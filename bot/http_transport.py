"""The bot's outbound HTTP: httpx's interface on aiohttp's wire.

Every provider call and file download keeps httpx's API (requests, responses, errors,
streaming with a byte cap), but the bytes go through aiohttp, whose HTTP parser is C.
httpx's own stack (httpcore, h11, anyio) parses a body in pure Python: reading one
Kontext-sized result (1.16 MB) cost 8-10 ms of CPU there against about 1.7 ms here,
and each job downloads two such images (docs/benchmarks.md, issue 17). aiohttp is
already the wire of slack_sdk, bolt's HTTP server and discord.py.

The retry rule in ``bot.providers.http`` rests on one distinction: a request that
certainly never left (``httpx.ConnectError``/``ConnectTimeout``: safe to repeat even a
paid create) against one whose answer was lost (any other transport error: maybe done).
aiohttp's errors are mapped here with that in mind; anything not known to have failed
before sending is a read error. (The ``httpx-aiohttp`` package maps every
``ClientConnectionError``, a dropped connection included, to ``ConnectTimeout``, which
would let a create that reached the provider run twice.)
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


@contextlib.contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientConnectorError as exc:  # no connection: nothing was sent
        raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
    except aiohttp.ConnectionTimeoutError as exc:  # no connection in time: nothing was sent
        raise httpx.ConnectTimeout(str(exc) or type(exc).__name__, request=request) from exc
    except aiohttp.ServerTimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or type(exc).__name__, request=request) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(str(exc) or type(exc).__name__, request=request) from exc
    except (aiohttp.ClientError, OSError) as exc:  # sent, or maybe sent: the answer is lost
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc


class _Body(httpx.AsyncByteStream):
    """A response body as aiohttp receives it, in the pieces it has buffered."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # A body read to its end gives the connection back for reuse; one abandoned
        # halfway (a file over the byte cap) closes it, unread bytes and all.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncClient`` transport over one ``aiohttp.ClientSession``.

    The session is made on first use, inside the running loop, as aiohttp requires. It
    trusts what httpx trusts (certifi's CAs, the proxy variables of the environment) and
    keeps no cookies of its own (httpx sends the client's). The proxy variables are read
    once, as httpx reads them when a client is made: aiohttp's own ``trust_env`` reads
    the whole environment and looks for a .netrc on every request: about 8 ms of CPU
    per job in the benchmark's profile, half of what this transport saves."""

    def __init__(self, limits: httpx.Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._proxies = urllib.request.getproxies_environment()
        # Made now, as httpx makes its own when a client is made: loading the CA bundle
        # costs tens of milliseconds, which would otherwise fall on the first request.
        self._ssl = httpx.create_ssl_context()

    def _proxy_for(self, url: httpx.URL) -> str | None:
        if not self._proxies:
            return None
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        if not proxy or urllib.request.proxy_bypass(url.host):
            return None
        return proxy

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry or 5.0,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # httpx decodes Content-Encoding itself
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        with _as_httpx_errors(request):
            response = await self._session_now().request(
                request.method,
                str(request.url),
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                data=body or None,
                allow_redirects=False,
                proxy=self._proxy_for(request.url),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def new_http_client(*, timeout: float, limits: httpx.Limits = DEFAULT_LIMITS) -> httpx.AsyncClient:
    """The client every outbound call of the bot goes through. Redirects are not
    followed here: each caller judges every hop (which host may see a key)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        transport=AiohttpTransport(limits),
    )
