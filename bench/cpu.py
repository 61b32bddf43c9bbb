# Waiting on another process (its files, its database) has no event to await: poll.
# ruff: noqa: ASYNC110, ASYNC240
"""CPU per job on the Slack HTTP path (issue 17), with what each job costs in database
statements, Slack Web API calls and provider requests; ``run`` prints the core and
Discord paths beside it (``bench.cpu_paths``) and ``bench.cpu_levers`` measures uvloop and
orjson on all three.

The bot runs as it is deployed: its own ``kontext-bot run`` process (``bench.cpu_child``,
which adds the statement counter) in Slack HTTP mode, webhooks on, against the loopback
fakes in this process. Each job is a signed ``app_mention`` event carrying a ~1 MB noisy
PNG as Slack sends it (the file object with its ``url_private_download``, so the bot has
no need of files.info); the fake provider works a log-normal time (median 0.6 s), calls
the webhook, and serves a real-sized result: a 1024x1024 noisy PNG of about 1.2 MB, as
Kontext returns. The load generator keeps ``concurrent`` jobs in flight until ``jobs``
are done; a job is done when the bot has stored it as succeeded.

Figure: the bot process's user+system CPU (``/proc/<pid>/stat``: every thread) over the
measured window, divided by the jobs in it. Startup and a few warm-up jobs are outside
the window. Reference: a fixed pure-Python loop (``reference_loop``) timed in this process
before and after, in the same run; ratio = CPU per job / reference. The load generator's
and fakes' CPU over the window is printed too (they share the machine's two cores).

``python -m bench.cpu --profile sqlite`` runs the same flow with yappi on inside the bot
process over the measured window, and prints CPU by stage and the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    SizedCoreToday,
    bot_environment,
    cpu_figures,
    db_url_for,
    event_body,
    free_port,
    own_cpu,
    postgres,
    process_cpu,
    result_png,
    spawn,
    stop_process,
    wait_for_port,
)
from bench.pipeline import noisy_png
from tests.fakes.provider import Script
from tests.fakes.slack import FakeSlack, signed_json_headers

PROVIDER_MEDIAN = 0.6
SIGMA = 0.5
REFERENCE_ITERATIONS = 800_000


def reference_loop() -> float:
    """Seconds of this process's CPU for fixed pure-Python work (integer arithmetic, a
    dict and a list), about 0.1 s on the 2-core VM this was written on."""
    started = time.process_time()
    table: dict[int, int] = {}
    items: list[int] = []
    total = 0
    for i in range(REFERENCE_ITERATIONS):
        total += (i * i) % 7
        if i % 3 == 0:
            table[i % 1024] = total
        if i % 5 == 0:
            items.append(total & 0xFF)
    if total < 0 or not table or not items:
        raise AssertionError
    return time.process_time() - started


def reference_seconds(runs: int = 5) -> float:
    return statistics.median(reference_loop() for _ in range(runs))


class _Bot:
    """The bot process and the ways to read it."""

    def __init__(self, process: asyncio.subprocess.Process, stats_file: Path, db: str) -> None:
        self.process = process
        self.stats_file = stats_file
        self.db = db

    @property
    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    async def statements(self) -> Counter[str]:
        """The statement counts now (the child writes them on SIGUSR1)."""
        before = self.stats_file.stat().st_mtime_ns if self.stats_file.exists() else 0
        self.process.send_signal(signal.SIGUSR1)
        async with asyncio.timeout(30):
            while not self.stats_file.exists() or self.stats_file.stat().st_mtime_ns == before:
                await asyncio.sleep(0.02)
        return Counter(json.loads(self.stats_file.read_text()))

    async def finished(self) -> int:
        query = "SELECT count(*) FROM jobs WHERE state IN ('succeeded', 'failed', 'canceled')"
        if self.db.startswith("sqlite"):
            path = self.db.split(":///", 1)[1]
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
                return int(conn.execute(query).fetchone()[0])
        import asyncpg

        conn = await asyncpg.connect(self.db.replace("postgresql+asyncpg", "postgresql"))
        try:
            return int(await conn.fetchval(query))
        finally:
            await conn.close()


class _Load:
    """Keeps ``concurrent`` jobs in flight: a slot sends the next event when its last
    job's result is uploaded."""

    def __init__(self, port: int, slack: FakeSlack, image: bytes) -> None:
        self.port = port
        self.slack = slack
        self.image = image
        self.next = 0
        self.done: dict[str, asyncio.Event] = {}
        self.failed: list[str] = []
        self._calls = 0

    async def watch(self) -> None:
        while True:
            # A failed job tells its user so in an ephemeral message in the thread
            # (acknowledgements are ephemeral too, but refund nothing).
            calls = self.slack.calls[self._calls :]
            self._calls += len(calls)
            for call in calls:
                text = str(call.args.get("text"))
                if call.method == "chat.postEphemeral" and "refunded" in text:
                    ts = str(call.args.get("thread_ts"))
                    self.failed.append(f"{ts}: {text}")
                    if ts in self.done:
                        self.done[ts].set()
            for upload in list(self.slack.uploads.values()):
                if upload.completed_at is not None and upload.data:
                    upload.data = b""  # the fake's copy is not the bot's memory
                    event = self.done.get(str(upload.thread_ts))
                    if event is not None:
                        event.set()
            await asyncio.sleep(0.01)

    async def run(self, jobs: int, concurrent: int) -> None:
        import httpx

        end = self.next + jobs
        limits = httpx.Limits(max_connections=concurrent + 10)
        base = f"http://127.0.0.1:{self.port}"
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as http:

            async def slot() -> None:
                while self.next < end:
                    i = self.next
                    self.next += 1
                    ts = f"1790000000.{i:06d}"
                    self.done[ts] = asyncio.Event()
                    file = self.slack.add_file(f"in{i}.png", self.image)
                    body = event_body(i, file, f"edit {i}")
                    headers = signed_json_headers(body)
                    answer = await http.post("/slack/events", content=body, headers=headers)
                    answer.raise_for_status()
                    await self.done[ts].wait()

            await asyncio.gather(*(slot() for _ in range(concurrent)))


async def measure(
    db_url: str | None,
    jobs: int,
    concurrent: int,
    warmup: int,
    profile: Path | None = None,
    root: str = ROOT,
    **extra: str,
) -> dict[str, Any]:
    """One run: start the bot (its code from ``root``), warm it up, measure ``jobs`` at
    ``concurrent``; ``extra`` adds to the bot's environment (the levers' switches)."""
    image = noisy_png(600)
    output = result_png()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        rng = random.Random(jobs)
        script = Script(
            duration=lambda: PROVIDER_MEDIAN * math.exp(rng.gauss(0.0, SIGMA)),
            keep_inputs=False,
        )
        async with SizedCoreToday(output, script) as fake, FakeSlack() as slack:
            http_port, webhook_port = free_port(), free_port()
            db = db_url or f"sqlite:///{tmp / 'bench.db'}"
            env = bot_environment(
                storage_url=db,
                data_dir=tmp / "data",
                provider_url=fake.base_url,
                webhook_port=webhook_port,
                slack_api_url=slack.api_url,
                http_port=http_port,
                max_concurrent=max(8, concurrent),
                root=root,
                KONTEXT_LOG__LEVEL="info",  # as in production: logging is part of the cost
                BENCH_STATS_FILE=str(tmp / "stats.json"),
                **extra,
            )
            if profile is not None:
                env["BENCH_PROFILE"] = str(profile)
            log = (tmp / "bot.log").open("wb")
            process = await spawn(["-m", "bench.cpu_child", "run"], env, tmp, log)
            bot = _Bot(process, tmp / "stats.json", db)
            watcher: asyncio.Task[None] | None = None
            try:
                await wait_for_port(http_port, 120, process)
                load = _Load(http_port, slack, image)
                watcher = asyncio.create_task(load.watch())
                await load.run(warmup, min(warmup, concurrent))
                await _settle(bot, warmup)
                calls_before = len(slack.calls)
                received_before = len(fake.received)
                files_before = len(slack.file_requests)
                statements_before = await bot.statements()
                facts_before = json.loads((tmp / "stats.facts.json").read_text())
                if profile is not None:
                    process.send_signal(signal.SIGUSR2)
                cpu_before, own_before = bot.cpu, own_cpu()
                started = time.monotonic()
                await load.run(jobs, concurrent)
                await _settle(bot, warmup + jobs)
                wall = time.monotonic() - started
                cpu = bot.cpu - cpu_before
                harness = own_cpu() - own_before
                if profile is not None:
                    mtime = profile.stat().st_mtime_ns if profile.exists() else 0
                    process.send_signal(signal.SIGUSR2)
                    async with asyncio.timeout(300):
                        while not profile.exists() or profile.stat().st_mtime_ns == mtime:
                            await asyncio.sleep(0.1)
                statements = await bot.statements() - statements_before
                facts = window_facts(facts_before, tmp / "stats.facts.json", jobs)
                calls = Counter(c.method for c in slack.calls[calls_before:])
                provider = Counter(
                    _provider_kind(r.method, r.path) for r in fake.received[received_before:]
                )
                downloads = len(slack.file_requests) - files_before
                if load.failed:
                    raise RuntimeError(f"{len(load.failed)} jobs failed, e.g. {load.failed[0]}")
            finally:
                if watcher is not None:
                    watcher.cancel()
                await stop_process(process)
                log.close()
    figures = cpu_figures(
        "slack",
        jobs,
        concurrent,
        wall,
        cpu,
        harness,
        statements,
        calls + Counter({"file download (input)": downloads}),
        provider,
        facts,
        image,
        output,
        database="postgresql" if db_url else "sqlite",
    )
    return {
        **figures,
        "slack_calls_per_job": round(sum(calls.values()) / jobs, 2),
        "slack_calls_by_method_per_job": {k: round(v / jobs, 2) for k, v in sorted(calls.items())},
        "slack_file_downloads_per_job": round(downloads / jobs, 2),
    }


def window_facts(before: dict[str, Any], after_file: Path, jobs: int) -> dict[str, Any]:
    """The levers' facts at the window's end (bench.cpu_child), JSON calls per job in it."""
    after = json.loads(after_file.read_text())
    calls = Counter(after.pop("json_calls"))
    calls.subtract(before["json_calls"])
    after["json_calls_per_job"] = {k: round(v / jobs, 1) for k, v in sorted(calls.items())}
    return after


def _provider_kind(method: str, path: str) -> str:
    if path.startswith("/files/"):
        return "result download"
    if method == "POST":
        return "create"
    return "status" if method == "GET" else f"{method} {path}"


async def _settle(bot: _Bot, expected: int) -> None:
    """Until the bot has stored ``expected`` jobs as finished (the last step of a job)."""
    async with asyncio.timeout(600):
        while await bot.finished() < expected:
            await asyncio.sleep(0.05)


async def _fresh_pg(cluster_url: str) -> str:
    url = await db_url_for(cluster_url)
    assert url is not None
    return url


# What the measured process runs on unless a lever is measured: asyncio's loop and the
# standard library's json (an installed orjson blocked: it is no dependency of the bot,
# and discord.py would pick it up on its own).
BASELINE = {"BENCH_JSON": "stdlib"}


def measure_path(
    path: str, db_url: str | None, jobs: int, concurrent: int, warmup: int, **extra: str
) -> dict[str, Any]:
    """One run of one path: ``core``, ``slack`` or ``discord`` (core and Discord on
    SQLite; see bench.cpu_paths)."""
    from bench import cpu_paths

    env = {**BASELINE, **extra}
    if path == "slack":
        return asyncio.run(measure(db_url, jobs, concurrent, warmup, **env))
    if db_url is not None:
        raise ValueError(f"the {path} path is measured on SQLite only")
    if path == "core":
        return asyncio.run(cpu_paths.measure_core(jobs, concurrent, warmup, **env))
    if path == "discord":
        return asyncio.run(cpu_paths.measure_discord(jobs, concurrent, warmup, **env))
    raise ValueError(path)


def run(quick: bool) -> dict[str, Any]:
    jobs, concurrent, warmup = (60, 20, 5) if quick else (200, 50, 10)
    cases: list[tuple[str, str | None]] = [("core", None), ("slack", None), ("discord", None)]
    if not quick:
        cases.append(("slack", "postgresql"))
    print(
        f"cpu: core, Slack HTTP and Discord paths, bot in its own process, {jobs} jobs at "
        f"{concurrent} concurrent after {warmup} warm-up; ~1 MB PNG in, ~1.2 MB 1024x1024 "
        "PNG out; webhooks on; logs at info"
    )
    reference_before = reference_seconds()
    results: dict[str, Any] = {"runs": []}
    cluster = None
    try:
        for path, case in cases:
            db_url = None
            if case == "postgresql":
                cluster, cluster_url = postgres()
                if cluster_url is None:
                    continue
                db_url = asyncio.run(_fresh_pg(cluster_url))
            results["runs"].append(measure_path(path, db_url, jobs, concurrent, warmup))
    finally:
        if cluster is not None:
            cluster.stop()
    reference_after = reference_seconds()
    reference = statistics.median([reference_before, reference_after])
    results["reference_ms"] = round(reference * 1000, 1)
    results["reference_ms_before_after"] = [
        round(reference_before * 1000, 1),
        round(reference_after * 1000, 1),
    ]
    print(
        f"  reference loop: {reference * 1000:.1f} ms of CPU "
        f"(before {reference_before * 1000:.1f}, after {reference_after * 1000:.1f})"
    )
    print(
        f"  {'path':<9}{'database':<11}{'jobs/s':>7}{'bot CPU/job':>13}{'x ref':>7}{'cores':>7}"
        f"{'harness/job':>13}{'stmts':>7}{'reads':>7}{'writes':>7}{'txns':>6}"
        f"{'platform calls':>16}{'provider req':>14}"
    )
    for row in results["runs"]:
        row["ratio_to_reference"] = round(row["bot_cpu_ms_per_job"] / (reference * 1000), 3)
        print(
            f"  {row['path']:<9}{row['database']:<11}{row['jobs_per_second']:>7.1f}"
            f"{row['bot_cpu_ms_per_job']:>11.1f}ms{row['ratio_to_reference']:>7.2f}"
            f"{row['bot_cores']:>7.2f}{row['harness_cpu_ms_per_job']:>11.1f}ms"
            f"{row['statements_per_job']:>7.1f}{row['reads_per_job']:>7.1f}"
            f"{row['writes_per_job']:>7.1f}{row['transactions_per_job']:>6.1f}"
            f"{row['platform_calls_per_job']:>16.2f}{row['provider_requests_per_job']:>14.2f}"
        )
    for row in results["runs"]:
        print(f"    {row['path']} ({row['database']}) per job:")
        print(f"      statements: {row['statements_by_kind_per_job']}")
        print(f"      platform: {row['platform_calls_by_kind_per_job']}")
        print(f"      provider: {row['provider_requests_by_kind_per_job']}")
    return results


def compare(other: str, rounds: int) -> dict[str, Any]:
    """A/B in one run: the quick case on the code in ``other`` (a checkout, e.g. from
    ``git archive <commit> | tar -x -C DIR``) and on this tree, alternated ``rounds``
    times (A B B A ...) so that the machine's load drifts over both alike."""
    jobs, concurrent, warmup = 60, 20, 5
    trees = {"A (" + other + ")": str(Path(other).resolve()), "B (this tree)": ROOT}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    reference = [reference_seconds()]
    for i in range(rounds):
        order = list(trees.items()) if i % 2 == 0 else list(trees.items())[::-1]
        for name, root in order:
            row = asyncio.run(measure(None, jobs, concurrent, warmup, root=root, **BASELINE))
            rows[name].append(row)
            print(
                f"  {name}: {row['bot_cpu_ms_per_job']:.1f} ms/job, "
                f"{row['statements_per_job']:.1f} statements ({row['reads_per_job']:.1f} reads, "
                f"{row['writes_per_job']:.1f} writes, {row['transactions_per_job']:.1f} txns), "
                f"provider {row['provider_requests_by_kind_per_job']}",
                flush=True,
            )
    reference.append(reference_seconds())
    ref_ms = statistics.median(reference) * 1000
    summary: dict[str, Any] = {"reference_ms": round(ref_ms, 1), "runs": rows}
    print(f"  reference loop: {ref_ms:.1f} ms")
    for name, runs in rows.items():
        cpu = statistics.median(r["bot_cpu_ms_per_job"] for r in runs)
        summary[name] = {"median_cpu_ms_per_job": cpu, "ratio_to_reference": cpu / ref_ms}
        print(
            f"  {name}: median {cpu:.1f} ms/job ({cpu / ref_ms:.2f} x ref) over "
            + ", ".join(f"{r['bot_cpu_ms_per_job']:.1f}" for r in runs)
        )
    return summary


# -- profile ----------------------------------------------------------------------------

# Stages, by the module a function's own time is spent in. A module in AMBIGUOUS (the
# event loop, aiohttp's client and server, json, C built-ins...) is not a stage of its
# own: its time goes to its callers, split by the time each call edge took, up to the
# first module that names a stage (the gprof assumption: a shared function costs every
# caller alike per unit of its time).
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("logging", ("structlog", "logging", "bot/server/logs.py")),
    (
        "image work",
        ("PIL", "bot/images", "hashlib", "zlib", "bot/jobs/pipeline.py:_write_atomically"),
    ),
    (
        "database",
        (
            "sqlalchemy",
            "aiosqlite",
            "sqlite3",
            "asyncpg",
            "greenlet",
            "bot/storage",
            "bot/jobs/queue.py",
            "bot/jobstore.py",
            "bot/jobs/reservations.py",
            "bot/credits/ledger.py",
            "alembic",
        ),
    ),
    ("Slack Web API calls", ("slack_sdk", "adapters/slack/reply.py")),
    (
        "event handling (bolt, HTTP server)",
        (
            "slack_bolt",
            "aiohttp/web_",
            "aiohttp/http_parser",
            "adapters/slack/listeners.py",
            "adapters/slack/adapter.py",
            "bot/chat/conversation.py",
            "bot/jobs/service.py",
            "bot/chat/commands.py",
        ),
    ),
    (
        "file download and provider calls (httpx)",
        (
            "httpx",
            "httpcore",
            "h11",
            "anyio",
            "bot/providers",
            "bot/server/webhooks.py",
            "files.py",
            "bot/http_transport.py",
            "bot/jobs/downloads.py",
        ),
    ),
]
AMBIGUOUS = (
    "asyncio",
    "aiohttp",
    "json",
    "<built-in>",
    "builtins",
    "threading",
    "concurrent",
    "selectors",
    "socket",
    "ssl",
    "contextlib",
    "functools",
    "typing",
    "enum",
    "dataclasses",
    "re/",
    "copy",
    "abc",
    "weakref",
    "collections",
    "multidict",
    "yarl",
    "urllib",
    "queue",
)


def _stage_of(row: dict[str, Any]) -> str | None:
    key = f"{row['module']}:{row['name'].rsplit('.', 1)[-1]}"
    name = row["name"]
    for stage, markers in STAGES:
        for marker in markers:
            if marker in key or (row["builtin"] and marker in name):
                return stage
    text = key if not row["builtin"] else name
    if row["builtin"] or any(f"/{m}" in text or text.startswith(m) for m in AMBIGUOUS):
        return None
    if "/bot/" in key or "/adapters/" in key:
        return "other (bot's own code)"
    return None


def summarise_profile(rows: list[dict[str, Any]], top: int = 15) -> dict[str, Any]:
    by_index = {row["index"]: row for row in rows}
    callers: dict[int, list[tuple[int, float]]] = {}
    for row in rows:
        for child, ttot, _ncall in row["children"]:
            callers.setdefault(child, []).append((row["index"], ttot))
    stages: Counter[str] = Counter()

    def give(index: int, amount: float, depth: int, seen: frozenset[int]) -> None:
        row = by_index[index]
        stage = _stage_of(row)
        if stage is not None:
            stages[stage] += amount
            return
        parents = [(p, t) for p, t in callers.get(index, []) if p not in seen and t > 0]
        total = sum(t for _, t in parents)
        if depth > 40 or total <= 0:
            name = row["name"] + " " + row["module"]
            stages[
                "event loop and other"
                if "asyncio" in name or "selectors" in name or "threading" in name
                else "other"
            ] += amount
            return
        for parent, ttot in parents:
            give(parent, amount * ttot / total, depth + 1, seen | {index})

    for row in rows:
        if row["tsub"] > 0:
            give(row["index"], row["tsub"], 0, frozenset())
    total = sum(stages.values())
    own = sorted(rows, key=lambda r: r["tsub"], reverse=True)[:top]
    return {
        "cpu_seconds": round(total, 3),
        "stages": {k: round(v, 3) for k, v in stages.most_common()},
        "top_own_time": [
            {
                "function": r["name"],
                "module": r["module"].split("site-packages/")[-1].replace(ROOT + "/", ""),
                "calls": r["ncall"],
                "own_seconds": round(r["tsub"], 3),
            }
            for r in own
        ],
    }


def profile(database: str, jobs: int, concurrent: int) -> dict[str, Any]:
    cluster = None
    try:
        db_url = None
        if database == "postgresql":
            cluster, cluster_url = postgres()
            if cluster_url is None:
                raise SystemExit(1)
            db_url = asyncio.run(_fresh_pg(cluster_url))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "profile.json"
            figures = asyncio.run(measure(db_url, jobs, concurrent, 10, profile=path))
            rows = json.loads(path.read_text())
    finally:
        if cluster is not None:
            cluster.stop()
    raw = Path(__file__).resolve().parent / "results" / f"cpu-profile-{database}-raw.json"
    raw.parent.mkdir(exist_ok=True)
    raw.write_text(json.dumps(rows))  # for a closer look: callers, children
    summary = summarise_profile(rows)
    total = summary["cpu_seconds"]
    print(
        f"profile ({database}, {jobs} jobs at {concurrent}, yappi CPU clock, all threads): "
        f"{total:.2f} s profiled, {total * 1000 / jobs:.1f} ms per job (profiler on: "
        f"{figures['bot_cpu_ms_per_job']} ms per job by /proc)"
    )
    for stage, seconds in summary["stages"].items():
        print(f"  {stage:<44}{seconds * 1000 / jobs:>8.1f} ms/job {seconds / total:>7.1%}")
    print("  top functions by own time:")
    for item in summary["top_own_time"]:
        print(
            f"  {item['own_seconds'] * 1000 / jobs:>7.2f} ms/job {item['calls'] / jobs:>8.1f}"
            f" calls/job  {item['function']}  ({item['module']})"
        )
    return {"figures": figures, **summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__)
    parser.add_argument("--profile", choices=["sqlite", "postgresql"])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--against", metavar="DIR", help="A/B: the quick case on DIR's code and this tree's"
    )
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if args.against:
        compare(args.against, args.rounds)
        return 0
    if args.profile:
        result = profile(args.profile, args.jobs, args.concurrent)
        out = Path(__file__).resolve().parent / "results" / f"cpu-profile-{args.profile}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"-> {out}")
        return 0
    print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
