"""Throughput and memory of the real pipeline (service, store, runner, core.today client)
against the loopback fake core.today.

- throughput: jobs completed per second with an instant provider (the create answers a
  finished image), for several worker counts; the reference is the 1-worker figure of
  the same run. Every job fetches and validates a ~1 MB PNG, which is where the CPU goes.
- memory: peak RSS while 1,000 jobs wait at the provider, each with a ~1 MB input;
  the reference is the RSS of the same process before the jobs. Goal: under 200 MB,
  which holds only if inputs are not kept while jobs wait.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import random
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from bot.app import Core, build_core
from bot.config import Settings
from bot.domain import Attachment, AttachmentSource, EditOptions, EditRequest, UserRef
from tests.fakes.coretoday import DEFAULT_KEY, FakeCoreToday
from tests.recording import RecordingFrontend

MEMORY_RUN_SECONDS = 120.0


def noisy_png(size: int = 600) -> bytes:
    """About 1 MB: random pixels do not compress."""
    rng = random.Random(5)
    image = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class GeneratingFrontend(RecordingFrontend):
    """Makes each input when the runner fetches it, so the only copies alive are the
    ones the bot itself keeps (which is what the memory figure is about)."""

    image: bytes = b""

    def attachment_for(self, source: AttachmentSource) -> Attachment:
        async def fetch(max_bytes: int) -> bytes:
            return bytes(self.image)  # a fresh copy, as a download would be

        return Attachment(source=source, fetch=fetch)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def make_core(
    tmp: Path,
    fake: FakeCoreToday,
    frontend: RecordingFrontend,
    workers: int,
    poll: tuple[float, float] = (0.5, 1.0),
) -> Core:
    settings = Settings.model_validate(
        {
            "storage": {"url": f"sqlite:///{tmp / 'bench.db'}", "data_dir": str(tmp / "data")},
            "provider": {"base_url": fake.base_url, "api_key": DEFAULT_KEY},
            "credits": {"allowance": 10_000_000},
            "jobs": {
                "max_concurrent": workers,
                "per_user_concurrent": min(workers, 100),
                "poll_initial_seconds": poll[0],
                "poll_max_seconds": poll[1],
                "timeout_seconds": 3600,
            },
        }
    )
    core = await build_core(settings, {"slack": frontend})
    assert core.runner is not None
    core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.05))
    await core.start()
    return core


def request(frontend: RecordingFrontend, index: int, size: int) -> EditRequest:
    source = AttachmentSource(f"in{index}.png", "image/png", size, f"in{index}.png")
    return EditRequest(
        UserRef("slack", "T1", f"U{index % 50}"),
        "make it a watercolor",
        EditOptions(),
        (frontend.attachment_for(source),),
        {"c": 1},
        f"bench-{index}",
    )


async def throughput(jobs: int, workers: int, image: bytes) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeCoreToday() as fake:
            fake.script.shape = "sync"
            fake.script.output_size = (64, 64)
            frontend = GeneratingFrontend()
            frontend.image = image
            core = await make_core(Path(tmp), fake, frontend, workers)
            try:
                started = time.perf_counter()
                acks = [
                    await core.service.submit(request(frontend, i, len(image))) for i in range(jobs)
                ]
                async with asyncio.timeout(600):
                    for ack in acks:
                        await core.runner.wait_for(ack.job.id)  # type: ignore[union-attr]
                return jobs / (time.perf_counter() - started)
            finally:
                await core.close()


async def memory(jobs: int, image: bytes) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeCoreToday() as fake:
            fake.script.outcome = "never"  # every job waits at the provider
            fake.script.keep_inputs = False  # measure the bot, not the fake's records
            frontend = GeneratingFrontend()
            frontend.image = image
            # The bot's default polling (2 s, backing off to 5 s): what an operator runs.
            core = await make_core(Path(tmp), fake, frontend, jobs, poll=(2.0, 5.0))
            try:
                before = rss_mb()
                for i in range(jobs):
                    await core.service.submit(request(frontend, i, len(image)))
                peak = before
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(MEMORY_RUN_SECONDS):
                        while len(fake.creates) < jobs:
                            peak = max(peak, rss_mb())
                            await asyncio.sleep(0.05)
                except TimeoutError:
                    pass  # reported below: not every job reached the provider in time
                for _ in range(20):  # waiting state: every job polled at least once more
                    peak = max(peak, rss_mb())
                    await asyncio.sleep(0.05)
                return {
                    "rss_before_mb": round(before, 1),
                    "rss_peak_mb": round(peak, 1),
                    "growth_mb": round(peak - before, 1),
                    "reached_provider": len(fake.creates),
                    "seconds_to_reach": round(time.perf_counter() - started, 1),
                }
            finally:
                await core.close()


def _memory_now(jobs: int, image: bytes) -> dict[str, float]:
    return asyncio.run(memory(jobs, image))


def _in_fresh_process(jobs: int, image: bytes) -> dict[str, float]:
    """RSS is a high-water mark: measured in this process after the throughput runs it
    would include their garbage, so each memory case runs in a new interpreter."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_memory_now, jobs, image).result()


def run(quick: bool) -> dict[str, Any]:
    image = noisy_png(300 if quick else 600)
    jobs = 40 if quick else 200
    figures: dict[str, Any] = {"input_bytes": len(image), "throughput_jobs": jobs}
    rates = {}
    for workers in (1, 2, 4, 8, 16):
        rates[workers] = asyncio.run(throughput(jobs, workers, image))
    base = rates[1]
    figures["throughput"] = {
        str(w): {"jobs_per_s": round(r, 2), "vs_1_worker": round(r / base, 2)}
        for w, r in rates.items()
    }
    waiting = 200 if quick else 1000
    figures["memory"] = {"waiting_jobs": waiting, **_in_fresh_process(waiting, image)}
    large = noisy_png(1200 if quick else 2500)  # about 4 MB quick, 19 MB full
    figures["memory_large_inputs"] = {
        "jobs": 20,
        "input_bytes": len(large),
        **_in_fresh_process(20, large),
    }
    figures["goals"] = {
        "waiting_peak_under_200mb": figures["memory"]["rss_peak_mb"] < 200,
        "all_jobs_reached_the_provider": figures["memory"]["reached_provider"] == waiting,
    }
    print(f"pipeline: input {len(image) / 1e6:.2f} MB PNG, {jobs} jobs per throughput run")
    print(f"  {'workers':>7} {'jobs/s':>8} {'x 1 worker':>10}")
    for workers, entry in figures["throughput"].items():
        print(f"  {workers:>7} {entry['jobs_per_s']:>8.2f} {entry['vs_1_worker']:>10.2f}")
    mem = figures["memory"]
    print(
        f"  memory: {mem['reached_provider']} of {waiting} jobs at the provider after "
        f"{mem['seconds_to_reach']} s: RSS {mem['rss_before_mb']} MB -> peak "
        f"{mem['rss_peak_mb']} MB (+{mem['growth_mb']} MB)"
    )
    big = figures["memory_large_inputs"]
    print(
        f"  memory: {big['jobs']} jobs with {big['input_bytes'] / 1e6:.1f} MB inputs: RSS "
        f"{big['rss_before_mb']} MB -> peak {big['rss_peak_mb']} MB (+{big['growth_mb']} MB)"
    )
    for goal, met in figures["goals"].items():
        print(f"  {goal}: {'met' if met else 'MISSED'}")
    return figures
