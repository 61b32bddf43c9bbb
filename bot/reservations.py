"""Group commit for reservations: requests that arrive together are reserved together.

One reservation alone is ~6 statements, and on this stack each statement's round trip
costs far more CPU than the database's work (see docs/benchmarks.md, ledger). So while
one transaction runs, the requests that arrive queue up, and the next transaction
takes them all with set-based statements: one that creates and locks the accounts, one
read of the policies that apply, one of the balances together with the allowances
already granted, one insert of the jobs and one of the ledger entries (allowances due
and reservations), whatever the number of requests.

The decisions are the single path's (``JobStore._create``), made in Python over what
was read: paused scopes and short balances are refused one by one without touching the
others. What this path does not handle (the operator's cooldown or shared budget,
which need per-request reads under a lock, and a user twice in one batch) it leaves to
the single path, as it does any batch that fails (another process inserting the same
idempotency key): those requests are then reserved one at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.domain import Job, JobState, RequestContext
from bot.errors import QuotaError
from bot.ledger import EntryKind, allowance_grant, allowance_key
from bot.periods import Period
from bot.policies import GLOBAL, PolicyBook, scopes_for
from bot.storage.dialect import create_and_lock, insert_many_ignoring_conflict, one_of
from bot.storage.schema import accounts, jobs, ledger


class NotBatchable(Exception):
    """This batch needs the one-at-a-time path."""


@dataclass(frozen=True)
class Reserved:
    job: Job
    balance_after: int


Outcome = Reserved | QuotaError


async def reserve_batch(
    conn: AsyncConnection,
    items: Sequence[tuple[Job, RequestContext]],
    policies: PolicyBook,
    now: float,
    refused: Callable[[int, int, float, Period], QuotaError],
) -> list[Outcome]:
    """Reserve every item's job in the caller's transaction; items are jobs not yet
    stored (ids assigned), each with a distinct user. ``refused(balance, cost, now,
    period)`` builds the single path's quota error."""
    if not items:
        return []
    users = [str(job.user) for job, _ in items]
    if len(set(users)) != len(users):
        raise NotBatchable("a user twice in one batch")
    await create_and_lock(
        conn, accounts, [{"user_ref": u, "created_at": now} for u in users], "user_ref"
    )
    scopes = {GLOBAL}
    for job, context in items:
        scopes.update(scopes_for(job.user, context))
    found = await policies.overrides(conn, sorted(scopes))
    decided = [policies.decide(found, job.user, context) for job, context in items]
    if any(p.cooldown_seconds > 0 or p.budget > 0 for p, _ in decided):
        raise NotBatchable("cooldown or budget")

    # Balances and whether this period's allowance was granted, in one read.
    keys = [
        key
        for (job, _), (policy, paused) in zip(items, decided, strict=True)
        if paused is None and (key := allowance_key(job.user, policy, now)) is not None
    ]
    rows = await conn.execute(
        select(
            ledger.c.user_ref,
            func.sum(ledger.c.amount),
            func.max(case((one_of(conn, ledger.c.dedupe_key, keys), 1), else_=0)),
        )
        .where(one_of(conn, ledger.c.user_ref, users))
        .group_by(ledger.c.user_ref)
    )
    balances: dict[str, int] = {}
    granted: set[str] = set()
    for ref, total, has_grant in rows:
        balances[str(ref)] = int(total or 0)
        if has_grant:
            granted.add(str(ref))
    # Entries go in as one statement: the allowances due, then the reservations.
    entries: list[dict[str, object]] = []
    for (job, _), (policy, paused) in zip(items, decided, strict=True):
        ref = str(job.user)
        if paused is not None or ref in granted:
            continue
        grant = allowance_grant(job.user, policy, now, balances.get(ref, 0))
        if grant is not None:
            entries.append(grant)
            balances[ref] = balances.get(ref, 0) + int(grant["amount"])

    outcomes: list[Outcome] = []
    job_rows: list[dict[str, object]] = []
    for (job, _), (policy, paused) in zip(items, decided, strict=True):
        available = balances.get(str(job.user), 0)
        if paused is not None:
            outcomes.append(paused_refusal(job.cost))
            continue
        if available < job.cost:
            outcomes.append(refused(available, job.cost, now, policy.period))
            continue
        job_rows.append(_job_row(job, now))
        entries.append(
            {
                "user_ref": str(job.user),
                "kind": EntryKind.RESERVE.value,
                "amount": -job.cost,
                "job_id": job.id,
                "dedupe_key": f"reserve:{job.id}",
                "actor": None,
                "note": None,
                "created_at": now,
            }
        )
        outcomes.append(Reserved(job, available - job.cost))
    if job_rows:
        await conn.execute(jobs.insert(), job_rows)
    await insert_many_ignoring_conflict(conn, ledger, entries, ["dedupe_key"])
    return outcomes


def paused_refusal(cost: int) -> QuotaError:
    """The answer to a request in a paused scope, on the batch path and the single one."""
    return QuotaError(
        "An admin has paused the bot here for now. Nothing was charged.",
        balance=0,
        cost=cost,
        refill_at=None,
    )


def _job_row(job: Job, now: float) -> dict[str, object]:
    return {
        "id": job.id,
        "idempotency_key": job.idempotency_key,
        "user_ref": str(job.user),
        "platform": job.user.platform,
        "state": JobState.QUEUED.value,
        "prompt": job.prompt,
        "options": job.options.to_json(),
        "attachments": [a.to_json() for a in job.attachments],
        "reply_target": dict(job.reply_target),
        "cost": job.cost,
        "provider": job.provider,
        "model": job.model,
        "created_at": now,
        "updated_at": now,
    }


def new_job_id() -> str:
    return uuid.uuid4().hex
