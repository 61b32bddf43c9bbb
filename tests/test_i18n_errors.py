"""The bot's refusals and failures in the asker's language (issue 28): a text that
reaches a person through an error (``KontextError.user_message``) is translated like
every other answer, through the real paths, while the log's ``detail`` stays English.

Every expectation is read from the shipped catalog through ``bot.i18n`` (and checked to
differ from the English), so none of these can pass with English words.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.slack.style import SlackStyle
from bot import i18n
from bot.app import Core, build_core
from bot.chat import texts
from bot.domain import EditOptions, EditRequest, JobState, UserRef
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.slack import BOT_USER_ID, TEAM_ID
from tests.recording import RecordingFrontend
from tests.support import HANG_GUARD_SECONDS, cat_png, environment, make_settings, png, run
from tests.test_slack import USER, Bot, message_event, serving
from tests.test_welcome import opened

NOT_AN_IMAGE = (
    "{files} is not an image I can edit ({kind}). Attach one of: {formats}; nothing was charged.",
    "{files} are not an image I can edit ({kind}). Attach one of: {formats}; nothing was charged.",
)
MODERATED = "The image service's safety filter refused this edit. Try a different prompt or image."
TOO_LARGE = "The image is {size}; the limit is {limit}."


def translated(code: str, message: str) -> str:
    """``message`` in the shipped catalog of ``code``: never the English itself."""
    with i18n.using(code):
        said = i18n._(message)
    assert said != message, f"{code} has no translation of {message!r}"
    return said


@pytest.fixture
async def slack_bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    async for bot in serving("socket", tmp_path, fake):
        yield bot


async def test_a_korean_slack_user_who_attaches_no_image_is_refused_in_korean(
    slack_bot: Bot,
) -> None:
    bot = slack_bot
    bot.slack.user_locales[USER] = "ko-KR"
    notes = bot.slack.add_file("notes.txt", b"just words", "text/plain")
    event = message_event("app_mention", f"{time.time():.6f}", f"<@{BOT_USER_ID}> blue", [notes])
    await bot.event(event, "EvKoTxt")
    (notice,) = await bot.ephemerals(1)
    with i18n.using("ko"):
        formats = bot.core.service.accepted_formats()
        korean = i18n.ngettext(*NOT_AN_IMAGE, 1).format(
            files="'notes.txt'", kind="text/plain", formats=formats
        )
    assert korean != NOT_AN_IMAGE[0].format(files="'notes.txt'", kind="text/plain", formats=formats)
    assert notice == korean, notice
    assert "또는" in formats, "the list of formats is Korean too"
    assert bot.provider.creates == []
    balance = await bot.core.service.credits(UserRef("slack", TEAM_ID, USER))
    assert balance.balance == 1200


async def test_the_slack_welcome_speaks_the_openers_language(slack_bot: Bot) -> None:
    bot = slack_bot
    bot.slack.user_locales[USER] = "ko-KR"
    await bot.event(opened("D0ALICE", user=USER), "EvKoHello")
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not bot.slack.history.get("D0ALICE"):
            await asyncio.sleep(0.02)
    (hello,) = bot.slack.history["D0ALICE"]
    with i18n.using("ko"):
        korean = texts.welcome_text(SlackStyle(), bot.core.service.cost_per_image)
    assert not korean.startswith("Hi!")
    assert hello["text"] == korean


async def test_a_german_console_is_told_of_the_safety_filter_in_german(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    fake.script.outcome = "moderated"
    image = cat_png(tmp_path / "cat.png")
    result = await run(
        ["console", "--image", str(image), "make it a watercolor"],
        environment(tmp_path, fake, LANG="de_DE.UTF-8"),
        tmp_path,
    )
    assert result.code == 1, result.stderr
    assert translated("de", MODERATED) in result.stderr
    assert translated("de", "Your credits were refunded.") in result.stderr
    assert MODERATED not in result.stderr
    # The console's own lines too: the balance after the refund.
    with i18n.using("de"):
        balance = i18n.ngettext(
            "balance: {balance} credits ({n} image)", "balance: {balance} credits ({n} images)", 10
        ).format(balance=1200, n=10)
    assert not balance.startswith("balance")
    assert balance in result.stderr


async def test_a_japanese_console_users_mistyped_user_reference_is_answered_in_japanese(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    """``history USERREF`` in the console: a reference typed wrong is refused in the
    terminal's language, by the parser the operator CLI shares."""
    result = await run(
        ["console", "history slack:T1:no!body"],
        environment(tmp_path, fake, LANG="ja_JP.UTF-8"),
        tmp_path,
    )
    refused = translated("ja", "'{part}' is not a valid user id in '{text}'")
    assert result.code != 0, result
    assert refused.format(part="no!body", text="slack:T1:no!body") in result.stderr, result


ALICE = UserRef("slack", "T1", "UALICE")


@pytest.fixture
def frontend() -> RecordingFrontend:
    return RecordingFrontend()


async def queued_core(tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend) -> Core:
    settings = make_settings(
        tmp_path,
        fake.base_url,
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
        images={"max_input_bytes": 2_500_000},
    )
    core = await build_core(settings, {"slack": frontend})
    assert core.runner is not None
    core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1))
    return core


async def test_an_image_found_too_large_when_the_job_runs_is_refused_in_the_jobs_language(
    tmp_path: Path, fake: FakeCoreToday, frontend: RecordingFrontend
) -> None:
    """The request is German and passes (the file was small when it was asked for); by
    the time the runner fetches it, it is over images.max_input_bytes. The runner speaks
    no language of its own: the refusal is German because the job is."""
    core = await queued_core(tmp_path, fake, frontend)
    try:
        request = EditRequest(
            user=ALICE,
            prompt="make it a watercolor",
            options=EditOptions(),
            attachments=(frontend.attach("cat.png", png()),),
            reply_target={"channel": "C1"},
            idempotency_key="evt-de",
        )
        with i18n.using("de"):
            ack = await core.service.submit(request)
        assert ack.job.locale == "de" and i18n.current_code() == i18n.SOURCE
        frontend.files["cat.png"] = png() + b"\0" * 3_000_000  # grew after it was queued
        await core.start()
        assert core.runner is not None
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            job = await core.runner.wait_for(ack.job.id)
        assert job.state == JobState.FAILED and job.error_kind == "user_input"
        ((_, message),) = frontend.failures
        # 2,500,001 bytes fetched (the cap and one more) against 2,500,000: German
        # numbers, German words.
        german = translated("de", TOO_LARGE).format(size="2,5 MB", limit="2,5 MB")
        assert message == f"{german} {translated('de', 'Your credits were refunded.')}"
        # What the logs and the dashboard keep is English.
        assert job.error_message == "input image is 2500001 bytes, limit 2500000"
        assert fake.creates == []
        assert (await core.service.credits(ALICE)).balance == 1200
    finally:
        await core.close()
