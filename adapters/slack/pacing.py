"""Keeping the bot's Web API calls within Slack's rate limits, before Slack has to say so.

Slack limits each Web API method per app and workspace by its tier
(https://docs.slack.dev/apis/web-api/rate-limits): Tier 2 allows 20+ calls a minute,
Tier 3 50+, Tier 4 100+, and ``chat.postMessage`` is special: about one message a second
per channel, with short bursts. Over a limit Slack answers HTTP 429 with
``Retry-After`` and ``{"ok": false, "error": "ratelimited"}``. A burst in one channel (a
contest: 150 mentions at once) made the bot call at full speed, collect a thousand 429s
and give up on some uploads after slack_sdk's retries, refunding paid results. So every
call first takes a slot from a leaky bucket (aiolimiter) per method, and per channel for
``chat.postMessage``, sized by the ``[slack]`` rate keys, whose defaults are Slack's
documented figures. A 429 that still happens (another app, a shared token) is retried by
slack_sdk's handler after ``Retry-After``, and beyond that the reply turns it into
"not yet" (``bot.errors.DeliveryDeferred``) instead of a failure.

The buckets live in the client (``PacedWebClient.api_call``), the one door every method
wrapper of slack_sdk goes through, files_upload_v2's two API calls included.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiolimiter import AsyncLimiter
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.server.metrics import Metrics

# Each method's tier, from its reference page (https://docs.slack.dev/reference/methods/
# + the name: "Rate limits" fact). chat.postMessage is "Special" (per channel, below).
# apps.connections.open (Tier 1) is left out: Socket Mode calls it at start and on every
# reconnect, and a reconnect held for a minute is an outage, not pacing.
METHOD_TIERS: dict[str, int] = {
    "chat.update": 3,
    "chat.delete": 3,
    "conversations.replies": 3,
    "conversations.history": 3,
    "conversations.info": 3,
    "reactions.add": 3,
    "reactions.remove": 3,
    "chat.postEphemeral": 4,
    "files.getUploadURLExternal": 4,
    "files.completeUploadExternal": 4,
    "files.info": 4,
    "users.info": 4,
    "views.open": 4,
    "views.publish": 4,
    "views.update": 4,
    "auth.test": 4,
}
POST_MESSAGE = "chat.postMessage"
# Channels whose chat.postMessage bucket is kept; the oldest idle one goes beyond this.
_CHANNEL_BUCKETS = 2048


@dataclass(frozen=True)
class SlackRates:
    """Calls per minute per tier, and chat.postMessage per second per channel."""

    post_message_per_second: float = 1.0
    tier1_per_minute: float = 1.0
    tier2_per_minute: float = 20.0
    tier3_per_minute: float = 50.0
    tier4_per_minute: float = 100.0

    def per_minute(self, tier: int) -> float:
        return {
            1: self.tier1_per_minute,
            2: self.tier2_per_minute,
            3: self.tier3_per_minute,
        }.get(tier, self.tier4_per_minute)


class SlackPacer:
    """The buckets of one workspace's token: one per method, one per channel for posts."""

    def __init__(self, rates: SlackRates) -> None:
        self.rates = rates
        self._methods: dict[str, AsyncLimiter] = {}
        self._channels: OrderedDict[str, AsyncLimiter] = OrderedDict()

    def bucket(self, method: str, channel: str | None) -> AsyncLimiter | None:
        if method == POST_MESSAGE:
            if not channel:
                return None
            limiter = self._channels.get(channel)
            if limiter is None:
                # One message per 1/rate seconds, no saved-up burst: Slack's "short
                # bursts" are its tolerance, not a budget to plan on.
                limiter = AsyncLimiter(1, 1.0 / self.rates.post_message_per_second)
                self._channels[channel] = limiter
                if len(self._channels) > _CHANNEL_BUCKETS:
                    self._channels.popitem(last=False)
            self._channels.move_to_end(channel)
            return limiter
        tier = METHOD_TIERS.get(method)
        if tier is None:
            return None
        limiter = self._methods.get(method)
        if limiter is None:
            limiter = AsyncLimiter(self.rates.per_minute(tier), 60.0)
            self._methods[method] = limiter
        return limiter


def _channel_of(*bodies: Mapping[str, Any] | None) -> str | None:
    for body in bodies:
        if body and body.get("channel"):
            return str(body["channel"])
    return None


# Set while a caller already holds the pace's slot for the call it is making.
_PAID: ContextVar[bool] = ContextVar("slack_slot_taken", default=False)


class PacedWebClient(AsyncWebClient):
    """slack_sdk's client, each call paced by ``SlackPacer`` and counted in metrics."""

    def __init__(
        self, *args: Any, pacer: SlackPacer | None, metrics: Metrics, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.pacer = pacer
        self.metrics = metrics

    async def wait_turn(self, method: str, channel: str | None) -> None:
        """Until the pace allows one ``method`` call (in ``channel``)."""
        bucket = self.pacer.bucket(method, channel) if self.pacer else None
        if bucket is not None:
            await bucket.acquire()

    async def api_call(
        self,
        api_method: str,
        *,
        http_verb: str = "POST",
        files: dict[str, Any] | None = None,
        data: Any = None,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        auth: dict[str, Any] | None = None,
    ) -> AsyncSlackResponse:
        form = data if isinstance(data, Mapping) else None
        if not _PAID.get():
            await self.wait_turn(api_method, _channel_of(json, form, params))
        try:
            answer = await super().api_call(
                api_method,
                http_verb=http_verb,
                files=files,
                data=data,
                params=params,
                json=json,
                headers=headers,
                auth=auth,
            )
        except SlackApiError as exc:
            outcome = "ratelimited" if is_rate_limited(exc) else "error"
            self.metrics.platform_calls.labels("slack", api_method, outcome).inc()
            raise
        self.metrics.platform_calls.labels("slack", api_method, "ok").inc()
        return answer


@contextlib.asynccontextmanager
async def turn(client: AsyncWebClient, method: str, channel: str | None) -> AsyncIterator[None]:
    """Wait for the pace first, then decide what to send: a status line takes its newest
    text only once its call may go, so texts that came in while it waited are skipped."""
    if isinstance(client, PacedWebClient):
        await client.wait_turn(method, channel)
    token = _PAID.set(True)
    try:
        yield
    finally:
        _PAID.reset(token)


def is_rate_limited(exc: SlackApiError) -> bool:
    return bool(exc.response.status_code == 429 or exc.response.get("error") == "ratelimited")


def retry_after(exc: SlackApiError, default: float = 1.0) -> float:
    """Slack's ``Retry-After`` (whole seconds) on a 429, else ``default``."""
    for name, value in (exc.response.headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return default
    return default


class CountingRateLimitHandler(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's own 429 handler (waits ``Retry-After``, then retries), counting each
    429 it sees so the metrics show a burst the pacing did not prevent."""

    def __init__(self, metrics: Metrics, max_retry_count: int = 3) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.metrics = metrics

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        limited = response is not None and response.status_code == 429
        if limited:
            method = request.url.rstrip("/").rsplit("/", 1)[-1]
            self.metrics.platform_rate_limited.labels("slack", method).inc()
        return limited
