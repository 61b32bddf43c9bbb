"""Overhead: what the bot adds to the provider's own time, from a platform request to
the result being posted.

Two paths, both the real code against the loopback fakes:

- ``slack``: a signed Slack HTTP ``app_mention`` event with a ~1 MB image goes to the
  bot's /slack/events; the bot downloads the file from the fake Slack, validates it,
  submits it to the fake core.today, learns the result from its webhook (or polling),
  downloads the output and uploads it with files_upload_v2. End: the fake Slack's
  ``files.completeUploadExternal``.
- ``core`` (what the console front end does): ``KontextService.submit`` of the same
  image, to ``Reply.deliver``.

The fake provider works for a log-normal time (median 6 s, sigma 0.5) scaled down by a
time factor, and calls the bot's webhook when done, as core.today does when given one.
Reference: each request's own provider time in the same run; the figure is end-to-end
time / provider time per request (p50, p99), and the overhead in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from adapters.slack.adapter import SlackAdapter
from bench.common import (
    SizedCoreToday,
    bot_environment,
    db_url_for,
    event_body,
    free_port,
    postgres,
    process_cpu,
    result_png,
    spawn,
    stop_process,
    wait_for_port,
)
from bench.pipeline import noisy_png
from bot.app import build_core
from bot.config import Settings
from bot.domain import Attachment, AttachmentSource, EditOptions, EditRequest, UserRef
from tests.fakes.coretoday import DEFAULT_KEY, FakeCoreToday
from tests.fakes.provider import Script
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack, signed_json_headers
from tests.recording import RecordingFrontend

MEDIAN_SECONDS = 6.0
SIGMA = 0.5
GOAL_P50 = 1.02
GOAL_P99 = 1.10
GOAL_AT = 100


@dataclass
class Sample:
    end_to_end: float
    provider: float

    @property
    def ratio(self) -> float:
        return self.end_to_end / self.provider

    @property
    def overhead_ms(self) -> float:
        return (self.end_to_end - self.provider) * 1000


def _sampler(factor: float, seed: int) -> Any:
    rng = random.Random(seed)
    return lambda: MEDIAN_SECONDS * factor * math.exp(rng.gauss(0.0, SIGMA))


def _settings(
    tmp: Path, fake: FakeCoreToday, concurrent: int, db_url: str | None = None, **extra: Any
) -> Settings:
    port = free_port()
    data: dict[str, Any] = {
        "storage": {
            "url": db_url or f"sqlite:///{tmp / 'bench.db'}",
            "data_dir": str(tmp / "data"),
        },
        "provider": {
            "base_url": fake.base_url,
            "api_key": DEFAULT_KEY,
            "webhook_base_url": f"http://127.0.0.1:{port}",
            "webhook_host": "127.0.0.1",
            "webhook_port": port,
        },
        "credits": {"allowance": 10_000_000},
        "jobs": {
            "max_concurrent": max(1, min(concurrent, 1000)),
            "per_user_concurrent": 100,
            "timeout_seconds": 3600,
            "lease_seconds": 600,
        },
        **extra,
    }
    return Settings.model_validate(data)


def _provider_times(fake: FakeCoreToday) -> dict[str, float]:
    """Prompt -> the provider's working time for it."""
    return {
        str(p.input.get("prompt")): float(p.duration or 0.0)
        for p in fake.predictions.values()
        if isinstance(p.input, dict)
    }


async def slack_path(
    concurrent: int, image: bytes, factor: float, wait_seconds: float
) -> list[Sample]:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        script = Script(duration=_sampler(factor, seed=concurrent))
        async with SizedCoreToday(kontext_result(), script=script) as fake, FakeSlack() as slack:
            settings = _settings(
                tmp,
                fake,
                concurrent,
                slack={
                    "enabled": True,
                    "mode": "http",
                    "bot_token": BOT_TOKEN,
                    "signing_secret": SIGNING_SECRET,
                    "api_base_url": slack.api_url,
                    "file_hosts": ["127.0.0.1"],
                    "http_host": "127.0.0.1",
                    "http_port": 0,
                },
            )
            core = await build_core(
                settings, lambda service: [SlackAdapter(settings.slack, service)]
            )
            adapter = core.frontends["slack"]
            assert isinstance(adapter, SlackAdapter)
            await core.start()
            await adapter.start()
            try:
                assert adapter.port is not None
                return await _send_events(
                    adapter.port, slack, fake, concurrent, image, wait_seconds
                )
            finally:
                await adapter.stop()
                await core.close(grace=0)


async def _send_events(
    port: int,
    slack: FakeSlack,
    fake: FakeCoreToday,
    concurrent: int,
    image: bytes,
    wait_seconds: float,
) -> list[Sample]:
    """Post one signed app_mention with an image per request, all at once, and time each
    to the fake Slack's completed upload of its result."""
    started: dict[str, float] = {}
    files = [slack.add_file(f"in{i}.png", image)["id"] for i in range(concurrent)]
    limits = httpx.Limits(max_connections=concurrent + 10)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:

        async def send(i: int) -> None:
            ts = f"1790000000.{i:06d}"
            body = event_body(i, {"id": files[i], "mimetype": "image/png"}, f"edit {i}")
            headers = signed_json_headers(body)
            started[ts] = time.monotonic()
            for attempt in range(3):  # as Slack retries an event it could not deliver
                try:
                    answer = await http.post("/slack/events", content=body, headers=headers)
                    answer.raise_for_status()
                    return
                except httpx.TransportError:
                    if attempt == 2:
                        raise
                    headers["X-Slack-Retry-Num"] = str(attempt + 1)

        await asyncio.gather(*(send(i) for i in range(concurrent)))
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            done = [u for u in slack.uploads.values() if u.completed_at is not None]
            if len(done) >= concurrent:
                break
            await asyncio.sleep(0.02)
    provider = _provider_times(fake)
    samples = []
    for upload in slack.uploads.values():
        if upload.completed_at is None or upload.thread_ts not in started:
            continue
        i = int(str(upload.thread_ts).split(".")[1])
        samples.append(
            Sample(upload.completed_at - started[str(upload.thread_ts)], provider[f"edit {i}"])
        )
    return samples


async def slack_process_path(
    concurrent: int, image: bytes, factor: float, wait_seconds: float
) -> list[Sample]:
    """The same Slack flow with the bot as its own ``kontext-bot run`` process, as it is
    deployed: the fakes' CPU (parsing every upload, serving files) is then not the bot's."""
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        script = Script(duration=_sampler(factor, seed=20_000 + concurrent), keep_inputs=False)
        async with SizedCoreToday(kontext_result(), script=script) as fake, FakeSlack() as slack:
            http_port, webhook_port = free_port(), free_port()
            env = bot_environment(
                storage_url=f"sqlite:///{tmp / 'bench.db'}",
                data_dir=tmp / "data",
                provider_url=fake.base_url,
                webhook_port=webhook_port,
                slack_api_url=slack.api_url,
                http_port=http_port,
                max_concurrent=max(1, min(concurrent, 1000)),
                KONTEXT_LOG__LEVEL="warning",
            )
            process = await spawn(["-m", "bot.cli", "run"], env, tmp, asyncio.subprocess.DEVNULL)
            try:
                await wait_for_port(http_port, 60)
                cpu_before, calls_before = process_cpu(process.pid), len(slack.calls)
                samples = await _send_events(
                    http_port, slack, fake, concurrent, image, wait_seconds
                )
                cpu = process_cpu(process.pid) - cpu_before
                done = max(1, len(samples))
                # Web API calls; the file download is not a method call of the fake.
                calls = len(slack.calls) - calls_before
                PROCESS_FIGURES[concurrent] = {
                    "bot_cpu_ms_per_job": round(cpu * 1000 / done, 1),
                    "slack_calls_per_job": round(calls / done, 2),
                    "bot_peak_rss_mb": peak_rss_mb(process.pid),
                }
                return samples
            finally:
                await stop_process(process)


@functools.cache
def kontext_result() -> bytes:
    """What every fake prediction returns: Kontext's 1024x1024, about 1.2 MB."""
    return result_png()


# slack-proc's bot process, by concurrency: CPU per job (startup excluded), Web API calls
# per job and its peak RSS (VmHWM) at the end of the run.
PROCESS_FIGURES: dict[int, dict[str, float]] = {}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


class _TimedFrontend(RecordingFrontend):
    """Hands each job its input and notes when its result is delivered."""

    def __init__(self, image: bytes, expected: int) -> None:
        super().__init__(platform="console")
        self.image = image
        self.expected = expected
        self.delivered_at: dict[str, float] = {}
        self.all_delivered = asyncio.Event()

    def attachment_for(self, source: AttachmentSource) -> Attachment:
        async def fetch(max_bytes: int) -> bytes:
            return bytes(self.image)

        return Attachment(source=source, fetch=fetch)

    def reply_for(self, job: Any) -> Any:
        reply = super().reply_for(job)
        frontend = self

        class _Reply:
            async def progress(self, *args: Any, **kwargs: Any) -> None:
                return None

            async def deliver(self, result: Any, *, maybe_delivered: bool = False) -> None:
                frontend.delivered_at[result.job.prompt] = time.monotonic()
                if len(frontend.delivered_at) >= frontend.expected:
                    frontend.all_delivered.set()
                await reply.deliver(result)

            async def fail(self, job: Any, message: str) -> None:
                await reply.fail(job, message)

        return _Reply()


async def core_path(
    concurrent: int, image: bytes, factor: float, wait_seconds: float, db_url: str | None = None
) -> list[Sample]:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        script = Script(duration=_sampler(factor, seed=10_000 + concurrent))
        async with SizedCoreToday(kontext_result(), script=script) as fake:
            settings = _settings(tmp, fake, concurrent, db_url=await db_url_for(db_url))
            frontend = _TimedFrontend(image, concurrent)
            core = await build_core(settings, {"console": frontend})
            await core.start()
            started: dict[str, float] = {}
            try:

                async def submit(i: int) -> None:
                    prompt = f"edit {i}"
                    started[prompt] = time.monotonic()
                    source = AttachmentSource("in.png", "image/png", len(image), f"in{i}")
                    await core.service.submit(
                        EditRequest(
                            user=UserRef("console", "bench", f"u{i % 500}"),
                            prompt=prompt,
                            options=EditOptions(),
                            attachments=(frontend.attachment_for(source),),
                            reply_target={},
                            idempotency_key=f"bench:{i}",
                        )
                    )

                await asyncio.gather(*(submit(i) for i in range(concurrent)))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(frontend.all_delivered.wait(), wait_seconds)
            finally:
                await core.close(grace=0)
            provider = _provider_times(fake)
            return [
                Sample(at - started[prompt], provider[prompt])
                for prompt, at in frontend.delivered_at.items()
            ]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def run(quick: bool, only: tuple[str, ...] = ()) -> dict[str, Any]:
    factor = 0.1 if quick else 0.25
    levels = (1, 20, 100) if quick else (1, 100, 1000)
    image = noisy_png(600)  # about 1 MB
    print(
        f"overhead: provider time log-normal, median {MEDIAN_SECONDS * factor:.2f} s "
        f"({MEDIAN_SECONDS} s x {factor}), sigma {SIGMA}; inputs {len(image) / 1e6:.2f} MB"
    )
    print(
        f"  {'path':<8}{'concurrent':>9}{'done':>7}{'ratio p50':>11}{'ratio p99':>11}"
        f"{'overhead p50':>14}{'overhead p99':>14}{'@6s p50':>10}{'@6s p99':>10}"
    )
    results: dict[str, Any] = {"provider_median_seconds": MEDIAN_SECONDS * factor, "runs": []}
    cluster, pg_url = postgres()
    paths: list[tuple[str, Any]] = [
        ("slack", slack_path),
        ("slack-proc", slack_process_path),
        ("core", core_path),
        ("core-pg", functools.partial(core_path, db_url=pg_url)),
    ]
    for path, measure in paths:
        if (path == "core-pg" and pg_url is None) or (only and path not in only):
            continue
        for concurrent in levels:
            wait_seconds = 60 + concurrent * 0.5
            samples = asyncio.run(measure(concurrent, image, factor, wait_seconds))
            ratios = [s.ratio for s in samples]
            overheads = [s.overhead_ms for s in samples]
            # The overhead does not shrink with the time factor: the same overhead on the
            # unscaled provider time is what a user with a 6 s median job sees.
            real = [1 + (s.end_to_end - s.provider) / (s.provider / factor) for s in samples]
            row: dict[str, Any] = {
                "path": path,
                "concurrent": concurrent,
                "completed": len(samples),
                "ratio_p50": round(statistics.median(ratios), 4) if ratios else None,
                "ratio_p99": round(_quantile(ratios, 0.99), 4) if ratios else None,
                "overhead_ms_p50": round(statistics.median(overheads), 1) if ratios else None,
                "overhead_ms_p99": round(_quantile(overheads, 0.99), 1) if ratios else None,
                "ratio_p50_at_6s": round(statistics.median(real), 4) if real else None,
                "ratio_p99_at_6s": round(_quantile(real, 0.99), 4) if real else None,
            }
            if path == "slack-proc":
                row.update(PROCESS_FIGURES.get(concurrent, {}))
            results["runs"].append(row)
            nan = float("nan")
            print(
                f"  {path:<8}{concurrent:>9}{len(samples):>7}"
                f"{row['ratio_p50'] or nan:>11.3f}{row['ratio_p99'] or nan:>11.3f}"
                f"{row['overhead_ms_p50'] or nan:>12.0f}ms"
                f"{row['overhead_ms_p99'] or nan:>12.0f}ms"
                f"{row['ratio_p50_at_6s'] or nan:>10.3f}{row['ratio_p99_at_6s'] or nan:>10.3f}"
                + (
                    f"   bot CPU {row['bot_cpu_ms_per_job']} ms/job, "
                    f"{row['slack_calls_per_job']} Slack calls/job, "
                    f"peak RSS {row['bot_peak_rss_mb']} MB"
                    if "bot_cpu_ms_per_job" in row
                    else ""
                )
            )
    if cluster is not None:
        cluster.stop()
    goal_level = GOAL_AT if GOAL_AT in levels else max(levels)
    for path in ("slack", "slack-proc", "core"):
        found = [r for r in results["runs"] if r["path"] == path and r["concurrent"] == goal_level]
        if not found:
            continue
        row = found[0]
        p50, p99 = row["ratio_p50_at_6s"], row["ratio_p99_at_6s"]
        met50 = p50 is not None and p50 <= GOAL_P50
        met99 = p99 is not None and p99 <= GOAL_P99
        print(
            f"  {path} at {goal_level} concurrent, on 6 s provider times: p50 {p50} "
            f"(goal <= {GOAL_P50}) {'met' if met50 else 'MISSED'}; p99 {p99} "
            f"(goal <= {GOAL_P99}) {'met' if met99 else 'MISSED'}"
        )
        results[f"goal_{path}"] = {"at": goal_level, "p50_met": met50, "p99_met": met99}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--paths", default="", help="e.g. core,core-pg (default: all four)")
    args = parser.parse_args(argv)
    only = tuple(p for p in args.paths.split(",") if p)
    print(json.dumps(run(args.quick, only), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
