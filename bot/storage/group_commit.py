"""Group commit: callers that arrive while a batch runs go together in the next one.

On this stack a round trip to the database costs more CPU than the database's work, so
writes that would each be a transaction are cheaper as one transaction when they come
together (a burst of requests, or 20-50 jobs in flight whose transitions meet). Two
users: the reservations (``bot/jobs/reservations.py``), whose batch is set-based statements
of its own, and the job store's small transitions (``bot/jobs/queue.py``: submit started,
prediction id, provider switch, delivering, succeed+charge, fail+refund, requeue), which
go through ``WriteBatch``: one transaction runs the waiting operations one after the
other, as each would have run alone.

What ``WriteBatch`` keeps of one-transaction-per-call:

- **Durability per caller.** A caller returns only after the transaction holding its
  write has committed, so a crash never loses a write whose caller went on.
- **Failure per caller.** If the batch's transaction raises (an operation failed, a
  PostgreSQL deadlock or serialization failure, the commit), nothing of it was
  committed; every operation of it is run again alone, in arrival order, each in its own
  transaction, so one bad operation fails only its own caller. Operations must therefore
  be safe to run twice after a rollback: they are pure database work (no outside effect),
  and the store's are guarded by the state they expect anyway.
- **Order.** Operations run in arrival order, in the batch and when re-run, so two
  transitions of one job apply in the order they were asked for.
- **Cancellation.** The batch runs in its own task: a cancelled caller stops waiting,
  its write still completes (as ``completes_when_cancelled`` guarantees a lone write).

Measured (``python -m bench --only cpu --quick``, 60 jobs at 20 in flight, SQLite):
transactions per job 6.9 -> 4.2 on the Slack path, 8.8 -> 6.4 on the core path and 5.8
-> 3.4 on Discord (statements 19.5 -> 17.2, 23.9 -> 21.9, 17.1 -> 15.6: a BEGIN each);
bot CPU per job on the Slack path (``python -m bench.cpu --against``, medians of 4) 79.5
-> 66.3 ms and, trees swapped, 85.6 -> 82.1 ms: lower in both, by 4-17% on this shared
machine. It was tried once before without the re-run rule and put aside for ~10% end to
end; with the rule, a failed batch costs one more transaction per write of it. The
claim in the same batches was tried too and saved nothing (4.2 -> 4.3 transactions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, cast

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.storage.database import Database

MAX_BATCH = 256
T = TypeVar("T")
R = TypeVar("R")

log = structlog.get_logger("kontext.storage")

# One write of ``WriteBatch``: statements on the batch's connection, inside its open
# transaction (the batch owns the commit), returning what its caller gets.
Operation = Callable[[AsyncConnection], Awaitable[R]]


async def one_by_one(items: list[T], run: Callable[[T], Awaitable[R]]) -> list[R | BaseException]:
    """Each item in its own ``run``, in order, its exception kept as its outcome: what a
    batch falls back to when it cannot, or did not, go as one transaction."""
    outcomes: list[R | BaseException] = []
    for item in items:
        try:
            outcomes.append(await run(item))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


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

    @property
    def waiting(self) -> int:
        """Calls queued for the next batch (not the one running)."""
        return len(self._waiting)

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


class WriteBatch:
    """Small write transactions of one database, group-committed (see the module)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._group = GroupCommit[Operation[Any], Any](self._run)

    @property
    def waiting(self) -> int:
        """Operations queued for the next batch."""
        return self._group.waiting

    async def run(self, operation: Operation[R]) -> R:
        """Run ``operation`` in the next batch's transaction; return its result once that
        transaction committed (or raise what it raised when run alone)."""
        return cast(R, await self._group.submit(operation))

    async def _run(self, batch: list[Operation[Any]]) -> list[Any]:
        if len(batch) > 1:
            try:
                return await self._together(batch)
            except Exception as exc:
                # Rolled back: nothing of the batch was committed.
                log.warning("write batch failed; each write again alone", error=repr(exc))
        return await one_by_one(batch, self._alone)

    async def _together(self, batch: list[Operation[Any]]) -> list[Any]:
        async with self.db.transaction() as conn:
            return [await operation(conn) for operation in batch]

    async def _alone(self, operation: Operation[R]) -> R:
        async with self.db.transaction() as conn:
            return await operation(conn)
