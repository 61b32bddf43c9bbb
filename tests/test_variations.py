"""Variations (``--n COUNT``, issue 27) through the core: one request makes that many
jobs, each its own seed, reserved together or refused whole, each charged or refunded on
its own, and posted together once, by the last one to end; also when two runners finish
siblings at once and after a hard kill of the console mid-group."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_core
from bot.chat.commands import EditCommand, parse_command
from bot.chat.conversation import Conversation, Edit
from bot.chat.texts import Style
from bot.domain import EditOptions, EditRequest, JobState, UserRef
from bot.errors import UserInputError
from bot.providers.base import ProviderCapabilities
from tests.fakes.coretoday import FakeCoreToday
from tests.recording import RecordingFrontend
from tests.support import (
    HANG_GUARD_SECONDS,
    balance,
    cat_png,
    environment,
    ledger_kinds,
    make_settings,
    png,
    run,
    start,
)

ALICE = UserRef("slack", "T1", "U1")


async def started_core(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend, **sections: Any
) -> Any:
    jobs = {"per_user_concurrent": 4, **sections.pop("jobs", {})}
    settings = make_settings(tmp_path, fake.base_url, jobs=jobs, **sections)
    core = await build_core(settings, {"slack": frontend})
    core.provider.wait_initial = 0.01
    core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1))
    await core.start()
    return core


def request(
    frontend: RecordingFrontend, count: int, key: str = "k1", **options: Any
) -> EditRequest:
    return EditRequest(
        ALICE,
        "make it a watercolor",
        EditOptions(count=count, **options),
        (frontend.attach(f"{key}.png", png()),),
        {"c": 1},
        key,
    )


async def ledger_of(core: Any) -> list[str]:
    return sorted(e.kind.value for e in await core.service.history(ALICE, 50))


async def wait_done(core: Any, ids: list[str]) -> list[Any]:
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        return [await core.runner.wait_for(i) for i in ids]


# -- the grammar --------------------------------------------------------------------------


def test_n_is_parsed_and_bounded() -> None:
    caps = ProviderCapabilities()
    parsed = parse_command("a cat --n 4", has_image=True, capabilities=caps)
    assert isinstance(parsed, EditCommand) and parsed.options.count == 4
    assert parse_command("a cat", has_image=True, capabilities=caps).options.count == 1  # type: ignore[union-attr]
    for wrong in ("--n 5", "--n 0", "--n two", "--n=-1"):
        with pytest.raises(UserInputError, match="from 1 to 4"):
            parse_command(f"a cat {wrong}", has_image=True, capabilities=caps)
    with pytest.raises(UserInputError, match="from 1 to 2"):
        parse_command("a cat --n 3", has_image=True, capabilities=caps, max_count=2)
    with pytest.raises(UserInputError, match="one image per request"):
        parse_command("a cat --n 2", has_image=True, capabilities=caps, max_count=1)


# -- one request, four jobs, one post --------------------------------------------------------


async def test_n4_posts_one_group_with_four_images_and_four_charges(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    frontend = RecordingFrontend()
    core = await started_core(tmp_path, fake, frontend)
    try:
        answer = await Conversation(core.service, Style()).submit(request(frontend, 4))
        assert answer.accepted
        # The total before anything runs, and every seed.
        assert "Queued 4 variations" in answer.text and "480 credits reserved" in answer.text
        ack = await core.service.submit(request(frontend, 4))  # the same event again
        assert ack.duplicate and len(ack.jobs) == 4
        jobs = await wait_done(core, [j.id for j in ack.jobs])
        assert [j.state for j in jobs] == [JobState.SUCCEEDED] * 4
        assert [j.group_index for j in jobs] == [1, 2, 3, 4]
        (group,) = frontend.groups
        assert len(group.results) == 4 and not group.failed
        assert frontend.delivered == [] and frontend.failures == []
        seeds = [c.input["seed"] for c in fake.creates if c.input]
        assert len(set(seeds)) == 4, "each variation has its own seed"
        assert sorted(seeds) == sorted(j.options.seed for j in jobs)
        assert await ledger_of(core) == sorted(["grant"] + ["reserve", "charge"] * 4)
        assert await core.store.balance(ALICE) == 1200 - 4 * 120
        # Outputs are not kept once delivered (no retention configured).
        assert not any((tmp_path / "data" / "outputs").glob("*.png"))
    finally:
        await core.close()


async def test_a_given_seed_counts_up(tmp_path: Path, fake: FakeCoreToday) -> None:
    frontend = RecordingFrontend()
    core = await started_core(tmp_path, fake, frontend)
    try:
        ack = await core.service.submit(request(frontend, 3, seed=41))
        assert [j.options.seed for j in ack.jobs] == [41, 42, 43]
        await wait_done(core, [j.id for j in ack.jobs])
        assert sorted(c.input["seed"] for c in fake.creates if c.input) == [41, 42, 43]
    finally:
        await core.close()


async def test_one_failing_variation_is_named_and_refunded(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    frontend = RecordingFrontend()
    # The provider refuses the first create it gets (its content rule).
    fake.script.create_failures = [422]
    core = await started_core(tmp_path, fake, frontend)
    try:
        ack = await core.service.submit(request(frontend, 4))
        jobs = await wait_done(core, [j.id for j in ack.jobs])
        states = sorted(j.state.value for j in jobs)
        assert states == ["failed", "succeeded", "succeeded", "succeeded"]
        (group,) = frontend.groups
        (failed,) = group.failed
        assert len(group.results) == 3
        assert failed.job.state == JobState.FAILED and failed.failure
        assert frontend.failures == [], "the failure is named in the group's message"
        kinds = await ledger_of(core)
        assert kinds.count("charge") == 3 and kinds.count("refund") == 1
        assert await core.store.balance(ALICE) == 1200 - 3 * 120
    finally:
        await core.close()


async def test_too_few_credits_for_all_refuses_whole_and_free(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    frontend = RecordingFrontend()
    core = await started_core(tmp_path, fake, frontend, credits={"allowance": 400})
    try:
        answer = await Conversation(core.service, Style()).submit(request(frontend, 4))
        assert not answer.accepted
        assert "400 credits" in answer.text and "4 variations cost 480" in answer.text
        assert "nothing was charged" in answer.text
        assert (await core.service.credits(ALICE)).balance == 400
        assert "reserve" not in await ledger_of(core)
        assert await core.store.recent_for_user(ALICE, 10) == []
        assert fake.creates == []
        # Three fit: taken.
        ack = await core.service.submit(request(frontend, 3, key="k2"))
        assert len(ack.jobs) == 3 and ack.balance_after == 40
    finally:
        await core.close()


async def test_a_group_speaks_the_language_of_its_request(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    """Every variation keeps its request's language (``jobs.locale``): the refusal, the
    acknowledgement and the group's message, with its failed member and refund, are in
    German, though the runner's own tasks were started in English."""
    frontend = RecordingFrontend()
    fake.script.create_failures = [422]
    core = await started_core(tmp_path, fake, frontend, credits={"allowance": 400})
    try:
        conversation = Conversation(core.service, Style())
        assert await conversation.speak(ALICE, "de-DE") == "de"
        refused = await conversation.submit(request(frontend, 4))
        assert not refused.accepted
        assert refused.text.startswith(
            "Du hast 400 Credits und 4 Varianten kosten zusammen 480, daher wurde keine "
            "gestartet und nichts berechnet. Bitte um weniger (--n) oder warte."
        )
        assert await core.store.recent_for_user(ALICE, 10) == []
        answer = await conversation.submit(request(frontend, 3, key="k2"))
        assert answer.accepted and answer.text.startswith("3 Varianten eingereiht")
        assert "360 Credits reserviert (3 x 120), 40 übrig" in answer.text
        ack = await core.service.submit(request(frontend, 3, key="k2"))  # the event again
        assert [j.locale for j in ack.jobs] == ["de"] * 3
        jobs = await wait_done(core, [j.id for j in ack.jobs])
        assert sorted(j.state.value for j in jobs) == ["failed", "succeeded", "succeeded"]
        (text,) = frontend.group_texts
        heading, *lines = text.splitlines()
        assert heading == "2 von 3 Varianten · 240 Credits verbraucht · 160 übrig"
        (failed,) = [line for line in lines if "fehlgeschlagen" in line]
        assert failed.endswith("Seine 120 Credits wurden erstattet.")
        assert sum(line.startswith("#") and ": Seed " in line for line in lines) == 2
        assert await core.store.balance(ALICE) == 400 - 2 * 120
    finally:
        await core.close()


async def test_a_canceled_variation_is_named_refunded_in_the_group(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    """Cancel one queued variation: refunded at once, not told alone, and named with its
    refund in the group's one message when its siblings end (the runner starts only
    after the cancel, so the member is queued when it is canceled)."""
    frontend = RecordingFrontend()
    settings = make_settings(tmp_path, fake.base_url, jobs={"per_user_concurrent": 4})
    core = await build_core(settings, {"slack": frontend})
    core.provider.wait_initial = 0.01
    core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1))
    try:
        ack = await core.service.submit(request(frontend, 3))
        third = ack.jobs[2]
        answer = await core.service.cancel(ALICE, third.id)
        assert answer.job is not None and answer.job.id == third.id
        assert await core.store.balance(ALICE) == 1200 - 2 * 120
        await core.start()
        jobs = await wait_done(core, [j.id for j in ack.jobs])
        assert [j.state for j in jobs] == [JobState.SUCCEEDED] * 2 + [JobState.CANCELED]
        (group,) = frontend.groups
        assert [m.job.group_index for m in group.failed] == [3]
        (text,) = frontend.group_texts
        assert "#3 failed:" in text and "Its 120 credits were refunded." in text
        assert text.splitlines()[0] == "2 of 3 variations · 240 credits used · 960 left"
        assert frontend.failures == [], "the canceled one is told in the group's message"
        kinds = await ledger_of(core)
        assert kinds.count("charge") == 2 and kinds.count("refund") == 1
        assert len(fake.creates) == 2, "the canceled one never reached the provider"
    finally:
        await core.close()


async def test_the_shared_budget_counts_the_whole_group(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    frontend = RecordingFrontend()
    core = await started_core(tmp_path, fake, frontend, credits={"budget": 300})
    try:
        answer = await Conversation(core.service, Style()).submit(request(frontend, 3))
        assert not answer.accepted and "shared budget" in answer.text
        assert await core.store.recent_for_user(ALICE, 10) == []
    finally:
        await core.close()


async def test_n_out_of_range_is_refused_free(tmp_path: Path, fake: FakeCoreToday) -> None:
    frontend = RecordingFrontend()
    core = await started_core(tmp_path, fake, frontend, jobs={"max_variations": 2})
    try:
        conversation = Conversation(core.service, Style())
        said = await conversation.read(ALICE, "/kontext a cat --n 3", files=())
        assert not isinstance(said, Edit) and said.mistake and "from 1 to 2" in said.text
        answer = await conversation.submit(request(frontend, 3))
        assert not answer.accepted and "from 1 to 2" in answer.text
        assert await core.store.recent_for_user(ALICE, 10) == []
        assert await core.store.balance(ALICE) == 0  # not even the allowance was granted
    finally:
        await core.close()


# -- exactly once ----------------------------------------------------------------------------


async def test_siblings_finishing_at_once_post_the_group_once(
    tmp_path: Path, fake: FakeCoreToday, db_url: str
) -> None:
    """Runners record the last members' images and decide about their group at the same
    moment (each its own connection: on PostgreSQL, concurrent transactions on the
    rows): in every round exactly one of them is told to post."""
    frontend = RecordingFrontend()
    settings = make_settings(
        tmp_path,
        fake.base_url,
        storage={"url": db_url},
        jobs={"per_user_concurrent": 100},
        credits={"allowance": 10_000},
    )
    core = await build_core(settings, {"slack": frontend}, with_runner=False)
    store = core.store
    try:
        for round_ in range(5):
            ack = await core.service.submit(request(frontend, 3, key=f"round{round_}"))
            for job in ack.jobs:
                assert await store.claim(f"runner-{job.group_index}", ["slack"], 1, 60.0)

            async def finish(job: Any) -> Any:
                path = tmp_path / f"{job.id}.png"
                path.write_bytes(png())
                await store.mark_delivering(job.id, str(path), {"width": 64}, user=ALICE)
                return await store.group_turn(job, f"runner-{job.group_index}", 60.0)

            turns = await asyncio.gather(*(finish(job) for job in ack.jobs))
            assert sorted(t.post for t in turns) == [False, False, True], round_
            # Asked again (a redelivered finish), nobody else is told to post.
            for job in ack.jobs:
                again = await store.group_turn(job, f"runner-{job.group_index}", 60.0)
                assert not again.post or again.resumed
    finally:
        await core.close()


async def test_a_waiting_variation_is_not_claimed_again(
    tmp_path: Path, fake: FakeCoreToday, db_url: str
) -> None:
    frontend = RecordingFrontend()
    settings = make_settings(tmp_path, fake.base_url, storage={"url": db_url})
    core = await build_core(settings, {"slack": frontend}, with_runner=False)
    try:
        ack = await core.service.submit(request(frontend, 2))
        store = core.store
        first, second = ack.jobs
        (claimed,) = await store.claim("r", ["slack"], 1, 60.0)
        assert claimed.id == first.id
        await store.mark_delivering(first.id, str(tmp_path / "x.png"), {}, user=ALICE)
        turn = await store.group_turn(first, "r", 60.0)
        assert not turn.post
        # Its lease is gone, yet the next claims take only the sibling.
        assert [j.id for j in await store.claim("other", ["slack"], 5, 60.0)] == [second.id]
        assert await store.claim("third", ["slack"], 5, 60.0) == []
    finally:
        await core.close()


# -- the console, and a hard kill mid-group ---------------------------------------------------


async def test_console_n2_writes_two_files_and_charges_twice(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    image = cat_png(tmp_path / "cat.png")
    out = tmp_path / "result.png"
    result = await run(
        ["console", "--image", str(image), "--out", str(out), "make it a watercolor", "--n", "2"],
        environment(tmp_path, fake, KONTEXT_JOBS__PER_USER_CONCURRENT="2"),
        tmp_path,
    )
    assert result.code == 0, result.stderr
    written = result.stdout.split()
    assert written == [str(tmp_path / "result-1.png"), str(tmp_path / "result-2.png")]
    assert all(Path(p).is_file() for p in written)
    assert "Queued 2 variations" in result.stderr and "240 credits reserved" in result.stderr
    assert "2 of 2 variations" in result.stderr
    assert await balance(tmp_path, fake) == 1200 - 240


async def test_console_killed_mid_group_posts_once_after_restart(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    """One variation is finished and waits, the other is at the provider when the process
    is killed hard; the next start finishes the second and posts the group once: two
    charges, no refund, no second create."""
    env = environment(
        tmp_path,
        fake,
        KONTEXT_JOBS__PER_USER_CONCURRENT="2",
        KONTEXT_JOBS__LEASE_SECONDS="0.5",
    )
    image = cat_png(tmp_path / "cat.png")
    out = tmp_path / "result.png"
    fake.script.outcome = "never"
    process = await start(
        ["console", "--image", str(image), "--out", str(out), "a watercolor", "--n", "2"],
        env,
        tmp_path,
    )
    outputs = tmp_path / "data" / "outputs"
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while len(fake.predictions) < 2:
            await asyncio.sleep(0.01)
        # The first variation finishes and waits; the second never does while this lives.
        first, second = list(fake.predictions.values())
        first.outcome = "succeeded"
        while not any(outputs.glob("*.png")):
            await asyncio.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    assert not (tmp_path / "result-1.png").exists(), "nothing is posted before the last ends"
    assert await balance(tmp_path, fake, env) == 1200 - 240  # reserved only
    second.outcome = "succeeded"
    fake.script.outcome = "succeeded"
    bot = await start(["run"], env, tmp_path)
    try:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while not (tmp_path / "result-2.png").exists():
                await asyncio.sleep(0.02)
            while (
                await balance(tmp_path, fake, env) != 1200 - 240
                or (await ledger_kinds(env)).count("charge") < 2
            ):
                await asyncio.sleep(0.05)
    finally:
        bot.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(bot.communicate(), timeout=HANG_GUARD_SECONDS)
    assert bot.returncode == 0, err.decode()
    assert (tmp_path / "result-1.png").is_file()
    assert len(fake.creates) == 2, "no variation was submitted twice"
    assert err.decode().count("2 of 2 variations") == 1
    assert await ledger_kinds(env) == ["charge", "charge", "grant", "reserve", "reserve"]


async def test_console_n4_without_the_credits_is_refused_whole(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    image = cat_png(tmp_path / "cat.png")
    env = environment(tmp_path, fake, KONTEXT_CREDITS__ALLOWANCE="300")
    result = await run(
        ["console", "--image", str(image), "a watercolor", "--n", "4"], env, tmp_path
    )
    assert result.code == 1, result.stderr
    assert "4 variations cost 480" in result.stderr
    assert fake.creates == []
    assert await balance(tmp_path, fake, env) == 300


async def test_console_n_out_of_range_is_refused_free(tmp_path: Path, fake: FakeCoreToday) -> None:
    image = cat_png(tmp_path / "cat.png")
    result = await run(
        ["console", "--image", str(image), "a watercolor", "--n", "9"],
        environment(tmp_path, fake),
        tmp_path,
    )
    assert result.code == 1 and "from 1 to 4" in result.stderr
    assert fake.creates == []
