# Waiting on another process (its files, its database) has no event to await: poll.
# ruff: noqa: ASYNC110, ASYNC240
"""CPU per job on the core path and the Discord path (issue 17), beside bench.cpu's Slack
HTTP path: the same input (~1 MB PNG), the same real-sized result (the ~1.2 MB
1024x1024 PNG of ``bench.common.result_png``), the same provider (the fake core.today
working a log-normal time, median 0.6 s, and calling the bot's webhook), logs at info.

- **core**: ``python -m bench.cpu_child core``, one process that builds the core as
  ``kontext-bot console`` does and keeps ``concurrent`` console requests in flight: each
  reads the input file, goes through ``Conversation.read`` and ``service.submit``, and
  waits for its job; the console's reply writes the result to a file. No platform: what
  every front end shares. Its CPU is the process's own (``getrusage``, every thread) over
  the window, which the process measures itself.
- **discord**: ``kontext-bot run`` (``bench.cpu_child run``) with Discord enabled against
  the project's fake Discord (tests/fakes/discord.py: gateway with zlib-stream, REST,
  CDN) in this process. Each job is a ``/kontext`` slash command with the input as its
  attachment option, sent over the gateway as Discord does; the bot defers, fetches the
  input from the fake CDN, edits its status message and posts the result through the
  interaction webhook. A job is done when the fake has received the file for its token.
  Its CPU: ``/proc/<pid>/stat`` over the window, as bench.cpu.

``measure_core`` and ``measure_discord`` return the same figures as ``bench.cpu.measure``
(CPU per job, statements per job, the platform's calls per job, provider requests per
job), so ``bench.cpu.run`` prints the three paths in one table.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
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
    free_port,
    own_cpu,
    result_png,
    spawn,
    stop_process,
)
from bench.pipeline import noisy_png
from tests.fakes.discord import BOT_TOKEN, FakeDiscord
from tests.fakes.provider import Script

PROVIDER_MEDIAN = 0.6
SIGMA = 0.5
USERS = 50
START_GUARD_SECONDS = 180
RUN_GUARD_SECONDS = 900


def _script(seed: int) -> Script:
    rng = random.Random(seed)
    return Script(
        duration=lambda: PROVIDER_MEDIAN * math.exp(rng.gauss(0.0, SIGMA)),
        keep_inputs=False,
    )


def _environment(tmp: Path, provider_url: str, concurrent: int, root: str, **extra: str) -> Any:
    """The bot's environment without Slack (bench.common's is Slack HTTP mode)."""
    env = bot_environment(
        storage_url=f"sqlite:///{tmp / 'bench.db'}",
        data_dir=tmp / "data",
        provider_url=provider_url,
        webhook_port=free_port(),
        slack_api_url="http://127.0.0.1:9/",
        http_port=0,
        max_concurrent=max(8, concurrent),
        root=root,
        KONTEXT_LOG__LEVEL="info",  # as in production: logging is part of the cost
        **extra,
    )
    return {k: v for k, v in env.items() if not k.startswith("KONTEXT_SLACK__")}


def _provider_kinds(received: list[Any]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for r in received:
        if r.path.startswith("/files/"):
            kinds["result download"] += 1
        elif r.method == "POST":
            kinds["create"] += 1
        else:
            kinds["status" if r.method == "GET" else f"{r.method} {r.path}"] += 1
    return kinds


# -- core ---------------------------------------------------------------------------------


async def measure_core(
    jobs: int, concurrent: int, warmup: int, root: str = ROOT, **extra: str
) -> dict[str, Any]:
    """The core path: console requests in the bot's own process (``extra``: lever
    environment, e.g. ``BENCH_LOOP``)."""
    image = noisy_png(600)
    output = result_png()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        (tmp / "out").mkdir()
        source = tmp / "in.png"
        source.write_bytes(image)
        result_file = tmp / "result.json"
        async with SizedCoreToday(output, _script(jobs)) as fake:
            env = _environment(
                tmp,
                fake.base_url,
                concurrent,
                root,
                BENCH_INPUT=str(source),
                BENCH_OUT_DIR=str(tmp / "out"),
                BENCH_JOBS=str(jobs),
                BENCH_WARMUP=str(warmup),
                BENCH_CONCURRENT=str(concurrent),
                BENCH_RESULT_FILE=str(result_file),
                **extra,
            )
            log = (tmp / "bot.log").open("wb")
            process = await spawn(["-m", "bench.cpu_child", "core"], env, tmp, log)
            try:
                # The process marks the start of its window (warm-up jobs all done).
                window = Path(f"{result_file}.window")
                async with asyncio.timeout(RUN_GUARD_SECONDS):
                    while not window.exists() and process.returncode is None:
                        await asyncio.sleep(0.01)
                    received_before = len(fake.received)
                    own_before = own_cpu()
                    await process.wait()
                harness = own_cpu() - own_before
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                log.close()
            if process.returncode != 0 or not result_file.exists():
                tail = (tmp / "bot.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"core path exited with {process.returncode}:\n{tail}")
            result = json.loads(result_file.read_text())
            provider = _provider_kinds(fake.received[received_before:])
    if result["failed"]:
        raise RuntimeError(f"{len(result['failed'])} jobs failed, e.g. {result['failed'][0]}")
    facts = {
        "loop": result["loop"],
        "discord_orjson": result["discord_orjson"],
        "json_calls_per_job": {
            k: round(v / jobs, 1) for k, v in sorted(result["json_calls"].items())
        },
    }
    return cpu_figures(
        "core",
        jobs,
        concurrent,
        result["wall"],
        result["cpu"],
        harness,
        Counter(result["statements"]),
        Counter({"result file written": jobs}),
        provider,
        facts,
        image,
        output,
    )


# -- Discord ------------------------------------------------------------------------------


def _route(method: str, path: str) -> str:
    """``PATCH /webhooks/{id}/{token}/messages/@original``: ids and tokens folded."""
    parts = [
        "{token}" if p.startswith("itoken-") else "{id}" if p.isdigit() else p
        for p in path.strip("/").split("/")
    ]
    return f"{method} /" + "/".join(parts)


class _DiscordLoad:
    """``concurrent`` slash commands in flight; a slot sends the next when the fake has
    received its result file."""

    def __init__(self, fake: FakeDiscord, attachment: dict[str, Any]) -> None:
        self.fake = fake
        self.attachment = attachment
        self.next = 0
        self.done: dict[str, asyncio.Event] = {}
        self.failed: list[str] = []
        self._seen = 0
        self.users = [str(5_000_000_000_000_000_000 + n) for n in range(USERS)]
        for n, user in enumerate(self.users):
            fake.add_user(user, f"user{n}")

    async def watch(self) -> None:
        token_in = re.compile(r"itoken-\d+")
        while True:
            calls = self.fake.calls[self._seen :]
            self._seen += len(calls)
            for call in calls:
                match = token_in.search(call.path)
                token = match.group(0) if match else None
                body = call.json if isinstance(call.json, dict) else {}
                content = str(body.get("content") or "")
                if call.code is not None and call.code == 10062:
                    self.failed.append(f"{call.path}: 10062 (answered after 3 s)")
                if token is None:
                    continue
                if content.startswith("❌"):
                    self.failed.append(f"{token}: {content}")
                    self.done.setdefault(token, asyncio.Event()).set()
                elif call.files and call.status < 300:
                    # The fake's copies are not the bot's memory: drop them.
                    call.files = {name: b"" for name in call.files}
                    for attachment_id in list(self.fake.files):
                        if attachment_id != self.attachment["id"]:
                            del self.fake.files[attachment_id]
                    self.done.setdefault(token, asyncio.Event()).set()
            await asyncio.sleep(0.01)

    async def run(self, jobs: int, concurrent: int) -> None:
        end = self.next + jobs

        async def slot() -> None:
            while self.next < end:
                i = self.next
                self.next += 1
                asked = await self.fake.slash_command(
                    "kontext",
                    {"prompt": f"edit {i}"},
                    user_id=self.users[i % USERS],
                    attachment=self.attachment,
                )
                event = self.done.setdefault(asked.token, asyncio.Event())
                await event.wait()

        await asyncio.gather(*(slot() for _ in range(concurrent)))


async def measure_discord(
    jobs: int, concurrent: int, warmup: int, root: str = ROOT, **extra: str
) -> dict[str, Any]:
    """The Discord path: ``kontext-bot run`` against the fake Discord."""
    from bench.cpu import _Bot, _settle, window_facts  # shared with the Slack path

    image = noisy_png(600)
    output = result_png()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        async with SizedCoreToday(output, _script(jobs)) as fake, FakeDiscord() as discord:
            env = _environment(
                tmp,
                fake.base_url,
                concurrent,
                root,
                KONTEXT_DISCORD__ENABLED="true",
                KONTEXT_DISCORD__TOKEN=BOT_TOKEN,
                KONTEXT_DISCORD__API_BASE_URL=discord.api_url,
                BENCH_STATS_FILE=str(tmp / "stats.json"),
                **extra,
            )
            log = (tmp / "bot.log").open("wb")
            process = await spawn(["-m", "bench.cpu_child", "run"], env, tmp, log)
            bot = _Bot(process, tmp / "stats.json", env["KONTEXT_STORAGE__URL"])
            watcher: asyncio.Task[None] | None = None
            try:
                async with asyncio.timeout(START_GUARD_SECONDS):
                    while not discord.ready_shards() or "global" not in discord.commands:
                        if process.returncode is not None:
                            raise RuntimeError(f"the bot exited: see {tmp / 'bot.log'}")
                        await asyncio.sleep(0.05)
                attachment = discord.upload(image, "in.png", "image/png")
                load = _DiscordLoad(discord, attachment)
                watcher = asyncio.create_task(load.watch())
                async with asyncio.timeout(RUN_GUARD_SECONDS):
                    await load.run(warmup, min(warmup, concurrent))
                await _settle(bot, warmup)
                calls_before = len(discord.calls)
                cdn_before = len(discord.cdn_requests)
                received_before = len(fake.received)
                statements_before = await bot.statements()
                facts_before = json.loads((tmp / "stats.facts.json").read_text())
                cpu_before, own_before = bot.cpu, own_cpu()
                started = time.monotonic()
                async with asyncio.timeout(RUN_GUARD_SECONDS):
                    await load.run(jobs, concurrent)
                await _settle(bot, warmup + jobs)
                wall = time.monotonic() - started
                cpu = bot.cpu - cpu_before
                harness = own_cpu() - own_before
                statements = await bot.statements() - statements_before
                facts = window_facts(facts_before, tmp / "stats.facts.json", jobs)
                calls = Counter(_route(c.method, c.path) for c in discord.calls[calls_before:])
                calls["CDN download (input)"] = len(discord.cdn_requests) - cdn_before
                provider = _provider_kinds(fake.received[received_before:])
                if load.failed:
                    raise RuntimeError(f"{len(load.failed)} jobs failed, e.g. {load.failed[0]}")
            finally:
                if watcher is not None:
                    watcher.cancel()
                await stop_process(process)
                log.close()
    return cpu_figures(
        "discord",
        jobs,
        concurrent,
        wall,
        cpu,
        harness,
        statements,
        calls,
        provider,
        facts,
        image,
        output,
    )
