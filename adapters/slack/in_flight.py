"""One look-up in flight per key: the callers that ask for the same key while it runs
share its answer (a burst of requests in one channel, or of one user, costs one Slack
call). A caller cancelled while waiting does not cancel the call for the others."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class InFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._asking: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, ask: Callable[[], Awaitable[V]]) -> V:
        task = self._asking.get(key)
        if task is None:
            task = asyncio.ensure_future(ask())
            self._asking[key] = task
            task.add_done_callback(lambda _: self._asking.pop(key, None))
        return await asyncio.shield(task)
