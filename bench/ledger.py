"""Credit reservations per second on the real storage code, SQLite and PostgreSQL.

Two units of work, each reservation with its own job id:

- "create": ``JobStore.create``, what ``KontextService.submit`` calls to accept an edit:
  lock the account, resolve the user's policy and the operator's limits, ensure the period
  allowance, read the balance, store the job and append the ``reserve`` entry, in one
  write transaction. Whatever the store does to get there is measured; concurrent creates
  are group-committed (``bot/jobs/reservations.py``), one alone takes the single path
  (``Reservations._create``). This is the bot's reservation; the goals apply to it.
- "ledger": the single path's ledger sequence alone, one transaction per reservation,
  with the ledger's functions in the store's order (``lock_account``,
  ``ensure_allowance``, ``balance``, ``reserve``): what one reservation costs when it
  cannot share a transaction (and what the store cost before group commit).

Each run uses a fresh database (a file in a temporary directory, or a new database in a
throwaway PostgreSQL cluster started by ``tests/pg.py``), migrated by the bot's own
migrations, with the bot's engine settings, and N concurrent asyncio tasks (1, 8, 64).
A task is one user at a time: it reserves until that user's allowance (``PER_USER``
images) is spent, then moves on to a fresh user, so users have the same short history at
every concurrency level and no two tasks share a user. Every loop is bounded in count and
in time (a run stops at its deadline and says so).

After each run: every user's balance (``ledger.balance`` and a raw sum of its entries)
equals the allowance minus what the tasks saw reserved, none is below zero, the number of
``reserve`` entries (and of jobs, for "create") equals the reservations counted, each
user got one allowance grant, one more reservation of each spent user is refused, and one
user asking ``RACE_ATTEMPTS`` times at once gets exactly ``PER_USER``. Anything else
fails loudly.

Besides the rate, each run records the CPU this process used (event loop and aiosqlite's
threads), the CPU of the PostgreSQL server's processes, what else the machine was doing,
the statements and transactions per reservation and the connections the pool opened.
The "floor" is this stack's cost (SQLAlchemy async, the driver, the bot's ``Database``)
for an empty write transaction and for one trivial statement, measured in the same run.

Goals (the issue): at 64 concurrent users, 2,000 reservations/s on SQLite and 5,000/s on
PostgreSQL, on the 2-core machine. ``python -m bench.ledger --profile sqlite 64`` runs
one run under cProfile.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import math
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import case, event, func, select, text

from bot.credits import ledger
from bot.credits.limits import Limits
from bot.domain import EditOptions, UserRef
from bot.errors import QuotaError
from bot.jobs.reservations import NewJob
from bot.jobstore import JobStore
from bot.storage import Database, open_database
from bot.storage.schema import jobs
from bot.storage.schema import ledger as ledger_table
from tests.pg import Cluster, ClusterUnavailable, start_cluster

COST = 120  # the default cost_per_image
PER_USER = 20  # reservations that spend a user's allowance
ALLOWANCE = COST * PER_USER
NOW = 1_764_000_000.0  # a fixed clock: one allowance period for the whole run
CONCURRENCY = (1, 8, 64)
DATABASES = ("sqlite", "postgresql")
UNITS = ("create", "ledger")
TARGET_USERS = 64
TARGETS = {"sqlite": 2000.0, "postgresql": 5000.0}
GOAL_UNIT = "create"  # the bot's reservation; "ledger" is shown beside it
HARD_TIMEOUT_MARGIN = 60.0
RACE_ATTEMPTS = PER_USER + 10
BENCH_WORKSPACE = "TBENCH"
SEED_WORKSPACE = "TSEED"
SEED_USERS = 128  # history before each run: 2,560 reservations


@dataclass(frozen=True)
class Size:
    reservations: int  # per run, planned (at least one user of PER_USER per task)
    seconds: float  # per run, at most: then the run stops early and says so
    floor_transactions: int


QUICK = Size(reservations=400, seconds=2.5, floor_transactions=150)
FULL = Size(reservations=20480, seconds=30.0, floor_transactions=1000)


class Refused(Exception):
    """A reservation the ledger refused (balance below the cost)."""


class Overspend(AssertionError):
    """The ledger does not add up after a run."""


Reserve = Callable[[UserRef], Awaitable[int]]


def bot_policy() -> Limits:
    return Limits(allowance=ALLOWANCE, period="daily")


def new_job(user: UserRef, key: str) -> NewJob:
    return NewJob(
        idempotency_key=key,
        user=user,
        prompt="make it a watercolor",
        options=EditOptions(),
        attachments=(),
        reply_target={"channel": "C1", "thread": "1764000000.000100"},
        cost=COST,
        provider="coretoday",
        model="black-forest-labs/flux-kontext-pro",
    )


def create_unit(db: Database) -> Reserve:
    """The bot's reservation: ``JobStore.create``, as ``KontextService.submit`` calls it."""
    store = JobStore(db, bot_policy(), lambda: NOW)

    async def reserve(user: UserRef) -> int:
        try:
            stored = await store.create(new_job(user, uuid.uuid4().hex))
        except QuotaError as exc:
            raise Refused(str(exc)) from None
        if stored.duplicate:
            raise Overspend(f"{user}: a fresh idempotency key came back as a duplicate")
        return stored.balance_after

    return reserve


def ledger_unit(db: Database) -> Reserve:
    """The single path's ledger sequence (``Reservations._create``), one transaction each."""
    policy = bot_policy()

    async def reserve(user: UserRef) -> int:
        job_id = uuid.uuid4().hex
        async with db.transaction() as conn:
            await ledger.lock_account(conn, user, NOW)
            await ledger.ensure_allowance(conn, user, policy, NOW)
            available = await ledger.balance(conn, user)
            if available < COST:
                raise Refused(f"balance {available} < cost {COST}")  # rolls back
            if not await ledger.reserve(conn, user, job_id, COST, NOW):
                raise Overspend(f"reserve:{job_id} already existed")
        return available - COST

    return reserve


UNIT_FACTORIES: dict[str, Callable[[Database], Reserve]] = {
    "create": create_unit,
    "ledger": ledger_unit,
}


# -- databases ---------------------------------------------------------------------------


@dataclass
class Databases:
    """Where fresh databases come from: a temp dir, and the cluster if it started."""

    directory: Path
    cluster: Cluster | None
    pg_unavailable: str | None = None
    made: int = 0

    async def fresh_url(self, kind: str) -> str:
        self.made += 1
        if kind == "sqlite":
            return f"sqlite:///{self.directory / f'ledger-{self.made}.db'}"
        assert self.cluster is not None
        import asyncpg

        name = f"bench_ledger_{self.made}_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(self.cluster.url("postgres"))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.cluster.url(name)

    @property
    def kinds(self) -> tuple[str, ...]:
        return DATABASES if self.cluster is not None else ("sqlite",)

    def server_cpu(self, kind: str) -> float:
        """CPU seconds of the PostgreSQL postmaster and its children (0 for SQLite)."""
        if kind != "postgresql" or self.cluster is None:
            return 0.0
        try:
            text_ = (self.cluster.directory / "data" / "postmaster.pid").read_text()
            postmaster = int(text_.split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(entry.name) == postmaster:
                # Its own time plus that of the backends it has reaped (closed connections).
                total += sum(int(value) for value in fields[11:15])
            elif int(fields[1]) == postmaster:
                total += int(fields[11]) + int(fields[12])  # a live backend: utime + stime
        return total / os.sysconf("SC_CLK_TCK")


@contextmanager
def databases() -> Iterator[Databases]:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        try:
            cluster: Cluster | None = start_cluster()
            reason = None
        except ClusterUnavailable as exc:
            cluster, reason = None, str(exc)
            banner = "!" * 78
            print(
                f"{banner}\n!! ledger: PostgreSQL could NOT be started, reporting SQLite only."
                f"\n!! reason: {reason}\n{banner}",
                file=sys.stderr,
                flush=True,
            )
        try:
            yield Databases(Path(tmp), cluster, reason)
        finally:
            if cluster is not None:
                cluster.stop()


# -- measuring ---------------------------------------------------------------------------


def machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot (from /proc/stat; 0 elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(value) for value in fields]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Meter:
    """Wall time, CPU (this process, the server, the machine) and SQL of one stretch."""

    seconds: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    machine_cpu: float = 0.0
    statements: int = 0  # BEGIN not counted: it is part of the transaction
    transactions: int = 0
    connects: int = 0  # new database connections the pool opened during the stretch

    @property
    def other_cores(self) -> float:
        """What else ran on the machine meanwhile (another test run, the OS), in cores."""
        other = self.machine_cpu - self.client_cpu - self.server_cpu
        return max(0.0, other / self.seconds) if self.seconds else 0.0


@contextmanager
def metered(db: Database, dbs: Databases, kind: str) -> Iterator[Meter]:
    meter = Meter()
    engine = db.engine.sync_engine

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("BEGIN"):
            meter.statements += 1

    def on_begin(_conn: Any) -> None:
        meter.transactions += 1

    def on_connect(*_args: Any) -> None:
        meter.connects += 1

    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "begin", on_begin)
    event.listen(engine.pool, "connect", on_connect)
    machine, server, client = machine_busy(), dbs.server_cpu(kind), time.process_time()
    started = time.perf_counter()
    try:
        yield meter
    finally:
        meter.seconds = time.perf_counter() - started
        meter.client_cpu = time.process_time() - client
        meter.server_cpu = dbs.server_cpu(kind) - server
        meter.machine_cpu = machine_busy() - machine
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "begin", on_begin)
        event.remove(engine.pool, "connect", on_connect)


# -- one run -----------------------------------------------------------------------------


@dataclass
class Outcome:
    database: str
    unit: str
    users: int
    planned: int
    reservations: int
    meter: Meter
    time_bounded: bool
    per_user: dict[str, int] = field(repr=False)

    @property
    def rate(self) -> float:
        return self.reservations / self.meter.seconds if self.meter.seconds else 0.0

    def per_reservation(self, value: float) -> float:
        return value / self.reservations if self.reservations else 0.0


def user_ref(task: int, index: int, workspace: str = BENCH_WORKSPACE) -> UserRef:
    return UserRef("slack", workspace, f"U{task}x{index}")


async def seed_history(db: Database) -> None:
    """Give the fresh database a history and planner statistics, as a running bot's has.

    Without them PostgreSQL plans the store's queries once, on empty tables, and keeps
    those plans (sequential scans) for the whole run: nothing analyses the tables in a
    run this short. ``SEED_USERS`` users spend their allowance through ``JobStore.create``
    (64 at a time), then ``ANALYZE``; they live in their own workspace.
    """
    reserve = create_unit(db)

    async def spend(task: int) -> None:
        for index in range(SEED_USERS // TARGET_USERS):
            user = user_ref(task, index, SEED_WORKSPACE)
            for _ in range(PER_USER):
                await reserve(user)

    async with asyncio.timeout(HARD_TIMEOUT_MARGIN):
        await asyncio.gather(*(spend(task) for task in range(TARGET_USERS)))
    async with db.transaction() as conn:
        await conn.execute(text("ANALYZE"))


async def warm_pool(db: Database, users: int) -> None:
    """Open the connections a run at this concurrency will use, as a running bot has."""

    async def touch() -> None:
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))
            await asyncio.sleep(0.01)

    await asyncio.gather(*(touch() for _ in range(min(users, 20))))


async def one_run(dbs: Databases, kind: str, unit: str, users: int, size: Size) -> Outcome:
    db = await open_database(await dbs.fresh_url(kind))
    try:
        await seed_history(db)
        await warm_pool(db, users)
        reserve = UNIT_FACTORIES[unit](db)
        users_per_task = max(1, math.ceil(size.reservations / (PER_USER * users)))
        counts: dict[str, int] = {}
        deadline = time.perf_counter() + size.seconds
        bounded = False

        async def task(number: int) -> None:
            nonlocal bounded
            for index in range(users_per_task):
                user = user_ref(number, index)
                counts[str(user)] = 0
                for _ in range(PER_USER):
                    if time.perf_counter() >= deadline:
                        bounded = True
                        return
                    balance_after = await reserve(user)
                    counts[str(user)] += 1
                    if balance_after < 0:
                        raise Overspend(f"{user}: balance {balance_after} after a reservation")
                    if balance_after < COST:
                        break

        with metered(db, dbs, kind) as meter:
            async with asyncio.timeout(size.seconds + HARD_TIMEOUT_MARGIN):
                await asyncio.gather(*(task(n) for n in range(users)))
        outcome = Outcome(
            database=kind,
            unit=unit,
            users=users,
            planned=users_per_task * PER_USER * users,
            reservations=sum(counts.values()),
            meter=meter,
            time_bounded=bounded,
            per_user=counts,
        )
        await verify(db, reserve, outcome)
        return outcome
    finally:
        await db.dispose()


async def verify(db: Database, reserve: Reserve, outcome: Outcome) -> None:
    """Zero overspend, or a loud failure."""
    problems: list[str] = []
    async with db.read() as conn:
        rows = await conn.execute(
            select(
                ledger_table.c.user_ref,
                func.sum(ledger_table.c.amount),
                func.sum(case((ledger_table.c.kind == "reserve", 1), else_=0)),
                func.sum(case((ledger_table.c.kind == "grant", 1), else_=0)),
            ).group_by(ledger_table.c.user_ref)
        )
        sums = {
            ref: (int(total), int(reserves), int(grants)) for ref, total, reserves, grants in rows
        }
        job_rows = await conn.execute(
            select(jobs.c.user_ref, func.count()).group_by(jobs.c.user_ref)
        )
        job_counts = {ref: int(n) for ref, n in job_rows}
        total_reserves = await conn.scalar(
            select(func.count()).select_from(ledger_table).where(ledger_table.c.kind == "reserve")
        )
        seeds = {ref: v for ref, v in sums.items() if ref.startswith(f"slack:{SEED_WORKSPACE}:")}
        if len(seeds) != SEED_USERS or any(v != (0, PER_USER, 1) for v in seeds.values()):
            problems.append(f"history users do not add up: {sorted(set(seeds.values()))[:3]}")
        if sum(job_counts.get(ref, 0) for ref in seeds) != SEED_USERS * PER_USER:
            problems.append("history users: jobs and reservations differ")
        for ref, reserved in outcome.per_user.items():
            # A user the deadline cut off before its first reservation has no entries.
            expected = ALLOWANCE - COST * reserved if reserved else 0
            total, reserves, grants = sums.get(ref, (0, 0, 0))
            via_bot = await ledger.balance(conn, UserRef.parse(ref))
            if not total == via_bot == expected:
                problems.append(
                    f"{ref}: expected {expected}, entries sum {total}, balance {via_bot}"
                )
            if total < 0:
                problems.append(f"{ref}: balance {total} below zero")
            if reserves != reserved:
                problems.append(f"{ref}: {reserves} reserve entries for {reserved} reservations")
            if reserved and grants != 1:
                problems.append(f"{ref}: {grants} allowance grants in one period")
            if outcome.unit == "create" and job_counts.get(ref, 0) != reserved:
                problems.append(f"{ref}: {job_counts.get(ref, 0)} jobs for {reserved} reservations")
        unknown = set(sums) - set(outcome.per_user) - set(seeds)
        if unknown:
            problems.append(f"entries of users no task had: {sorted(unknown)[:5]}")
        expected_reserves = outcome.reservations + SEED_USERS * PER_USER
        if total_reserves != expected_reserves:
            problems.append(f"{total_reserves} reserve entries, {expected_reserves} expected")
    if not outcome.time_bounded and outcome.reservations != outcome.planned:
        problems.append(f"{outcome.reservations} reservations, {outcome.planned} planned")
    # A spent user must be refused (and the refusal rolls back, so nothing changes).
    # Asked together, 64 at a time, so a batching store refuses them in its batches.
    spent = [UserRef.parse(ref) for ref, n in outcome.per_user.items() if n == PER_USER]
    for start in range(0, len(spent), TARGET_USERS):
        chunk = spent[start : start + TARGET_USERS]
        results = await asyncio.gather(*(reserve(u) for u in chunk), return_exceptions=True)
        for user, result in zip(chunk, results, strict=True):
            if isinstance(result, Refused):
                continue
            problems.append(f"{user}: a reservation beyond the allowance gave {result!r}")
    problems.extend(await race(db, reserve))
    if problems:
        listing = "\n  ".join(problems[:20])
        print(f"  OVERSPEND CHECK FAILED ({len(problems)} problems):\n  {listing}", file=sys.stderr)
        where = f"{outcome.database}/{outcome.unit}/{outcome.users} users"
        raise Overspend(f"ledger {where}: {problems[0]}")


async def race(db: Database, reserve: Reserve) -> list[str]:
    """One user asking ``RACE_ATTEMPTS`` times at once: exactly ``PER_USER`` may pass."""
    user = UserRef("slack", "TBENCH", "URACE")
    results = await asyncio.gather(
        *(reserve(user) for _ in range(RACE_ATTEMPTS)), return_exceptions=True
    )
    passed = [r for r in results if isinstance(r, int)]
    odd = [r for r in results if not isinstance(r, int | Refused)]
    async with db.read() as conn:
        left = await ledger.balance(conn, user)
    problems = [f"race: unexpected outcome {r!r}" for r in odd[:3]]
    if len(passed) != PER_USER or left != 0 or min(passed, default=0) < 0:
        problems.append(
            f"race: {len(passed)} of {RACE_ATTEMPTS} concurrent reservations of one user "
            f"passed (allowance for {PER_USER}), balance left {left}"
        )
    return problems


async def floor(dbs: Databases, kind: str, transactions: int) -> dict[str, float]:
    """This stack's cost for an empty write transaction and for one ``SELECT 1``."""
    db = await open_database(await dbs.fresh_url(kind))
    try:
        await warm_pool(db, 1)
        with metered(db, dbs, kind) as empty:
            for _ in range(transactions):
                async with db.transaction():
                    pass
        with metered(db, dbs, kind) as five:
            for _ in range(transactions):
                async with db.transaction() as conn:
                    for _ in range(5):
                        await conn.execute(text("SELECT 1"))
    finally:
        await db.dispose()
    return {
        "transaction_us": round(empty.seconds / transactions * 1e6, 1),
        "transaction_client_cpu_us": round(empty.client_cpu / transactions * 1e6, 1),
        "statement_us": round((five.seconds - empty.seconds) / (5 * transactions) * 1e6, 1),
        "statement_client_cpu_us": round(
            (five.client_cpu - empty.client_cpu) / (5 * transactions) * 1e6, 1
        ),
    }


# -- the benchmark -----------------------------------------------------------------------


def run(quick: bool) -> dict[str, Any]:
    size = QUICK if quick else FULL
    outcomes: list[Outcome] = []
    floors: dict[str, dict[str, float]] = {}
    print(f"ledger: load average before: {os.getloadavg()[0]:.2f}", flush=True)
    with databases() as dbs:
        for kind in dbs.kinds:
            floors[kind] = asyncio.run(floor(dbs, kind, size.floor_transactions))
            for unit in UNITS:
                for users in CONCURRENCY:
                    outcome = asyncio.run(one_run(dbs, kind, unit, users, size))
                    outcomes.append(outcome)
                    print(
                        f"  {kind} {unit} x{users}: {outcome.reservations} reservations in "
                        f"{outcome.meter.seconds:.2f} s, overspend: none",
                        flush=True,
                    )
        pg_unavailable = dbs.pg_unavailable
    return report(outcomes, floors, size, pg_unavailable)


def row(outcome: Outcome, base: float) -> dict[str, Any]:
    meter = outcome.meter
    return {
        "database": outcome.database,
        "unit": outcome.unit,
        "users": outcome.users,
        "reservations": outcome.reservations,
        "planned": outcome.planned,
        "seconds": round(meter.seconds, 3),
        "reservations_per_s": round(outcome.rate, 1),
        "vs_1_user": round(outcome.rate / base, 3) if base else None,
        "client_cpu_ms_per_reservation": round(outcome.per_reservation(meter.client_cpu) * 1e3, 3),
        "client_cores": round(meter.client_cpu / meter.seconds, 2),
        "server_cpu_ms_per_reservation": round(outcome.per_reservation(meter.server_cpu) * 1e3, 3),
        "other_load_cores": round(meter.other_cores, 2),
        "statements_per_reservation": round(outcome.per_reservation(meter.statements), 2),
        "transactions_per_reservation": round(outcome.per_reservation(meter.transactions), 4),
        "reservations_per_transaction": round(outcome.reservations / max(meter.transactions, 1), 1),
        "connections_opened": meter.connects,
        "time_bounded": outcome.time_bounded,
    }


def report(
    outcomes: list[Outcome],
    floors: dict[str, dict[str, float]],
    size: Size,
    pg_unavailable: str | None,
) -> dict[str, Any]:
    print(
        f"ledger: {PER_USER} reservations per user (allowance {ALLOWANCE}, cost {COST}), "
        f"about {size.reservations} per run, each run at most {size.seconds:g} s"
    )
    header = ("users", "reserv.", "seconds", "res/s", "x 1 user", "cli ms/r", "cli core")
    tail = ("srv ms/r", "stmt/r", "res/tx", "conns", "other")
    print(f"  {'database':<11}{'unit':<8}" + "".join(f"{h:>9}" for h in header + tail))
    rows: dict[str, Any] = {}
    base: dict[tuple[str, str], float] = {}
    for o in outcomes:
        if o.users == 1:
            base[(o.database, o.unit)] = o.rate
        figures = row(o, base.get((o.database, o.unit), 0.0))
        rows[f"{o.database}/{o.unit}/{o.users}"] = figures
        print(
            f"  {o.database:<11}{o.unit:<8}{o.users:>9}{o.reservations:>9}"
            f"{o.meter.seconds:>9.2f}{o.rate:>9.0f}{figures['vs_1_user'] or 0:>9.2f}"
            f"{figures['client_cpu_ms_per_reservation']:>9.2f}{figures['client_cores']:>9.2f}"
            f"{figures['server_cpu_ms_per_reservation']:>9.2f}"
            f"{figures['statements_per_reservation']:>9.2f}"
            f"{figures['reservations_per_transaction']:>9.1f}"
            f"{figures['connections_opened']:>9}"
            f"{figures['other_load_cores']:>9.2f}" + (" (time-bounded)" if o.time_bounded else "")
        )
    print(
        "  cli ms/r, cli core: this process's CPU per reservation and its cores in use; srv: "
        "PostgreSQL's CPU; res/tx: reservations per write transaction; conns: connections "
        "opened during the run; other: cores busy with anything else"
    )
    print("  overspend: none (every run: balance = allowance - reserved = sum of entries >= 0)")
    for kind, fl in floors.items():
        print(
            f"  floor {kind}: empty write transaction {fl['transaction_us']:.0f} us "
            f"({fl['transaction_client_cpu_us']:.0f} us CPU), SELECT 1 {fl['statement_us']:.0f} us "
            f"({fl['statement_client_cpu_us']:.0f} us CPU)"
        )
    by_key = {(o.database, o.unit, o.users): o for o in outcomes}
    goals: dict[str, Any] = {}
    for kind, target in TARGETS.items():
        found = by_key.get((kind, GOAL_UNIT, TARGET_USERS))
        if found is None:
            goals[kind] = {"target_per_s": target, "rate": None, "met": False}
            print(f"  goal {kind}: >= {target:,.0f}/s at {TARGET_USERS} users: NOT MEASURED")
            continue
        met = found.rate >= target
        goals[kind] = {
            "unit": GOAL_UNIT,
            "target_per_s": target,
            "rate": round(found.rate, 1),
            "fraction_of_target": round(found.rate / target, 3),
            "met": met,
        }
        print(
            f"  goal {kind} ({GOAL_UNIT}): >= {target:,.0f}/s at {TARGET_USERS} users: "
            f"{found.rate:,.0f}/s ({found.rate / target:.0%}) {'met' if met else 'MISSED'}"
        )
        single = by_key.get((kind, "ledger", TARGET_USERS))
        if single is not None and single.rate:
            print(
                f"    single-reservation ledger path at {TARGET_USERS} users: {single.rate:,.0f}/s "
                f"({single.rate / target:.0%} of the goal; no goal of its own); "
                f"create / ledger = {found.rate / single.rate:.2f}"
            )
    if pg_unavailable:
        print(f"  !! PostgreSQL NOT MEASURED: {pg_unavailable}")
    return {
        "per_user": PER_USER,
        "cost": COST,
        "reservations_per_run": size.reservations,
        "seconds_per_run_at_most": size.seconds,
        "runs": rows,
        "floor": floors,
        "goals": goals,
        "overspend": "none",
        "postgresql_unavailable": pg_unavailable,
        "met": bool(goals) and all(goal["met"] for goal in goals.values()),
    }


# -- profiling ---------------------------------------------------------------------------


def profile(kind: str, unit: str, users: int, quick: bool, top: int) -> None:
    """One run under cProfile (the main thread only: aiosqlite's threads are not seen)."""
    size = QUICK if quick else FULL
    with databases() as dbs:
        if kind not in dbs.kinds:
            raise SystemExit(f"{kind} is not available: {dbs.pg_unavailable}")
        profiler = cProfile.Profile()
        profiler.enable()
        outcome = asyncio.run(one_run(dbs, kind, unit, users, size))
        profiler.disable()
    print(
        f"{kind} {unit} x{users}: {outcome.reservations} reservations in "
        f"{outcome.meter.seconds:.2f} s ({outcome.rate:.0f}/s under the profiler), "
        f"{outcome.per_reservation(outcome.meter.statements):.1f} statements each"
    )
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ledger", description="Profile one run of the ledger benchmark."
    )
    parser.add_argument("--profile", nargs=2, metavar=("DATABASE", "USERS"), required=True)
    parser.add_argument("--unit", choices=UNITS, default="create")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    kind, users = args.profile
    if kind not in DATABASES:
        parser.error(f"DATABASE must be one of {DATABASES}")
    profile(kind, args.unit, int(users), args.quick, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
