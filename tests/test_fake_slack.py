"""The fake Slack refuses what the real Slack refuses: the real slack_sdk AsyncWebClient
against it, one test per documented rule (the rules and their sources are cited in
tests/fakes/slack.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import (
    BOT_TOKEN,
    BOT_USER_ID,
    METHOD_SCOPES,
    FakeSlack,
    SlackLimits,
    manifest_scopes,
)
from tests.support import FakeClock

CHANNEL = "C0ART"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def client(slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    web = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
    yield web


async def refused(call: Any) -> dict[str, Any]:
    with pytest.raises(SlackApiError) as caught:
        await call
    return dict(caught.value.response.data)


# -- missing_scope --------------------------------------------------------------------------


def test_the_default_scopes_are_exactly_the_manifests() -> None:
    fake = FakeSlack()
    assert fake.scopes == manifest_scopes()
    assert {"chat:write", "files:read", "files:write", "users:read"} <= manifest_scopes()


@pytest.mark.parametrize(
    ("scope", "call"),
    [
        ("chat:write", lambda c: c.chat_postMessage(channel=CHANNEL, text="hi")),
        ("chat:write", lambda c: c.chat_postEphemeral(channel=CHANNEL, user="U1", text="hi")),
        ("chat:write", lambda c: c.chat_update(channel=CHANNEL, ts="1.000001", text="hi")),
        ("files:read", lambda c: c.files_info(file="F000001")),
        ("users:read", lambda c: c.users_info(user="U1")),
        ("files:write", lambda c: c.files_getUploadURLExternal(filename="a.png", length=3)),
        ("files:write", lambda c: c.files_completeUploadExternal(files=[{"id": "FUP00001"}])),
    ],
)
async def test_a_method_without_its_scope_is_refused_with_needed_and_provided(
    slack: FakeSlack, client: AsyncWebClient, scope: str, call: Any
) -> None:
    assert slack.scopes is not None
    slack.scopes.discard(scope)
    answer = await refused(call(client))
    assert answer["error"] == "missing_scope"
    assert answer["needed"] == scope
    assert answer["provided"] == ",".join(sorted(slack.scopes))


async def test_conversation_methods_need_the_scope_of_the_channels_type(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.add_channel("C0PUB", "public")
    slack.add_channel("G0PRIV", "private")
    slack.add_channel("D0DM", "im")
    slack.scopes = {"channels:history", "channels:read", "chat:write"}
    await client.conversations_replies(channel="C0PUB", ts="1.0")
    await client.conversations_info(channel="C0PUB")
    private = await refused(client.conversations_replies(channel="G0PRIV", ts="1.0"))
    assert (private["error"], private["needed"]) == ("missing_scope", "groups:history")
    dm = await refused(client.conversations_info(channel="D0DM"))
    assert (dm["error"], dm["needed"]) == ("missing_scope", "im:read")
    history = await refused(client.conversations_history(channel="G0PRIV"))
    assert history["needed"] == "groups:history"


async def test_methods_that_need_no_scope_work_without_any(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.scopes = set()
    assert (await client.auth_test())["user_id"] == BOT_USER_ID
    view = {"type": "modal", "title": {"type": "plain_text", "text": "x"}, "blocks": []}
    assert (await client.views_open(trigger_id="t", view=view))["view"]["id"]
    assert METHOD_SCOPES["auth.test"] == () and METHOD_SCOPES["views.open"] == ()


async def test_file_downloads_need_files_read(slack: FakeSlack) -> None:
    import httpx

    file = slack.add_file("cat.png", b"\x89PNG....")
    headers = {"Authorization": f"Bearer {BOT_TOKEN}"}
    async with httpx.AsyncClient() as http:
        ok = await http.get(file["url_private"], headers=headers)
        assert ok.content == b"\x89PNG...."
        assert slack.scopes is not None
        slack.scopes.discard("files:read")
        login = await http.get(file["url_private"], headers=headers)
    assert login.headers["content-type"].startswith("text/html")


# -- not_in_channel -------------------------------------------------------------------------


async def test_posting_where_the_bot_is_not_a_member_is_refused(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.add_channel("C0OUT", "public", bot_member=False)
    for call in (
        client.chat_postMessage(channel="C0OUT", text="hi"),
        client.chat_postEphemeral(channel="C0OUT", user="U1", text="hi"),
        client.files_upload_v2(channel="C0OUT", content=b"png", filename="a.png"),
    ):
        assert (await refused(call))["error"] == "not_in_channel"
    assert slack.messages_in("C0OUT") == []
    info = await client.conversations_info(channel="C0OUT")
    assert info["channel"]["is_member"] is False and info["channel"]["is_channel"] is True


async def test_chat_write_public_posts_in_public_channels_only(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.add_channel("C0OUT", "public", bot_member=False)
    slack.add_channel("G0OUT", "private", bot_member=False)
    assert slack.scopes is not None
    slack.scopes.add("chat:write.public")
    await client.chat_postMessage(channel="C0OUT", text="hi")
    assert (await refused(client.chat_postMessage(channel="G0OUT", text="hi")))[
        "error"
    ] == "not_in_channel"
    # It is a chat.postMessage scope: file shares still need membership.
    upload = client.files_upload_v2(channel="C0OUT", content=b"png", filename="a.png")
    assert (await refused(upload))["error"] == "not_in_channel"


async def test_by_default_the_bot_is_in_every_channel_and_conversations_info_says_so(
    client: AsyncWebClient,
) -> None:
    await client.chat_postMessage(channel="C0ANY", text="hi")
    info = (await client.conversations_info(channel="G0SECRET"))["channel"]
    assert info["is_member"] is True and info["is_private"] is True and info["is_group"]


async def test_unknown_channels_are_not_found_when_channels_are_declared(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.auto_channels = False
    answer = await refused(client.chat_postMessage(channel="C0NOPE", text="hi"))
    assert answer["error"] == "channel_not_found"


async def test_ephemeral_to_someone_outside_the_channel_is_refused(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.add_channel(CHANNEL, members={"U0ALICE"})
    await client.chat_postEphemeral(channel=CHANNEL, user="U0ALICE", text="hi")
    answer = await refused(client.chat_postEphemeral(channel=CHANNEL, user="U0BOB", text="x"))
    assert answer["error"] == "user_not_in_channel"


async def test_chat_update_only_of_the_bots_own_existing_message(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    missing = await refused(client.chat_update(channel=CHANNEL, ts="1.000009", text="x"))
    assert missing["error"] == "message_not_found"
    theirs = slack.post_user_message(CHANNEL, "mine", user="U0ALICE")
    answer = await refused(client.chat_update(channel=CHANNEL, ts=theirs["ts"], text="x"))
    assert answer["error"] == "cant_update_message"
    posted = await client.chat_postMessage(channel=CHANNEL, text="Editing…")
    await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="Done")
    assert slack.messages_in(CHANNEL)[-1]["text"] == "Done"


# -- file_input ---------------------------------------------------------------------------------


def modal(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "edit",
        "title": {"type": "plain_text", "text": "Edit"},
        "submit": {"type": "plain_text", "text": "Edit"},
        "blocks": list(blocks),
    }


FILE_INPUT = {
    "type": "input",
    "block_id": "image",
    "label": {"type": "plain_text", "text": "Image"},
    "element": {"type": "file_input", "action_id": "file", "max_files": 1},
}
PROMPT = {
    "type": "input",
    "block_id": "prompt",
    "label": {"type": "plain_text", "text": "Prompt"},
    "element": {"type": "plain_text_input", "action_id": "text"},
}


async def test_file_input_files_arrive_only_in_a_view_submission(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    opened = (await client.views_open(trigger_id="t", view=modal(FILE_INPUT, PROMPT)))["view"]
    file = slack.add_file("cat.png", b"png")
    payload = slack.view_submission(
        opened["id"],
        user="U0ALICE",
        values={"image": {"file": {"files": [file]}}, "prompt": {"text": {"value": "blue"}}},
    )
    assert payload["type"] == "view_submission"
    state = payload["view"]["state"]["values"]
    assert state["image"]["file"] == {"type": "file_input", "files": [file]}
    assert state["prompt"]["text"] == {"type": "plain_text_input", "value": "blue"}
    assert payload["view"]["id"] == opened["id"] and payload["view"]["callback_id"] == "edit"
    # Files only in a file_input, at most max_files, only in inputs the view has.
    with pytest.raises(ValueError, match="only file_input"):
        slack.view_submission(
            opened["id"], user="U0ALICE", values={"prompt": {"text": {"files": [file]}}}
        )
    with pytest.raises(ValueError, match="max_files"):
        slack.view_submission(
            opened["id"], user="U0ALICE", values={"image": {"file": {"files": [file, file]}}}
        )
    with pytest.raises(ValueError, match="no input"):
        slack.view_submission(opened["id"], user="U0ALICE", values={"other": {"x": {}}})


async def test_file_input_outside_a_modals_input_block_is_refused(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    blocks = [FILE_INPUT]
    answer = await refused(client.chat_postMessage(channel=CHANNEL, text="x", blocks=blocks))
    assert answer["error"] == "invalid_blocks"
    actions = {"type": "actions", "elements": [FILE_INPUT["element"]]}
    answer = await refused(client.views_open(trigger_id="t", view=modal(actions)))
    assert answer["error"] == "invalid_arguments"
    assert slack.scopes is not None
    slack.scopes.discard("files:read")
    answer = await refused(client.views_open(trigger_id="t", view=modal(FILE_INPUT)))
    assert (answer["error"], answer["needed"]) == ("missing_scope", "files:read")


async def test_an_actions_block_holds_25_elements_and_a_select_100_options(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    """Block Kit: at most 25 elements in an actions block, 100 options in a static
    select, 75 characters of button text, 255 of an action_id, 2000 of a button's value;
    more is ``invalid_blocks``
    (https://docs.slack.dev/reference/block-kit/blocks/actions-block,
    https://docs.slack.dev/reference/block-kit/block-elements/button-element)."""

    def button(n: int, text: str = "") -> dict[str, Any]:
        label = {"type": "plain_text", "text": text or f"b{n}"}
        return {"type": "button", "action_id": f"a{n}", "text": label, "value": "v"}

    def select(count: int) -> dict[str, Any]:
        options = [
            {"text": {"type": "plain_text", "text": f"o{i}"}, "value": f"o{i}"}
            for i in range(count)
        ]
        return {"type": "static_select", "action_id": "s", "options": options}

    fits = [{"type": "actions", "elements": [*(button(n) for n in range(24)), select(100)]}]
    posted = await client.chat_postMessage(channel=CHANNEL, text="x", blocks=fits)
    assert posted["ok"]
    long_id = {**button(1), "action_id": "a" * 256}
    long_value = {**button(1), "value": "v" * 2001}
    edge = {**button(1, "x" * 75), "action_id": "a" * 255, "value": "v" * 2000}
    at_the_limits = [{"type": "actions", "elements": [edge]}]
    assert (await client.chat_postMessage(channel=CHANNEL, text="x", blocks=at_the_limits))["ok"]
    for elements in (
        [button(n) for n in range(26)],
        [select(101)],
        [button(1, "x" * 76)],
        [long_id],
        [long_value],
    ):
        blocks = [{"type": "actions", "elements": elements}]
        answer = await refused(client.chat_postMessage(channel=CHANNEL, text="x", blocks=blocks))
        assert answer["error"] == "invalid_blocks"
        update = client.chat_update(channel=CHANNEL, ts=str(posted["ts"]), text="x", blocks=blocks)
        assert (await refused(update))["error"] == "invalid_blocks"


# -- message metadata -------------------------------------------------------------------------


async def test_metadata_is_kept_and_returned_only_with_include_all_metadata(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    parent = slack.post_user_message(CHANNEL, "make it blue", user="U0ALICE")
    metadata = {"event_type": "kontext_job", "event_payload": {"job_id": "j-1"}}
    status = await client.chat_postMessage(
        channel=CHANNEL, thread_ts=parent["ts"], text="Editing…", metadata=metadata
    )
    done = {"event_type": "kontext_job", "event_payload": {"job_id": "j-1", "done": True}}
    await client.chat_update(channel=CHANNEL, ts=status["ts"], text="Done", metadata=done)
    plain = await client.conversations_replies(channel=CHANNEL, ts=parent["ts"])
    assert [m["ts"] for m in plain["messages"]] == [parent["ts"], status["ts"]]
    assert all("metadata" not in m for m in plain["messages"])
    full = await client.conversations_replies(
        channel=CHANNEL, ts=parent["ts"], include_all_metadata=True
    )
    assert full["messages"][1]["metadata"] == done
    top = await client.chat_postMessage(channel=CHANNEL, text="top", metadata=metadata)
    history = await client.conversations_history(channel=CHANNEL, include_all_metadata=True)
    assert history["messages"][0]["ts"] == top["ts"]
    assert history["messages"][0]["metadata"] == metadata


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ("{not json", "invalid_metadata_format"),
        (json.dumps(["a"]), "invalid_metadata_format"),
        (json.dumps({"event_type": "x"}), "invalid_metadata_schema"),
        (json.dumps({"event_type": 3, "event_payload": {}}), "invalid_metadata_schema"),
    ],
)
async def test_malformed_metadata_is_refused(
    client: AsyncWebClient, metadata: str, error: str
) -> None:
    answer = await refused(
        client.api_call(
            "chat.postMessage", json={"channel": CHANNEL, "text": "x", "metadata": metadata}
        )
    )
    assert answer["error"] == error


async def test_an_upload_into_a_thread_shows_in_its_replies(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    parent = slack.post_user_message(CHANNEL, "make it blue", user="U0ALICE")
    await client.files_upload_v2(
        channel=CHANNEL,
        thread_ts=parent["ts"],
        content=b"png-bytes",
        filename="result.png",
        title="job j-1",
        initial_comment="done",
    )
    replies = (await client.conversations_replies(channel=CHANNEL, ts=parent["ts"]))["messages"]
    assert replies[0]["ts"] == parent["ts"]
    (file,) = replies[1]["files"]
    assert file["title"] == "job j-1" and file["name"] == "result.png"
    assert replies[1]["text"] == "done" and replies[1]["user"] == BOT_USER_ID


@pytest.mark.parametrize(
    "mistake",
    ["101 options", "an option text of 76 characters", "an initial option not offered"],
)
async def test_a_static_select_beyond_block_kits_limits_is_refused(
    client: AsyncWebClient, mistake: str
) -> None:
    def option(i: int, text: str = "") -> dict[str, Any]:
        return {"text": {"type": "plain_text", "text": text or f"m{i}"}, "value": f"m{i}"}

    options = [option(i) for i in range(3)]
    element: dict[str, Any] = {"type": "static_select", "action_id": "value"}
    if mistake == "101 options":
        element["options"] = [option(i) for i in range(101)]
    elif mistake == "an option text of 76 characters":
        element["options"] = [*options, option(9, "x" * 76)]
    else:
        element |= {"options": options, "initial_option": option(7)}
    view = {
        "type": "modal",
        "title": {"type": "plain_text", "text": "x"},
        "blocks": [
            {"type": "input", "label": {"type": "plain_text", "text": "M"}, "element": element}
        ],
    }
    assert (await refused(client.views_open(trigger_id="t", view=view)))["error"] == (
        "invalid_arguments"
    )
    element |= {"options": options, "initial_option": options[1]}  # within the limits
    assert (await client.views_open(trigger_id="t", view=view))["view"]["id"]


# -- views.publish: a Home tab within Block Kit's limits -------------------------------------


def home(blocks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"type": "home", "blocks": blocks, **extra}


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def button(text: str = "Go", **extra: Any) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": "a",
        "text": {"type": "plain_text", "text": text},
        **extra,
    }


THUMB = {"type": "image", "slack_file": {"id": "F1"}, "alt_text": "the image"}


@pytest.mark.parametrize(
    ("view", "pointer"),
    [
        (home([section("x")] * 101), "/view/blocks"),
        (home([section("x" * 3001)]), "/view/blocks/0/text/text"),
        (
            home([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]),
            "/view/blocks/0/text/text",
        ),
        (
            home([{"type": "actions", "elements": [button("b" * 76)]}]),
            "/view/blocks/0/elements/0/text/text",
        ),
        (home([{"type": "actions", "elements": [button()] * 26}]), "/view/blocks/0/elements"),
        (home([section("x", accessory={**THUMB, "alt_text": ""})]), "/view/blocks/0/accessory"),
        (
            home([section("x", accessory={**THUMB, "image_url": "https://x/y.png"})]),
            "/view/blocks/0/accessory",
        ),
        (home([section("x", block_id="b" * 256)]), "/view/blocks/0/block_id"),
        (home([section("x")], private_metadata="m" * 3001), "/view/private_metadata"),
        (home([section("x")], callback_id="c" * 256), "/view/callback_id"),
        ({"type": "modal", "blocks": [section("x")]}, "/view/type"),
    ],
    ids=[
        "101 blocks",
        "section text 3001",
        "header 151",
        "button text 76",
        "26 elements",
        "image without alt_text",
        "image with two sources",
        "block_id 256",
        "private_metadata 3001",
        "callback_id 256",
        "not a home view",
    ],
)
async def test_views_publish_refuses_what_block_kit_refuses(
    client: AsyncWebClient, slack: FakeSlack, view: dict[str, Any], pointer: str
) -> None:
    answer = await refused(client.views_publish(user_id="U0ALICE", view=view))
    assert answer["ok"] is False and answer["error"] == "invalid_arguments"
    messages = answer["response_metadata"]["messages"]
    assert any(m.startswith("[ERROR] ") and f"[json-pointer:{pointer}]" in m for m in messages)
    assert slack.home_views == {}


async def test_views_publish_needs_a_user_and_takes_a_view_at_the_limits(
    client: AsyncWebClient, slack: FakeSlack
) -> None:
    answer = await refused(client.api_call("views.publish", json={"view": home([section("x")])}))
    assert answer["error"] == "invalid_arguments"
    assert "[json-pointer:/user_id]" in answer["response_metadata"]["messages"][0]
    at_limits = home(
        [section("x" * 3000, accessory=THUMB)]
        + [{"type": "actions", "elements": [button("b" * 75)] * 25}] * 99,
        private_metadata="m" * 3000,
        callback_id="c" * 255,
    )
    published = await client.views_publish(user_id="U0ALICE", view=at_limits)
    assert published["view"]["type"] == "home"
    assert len(slack.home_views["U0ALICE"]["blocks"]) == 100


# -- rate limits (https://docs.slack.dev/apis/web-api/rate-limits) --------------------------


async def test_post_message_is_limited_per_channel_with_a_short_burst(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    clock = FakeClock()
    slack.limits, slack.clock = SlackLimits(), clock
    for _ in range(3):  # "short bursts above this limit"
        await client.chat_postMessage(channel=CHANNEL, text="hi")
    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel=CHANNEL, text="one too many")
    answer = caught.value.response
    assert answer.status_code == 429 and answer.data == {"ok": False, "error": "ratelimited"}
    assert int(answer.headers["Retry-After"]) >= 1
    # Another channel has its own second; this one takes a message again a second later.
    await client.chat_postMessage(channel="C0OTHER", text="elsewhere")
    clock.advance(1.0)
    await client.chat_postMessage(channel=CHANNEL, text="after a second")
    assert [c.args["text"] for c in slack.ratelimited] == ["one too many"]


async def test_a_tier_3_method_takes_50_a_minute_and_says_when_to_retry(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    clock = FakeClock()
    slack.limits, slack.clock = SlackLimits(), clock
    posted = await client.chat_postMessage(channel=CHANNEL, text="status")
    for n in range(50):  # a minute's worth at once: the bucket holds 50
        await client.chat_update(channel=CHANNEL, ts=posted["ts"], text=f"edit {n}")
    with pytest.raises(SlackApiError) as caught:
        await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="the 51st")
    # One call drains in 60/50 s: Slack's Retry-After is whole seconds, rounded up.
    assert caught.value.response.headers["Retry-After"] == "2"
    # Tier 4 methods are counted apart (per method, not per tier or per token).
    await client.chat_postEphemeral(channel=CHANNEL, user="U0ALICE", text="still fine")
    clock.advance(1.2)
    await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="later")
    assert slack.ratelimited_by_method() == {"chat.update": 1}


async def test_without_limits_the_fake_takes_any_pace(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    for n in range(10):
        await client.chat_postMessage(channel=CHANNEL, text=f"message {n}")
    assert slack.ratelimited == [] and len(slack.calls_to("chat.postMessage")) == 10


async def test_files_delete_takes_the_bots_own_uploads_only(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    """files.delete: a file nobody has is ``file_not_found``, a user's file
    ``cant_delete_file`` for the bot (https://docs.slack.dev/reference/methods/files.delete);
    the bot's own upload goes, with its share message."""
    theirs = slack.add_file("cat.png", b"png")
    assert (await refused(client.files_delete(file=theirs["id"])))["error"] == "cant_delete_file"
    assert (await refused(client.files_delete(file="F0NONE")))["error"] == "file_not_found"
    uploaded = await client.files_upload_v2(channel=CHANNEL, content=b"png", filename="r.png")
    file_id = str(uploaded["files"][0]["id"])
    assert any(m.get("files") for m in slack.messages_in(CHANNEL))
    assert (await client.files_delete(file=file_id))["ok"]
    assert slack.deleted_files == [file_id]
    assert not any(m.get("files") for m in slack.messages_in(CHANNEL)), "the share is gone"
    assert (await refused(client.files_delete(file=file_id)))["error"] == "file_not_found"


# -- files.getUploadURLExternal's size rules (issue 27) --------------------------------------


async def test_an_upload_needs_its_length_and_fits_the_workspaces_limit(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.upload_limit = 1000
    missing = await refused(client.files_getUploadURLExternal(filename="a.png", length=0))
    assert missing["error"] == "missing_argument"
    big = await refused(client.files_getUploadURLExternal(filename="a.png", length=1001))
    assert big["error"] == "file_upload_size_restricted"
    fits = await client.files_getUploadURLExternal(filename="a.png", length=1000)
    assert fits["ok"] and fits["file_id"]
