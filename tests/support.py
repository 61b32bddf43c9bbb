"""Helpers more than one test module needs, in one place.

Test modules import helpers from here, never from each other, so that moving or deleting a
test never breaks another one, and so each helper is written once. Fixtures stay in
conftest.py; what a single module needs stays in that module. bench/ does not import this.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from PIL import Image

from adapters.console.main import console_user
from bot.app import Core, build_core
from bot.config import Settings
from bot.domain import EditOptions, EditRequest, Job, UserRef
from bot.storage import open_database
from tests.fakes.coretoday import DEFAULT_KEY, FakeCoreToday
from tests.recording import RecordingFrontend

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter
    from bot.jobs.service import KontextService
    from tests.pg import Cluster

ROOT = Path(__file__).resolve().parent.parent


# Images


def png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> bytes:
    """A small solid-colour PNG: a valid upload that costs nothing to make."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def cat_png(path: Path) -> Path:
    """Write a PNG to ``path`` for the CLI's ``--image``."""
    path.write_bytes(png((180, 90, 30), (96, 64)))
    return path


# Settings, clock, database


class FakeClock:
    """Wall time the tests move by hand (allowance periods, lease expiry)."""

    def __init__(self, start: float = 1_764_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_settings(
    tmp_path: Path, base_url: str = "http://127.0.0.1:9", **sections: dict
) -> Settings:  # type: ignore[type-arg]
    """Settings for a test: its own database and data dir, the fake provider's URL."""
    data: dict[str, dict[str, object]] = {
        "storage": {
            "url": f"sqlite:///{tmp_path / 'kontext.db'}",
            "data_dir": str(tmp_path / "data"),
        },
        "provider": {"base_url": base_url, "api_key": "cdt_test_key_0123456789abcdef"},
        "jobs": {"poll_initial_seconds": 0.05, "poll_max_seconds": 0.2, "timeout_seconds": 20},
    }
    for name, values in sections.items():
        if isinstance(values, list):  # [[models]]: a list of tables
            data[name] = values  # type: ignore[assignment]
        else:
            data.setdefault(name, {}).update(values)
    return Settings.model_validate(data)


# The same two models as a config file's text, for the CLI.
TWO_MODELS_TOML = """
[[models]]
name = "pro"
model = "black-forest-labs/flux-kontext-pro"
cost_per_image = 120
default = true

[[models]]
name = "max"
model = "black-forest-labs/flux-kontext-max"
cost_per_image = 240
"""


# Named models ([[models]]): pro the default, max at twice the price.
TWO_MODELS: list[dict[str, object]] = [
    {
        "name": "pro",
        "model": "black-forest-labs/flux-kontext-pro",
        "cost_per_image": 120,
        "default": True,
    },
    {"name": "max", "model": "black-forest-labs/flux-kontext-max", "cost_per_image": 240},
]


def slack_socket_settings(
    tmp_path: Path, base_url: str, slack_api_url: str, admin: str, **sections: Any
) -> Settings:
    """The bot on the fake Slack in Socket Mode, with fast polls and ``admin`` as the
    bot's admin; ``sections`` are added (``credits`` merged with the admin)."""
    from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, TEAM_ID

    return make_settings(
        tmp_path,
        base_url,
        slack={
            "enabled": True,
            "mode": "socket",
            "bot_token": BOT_TOKEN,
            "app_token": APP_TOKEN,
            "api_base_url": slack_api_url,
            "file_hosts": ["127.0.0.1"],
        },
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
        credits={"admins": [f"slack:{TEAM_ID}:{admin}"], **sections.pop("credits", {})},
        **sections,
    )


async def fresh_database(cluster: Cluster) -> str:
    """A new, empty PostgreSQL database in the session's cluster; its URL."""
    import asyncpg

    name = f"kontext_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(cluster.url("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return cluster.url(name)


async def migrated_database(pg_cluster: Cluster | str) -> str:
    """A fresh PostgreSQL database, migrated once before the processes that share it
    start (so none of them migrates it); skips the test if the cluster could not start."""
    if isinstance(pg_cluster, str):
        pytest.skip(f"PostgreSQL could not be started: {pg_cluster}")
    url = await fresh_database(pg_cluster)
    database = await open_database(url)
    await database.dispose()
    return url


# The CLI as a subprocess


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def environment(tmp_path: Path, fake: FakeCoreToday, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
    # The console answers in the terminal's language (bot.i18n): English here unless a
    # test asks for another, whatever the machine running the tests speaks.
    for name in ("LC_ALL", "LC_MESSAGES", "LANGUAGE"):
        env.pop(name, None)
    env["LANG"] = "C.UTF-8"
    env.update(
        KONTEXT_PROVIDER__BASE_URL=fake.base_url,
        KONTEXT_PROVIDER__API_KEY=DEFAULT_KEY,
        KONTEXT_STORAGE__URL=f"sqlite:///{tmp_path / 'kontext.db'}",
        KONTEXT_STORAGE__DATA_DIR=str(tmp_path / "data"),
        KONTEXT_JOBS__POLL_INITIAL_SECONDS="0.05",
        KONTEXT_JOBS__POLL_MAX_SECONDS="0.1",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


async def start(args: list[str], env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run(args: list[str], env: dict[str, str], cwd: Path) -> Result:
    process = await start(args, env, cwd)
    out, err = await asyncio.wait_for(process.communicate(), timeout=HANG_GUARD_SECONDS)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def balance(tmp_path: Path, fake: FakeCoreToday, env: dict[str, str] | None = None) -> int:
    shown = await run(
        ["credits", "show", str(console_user())], env or environment(tmp_path, fake), tmp_path
    )
    assert shown.code == 0, shown.stderr
    first = shown.stdout.splitlines()[0]
    return int(first.split(": ")[1].split()[0])


async def kill_mid_job(tmp_path: Path, fake: FakeCoreToday, env: dict[str, str], out: Path) -> None:
    """Start an edit the provider never finishes and kill the console hard mid-job."""
    fake.script.outcome = "never"
    image = cat_png(tmp_path / "cat.png")
    process = await start(
        ["console", "--image", str(image), "--out", str(out), "make it a watercolor"], env, tmp_path
    )
    # A status poll means the prediction id is stored: kill the process hard then.
    async with asyncio.timeout(30):
        while fake.polls == 0:
            await asyncio.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    assert len(fake.creates) == 1
    assert await balance(tmp_path, fake, env) == 1080  # reserved, neither charged nor refunded
    # The provider finishes the orphaned prediction meanwhile.
    for prediction in fake.predictions.values():
        prediction.outcome = "succeeded"
    fake.script.outcome = "succeeded"


async def ledger_kinds(env: dict[str, str]) -> list[str]:
    from bot.app import build_core

    settings = Settings.model_validate({"storage": {"url": env["KONTEXT_STORAGE__URL"]}})
    core = await build_core(settings, with_runner=False)
    try:
        return sorted(e.kind.value for e in await core.service.history(console_user(), 50))
    finally:
        await core.close()


# A deadline in a test guards against a hang; it is never the thing being measured, so it
# is generous enough for a machine busy with other work (CI on a shared machine).
HANG_GUARD_SECONDS = 120.0


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """An aiohttp app on 127.0.0.1, port 0, for the length of the block: its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


class LoopClock:
    """The running event loop's clock, moved forward by hand.

    ``asyncio.timeout``, ``asyncio.sleep``, ``call_later`` and the HTTP clients' timeouts
    all schedule on ``loop.time()``: after ``advance(s)`` every timer due within ``s``
    fires at the loop's next turn, as if that much time had passed. A test of a timeout
    thus sets a generous one, waits (on events) until the work is where the timeout must
    find it, and then moves the clock past it, instead of racing a short timeout against
    the work on a machine of unknown speed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.offset = 0.0
        loop.time = self._time  # type: ignore[method-assign]

    def _time(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


# A core on a primary fake provider with fallbacks, driven as the front ends do


async def core_with_fallbacks(
    tmp_path: Path,
    primary_url: str,
    primary_key: str,
    fallbacks: list[dict[str, object]],
    frontend: RecordingFrontend,
    models: list[dict[str, object]] | None = None,
) -> Any:
    """A started core: core.today at ``primary_url`` first, then ``fallbacks``; quick
    polls and retries so a failover happens in test time. Close it with ``close()``."""
    sections: dict[str, Any] = {
        "provider": {
            "name": "coretoday",
            "api_key": primary_key,
            "max_retries": 1,
            "fallbacks": fallbacks,
        },
        "jobs": {"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
    }
    if models is not None:
        sections["models"] = models
    settings = make_settings(tmp_path, primary_url, **sections)
    core = await build_core(settings, {"slack": frontend})
    for provider in [core.provider, *core.fallbacks]:
        provider.wait_initial = 0.01
    core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1, hold_seconds=0.05))
    await core.start()
    return core


async def edit_and_wait(
    core: Any, frontend: RecordingFrontend, user: UserRef, key: str, model: str | None = None
) -> Job:
    """Submit one edit of a small PNG as a front end would, and wait for its end."""
    ack = await core.service.submit(
        EditRequest(
            user,
            "make it a watercolor",
            EditOptions(model=model),
            (frontend.attach(f"{key}.png", png()),),
            {"c": 1},
            key,
        )
    )
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        job: Job = await core.runner.wait_for(ack.job.id)
    return job


# The dashboard's data (tests/test_dashboard.py, tests/test_dashboard_browser.py)

DASHBOARD_USERS = ("slack:T1:UALICE", "discord:G1:BOB", "console:local:carol")
HOSTILE_PROMPT = '<script>alert("x")</script> & <b>bold</b> "quoted"'


@dataclass
class SeededLedger:
    """What ``seed_dashboard`` wrote, as the tests count it themselves."""

    now: float
    jobs: list[dict[str, Any]]
    entries: list[dict[str, Any]]

    def spend_per_day(self) -> dict[str, int]:
        """Credits spent per UTC day (reserved and not refunded), from the entries."""
        found: dict[str, int] = {}
        for entry in self.entries:
            if entry["kind"] in ("reserve", "refund"):
                day = time.strftime("%Y-%m-%d", time.gmtime(entry["created_at"]))
                found[day] = found.get(day, 0) - int(entry["amount"])
        return {day: spent for day, spent in found.items() if spent}


async def seed_dashboard(url: str, now: float, days: int = 28) -> SeededLedger:
    """Three users' jobs and ledger entries over the ``days`` UTC days up to ``now``
    (a few days without any), every outcome, and prompts and notes full of markup.

    Written through ``bot.credits.ledger`` and plain inserts into ``jobs``, all in the past and
    all finished (a bot started on this database has nothing to run).
    """
    import random

    from bot.credits import ledger
    from bot.credits.ledger import EntryKind
    from bot.domain import EditOptions, UserRef
    from bot.storage.schema import jobs
    from bot.storage.schema import ledger as ledger_table

    rng = random.Random(19)
    database = await open_database(url)
    written: list[dict[str, Any]] = []
    start_of_today = now - now % 86400
    try:
        async with database.transaction() as conn:
            first = start_of_today - (days - 1) * 86400
            for user in DASHBOARD_USERS:
                await ledger.append(
                    conn,
                    user,
                    EntryKind.GRANT,
                    100_000,
                    first + 60,
                    actor="cli",
                    note="<i>opening</i> grant",
                )
            for offset in range(days):
                if offset in (3, 10, 11):
                    continue  # days without any job: no mark on the chart
                midnight = start_of_today - (days - 1 - offset) * 86400
                for n in range(rng.randint(1, 4)):
                    user = rng.choice(DASHBOARD_USERS)
                    at = midnight + 3600 + n * 600 + rng.randint(0, 500)
                    if at >= now:
                        at = now - 1 - n
                    outcome = rng.choice(
                        [
                            "succeeded",
                            "succeeded",
                            "succeeded",
                            "moderation",
                            "provider_unavailable",
                            "canceled",
                        ]
                    )
                    job_id = uuid.uuid4().hex
                    state = outcome if outcome in ("succeeded", "canceled") else "failed"
                    error_kind = None if state != "failed" else outcome
                    row = {
                        "id": job_id,
                        "idempotency_key": f"seed:{job_id}",
                        "user_ref": user,
                        "platform": user.split(":")[0],
                        "state": state,
                        "prompt": HOSTILE_PROMPT if n == 0 else f"make it a watercolor {offset}",
                        "options": EditOptions(seed=1000 + offset).to_json(),
                        "attachments": [],
                        "reply_target": {},
                        "cost": 120,
                        "provider": "coretoday",
                        "model": "black-forest-labs/flux-kontext-pro",
                        # Discord's jobs chose a named model (``--model max``).
                        "model_name": "max" if user.startswith("discord:") else None,
                        "error_kind": error_kind,
                        "error_message": None if error_kind is None else f"<{error_kind}> said no",
                        "created_at": at,
                        "updated_at": at + 30,
                        "finished_at": at + 30,
                    }
                    await conn.execute(jobs.insert().values(**row))
                    written.append(row)
                    ref = UserRef.parse(user)
                    await ledger.reserve(conn, ref, job_id, 120, at)
                    if state == "succeeded":
                        await ledger.settle_charge(conn, ref, job_id, 120, at + 30)
                    else:
                        await ledger.refund(conn, ref, job_id, 120, at + 30, f"<{outcome}>")
        async with database.read() as conn:
            entries = [dict(r._mapping) for r in await conn.execute(ledger_table.select())]
    finally:
        await database.dispose()
    return SeededLedger(now, written, entries)


async def discord_core(settings: Settings) -> tuple[Core, DiscordAdapter]:
    """A core whose one front end is the Discord adapter (its guilds awaited for 0.1 s),
    built through ``build_core`` as ``run`` builds it; not started."""
    from adapters.discord.adapter import DiscordAdapter

    def discord_adapter(service: KontextService) -> list[DiscordAdapter]:
        return [
            DiscordAdapter(
                settings.discord,
                service,
                data_dir=settings.storage.data_dir,
                guild_ready_timeout=0.1,
            )
        ]

    core = await build_core(settings, discord_adapter)
    adapter = core.frontends["discord"]
    assert isinstance(adapter, DiscordAdapter)
    return core, adapter
