"""``JobStore``: the queue and the reservations behind one object, for their callers.

The two concerns live apart: ``bot.jobs.queue`` (claim, leases, state transitions,
succeed/fail, queue position) and ``bot.jobs.reservations`` (create-and-reserve and the
quota refusals). The service, the runner, the operator's endpoints and the tests hold
one store; this class gives them both sets of methods without either module knowing
the other's callers.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.credits.bank import Bank
from bot.credits.limits import Limits
from bot.credits.policies import PolicyBook
from bot.domain import RequestContext, UserRef
from bot.jobs.queue import Clock, JobQueue
from bot.jobs.reservations import NewJob, Reservations, Reserved
from bot.storage.database import Database


class JobStore(JobQueue):
    def __init__(
        self,
        db: Database,
        base_limits: Limits,
        clock: Clock,
        policy_book: PolicyBook | None = None,
    ) -> None:
        super().__init__(db, clock, policy_book or PolicyBook(base_limits))
        # The config's limits; what admins changed, and the overrides per scope, are
        # in ``policy_book``.
        self.base_limits = base_limits
        self.bank = Bank(db, clock, self.policy_book)
        self.reservations = Reservations(self, self.bank)

    async def create(self, new: NewJob) -> Reserved:
        """See ``Reservations.create``."""
        return await self.reservations.create(new)

    async def create_group(self, news: list[NewJob]) -> list[Reserved]:
        """See ``Reservations.create_group``."""
        return await self.reservations.create_group(news)

    async def open_account(
        self, conn: AsyncConnection, user: UserRef, context: RequestContext, now: float
    ) -> Limits:
        """See ``Bank.open_account``."""
        return await self.bank.open_account(conn, user, context, now)
