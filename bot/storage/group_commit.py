"""Group commit: callers that arrive while a batch runs go together in the next one.

On this stack a round trip to the database costs more CPU than the database's work, so
writes that would each be a transaction are cheaper as one transaction when they come
together (a burst of requests). Used by the reservations (``bot/reservations.py``);
the job store's other small writes were tried this way too and gained ~10% end to end,
not worth the re-run-on-failure rule they need.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

MAX_BATCH = 256
T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Queue calls while a batch runs and hand the next batch everything waiting.

    ``run`` gets the items of one batch and returns one outcome per item (a result or
    an exception to raise to that caller). The batch runs in its own task: a caller
    that is cancelled stops waiting, but the batch (a write transaction) completes.
    """

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R | BaseException]]]) -> None:
        self._run = run
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="kontext-group-commit")
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                outcomes = await self._run([item for item, _ in batch])
            except BaseException as exc:
                outcomes = [exc] * len(batch)
                if isinstance(exc, asyncio.CancelledError):
                    for _, future in batch:
                        if not future.done():
                            future.cancel()
                    raise
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
