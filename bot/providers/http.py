"""Shared HTTP machinery of the providers: one client, safe retries, error mapping.

Retries follow one rule for every provider: repeat a call only when repeating cannot do
the work twice. Reads are always safe; a create is repeated only when it certainly did
not happen (the connection was refused, or the service answered 429/503). A create
whose answer was lost is reported as failed, so the job is refunded rather than
possibly run and billed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import socket
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import stamina

from bot.errors import KontextError, ProviderUnavailable, UserInputError
from bot.http_transport import new_http_client
from bot.i18n import N_, _
from bot.jobs.downloads import read_capped
from bot.providers.base import PredictionStatus, ProviderCapabilities, ProviderRequest

T = TypeVar("T")
MAX_RETRY_AFTER_SECONDS = 60.0

# Marked N_: translated where they are raised (``_(UNAVAILABLE)``), in the job's language.
NO_ANSWER = N_(
    "The image service did not answer in time, so the edit was stopped to avoid running "
    "it twice. Please try again."
)
UNAVAILABLE = N_("The image service is unavailable right now. Please try again in a few minutes.")
BAD_OUTPUT_LINK = N_("The image service's link to the result could not be followed.")
# Result downloads follow at most this many redirects (a CDN, a signed storage URL).
MAX_REDIRECTS = 5


class Retry(Exception):
    """A failed attempt that may be repeated, after at least ``wait`` seconds."""

    def __init__(self, error: ProviderUnavailable, wait: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    return max(0.0, min(seconds, MAX_RETRY_AFTER_SECONDS))


def short_reason(response: httpx.Response) -> str:
    """The provider's own reason, short and without anything that looks like markup."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, Mapping):
        for key in ("detail", "error", "message", "title"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return " ".join(value.split())[:200]
            if isinstance(value, Mapping) and isinstance(value.get("message"), str):
                return " ".join(str(value["message"]).split())[:200]
            if isinstance(value, list) and value and isinstance(value[0], Mapping):
                message = value[0].get("msg") or value[0].get("message")
                if isinstance(message, str):
                    return " ".join(message.split())[:200]
    return ""


def classify_response(response: httpx.Response) -> KontextError | None:
    """Map an HTTP answer onto the DESIGN.md error kinds; None for a success."""
    code = response.status_code
    if code < 400:
        return None
    detail = f"HTTP {code} from {response.request.method} {response.request.url.path}"
    if code in (401, 403):
        return ProviderUnavailable(
            _(
                "The image service rejected the bot's API key. An operator needs to fix the "
                "bot's configuration."
            ),
            detail=detail,
        )
    if code == 402:
        return ProviderUnavailable(
            _("The bot's image-service account is out of credits. Please tell an operator."),
            detail=detail,
        )
    if code in (400, 422):
        reason = short_reason(response)
        if reason:
            # TRANSLATORS: {reason} is the image service's own words, in English.
            refused = _("The image service rejected the request: {reason}").format(reason=reason)
        else:
            refused = _("The image service rejected the request.")
        return UserInputError(refused, detail=detail)
    if code == 429:
        return ProviderUnavailable(
            _("The image service is busy right now. Please try again in a minute."),
            detail=detail,
            retryable=True,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    return ProviderUnavailable(
        _(UNAVAILABLE),
        detail=detail,
        retryable=code >= 500,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


class HttpProvider(ABC):
    """The parts every HTTP provider shares; subclasses give auth and the API's shapes."""

    name = "http"
    # The hosted APIs call the webhook URL they are given when a job ends.
    sends_webhooks = True

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        capabilities: ProviderCapabilities,
        request_timeout: float = 30.0,
        max_retries: int = 4,
        client: httpx.AsyncClient | None = None,
        wait_initial: float = 0.5,
        wait_cap: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.capabilities = capabilities
        self.max_retries = max_retries
        self.wait_initial = wait_initial
        self.wait_cap = wait_cap
        self._api_key = api_key
        self._owns_client = client is None
        self._client = client or new_http_client(timeout=request_timeout)
        origin = urlsplit(self.base_url)
        self._origin = (origin.scheme, origin.netloc)

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    def classify(self, response: httpx.Response) -> KontextError | None:
        return classify_response(response)

    def same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc) == self._origin

    @abstractmethod
    async def submit(self, request: ProviderRequest, *, idempotency_key: str) -> PredictionStatus:
        """Create a prediction (see ``bot.providers.base.Provider``)."""

    @abstractmethod
    async def status(self, prediction_id: str) -> PredictionStatus:
        """Read a prediction's state."""

    @abstractmethod
    async def cancel(self, prediction_id: str) -> None:
        """Best-effort cancel."""

    async def best_effort(self, method: str, url: str) -> None:
        """A call whose failure changes nothing for the user (cancelling), never raised."""
        with contextlib.suppress(httpx.HTTPError):
            await self._client.request(method, url, headers=self.auth_headers)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it gives a non-retryable answer or retries run out.

        stamina provides the backoff with jitter; a ``Retry-After`` hint is honoured by
        waiting at least that long before the next attempt. Exhausted retries surface as
        the last attempt's ``ProviderUnavailable``.
        """
        last: Retry | None = None
        try:
            async for retry in stamina.retry_context(
                on=Retry,
                attempts=self.max_retries + 1,
                wait_initial=self.wait_initial,
                wait_max=self.wait_cap,
                timeout=None,
            ):
                with retry:
                    if last is not None and last.wait:
                        await asyncio.sleep(min(last.wait, MAX_RETRY_AFTER_SECONDS))
                    try:
                        return await attempt()
                    except Retry as exc:
                        last = exc
                        raise
        except Retry as exc:
            raise exc.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def call(self, method: str, url: str, *, create: bool = False, **kwargs: Any) -> Any:
        """One JSON API call under the retry rule; ``create`` marks a call that starts
        paid work at the provider."""

        async def attempt() -> Any:
            try:
                response = await self._client.request(method, url, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # The request never left: repeating cannot duplicate anything.
                raise Retry(
                    ProviderUnavailable(_(UNAVAILABLE), detail=connect_failure(exc, url)), None
                ) from None
            except httpx.TransportError as exc:
                lost = ProviderUnavailable(
                    _(NO_ANSWER if create else UNAVAILABLE),
                    detail=type(exc).__name__,
                    maybe_created=create,
                )
                if create:
                    raise lost from None
                raise Retry(lost, None) from None
            error = self.classify(response)
            if error is None:
                try:
                    return response.json()
                except ValueError:
                    raise ProviderUnavailable(
                        _(UNAVAILABLE), detail=f"non-JSON answer from {method} {response.url.path}"
                    ) from None
            if isinstance(error, ProviderUnavailable) and error.retryable:
                if not create or response.status_code in (429, 503):
                    raise Retry(error, error.retry_after)
                raise ProviderUnavailable(
                    _(NO_ANSWER), detail=str(error), maybe_created=True
                ) from None
            raise error

        return await self.with_retries(attempt)

    async def fetch_output(self, url: str, *, max_bytes: int) -> bytes:
        """Download a result, following at most ``MAX_REDIRECTS`` redirects by hand.

        Result URLs may redirect (a CDN, a signed storage URL). httpx's own redirect
        handling is off for the shared client because it would strip ``Authorization``
        on a cross-origin hop but keep other key headers (BFL's ``x-key``); here each hop
        is judged on its own by ``same_origin``, so the key reaches no host it was not
        meant for, on any hop. Only http(s) is followed.
        """

        async def attempt() -> bytes:
            target = url
            for _hop in range(MAX_REDIRECTS + 1):
                if urlsplit(target).scheme not in ("http", "https"):
                    raise ProviderUnavailable(
                        _(BAD_OUTPUT_LINK), detail=f"output URL is not http(s): {_scheme(target)}"
                    )
                # The key goes only to the provider's own host, never to a CDN it links to.
                headers = self.auth_headers if self.same_origin(target) else {}
                try:
                    async with self._client.stream("GET", target, headers=headers) as response:
                        if 300 <= response.status_code < 400:
                            target = _redirect_target(response)
                            continue
                        return await self._read_output(response, max_bytes)
                except httpx.TransportError as exc:
                    raise Retry(
                        ProviderUnavailable(_(UNAVAILABLE), detail=type(exc).__name__), None
                    ) from None
            raise ProviderUnavailable(
                _(BAD_OUTPUT_LINK), detail=f"output URL redirected more than {MAX_REDIRECTS} times"
            )

        return await self.with_retries(attempt)

    async def _read_output(self, response: httpx.Response, max_bytes: int) -> bytes:
        error = self.classify(response)
        if error is not None:
            if isinstance(error, ProviderUnavailable) and (
                error.retryable or response.status_code == 404
            ):
                raise Retry(error, error.retry_after)
            raise error
        data = await read_capped(response, max_bytes)
        if data is None:
            raise ProviderUnavailable(
                _("The edited image is too large to post."),
                detail=f"output larger than {max_bytes} bytes",
            )
        return data


def connect_failure(exc: BaseException, url: str) -> str:
    """What went wrong before a request left, in the operator's words ("cannot resolve
    api.core.today"), from the OS error under httpx's exception: the log line and the
    console then name the failure instead of a class name."""
    parts = urlsplit(url)
    host = parts.hostname or "the provider"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve {host} (DNS): check the name in base_url and the network"
        if isinstance(cause, ConnectionRefusedError):
            return f"{host}:{parts.port or 'default port'} refused the connection"
        if isinstance(cause, TimeoutError | httpx.ConnectTimeout):
            return f"{host} did not accept the connection in time"
        if isinstance(cause, ssl.SSLError):
            return f"TLS with {host} failed: {cause.reason or cause}"
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip()
    return f"cannot connect to {host}: {text}" if text else f"cannot connect to {host}"


def _scheme(url: str) -> str:
    return urlsplit(url).scheme or "(none)"


def _redirect_target(response: httpx.Response) -> str:
    """Where a 3xx answer points, resolved against the URL that gave it; a 3xx that
    points nowhere (no ``Location``, or 300/304) is a broken answer, not an image."""
    location = response.headers.get("location", "").strip()
    if not location:
        raise ProviderUnavailable(
            _(BAD_OUTPUT_LINK),
            detail=f"HTTP {response.status_code} without Location from the output host",
        )
    try:
        return str(response.url.join(location))
    except httpx.InvalidURL:
        raise ProviderUnavailable(
            _(BAD_OUTPUT_LINK), detail="output redirect to an invalid URL"
        ) from None
