"""The whole core (service, store, runner, real provider client) against the fake."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from bot.app import Core, build_core
from bot.domain import EditOptions, EditRequest, Job, JobState, UserRef
from bot.errors import UserInputError
from bot.providers.base import InputImage, ProviderRequest
from tests.fakes.coretoday import FakeCoreToday
from tests.recording import RecordingFrontend
from tests.support import HANG_GUARD_SECONDS, FakeClock, LoopClock, make_settings, png

ALICE = UserRef("slack", "T1", "UALICE")


@pytest.fixture
def frontend() -> RecordingFrontend:
    return RecordingFrontend()


async def start_core(
    tmp_path: Path,
    fake: FakeCoreToday,
    frontend: RecordingFrontend,
    *,
    clock: FakeClock | None = None,
    started: bool = True,
    **jobs: object,
) -> Core:
    settings = make_settings(
        tmp_path,
        fake.base_url,
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05, **jobs},
        provider={"max_retries": 1},
    )
    if clock is None:
        core = await build_core(settings, {"slack": frontend})
    else:
        core = await build_core(settings, {"slack": frontend}, clock=clock)
    core.provider.wait_initial = 0.01  # type: ignore[union-attr]
    assert core.runner is not None
    core.runner.set_limits(
        replace(core.runner.limits, delivery_backoff=0.01, idle_scan_seconds=0.1, hold_seconds=0.05)
    )
    if started:
        await core.start()
    return core


def edit(
    frontend: RecordingFrontend,
    key: str = "evt-1",
    image: bytes | None = None,
    prompt: str = "make it a watercolor",
    **options: object,
) -> EditRequest:
    attachments = (frontend.attach(f"{key}.png", image),) if image is not None else ()
    return EditRequest(
        user=ALICE,
        prompt=prompt,
        options=EditOptions(**options),  # type: ignore[arg-type]
        attachments=attachments,
        reply_target={"channel": "C1", "thread": "1.2"},
        idempotency_key=key,
    )


async def finish(core: Core, job_id: str) -> Job:
    assert core.runner is not None
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        return await core.runner.wait_for(job_id)


async def ledger_kinds(core: Core) -> list[str]:
    return [e.kind.value for e in reversed(await core.service.history(ALICE, 50))]


async def test_edit_is_delivered_and_charged_once(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> None:
    core = await start_core(tmp_path, fake, frontend)
    try:
        ack = await core.service.submit(edit(frontend, image=png(), aspect_ratio="4:3", seed=5))
        assert ack.queue_position == 1 and ack.balance_after == 1080
        job = await finish(core, ack.job.id)
        assert job.state == JobState.SUCCEEDED
        (result,) = frontend.delivered
        assert Image.open(io.BytesIO(result.image)).size == (result.width, result.height)
        assert result.balance_after == 1080
        (create,) = fake.creates
        assert create.input is not None
        assert create.input["prompt"] == "make it a watercolor"
        assert create.input["aspect_ratio"] == "4:3" and create.input["seed"] == 5
        assert create.file_bytes == png()
        assert await ledger_kinds(core) == ["grant", "reserve", "charge"]
        assert (await core.service.credits(ALICE)).balance == 1080
        assert "editing" in [stage for _, stage in frontend.progress]
        # The delivered image does not linger on disk.
        assert list((tmp_path / "data" / "outputs").iterdir()) == []
    finally:
        await core.close()


async def test_a_status_line_the_platform_does_not_take_in_time_costs_no_edit(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> None:
    """Progress is a courtesy on every platform: a status update that times out (Slack in
    a burst of a thousand did) is logged, and the job goes on to its result and its one
    charge; before, the job was refunded as if the provider had taken over an hour."""
    frontend.progress_failures = 10
    core = await start_core(tmp_path, fake, frontend)
    try:
        ack = await core.service.submit(edit(frontend, image=png()))
        job = await finish(core, ack.job.id)
        assert await ledger_kinds(core) == ["grant", "reserve", "charge"]
    finally:
        await core.close()
    assert job.state == JobState.SUCCEEDED, job.error_message
    assert len(frontend.delivered) == 1 and not frontend.failures
    assert frontend.progress  # it was asked, and refused


async def test_a_call_that_times_out_is_not_reported_as_the_job_taking_too_long(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> None:
    """Only the job's own deadline says "took longer than N seconds": a platform call
    timing out inside (here the input's download) is refunded as what it is."""
    frontend.fetch_timeouts = 1
    core = await start_core(tmp_path, fake, frontend)
    try:
        ack = await core.service.submit(edit(frontend, image=png()))
        job = await finish(core, ack.job.id)
    finally:
        await core.close()
    assert job.state == JobState.FAILED and job.error_kind == "internal"
    assert "took longer" not in (job.error_message or "")
    assert not fake.creates


async def test_text_to_image_and_sync_answer(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> None:
    fake.script.shape = "sync"
    core = await start_core(tmp_path, fake, frontend)
    try:
        ack = await core.service.submit(edit(frontend, aspect_ratio="16:9"))
        assert (await finish(core, ack.job.id)).state == JobState.SUCCEEDED
        assert fake.creates[0].path == "/v1/predictions"
        assert fake.polls == 0
        assert frontend.delivered[0].width == 112
    finally:
        await core.close()


async def test_duplicate_event_runs_once(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> None:
    core = await start_core(tmp_path, fake, frontend)
    try:
        first = await core.service.submit(edit(frontend, image=png()))
        again = await core.service.submit(edit(frontend, image=png()))
        assert again.duplicate and again.job.id == first.job.id
        await finish(core, first.job.id)
        assert len(fake.creates) == 1
        assert (await core.service.credits(ALICE)).balance == 1080
    finally:
        await core.close()


@pytest.mark.parametrize(
    ("setup", "kind", "words"),
    [
        ({"outcome": "failed"}, "provider_unavailable", "could not finish"),
        ({"outcome": "moderated"}, "moderation", "safety filter"),
        ({"create_failures": [500]}, "provider_unavailable", "did not answer"),
        ({"create_failures": [401]}, "provider_unavailable", "API key"),
        ({"create_failures": [402]}, "provider_unavailable", "out of credits"),
        ({"create_failures": [422]}, "user_input", "rejected the request"),
        ({"drop_create_answer": True}, "provider_unavailable", "avoid running it twice"),
    ],
)
async def test_provider_failures_are_refunded_and_explained(
    tmp_path: Path,
    fake: FakeCoreToday,
    frontend: RecordingFrontend,
    setup: dict[str, object],
    kind: str,
    words: str,
) -> None:
    for name, value in setup.items():
        setattr(fake.script, name, value)
    core = await start_core(tmp_path, fake, frontend)
    try:
        ack = await core.service.submit(edit(frontend, image=png()))
        job = await finish(core, ack.job.id)
        assert job.state == JobState.FAILED
        assert job.error_kind == kind
        ((_, message),) = frontend.failures
        assert words in message and "refunded" in message
        assert fake.api_key not in message
        assert await ledger_kinds(core) == ["grant", "reserve", "refund"]
        assert (await core.service.credits(ALICE)).balance == 1200
        assert frontend.delivered == []
    finally:
        await core.close()


async def submitted(core: Core, job_id: str) -> None:
    """Wait until the job's prediction is created at the provider and its id stored."""
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while (await core.store.get(job_id)).prediction_id is None:  # type: ignore[union-attr]
            await asyncio.sleep(0.01)


async def test_timeout_cancels_at_provider_and_refunds(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend, loop_clock: LoopClock
) -> None:
    fake.script.outcome = "never"
    core = await start_core(tmp_path, fake, frontend, timeout_seconds=60)
    try:
        ack = await core.service.submit(edit(frontend, image=png()))
        await submitted(core, ack.job.id)  # polling a prediction that never finishes
        loop_clock.advance(61)  # past the job timeout, without waiting for it
        job = await finish(core, ack.job.id)
        assert job.state == JobState.FAILED
        assert fake.cancels == 1
        assert "took longer than" in frontend.failures[0][1]
        assert (await core.service.credits(ALICE)).balance == 1200
    finally:
        await core.close()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (png()[:60], "could not be read"),
        (b"GIF89a" + b"\x00" * 10, "could not be read"),
        (b"<html><body>not an image</body></html>", "JPEG, PNG, GIF or WebP"),
    ],
)
async def test_bad_images_cost_nothing(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend, data: bytes, words: str
) -> None:
    core = await start_core(tmp_path, fake, frontend)
    try:
        ack = await core.service.submit(edit(frontend, image=data))
        job = await finish(core, ack.job.id)
        assert job.state == JobState.FAILED and job.error_kind == "user_input"
        assert words in frontend.failures[0][1]
        assert fake.creates == []
        assert (await core.service.credits(ALICE)).balance == 1200
    finally:
        await core.close()


async def test_declared_type_and_size_are_refused_before_anything(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> None:
    core = await start_core(tmp_path, fake, frontend)
    try:
        request = edit(frontend, image=png())
        pdf = frontend.attach("doc.pdf", b"%PDF-1.4", "application/pdf")
        with pytest.raises(UserInputError) as info:
            await core.service.submit(EditRequest(**{**request.__dict__, "attachments": (pdf,)}))
        assert "application/pdf" in info.value.user_message
        big = frontend.attach("big.png", b"x")
        big = type(big)(
            source=type(big.source)("big.png", "image/png", 30_000_000, "big.png"), fetch=big.fetch
        )
        with pytest.raises(UserInputError) as info:
            await core.service.submit(EditRequest(**{**request.__dict__, "attachments": (big,)}))
        assert "30.0 MB" in info.value.user_message
        with pytest.raises(UserInputError):
            await core.service.submit(edit(frontend, prompt="   "))
        assert await core.service.history(ALICE) == []
    finally:
        await core.close()


async def test_delivery_failure_is_retried_then_refunded(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> None:
    frontend.deliver_failures = 1
    core = await start_core(tmp_path, fake, frontend)
    try:
        ack = await core.service.submit(edit(frontend, key="a", image=png()))
        assert (await finish(core, ack.job.id)).state == JobState.SUCCEEDED
        # The retry may follow an attempt the platform took: the reply is told to look.
        assert frontend.maybe_delivered == [False, True]
        frontend.deliver_failures = 99
        ack = await core.service.submit(edit(frontend, key="b", image=png()))
        job = await finish(core, ack.job.id)
        assert job.state == JobState.FAILED
        assert "could not be posted" in frontend.failures[0][1]
        assert (await core.service.credits(ALICE)).balance == 1080
    finally:
        await core.close()


async def test_global_and_per_user_caps(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> None:
    fake.script.polls_before_done = 3
    core = await start_core(tmp_path, fake, frontend, max_concurrent=3, per_user_concurrent=2)
    assert core.runner is not None
    peak = 0
    try:
        acks = [await core.service.submit(edit(frontend, key=f"k{i}")) for i in range(5)]
        bob = UserRef("slack", "T1", "UBOB")
        bob_request = edit(frontend, key="bob")
        acks.append(await core.service.submit(EditRequest(**{**bob_request.__dict__, "user": bob})))

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, core.runner.active_jobs)  # type: ignore[union-attr]
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        for ack in acks:
            assert (await finish(core, ack.job.id)).state == JobState.SUCCEEDED
        watcher.cancel()
        assert peak == 3
        # Bob got the free slot at once instead of waiting behind Alice's queue, whose
        # jobs ran at most two at a time.
        order = [result.job.idempotency_key for result in frontend.delivered]
        assert order.index("bob") < order.index("k4")
        assert (await core.service.credits(ALICE)).balance == 1200 - 5 * 120
    finally:
        await core.close()


@pytest.fixture
async def idle_core(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> AsyncIterator[Core]:
    """A core whose runner is not started yet: the test first stages a crash."""
    core = await build_core(make_settings(tmp_path, fake.base_url), {"slack": frontend})
    yield core
    await core.close()


async def crashed_job(core: Core, frontend: RecordingFrontend, image: bytes | None) -> Job:
    """A job as a process that died mid-way leaves it: claimed, lease expired."""
    ack = await core.service.submit(edit(frontend, key="crashed", image=image))
    (job,) = await core.store.claim("dead-process", ["slack"], 1, lease_seconds=0.0)
    assert job.id == ack.job.id
    return job


async def test_restart_resumes_a_submitted_job_without_resubmitting(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend, idle_core: Core
) -> None:
    core = idle_core
    job = await crashed_job(core, frontend, png())
    # The dead process had submitted the job and stored the prediction id.
    await core.store.mark_submit_started(job.id)
    assert core.provider is not None
    status = await core.provider.submit(
        ProviderRequest(job.prompt, job.options, (InputImage(png(), "image/png", "a.png"),)),
        idempotency_key=job.id,
    )
    await core.store.record_prediction(job.id, status.id)
    await core.start()
    done = await finish(core, job.id)
    assert done.state == JobState.SUCCEEDED
    assert len(fake.creates) == 1
    assert len(frontend.delivered) == 1
    assert await ledger_kinds(core) == ["grant", "reserve", "charge"]


async def test_restart_refunds_a_job_whose_create_answer_was_lost(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend, idle_core: Core
) -> None:
    core = idle_core
    job = await crashed_job(core, frontend, png())
    await core.store.mark_submit_started(job.id)  # then the process died
    await core.start()
    done = await finish(core, job.id)
    assert done.state == JobState.FAILED
    assert fake.creates == []
    assert "restarted" in frontend.failures[0][1]
    assert await ledger_kinds(core) == ["grant", "reserve", "refund"]


async def test_restart_delivers_a_downloaded_result(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend, idle_core: Core
) -> None:
    core = idle_core
    job = await crashed_job(core, frontend, png())
    output = tmp_path / "data" / "outputs" / f"{job.id}.png"
    output.parent.mkdir(parents=True)
    output.write_bytes(png(size=(20, 10)))
    meta = {"content_type": "image/png", "width": 20, "height": 10}
    await core.store.mark_delivering(job.id, str(output), meta, user=job.user)
    await core.start()
    done = await finish(core, job.id)
    assert done.state == JobState.SUCCEEDED
    assert fake.received == []
    assert frontend.delivered[0].width == 20
    assert frontend.maybe_delivered == [True]  # the dead run may have posted it
    assert not output.exists()


async def test_clean_stop_hands_jobs_back_for_the_next_start(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> None:
    fake.script.outcome = "never"
    core = await start_core(tmp_path, fake, frontend)
    ack = await core.service.submit(edit(frontend, image=png()))
    await asyncio.wait_for(fake.created.wait(), timeout=HANG_GUARD_SECONDS)
    await submitted(core, ack.job.id)
    await core.close()
    fake.script.outcome = "succeeded"
    for prediction in fake.predictions.values():
        prediction.outcome = "succeeded"
    core = await start_core(tmp_path, fake, frontend)
    try:
        assert (await finish(core, ack.job.id)).state == JobState.SUCCEEDED
        assert len(fake.creates) == 1
        assert await ledger_kinds(core) == ["grant", "reserve", "charge"]
    finally:
        await core.close()


async def test_back_pressure_holds_the_job_in_the_queue_until_the_provider_takes_it(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> None:
    fake.script.create_failures = [429, 429, 429]  # more than the client's own retries
    core = await start_core(tmp_path, fake, frontend)
    try:
        ack = await core.service.submit(edit(frontend, image=png()))
        assert (await finish(core, ack.job.id)).state == JobState.SUCCEEDED
        assert len(fake.creates) == 4
        assert "waiting for the image service" in [stage for _, stage in frontend.progress]
        assert await ledger_kinds(core) == ["grant", "reserve", "charge"]
    finally:
        await core.close()


async def test_back_pressure_that_outlasts_the_job_timeout_fails_and_refunds(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> None:
    fake.script.create_failures = [429] * 100
    # The hold decision reads the store's clock: the job is made 59.5 s old (of a 60 s
    # budget) before the runner starts, so no hold fits in what is left (holds are at
    # least 1 s), however long the 429 answers take to arrive.
    clock = FakeClock()
    core = await start_core(
        tmp_path, fake, frontend, clock=clock, started=False, timeout_seconds=60
    )
    try:
        ack = await core.service.submit(edit(frontend, image=png()))
        clock.advance(59.5)
        await core.start()
        job = await finish(core, ack.job.id)
        assert job.state == JobState.FAILED
        assert "busy" in frontend.failures[0][1]
        assert await ledger_kinds(core) == ["grant", "reserve", "refund"]
    finally:
        await core.close()


async def test_the_whole_pipeline_on_each_database(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend, db_url: str
) -> None:
    settings = make_settings(
        tmp_path,
        fake.base_url,
        storage={"url": db_url, "data_dir": str(tmp_path / "data")},
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
    )
    core = await build_core(settings, {"slack": frontend})
    assert core.runner is not None
    core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1))
    await core.start()
    try:
        acks = [
            await core.service.submit(edit(frontend, key=f"p{i}", image=png())) for i in range(4)
        ]
        for ack in acks:
            assert (await finish(core, ack.job.id)).state == JobState.SUCCEEDED
        assert len(fake.creates) == 4
        assert (await core.service.credits(ALICE)).balance == 1200 - 4 * 120
    finally:
        await core.close()


async def test_a_change_of_the_runner_limits_applies_everywhere(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> None:
    """``Worker.set_limits`` is the one way to change them at run time (issue 25): the
    dispatcher's concurrency, whether results are kept, and the poller's bounds follow
    at once (the pipeline used to derive the last two once, at construction)."""
    fake.script.polls_before_done = 3
    core = await start_core(tmp_path, fake, frontend, max_concurrent=1, per_user_concurrent=3)
    assert core.runner is not None
    runner, pipeline = core.runner, core.runner.pipeline
    peak = 0
    try:
        assert not pipeline.keep_outputs
        runner.set_limits(replace(runner.limits, max_concurrent=3, keep_images_hours=24))
        assert pipeline.keep_outputs
        acks = [await core.service.submit(edit(frontend, key=f"k{i}")) for i in range(3)]

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, runner.active_jobs)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        for ack in acks:
            assert (await finish(core, ack.job.id)).state == JobState.SUCCEEDED
        watcher.cancel()
        assert peak == 3, "three at once after the change, not the one configured"
        kept = sorted(p.name for p in pipeline.output_dir.iterdir())
        assert len(kept) == 3, "results kept for retention once keep_images_hours is set"

        model = acks[0].job.model
        learnt = pipeline.poller.durations(model)
        runner.set_limits(replace(runner.limits, poll_initial=0.5, poll_max=7.0))
        poller = pipeline.poller
        assert (poller.initial, poller.floor, poller.cap) == (0.5, 0.25, 7.0)
        assert learnt and poller.durations(model) == learnt, "what it learnt is kept"
    finally:
        await core.close()
