"""The bank: the one door to a user's credits outside a job's own steps.

``bot.ledger`` is the rows (what each entry kind means, how each is written once);
this is the transactions that move or show money on their own: opening an account
(lock, the limits in force, the period's allowance), a balance with what it buys, an
admin's grant or adjustment, a user's entries, the top spenders, and the audit row of
an admin action. The service asks the bank and opens no money transaction of its own.

The money a job moves is written inside the job's own transactions, where it must be
atomic with the job's row: the reservation when the job is stored
(``bot.reservations``, through ``open_account`` and ``ledger.reserve_entry``), the
charge or refund when it finishes (``bot.jobqueue``'s ``finish``).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from bot import ledger
from bot.domain import RequestContext, UserRef
from bot.ledger import EntryKind, LedgerEntry
from bot.limits import Limits
from bot.policies import PolicyBook
from bot.storage.database import Database


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

    async def spent_since(self, since: float) -> int:
        """Credits everyone spent (reserved and not refunded) since a moment: what the
        shared budget is held against."""
        async with self.db.read() as conn:
            return await ledger.spent_since(conn, since)

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
