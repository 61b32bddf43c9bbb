"""What the benchmarks that run ``kontext-bot run`` in Slack HTTP mode share: ports,
the bot's environment, the events they send, the result image the fake provider serves,
and reading CPU time, written once so the figures of bench.cpu, bench.scale and
bench.overhead come from the same setup.

bench imports the fakes (tests/fakes), never test modules or tests/support.py: a test's
helpers may change with the test, and a benchmark must not change with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import resource
import signal
import socket
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from PIL import Image

from tests.fakes.coretoday import DEFAULT_KEY, FakeCoreToday
from tests.fakes.provider import Script
from tests.fakes.slack import BOT_USER_ID, event_callback, http_mode_environment

ROOT = str(Path(__file__).resolve().parent.parent)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_port(
    port: int, seconds: float, process: asyncio.subprocess.Process | None = None
) -> None:
    """Until something listens on ``port`` (a port opening has no event to await); an
    error at once if ``process`` exits meanwhile."""
    async with asyncio.timeout(seconds):
        while True:
            if process is not None and process.returncode is not None:
                raise RuntimeError(f"the bot exited with {process.returncode} at startup")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return


async def spawn(
    args: list[str], env: dict[str, str], cwd: Path, output: int | IO[bytes]
) -> asyncio.subprocess.Process:
    """``python args...``, its stdout and stderr both to ``output``."""
    return await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, cwd=cwd, stdout=output, stderr=output
    )


async def stop_process(process: asyncio.subprocess.Process, grace: float = 60.0) -> None:
    """Stop a bot as an operator would (SIGTERM, its graceful shutdown), and kill it if
    it has not ended within ``grace`` seconds."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
    if process.returncode is None:
        process.kill()
        await process.wait()


def bot_environment(
    *,
    storage_url: str,
    data_dir: Path,
    provider_url: str,
    webhook_port: int,
    slack_api_url: str,
    http_port: int,
    max_concurrent: int,
    root: str = ROOT,
    **extra: str,
) -> dict[str, str]:
    """The environment of a ``kontext-bot run`` in Slack HTTP mode against the fakes,
    webhooks on, no credit limit in the way; ``extra`` adds or overrides settings."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")},
        "KONTEXT_STORAGE__URL": storage_url,
        "KONTEXT_STORAGE__DATA_DIR": str(data_dir),
        "KONTEXT_PROVIDER__BASE_URL": provider_url,
        "KONTEXT_PROVIDER__API_KEY": DEFAULT_KEY,
        "KONTEXT_PROVIDER__WEBHOOK_BASE_URL": f"http://127.0.0.1:{webhook_port}",
        "KONTEXT_PROVIDER__WEBHOOK_HOST": "127.0.0.1",
        "KONTEXT_PROVIDER__WEBHOOK_PORT": str(webhook_port),
        "KONTEXT_CREDITS__ALLOWANCE": "10000000",
        "KONTEXT_JOBS__MAX_CONCURRENT": str(max_concurrent),
        "KONTEXT_JOBS__PER_USER_CONCURRENT": "100",
        "KONTEXT_JOBS__TIMEOUT_SECONDS": "3600",
        **http_mode_environment(slack_api_url, http_port),
        "PYTHONPATH": root,
        **extra,
    }


def event_body(i: int, file: dict[str, Any], prompt: str) -> str:
    """Event ``i``: an ``app_mention`` with one file, in a thread of its own (ts
    ``1790000000.<i>``), from one of 500 users."""
    event = {
        "type": "app_mention",
        "user": f"U{i % 500:05d}",
        "text": f"<@{BOT_USER_ID}> {prompt}",
        "ts": f"1790000000.{i:06d}",
        "channel": "C0BENCH",
        "files": [file],
    }
    return json.dumps(event_callback(event, f"Ev{i:08d}"))


def postgres() -> tuple[Any, str | None]:
    """A throwaway PostgreSQL cluster and its admin URL, or (None, None) when none can
    start here (the PostgreSQL figures are then not measured)."""
    from tests.pg import ClusterUnavailable, start_cluster

    try:
        cluster = start_cluster()
    except ClusterUnavailable as exc:
        print(f"  PostgreSQL NOT MEASURED: {exc}")
        return None, None
    return cluster, cluster.url("postgres")


async def db_url_for(cluster_url: str | None) -> str | None:
    """A fresh database on the cluster (one per run), or None for SQLite."""
    if cluster_url is None:
        return None
    import asyncpg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(cluster_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return cluster_url.rsplit("/", 1)[0] + f"/{name}"


def result_png(size: int = 1024) -> bytes:
    """About 1.2 MB: noise of 2 bits per channel compresses to about what a photo-like
    1024x1024 Kontext result does."""
    rng = random.Random(11)
    levels = bytes(60 + 40 * (b & 3) for b in range(256))
    raw = rng.randbytes(size * size * 3).translate(levels)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (size, size), raw).save(buffer, format="PNG")
    return buffer.getvalue()


class SizedCoreToday(FakeCoreToday):
    """The fake core.today serving one fixed real-sized result for every prediction (made
    once, so the fake spends no Pillow time per job)."""

    def __init__(self, output: bytes, script: Script) -> None:
        super().__init__(script=script)
        self.output = output

    async def serve_output(self, request: web.Request) -> web.Response:
        self.record(request)
        if request.match_info["id"] not in self.predictions:
            return web.Response(status=404)
        return web.Response(body=self.output, content_type="image/png")


def process_cpu(pid: int) -> float:
    """User+system seconds of a process, all its threads (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """User+system seconds of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_figures(
    path: str,
    jobs: int,
    concurrent: int,
    wall: float,
    cpu: float,
    harness: float,
    statements: Counter[str],
    calls: Counter[str],
    provider: Counter[str],
    facts: dict[str, Any],
    image: bytes,
    output: bytes,
    database: str = "sqlite",
) -> dict[str, Any]:
    """One CPU benchmark's figures per job, under the same names for every path
    (bench.cpu's Slack path, bench.cpu_paths' core and Discord paths)."""
    return {
        "path": path,
        "database": database,
        "jobs": jobs,
        "concurrent": concurrent,
        "input_mb": round(len(image) / 1e6, 3),
        "output_mb": round(len(output) / 1e6, 3),
        "wall_seconds": round(wall, 2),
        "jobs_per_second": round(jobs / wall, 2),
        "bot_cpu_seconds": round(cpu, 2),
        "bot_cpu_ms_per_job": round(cpu * 1000 / jobs, 1),
        "bot_cores": round(cpu / wall, 2),
        "harness_cpu_ms_per_job": round(harness * 1000 / jobs, 1),
        "harness_cores": round(harness / wall, 2),
        "statements_per_job": round(sum(v for k, v in statements.items() if k.isupper()) / jobs, 2),
        "reads_per_job": round(statements["SELECT"] / jobs, 2),
        "writes_per_job": round(
            sum(statements[k] for k in ("INSERT", "UPDATE", "DELETE")) / jobs, 2
        ),
        "transactions_per_job": round(statements["commit"] / jobs, 2),
        "statements_by_kind_per_job": {
            k: round(v / jobs, 2) for k, v in sorted(statements.items()) if v
        },
        "platform_calls_per_job": round(sum(calls.values()) / jobs, 2),
        "platform_calls_by_kind_per_job": {k: round(v / jobs, 2) for k, v in sorted(calls.items())},
        "provider_requests_per_job": round(sum(provider.values()) / jobs, 2),
        "provider_requests_by_kind_per_job": {
            k: round(v / jobs, 2) for k, v in sorted(provider.items())
        },
        "facts": facts,
    }
