"""Discord's rate limits, met rather than provoked.

discord.py already keeps every route's bucket (``X-RateLimit-*`` headers, the global
limit) and waits out a 429 with ``retry_after`` a few times
(https://discord.com/developers/docs/topics/rate-limits). What it cannot know is that a
burst in one channel (a contest: 150 ``/kontext`` at once) sends every status edit and
result of that channel at the same moment. ``ChannelSlots`` lets a few of a channel's
calls be in flight at once (``discord.max_concurrent_edits_per_channel``) and queues the
rest, so the buckets drain in order instead of in 429s. A 429 discord.py still gives up
on is "not yet" for a paid result (``rate_limited``), never a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator

import discord

from bot.errors import DeliveryDeferred

# Channels whose slots are kept; the oldest idle one goes beyond this.
_CHANNELS = 2048


class ChannelSlots:
    def __init__(self, per_channel: int) -> None:
        self.per_channel = per_channel
        self._slots: OrderedDict[str, asyncio.Semaphore] = OrderedDict()

    @contextlib.asynccontextmanager
    async def hold(self, channel: object) -> AsyncIterator[None]:
        key = str(channel)
        slots = self._slots.get(key)
        if slots is None:
            slots = asyncio.Semaphore(self.per_channel)
            self._slots[key] = slots
            if len(self._slots) > _CHANNELS:
                self._evict()
        self._slots.move_to_end(key)
        async with slots:
            yield

    def _evict(self) -> None:
        for key, slots in list(self._slots.items()):
            if not slots.locked() and len(self._slots) > _CHANNELS:
                del self._slots[key]


def rate_limited(exc: BaseException) -> DeliveryDeferred | None:
    """A 429 that discord.py's own retries did not outlast, as "post again later"."""
    if isinstance(exc, discord.RateLimited):
        return DeliveryDeferred("discord", "rate limit", exc.retry_after)
    if isinstance(exc, discord.HTTPException) and exc.status == 429:
        header = exc.response.headers.get("Retry-After") if exc.response is not None else None
        try:
            wait = float(header) if header is not None else 1.0
        except ValueError:
            wait = 1.0
        return DeliveryDeferred("discord", str(getattr(exc.response, "method", "call")), wait)
    return None
