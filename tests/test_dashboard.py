"""The operator's dashboard over plain HTTP (httpx): the password, each page's figures
against the seeded ledger, the job filters, the CSV export, escaping of what users wrote,
and the server's life with the core. Runs on SQLite and PostgreSQL (the queries speak
each dialect). The browser's view is tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import base64
import csv
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.app import Core, build_core
from bot.config import load_settings
from bot.errors import ConfigError
from tests.fakes.bfl import DEFAULT_KEY as BFL_KEY
from tests.fakes.bfl import FakeBfl
from tests.support import (
    DASHBOARD_USERS,
    HOSTILE_PROMPT,
    FakeClock,
    SeededLedger,
    make_settings,
    seed_dashboard,
    serving,
)

PASSWORD = "correct horse battery staple"
NOW = 1_764_000_000.0  # 2025-11-24 16:00 UTC
PAGES = ["/", "/jobs", "/users/slack:T1:UALICE", "/ledger.csv", "/static/dashboard.css"]


@pytest.fixture
async def bfl() -> AsyncIterator[FakeBfl]:
    async with FakeBfl() as server:
        yield server


@pytest.fixture
async def seeded(db_url: str) -> SeededLedger:
    from bot.storage import open_database

    database = await open_database(db_url)  # migrate first, as the bot would
    await database.dispose()
    return await seed_dashboard(db_url, NOW)


@pytest.fixture
async def core(
    tmp_path: Path, db_url: str, seeded: SeededLedger, bfl: FakeBfl
) -> AsyncIterator[Core]:
    settings = make_settings(
        tmp_path,
        bfl.base_url,
        storage={"url": db_url},
        provider={"name": "bfl", "api_key": BFL_KEY, "model": "flux-kontext-pro"},
        credits={"budget": 20_000, "period": "monthly"},
        dashboard={"enabled": True, "port": 0, "password": PASSWORD},
    )
    built = await build_core(settings, clock=FakeClock(NOW))
    await built.start()
    yield built
    await built.close()


@pytest.fixture
async def client(core: Core) -> AsyncIterator[httpx.AsyncClient]:
    assert core.dashboard is not None
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{core.dashboard.port}", auth=("admin", PASSWORD)
    ) as http:
        yield http


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_nothing_is_served_without_the_password(client: httpx.AsyncClient) -> None:
    wrong = [
        {},
        {"Authorization": basic("admin", "wrong")},
        {"Authorization": basic("root", PASSWORD)},
        {"Authorization": basic("admin", PASSWORD + "x")},
        {"Authorization": basic("admin", "")},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer " + PASSWORD},
    ]
    async with httpx.AsyncClient(base_url=str(client.base_url)) as anonymous:
        for path in [*PAGES, "/nothing/here", "/static/", "/users/", "/ledger.csv?from=x"]:
            for headers in wrong:
                answer = await anonymous.get(path, headers=headers)
                assert answer.status_code == 401, (path, headers)
                assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")
                assert answer.content == b"", (path, answer.text)
        # Another method does not get past it either.
        assert (await anonymous.post("/", content=b"x")).status_code == 401
    for path in PAGES:
        assert (await client.get(path)).status_code == 200, path


async def test_errors_carry_no_data_and_there_are_no_listings(client: httpx.AsyncClient) -> None:
    for path in ["/static/", "/static", "/nothing", "/users/slack:T1:UNOBODY", "/users/not-a-ref"]:
        answer = await client.get(path)
        assert answer.status_code == 404, path
        assert answer.text == "Not found."
    answer = await client.get("/ledger.csv?from=<script>&to=2025-11-01")
    assert answer.status_code == 400
    assert "<script>" not in answer.text and "YYYY-MM-DD" in answer.text
    assert (await client.post("/")).status_code == 405


async def test_overview_chart_budget_top_spenders_and_provider_balance(
    client: httpx.AsyncClient, seeded: SeededLedger, bfl: FakeBfl
) -> None:
    answer = await client.get("/")
    assert answer.status_code == 200
    page = answer.text
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'none'")
    # One mark per day with spend, each with the ledger's total and its platform parts.
    bars = re.findall(r'<g class="day" data-day="([\d-]+)" data-total="(-?\d+)">', page)
    assert dict((day, int(total)) for day, total in bars) == seeded.spend_per_day()
    assert len(bars) == len(seeded.spend_per_day()) >= 15
    # The budget: this month's spend (the ledger's sum) against the limit.
    month_start = 1_761_955_200.0  # 2025-11-01 00:00 UTC
    used = -sum(
        e["amount"]
        for e in seeded.entries
        if e["kind"] in ("reserve", "refund") and e["created_at"] >= month_start
    )
    assert f"<strong>{used:,}</strong> of 20,000 credits used" in page
    # Top spenders, most first, each linked to their page.
    spent: dict[str, int] = {}
    for e in seeded.entries:
        if e["kind"] in ("reserve", "refund") and e["created_at"] >= month_start:
            spent[e["user_ref"]] = spent.get(e["user_ref"], 0) - e["amount"]
    order = re.findall(r'<tr><td><a href="/users/([^"]+)">', page.split('id="top"')[1])
    expected = sorted((u for u in spent if spent[u] > 0), key=lambda u: (-spent[u], u))
    assert [o.replace("%3A", ":") for o in order] == expected
    # The provider's own balance (BFL's GET /v1/credits), and every page linked.
    assert "account balance 1,234.50 credits" in page
    for link in ['href="/jobs"', 'href="/ledger.csv', 'href="/users/']:
        assert link in page
    # Outcomes per day: delivered, refused (moderation), failed by reason, refunded.
    table = page.split('id="outcome-table"')[1]
    for column in ["delivered", "refused", "failed: provider_unavailable", "refunded"]:
        assert f">{column}</th>" in table


async def test_provider_balance_failure_does_not_break_the_page(
    client: httpx.AsyncClient, bfl: FakeBfl
) -> None:
    await bfl.stop()
    answer = await client.get("/")
    assert answer.status_code == 200
    assert "account balance unavailable (" in answer.text


async def test_jobs_filters_and_failure_reasons(
    client: httpx.AsyncClient, seeded: SeededLedger
) -> None:
    def shown(page: str) -> set[str]:
        return set(re.findall(r'data-job="([0-9a-f]{32})"', page))

    everything = shown((await client.get("/jobs")).text)
    assert everything == {j["id"] for j in seeded.jobs}
    failed = await client.get("/jobs", params={"state": "failed"})
    assert shown(failed.text) == {j["id"] for j in seeded.jobs if j["state"] == "failed"}
    assert "(moderation: &lt;moderation&gt; said no)" in failed.text
    assert "(provider_unavailable: &lt;provider_unavailable&gt; said no)" in failed.text
    discord = await client.get("/jobs", params={"platform": "discord"})
    assert shown(discord.text) == {j["id"] for j in seeded.jobs if j["platform"] == "discord"}
    # A job shows the model its user chose by name, else the provider's model id.
    assert "<td>max</td>" in discord.text and "flux-kontext-pro" not in discord.text
    slack = (await client.get("/jobs", params={"platform": "slack"})).text
    assert "<td>black-forest-labs/flux-kontext-pro</td>" in slack and "<td>max</td>" not in slack
    both = await client.get("/jobs", params={"user": "slack:T1:UALICE", "state": "succeeded"})
    assert shown(both.text) == {
        j["id"]
        for j in seeded.jobs
        if j["user_ref"] == "slack:T1:UALICE" and j["state"] == "succeeded"
    }
    assert shown((await client.get("/jobs", params={"user": "<x>"})).text) == set()


async def test_what_users_wrote_is_escaped(client: httpx.AsyncClient) -> None:
    for path in ["/jobs", "/users/slack:T1:UALICE", "/jobs?user=%3Cscript%3Ealert(1)%3C/script%3E"]:
        page = (await client.get(path)).text
        assert "<script" not in page, path
        assert "<b>bold</b>" not in page and "<i>opening</i>" not in page
    # A filter's value is echoed into an attribute: it cannot close the attribute.
    echoed = (await client.get("/jobs", params={"user": '" autofocus onfocus="alert(1)'})).text
    assert 'onfocus="alert(1)' not in echoed and "&#34; autofocus onfocus=&#34;" in echoed
    jobs = (await client.get("/jobs")).text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in jobs
    user = (await client.get("/users/console:local:carol")).text
    assert "&lt;i&gt;opening&lt;/i&gt; grant" in user
    assert HOSTILE_PROMPT not in user


async def test_user_page(client: httpx.AsyncClient, seeded: SeededLedger) -> None:
    alice = "slack:T1:UALICE"
    page = (await client.get(f"/users/{alice}")).text
    own = [e for e in seeded.entries if e["user_ref"] == alice]
    # Today's allowance (1200, daily) is granted by looking, as `credits show` does.
    balance = sum(e["amount"] for e in own) + 1200
    assert f'<dd id="balance">{balance} credits</dd>' in page
    assert "the operator&#39;s limits (1200 monthly" in page
    shown_ids = re.findall(r'<tr data-id="(\d+)">', page)
    assert len(shown_ids) == len(own) + 1
    jobs = {j["id"] for j in seeded.jobs if j["user_ref"] == alice}
    assert set(re.findall(r'data-job="([0-9a-f]{32})"', page)) == jobs


async def test_ledger_csv(client: httpx.AsyncClient, seeded: SeededLedger) -> None:
    answer = await client.get("/ledger.csv", params={"from": "2025-11-10", "to": "2025-11-20"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "kontext-ledger-2025-11-10-2025-11-20.csv" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    start, end = 1_762_732_800.0, 1_763_683_200.0  # 2025-11-10 and 2025-11-21 00:00 UTC
    expected = sorted(
        (e for e in seeded.entries if start <= e["created_at"] < end),
        key=lambda e: (e["created_at"], e["id"]),
    )
    assert [int(r["id"]) for r in rows] == [e["id"] for e in expected]
    assert sum(int(r["amount"]) for r in rows) == sum(e["amount"] for e in expected)
    assert {r["platform"] for r in rows} <= {u.split(":")[0] for u in DASHBOARD_USERS}
    assert all(r["time_utc"].startswith("2025-11-") for r in rows)
    # Everything, resumed across batches, in time order, and nothing twice.
    whole = await client.get("/ledger.csv", params={"from": "2025-01-01", "to": "2025-12-31"})
    ids = [int(r["id"]) for r in csv.DictReader(io.StringIO(whole.text))]
    assert sorted(ids) == sorted(e["id"] for e in seeded.entries) and len(set(ids)) == len(ids)
    assert (
        await client.get("/ledger.csv", params={"from": "2025-11-20", "to": "2025-11-10"})
    ).status_code == 400


def test_csv_cells_are_not_formulas() -> None:
    from bot.dashboard.app import csv_row

    row = csv_row((1, NOW, "slack:T1:U1", "adjust", -5, None, "=HYPERLINK(1)", "+1 -2 @x"))
    assert row[1] == "2025-11-24T16:00:00Z" and row[5] == -5 and row[6] == ""
    assert row[7] == "'=HYPERLINK(1)" and row[8] == "'+1 -2 @x"


async def test_started_and_stopped_with_the_core(core: Core) -> None:
    assert core.dashboard is not None
    port = core.dashboard.port
    async with httpx.AsyncClient() as http:
        assert (
            await http.get(f"http://127.0.0.1:{port}/", auth=("admin", PASSWORD))
        ).status_code == 200
        await core.close()
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")


def test_enabled_without_a_password_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[dashboard]\nenabled = true\n")
    for name in list(__import__("os").environ):
        if name.startswith("KONTEXT_"):
            monkeypatch.delenv(name)
    with pytest.raises(
        ConfigError, match=r"dashboard\.password is required.*KONTEXT_DASHBOARD__PASSWORD"
    ):
        load_settings(config)
    monkeypatch.setenv("KONTEXT_DASHBOARD__PASSWORD", "s3cret")
    settings = load_settings(config)
    assert settings.dashboard.password.get_secret_value() == "s3cret"
    assert settings.dashboard.port == 8090 and settings.dashboard.host == "127.0.0.1"


def test_run_refuses_an_enabled_dashboard_without_a_password(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.support import HANG_GUARD_SECONDS, ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
    env.update(
        KONTEXT_STORAGE__URL=f"sqlite:///{tmp_path / 'kontext.db'}",
        KONTEXT_DASHBOARD__ENABLED="true",
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
    )
    assert done.returncode == 2
    assert "dashboard.password is required" in done.stderr
    assert "KONTEXT_DASHBOARD__PASSWORD" in done.stderr


async def test_a_crash_answers_500_without_its_details(core: Core) -> None:
    from aiohttp import web

    from bot.dashboard.app import Dashboard

    async def boom(_request: web.Request) -> web.Response:
        raise RuntimeError("secret detail of the failure")

    app = Dashboard(core.service, None).application(PASSWORD)
    app.router.add_get("/boom", boom)
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        answer = await http.get("/boom", auth=("admin", PASSWORD))
        assert answer.status_code == 500
        assert answer.text == "Internal error; see the bot's log."
        assert (await http.get("/boom")).status_code == 401


async def test_a_result_held_back_by_a_rate_limit_shows_as_waiting(
    core: Core, client: httpx.AsyncClient, seeded: SeededLedger
) -> None:
    from bot.storage.schema import jobs

    row = {**seeded.jobs[0], "id": "f" * 32, "idempotency_key": "seed:waiting"}
    row.update(state="delivering", finished_at=None, error_kind=None, error_message=None)
    async with core.db.transaction() as conn:
        await conn.execute(jobs.insert().values(**row))
    job = await core.store.get("f" * 32)
    assert job is not None
    await core.store.mark_waiting(job, "slack")
    page = (await client.get("/jobs", params={"state": "delivering"})).text
    assert 'delivering <span class="waiting">(done; waiting for Slack to accept the post)' in page
    await core.store.mark_waiting(job, None)  # posted after all: the note goes
    assert "waiting for Slack" not in (await client.get("/jobs")).text
