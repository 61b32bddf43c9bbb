"""``kontext-bot run`` with the CPU benchmark's counters, as a process of its own.

``python -m bench.cpu_child run`` is ``bot.cli.main(["run"])`` (the same settings from
the environment, the same code path) plus:

- a count of database statements: SQLAlchemy's ``before_cursor_execute`` event on every
  engine, by the statement's first word, and its ``commit`` event (transactions);
- on SIGUSR1 those counts are written (JSON) to ``$BENCH_STATS_FILE``, so the benchmark
  reads them at the start and end of its measured window, startup excluded;
- with ``$BENCH_PROFILE`` set to a path, SIGUSR2 starts yappi (CPU clock, every thread)
  and the next SIGUSR2 stops it and writes the function table with its call graph there.

The counters cost a Python call per statement (about a microsecond); the profiler, when
on, slows the process several times, so a profiled run's CPU is not a measurement.

``python -m bench.cpu_child core`` is the core path instead (what ``kontext-bot console``
does, many times over): see ``run_core``.

Levers (``bench.cpu_levers``), chosen by the environment before anything is imported:

- ``BENCH_LOOP=uvloop``: the event loop is uvloop's (its policy set before
  ``asyncio.run``); anything else, asyncio's own;
- ``BENCH_JSON=stdlib``: ``import orjson`` fails in this process (discord.py would
  otherwise use it on its own when installed); ``BENCH_JSON=orjson``: every call of the
  standard library's ``json.dumps`` and ``json.loads`` made without options goes to orjson
  (the most orjson could save here: nothing in the bot is rewritten for it), and
  discord.py finds it as it would when installed.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

JSON_CALLS: Counter[str] = Counter()


def _use_orjson() -> None:
    import orjson

    stdlib_dumps: Callable[..., str] = json.dumps
    stdlib_loads: Callable[..., Any] = json.loads

    def dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
        if not args and not kwargs:
            try:
                text = orjson.dumps(obj).decode()
            except TypeError:  # what orjson refuses (e.g. int dict keys): as before
                JSON_CALLS["dumps stdlib"] += 1
                return stdlib_dumps(obj)
            JSON_CALLS["dumps orjson"] += 1
            return text
        JSON_CALLS["dumps stdlib"] += 1
        return stdlib_dumps(obj, *args, **kwargs)

    def loads(text: Any, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs:
            JSON_CALLS["loads orjson"] += 1
            return orjson.loads(text)
        JSON_CALLS["loads stdlib"] += 1
        return stdlib_loads(text, *args, **kwargs)

    json.dumps = dumps
    json.loads = loads


if os.environ.get("BENCH_JSON") == "stdlib":
    sys.modules["orjson"] = None  # type: ignore[assignment]  # import orjson -> ImportError
elif os.environ.get("BENCH_JSON") == "orjson":
    _use_orjson()

import asyncio  # noqa: E402 - after the JSON choice, so every module sees it
import signal  # noqa: E402
from pathlib import Path  # noqa: E402
from types import FrameType  # noqa: E402

from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

COUNTS: Counter[str] = Counter()


def _before_cursor_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    words = statement.split(None, 1)
    COUNTS[words[0].upper() if words else "?"] += 1
    if executemany:
        COUNTS["executemany"] += 1


def _commit(conn: Any) -> None:
    COUNTS["commit"] += 1


def _write_json(path: Path, data: Any) -> None:
    part = path.with_suffix(path.suffix + ".part")
    part.write_text(json.dumps(data))
    os.replace(part, path)


def _lever_facts() -> dict[str, Any]:
    """What this process really ran on, for the benchmark to check."""
    loop = asyncio.get_running_loop() if asyncio._get_running_loop() else None
    try:
        import discord.utils

        discord_orjson = bool(discord.utils.HAS_ORJSON)
    except ImportError:
        discord_orjson = False
    return {
        "loop": f"{type(loop).__module__}.{type(loop).__name__}" if loop else None,
        "json_calls": dict(JSON_CALLS),
        "discord_orjson": discord_orjson,
    }


def _dump_counts(signum: int, frame: FrameType | None) -> None:
    path = Path(os.environ["BENCH_STATS_FILE"])
    _write_json(path.with_suffix(".facts.json"), _lever_facts())
    _write_json(path, dict(COUNTS))


_profiling = False


def _toggle_profile(signum: int, frame: FrameType | None) -> None:
    global _profiling
    import yappi

    if not _profiling:
        yappi.set_clock_type("cpu")
        yappi.clear_stats()
        yappi.start(builtins=True, profile_threads=True)
        _profiling = True
        return
    yappi.stop()
    _profiling = False
    stats = yappi.get_func_stats()
    rows = []
    for stat in stats:
        rows.append(
            {
                "index": stat.index,
                "name": stat.full_name,
                "module": stat.module,
                "builtin": bool(stat.builtin),
                "ncall": stat.ncall,
                "tsub": stat.tsub,
                "ttot": stat.ttot,
                "children": [[child.index, child.ttot, child.ncall] for child in stat.children],
            }
        )
    _write_json(Path(os.environ["BENCH_PROFILE"]), rows)


def _choose_loop() -> None:
    if os.environ.get("BENCH_LOOP") == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def run_core() -> int:
    """The core path: ``concurrent`` console requests in flight, each what ``kontext-bot
    console --image IN PROMPT`` does (the console's own attachment and reply: the input
    read from a file, the result written to one), against the provider in the settings.

    The load is generated here, in the bot's process, because the console front end is
    in-process: reading the request, ``Conversation.read``, ``service.submit`` and
    waiting for the job is that front end's work. The figures (this process's CPU from
    ``getrusage``: every thread, and the statement counts) cover ``BENCH_JOBS`` jobs after
    ``BENCH_WARMUP`` warm-up jobs, and go to ``$BENCH_RESULT_FILE`` as JSON.
    """
    import resource
    import time

    from adapters.console.frontend import PLATFORM, ConsoleFrontend
    from adapters.console.main import describe_image
    from bot.app import build_core
    from bot.chat.conversation import Conversation, Said
    from bot.chat.texts import Style
    from bot.config import load_settings, secret_values
    from bot.domain import EditRequest, JobState, UserRef
    from bot.server.logs import configure_logging

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    image = Path(os.environ["BENCH_INPUT"])
    out_dir = Path(os.environ["BENCH_OUT_DIR"])
    jobs, warmup = int(os.environ["BENCH_JOBS"]), int(os.environ["BENCH_WARMUP"])
    concurrent = int(os.environ["BENCH_CONCURRENT"])
    settings = load_settings()
    # Logged as ``kontext-bot`` logs (stderr, the configured format and level).
    configure_logging(
        fmt=settings.log.format, level=settings.log.level, secrets=secret_values(settings)
    )
    # Progress lines to stderr (the log file here), as the console's are.
    frontend = ConsoleFrontend()
    core = await build_core(settings, {PLATFORM: frontend})
    assert core.runner is not None
    runner = core.runner
    await core.start()
    conversation = Conversation(core.service, Style())
    failed: list[str] = []
    counter = iter(range(10**9))

    async def one(slot: int) -> None:
        i = next(counter)
        source = await asyncio.to_thread(describe_image, image)
        assert source is not None
        user = UserRef(PLATFORM, "local", f"u{i % 500:05d}")
        command = await conversation.read(user, f"edit {i}", files=[source])
        assert not isinstance(command, Said), command
        attachments = tuple(frontend.attachment_for(s) for s in command.inputs)
        ack = await core.service.submit(
            EditRequest(
                user=user,
                prompt=command.prompt,
                options=command.options,
                attachments=attachments,
                reply_target={"out": str(out_dir / f"slot{slot}.png")},
                idempotency_key=f"console:bench{i}",
            )
        )
        assert ack.job is not None
        job = await runner.wait_for(ack.job.id)
        if job.state != JobState.SUCCEEDED:
            failed.append(f"{job.id}: {job.state} {job.error_kind}")

    async def load(count: int, slots: int) -> None:
        remaining = [count]

        async def slot(n: int) -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                await one(n)

        await asyncio.gather(*(slot(n) for n in range(slots)))

    try:
        await load(warmup, min(warmup, concurrent))
        statements_before = Counter(COUNTS)
        json_before = Counter(JSON_CALLS)
        # For the benchmark's side of the window (the fake provider's counts).
        Path(os.environ["BENCH_RESULT_FILE"] + ".window").touch()  # noqa: ASYNC240
        cpu_before, started = cpu(), time.monotonic()
        await load(jobs, concurrent)
        wall, used = time.monotonic() - started, cpu() - cpu_before
        statements = Counter(COUNTS)
        statements.subtract(statements_before)
        json_calls = Counter(JSON_CALLS)
        json_calls.subtract(json_before)
        result = {
            "wall": wall,
            "cpu": used,
            "statements": dict(+statements),
            "failed": failed,
            **_lever_facts(),
            "json_calls": dict(json_calls),
        }
    finally:
        await core.close()
    _write_json(Path(os.environ["BENCH_RESULT_FILE"]), result)
    return 0


def main() -> int:
    event.listen(Engine, "before_cursor_execute", _before_cursor_execute)
    event.listen(Engine, "commit", _commit)
    _choose_loop()
    if sys.argv[1:2] == ["core"]:
        return asyncio.run(run_core())
    signal.signal(signal.SIGUSR1, _dump_counts)
    if os.environ.get("BENCH_PROFILE"):
        signal.signal(signal.SIGUSR2, _toggle_profile)
    from bot.cli import main as bot_main

    return bot_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
