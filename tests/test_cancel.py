"""Cancel (issue 26, bot.jobs.cancellation): the requester or an admin stops a job. Queued:
removed and refunded at once. At the provider: the provider's own cancel (the real
core.today client against the fake, which records the DELETE), refunded when the
provider says it stopped; a result that wins the race is delivered and charged, and the
requester is told; BFL has no cancel, so the job goes on; a cancel recorded before a
restart is honoured after it, refunded once. Everything through the real core."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.app import build_core
from bot.chat import texts
from bot.chat.conversation import Conversation, Said
from bot.credits.ledger import EntryKind
from bot.domain import EditOptions, EditRequest, Job, JobState, UserRef
from tests.fakes import bfl as bfl_fake
from tests.fakes import coretoday as coretoday_fake
from tests.fakes import replicate as replicate_fake
from tests.recording import RecordingFrontend
from tests.support import HANG_GUARD_SECONDS, make_settings, png

ALICE = UserRef("slack", "T1", "U1")
BOB = UserRef("slack", "T1", "U2")
ADMIN = UserRef("slack", "T1", "UADMIN")


def settings_for(tmp_path: Path, base_url: str, **more: Any) -> Any:
    return make_settings(
        tmp_path,
        base_url,
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
        credits={"admins": [str(ADMIN)]},
        **more,
    )


async def submit(core: Any, frontend: RecordingFrontend, key: str) -> Job:
    ack = await core.service.submit(
        EditRequest(
            ALICE,
            "make it a watercolor",
            EditOptions(),
            (frontend.attach(f"{key}.png", png()),),
            {},
            key,
        )
    )
    job: Job = ack.job
    return job


async def until(check: Callable[[], Any]) -> Any:
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not (found := await check()):
            await asyncio.sleep(0.01)
    return found


async def refunds(core: Any, job_id: str) -> int:
    entries = await core.service.history(ALICE, 50)
    return sum(1 for e in entries if e.kind == EntryKind.REFUND and e.job_id == job_id)


async def test_a_queued_job_is_removed_and_refunded_at_once(tmp_path: Path) -> None:
    frontend = RecordingFrontend()
    core = await build_core(settings_for(tmp_path, "http://127.0.0.1:9"), {"slack": frontend})
    try:  # no runner started: the job waits in the queue
        job = await submit(core, frontend, "q")
        conversation = Conversation(core.service, texts.Style())
        stranger = await conversation.cancel(BOB, job.id)
        still = await core.store.get(job.id)
        said = await conversation.read(ALICE, "cancel")
        stored = await core.store.get(job.id)
        again = await conversation.cancel(ALICE, job.id)
        nothing = await conversation.read(ALICE, "cancel")
        # Discord's /kontext with a prompt of just "cancel" (the options path) too.
        slash = await conversation.read_options(ALICE, "cancel")
        balance = (await core.service.credits(ALICE)).balance
        refunded = await refunds(core, job.id)
        await until(lambda: _told(frontend))
    finally:
        await core.close()
    assert "Only the person who asked for this edit, or an admin" in stranger
    assert still is not None and still.state == JobState.QUEUED
    assert isinstance(said, Said) and not said.mistake
    assert f"Canceled job {job.id[:8]} before it started: 120 credits refunded" in said.text
    assert stored is not None and stored.state == JobState.CANCELED
    # Its own kind, not bad input: history says "canceled", not "canceled: user input".
    assert stored.error_kind == "canceled"
    assert texts.job_outcome(stored) == ("canceled", "refunded")
    assert "already finished" in again
    assert isinstance(nothing, Said) and "no edit in progress" in nothing.text
    assert isinstance(slash, Said) and slash.text == nothing.text
    assert balance == 1200 and refunded == 1
    # Its status message goes and the requester hears why; nothing is posted.
    assert frontend.delivered == []
    assert [m for _, m in frontend.failures] == [texts.withdrawn_text(1200)]


async def test_at_the_provider_the_cancel_is_sent_and_refunded_once_confirmed(
    tmp_path: Path,
) -> None:
    frontend = RecordingFrontend()
    async with coretoday_fake.FakeCoreToday() as fake:
        fake.script.outcome = "never"
        core = await build_core(settings_for(tmp_path, fake.base_url), {"slack": frontend})
        await core.start()
        try:
            job = await submit(core, frontend, "p")
            await until(lambda: _running_at_provider(core, job.id))
            answer = await Conversation(core.service, texts.Style()).cancel(ADMIN, job.id)
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                done = await core.runner.wait_for(job.id)
            balance = (await core.service.credits(ALICE)).balance
            refunded = await refunds(core, job.id)
        finally:
            await core.close()
    assert "Asked the image service to stop" in answer, "an admin may cancel anyone's"
    assert done.state == JobState.CANCELED and done.error_kind == "canceled"
    assert fake.cancels == 1
    assert balance == 1200 and refunded == 1
    assert frontend.delivered == [], "nothing posted"
    assert [m for _, m in frontend.failures] == [texts.canceled_text(1200)]


async def test_a_result_that_wins_the_race_is_delivered_charged_and_told(tmp_path: Path) -> None:
    frontend = RecordingFrontend()
    async with coretoday_fake.FakeCoreToday() as fake:
        fake.script.outcome = "never"
        fake.script.cancel_ignored = True  # the prediction had already finished
        core = await build_core(settings_for(tmp_path, fake.base_url), {"slack": frontend})
        await core.start()
        try:
            job = await submit(core, frontend, "r")
            running = await until(lambda: _running_at_provider(core, job.id))
            answer = await Conversation(core.service, texts.Style()).cancel(ALICE)
            await until(lambda: _cancels(fake))
            prediction = fake.predictions[running.prediction_id]
            prediction.outcome, prediction.polls_left = "succeeded", 0
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                done = await core.runner.wait_for(job.id)
            balance = (await core.service.credits(ALICE)).balance
        finally:
            await core.close()
    assert "Asked the image service to stop" in answer
    assert done.state == JobState.SUCCEEDED and len(frontend.delivered) == 1
    assert balance == 1200 - 120
    assert texts.CANCEL_TOO_LATE in frontend.told


async def test_bfl_cannot_cancel_so_the_job_goes_on(tmp_path: Path) -> None:
    frontend = RecordingFrontend()
    async with bfl_fake.FakeBfl() as fake:
        fake.script.outcome = "never"
        settings = settings_for(
            tmp_path,
            fake.base_url,
            provider={"name": "bfl", "api_key": bfl_fake.DEFAULT_KEY, "model": "flux-kontext-pro"},
        )
        core = await build_core(settings, {"slack": frontend})
        await core.start()
        try:
            job = await submit(core, frontend, "b")
            running = await until(lambda: _running_at_provider(core, job.id))
            answer = await Conversation(core.service, texts.Style()).cancel(ALICE, job.id)
            stored = await core.store.get(job.id)
            key = running.prediction_id.rsplit("id=", 1)[-1]
            prediction = fake.predictions[key]
            prediction.outcome, prediction.polls_left = "succeeded", 0
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                done = await core.runner.wait_for(job.id)
        finally:
            await core.close()
    assert "cannot be canceled" in answer and "goes on" in answer
    assert stored is not None and stored.state == JobState.RUNNING
    assert not stored.cancel_requested
    assert done.state == JobState.SUCCEEDED and len(frontend.delivered) == 1
    assert texts.CANCEL_TOO_LATE not in frontend.told


async def test_a_cancel_recorded_before_a_restart_is_honoured_after_it(tmp_path: Path) -> None:
    frontend = RecordingFrontend()
    async with coretoday_fake.FakeCoreToday() as fake:
        fake.script.outcome = "never"
        settings = settings_for(tmp_path, fake.base_url)
        first = await build_core(settings, {"slack": frontend})
        await first.start()
        job = await submit(first, frontend, "k")
        await until(lambda: _running_at_provider(first, job.id))
        await first.close()  # the process stops; the job stays running at the provider
        second = await build_core(settings, {"slack": frontend})
        try:
            # Asked while no process runs it: recorded, and honoured by the next one.
            answer = await Conversation(second.service, texts.Style()).cancel(ALICE, job.id)
            await second.start()
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                done = await second.runner.wait_for(job.id)
            balance = (await second.service.credits(ALICE)).balance
            refunded = await refunds(second, job.id)
        finally:
            await second.close()
    assert "Asked the image service to stop" in answer
    assert done.state == JobState.CANCELED and fake.cancels == 1
    assert balance == 1200 and refunded == 1
    assert len(fake.creates) == 1, "resumed, not submitted again"


async def _running_at_provider(core: Any, job_id: str) -> Job | None:
    job = await core.store.get(job_id)
    return job if job is not None and job.prediction_id else None


async def _cancels(fake: coretoday_fake.FakeCoreToday) -> bool:
    return fake.cancels > 0


async def _told(frontend: RecordingFrontend) -> bool:
    return bool(frontend.failures)


async def test_at_replicate_the_cancel_is_its_cancel_route(tmp_path: Path) -> None:
    frontend = RecordingFrontend()
    async with replicate_fake.FakeReplicate() as fake:
        fake.script.outcome = "never"
        settings = settings_for(
            tmp_path,
            fake.base_url,
            provider={
                "name": "replicate",
                "api_key": replicate_fake.DEFAULT_KEY,
                "model": "black-forest-labs/flux-kontext-pro",
            },
        )
        core = await build_core(settings, {"slack": frontend})
        await core.start()
        try:
            job = await submit(core, frontend, "rep")
            await until(lambda: _running_at_provider(core, job.id))
            answer = await Conversation(core.service, texts.Style()).cancel(ALICE)
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                done = await core.runner.wait_for(job.id)
            balance = (await core.service.credits(ALICE)).balance
        finally:
            await core.close()
    assert "Asked the image service to stop" in answer
    assert done.state == JobState.CANCELED
    assert fake.cancels == 1 and balance == 1200
    assert frontend.delivered == []


async def test_a_cancel_before_the_create_sends_nothing_to_the_provider(tmp_path: Path) -> None:
    """Asked after a runner took the job, before its create: nothing is sent, refunded."""
    from bot.jobs.cancellation import ask_to_cancel

    frontend = RecordingFrontend()
    async with coretoday_fake.FakeCoreToday() as fake:
        core = await build_core(settings_for(tmp_path, fake.base_url), {"slack": frontend})
        try:
            job = await submit(core, frontend, "pre")
            # A runner that took the job and died before its create; the cancel comes.
            (taken,) = await core.store.claim("gone", ["slack"], 1, 60.0)
            assert taken.id == job.id and await ask_to_cancel(core.store, job.id)
            await core.store.release_leases("gone")
            await core.start()
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                done = await core.runner.wait_for(job.id)
            balance = (await core.service.credits(ALICE)).balance
            refunded = await refunds(core, job.id)
        finally:
            await core.close()
    assert done.state == JobState.CANCELED
    assert fake.creates == [] and fake.cancels == 0
    assert balance == 1200 and refunded == 1
    assert [m for _, m in frontend.failures] == [texts.canceled_text(1200)]
