"""The bank: the one door to a user's credits outside a job's own steps.

``bot.credits.ledger`` is the rows (what each entry kind means, how each is written once);
this is the transactions that move or show money on their own: opening an account
(lock, the limits in force, the period's allowance), a balance with what it buys, an
admin's grant or adjustment, a user's entries, the top spenders, and the audit row of
an admin action. The service asks the bank and opens no money transaction of its own.

The money a job moves is written here too, inside the job's own transactions, where it
must be atomic with the job's row (the caller passes its connection): the allowance and
the reservation when the job is stored (``bot.jobs.reservations``: ``grant_allowance``,
``reserve``, ``post_entries`` for a batch), the charge or the refund when it finishes
(``bot.jobs.queue``'s ``finish``: ``charge``, ``refund``). Nothing else writes a ledger
row; ``bot.credits.ledger`` is how each row looks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.credits import ledger
from bot.credits.ledger import EntryKind, LedgerEntry
from bot.credits.limits import Limits
from bot.credits.policies import Override, PolicyBook
from bot.credits.scopes import GLOBAL
from bot.domain import Job, RequestContext, UserRef
from bot.storage.database import Database
from bot.storage.dialect import insert_many_ignoring_conflict
from bot.storage.schema import ledger as ledger_table


class Bank:
    def __init__(self, db: Database, clock: Callable[[], float], policy_book: PolicyBook) -> None:
        self.db = db
        self.clock = clock
        self.policy_book = policy_book

    async def open_account(
        self, conn: AsyncConnection, user: UserRef, context: RequestContext, now: float
    ) -> Limits:
        """Lock the user's account and grant the period's allowance under the limits in
        force here (returned): what every balance change or balance shown starts with,
        in the caller's transaction."""
        await ledger.lock_account(conn, user, now)
        limits, _ = await self.policy_book.resolve(conn, user, context)
        await ledger.ensure_allowance(conn, user, limits, now)
        return limits

    async def account(
        self, user: UserRef, context: RequestContext, now: float
    ) -> tuple[Limits, int]:
        """The limits in force for the user and their balance after any allowance due."""
        async with self.db.transaction() as conn:
            limits = await self.open_account(conn, user, context, now)
            return limits, await ledger.balance(conn, user)

    async def grant(self, user: UserRef, amount: int, *, actor: str, note: str | None) -> int:
        """Add credits (a grant) or, with a negative amount, take them away (an
        adjustment); returns the new balance."""
        now = self.clock()
        kind = EntryKind.GRANT if amount > 0 else EntryKind.ADJUST
        async with self.db.transaction() as conn:
            await self.open_account(conn, user, RequestContext(), now)
            await ledger.append(conn, user, kind, amount, now, actor=actor, note=note)
            return await ledger.balance(conn, user)

    async def history(self, user: UserRef | str, limit: int) -> list[LedgerEntry]:
        """A user's entries (or a scope's admin actions), newest first."""
        async with self.db.read() as conn:
            return await ledger.recent_entries(conn, user, limit)

    async def spent_since(self, *moments: float) -> tuple[int, ...]:
        """Credits everyone spent (reserved and not refunded) since each moment, in one
        read: what the shared budget is held against, and today's spend beside it (the
        admins' part of the Home tab)."""
        async with self.db.read() as conn:
            return tuple([await ledger.spent_since(conn, since) for since in moments])

    async def top_spenders(self, since: float, limit: int) -> list[tuple[str, int]]:
        async with self.db.read() as conn:
            return await ledger.top_spenders(conn, since, limit)

    @staticmethod
    async def audit(
        conn: AsyncConnection, scope: str, *, actor: str, what: str, now: float
    ) -> None:
        """The ledger is the audit trail of every admin action, not only of credits: a
        0-credit entry on the scope, in the transaction that made the change."""
        await ledger.append(conn, scope, EntryKind.ADMIN, 0, now, actor=actor, note=what[:500])

    # -- the admin's changes, each with its audit row, and the limits they make ----------

    async def change_policy(self, scope: str, *, actor: str, what: str, **change: Any) -> Override:
        """Store an admin's change of a scope's policy with its audit row, together."""
        now = self.clock()
        async with self.db.transaction() as conn:
            override = await self.policy_book.store(conn, scope, actor=actor, now=now, **change)
            await self.audit(conn, scope, actor=actor, what=what, now=now)
        return override

    async def reset_limits(self, names: list[str], *, actor: str, what: str) -> None:
        """Drop stored run-time limits (the config's are in force again), audited."""
        now = self.clock()
        async with self.db.transaction() as conn:
            await self.policy_book.reset(conn, GLOBAL, names, actor=actor, now=now)
            await self.audit(conn, GLOBAL, actor=actor, what=what, now=now)

    async def overrides(self, scopes: list[str]) -> dict[str, Override]:
        """What the policies say for these scopes (stored and configured)."""
        async with self.db.read() as conn:
            return await self.policy_book.overrides(conn, scopes)

    async def limits_in_force(self) -> Limits:
        """The limits for everyone: the config with the stored global changes."""
        async with self.db.read() as conn:
            return await self.policy_book.for_everyone(conn)

    # -- a job's money, in the job's own transaction -----------------------------------

    @staticmethod
    async def grant_allowance(
        conn: AsyncConnection, user: UserRef, limits: Limits, now: float
    ) -> None:
        """This period's allowance, once (its dedupe key), on an account already locked."""
        await ledger.ensure_allowance(conn, user, limits, now)

    @staticmethod
    async def reserve(conn: AsyncConnection, job: Job, now: float) -> None:
        """The job's cost taken from its user as the job is stored."""
        await ledger.reserve(conn, job.user, job.id, job.cost, now)

    @staticmethod
    async def post_entries(conn: AsyncConnection, entries: list[dict[str, Any]]) -> None:
        """A batch's grants and reservations (rows built by ``bot.credits.ledger``) in one
        statement; an entry whose dedupe key exists already is not written again."""
        await insert_many_ignoring_conflict(conn, ledger_table, entries, ["dedupe_key"])

    @staticmethod
    async def charge(conn: AsyncConnection, job: Job, now: float) -> None:
        """The delivered job's reservation settled as its charge."""
        await ledger.settle_charge(conn, job.user, job.id, job.cost, now)

    @staticmethod
    async def refund(conn: AsyncConnection, job: Job, reason: str, now: float) -> None:
        """The failed or canceled job's reservation given back."""
        await ledger.refund(conn, job.user, job.id, job.cost, now, reason=reason)
