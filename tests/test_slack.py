"""The Slack adapter: real slack_bolt and slack_sdk against the fake Slack, in HTTP mode.

The tests play Slack's side: they send signed slash commands, interactivity payloads
and events to the bot's /slack/events endpoint and read what the bot did through the
fake Web API (views opened, messages, uploads).
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import re
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import structlog
from PIL import Image
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.adapter import SlackAdapter
from adapters.slack.reply import SlackReply
from bot.app import Core, build_core
from bot.domain import EditOptions, EditResult, Job, JobState, UserRef
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.replicate import DEFAULT_KEY as REPLICATE_KEY
from tests.fakes.replicate import FakeReplicate
from tests.fakes.slack import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    TEAM_ID,
    FakeSlack,
    event_callback,
    http_mode_environment,
    sign_request,
)
from tests.support import (
    HANG_GUARD_SECONDS,
    TWO_MODELS,
    FakeClock,
    LoopClock,
    environment,
    make_settings,
    png,
    run,
    start,
)

USER = "U0ALICE"
ADMIN = "U0ADMIN"
CHANNEL = "C0ART"


@dataclass
class Answer:
    """What Slack got back from the app: an HTTP answer or a Socket Mode ack."""

    text: str
    body: dict[str, Any] | None

    def json(self) -> dict[str, Any]:
        assert self.body is not None, self.text
        return self.body


@dataclass
class Bot:
    mode: str
    core: Core
    adapter: SlackAdapter
    slack: FakeSlack
    provider: FakeCoreToday
    http: httpx.AsyncClient

    async def post(self, body: str, content_type: str, **headers: str) -> Answer:
        signed = sign_request(body)
        signed.update(headers)
        response = await self.http.post(
            "/slack/events", content=body, headers={"Content-Type": content_type, **signed}
        )
        assert response.status_code == 200, response.text
        is_json = response.headers.get("content-type", "").startswith("application/json")
        return Answer(response.text, response.json() if is_json else None)

    async def deliver(self, kind: str, payload: dict[str, Any], retry: int = 0) -> Answer:
        acked = await self.slack.send_envelope(kind, payload, retry_attempt=retry)
        return Answer(str(acked.get("text", "")), acked)

    async def command(self, text: str, user: str = USER, channel: str = CHANNEL) -> Answer:
        fields = {
            "token": "legacy",
            "team_id": TEAM_ID,
            "channel_id": channel,
            "user_id": user,
            "command": "/kontext",
            "text": text,
            "trigger_id": "trigger-1",
            "response_url": f"{self.slack.base_url}/response/1",
        }
        if self.mode == "socket":
            return await self.deliver("slash_commands", fields)
        return await self.post(urlencode(fields), "application/x-www-form-urlencoded")

    async def interact(self, payload: dict[str, Any]) -> Answer:
        if self.mode == "socket":
            return await self.deliver("interactive", payload)
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded")

    async def event(self, event: dict[str, Any], event_id: str, retry: int = 0) -> Answer:
        envelope = event_callback(event, event_id)
        if self.mode == "socket":
            return await self.deliver("events_api", envelope, retry)
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        return await self.post(
            json.dumps(envelope), "application/json", **(headers if retry else {})
        )

    async def opened_view(self) -> dict[str, Any]:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while not self.slack.calls_to("views.open"):
                await asyncio.sleep(0.01)
        return list(self.slack.views.values())[-1]  # as the fake opened it, with its id

    async def uploaded(self, count: int = 1) -> list[Any]:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while len([u for u in self.slack.uploads.values() if u.channel]) < count:
                await asyncio.sleep(0.02)
        return [u for u in self.slack.uploads.values() if u.channel]

    def private_texts(self) -> list[str]:
        """What only the requester saw: ephemeral messages, and the ephemeral answers
        through a slash command's response_url (the modal's acknowledgement goes there,
        costing no Web API call)."""
        texts = [c.args["text"] for c in self.slack.calls_to("chat.postEphemeral")]
        return texts + [
            r["text"] for r in self.slack.responses if r.get("response_type") == "ephemeral"
        ]

    async def ephemerals(self, count: int = 1) -> list[str]:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while len(self.private_texts()) < count:
                await asyncio.sleep(0.02)
        return self.private_texts()

    async def status_texts(self, job_count: int = 1) -> list[str]:
        """The public status messages' texts as they now read (posts, then their edits)."""
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while len(self.slack.calls_to("chat.postMessage")) < job_count:
                await asyncio.sleep(0.02)
        return [m["text"] for m in self.slack.messages_in(CHANNEL) if m.get("metadata")]


@pytest.fixture(params=["http", "socket"])
async def bot(
    request: pytest.FixtureRequest, tmp_path: Path, fake: FakeCoreToday
) -> AsyncIterator[Bot]:
    async for served in serving(str(request.param), tmp_path, fake):
        yield served


async def serving(
    mode: str, tmp_path: Path, fake: FakeCoreToday, **sections: Any
) -> AsyncIterator[Bot]:
    """The bot on the fake Slack in ``mode``, with ``sections`` added to its settings."""
    async with FakeSlack() as slack:
        credentials = (
            {"signing_secret": SIGNING_SECRET, "http_host": "127.0.0.1", "http_port": 0}
            if mode == "http"
            else {"app_token": APP_TOKEN}
        )
        settings = make_settings(
            tmp_path,
            fake.base_url,
            slack={
                "enabled": True,
                "mode": mode,
                "bot_token": BOT_TOKEN,
                "api_base_url": slack.api_url,
                "file_hosts": ["127.0.0.1"],
                **credentials,
            },
            jobs={
                "poll_initial_seconds": 0.02,
                "poll_max_seconds": 0.05,
                **sections.pop("jobs", {}),
            },
            credits={"admins": [f"slack:{TEAM_ID}:{ADMIN}"], **sections.pop("credits", {})},
            **sections,
        )
        core = await build_core(settings, lambda service: [SlackAdapter(settings.slack, service)])
        adapter = core.frontends["slack"]
        assert isinstance(adapter, SlackAdapter)
        assert core.runner is not None
        core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1))
        await core.start()
        await adapter.start()
        assert await adapter.ready()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{adapter.port or 9}") as http:
            yield Bot(mode, core, adapter, slack, fake, http)
        await adapter.stop()
        await core.close()


def submission(
    bot: Bot,
    view: dict[str, Any],
    *,
    prompt: str,
    file: dict[str, Any] | None,
    ratio: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """The view_submission Slack sends for ``view`` (one the bot opened), filled in; a
    select left alone submits its initial option."""
    values: dict[str, dict[str, dict[str, Any]]] = {
        "prompt": {"text": {"value": prompt}},
        "ratio": {"value": {"selected_option": {"value": ratio} if ratio else None}},
        "seed": {"value": {"value": None}},
        "format": {"value": {"selected_option": {"value": "png"}}},
    }
    model_block = next((b for b in view["blocks"] if b.get("block_id") == "model"), None)
    if model_block is not None:
        initial = model_block["element"].get("initial_option")
        chosen = {"value": model} if model else initial
        values["model"] = {"value": {"selected_option": chosen}}
    if any(block.get("block_id") == "image" for block in view["blocks"]):
        values["image"] = {"file": {"files": [file] if file else []}}
    return bot.slack.view_submission(view["id"], user=USER, values=values)


async def balance(bot: Bot) -> int:
    return (await bot.core.service.credits(UserRef("slack", TEAM_ID, USER))).balance


async def test_slash_command_modal_with_file_posts_result_in_channel(bot: Bot) -> None:
    answer = await bot.command("make it a watercolor --ar 4:3")
    assert answer.text == ""
    view = await bot.opened_view()
    assert view["callback_id"] == "kontext_edit"
    prompt_block = next(b for b in view["blocks"] if b["block_id"] == "prompt")
    assert prompt_block["element"]["initial_value"] == "make it a watercolor"
    ratio_block = next(b for b in view["blocks"] if b["block_id"] == "ratio")
    assert ratio_block["element"]["initial_option"]["value"] == "4:3"
    assert json.loads(view["private_metadata"])["channel"] == CHANNEL

    original = png()
    file = bot.slack.add_file("cat.png", original)
    done = await bot.interact(
        submission(bot, view, prompt="make it a watercolor", file=file, ratio="4:3")
    )
    assert done.text == "" and not (done.body or {}).get("response_action")
    (upload,) = await bot.uploaded()
    assert upload.channel == CHANNEL and upload.thread_ts is None
    assert "make it a watercolor" in (upload.initial_comment or "")
    assert Image.open(io.BytesIO(upload.data)).size == (16, 12)
    (create,) = bot.provider.creates
    assert create.file_bytes == original
    assert create.input is not None and create.input["aspect_ratio"] == "4:3"
    # The file was fetched with the bot token from the allowed host only.
    assert bot.slack.file_requests == [
        (f"/files-pri/{TEAM_ID}-{file['id']}/cat.png", f"Bearer {BOT_TOKEN}")
    ]
    assert any("Queued (position" in text for text in await bot.ephemerals())
    assert await balance(bot) == 1080
    statuses = [c.args["text"] for c in bot.slack.calls_to("chat.update")]
    assert any("Done" in text for text in statuses)


async def test_help_credits_and_bad_options_answer_in_the_ack(bot: Bot) -> None:
    # A plain-text answer to a slash command is shown to the user alone.
    help_answer = await bot.command("help")
    assert "--ar RATIO" in help_answer.text and "120 credits" in help_answer.text
    credits = await bot.command("credits")
    assert "1200 credits" in credits.text
    bad = await bot.command("make it pop --ar 7:3")
    assert "16:9" in bad.text
    assert bot.slack.calls_to("views.open") == []
    assert bot.provider.received == []


async def test_invalid_modal_input_keeps_the_modal_open(bot: Bot) -> None:
    await bot.command("")
    view = await bot.opened_view()
    answer = await bot.interact(submission(bot, view, prompt="   ", file=None))
    assert answer.json()["response_action"] == "errors"
    assert "Write what to change" in answer.json()["errors"]["prompt"]
    assert await bot.core.service.history(UserRef("slack", TEAM_ID, USER)) == []


def message_event(
    kind: str,
    ts: str,
    text: str,
    files: list[dict[str, Any]] | None = None,
    thread_ts: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": kind,
        "channel": CHANNEL,
        "user": USER,
        "text": text,
        "ts": ts,
        "team": TEAM_ID,
    }
    if files is not None:
        event["files"] = files
        if kind == "message":
            event["subtype"] = "file_share"
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


async def test_mention_with_file_is_one_request_and_threads_continue_it(bot: Bot) -> None:
    file = bot.slack.add_file("portrait.png", png((10, 200, 10)))
    ts = f"{time.time() - 60:.6f}"
    text = f"<@{BOT_USER_ID}> make her smile --seed 7"
    await bot.event(message_event("message", ts, text, [file]), "Ev1")
    await bot.event(message_event("app_mention", ts, text, [file]), "Ev2")
    (first,) = await bot.uploaded()
    looked_up = len(bot.slack.calls_to("files.info"))
    # Slack redelivers an event it thinks timed out: recognised before any slow work.
    await bot.event(message_event("message", ts, text, [file]), "Ev1", retry=1)
    assert first.thread_ts == ts and first.channel == CHANNEL
    assert "seed 7" in (first.initial_comment or "")
    assert len(bot.provider.creates) == 1
    assert bot.provider.creates[0].input["prompt"] == "make her smile"  # type: ignore[index]
    # Three deliveries of one message: one acknowledgement (the repeats say nothing),
    # and it is the job's status message, not a message of its own (issue 24).
    assert not bot.slack.calls_to("chat.postEphemeral")
    (status,) = [c for c in bot.slack.calls_to("chat.postMessage") if c.args["channel"] == CHANNEL]
    assert "Queued (position" in status.args["text"]
    assert "120 credits reserved" in status.args["text"]

    # "now make her wave" in the thread edits the bot's own latest result.
    reply = message_event(
        "message", f"{time.time() + 1:.6f}", f"<@{BOT_USER_ID}> now make her wave", thread_ts=ts
    )
    await bot.event(reply, "Ev3")
    uploads = await bot.uploaded(2)
    assert uploads[1].thread_ts == ts
    assert bot.provider.creates[1].file_bytes == first.data
    # The events described their files: nothing was looked up with files.info, and the
    # redelivery did no slow work (one conversations.replies, for the thread edit).
    assert looked_up == 0 and not bot.slack.calls_to("files.info")
    assert len(bot.slack.calls_to("conversations.replies")) == 1
    assert await balance(bot) == 1200 - 240
    # The Web API calls (status, uploads, look-ups) share kept-alive connections: a few
    # when calls overlap, not one per call (18 calls, 18 connections without a session).
    peers = bot.slack.api_peers
    assert len(peers) >= 12 and len(set(peers)) <= len(peers) // 3, (len(peers), len(set(peers)))


async def test_message_shortcut_edits_that_messages_image(bot: Bot) -> None:
    file = bot.slack.add_file("product.png", png((50, 50, 200)))
    shortcut = {
        "type": "message_action",
        "callback_id": "kontext_edit_message",
        "trigger_id": "t2",
        "team": {"id": TEAM_ID},
        "channel": {"id": CHANNEL},
        "user": {"id": USER},
        "message": {"ts": "1764000001.000200", "text": "our new mug", "files": [file]},
    }
    await bot.interact(shortcut)
    view = await bot.opened_view()
    assert all(block["block_id"] != "image" for block in view["blocks"])
    await bot.interact(submission(bot, view, prompt="put it on a beach", file=None))
    (upload,) = await bot.uploaded()
    assert upload.thread_ts == "1764000001.000200"
    assert bot.provider.creates[0].file_bytes == png((50, 50, 200))


async def test_shortcut_on_a_message_without_image(bot: Bot) -> None:
    shortcut = {
        "type": "message_action",
        "callback_id": "kontext_edit_message",
        "trigger_id": "t3",
        "team": {"id": TEAM_ID},
        "channel": {"id": CHANNEL},
        "user": {"id": USER},
        "message": {"ts": "1764000001.000300", "text": "just words"},
    }
    await bot.interact(shortcut)
    assert "no image" in (await bot.ephemerals())[0]
    assert bot.slack.calls_to("views.open") == []


async def test_missing_files_read_scope_is_explained_and_refunded(bot: Bot) -> None:
    bot.slack.files_read_scope = False
    file = bot.slack.add_file("cat.png", png())
    await bot.event(
        message_event("message", "1764000002.000100", f"<@{BOT_USER_ID}> blue", [file]), "Ev9"
    )
    messages = await bot.ephemerals(1)  # the acknowledgement is the status message
    assert any("files:read" in text and "refunded" in text for text in messages)
    assert bot.provider.creates == []
    assert await balance(bot) == 1200


async def test_files_outside_the_allowed_hosts_get_no_token(bot: Bot) -> None:
    bot.adapter.files.file_hosts = {"files.slack.com"}
    file = bot.slack.add_file("cat.png", png())
    await bot.event(
        message_event("message", "1764000003.000100", f"<@{BOT_USER_ID}> blue", [file]), "Ev10"
    )
    messages = await bot.ephemerals(1)
    assert any("not hosted by Slack" in text for text in messages)
    assert bot.slack.file_requests == []
    assert await balance(bot) == 1200


async def test_requests_with_a_bad_or_stale_signature_are_refused(bot: Bot) -> None:
    if bot.mode == "socket":
        pytest.skip("request signatures exist only in HTTP mode")
    body = urlencode({"team_id": TEAM_ID, "user_id": USER, "command": "/kontext", "text": "help"})
    forged = sign_request(body, secret="not-the-secret")
    answer = await bot.http.post(
        "/slack/events",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", **forged},
    )
    assert answer.status_code == 401
    stale = sign_request(body, timestamp=int(time.time()) - 600)
    answer = await bot.http.post(
        "/slack/events",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", **stale},
    )
    assert answer.status_code == 401


async def test_rate_limited_slack_calls_are_retried(bot: Bot) -> None:
    bot.slack.rate_limit_methods["files.getUploadURLExternal"] = 2
    await bot.command("")
    view = await bot.opened_view()
    await bot.interact(submission(bot, view, prompt="make it blue", file=None))
    await bot.uploaded()
    # Two answers were 429 with Retry-After; slack_sdk's handler retried the upload.
    assert len(bot.slack.calls_to("files.getUploadURLExternal")) == 3
    assert bot.slack.rate_limit_methods["files.getUploadURLExternal"] == 0
    limited = bot.core.metrics.platform_rate_limited.labels("slack", "files.getUploadURLExternal")
    assert limited._value.get() == 2


async def test_quota_refusal_is_ephemeral_and_costs_nothing(bot: Bot) -> None:
    user = UserRef("slack", TEAM_ID, USER)
    await bot.core.service.grant(user, -1150, actor="test")  # 50 credits left
    file = bot.slack.add_file("cat.png", png())
    await bot.event(
        message_event("message", f"{time.time():.6f}", f"<@{BOT_USER_ID}> blue", [file]), "EvQ"
    )
    (message,) = await bot.ephemerals()
    assert "You have 50 credits and an image costs 120" in message
    assert bot.provider.received == []
    assert await balance(bot) == 50


@pytest.mark.parametrize(
    ("data", "mimetype", "words"),
    [
        (b"%PDF-1.7 not an image", "application/pdf", "not an image I can edit"),
        (png()[:70], "image/png", "could not be read"),
        (b"GIF89a\x01\x00", "image/gif", "could not be read"),
    ],
)
async def test_non_image_and_corrupt_files_cost_nothing(
    bot: Bot, data: bytes, mimetype: str, words: str
) -> None:
    bot.slack.add_file("upload.bin", data, mimetype)
    await bot.command("")
    view = await bot.opened_view()
    file = bot.slack.file_object(next(iter(bot.slack.files)))
    answer = await bot.interact(submission(bot, view, prompt="make it blue", file=file))
    errors = (answer.body or {}).get("errors")
    if errors:
        # A file the event already declares as no image is refused in the form itself,
        # which stays open for another file.
        messages = [errors["prompt"]]
    else:
        messages = await bot.ephemerals()
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not any(words in text for text in messages):
            await asyncio.sleep(0.02)
            messages = bot.private_texts()
    assert bot.provider.creates == []
    assert await balance(bot) == 1200


async def test_kontext_bot_run_serves_slack_and_stops_cleanly(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with FakeSlack() as slack:
        env = environment(tmp_path, fake, **http_mode_environment(slack.api_url, port))
        process = await start(["run"], env, tmp_path)
        body = urlencode(
            {
                "team_id": TEAM_ID,
                "user_id": USER,
                "channel_id": CHANNEL,
                "command": "/kontext",
                "text": "help",
                "trigger_id": "t",
            }
        )
        async with httpx.AsyncClient() as client:
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                while True:
                    try:
                        answer = await client.post(
                            f"http://127.0.0.1:{port}/slack/events",
                            content=body,
                            headers={
                                "Content-Type": "application/x-www-form-urlencoded",
                                **sign_request(body),
                            },
                        )
                        break
                    except httpx.ConnectError:
                        assert process.returncode is None, "the bot exited"
                        await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=HANG_GUARD_SECONDS)
    assert answer.status_code == 200 and "--ar RATIO" in answer.text
    assert process.returncode == 0, err.decode()
    assert "no platform adapter" not in err.decode()
    assert BOT_TOKEN not in err.decode() and SIGNING_SECRET not in err.decode()


async def test_run_refuses_slack_without_its_secret(tmp_path: Path, fake: FakeCoreToday) -> None:
    env = environment(
        tmp_path, fake, KONTEXT_SLACK__ENABLED="true", KONTEXT_SLACK__BOT_TOKEN=BOT_TOKEN
    )
    result = await run(["run"], env, tmp_path)
    assert result.code == 2
    assert "slack.app_token is required" in result.stderr


async def test_admins_grant_credits_others_cannot(bot: Bot) -> None:
    refused = await bot.command(f"grant <@{USER}|alice> 600")
    assert "Only the bot's admins" in refused.text
    granted = await bot.command(f"grant <@{USER}|alice> 600", user=ADMIN)
    assert granted.text == f"<@{USER}> now has 1800 credits."
    entries = await bot.core.service.history(UserRef("slack", TEAM_ID, USER))
    assert entries[0].actor == f"slack:{TEAM_ID}:{ADMIN}" and entries[0].amount == 600


async def test_run_says_why_when_slack_refuses_the_token(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    async with FakeSlack() as slack:
        slack.app_token = "xapp-not-this-one"
        env = environment(
            tmp_path,
            fake,
            KONTEXT_SLACK__ENABLED="true",
            KONTEXT_SLACK__BOT_TOKEN=BOT_TOKEN,
            KONTEXT_SLACK__APP_TOKEN=APP_TOKEN,
            KONTEXT_SLACK__API_BASE_URL=slack.api_url,
        )
        result = await run(["run"], env, tmp_path)
    assert result.code == 3
    assert "an adapter could not start" in result.stderr and "invalid_auth" in result.stderr
    assert "Traceback" not in result.stderr
    assert APP_TOKEN not in result.stderr and BOT_TOKEN not in result.stderr


async def test_admin_commands_pause_allowance_and_workspace_admins(bot: Bot) -> None:
    refused = await bot.command("pause", user=USER)
    assert "Only the bot's admins" in refused.text
    bot.core.service.platform_admins = True
    bot.slack.workspace_admins.add("U0WSADMIN")
    paused = await bot.command("pause", user="U0WSADMIN")  # a Slack workspace admin
    assert paused.text.startswith("Paused")
    assert bot.slack.calls_to("users.info")[-1].args["user"] == "U0WSADMIN"
    blocked = await bot.command("make it blue")
    view = await bot.opened_view()
    file = bot.slack.add_file("cat.png", png())
    await bot.interact(submission(bot, view, prompt="make it blue", file=file))
    (notice,) = await bot.ephemerals(1)
    assert "paused" in notice
    assert blocked.text == ""
    assert bot.provider.creates == []

    resumed = await bot.command("resume", user=ADMIN)
    assert resumed.text.startswith("Resumed")
    allowance = await bot.command(f"allowance <@{USER}|alice> 5000 weekly", user=ADMIN)
    assert allowance.text == f"Allowance for <@{USER}>: 5000 credits weekly."
    assert "*5000 credits*" in (await bot.command("credits")).text
    top = await bot.command("top", user=ADMIN)
    assert top.text.startswith("Top spenders this period")
    # A user's credit entries: "ledger" (since "history" lists edits, issue 19).
    ledger = await bot.command(f"ledger <@{USER}>", user=ADMIN)
    assert "grant +5000" in ledger.text


async def test_a_mention_with_only_a_text_file_is_refused_by_name_and_costs_nothing(
    bot: Bot,
) -> None:
    notes = bot.slack.add_file("notes.txt", b"just words", "text/plain")
    ts = f"{time.time():.6f}"
    event = message_event("app_mention", ts, f"<@{BOT_USER_ID}> make it blue", [notes])
    await bot.event(event, "EvTxt")
    (notice,) = await bot.ephemerals(1)
    assert "'notes.txt'" in notice and "not an image I can edit" in notice
    assert "JPEG, PNG, GIF or WebP" in notice
    assert bot.provider.received == [] and bot.provider.creates == []
    assert await balance(bot) == 1200


async def test_a_prompt_cannot_make_the_bots_public_posts_ping_anyone(bot: Bot) -> None:
    file = bot.slack.add_file("cat.png", png())
    ts = f"{time.time():.6f}"
    text = f"<@{BOT_USER_ID}> paint <!channel> and <!subteam^S0123> & <@U0BOB> blue"
    await bot.event(message_event("app_mention", ts, text, [file]), "EvPing")
    (upload,) = await bot.uploaded()
    posted = [c.args["text"] for c in bot.slack.calls_to("chat.postMessage")]
    posted += [c.args["text"] for c in bot.slack.calls_to("chat.update")]
    posted.append(upload.initial_comment or "")
    for text_posted in posted:
        assert "<!channel>" not in text_posted and "<!subteam" not in text_posted
        assert "<@U0BOB>" not in text_posted
    assert "&lt;!channel&gt;" in (upload.initial_comment or "")
    # The seed the bot chose is on the result, so the edit can be reproduced.
    assert re.search(r"seed \d+", upload.initial_comment or "")


# -- a channel the bot is not in (issue 14, defect 6) -----------------------------------


def shortcut_in(bot: Bot, channel: str, files: list[dict[str, Any]], ts: str) -> dict[str, Any]:
    """The message_action payload of the "Edit with Kontext" shortcut; Slack sends it
    from any channel the user can see, with a response_url for answers."""
    return {
        "type": "message_action",
        "callback_id": "kontext_edit_message",
        "trigger_id": f"t-{ts}",
        "team": {"id": TEAM_ID},
        "channel": {"id": channel},
        "user": {"id": USER},
        "message": {"ts": ts, "text": "look", "files": files},
        "response_url": f"{bot.slack.base_url}/response/{ts}",
    }


async def responses(bot: Bot, count: int = 1) -> list[dict[str, Any]]:
    async with asyncio.timeout(15):
        while len(bot.slack.responses) < count:
            await asyncio.sleep(0.02)
    return bot.slack.responses


async def test_requests_in_a_channel_without_the_bot_say_how_to_invite_it(bot: Bot) -> None:
    clock = FakeClock()
    bot.adapter.membership.clock = clock
    outside = bot.slack.add_channel("C0OUTSIDE")
    # The modal was opened while the bot was there; it was removed before the submit,
    # longer ago than the membership answer is kept.
    await bot.command("", channel=outside.id)
    view = await bot.opened_view()
    outside.bot_member = False
    clock.advance(61)
    file = bot.slack.add_file("cat.png", png())
    answer = await bot.interact(submission(bot, view, prompt="make it blue", file=file))
    assert answer.json()["response_action"] == "errors"  # the modal stays open
    assert "/invite @kontext" in answer.json()["errors"]["prompt"]
    assert "Nothing was charged" in answer.json()["errors"]["prompt"]

    # The slash command, with a prompt or without, answers in its ack: no modal.
    opened = len(bot.slack.views)
    for text in ("make it blue", ""):
        refused = await bot.command(text, channel=outside.id)
        assert "/invite @kontext" in refused.text
    assert len(bot.slack.views) == opened
    # Free commands still work there.
    assert "1200 credits" in (await bot.command("credits", channel=outside.id)).text

    # The message shortcut: privately through its response_url, no modal.
    photo = bot.slack.add_file("photo.png", png())
    await bot.interact(shortcut_in(bot, outside.id, [photo], "1764000009.000100"))
    (response,) = await responses(bot)
    assert response["response_type"] == "ephemeral" and "/invite @kontext" in response["text"]
    assert len(bot.slack.views) == opened

    assert bot.provider.received == []
    entries = await bot.core.service.history(UserRef("slack", TEAM_ID, USER))
    assert [e.kind.value for e in entries] == ["grant"]  # the allowance; nothing reserved
    assert await balance(bot) == 1200
    # Nothing was tried in the channel the bot cannot post in.
    assert not bot.slack.calls_to("chat.postEphemeral")
    assert not bot.slack.calls_to("chat.postMessage")


async def test_a_burst_in_one_channel_asks_slack_once(bot: Bot) -> None:
    clock = FakeClock()
    bot.adapter.membership.clock = clock
    answers = await asyncio.gather(bot.command("make it blue"), bot.command("make it red"))
    assert [a.text for a in answers] == ["", ""]
    await bot.command("make it green")
    assert len(bot.slack.calls_to("conversations.info")) == 1
    assert len(bot.slack.calls_to("views.open")) == 3
    clock.advance(61)  # the answer is kept for a minute
    await bot.command("make it gold")
    assert len(bot.slack.calls_to("conversations.info")) == 2


async def test_without_the_read_scope_requests_go_through(bot: Bot) -> None:
    assert bot.slack.scopes is not None
    bot.slack.scopes.discard("channels:read")
    await bot.command("make it blue")
    await bot.command("make it red")
    assert len(bot.slack.calls_to("views.open")) == 2  # the user is not blocked
    assert bot.adapter._scopes_reported == {"channels:read"}


async def test_the_bot_removed_before_delivery_tells_privately_and_refunds(bot: Bot) -> None:
    bot.provider.script.outcome = "never"  # the provider works until the test says
    await bot.command("")
    view = await bot.opened_view()
    file = bot.slack.add_file("cat.png", png())
    await bot.interact(submission(bot, view, prompt="make it blue", file=file))
    async with asyncio.timeout(15):
        while not bot.provider.creates:
            await asyncio.sleep(0.02)
    bot.slack.channel(CHANNEL).bot_member = False  # someone removed the bot meanwhile
    for prediction in bot.provider.predictions.values():
        prediction.outcome = "succeeded"

    # Through the slash command's response_url, after the acknowledgement went there.
    ack, notice = await responses(bot, 2)
    assert "Queued (position" in ack["text"]
    assert notice["response_type"] == "ephemeral"
    assert "could not be delivered" in notice["text"] and "/invite @kontext" in notice["text"]
    assert "refunded" in notice["text"]
    async with asyncio.timeout(15):
        while await balance(bot) != 1200:
            await asyncio.sleep(0.02)
    assert len(bot.provider.creates) == 1
    # Final at the first refusal: not retried as if Slack had been unavailable.
    assert len(bot.slack.calls_to("files.completeUploadExternal")) == 1


def direct_messages(bot: Bot) -> list[str]:
    return [
        c.args["text"] for c in bot.slack.calls_to("chat.postMessage") if c.args["channel"] == USER
    ]


async def test_a_mention_whose_channel_drops_the_bot_is_told_by_dm(bot: Bot) -> None:
    # A mention has no response_url: the notice comes as a DM from the bot, which needs
    # no channel membership.
    bot.provider.script.outcome = "never"
    file = bot.slack.add_file("cat.png", png())
    event = message_event("app_mention", f"{time.time():.6f}", f"<@{BOT_USER_ID}> blue", [file])
    await bot.event(event, "EvGone")
    async with asyncio.timeout(15):
        while not bot.provider.creates:
            await asyncio.sleep(0.02)
    bot.slack.channel(CHANNEL).bot_member = False
    for prediction in bot.provider.predictions.values():
        prediction.outcome = "succeeded"
    async with asyncio.timeout(15):
        while not (dms := direct_messages(bot)):
            await asyncio.sleep(0.02)
    (dm,) = dms
    assert "could not be delivered" in dm and "refunded" in dm
    async with asyncio.timeout(15):
        while await balance(bot) != 1200:
            await asyncio.sleep(0.02)
    assert bot.slack.responses == []


async def test_allowance_answers_name_the_period_in_force_after_a_run_time_change(
    bot: Bot,
) -> None:
    admin = UserRef("slack", TEAM_ID, ADMIN)
    await bot.core.service.admin_set_limits(admin, period="monthly")
    answer = await bot.command(f"allowance <@{USER}|alice> 600", user=ADMIN)
    assert answer.text == f"Allowance for <@{USER}>: 600 credits monthly."


# -- named models ([[models]]) ------------------------------------------------------------

MAX_ID = "black-forest-labs/flux-kontext-max"


@pytest.fixture
async def models_bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    """pro (default) and max, and ultra only in channel C0VIP."""
    ultra = {"name": "ultra", "model": MAX_ID, "cost_per_image": 300, "restricted": True}
    overrides = [{"scope": f"channel:slack:{TEAM_ID}:C0VIP", "models": ["ultra"]}]
    async for served in serving(
        "http", tmp_path, fake, models=[*TWO_MODELS, ultra], credits={"overrides": overrides}
    ):
        yield served


async def test_the_modal_offers_the_models_and_max_charges_max(models_bot: Bot) -> None:
    bot = models_bot
    await bot.command("make it a watercolor --model max")
    view = await bot.opened_view()
    block = next(b for b in view["blocks"] if b["block_id"] == "model")
    labels = [o["text"]["text"] for o in block["element"]["options"]]
    assert labels == ["pro · 120 credits", "max · 240 credits", "ultra · 300 credits"]
    assert block["element"]["initial_option"]["value"] == "max", "--model preselects"
    file = bot.slack.add_file("cat.png", png())
    await bot.interact(submission(bot, view, prompt="make it a watercolor", file=file))
    await bot.uploaded()
    (create,) = bot.provider.creates
    assert create.model == MAX_ID
    assert await balance(bot) == 960
    assert any(
        "model max" in text and "240 credits reserved" in text for text in await bot.ephemerals()
    )


async def test_the_modal_select_picks_the_model_and_unknown_names_are_answered_free(
    models_bot: Bot,
) -> None:
    bot = models_bot
    unknown = await bot.command("make it pop --model turbo")
    assert "I don't know the model 'turbo'" in unknown.text
    assert "pro (120 credits, default), max (240 credits), ultra (300 credits)" in unknown.text
    assert bot.slack.calls_to("views.open") == [] and bot.provider.received == []

    await bot.command("")
    view = await bot.opened_view()
    block = next(b for b in view["blocks"] if b["block_id"] == "model")
    assert block["element"]["initial_option"]["value"] == "pro", "the default preselected"
    file = bot.slack.add_file("cat.png", png())
    await bot.interact(submission(bot, view, prompt="make it blue", file=file, model="max"))
    await bot.uploaded()
    assert bot.provider.creates[0].model == MAX_ID
    assert await balance(bot) == 960


async def test_a_restricted_model_is_refused_outside_its_channel(models_bot: Bot) -> None:
    bot = models_bot
    await bot.command("make it gold --model ultra")
    view = await bot.opened_view()
    file = bot.slack.add_file("cat.png", png())
    await bot.interact(submission(bot, view, prompt="make it gold", file=file))
    (refusal,) = await bot.ephemerals()
    assert "The model ultra is not available here" in refusal and "Nothing was charged" in refusal
    assert bot.provider.creates == [] and await balance(bot) == 1200

    # In the channel its override names, it is taken at its price.
    await bot.command("make it gold --model ultra", channel="C0VIP")
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while len(bot.slack.calls_to("views.open")) < 2:
            await asyncio.sleep(0.01)
    view = list(bot.slack.views.values())[-1]
    file = bot.slack.add_file("cat.png", png())
    await bot.interact(submission(bot, view, prompt="make it gold", file=file))
    (upload,) = await bot.uploaded()
    assert upload.channel == "C0VIP"
    assert bot.provider.creates[0].model == MAX_ID
    assert await balance(bot) == 900


# -- /kontext history (issue 19) -----------------------------------------------------------------


async def edit_as(bot: Bot, user: str, prompt: str) -> None:
    """One /kontext through the form, with an image, to its upload."""
    before = len([u for u in bot.slack.uploads.values() if u.channel])
    opened = len(bot.slack.views)
    await bot.command("", user=user)
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while len(bot.slack.views) == opened:
            await asyncio.sleep(0.01)
    view = list(bot.slack.views.values())[-1]
    values = {
        "prompt": {"text": {"value": prompt}},
        "image": {"file": {"files": [bot.slack.add_file("cat.png", png())]}},
    }
    await bot.interact(bot.slack.view_submission(view["id"], user=user, values=values))
    await bot.uploaded(before + 1)


async def test_history_lists_own_jobs_newest_first_with_permalinks_and_is_free(bot: Bot) -> None:
    await edit_as(bot, USER, "make it a watercolor")
    await edit_as(bot, USER, "add a <!channel> hat")
    await edit_as(bot, ADMIN, "the admin's own edit")
    alice = UserRef("slack", TEAM_ID, USER)
    async with asyncio.timeout(HANG_GUARD_SECONDS):  # charged once the runner records it
        while any(
            j.state.value != "succeeded" for j in await bot.core.store.recent_for_user(alice)
        ):
            await asyncio.sleep(0.02)
    before = await balance(bot)

    answer = await bot.command("history")
    lines = answer.text.splitlines()
    assert lines[0] == "Your last 2 edits:"
    assert "add a &lt;!channel&gt; hat" in lines[1], "newest first, escaped: no ping"
    assert "make it a watercolor" in lines[2]
    assert "the admin's own edit" not in answer.text
    jobs = await bot.core.store.recent_for_user(alice)
    shares = [m for m in bot.slack.messages_in(CHANNEL) if m.get("subtype") == "file_share"]
    for line, job in zip(lines[1:], jobs, strict=True):
        where = job.delivered
        assert where is not None and where["channel"] == CHANNEL
        (share,) = [m for m in shares if m["files"][0]["id"] == where["file"]]
        assert where["ts"] == share["ts"], "the upload message's ts"
        assert f"<{share['files'][0]['permalink']}|result>" in line
        assert f"seed {job.seed}" in line and "delivered" in line and "120 credits" in line
        assert "<!date^" in line and job.model in line
    assert await balance(bot) == before, "history is free"
    assert bot.provider.received and len(bot.provider.creates) == 3


async def test_history_of_someone_else_is_for_admins_and_the_ledger_moved(bot: Bot) -> None:
    empty = await bot.command("history")
    assert empty.text == "You have no edits yet."
    await edit_as(bot, USER, "make it a watercolor")
    refused = await bot.command(f"history <@{ADMIN}|boss>")
    assert "only see your own history" in refused.text
    seen = await bot.command(f"history <@{USER}|alice>", user=ADMIN)
    assert seen.text.startswith(f"<@{USER}>'s last 1 edit:")
    assert "make it a watercolor" in seen.text
    ledger = await bot.command(f"ledger <@{USER}|alice>", user=ADMIN)
    assert ledger.text.startswith(f"Recent credits of <@{USER}>:")
    helped = await bot.command("help")
    assert "/kontext history" in helped.text and "/kontext-history" not in helped.text


async def test_an_acknowledgement_slack_does_not_answer_in_time_is_not_an_error(
    loop_clock: LoopClock,
) -> None:
    """In a burst (a thousand requests at once) Slack's answer to the private
    acknowledgement can come after the client's 30 s: the request is stored by then, so
    the listener must end well (Slack gets its 200, not a 500 that it would redeliver)."""
    async with FakeSlack() as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url, timeout=30)
        reply = SlackReply(client, {"channel": CHANNEL, "user": USER})
        held = slack.hold("chat.postEphemeral")
        telling = asyncio.ensure_future(reply.tell("Queued: you are number 1."))
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            await held.reached.wait()
        loop_clock.advance(31)  # past slack_sdk's timeout, without waiting for it
        with structlog.testing.capture_logs() as logs:
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                await telling  # returns: logged, not raised
        held.release()
    # Logged for the operator, and not made up for by a second copy of the answer: no
    # retry of the ephemeral, no DM, no post in the channel.
    assert [(e["event"], e["log_level"]) for e in logs] == [("ephemeral message failed", "warning")]
    assert len(slack.calls_to("chat.postEphemeral")) == 1
    assert slack.calls_to("chat.postMessage") == []
    assert slack.calls_to("conversations.open") == []


# -- --upscale (issue 27): served by the fake Replicate's real-esrgan ---------------------------

UPSCALE_MODELS: list[dict[str, object]] = [
    {**TWO_MODELS[0]},
    {
        "name": "upscale",
        "kind": "upscale",
        "model": "nightmareai/real-esrgan",
        "providers": ["replicate"],
        "cost_per_image": 10,
    },
]


@pytest.fixture
async def upscale_bot(tmp_path: Path) -> AsyncIterator[Bot]:
    async with FakeReplicate() as replicate:
        provider = {"name": "replicate", "api_key": REPLICATE_KEY}
        async for served in serving(
            "http",
            tmp_path,
            replicate,
            provider=provider,
            models=UPSCALE_MODELS,  # type: ignore[arg-type]
        ):
            yield served


async def test_a_mention_with_upscale_posts_the_larger_image_and_charges_its_cost(
    upscale_bot: Bot,
) -> None:
    bot = upscale_bot
    file = bot.slack.add_file("portrait.png", png((10, 200, 10), (80, 60)))
    ts = f"{time.time() - 60:.6f}"
    text = f"<@{BOT_USER_ID}> --upscale 4"
    await bot.event(message_event("app_mention", ts, text, [file]), "EvUp")
    (upload,) = await bot.uploaded()
    assert Image.open(io.BytesIO(upload.data)).size == (320, 240)
    assert "Upscaled 4x" in (upload.initial_comment or "")
    (create,) = bot.provider.creates
    assert create.model == "nightmareai/real-esrgan"
    assert create.input == {"scale": 4, "face_enhance": False}
    assert await balance(bot) == 1200 - 10


async def test_slash_upscale_opens_the_form_for_the_image_and_keeps_the_scale(
    upscale_bot: Bot,
) -> None:
    bot = upscale_bot
    refused = await bot.command("--upscale 3")
    assert "use 2 or 4" in refused.text
    answer = await bot.command("--upscale 2")
    assert answer.text == ""
    view = await bot.opened_view()
    assert json.loads(view["private_metadata"])["upscale"] == 2
    file = bot.slack.add_file("cat.png", png(size=(40, 30)))
    await bot.interact(submission(bot, view, prompt="Upscaled 2x", file=file))
    (upload,) = await bot.uploaded()
    assert Image.open(io.BytesIO(upload.data)).size == (80, 60)
    (create,) = bot.provider.creates
    assert create.input == {"scale": 2, "face_enhance": False}
    assert await balance(bot) == 1200 - 10


async def test_a_result_over_the_workspaces_upload_limit_is_fitted_and_said() -> None:
    """A restricted workspace (files.getUploadURLExternal's file_upload_size_restricted):
    the reply fits the result under its limit first, and the comment says what it did."""
    noise = random.Random(27).randbytes(600 * 600 * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (600, 600), noise).save(buffer, format="PNG")
    job = Job(
        id="job-fit-0001",
        idempotency_key="k",
        user=UserRef("slack", TEAM_ID, USER),
        state=JobState.DELIVERING,
        prompt="",
        options=EditOptions(model="upscale", upscale=2),
        attachments=(),
        reply_target={"channel": CHANNEL, "user": USER},
        cost=10,
        provider="replicate",
        model="nightmareai/real-esrgan",
    )
    result = EditResult(
        job, buffer.getvalue(), "image/png", "kontext-job-fit.png", 600, 600, 1190, 1.0
    )
    async with FakeSlack() as slack:
        slack.upload_limit = 150_000
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        reply = SlackReply(client, job.reply_target, upload_limit=slack.upload_limit)
        await reply.deliver(result)
        (upload,) = [u for u in slack.uploads.values() if u.channel]
    assert len(upload.data) <= 150_000 and upload.filename.endswith(".jpg")
    with Image.open(io.BytesIO(upload.data)) as posted:
        assert posted.format == "JPEG"
        size = posted.size
    assert f"posted as a JPEG at {size[0]}×{size[1]}" in (upload.initial_comment or "")
    assert "Upscaled 2x" in (upload.initial_comment or "")
