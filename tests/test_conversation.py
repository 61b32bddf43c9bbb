"""The conversation layer: what a message means and what the bot answers, the same on
every platform (issue 14 items 2, 3, 4, 10 and 11 are decided here once)."""

from __future__ import annotations

from adapters.discord.style import DiscordStyle
from adapters.slack.style import SlackStyle
from bot.chat.conversation import Conversation, Edit, NextEdit, Said
from bot.chat.texts import Style
from bot.credits import ledger
from bot.credits.limits import Limits
from bot.credits.policies import PolicyBook
from bot.domain import SEED_MAX, AttachmentSource, EditOptions, EditRequest, UserRef
from bot.jobs.queue import Refunded
from bot.jobs.service import KontextService
from bot.jobstore import JobStore
from bot.providers.base import ProviderCapabilities
from bot.storage import Database
from tests.support import FakeClock

ALICE = UserRef("slack", "T1", "U1")
OWNER = UserRef("slack", "T1", "U0")
BASE = Limits(allowance=1200, period="daily")


def service(db: Database, clock: FakeClock) -> KontextService:
    return KontextService(
        JobStore(db, BASE, clock, PolicyBook(BASE, [])),
        ProviderCapabilities(cost_per_image=120),
        provider_name="coretoday",
        model="m",
        max_input_bytes=20_000_000,
        admins=[str(OWNER)],
    )


def file(name: str, content_type: str | None) -> AttachmentSource:
    return AttachmentSource(name=name, content_type=content_type, size=10, locator=name)


async def jobs_and_entries(db: Database) -> tuple[int, int]:
    async with db.read() as conn:
        entries = await ledger.recent_entries(conn, ALICE, 50)
    return len([e for e in entries if e.job_id]), len(entries)


async def test_files_that_are_no_image_are_refused_by_name_and_cost_nothing(
    db: Database, clock: FakeClock
) -> None:
    talk = Conversation(service(db, clock), SlackStyle())
    for files in (
        [file("notes.txt", "text/plain")],
        [file("report.pdf", "application/pdf")],
        [file("IMG_0001.HEIC", "image/heic")],
        [file("notes.txt", None)],  # no declared type: the name says text
    ):
        said = await talk.read(ALICE, "make it blue", files=files)
        assert isinstance(said, Said) and said.mistake, files
        assert f"'{files[0].name}'" in said.text
        assert "JPEG, PNG, GIF or WebP" in said.text and "nothing was charged" in said.text
    assert await jobs_and_entries(db) == (0, 0), "nothing stored, nothing reserved"


async def test_the_image_among_other_files_is_the_input_and_no_file_is_text_to_image(
    db: Database, clock: FakeClock
) -> None:
    talk = Conversation(service(db, clock), SlackStyle())
    picture = file("cat.png", "image/png")
    edit = await talk.read(ALICE, "make it blue", files=[file("notes.txt", "text/plain"), picture])
    assert isinstance(edit, Edit) and edit.inputs == (picture,)
    undeclared = file("F0123", None)  # Slack sometimes describes a share by its id only
    edit = await talk.read(ALICE, "make it blue", files=[undeclared])
    assert isinstance(edit, Edit) and edit.inputs == (undeclared,)
    text_to_image = await talk.read(ALICE, "a cat in space")
    assert isinstance(text_to_image, Edit) and text_to_image.inputs == ()


async def test_each_platforms_help_names_only_its_own_commands(
    db: Database, clock: FakeClock
) -> None:
    svc = service(db, clock)
    discord_help = Conversation(svc, DiscordStyle()).help()
    slack_help = Conversation(svc, SlackStyle()).help()
    assert "/kontext-credits" in discord_help and "/kontext-admin" in discord_help
    assert "/kontext-history" in discord_help
    assert "kontext-bot console history" in Conversation(svc, Style()).help()
    for slack_only in ("/kontext credits", "/kontext help", "/kontext grant", "/kontext history"):
        assert slack_only not in discord_help
        assert slack_only in slack_help
    assert "/kontext-" not in slack_help
    assert "120 credits" in discord_help and "120 credits" in slack_help


async def test_a_slash_prompt_of_help_or_credits_answers_free(
    db: Database, clock: FakeClock
) -> None:
    talk = Conversation(service(db, clock), DiscordStyle())
    credits = await talk.read_options(ALICE, " Credits ")
    assert isinstance(credits, Said) and "**1200 credits**" in credits.text
    helped = await talk.read_options(ALICE, "help")
    assert isinstance(helped, Said) and "/kontext-credits" in helped.text
    history = await talk.read_options(ALICE, "History")
    assert isinstance(history, Said) and history.text == "You have no edits yet."
    edit = await talk.read_options(ALICE, "credits card on a table")
    assert isinstance(edit, Edit) and edit.prompt == "credits card on a table"
    async with db.read() as conn:
        assert [e.kind.value for e in await ledger.recent_entries(conn, ALICE, 5)] == ["grant"]


async def test_allowance_answers_name_the_period_in_force(db: Database, clock: FakeClock) -> None:
    svc = service(db, clock)
    await svc.admin_set_limits(OWNER, period="weekly")
    for style, expected in ((SlackStyle(), "<@U1>"), (DiscordStyle(), "<@U1>"), (Style(), "U1")):
        talk = Conversation(svc, style)
        said = await talk.read(OWNER, "allowance <@U1|alice> 600")
        assert isinstance(said, Said)
        assert said.text == f"Allowance for {expected}: 600 credits weekly.", said.text


async def test_the_bot_picks_a_seed_when_none_is_given_and_keeps_a_given_one(
    db: Database, clock: FakeClock
) -> None:
    svc = service(db, clock)
    talk = Conversation(svc, SlackStyle())

    def request(key: str, seed: int | None) -> EditRequest:
        return EditRequest(
            user=ALICE,
            prompt="make it blue",
            options=EditOptions(seed=seed),
            attachments=(),
            reply_target={},
            idempotency_key=key,
        )

    chosen = await talk.submit(request("k1", None))
    assert chosen.accepted and chosen.job_id
    job = await svc.job(chosen.job_id)
    assert job is not None and job.options.seed is not None and 0 <= job.options.seed <= SEED_MAX
    assert f"Seed {job.options.seed}." in chosen.text
    given = await talk.submit(request("k2", 42))
    kept = await svc.job(str(given.job_id))
    assert kept is not None and kept.options.seed == 42 and kept.seed == 42


async def test_admin_text_commands_are_refused_to_others_and_recorded_for_admins(
    db: Database, clock: FakeClock
) -> None:
    talk = Conversation(service(db, clock), SlackStyle())
    refused = await talk.read(ALICE, "grant <@U1> 600")
    assert isinstance(refused, Said) and "Only the bot's admins" in refused.text
    granted = await talk.read(OWNER, "grant <@U1|alice> 600")
    assert isinstance(granted, Said) and granted.text == "<@U1> now has 1800 credits."
    paused = await talk.read(OWNER, "pause")
    assert isinstance(paused, Said) and "this workspace" in paused.text


def test_slack_escapes_control_characters_in_echoed_text() -> None:
    prompt = "make it <!channel> & <@U999> <!subteam^S1> > blue"
    echoed = SlackStyle().echo(prompt)
    assert "<" not in echoed and ">" not in echoed.replace("&gt;", "")
    assert echoed == ("make it &lt;!channel&gt; &amp; &lt;@U999&gt; &lt;!subteam^S1&gt; &gt; blue")


# -- history (issue 19) --------------------------------------------------------------------------


async def _queue(talk: Conversation, clock: FakeClock, user: UserRef, prompt: str) -> str:
    clock.advance(60)
    submitted = await talk.submit(
        EditRequest(
            user=user,
            prompt=prompt,
            options=EditOptions(seed=7),
            attachments=(),
            reply_target={},
            idempotency_key=f"test:{user}:{prompt}",
        )
    )
    assert submitted.accepted and submitted.job_id, submitted.text
    return submitted.job_id


async def test_history_is_the_ten_newest_own_jobs_with_outcome_cost_and_link(
    db: Database, clock: FakeClock
) -> None:
    core = service(db, clock)
    talk = Conversation(core, DiscordStyle())
    await core.grant(ALICE, 1200, actor="test")
    ids = [await _queue(talk, clock, ALICE, f"edit number {n}") for n in range(12)]
    await _queue(talk, clock, OWNER, "the owner's edit")
    store = core.store
    for n, job_id in enumerate(ids):
        job = await store.get(job_id)
        assert job is not None
        if n == 10:
            await store.finish(job, Refunded("provider_unavailable", "down"))
        elif n != 11:  # the newest stays queued
            await store.mark_succeeded(job, {"link": f"https://example.test/{n}"})
    balance = (await core.credits(ALICE)).balance

    answer = await talk.history(ALICE, buttons=True)
    lines = answer.text.splitlines()
    assert lines[0] == "Your last 10 edits:"
    assert [line.split("`")[1] for line in lines[1:]] == [
        f"edit number {n}" for n in range(11, 1, -1)
    ]
    assert "in progress" in lines[1] and "120 reserved" in lines[1]
    assert "failed: provider unavailable" in lines[2] and "refunded" in lines[2]
    assert "delivered" in lines[3] and "120 credits" in lines[3] and "seed 7" in lines[3]
    assert "[result](https://example.test/9)" in lines[3] and "· m ·" in lines[3]
    assert "the owner's edit" not in answer.text
    # Buttons for the five newest delivered results, numbered as the lines are.
    assert answer.buttons == tuple(ids[n] for n in (9, 8, 7, 6, 5))
    assert lines[3].startswith("**#1** <t:") and lines[7].startswith("**#5** <t:")
    assert "#" not in lines[8].split("`")[0]
    assert (await core.credits(ALICE)).balance == balance, "free"

    # Read as a typed request too, on every platform's grammar.
    said = await talk.read(ALICE, "/kontext history")
    assert isinstance(said, Said) and not said.mistake and said.text.startswith("Your last 10")


async def test_history_of_someone_else_only_for_admins(db: Database, clock: FakeClock) -> None:
    core = service(db, clock)
    talk = Conversation(core, SlackStyle())
    await _queue(talk, clock, ALICE, "alice's edit")
    refused = await talk.read(ALICE, "history <@U0|owner>")
    assert isinstance(refused, Said) and refused.mistake
    assert refused.text == (
        "You can only see your own history; only the bot's admins can see someone else's."
    )
    seen = await talk.read(OWNER, "history <@U1|alice>")
    assert isinstance(seen, Said) and "alice's edit" in seen.text
    assert seen.text.startswith("<@U1>'s last 1 edit:")
    by_ref = await Conversation(core, Style()).read(OWNER, "history slack:T1:U1")
    assert isinstance(by_ref, Said) and by_ref.text.startswith("U1's last 1 edit:")
    bad = await talk.read(OWNER, "history slack:T1:U1!")
    assert isinstance(bad, Said) and bad.mistake and "not a valid user id" in bad.text
    empty = await talk.read(OWNER, "history")
    assert isinstance(empty, Said) and empty.text == "You have no edits yet."


async def test_history_reads_one_user_through_the_user_index(
    db: Database, clock: FakeClock
) -> None:
    """The query is answered from the (user_ref, created_at) index, newest first, not by
    scanning and sorting every job. SQLite's plan shows it; PostgreSQL picks plans by
    statistics (an empty table is cheapest to scan), so there the test forbids the
    sequential scan for its transaction and checks the index can serve the query."""
    from sqlalchemy import text

    query = (
        "SELECT * FROM jobs WHERE user_ref = 'slack:T1:U1' "
        "ORDER BY created_at DESC, id DESC LIMIT 10"
    )
    async with db.read() as conn:
        if db.engine.dialect.name == "sqlite":
            plan = await conn.execute(text(f"EXPLAIN QUERY PLAN {query}"))
            details = " ".join(str(row[-1]) for row in plan)
        else:
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = await conn.execute(text(f"EXPLAIN {query}"))
            details = " ".join(str(row[0]) for row in plan)
    assert "ix_jobs_user_ref_created_at" in details, details


async def test_a_prompt_that_starts_with_history_is_still_an_edit(
    db: Database, clock: FakeClock
) -> None:
    talk = Conversation(service(db, clock), SlackStyle())
    for prompt in ("history painting style", "history museum", "historyless"):
        edit = await talk.read(ALICE, prompt)
        assert isinstance(edit, Edit) and edit.prompt == prompt, prompt


async def test_what_a_results_buttons_mean_is_decided_here(db: Database, clock: FakeClock) -> None:
    """Re-roll, Edit again and Delete (issue 25): the platform shows the answer; the
    seed of a re-roll comes from the service like every seed nobody gave."""
    core = service(db, clock)
    talk = Conversation(core, Style())
    job_id = await _queue(talk, clock, ALICE, "a cat in space")  # seed 7

    again = await talk.reroll(job_id)
    assert isinstance(again, Edit)
    assert again.prompt == "a cat in space" and again.options.seed is None
    rerolled = await talk.submit(
        EditRequest(
            user=UserRef("slack", "T1", "U2"),
            prompt=again.prompt,
            options=again.options,
            attachments=(),
            reply_target={},
            idempotency_key="test:reroll",
        )
    )
    job = await core.job(rerolled.job_id or "")
    assert job is not None and job.seed is not None and 0 <= job.seed <= SEED_MAX
    gone = await talk.reroll("0" * 32)
    assert isinstance(gone, Said) and gone.mistake and "can't re-roll" in gone.text

    assert await talk.edit_again(job_id, None) == Said(
        "That result's image is gone, so there is nothing to edit.", mistake=True
    )
    shown = file("result.png", "image/png")
    assert await talk.edit_again(job_id, shown) == NextEdit((shown,), None)

    async def yes() -> bool:
        return True

    assert await talk.may_delete(ALICE, job_id) is None, "the one who asked"
    assert await talk.may_delete(OWNER, job_id) is None, "an admin"
    bob = UserRef("slack", "T1", "U9")
    refused = await talk.may_delete(bob, job_id)
    assert isinstance(refused, Said) and refused.text.startswith("Only the person who asked")
    # A platform's admin counts only when the operator set credits.platform_admins.
    assert await talk.may_delete(bob, job_id, yes) == refused
