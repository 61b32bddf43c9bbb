"""Operations: health, readiness and metrics during and after a job; retention; shutdown."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import Core, build_core
from bot.domain import EditOptions, EditRequest, JobState, UserRef
from bot.errors import ProviderUnavailable
from tests.fakes.coretoday import FakeCoreToday
from tests.recording import RecordingFrontend
from tests.support import HANG_GUARD_SECONDS, make_settings, png

ALICE = UserRef("slack", "T1", "UALICE")


def request(frontend: RecordingFrontend, key: str) -> EditRequest:
    return EditRequest(
        user=ALICE,
        prompt="make it a watercolor",
        options=EditOptions(),
        attachments=(frontend.attach(f"{key}.png", png()),),
        reply_target={"channel": "C1"},
        idempotency_key=key,
    )


async def make_core(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend, **storage: object
) -> Core:
    settings = make_settings(
        tmp_path,
        fake.base_url,
        ops={"enabled": True, "port": 0},
        storage=storage,
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
    )
    core = await build_core(settings, {"slack": frontend})
    assert core.runner is not None
    core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1))
    await core.start()
    return core


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_health_ready_and_metrics_during_and_after_a_job(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    fake.script.outcome = "never"
    frontend = RecordingFrontend()
    core = await make_core(tmp_path, fake, frontend)
    assert core.ops is not None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{core.ops.port}") as client:
        try:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {"storage": True, "runner": True}

            ack = await core.service.submit(request(frontend, "a"))
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                while fake.polls < 2:
                    await asyncio.sleep(0.01)
            during = await scrape(client)
            assert during[("kontext_jobs", (("state", "running"),))] == 1
            assert during[("kontext_queue_depth", ())] == 0
            assert (
                during[("kontext_requests_total", (("outcome", "accepted"), ("platform", "slack")))]
                == 1
            )

            for prediction in fake.predictions.values():
                prediction.outcome = "succeeded"
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                assert (await core.runner.wait_for(ack.job.id)).state == JobState.SUCCEEDED  # type: ignore[union-attr]

            fake.script.outcome = "failed"
            failed = await core.service.submit(request(frontend, "b"))
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                await core.runner.wait_for(failed.job.id)  # type: ignore[union-attr]
            await core.service.submit(request(frontend, "b"))  # a redelivered event

            after = await scrape(client)
            assert after[("kontext_jobs", (("state", "succeeded"),))] == 1
            assert after[("kontext_jobs", (("state", "failed"),))] == 1
            assert after[("kontext_jobs", (("state", "running"),))] == 0
            assert after[("kontext_credits_charged_total", ())] == 120
            assert after[("kontext_credits_refunded_total", ())] == 120
            assert after[("kontext_errors_total", (("kind", "provider_unavailable"),))] == 1
            assert after[("kontext_jobs_finished_total", (("state", "succeeded"),))] == 1
            assert (
                after[("kontext_requests_total", (("outcome", "duplicate"), ("platform", "slack")))]
                == 1
            )
            latency = (
                "kontext_provider_latency_seconds_count",
                (("model", "black-forest-labs/flux-kontext-pro"), ("provider", "coretoday")),
            )
            assert after[latency] == 2
            polls = after[("kontext_status_requests_per_job_sum", (("provider", "coretoday"),))]
            assert polls == fake.polls
        finally:
            await core.close()


async def test_readyz_fails_with_the_failing_check_named(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    core = await make_core(tmp_path, fake, RecordingFrontend())
    assert core.ops is not None

    async def slack_connected() -> bool:
        return False

    async def broken() -> bool:
        raise RuntimeError("socket closed")

    core.ops.add_check("slack", slack_connected)
    core.ops.add_check("discord", broken)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{core.ops.port}") as client:
            answer = await client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json() == {
            "status": "not ready",
            "checks": {"storage": True, "runner": True, "slack": False, "discord": False},
        }
    finally:
        await core.close()


async def test_shutdown_lets_running_jobs_finish_and_refuses_new_ones(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    fake.script.polls_before_done = 5
    frontend = RecordingFrontend()
    core = await make_core(tmp_path, fake, frontend)
    ack = await core.service.submit(request(frontend, "a"))
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not fake.creates:
            await asyncio.sleep(0.01)
    core.stop_accepting()
    with pytest.raises(ProviderUnavailable) as info:
        await core.service.submit(request(frontend, "b"))
    assert "try again" in info.value.user_message
    await core.close(grace=10)
    job = await _job_state(tmp_path, fake, ack.job.id)
    assert job == JobState.SUCCEEDED
    assert len(frontend.delivered) == 1


async def test_shutdown_past_grace_leaves_jobs_to_resume_and_charges_once(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    fake.script.outcome = "never"
    frontend = RecordingFrontend()
    core = await make_core(tmp_path, fake, frontend)
    acks = [await core.service.submit(request(frontend, f"k{i}")) for i in range(2)]
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while fake.polls < 2:
            await asyncio.sleep(0.01)
    await core.close(grace=0.1)
    assert frontend.failures == [] and frontend.delivered == []
    for prediction in fake.predictions.values():
        prediction.outcome = "succeeded"
    fake.script.outcome = "succeeded"
    core = await make_core(tmp_path, fake, frontend)
    try:
        for ack in acks:
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                assert (await core.runner.wait_for(ack.job.id)).state == JobState.SUCCEEDED  # type: ignore[union-attr]
        assert len(fake.creates) == 2
        kinds = sorted(e.kind.value for e in await core.service.history(ALICE, 50))
        assert kinds == ["charge", "charge", "grant", "reserve", "reserve"]
    finally:
        await core.close()


async def _job_state(tmp_path: Path, fake: FakeCoreToday, job_id: str) -> JobState:
    core = await build_core(make_settings(tmp_path, fake.base_url), with_runner=False)
    try:
        job = await core.store.get(job_id)
        assert job is not None
        return job.state
    finally:
        await core.close()


async def test_retention_keeps_active_outputs_and_prunes_old_jobs(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    frontend = RecordingFrontend()
    core = await make_core(tmp_path, fake, frontend, keep_images_hours=1, keep_jobs_days=1)
    try:
        ack = await core.service.submit(request(frontend, "a"))
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            await core.runner.wait_for(ack.job.id)  # type: ignore[union-attr]
        outputs = tmp_path / "data" / "outputs"
        (kept,) = list(outputs.iterdir())  # retention on: the delivered image stays
        active = outputs / "0123456789abcdef.png"
        active.write_bytes(b"x")
        fake.script.outcome = "never"  # this one stays in flight
        waiting = await core.service.submit(request(frontend, "b"))
        own = outputs / f"{waiting.job.id}.png"
        own.write_bytes(b"x")
        old = core.store.clock() - 2 * 3600
        for path in (kept, active, own):
            os.utime(path, (old, old))
        report = await core.prune()
        assert report.images_deleted == 2  # the delivered one and the stray file
        assert own.exists() and not kept.exists()
        assert report.jobs_deleted == 0
        core.store.clock = lambda: 9_999_999_999.0
        report = await core.prune()
        assert report.jobs_deleted == 1  # the finished job; the waiting one stays
        assert await core.store.get(ack.job.id) is None
        assert await core.store.get(waiting.job.id) is not None
        assert len(await core.service.history(ALICE, 50)) >= 3  # the ledger is never pruned
    finally:
        await core.close()
