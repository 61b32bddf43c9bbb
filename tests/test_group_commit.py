"""Group commit of the job store's transitions (``bot.storage.group_commit.WriteBatch``):
transitions that arrive together share a transaction, and each caller still gets its own
outcome, its own failure, and a write that lands even when it stops waiting."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.credits import ledger
from bot.domain import EditOptions, Job, JobState, UserRef
from bot.jobs.queue import Charged, Refunded
from bot.jobs.reservations import NewJob
from bot.jobstore import JobStore

# Rounds of the event loop a test waits for callers to queue before it gives up (each
# caller queues within a round or two; this only guards against a hang).
QUEUE_ROUNDS = 1000


def new_job(i: int) -> NewJob:
    return NewJob(
        idempotency_key=f"k{i}",
        user=UserRef("slack", "T1", f"U{i}"),
        prompt="make it a watercolor",
        options=EditOptions(),
        attachments=(),
        reply_target={"channel": "C1"},
        cost=120,
        provider="coretoday",
        model="black-forest-labs/flux-kontext-pro",
    )


async def running_jobs(store: JobStore, count: int) -> list[Job]:
    """``count`` jobs of different users, claimed (running), in creation order."""
    for i in range(count):
        await store.create(new_job(i))
    claimed = await store.claim("runner", ["slack"], count, 60)
    assert len(claimed) == count
    return sorted(claimed, key=lambda job: job.idempotency_key)


@contextmanager
def transactions(store: JobStore) -> Iterator[Counter[str]]:
    """Count the engine's commits and rollbacks while the block runs."""
    seen: Counter[str] = Counter()

    def commit(_conn: Any) -> None:
        seen["commit"] += 1

    def rollback(_conn: Any) -> None:
        seen["rollback"] += 1

    engine = store.db.engine.sync_engine
    event.listen(engine, "commit", commit)
    event.listen(engine, "rollback", rollback)
    try:
        yield seen
    finally:
        event.remove(engine, "commit", commit)
        event.remove(engine, "rollback", rollback)


async def queued(store: JobStore, count: int) -> None:
    """Until ``count`` writes wait for the next batch (callers queue as they start)."""
    for _ in range(QUEUE_ROUNDS):
        if store.writes.waiting >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{store.writes.waiting} writes queued, expected {count}")


class Hold:
    """A write that keeps its batch's transaction open until released: what a slow
    transaction is to the callers arriving meanwhile."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, conn: AsyncConnection) -> str:
        self.entered.set()
        await self.release.wait()
        return "held"


async def ledger_kinds(store: JobStore, job: Job) -> list[str]:
    async with store.db.read() as conn:
        entries = await ledger.recent_entries(conn, job.user, 100)
    return sorted(e.kind.value for e in entries if e.job_id == job.id)


async def state(store: JobStore, job: Job) -> Job:
    stored = await store.get(job.id)
    assert stored is not None
    return stored


async def test_transitions_started_together_commit_in_one_transaction(store: JobStore) -> None:
    """Fails on the old code: one commit per transition (6, not 1)."""
    jobs = await running_jobs(store, 6)
    a, b, c, d, e, f = jobs
    with transactions(store) as seen:
        outcomes = await asyncio.gather(
            store.mark_submit_started(a.id),
            store.record_prediction(b.id, "pred-b"),
            store.mark_delivering(c.id, "/out/c.png", {"width": 1024}, user=c.user),
            store.mark_succeeded(d),
            store.finish(e, Refunded("provider_unavailable", "503")),
            store.requeue(f.id, 30),
        )
    assert seen["commit"] == 1
    assert outcomes == [None, None, 1080, True, True, True]
    assert await store.balance(e.user) == 1200, "refunded"
    assert (await state(store, a)).submit_started
    assert (await state(store, b)).prediction_id == "pred-b"
    delivering = await state(store, c)
    assert delivering.state == JobState.DELIVERING and delivering.output_path == "/out/c.png"
    assert (await state(store, d)).state == JobState.SUCCEEDED
    assert await ledger_kinds(store, d) == ["charge", "reserve"]
    failed = await state(store, e)
    assert failed.state == JobState.FAILED and failed.error_kind == "provider_unavailable"
    assert await ledger_kinds(store, e) == ["refund", "reserve"]
    assert (await state(store, f)).state == JobState.QUEUED


async def test_transitions_arriving_during_a_batch_share_the_next(store: JobStore) -> None:
    """While one batch's transaction runs, every transition that arrives waits for it and
    then all go in one transaction together. (New mechanism: the old code has no
    ``writes``; its transitions took one transaction each, see the test above.)"""
    jobs = await running_jobs(store, 8)
    hold = Hold()
    with transactions(store) as seen:
        first = asyncio.create_task(store.writes.run(hold))
        await hold.entered.wait()
        arriving = asyncio.gather(
            *(store.mark_succeeded(job) for job in jobs[:4]),
            *(store.record_prediction(job.id, f"pred-{job.id}") for job in jobs[4:]),
        )
        await queued(store, len(jobs))
        hold.release.set()
        assert await first == "held"
        assert await arriving == [True] * 4 + [None] * 4
    assert seen["commit"] == 2
    for job in jobs[:4]:
        assert (await state(store, job)).state == JobState.SUCCEEDED
        assert await ledger_kinds(store, job) == ["charge", "reserve"]
    for job in jobs[4:]:
        stored = await state(store, job)
        assert stored.state == JobState.RUNNING and stored.prediction_id == f"pred-{job.id}"


async def test_one_failing_write_fails_only_its_caller(store: JobStore) -> None:
    """A job whose settle raises (its refund breaks a NOT NULL column): its caller gets
    the error and its job is untouched; the batch it was in was rolled back and the
    other writes, run again alone, commit. Fails on the old code only at the rollback
    count (1: there was no batch to roll back)."""
    jobs = await running_jobs(store, 4)
    good, bad, delivering, started = jobs
    broken = replace(bad, cost=None)  # the refund's amount: NULL
    with transactions(store) as seen:
        outcomes = await asyncio.gather(
            store.mark_succeeded(good),
            store.mark_failed(broken, error_kind="provider_unavailable", message="503"),
            store.mark_delivering(delivering.id, "/out/x.png", {}, user=delivering.user),
            store.mark_submit_started(started.id),
            return_exceptions=True,
        )
    assert outcomes[0] is True
    assert isinstance(outcomes[1], IntegrityError)
    assert outcomes[2:] == [1080, None]
    # The batch, then the broken write alone; the three others committed alone.
    assert seen == Counter(rollback=2, commit=3)
    assert (await state(store, good)).state == JobState.SUCCEEDED
    assert await ledger_kinds(store, good) == ["charge", "reserve"]
    untouched = await state(store, bad)
    assert untouched.state == JobState.RUNNING and untouched.error_kind is None
    assert await ledger_kinds(store, bad) == ["reserve"]
    assert (await state(store, delivering)).state == JobState.DELIVERING
    assert (await state(store, started)).submit_started
    # The broken job can still be finished properly afterwards.
    assert await store.mark_failed(bad, error_kind="provider_unavailable", message="503")
    assert await ledger_kinds(store, bad) == ["refund", "reserve"]


async def test_a_cancelled_callers_write_still_lands(store: JobStore) -> None:
    """The caller stops waiting (and sees its cancellation); its write completes with the
    batch, and the others in that batch get their outcomes. The old code gave the same
    guarantee (``completes_when_cancelled``) and has no ``writes`` to hold a batch with:
    this guards the guarantee through the new path."""
    jobs = await running_jobs(store, 3)
    cancelled, other, prediction = jobs
    hold = Hold()
    first = asyncio.create_task(store.writes.run(hold))
    await hold.entered.wait()
    caller = asyncio.create_task(store.mark_succeeded(cancelled))
    neighbours = asyncio.gather(
        store.mark_succeeded(other), store.record_prediction(prediction.id, "pred")
    )
    await queued(store, 3)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    hold.release.set()
    assert await first == "held"
    assert await neighbours == [True, None]
    assert (await state(store, cancelled)).state == JobState.SUCCEEDED
    assert await ledger_kinds(store, cancelled) == ["charge", "reserve"]
    assert (await state(store, prediction)).prediction_id == "pred"


async def test_succeed_twice_in_one_batch_charges_once(store: JobStore) -> None:
    """The state guard inside one transaction: the second succeed and a late fail are
    no-ops. Fails on the old code only at the commit count (3, one per call): the guards
    are unchanged; what is new is that the three meet in one transaction."""
    (job,) = await running_jobs(store, 1)
    with transactions(store) as seen:
        outcomes = await asyncio.gather(
            store.finish(job, Charged()),
            store.finish(job, Charged()),
            store.finish(job, Refunded("internal", "late")),
        )
    assert seen["commit"] == 1
    assert outcomes == [True, False, False]
    assert await ledger_kinds(store, job) == ["charge", "reserve"]
    assert await store.balance(job.user) == 1080


async def test_one_jobs_transitions_in_one_batch_apply_in_arrival_order(
    store: JobStore,
) -> None:
    """Fails on the old code at the commit count (one per transition); the order held
    there too on SQLite, where writers queued in order for the lock."""
    first, second = await running_jobs(store, 2)
    with transactions(store) as seen:
        outcomes = await asyncio.gather(
            store.mark_submit_started(first.id),
            store.record_prediction(first.id, "pred-1"),
            store.mark_delivering(first.id, "/out/1.png", {"width": 1024}, user=first.user),
            store.mark_succeeded(first),
            # Asked the other way round: finished first, so delivering is a no-op.
            store.mark_succeeded(second),
            store.mark_delivering(second.id, "/out/2.png", {}, user=second.user),
        )
    assert seen["commit"] == 1
    assert outcomes == [None, None, 1080, True, True, None]
    done = await state(store, first)
    assert done.state == JobState.SUCCEEDED
    assert (done.prediction_id, done.output_path, done.submit_started) == (
        "pred-1",
        "/out/1.png",
        True,
    )
    assert done.output_meta == {"width": 1024}
    late = await state(store, second)
    assert late.state == JobState.SUCCEEDED and late.output_path is None
