"""kontext-bot against what a user would run instead (issue 25, step 9).

The peer (``bench.peer_bot``) is a plain bolt bot in HTTP mode that downloads the file,
uploads it to core.today, polls every 0.5 s and posts the result with
``files_upload_v2``: no database, no ledger, no restart safety. kontext-bot runs as
``bench.cpu`` runs it (``kontext-bot run`` in Slack HTTP mode, SQLite, webhooks on, logs
at info). Both get the same load from this process against the same kind of fakes: a
signed ``app_mention`` with a ~1 MB PNG per job, a provider that works a log-normal time
(median 0.6 s) and returns a ~1.2 MB 1024x1024 PNG, ``concurrent`` jobs in flight.

Figure: each bot process's CPU (user+system, all threads) per image over the measured
window. The two alternate, A B A B (``ROUNDS`` pairs), in one run, so a machine that
gets busier affects both; the ratio is kontext-bot's median over the peer's median.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    SizedCoreToday,
    free_port,
    own_cpu,
    process_cpu,
    result_png,
    spawn,
    stop_process,
    wait_for_port,
)
from bench.cpu import PROVIDER_MEDIAN, SIGMA, _Load, measure_path
from bench.pipeline import noisy_png
from tests.fakes.provider import Script
from tests.fakes.slack import FakeSlack

ROUNDS = 2
RUN_DEADLINE = 900.0  # seconds: a hang guard for one run, never a figure


async def measure_peer(jobs: int, concurrent: int, warmup: int) -> dict[str, Any]:
    image = noisy_png(600)
    output = result_png()
    rng = random.Random(jobs)
    script = Script(
        duration=lambda: PROVIDER_MEDIAN * math.exp(rng.gauss(0.0, SIGMA)), keep_inputs=False
    )
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        async with SizedCoreToday(output, script) as fake, FakeSlack() as slack:
            port = free_port()
            env = {
                **os.environ,
                "PEER_SLACK_API": slack.api_url,
                "PEER_PROVIDER_URL": fake.base_url,
                "PEER_PORT": str(port),
                "PYTHONPATH": ROOT,
            }
            log = (tmp / "peer.log").open("wb")
            process = await spawn(["-m", "bench.peer_bot"], env, tmp, log)
            watcher: asyncio.Task[None] | None = None
            try:
                await wait_for_port(port, 120, process)
                load = _Load(port, slack, image)
                watcher = asyncio.create_task(load.watch())
                async with asyncio.timeout(RUN_DEADLINE):
                    await load.run(warmup, min(warmup, concurrent))
                    calls_before = len(slack.calls)
                    cpu_before, own_before = process_cpu(process.pid), own_cpu()
                    started = time.monotonic()
                    await load.run(jobs, concurrent)
                    wall = time.monotonic() - started
                    cpu = process_cpu(process.pid) - cpu_before
                    harness = own_cpu() - own_before
                calls = Counter(c.method for c in slack.calls[calls_before:])
            finally:
                if watcher is not None:
                    watcher.cancel()
                await stop_process(process)
                log.close()
    return {
        "path": "peer",
        "jobs": jobs,
        "jobs_per_second": round(jobs / wall, 2),
        "bot_cpu_ms_per_job": round(cpu * 1000 / jobs, 2),
        "harness_cpu_ms_per_job": round(harness * 1000 / jobs, 2),
        "slack_calls_per_job": round(sum(calls.values()) / jobs, 2),
        "slack_calls_by_method_per_job": {k: round(v / jobs, 2) for k, v in sorted(calls.items())},
    }


def run(quick: bool) -> dict[str, Any]:
    jobs, concurrent, warmup = (40, 10, 5) if quick else (200, 50, 10)
    print(
        f"peer: kontext-bot (SQLite, webhooks) and a plain bolt bot (no database, 0.5 s "
        f"polls), A B A B x{ROUNDS}, {jobs} jobs at {concurrent} concurrent after {warmup} "
        "warm-up; ~1 MB PNG in, ~1.2 MB PNG out"
    )
    rows: list[dict[str, Any]] = []
    for _ in range(ROUNDS):
        kontext = measure_path("slack", None, jobs, concurrent, warmup)
        kontext["path"] = "kontext-bot"
        rows.append(kontext)
        rows.append(asyncio.run(measure_peer(jobs, concurrent, warmup)))
    print(f"  {'bot':<13}{'CPU/image':>11}{'jobs/s':>8}{'Slack calls':>13}{'statements':>12}")
    for row in rows:
        print(
            f"  {row['path']:<13}{row['bot_cpu_ms_per_job']:>9.1f}ms"
            f"{row['jobs_per_second']:>8.1f}{row['slack_calls_per_job']:>13.2f}"
            f"{row.get('statements_per_job', 0.0):>12.1f}"
        )
    medians = {
        name: statistics.median(r["bot_cpu_ms_per_job"] for r in rows if r["path"] == name)
        for name in ("kontext-bot", "peer")
    }
    ratio = medians["kontext-bot"] / medians["peer"]
    print(
        f"  median CPU per image: kontext-bot {medians['kontext-bot']:.1f} ms, peer "
        f"{medians['peer']:.1f} ms: ratio {ratio:.2f} (goal <= 1.00: "
        f"{'met' if ratio <= 1.0 else 'MISSED'})"
    )
    for row in rows[:2]:
        print(f"    {row['path']} Slack calls per job: {row['slack_calls_by_method_per_job']}")
    return {"runs": rows, "median_cpu_ms": medians, "ratio": round(ratio, 3)}
