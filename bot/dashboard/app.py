"""The dashboard's web application and its server, started by ``kontext-bot run`` beside
the adapters (``bot.app.Core``) like the ops endpoint.

Pages (their paths are a contract, docs/operations.md): ``/`` the overview, ``/users/<ref>``
one user, ``/jobs`` recent jobs with filters, ``/ledger.csv?from=&to=`` the ledger for
accounting. Every answer needs the password (``bot.dashboard.auth``); an error answer is
a fixed sentence that carries no data and never echoes the request.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from bot.credits import ledger
from bot.credits.periods import period_start
from bot.credits.policies import effective_policy, with_global
from bot.credits.scopes import GLOBAL
from bot.dashboard import queries
from bot.dashboard.auth import basic_auth
from bot.dashboard.charts import Gauge, day_label, stacked_by_day
from bot.dashboard.pages import SECURITY_HEADERS, plain, render, static_file
from bot.domain import JobState, UserRef
from bot.errors import UserInputError
from bot.jobs.service import KontextService
from bot.providers.base import Provider
from bot.server.local_server import LocalServer

log = structlog.get_logger("kontext.dashboard")

CHART_DAYS = 30
TOP_SPENDERS = 10
BALANCE_TIMEOUT_SECONDS = 3.0
PLATFORMS = ("discord", "slack", "console")
CSV_COLUMNS = ("id", "time_utc", "user", "platform", "kind", "amount", "job_id", "actor", "note")


@web.middleware
async def errors_without_data(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Not found, wrong method, bad input and crashes answer a fixed sentence: no
    traceback, no listing, nothing from the request."""
    try:
        answer: web.StreamResponse = await handler(request)
        return answer
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return plain(
            exc.status,
            {404: "Not found.", 405: "Method not allowed."}.get(exc.status, "Bad request."),
        )
    except Exception:
        log.exception("dashboard page failed", path=request.path)
        return plain(500, "Internal error; see the bot's log.")


class Dashboard:
    """The pages, reading through the service's store (the same database and policy
    book as the running bot)."""

    def __init__(self, service: KontextService, provider: Provider | None) -> None:
        self.service = service
        self.store = service.store
        self.provider = provider

    def application(self, password: str) -> web.Application:
        app = web.Application(middlewares=[basic_auth(password), errors_without_data])
        app.router.add_get("/", self.overview)
        app.router.add_get("/users/{ref}", self.user)
        app.router.add_get("/jobs", self.jobs)
        app.router.add_get("/ledger.csv", self.ledger_csv)
        app.router.add_get("/static/dashboard.css", self.stylesheet)
        app.router.add_get("/favicon.ico", self.favicon)
        app.router.add_get("/static/favicon.svg", self.favicon)
        return app

    # --- pages

    async def overview(self, _request: web.Request) -> web.Response:
        now = self.store.clock()
        today = int(now // queries.DAY)
        days = list(range(today - CHART_DAYS + 1, today + 1))
        limits = await self.service.limits()
        budget_period = self.store.policy_book.budget_period_of(limits)
        since = period_start(budget_period, now)
        async with self.store.db.read() as conn:
            daily = await queries.ledger_per_day(conn, days[0])
            outcomes = await queries.outcomes_per_day(conn, days[0], daily.refunds)
            by_user = await ledger.spend_by_user(conn, since)
        spend = daily.spend
        columns = outcome_columns(outcomes)
        return render(
            "overview.html",
            chart=stacked_by_day(spend, days),
            spent_30_days=sum(spend.values()),
            budget=Gauge(sum(by_user.values()), limits.budget),
            period=budget_period,
            period_start=since,
            outcome_columns=columns,
            outcome_rows=[
                (day_label(d), [outcomes.get(d, {}).get(c, 0) for c in columns])
                for d in reversed(days)
                if d in outcomes
            ],
            top=ledger.rank_spenders(by_user, TOP_SPENDERS),
            provider_name=self.service.provider_name,
            provider_balance=await self.provider_balance(),
            csv_from=datetime.fromtimestamp(since, UTC).date().isoformat()
            if since
            else day_label(days[0]),
            csv_to=datetime.fromtimestamp(now, UTC).date().isoformat(),
        )

    async def provider_balance(self) -> str | None:
        """The provider's account balance where it has an API for it (BFL's
        ``GET /v1/credits``); None where it has none, a short reason when it failed."""
        read = getattr(self.provider, "credits", None)
        if read is None:
            return None
        try:
            value = await asyncio.wait_for(read(), BALANCE_TIMEOUT_SECONDS)
        except Exception as exc:  # shown as unavailable; the page still renders
            log.warning("provider balance unavailable", error=type(exc).__name__)
            return f"unavailable ({type(exc).__name__})"
        return f"{value:,.2f} credits"

    async def user(self, request: web.Request) -> web.Response:
        try:
            user = UserRef.parse(request.match_info["ref"])
        except UserInputError:
            return plain(404, "Not found.")
        async with self.store.db.read() as conn:
            if not await queries.user_known(conn, user):
                return plain(404, "Not found.")
        # The same numbers as ``kontext-bot credits show`` (which, like this, grants an
        # allowance that is due before reading the balance).
        status = await self.service.credits(user)
        async with self.store.db.read() as conn:
            book = self.store.policy_book
            scopes = [GLOBAL, f"user:{user}", f"workspace:{user.platform}:{user.workspace}"]
            found = await book.overrides(conn, scopes)
            entries = await ledger.recent_entries(conn, user, 100)
            user_jobs = await queries.recent_jobs(conn, queries.JobFilter(user=str(user)), 100)
        base = with_global(book.base_limits, found.pop(GLOBAL, None))
        return render(
            "user.html",
            user=str(user),
            status=status,
            reason=allowance_reason(base, user, found),
            paused=[scope for scope, o in found.items() if o.paused],
            entries=entries,
            jobs=user_jobs,
        )

    async def jobs(self, request: web.Request) -> web.Response:
        query = request.query
        wanted = queries.JobFilter(
            state=query.get("state", "").strip(),
            platform=query.get("platform", "").strip(),
            user=query.get("user", "").strip(),
        )
        async with self.store.db.read() as conn:
            found = await queries.recent_jobs(conn, wanted)
        return render(
            "jobs.html",
            jobs=found,
            wanted=wanted,
            states=[s.value for s in JobState],
            platforms=PLATFORMS,
        )

    async def ledger_csv(self, request: web.Request) -> web.StreamResponse:
        today = datetime.fromtimestamp(self.store.clock(), UTC).date()
        try:
            start = parse_day(request.query.get("from", ""), today - timedelta(days=29))
            end = parse_day(request.query.get("to", ""), today)
        except ValueError:
            return plain(400, "from and to must be dates written YYYY-MM-DD.")
        if end < start:
            return plain(400, "to must not be before from.")
        name = f"kontext-ledger-{start.isoformat()}-{end.isoformat()}.csv"
        response = web.StreamResponse(
            headers={
                **SECURITY_HEADERS,
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{name}"',
            }
        )
        await response.prepare(request)
        first = datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()
        after = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        async for row in queries.ledger_rows(self.store.db, first, after.timestamp()):
            writer.writerow(csv_row(row))
            if buffer.tell() > 64_000:
                await response.write(buffer.getvalue().encode("utf-8"))
                buffer.seek(0)
                buffer.truncate()
        await response.write(buffer.getvalue().encode("utf-8"))
        await response.write_eof()
        return response

    async def stylesheet(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=static_file("dashboard.css"),
            content_type="text/css",
            headers={**SECURITY_HEADERS, "Cache-Control": "private, max-age=300"},
        )

    async def favicon(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=static_file("favicon.svg"),
            content_type="image/svg+xml",
            headers={**SECURITY_HEADERS, "Cache-Control": "private, max-age=86400"},
        )


def parse_day(text: str, default: date) -> date:
    """A ``YYYY-MM-DD`` query parameter; ``default`` when it is absent or empty."""
    if not text.strip():
        return default
    return datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=UTC).date()


def outcome_columns(outcomes: dict[int, dict[str, int]]) -> list[str]:
    """The table's columns: delivered, refused, each failure reason seen, refunded, and
    canceled or in progress when there are any."""
    seen = {name for counts in outcomes.values() for name in counts}
    failed = sorted(name for name in seen if name.startswith("failed: "))
    rare = [name for name in ("canceled", "in progress") if name in seen]
    return ["delivered", "refused", *failed, "refunded", *rare]


def allowance_reason(base: Any, user: UserRef, found: dict[str, Any]) -> str:
    """Why the user's allowance is what it is: which override (of those that apply
    wherever the user asks: on the user, on the workspace) wins, or the operator's
    limits. Channel and role overrides depend on where the user asks."""
    limits = effective_policy(base, user, found)
    own = found.get(f"user:{user}")
    if own is not None and own.allowance is not None:
        return f"override on user:{user} ({limits.allowance} {limits.period})"
    workspace = f"workspace:{user.platform}:{user.workspace}"
    ws = found.get(workspace)
    if ws is not None and ws.allowance is not None and limits != base:
        return f"override on {workspace} ({limits.allowance} {limits.period})"
    return f"the operator's limits ({limits.allowance} {limits.period}: credits.allowance)"


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A text cell a spreadsheet will not run as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_row(row: Sequence[Any]) -> list[Any]:
    """One CSV line of an entry (the columns of ``queries.LEDGER_EXPORT``)."""
    entry_id, created_at, user, kind, amount, job_id, actor, note = row
    return [
        entry_id,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created_at)),
        _cell(user),
        _cell(user.split(":", 1)[0]),
        kind,
        amount,
        job_id or "",
        _cell(actor),
        _cell(note),
    ]


class DashboardServer(LocalServer):
    """Listens on ``dashboard.host``/``port``; started and stopped with the core."""

    label = "dashboard"

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        service: KontextService,
        provider: Provider | None,
    ) -> None:
        if not password:
            raise ValueError("dashboard.password is required")  # config refuses it first
        super().__init__(host, port)
        self.dashboard = Dashboard(service, provider)
        self._password = password

    def application(self) -> web.Application:
        return self.dashboard.application(self._password)
