"""The fake Discord refuses what Discord documents as refused.

Each test plays a bot by hand with plain HTTP (httpx) against the fake's REST API, after
a minimal gateway session (IDENTIFY over aiohttp's websocket) so that interactions can be
sent; one test drives the real discord.py. Time is a ``FakeClock`` given to the fake, so
the 3-second and 15-minute limits are crossed without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord as discord_py
import httpx
import pytest

from tests.fakes.discord import (
    APPLICATION_ID,
    ART_CHANNEL_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    CHANNEL_ID,
    GUILD_ID,
    INITIAL_RESPONSE_SECONDS,
    MESSAGE_FLAG_EPHEMERAL,
    PRIVATE_CHANNEL_ID,
    TOKEN_LIFETIME_SECONDS,
    VIEW_CHANNEL,
    FakeDiscord,
    Interaction,
    RouteLimits,
)
from tests.support import FakeClock

ALICE = "5000000000000000001"
BOB = "5000000000000000002"
BOT = {"Authorization": f"Bot {BOT_TOKEN}"}
COMMANDS = [
    {
        "name": "kontext",
        "type": 1,
        "description": "edit",
        "options": [{"name": "prompt", "type": 3, "description": "what to change"}],
    }
]


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


@pytest.fixture
async def discord(clock: FakeClock) -> AsyncIterator[FakeDiscord]:
    """A fake Discord on the test's clock, with a bot session on its gateway."""
    async with FakeDiscord(clock=clock) as server:
        server.add_user(ALICE, "alice")
        server.add_user(BOB, "bob")
        url = f"ws://127.0.0.1:{server.port}/gateway"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            hello = await ws.receive_json()
            assert hello["op"] == 10
            identify = {"token": BOT_TOKEN, "intents": 0, "properties": {}}
            await ws.send_json({"op": 2, "d": identify})
            await asyncio.wait_for(server.connected.wait(), 10)
            reader = asyncio.create_task(_drain(ws))
            try:
                yield server
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader


@pytest.fixture
async def http(discord: FakeDiscord) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=discord.api_url) as client:
        synced = await client.put(
            f"/applications/{APPLICATION_ID}/guilds/{GUILD_ID}/commands",
            json=COMMANDS,
            headers=BOT,
        )
        assert synced.status_code == 200
        yield client


async def kontext(discord: FakeDiscord, channel: str = CHANNEL_ID) -> Interaction:
    return await discord.slash_command(
        "kontext", {"prompt": "make it blue"}, user_id=ALICE, channel_id=channel
    )


async def respond(
    http: httpx.AsyncClient, it: Interaction, kind: int, data: dict[str, Any] | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"type": kind}
    if data is not None:
        body["data"] = data
    return await http.post(
        f"/interactions/{it.id}/{it.token}/callback", params={"with_response": "1"}, json=body
    )


async def followup(
    http: httpx.AsyncClient, it: Interaction, content: str, *, ephemeral: bool = False
) -> httpx.Response:
    body: dict[str, Any] = {"content": content}
    if ephemeral:
        body["flags"] = MESSAGE_FLAG_EPHEMERAL
    return await http.post(
        f"/webhooks/{APPLICATION_ID}/{it.token}", params={"wait": "true"}, json=body
    )


def refused(response: httpx.Response, status: int, code: int) -> bool:
    return response.status_code == status and response.json()["code"] == code


# -- one initial response, within 3 seconds ------------------------------------------------


async def test_a_second_initial_response_is_refused(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    it = await kontext(discord)
    assert (await respond(http, it, 5)).status_code == 200
    again = await respond(http, it, 4, {"content": "no", "flags": MESSAGE_FLAG_EPHEMERAL})
    assert refused(again, 400, 40060)
    assert [c["type"] for c in it.callbacks] == [5]
    assert len(discord.channel_messages(CHANNEL_ID)) == 1, "only the loading message"
    assert [c.code for c in discord.refusals(40060)] == [40060]


@pytest.mark.parametrize(
    ("elapsed", "accepted"),
    [(INITIAL_RESPONSE_SECONDS - 0.1, True), (INITIAL_RESPONSE_SECONDS + 0.1, False)],
)
async def test_the_initial_response_must_come_within_3_seconds(
    discord: FakeDiscord,
    http: httpx.AsyncClient,
    clock: FakeClock,
    elapsed: float,
    accepted: bool,
) -> None:
    it = await kontext(discord)
    clock.advance(elapsed)
    answer = await respond(http, it, 5)
    if accepted:
        assert answer.status_code == 200
        return
    assert refused(answer, 404, 10062)
    assert discord.channel_messages(CHANNEL_ID) == []
    # "If the 3 second deadline is exceeded, the token will be invalidated."
    assert refused(await followup(http, it, "late"), 401, 50027)


async def test_a_webhook_before_any_initial_response_is_unknown(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    it = await kontext(discord)
    assert refused(await followup(http, it, "too early"), 404, 10015)
    original = await http.patch(
        f"/webhooks/{APPLICATION_ID}/{it.token}/messages/@original", json={"content": "x"}
    )
    assert refused(original, 404, 10015)


# -- a follow-up right after a deferral edits the loading message --------------------------


async def test_followup_after_a_public_deferral_edits_it_and_ignores_the_ephemeral_flag(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    it = await kontext(discord)
    assert (await respond(http, it, 5)).status_code == 200
    sent = await followup(http, it, "You have 0 credits", ephemeral=True)
    assert sent.status_code == 200
    assert sent.json()["id"] == it.original_id, "no new message: the loading one, edited"
    assert not sent.json()["flags"] & MESSAGE_FLAG_EPHEMERAL
    (message,) = discord.channel_messages(CHANNEL_ID)
    assert message["content"] == "You have 0 credits"
    assert discord.public_messages(CHANNEL_ID) == [message], "everyone sees the refusal"
    assert discord.ephemeral_messages(CHANNEL_ID, ALICE) == []

    # Deleting it leaves nothing, for anyone: the requester never saw it privately.
    deleted = await http.delete(f"/webhooks/{APPLICATION_ID}/{it.token}/messages/@original")
    assert deleted.status_code == 204
    assert discord.visible(CHANNEL_ID, ALICE) == []
    assert "You have 0 credits" in [m["content"] for m in discord.ever_public(CHANNEL_ID)]


async def test_followup_after_an_ephemeral_deferral_stays_ephemeral(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    it = await kontext(discord)
    assert (await respond(http, it, 5, {"flags": MESSAGE_FLAG_EPHEMERAL})).status_code == 200
    sent = await followup(http, it, "You have 0 credits")  # no ephemeral flag asked
    assert sent.json()["id"] == it.original_id
    assert sent.json()["flags"] & MESSAGE_FLAG_EPHEMERAL, "the deferral's state is kept"
    assert discord.public_messages(CHANNEL_ID) == []
    assert discord.ever_public(CHANNEL_ID) == []
    (private,) = discord.ephemeral_messages(CHANNEL_ID, ALICE)
    assert private["content"] == "You have 0 credits"
    assert discord.visible(CHANNEL_ID, BOB) == [], "only Alice sees it"


async def test_only_the_first_followup_after_the_deferral_edits_it(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    it = await kontext(discord)
    await respond(http, it, 5)
    first = await followup(http, it, "result")
    second = await followup(http, it, "just for you", ephemeral=True)
    assert first.json()["id"] == it.original_id
    assert second.json()["id"] != it.original_id, "the loading state is over: a new message"
    assert second.json()["flags"] & MESSAGE_FLAG_EPHEMERAL
    assert [m["content"] for m in discord.public_messages(CHANNEL_ID)] == ["result"]
    assert [m["content"] for m in discord.ephemeral_messages(CHANNEL_ID, ALICE)] == ["just for you"]


@pytest.mark.parametrize("end_loading", ["edit", "delete"])
async def test_after_the_loading_message_is_edited_or_deleted_a_followup_is_new(
    discord: FakeDiscord, http: httpx.AsyncClient, end_loading: str
) -> None:
    it = await kontext(discord)
    await respond(http, it, 5)
    original = f"/webhooks/{APPLICATION_ID}/{it.token}/messages/@original"
    if end_loading == "edit":
        assert (await http.patch(original, json={"content": "queued"})).status_code == 200
    else:
        assert (await http.delete(original)).status_code == 204
    sent = await followup(http, it, "refused", ephemeral=True)
    assert sent.status_code == 200
    assert sent.json()["id"] != it.original_id
    (private,) = discord.ephemeral_messages(CHANNEL_ID, ALICE)
    assert private["content"] == "refused"
    assert "refused" not in [m["content"] for m in discord.ever_public(CHANNEL_ID)]


# -- 15-minute tokens --------------------------------------------------------------------------


async def test_interaction_tokens_expire_after_15_minutes(
    discord: FakeDiscord, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    it = await kontext(discord)
    await respond(http, it, 5)
    original = f"/webhooks/{APPLICATION_ID}/{it.token}/messages/@original"
    clock.advance(TOKEN_LIFETIME_SECONDS - 1)
    assert (await http.patch(original, json={"content": "still here"})).status_code == 200
    clock.advance(1)
    assert refused(await http.patch(original, json={"content": "late"}), 401, 50027)
    assert refused(await http.get(original), 401, 50027)
    assert refused(await http.delete(original), 401, 50027)
    assert refused(await followup(http, it, "late"), 401, 50027)
    (message,) = discord.channel_messages(CHANNEL_ID)
    assert message["content"] == "still here"


async def test_expire_ends_a_token_at_once(discord: FakeDiscord, http: httpx.AsyncClient) -> None:
    it = await kontext(discord)
    await respond(http, it, 5)
    discord.expire(it.token)
    assert refused(await followup(http, it, "late"), 401, 50027)


async def test_the_default_clock_is_real_monotonic_time() -> None:
    import time

    assert FakeDiscord().clock is time.monotonic


# -- a webhook token reaches only its own interaction's messages ------------------------------


async def test_a_token_cannot_touch_another_interactions_message(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    first = await kontext(discord)
    await respond(http, first, 4, {"content": "first"})
    second = await kontext(discord)
    await respond(http, second, 4, {"content": "second"})
    other = f"/webhooks/{APPLICATION_ID}/{second.token}/messages/{first.original_id}"
    assert refused(await http.patch(other, json={"content": "hijacked"}), 404, 10008)
    assert refused(await http.delete(other), 404, 10008)
    assert [m["content"] for m in discord.public_messages(CHANNEL_ID)] == ["first", "second"]


# -- the channel-messages API and the bot token -----------------------------------------------


async def test_an_ephemeral_message_is_unknown_to_the_channel_api(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    it = await kontext(discord)
    await respond(http, it, 4, {"content": "secret", "flags": MESSAGE_FLAG_EPHEMERAL})
    path = f"/channels/{CHANNEL_ID}/messages/{it.original_id}"
    assert refused(await http.get(path, headers=BOT), 404, 10008)
    assert refused(await http.patch(path, json={"content": "x"}, headers=BOT), 404, 10008)
    assert refused(await http.delete(path, headers=BOT), 404, 10008)
    # Through the interaction's webhook it can be edited and deleted.
    original = f"/webhooks/{APPLICATION_ID}/{it.token}/messages/@original"
    assert (await http.patch(original, json={"content": "edited"})).status_code == 200
    (private,) = discord.ephemeral_messages(CHANNEL_ID, ALICE)
    assert private["content"] == "edited"
    assert (await http.delete(original)).status_code == 204
    assert discord.ephemeral_messages(CHANNEL_ID) == []


async def test_the_bot_edits_only_its_own_messages_and_deletes_others_only_with_permission(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    message = await discord.post_message("hello", user_id=ALICE, channel_id=CHANNEL_ID)
    path = f"/channels/{CHANNEL_ID}/messages/{message['id']}"
    assert refused(await http.patch(path, json={"content": "x"}, headers=BOT), 403, 50005)
    assert refused(await http.delete(path, headers=BOT), 403, 50013)
    own = await http.post(f"/channels/{CHANNEL_ID}/messages", json={"content": "hi"}, headers=BOT)
    own_path = f"/channels/{CHANNEL_ID}/messages/{own.json()['id']}"
    assert (await http.patch(own_path, json={"content": "edited"}, headers=BOT)).status_code == 200
    assert (await http.delete(own_path, headers=BOT)).status_code == 204


async def test_a_hidden_channel_refuses_the_bot_token_but_interactions_work(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    discord.hidden_channels.add(PRIVATE_CHANNEL_ID)
    (channel,) = [c for c in discord.guild_payload()["channels"] if c["id"] == PRIVATE_CHANNEL_ID]
    (overwrite,) = channel["permission_overwrites"]
    assert overwrite["id"] == BOT_USER_ID and int(overwrite["deny"]) & VIEW_CHANNEL

    it = await kontext(discord, PRIVATE_CHANNEL_ID)
    answered = await respond(http, it, 4, {"content": "result", "components": []})
    assert answered.status_code == 200, "interactions work in a channel the bot cannot see"
    assert (await followup(http, it, "more")).status_code == 200
    messages = f"/channels/{PRIVATE_CHANNEL_ID}/messages"
    one = f"{messages}/{it.original_id}"
    assert refused(await http.post(messages, json={"content": "x"}, headers=BOT), 403, 50001)
    assert refused(await http.get(one, headers=BOT), 403, 50001)
    assert refused(await http.patch(one, json={"content": "x"}, headers=BOT), 403, 50001)
    assert refused(await http.delete(one, headers=BOT), 403, 50001)
    assert len(discord.refusals(50001)) == 4
    assert [m["content"] for m in discord.public_messages(PRIVATE_CHANNEL_ID)] == ["result", "more"]
    # The same calls in a channel the bot sees are accepted.
    seen = await http.post(f"/channels/{CHANNEL_ID}/messages", json={"content": "x"}, headers=BOT)
    assert seen.status_code == 200


async def test_a_button_click_can_delete_its_message_through_the_interaction(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    """A deferred update (type 6) makes the clicked message the interaction's original
    response, so ``DELETE .../messages/@original`` removes it even where the bot token
    cannot (issue 14, defect 7)."""
    discord.hidden_channels.add(PRIVATE_CHANNEL_ID)
    button = {"type": 2, "style": 4, "label": "Delete", "custom_id": "delete:1"}
    it = await kontext(discord, PRIVATE_CHANNEL_ID)
    await respond(
        http, it, 4, {"content": "result", "components": [{"type": 1, "components": [button]}]}
    )
    (result,) = discord.channel_messages(PRIVATE_CHANNEL_ID)
    click = await discord.click(result, "Delete", user_id=ALICE)
    bot_token = await http.delete(
        f"/channels/{PRIVATE_CHANNEL_ID}/messages/{result['id']}", headers=BOT
    )
    assert refused(bot_token, 403, 50001)
    assert (await respond(http, click, 6)).status_code == 200
    deleted = await http.delete(f"/webhooks/{APPLICATION_ID}/{click.token}/messages/@original")
    assert deleted.status_code == 204
    assert discord.channel_messages(PRIVATE_CHANNEL_ID) == []


# -- callback types the interaction cannot take ----------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data"),
    [(6, None), (7, {"content": "x"}), (5, {"flags": 1 << 2})],  # 1 << 2: SUPPRESS_EMBEDS
)
async def test_callback_types_the_interaction_cannot_take_are_refused(
    discord: FakeDiscord, http: httpx.AsyncClient, kind: int, data: dict[str, Any] | None
) -> None:
    it = await kontext(discord)
    assert refused(await respond(http, it, kind, data), 400, 50035)
    assert it.callbacks == [], "a refused callback does not acknowledge"
    assert (await respond(http, it, 5)).status_code == 200


# -- the real discord.py meets the same rule ---------------------------------------------------


async def test_discord_py_followup_after_a_public_defer_is_public(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    """``defer(thinking=True)`` then ``followup.send(ephemeral=True)``, as discord.py
    builds them: the follow-up comes back as the loading message, public."""
    sent: asyncio.Future[discord_py.WebhookMessage] = asyncio.get_running_loop().create_future()
    # Sharded, as the adapter's bot: it takes the gateway URL from GET /gateway/bot.
    client = discord_py.AutoShardedClient(intents=discord_py.Intents.none())

    @client.event
    async def on_interaction(interaction: discord_py.Interaction[Any]) -> None:
        try:
            await interaction.response.defer(thinking=True)
            message = await interaction.followup.send("refused", ephemeral=True, wait=True)
            sent.set_result(message)
        except Exception as exc:  # handed to the test
            sent.set_exception(exc)

    base = discord_py.http.Route.BASE
    discord_py.http.Route.BASE = discord.api_url
    runner = asyncio.create_task(client.start(BOT_TOKEN))
    try:
        await asyncio.wait_for(client.wait_until_ready(), 15)
        it = await kontext(discord)
        message = await asyncio.wait_for(sent, 15)
        assert str(message.id) == it.original_id
        assert not message.flags.ephemeral
        assert [c["type"] for c in it.callbacks] == [5]
        assert [m["content"] for m in discord.public_messages(CHANNEL_ID)] == ["refused"]
    finally:
        await client.close()
        await asyncio.wait_for(runner, 15)
        discord_py.http.Route.BASE = base


def _rows(rows: int, per_row: int, *, same_ids: bool = False) -> list[dict[str, Any]]:
    return [
        {
            "type": 1,
            "components": [
                {
                    "type": 2,
                    "style": 1,
                    "label": f"b{r}.{b}",
                    "custom_id": "same" if same_ids else f"id:{r}:{b}",
                }
                for b in range(per_row)
            ],
        }
        for r in range(rows)
    ]


async def test_messages_hold_2000_characters_and_5_rows_of_5_buttons_with_unique_ids(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    create = f"/channels/{CHANNEL_ID}/messages"
    fits = await http.post(create, json={"content": "ok", "components": _rows(5, 5)}, headers=BOT)
    assert fits.status_code == 200
    for rows in (_rows(6, 1), _rows(1, 6), _rows(2, 1, same_ids=True)):
        answer = await http.post(create, json={"content": "x", "components": rows}, headers=BOT)
        assert refused(answer, 400, 50035)
    # The same rules hold for an interaction's response and its edits.
    it = await discord.slash_command("kontext", {"prompt": "x"}, user_id=ALICE)
    callback = f"/interactions/{it.id}/{it.token}/callback"
    too_many = {"type": 4, "data": {"content": "x", "components": _rows(6, 2), "flags": 64}}
    assert refused(await http.post(callback, json=too_many), 400, 50035)
    assert it.callbacks == []
    too_long = await http.post(create, json={"content": "x" * 2001}, headers=BOT)
    assert refused(too_long, 400, 50035)
    embed = {"content": "x" * 2000, "embeds": [{"description": "y" * 4096}]}
    assert (await http.post(create, json=embed, headers=BOT)).status_code == 200
    embed["embeds"] = [{"description": "y" * 4097}]
    assert refused(await http.post(create, json=embed, headers=BOT), 400, 50035)
    path = fits.json()["id"]
    edit = await http.patch(f"{create}/{path}", json={"components": _rows(6, 1)}, headers=BOT)
    assert refused(edit, 400, 50035)


async def test_a_select_fills_its_row_and_lists_at_most_25_options_and_10_files_a_message(
    http: httpx.AsyncClient,
) -> None:
    """Discord: an action row holds "up to 5 buttons, or a single select component", a
    select "max 25" options, a message up to 10 files; each refused with 50035."""
    create = f"/channels/{CHANNEL_ID}/messages"

    def select(options: int) -> dict[str, Any]:
        choices = [{"label": f"p{i}", "value": f"p{i}"} for i in range(options)]
        return {"type": 3, "custom_id": "more", "options": choices}

    alone = [{"type": 1, "components": [select(25)]}]
    fits = await http.post(create, json={"content": "ok", "components": alone}, headers=BOT)
    assert fits.status_code == 200
    beside = [{"type": 1, "components": [select(3), *_rows(1, 1)[0]["components"]]}]
    for rows in (beside, [{"type": 1, "components": [select(26)]}]):
        answer = await http.post(create, json={"content": "x", "components": rows}, headers=BOT)
        assert refused(answer, 400, 50035)
    files = [{"id": i, "filename": f"{i}.png"} for i in range(11)]
    answer = await http.post(create, json={"content": "x", "attachments": files}, headers=BOT)
    assert refused(answer, 400, 50035)
    ten = {"content": "x", "attachments": files[:10]}
    parts = {f"files[{i}]": (f"{i}.png", b"png", "image/png") for i in range(10)}
    payload = {"payload_json": json.dumps(ten)}
    answer = await http.post(create, data=payload, files=parts, headers=BOT)
    assert answer.status_code == 200 and len(answer.json()["attachments"]) == 10


async def test_a_custom_id_holds_100_characters_and_a_button_label_80(
    http: httpx.AsyncClient,
) -> None:
    """Discord: "custom_id ... max 100 characters", a button's label "max 80
    characters"; more is refused with 50035, at the limit it is taken."""
    create = f"/channels/{CHANNEL_ID}/messages"

    def row(custom_id: str, label: str) -> list[dict[str, Any]]:
        button = {"type": 2, "style": 2, "custom_id": custom_id, "label": label}
        return [{"type": 1, "components": [button]}]

    fits = await http.post(
        create, json={"content": "ok", "components": row("c" * 100, "l" * 80)}, headers=BOT
    )
    assert fits.status_code == 200
    for rows in (row("c" * 101, "ok"), row("ok", "l" * 81)):
        answer = await http.post(create, json={"content": "x", "components": rows}, headers=BOT)
        assert refused(answer, 400, 50035)


async def test_a_command_option_with_more_than_25_choices_is_refused(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    """Discord: an option's "choices ... max 25"; the whole overwrite fails with 50035."""

    def command(count: int) -> list[dict[str, Any]]:
        choices = [{"name": f"m{i} · 10 credits", "value": f"m{i}"} for i in range(count)]
        option = {"name": "model", "type": 3, "description": "model", "choices": choices}
        return [{**COMMANDS[0], "options": [*COMMANDS[0]["options"], option]}]

    path = f"/applications/{APPLICATION_ID}/guilds/{GUILD_ID}/commands"
    before = discord.commands[GUILD_ID]
    refused = await http.put(path, json=command(26), headers=BOT)
    assert refused.status_code == 400 and refused.json()["code"] == 50035
    assert discord.commands[GUILD_ID] == before  # nothing of the overwrite took
    taken = await http.put(path, json=command(25), headers=BOT)
    assert taken.status_code == 200
    assert len(discord.commands[GUILD_ID][0]["options"][1]["choices"]) == 25


async def test_a_message_with_more_than_10_attachments_is_refused(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    """Discord: up to 10 files per message (Uploading Files); more is 400 / 50035 and
    nothing is posted (discord.py refuses them before sending, so this is raw HTTP)."""
    path = f"/channels/{CHANNEL_ID}/messages"

    def upload(count: int) -> dict[str, Any]:
        described = [{"id": i, "filename": f"v{i}.png"} for i in range(count)]
        files: dict[str, Any] = {
            f"files[{i}]": (f"v{i}.png", b"\x89PNG", "image/png") for i in range(count)
        }
        files["payload_json"] = (None, json.dumps({"content": "x", "attachments": described}))
        return files

    posted_before = len(discord.channel_messages(CHANNEL_ID))
    refused = await http.post(path, files=upload(11), headers=BOT)
    assert refused.status_code == 400 and refused.json()["code"] == 50035
    assert "at most 10" in refused.json()["message"]
    assert len(discord.channel_messages(CHANNEL_ID)) == posted_before
    taken = await http.post(path, files=upload(10), headers=BOT)
    assert taken.status_code == 200 and len(taken.json()["attachments"]) == 10


# -- rate limits (https://discord.com/developers/docs/topics/rate-limits) -------------------


async def test_a_route_bucket_refuses_past_its_limit_with_discords_headers(
    discord: FakeDiscord, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    discord.route_limits = RouteLimits(per_route=5, window=2.0)
    path = f"/channels/{CHANNEL_ID}/messages"
    answers = [await http.post(path, json={"content": f"m{n}"}, headers=BOT) for n in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    first, limited = answers[0], answers[-1]
    assert first.headers["X-RateLimit-Limit"] == "5"
    assert first.headers["X-RateLimit-Remaining"] == "4"
    assert answers[4].headers["X-RateLimit-Remaining"] == "0"
    assert float(first.headers["X-RateLimit-Reset-After"]) == pytest.approx(2.0)
    assert limited.json()["global"] is False and limited.json()["retry_after"] > 0
    assert limited.headers["Retry-After"] == "2" and limited.headers["Via"]
    assert limited.headers["X-RateLimit-Bucket"] == first.headers["X-RateLimit-Bucket"]
    # Another channel is another bucket (channel_id is a major parameter); after the
    # reset, this one takes calls again.
    other = await http.post(
        f"/channels/{ART_CHANNEL_ID}/messages", json={"content": "x"}, headers=BOT
    )
    assert other.status_code == 200
    assert other.headers["X-RateLimit-Bucket"] != first.headers["X-RateLimit-Bucket"]
    clock.advance(2.0)
    assert (await http.post(path, json={"content": "again"}, headers=BOT)).status_code == 200
    assert [c.json for c in discord.limited] == [{"content": "m5"}]


async def test_the_global_limit_spares_interaction_endpoints(
    discord: FakeDiscord, http: httpx.AsyncClient
) -> None:
    discord.route_limits = RouteLimits(per_route=100, global_per_second=3)
    for _ in range(3):
        assert (await http.get("/users/@me", headers=BOT)).status_code == 200
    refused_call = await http.get("/users/@me", headers=BOT)
    assert refused_call.status_code == 429 and refused_call.json()["global"] is True
    assert refused_call.headers["X-RateLimit-Global"] == "true"
    it = await kontext(discord)
    assert (await respond(http, it, 5)).status_code in (200, 204)  # not globally limited


async def test_discord_py_waits_out_a_429_that_carries_discords_via_header(
    discord: FakeDiscord,
) -> None:
    """The real client against the fake's 429: it waits ``retry_after`` and retries
    (discord/http.py), which it does only for an answer with Discord's ``Via``."""
    discord.rate_limits[f"POST /channels/{CHANNEL_ID}/messages"] = 2
    client = discord_py.Client(intents=discord_py.Intents.none())
    discord_py.http.Route.BASE = discord.api_url
    await client.login(BOT_TOKEN)
    try:
        sent = await client.get_partial_messageable(int(CHANNEL_ID)).send("after two 429s")
    finally:
        await client.close()
    assert sent.content == "after two 429s"
    assert [c.status for c in discord.calls_to("POST", "/channels/")] == [429, 429, 200]
