"""core.today: FLUX.1 Kontext through ``/v1/predictions``.

The public docs disagree about the answer's shape, so both are accepted: an
asynchronous ``{id, status: "pending"}`` followed by polling that ends in
``{status: "succeeded", output: [url]}``, and a finished ``{job_id, status:
"completed", result: url}`` right in the create answer.

Retries follow one rule: repeat a call only when repeating cannot do the work twice.
Reads are always safe; a create is repeated only when it certainly did not happen
(the connection was refused, or the service answered 429/503). A create whose answer
was lost is reported as failed, so the job is refunded rather than possibly run and
billed twice.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import stamina

from bot.errors import KontextError, ProviderUnavailable, UserInputError
from bot.providers.base import (
    PredictionState,
    PredictionStatus,
    ProviderCapabilities,
    ProviderRequest,
)

T = TypeVar("T")
MAX_RETRY_AFTER_SECONDS = 60.0
_MODERATION_WORDS = ("nsfw", "moderat", "safety", "flagged", "sensitive", "content policy")
_STATES = {
    "pending": PredictionState.PENDING,
    "queued": PredictionState.PENDING,
    "starting": PredictionState.PENDING,
    "processing": PredictionState.RUNNING,
    "running": PredictionState.RUNNING,
    "in_progress": PredictionState.RUNNING,
    "succeeded": PredictionState.SUCCEEDED,
    "completed": PredictionState.SUCCEEDED,
    "success": PredictionState.SUCCEEDED,
    "failed": PredictionState.FAILED,
    "error": PredictionState.FAILED,
    "moderated": PredictionState.MODERATED,
    "canceled": PredictionState.CANCELED,
    "cancelled": PredictionState.CANCELED,
}

_NO_ANSWER = (
    "The image service did not answer in time, so the edit was stopped to avoid running "
    "it twice. Please try again."
)
_UNAVAILABLE = "The image service is unavailable right now. Please try again in a few minutes."


class _Retry(Exception):
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


def _short_reason(response: httpx.Response) -> str:
    """The provider's own reason, short and without anything that looks like markup."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, Mapping):
        for key in ("detail", "error", "message"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                text = " ".join(value.split())
                return text[:200]
            if isinstance(value, Mapping) and isinstance(value.get("message"), str):
                return " ".join(str(value["message"]).split())[:200]
    return ""


def classify_response(response: httpx.Response) -> KontextError | None:
    """Map an HTTP answer onto the DESIGN.md error kinds; None for a success."""
    code = response.status_code
    if code < 400:
        return None
    detail = f"HTTP {code} from {response.request.method} {response.request.url.path}"
    if code in (401, 403):
        return ProviderUnavailable(
            "The image service rejected the bot's API key. An operator needs to fix the "
            "bot's configuration.",
            detail=detail,
        )
    if code == 402:
        return ProviderUnavailable(
            "The bot's image-service account is out of credits. Please tell an operator.",
            detail=detail,
        )
    if code in (400, 422):
        reason = _short_reason(response)
        suffix = f": {reason}" if reason else "."
        return UserInputError(f"The image service rejected the request{suffix}", detail=detail)
    if code == 429:
        return ProviderUnavailable(
            "The image service is busy right now. Please try again in a minute.",
            detail=detail,
            retryable=True,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    return ProviderUnavailable(
        _UNAVAILABLE,
        detail=detail,
        retryable=code >= 500,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def parse_prediction(body: Any) -> PredictionStatus:
    """Read either answer shape into a ``PredictionStatus``."""
    if not isinstance(body, Mapping):
        raise ProviderUnavailable(_UNAVAILABLE, detail="prediction answer is not an object")
    prediction_id = body.get("id") or body.get("job_id") or body.get("prediction_id")
    if not prediction_id:
        raise ProviderUnavailable(_UNAVAILABLE, detail="prediction answer has no id")
    raw_status = str(body.get("status", "")).strip().lower()
    state = _STATES.get(raw_status, PredictionState.RUNNING)
    error = body.get("error")
    error_text = error if isinstance(error, str) else (json.dumps(error) if error else None)
    if state == PredictionState.FAILED and error_text:
        lowered = error_text.lower()
        if any(word in lowered for word in _MODERATION_WORDS):
            state = PredictionState.MODERATED
    urls: list[str] = []
    for key in ("output", "result", "output_url"):
        value = body.get(key)
        if isinstance(value, str) and value:
            urls.append(value)
        elif isinstance(value, list):
            urls.extend(v for v in value if isinstance(v, str) and v)
        elif isinstance(value, Mapping) and isinstance(value.get("sample"), str):
            urls.append(value["sample"])
        if urls:
            break
    return PredictionStatus(
        id=str(prediction_id), state=state, output_urls=tuple(urls), error=error_text
    )


def provider_inputs(request: ProviderRequest) -> dict[str, Any]:
    options = request.options
    inputs: dict[str, Any] = {
        "prompt": request.prompt,
        "output_format": options.output_format,
        "prompt_upsampling": options.upsample,
        "safety_tolerance": options.safety,
    }
    if options.aspect_ratio is not None:
        inputs["aspect_ratio"] = options.aspect_ratio
    if options.seed is not None:
        inputs["seed"] = options.seed
    return inputs


class CoreTodayProvider:
    name = "coretoday"

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
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(request_timeout),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            follow_redirects=False,
        )
        origin = urlsplit(self.base_url)
        self._origin = (origin.scheme, origin.netloc)

    def __repr__(self) -> str:  # never show the key
        return f"CoreTodayProvider(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- retry machinery -----------------------------------------------------------

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it gives a non-retryable answer or retries run out.

        stamina provides the backoff with jitter; a ``Retry-After`` hint is honoured by
        waiting at least that long before the next attempt. Exhausted retries surface as
        the last attempt's ``ProviderUnavailable``.
        """
        last: _Retry | None = None
        try:
            async for retry in stamina.retry_context(
                on=_Retry,
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
                    except _Retry as exc:
                        last = exc
                        raise
        except _Retry as exc:
            raise exc.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(
        self,
        method: str,
        url: str,
        *,
        create: bool = False,
        **kwargs: Any,
    ) -> Any:
        async def attempt() -> Any:
            try:
                response = await self._client.request(method, url, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # The request never left: repeating cannot duplicate anything.
                raise _Retry(
                    ProviderUnavailable(_UNAVAILABLE, detail=type(exc).__name__), None
                ) from None
            except httpx.TransportError as exc:
                lost = ProviderUnavailable(
                    _NO_ANSWER if create else _UNAVAILABLE, detail=type(exc).__name__
                )
                if create:
                    raise lost from None
                raise _Retry(lost, None) from None
            error = classify_response(response)
            if error is None:
                try:
                    return response.json()
                except ValueError:
                    raise ProviderUnavailable(
                        _UNAVAILABLE, detail=f"non-JSON answer from {method} {response.url.path}"
                    ) from None
            if isinstance(error, ProviderUnavailable) and error.retryable:
                code = response.status_code
                if not create or code in (429, 503):
                    raise _Retry(error, error.retry_after)
                raise ProviderUnavailable(_NO_ANSWER, detail=str(error)) from None
            raise error

        return await self._with_retries(attempt)

    # -- the Provider interface ------------------------------------------------------

    async def submit(self, request: ProviderRequest, *, idempotency_key: str) -> PredictionStatus:
        inputs = provider_inputs(request)
        headers = {**self._auth, "Idempotency-Key": idempotency_key}
        if request.images:
            image = request.images[0]
            body = await self._call(
                "POST",
                f"{self.base_url}/v1/predictions/upload",
                create=True,
                headers=headers,
                data={"model": self.model, "input": json.dumps(inputs)},
                files={"file:input_image": (image.filename, image.data, image.content_type)},
            )
        else:
            body = await self._call(
                "POST",
                f"{self.base_url}/v1/predictions",
                create=True,
                headers=headers,
                json={"model": self.model, "input": inputs},
            )
        return parse_prediction(body)

    async def status(self, prediction_id: str) -> PredictionStatus:
        body = await self._call(
            "GET", f"{self.base_url}/v1/predictions/{prediction_id}", headers=self._auth
        )
        return parse_prediction(body)

    async def cancel(self, prediction_id: str) -> None:
        try:
            response = await self._client.delete(
                f"{self.base_url}/v1/predictions/{prediction_id}", headers=self._auth
            )
            del response
        except httpx.HTTPError:
            return

    async def fetch_output(self, url: str, *, max_bytes: int) -> bytes:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ProviderUnavailable(_UNAVAILABLE, detail="output URL is not http(s)")
        # The key goes only to the provider's own host, never to a CDN it links to.
        headers = self._auth if (parts.scheme, parts.netloc) == self._origin else {}

        async def attempt() -> bytes:
            try:
                async with self._client.stream("GET", url, headers=headers) as response:
                    error = classify_response(response)
                    if error is not None:
                        if isinstance(error, ProviderUnavailable) and (
                            error.retryable or response.status_code == 404
                        ):
                            raise _Retry(error, error.retry_after)
                        raise error
                    chunks: list[bytes] = []
                    total = 0
                    async for chunk in response.aiter_bytes():
                        total += len(chunk)
                        if total > max_bytes:
                            raise ProviderUnavailable(
                                "The edited image is too large to post.",
                                detail=f"output larger than {max_bytes} bytes",
                            )
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.TransportError as exc:
                raise _Retry(
                    ProviderUnavailable(_UNAVAILABLE, detail=type(exc).__name__), None
                ) from None

        return await self._with_retries(attempt)
