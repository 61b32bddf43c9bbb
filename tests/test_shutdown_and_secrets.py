"""Whole processes: secrets never reach any output; signals stop the bot safely."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.fakes.coretoday import FakeCoreToday
from tests.support import (
    HANG_GUARD_SECONDS,
    balance,
    cat_png,
    environment,
    kill_mid_job,
    ledger_kinds,
    run,
    start,
)

SLACK_TOKEN = "xoxb-123456789012-abcdefghijklmnop"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DISCORD_TOKEN = "MTAxNTk2.discord-token-value.abcdefghijklmnop"


async def test_a_full_job_at_debug_level_leaks_no_secret(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    fake.script.create_failures = [429]  # exercise the retry logging path too
    env = environment(
        tmp_path,
        fake,
        KONTEXT_LOG__LEVEL="debug",
        KONTEXT_LOG__FORMAT="json",
        KONTEXT_SLACK__BOT_TOKEN=SLACK_TOKEN,
        KONTEXT_SLACK__SIGNING_SECRET=SIGNING_SECRET,
        KONTEXT_DISCORD__TOKEN=DISCORD_TOKEN,
        KONTEXT_STORAGE__URL=f"sqlite:///{tmp_path / 'kontext.db'}",
    )
    image = cat_png(tmp_path / "cat.png")
    result = await run(["console", "--image", str(image), "make it a watercolor"], env, tmp_path)
    assert result.code == 0, result.stderr
    checked = await run(["check-config"], env, tmp_path)
    output = result.stdout + result.stderr + checked.stdout + checked.stderr
    assert '"event"' in result.stderr  # debug JSON logging really ran
    api_key = env["KONTEXT_PROVIDER__API_KEY"]
    assert fake.creates[-1].headers["Authorization"] == f"Bearer {api_key}"
    for secret in (api_key, SLACK_TOKEN, SIGNING_SECRET, DISCORD_TOKEN):
        assert secret not in output


async def test_second_signal_stops_at_once_and_safely(tmp_path: Path, fake: FakeCoreToday) -> None:
    env = environment(
        tmp_path,
        fake,
        KONTEXT_JOBS__LEASE_SECONDS="0.5",
        KONTEXT_JOBS__SHUTDOWN_GRACE_SECONDS="3600",
    )
    await kill_mid_job(tmp_path, fake, env, tmp_path / "orphan.png")
    for prediction in fake.predictions.values():
        prediction.outcome = "never"  # the job stays in flight while the bot stops
    polls_before = fake.polls
    bot = await start(["run"], env, tmp_path)
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while fake.polls <= polls_before:  # the bot took the job over
            await asyncio.sleep(0.01)
    bot.send_signal(signal.SIGTERM)
    seen = b""
    assert bot.stderr is not None
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while b"stopping: no new requests" not in seen:  # the first signal was taken
            line = await bot.stderr.readline()
            assert line, seen.decode()
            seen += line
    assert bot.returncode is None  # waiting for the job, within the grace period
    bot.send_signal(signal.SIGTERM)
    _, rest = await asyncio.wait_for(bot.communicate(), timeout=HANG_GUARD_SECONDS)
    err = seen + rest
    assert bot.returncode == 0, err.decode()
    assert "second stop signal" in err.decode()
    assert await ledger_kinds(env) == ["grant", "reserve"]  # neither charged nor refunded
    assert await balance(tmp_path, fake) == 1080
    # The next start finishes the job, still without submitting it again.
    for prediction in fake.predictions.values():
        prediction.outcome = "succeeded"
    result = await run(
        ["console", "--image", str(tmp_path / "cat.png"), "--out", str(tmp_path / "2.png"), "x"],
        env,
        tmp_path,
    )
    assert result.code == 0, result.stderr
    assert (tmp_path / "orphan.png").is_file()
    assert len(fake.creates) == 2
    assert await ledger_kinds(env) == ["charge", "charge", "grant", "reserve", "reserve"]
