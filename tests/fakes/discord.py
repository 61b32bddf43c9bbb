"""A loopback fake of Discord's REST API, gateway and CDN, for the real discord.py client.

The bot points ``discord.http.Route.BASE`` at ``fake.api_url`` (config key
``discord.api_base_url``); ``GET /gateway/bot`` then hands out this server's websocket,
which speaks the gateway protocol as discord.py expects it: HELLO, heartbeats and their
ACKs, IDENTIFY (token and privileged intents checked, close code 4004/4014 like
Discord's), READY, GUILD_CREATE, RESUME, and DISPATCH events compressed the way the
client asked (``zlib-stream``, a shared zlib context flushed with Z_SYNC_FLUSH per
message).

Tests play the users: ``slash_command``, ``context_menu``, ``click`` and ``submit_modal``
send INTERACTION_CREATE events built like Discord's, and ``post_message`` sends
MESSAGE_CREATE. Payload shapes follow discord.py 2.7's http.py, gateway.py,
interactions.py and webhook/async_.py.

Discord's documented rules, enforced (each cited where it lives in the code):

- one initial response per interaction (a second: 400, code 40060), sent within
  ``INITIAL_RESPONSE_SECONDS`` (3 s) of the interaction, else 404 code 10062 and the token
  is invalidated;
- a follow-up sent directly after a type 5 deferral edits the loading message and keeps
  the deferral's ephemeral state (the follow-up's ephemeral flag is ignored);
- interaction tokens live ``TOKEN_LIFETIME_SECONDS`` (15 minutes): afterwards every
  webhook call answers 401 code 50027;
- a webhook token edits, reads or deletes only its interaction's messages;
- ephemeral messages do not exist for the channel-messages API (404 code 10008), a bot
  edits only its own messages and deletes others' only with Manage Messages;
- channels in ``hidden_channels`` are invisible to the bot (VIEW_CHANNEL denied):
  every ``/channels/{id}/messages...`` call answers 403 code 50001, while interactions
  there keep working;
- sharding (https://discord.com/developers/docs/events/gateway#sharding): IDENTIFY's
  ``shard: [shard_id, num_shards]`` is checked (close code 4010 Invalid shard), a
  session that would hold more than ``max_guilds_per_shard`` guilds is closed with 4011
  Sharding required, and a guild's events (interactions included) go only to the
  sessions of its shard, ``(guild_id >> 22) % num_shards``; events without a guild
  (DMs) go to shard 0. ``GET /gateway/bot`` recommends ``recommended_shards``.

More guilds than the main one: ``add_guild(guild_id, channel_id)`` (one text channel
each); users act in a guild by acting in its channel.

Time is read from ``clock`` (default ``time.monotonic``); give it a ``FakeClock`` and
``advance`` it to cross the 3-second or 15-minute limits without sleeping.
``expire(token)`` still ends one token at once.

What tests inspect:

- ``calls`` (every REST call, with the ``status`` and error ``code`` the fake answered)
  and ``calls_to``; ``refusals(code)`` lists the calls refused with that error code;
- ``messages`` / ``channel_messages`` / ``message``: the current state of every message
  per channel (deleted ones are gone), ephemeral ones included with flag 64;
- ``message_log``: every create, edit and delete as a ``MessageEvent`` holding a
  snapshot of the message as it was then, so "was it ever shown publicly?" can be asked;
- ``visible(channel, viewer=None)``: the messages in the channel as ``viewer`` sees them
  now (public ones, plus the ephemeral ones addressed to ``viewer``);
  ``public_messages(channel)`` and ``ephemeral_messages(channel, user)`` split them;
- ``ever_public(channel)``: every public version (create or edit) of every message
  that was ever in the channel, including versions later edited or deleted;
- ``is_ephemeral(message)`` and ``recipient(message)`` (the user an interaction's
  message was for).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
import json
import math
import re
import time
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import WSMsgType, web

BOT_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GfakeX.faketokenfaketokenfaketokenfake1234"
APPLICATION_ID = "1098765432109876540"
BOT_USER_ID = "1098765432109876540"
GUILD_ID = "2000000000000000001"
CHANNEL_ID = "3000000000000000001"
ART_CHANNEL_ID = "3000000000000000002"
PRIVATE_CHANNEL_ID = "3000000000000000003"  # in the guild; hide it with hidden_channels
MESSAGE_CONTENT_INTENT = 1 << 15
MESSAGE_FLAG_EPHEMERAL = 1 << 6
MESSAGE_FLAG_LOADING = 1 << 7
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
MANAGE_MESSAGES = 1 << 13
DEFAULT_PERMISSIONS = VIEW_CHANNEL | (1 << 11) | (1 << 15)  # view, send, attach files

# https://discord.com/developers/docs/interactions/receiving-and-responding
# #interaction-callback: "Interaction tokens are valid for 15 minutes [...] but you must
# send an initial response within 3 seconds of receiving the event. If the 3 second
# deadline is exceeded, the token will be invalidated."
INITIAL_RESPONSE_SECONDS = 3.0
TOKEN_LIFETIME_SECONDS = 15 * 60.0


@dataclass
class Call:
    method: str
    path: str
    json: Any
    files: dict[str, bytes]
    query: dict[str, str]
    status: int = 0  # what the fake answered
    code: int | None = None  # Discord's JSON error code, when it refused


@dataclass
class MessageEvent:
    """One change to a message, with a snapshot of the message as it was after it (for a
    delete: as it was when deleted)."""

    kind: Literal["create", "edit", "delete"]
    channel_id: str
    message: dict[str, Any]
    # What the bot sent as ``allowed_mentions`` with this create or edit (None: absent).
    allowed_mentions: dict[str, Any] | None = None

    @property
    def ephemeral(self) -> bool:
        return bool(self.message.get("flags", 0) & MESSAGE_FLAG_EPHEMERAL)


@dataclass
class Interaction:
    """One interaction the fake sent, and what the bot answered to it."""

    id: str
    token: str
    type: int
    user_id: str
    channel_id: str
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original_id: str | None = None
    expired: bool = False
    component_message_id: str | None = None  # a component's message (type 3 only)
    sent_at: float | None = None  # fake.clock() when the event went out
    loading: bool = False  # a type 5 loading message nothing has edited yet
    message_ids: set[str] = field(default_factory=set)  # what its token may touch

    @property
    def modal(self) -> dict[str, Any] | None:
        for callback in self.callbacks:
            if callback["type"] == 9:
                return dict(callback["data"])
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _user(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": user_id,
        "username": name,
        "global_name": name,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
    }


@dataclass
class FakeDiscord:
    token: str = BOT_TOKEN
    message_content_allowed: bool = True
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # attachment id -> data
    interactions: dict[str, Interaction] = field(default_factory=dict)  # by token
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # scope -> defs
    # Each user's client language and the server's (an interaction's ``locale`` and
    # ``guild_locale``, the guild's ``preferred_locale``); Discord's default is en-US.
    user_locales: dict[str, str] = field(default_factory=dict)
    guild_locale: str = "en-US"
    identifies: list[dict[str, Any]] = field(default_factory=list)
    cdn_requests: list[str] = field(default_factory=list)
    rate_limits: dict[str, int] = field(default_factory=dict)  # "METHOD path-prefix" -> count
    # Discord's buckets, enforced when set (``RouteLimits``); read on ``clock``.
    route_limits: RouteLimits | None = None
    limited: list[Call] = field(default_factory=list)  # every call answered 429 by them
    # Members' permissions by user id (the interaction's ``member.permissions``).
    permissions: dict[str, int] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # role id -> name
    member_roles: dict[str, list[str]] = field(default_factory=dict)  # user id -> role ids
    heartbeat_interval_ms: int = 41_250
    # Seconds, for the 3-second and 15-minute limits; a test injects a FakeClock.
    clock: Callable[[], float] = time.monotonic
    # Channels the bot cannot see (VIEW_CHANNEL denied): interactions work there, the
    # bot token's channel-messages calls answer 403 Missing Access.
    hidden_channels: set[str] = field(default_factory=set)
    message_log: list[MessageEvent] = field(default_factory=list)
    dm_channels: dict[str, str] = field(default_factory=dict)  # user id -> DM channel id
    # Guilds besides GUILD_ID: guild id -> its one text channel (``add_guild``).
    other_guilds: dict[str, str] = field(default_factory=dict)
    # What GET /gateway/bot recommends, and the most guilds one session may hold
    # (Discord: "Sharding is required for apps in 2,500 or more guilds").
    recommended_shards: int = 1
    max_guilds_per_shard: int = 2500
    # Every DISPATCH sent: (the session's (shard_id, num_shards), event name, guild id).
    gateway_log: list[tuple[tuple[int, int], str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(4_000_000_000_000_000_000)
        self._sockets: list[_GatewaySocket] = []
        self._app = web.Application(client_max_size=64 * 1024 * 1024)
        self._app.router.add_route("GET", "/gateway", self._gateway)
        self._app.router.add_route("GET", "/cdn/{attachment}/{filename}", self._cdn)
        self._app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.users: dict[str, dict[str, Any]] = {
            BOT_USER_ID: _user(BOT_USER_ID, "Kontext", bot=True)
        }
        self.connected = asyncio.Event()
        self._sockets_changed = asyncio.Event()
        self._session_shards: dict[str, tuple[int, int]] = {}  # session id -> shard

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        for sock in list(self._sockets):
            await sock.close(1001)
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v10"

    # -- what tests inspect ----------------------------------------------------------------

    def ready_shards(self) -> list[tuple[int, int]]:
        """``(shard_id, num_shards)`` of every ready gateway session (unsharded: (0, 1))."""
        return sorted(s.shard for s in self._sockets if s.ready)

    def add_guild(self, guild_id: str, channel_id: str) -> None:
        """Another guild with one text channel; sessions that connect later get it."""
        self.other_guilds[guild_id] = channel_id

    def guild_ids(self) -> list[str]:
        return [GUILD_ID, *self.other_guilds]

    def guild_of(self, channel_id: str) -> str:
        for guild_id, channel in self.other_guilds.items():
            if channel == channel_id:
                return guild_id
        return GUILD_ID

    def calls_to(self, method: str, path_prefix: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    def channel_messages(self, channel_id: str) -> list[dict[str, Any]]:
        return list(self.messages.get(channel_id, {}).values())

    def message(self, channel_id: str, message_id: str) -> dict[str, Any]:
        return self.messages[channel_id][message_id]

    def attachment_bytes(self, attachment: dict[str, Any]) -> bytes:
        return self.files[str(attachment["id"])][0]

    def expire(self, token: str) -> None:
        """Play the 15-minute limit at once: the interaction's token stops working."""
        self.interactions[token].expired = True

    def refusals(self, code: int) -> list[Call]:
        """The calls the fake refused with Discord's JSON error ``code``."""
        return [c for c in self.calls if c.code == code]

    @staticmethod
    def is_ephemeral(message: dict[str, Any]) -> bool:
        return bool(message.get("flags", 0) & MESSAGE_FLAG_EPHEMERAL)

    @staticmethod
    def recipient(message: dict[str, Any]) -> str | None:
        """The user an interaction's message answers (who sees it when ephemeral)."""
        metadata = message.get("interaction_metadata") or {}
        user = metadata.get("user") or {}
        return str(user["id"]) if "id" in user else None

    def visible(self, channel_id: str, viewer: str | None = None) -> list[dict[str, Any]]:
        """The channel as ``viewer`` sees it now: public messages and the ephemeral ones
        addressed to ``viewer`` (none when ``viewer`` is None: what everyone sees)."""
        return [
            m
            for m in self.channel_messages(channel_id)
            if not self.is_ephemeral(m) or (viewer is not None and self.recipient(m) == viewer)
        ]

    def public_messages(self, channel_id: str) -> list[dict[str, Any]]:
        """What everyone in the channel sees now."""
        return self.visible(channel_id)

    def ephemeral_messages(
        self, channel_id: str, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Ephemeral messages in the channel now (only those for ``user_id`` if given)."""
        return [
            m
            for m in self.channel_messages(channel_id)
            if self.is_ephemeral(m) and (user_id is None or self.recipient(m) == user_id)
        ]

    def pingable(self, event: MessageEvent) -> set[str]:
        """Whom this version of a message could ping ("everyone", "user:<id>",
        "role:<id>"), by Discord's rules for ``allowed_mentions``
        (https://discord.com/developers/docs/resources/message#allowed-mentions-object):
        without it every mention in the content pings and a reply pings the replied-to
        author; with it only the ``parse`` kinds and the listed ids, and the replied-to
        author only with ``replied_user``."""
        content = event.message.get("content") or ""
        users = set(re.findall(r"<@!?(\d+)>", content))
        roles = set(re.findall(r"<@&(\d+)>", content))
        everyone = "@everyone" in content or "@here" in content
        reference = (event.message.get("message_reference") or {}).get("message_id")
        replied = (self.messages.get(event.channel_id, {}).get(str(reference)) or {}).get(
            "author", {}
        )
        allowed = event.allowed_mentions
        if allowed is None:
            found = {f"user:{u}" for u in users} | {f"role:{r}" for r in roles}
            if replied:
                found.add(f"user:{replied['id']}")
            return found | ({"everyone"} if everyone else set())
        parse = set(allowed.get("parse") or [])
        listed_users = {str(u) for u in allowed.get("users") or []}
        listed_roles = {str(r) for r in allowed.get("roles") or []}
        found = {f"user:{u}" for u in users if "users" in parse or u in listed_users}
        found |= {f"role:{r}" for r in roles if "roles" in parse or r in listed_roles}
        if everyone and "everyone" in parse:
            found.add("everyone")
        if replied and allowed.get("replied_user"):
            found.add(f"user:{replied['id']}")
        return found

    def bot_events(self) -> list[MessageEvent]:
        """Every create and edit of a message the bot authored."""
        return [
            e
            for e in self.message_log
            if e.kind != "delete" and str(e.message["author"]["id"]) == BOT_USER_ID
        ]

    def ever_public(self, channel_id: str) -> list[dict[str, Any]]:
        """Every public version of every message of the channel, in order, including
        versions later edited away or deleted: what someone may have seen."""
        return [
            e.message
            for e in self.message_log
            if e.channel_id == channel_id and e.kind != "delete" and not e.ephemeral
        ]

    # -- building Discord objects -------------------------------------------------------------

    def next_id(self) -> str:
        return str(next(self._ids))

    def add_user(self, user_id: str, name: str) -> dict[str, Any]:
        self.users[user_id] = _user(user_id, name)
        return self.users[user_id]

    async def add_role(self, role_id: str, name: str) -> None:
        """A role created in the server, announced to the bot as Discord does."""
        self.roles[role_id] = name
        await self.dispatch(
            "GUILD_ROLE_CREATE", {"guild_id": GUILD_ID, "role": self._role(role_id, name)}
        )

    def upload(self, data: bytes, filename: str, content_type: str | None) -> dict[str, Any]:
        """An attachment as Discord describes it, served by the fake CDN."""
        attachment_id = self.next_id()
        self.files[attachment_id] = (data, content_type or "application/octet-stream")
        payload: dict[str, Any] = {
            "id": attachment_id,
            "filename": filename,
            "size": len(data),
            "url": f"{self.base_url}/cdn/{attachment_id}/{filename}?ex=1&is=1&hm=abc",
            "proxy_url": f"{self.base_url}/cdn/{attachment_id}/{filename}",
        }
        if content_type is not None:
            payload["content_type"] = content_type
        return payload

    def _member(self, user_id: str) -> dict[str, Any]:
        permissions = self.permissions.get(user_id, DEFAULT_PERMISSIONS)
        return {
            "user": self.users[user_id],
            "roles": list(self.member_roles.get(user_id, [])),
            "joined_at": _now(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": str(permissions),
        }

    def _store_message(
        self,
        channel_id: str,
        *,
        author: dict[str, Any],
        content: str = "",
        attachments: list[dict[str, Any]] | None = None,
        embeds: list[dict[str, Any]] | None = None,
        components: list[dict[str, Any]] | None = None,
        reference: str | None = None,
        flags: int = 0,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": message_id or self.next_id(),
            "channel_id": channel_id,
            "guild_id": self.guild_of(channel_id),
            "author": author,
            "content": content,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": embeds or [],
            "components": components or [],
            "pinned": False,
            "type": 0 if reference is None else 19,
            "flags": flags,
        }
        if reference is not None:
            message["message_reference"] = {
                "message_id": reference,
                "channel_id": channel_id,
                "guild_id": self.guild_of(channel_id),
            }
            message["referenced_message"] = self.messages.get(channel_id, {}).get(reference)
        self.messages.setdefault(channel_id, {})[message["id"]] = message
        self._log("create", channel_id, message)
        return message

    def _log(self, kind: Literal["create", "edit", "delete"], channel: str, message: Any) -> None:
        self.message_log.append(MessageEvent(kind, channel, copy.deepcopy(message)))

    def _role(self, role_id: str, name: str) -> dict[str, Any]:
        return {
            "id": role_id,
            "name": name,
            "permissions": str(DEFAULT_PERMISSIONS),
            "position": 0 if role_id in self.guild_ids() else 1,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    def _channel(self, channel_id: str) -> dict[str, Any]:
        names = {CHANNEL_ID: "general", ART_CHANNEL_ID: "art"}
        names_elsewhere = set(self.other_guilds.values())
        overwrites: list[dict[str, Any]] = []
        if channel_id in self.hidden_channels:
            # How a server hides a channel from a member: an overwrite denying VIEW_CHANNEL
            # (https://discord.com/developers/docs/topics/permissions#permission-overwrites).
            overwrites.append(
                {"id": BOT_USER_ID, "type": 1, "allow": "0", "deny": str(VIEW_CHANNEL)}
            )
        return {
            "id": channel_id,
            "type": 0,
            "guild_id": self.guild_of(channel_id),
            "name": names.get(
                channel_id, "general" if channel_id in names_elsewhere else "private"
            ),
            "position": 0,
            "permission_overwrites": overwrites,
            "nsfw": False,
            "parent_id": None,
        }

    def guild_payload(self, guild_id: str = GUILD_ID) -> dict[str, Any]:
        if guild_id == GUILD_ID:
            channels = dict.fromkeys(
                [CHANNEL_ID, ART_CHANNEL_ID, PRIVATE_CHANNEL_ID, *sorted(self.hidden_channels)]
            )
            roles = self.roles.items()
        else:
            channels = dict.fromkeys([self.other_guilds[guild_id]])
            roles = {}.items()
        return {
            "id": guild_id,
            "name": "Fake Art Server" if guild_id == GUILD_ID else f"Server {guild_id}",
            "icon": None,
            "owner_id": "1",
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "features": [],
            "mfa_level": 0,
            "premium_tier": 0,
            "preferred_locale": self.guild_locale,
            "nsfw_level": 0,
            "roles": [self._role(guild_id, "@everyone")]
            + [self._role(role_id, name) for role_id, name in roles],
            "emojis": [],
            "stickers": [],
            "channels": [self._channel(channel) for channel in channels],
            "threads": [],
            "members": [self._member(BOT_USER_ID)],
            "member_count": 2,
            "large": False,
            "unavailable": False,
            "joined_at": _now(),
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
        }

    # -- playing users -------------------------------------------------------------------------

    def _interaction(
        self, kind: int, user_id: str, channel_id: str, data: dict[str, Any], **extra: Any
    ) -> dict[str, Any]:
        interaction_id = self.next_id()
        token = f"itoken-{interaction_id}"
        self.interactions[token] = Interaction(interaction_id, token, kind, user_id, channel_id)
        # The bot's permissions in the channel: nothing where it cannot view the channel
        # (https://discord.com/developers/docs/topics/permissions#permission-overwrites).
        app_permissions = 0 if channel_id in self.hidden_channels else DEFAULT_PERMISSIONS
        guild_id = self.guild_of(channel_id)
        payload = {
            "id": interaction_id,
            "application_id": APPLICATION_ID,
            "type": kind,
            "data": data,
            "guild_id": guild_id,
            "channel_id": channel_id,
            "channel": self._channel(channel_id),
            "member": self._member(user_id),
            "token": token,
            "version": 1,
            "app_permissions": str(app_permissions),
            "locale": self.user_locales.get(user_id, "en-US"),
            "guild_locale": self.guild_locale,
            "entitlements": [],
            "authorizing_integration_owners": {"0": guild_id},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        payload.update(extra)
        return payload

    async def slash_command(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user_id: str,
        channel_id: str = CHANNEL_ID,
        attachment: dict[str, Any] | None = None,
        attachments: dict[str, dict[str, Any]] | None = None,
    ) -> Interaction:
        """``/name option:value ...``; an ``attachment`` fills the (first) option typed
        11, ``attachments`` the attachment options it names (``image2``: ...)."""
        definition = self._command(name)
        types = {o["name"]: o["type"] for o in definition.get("options", [])}
        opts = [
            {"name": key, "type": types[key], "value": value}
            for key, value in (options or {}).items()
        ]
        data: dict[str, Any] = {"id": definition["id"], "name": name, "type": 1, "options": opts}
        if attachment is not None:
            slot = next(k for k, t in types.items() if t == 11)
            opts.append({"name": slot, "type": 11, "value": attachment["id"]})
            data["resolved"] = {"attachments": {attachment["id"]: attachment}}
        for slot, given in (attachments or {}).items():
            assert types[slot] == 11, f"{slot} is not an attachment option"
            opts.append({"name": slot, "type": 11, "value": given["id"]})
            resolved_files = data.setdefault("resolved", {}).setdefault("attachments", {})
            resolved_files[given["id"]] = given
        for key, value in (options or {}).items():
            if types[key] == 6:  # user: the user and their member object without "user"
                resolved = data.setdefault("resolved", {})
                resolved.setdefault("users", {})[str(value)] = self.users[str(value)]
                member = self._member(str(value))
                del member["user"]
                resolved.setdefault("members", {})[str(value)] = member
        data["guild_id"] = self.guild_of(channel_id) if definition.get("guild_id") else None
        if data["guild_id"] is None:
            del data["guild_id"]
        payload = self._interaction(2, user_id, channel_id, data)
        await self._send_interaction(payload)
        return self.interactions[payload["token"]]

    async def subcommand(
        self, name: str, sub: str, options: dict[str, Any], *, user_id: str
    ) -> Interaction:
        """``/name sub option:value``: a command group's subcommand."""
        definition = self._command(name)
        sub_def = next(o for o in definition["options"] if o["name"] == sub)
        types = {o["name"]: o["type"] for o in sub_def.get("options", [])}
        opts = [{"name": k, "type": types[k], "value": v} for k, v in options.items()]
        data: dict[str, Any] = {
            "id": definition["id"],
            "name": name,
            "type": 1,
            "options": [{"name": sub, "type": 1, "options": opts}],
        }
        resolved: dict[str, dict[str, Any]] = {}
        for key, value in options.items():
            ident = str(value)
            if types[key] == 6:  # user: the user and their member object without "user"
                resolved.setdefault("users", {})[ident] = self.users[ident]
                member = self._member(ident)
                del member["user"]
                resolved.setdefault("members", {})[ident] = member
            elif types[key] == 7:  # channel
                channel = {**self._channel(ident), "permissions": str(DEFAULT_PERMISSIONS)}
                resolved.setdefault("channels", {})[ident] = channel
            elif types[key] == 8:  # role
                resolved.setdefault("roles", {})[ident] = self._role(ident, self.roles[ident])
        if resolved:
            data["resolved"] = resolved
        payload = self._interaction(2, user_id, CHANNEL_ID, data)
        await self._send_interaction(payload)
        return self.interactions[payload["token"]]

    async def context_menu(
        self, name: str, message: dict[str, Any], *, user_id: str
    ) -> Interaction:
        definition = self._command(name)
        data = {
            "id": definition["id"],
            "name": name,
            "type": 3,
            "target_id": message["id"],
            "resolved": {"messages": {message["id"]: message}},
        }
        payload = self._interaction(2, user_id, message["channel_id"], data)
        await self._send_interaction(payload)
        return self.interactions[payload["token"]]

    async def click(self, message: dict[str, Any], label: str, *, user_id: str) -> Interaction:
        """Press the button labelled ``label`` on a message the bot posted."""
        button = next(
            component
            for row in message["components"]
            for component in row["components"]
            if component.get("label") == label
        )
        data = {"custom_id": button["custom_id"], "component_type": 2}
        payload = self._interaction(3, user_id, message["channel_id"], data, message=message)
        self.interactions[payload["token"]].component_message_id = str(message["id"])
        await self._send_interaction(payload)
        return self.interactions[payload["token"]]

    async def choose(
        self, message: dict[str, Any], placeholder: str, value: str, *, user_id: str
    ) -> Interaction:
        """Pick ``value`` in the string select with that placeholder on a bot message."""
        select = next(
            component
            for row in message["components"]
            for component in row["components"]
            if component.get("type") == 3 and component.get("placeholder") == placeholder
        )
        data = {"custom_id": select["custom_id"], "component_type": 3, "values": [value]}
        payload = self._interaction(3, user_id, message["channel_id"], data, message=message)
        self.interactions[payload["token"]].component_message_id = str(message["id"])
        await self._send_interaction(payload)
        return self.interactions[payload["token"]]

    async def submit_modal(
        self, opened_by: Interaction, values: dict[str, str], *, user_id: str
    ) -> Interaction:
        """Fill in the modal the bot answered ``opened_by`` with, by text input id."""
        modal = opened_by.modal
        assert modal is not None, "the bot did not open a modal"
        components = []
        for row in modal["components"]:
            inner = row.get("components") or [row.get("component")]
            for item in inner:
                if item and item.get("type") == 4:
                    value = values.get(item["custom_id"], item.get("value") or "")
                    submitted = {"type": 4, "custom_id": item["custom_id"], "value": value}
                    if row.get("type") == 18:
                        components.append(
                            {"type": 18, "id": row.get("id", 1), "component": submitted}
                        )
                    else:
                        components.append({"type": 1, "components": [submitted]})
                elif item and item.get("type") == 3 and row.get("type") == 18:
                    # A string select in a label: what was chosen, else its defaults
                    # (https://discord.com/developers/docs/components/reference#string-select).
                    chosen = values.get(item["custom_id"])
                    picked = (
                        [chosen]
                        if chosen is not None
                        else [o["value"] for o in item.get("options", []) if o.get("default")]
                    )
                    submitted = {"type": 3, "custom_id": item["custom_id"], "values": picked}
                    components.append({"type": 18, "id": row.get("id", 1), "component": submitted})
        data = {"custom_id": modal["custom_id"], "components": components}
        payload = self._interaction(5, user_id, opened_by.channel_id, data)
        await self._send_interaction(payload)
        return self.interactions[payload["token"]]

    async def post_message(
        self,
        content: str,
        *,
        user_id: str,
        channel_id: str = ART_CHANNEL_ID,
        attachments: list[dict[str, Any]] | None = None,
        reply_to: str | None = None,
        mention_bot: bool = False,
    ) -> dict[str, Any]:
        author = self.users[user_id]
        message = self._store_message(
            channel_id,
            author=author,
            content=content,
            attachments=attachments,
            reference=reply_to,
        )
        if mention_bot:
            message["mentions"] = [self.users[BOT_USER_ID]]
        event = dict(message)
        member = self._member(user_id)
        del member["user"]
        event["member"] = member
        await self.dispatch("MESSAGE_CREATE", event)
        return message

    def _command(self, name: str) -> dict[str, Any]:
        for scope, definitions in self.commands.items():
            for definition in definitions:
                if definition["name"] == name:
                    return {**definition, "guild_id": GUILD_ID if scope != "global" else None}
        raise AssertionError(f"command {name!r} was never synced; have {self.commands}")

    # -- gateway -------------------------------------------------------------------------------

    async def _send_interaction(self, payload: dict[str, Any]) -> None:
        """INTERACTION_CREATE; the 3-second and 15-minute clocks start when it goes out."""
        owners = await self._ready_owners(payload["guild_id"])
        self.interactions[payload["token"]].sent_at = self.clock()
        for sock in owners:
            await sock.dispatch("INTERACTION_CREATE", payload)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """To the sessions of the event's shard: its guild's (``guild_id``), or shard 0
        for events without a guild (gateway#sharding: "Only DMs will be sent to shard
        0"). Waits (a hang guard of 10 s) for such a session to be ready."""
        for sock in await self._ready_owners(data.get("guild_id")):
            await sock.dispatch(event, data)

    async def _ready_owners(self, guild_id: str | None) -> list[_GatewaySocket]:
        async with asyncio.timeout(10):
            while not (owners := [s for s in self._sockets if s.ready and s.owns(guild_id)]):
                self._sockets_changed.clear()
                await self._sockets_changed.wait()
        return owners

    def _session_ready(self, sock: _GatewaySocket) -> None:
        sock.ready = True
        self.connected.set()
        self._sockets_changed.set()

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sock = _GatewaySocket(self, ws, request.query.get("compress"))
        self._sockets.append(sock)
        try:
            await sock.serve()
        finally:
            self._sockets.remove(sock)
            if not any(s.ready for s in self._sockets):
                self.connected.clear()
        return ws

    # -- CDN -----------------------------------------------------------------------------------

    async def _cdn(self, request: web.Request) -> web.Response:
        attachment = request.match_info["attachment"]
        self.cdn_requests.append(attachment)
        if attachment not in self.files:
            return web.Response(status=404, text="Not Found")
        data, content_type = self.files[attachment]
        return web.Response(body=data, content_type=content_type)

    # -- REST ----------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        body, files = await self._body(request)
        call = Call(request.method, path, body, files, dict(request.query))
        self.calls.append(call)
        response = await self._answer(request, path, body, files)
        call.status = response.status
        if response.status >= 400 and isinstance(response, web.Response):
            raw = response.body
            if isinstance(raw, bytes) and raw:
                call.code = json.loads(raw).get("code")
        return response

    async def _answer(
        self, request: web.Request, path: str, body: Any, files: dict[str, bytes]
    ) -> web.StreamResponse:
        for key, count in list(self.rate_limits.items()):
            method, prefix = key.split(" ", 1)
            if count > 0 and method == request.method and path.startswith(prefix):
                self.rate_limits[key] = count - 1
                return _json(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": 0.05,
                        "global": False,
                    },
                    status=429,
                    headers={
                        "Retry-After": "1",
                        "X-RateLimit-Limit": "5",
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset-After": "0.05",
                        "X-RateLimit-Bucket": "fakebucket",
                        "X-RateLimit-Scope": "user",
                        "Via": VIA,
                    },
                )
        if self.route_limits is not None:
            limited = self.route_limits.take(request.method, path, self.clock())
            if isinstance(limited, web.Response):
                self.limited.append(self.calls[-1])
                return limited
            bucket_headers = limited
        else:
            bucket_headers = {}
        answer = await self._answer_unlimited(request, path, body, files)
        answer.headers.update(bucket_headers)
        return answer

    async def _answer_unlimited(
        self, request: web.Request, path: str, body: Any, files: dict[str, bytes]
    ) -> web.StreamResponse:
        webhook_route = path.startswith(("/webhooks/", "/interactions/"))
        if not webhook_route and request.headers.get("Authorization") != f"Bot {self.token}":
            return _error(401, 0, "401: Unauthorized")
        parts = path.strip("/").split("/")
        refused = _invalid_components(body) or _too_many_files(body, files)
        if refused is not None:
            return refused
        try:
            return await self._route(request.method, parts, body, files)
        except KeyError as exc:
            return _error(404, 10008, f"Unknown Message ({exc})")

    async def _body(self, request: web.Request) -> tuple[Any, dict[str, bytes]]:
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            payload: Any = None
            files: dict[str, bytes] = {}
            async for part in reader:
                name = getattr(part, "name", None) or ""
                data = await part.read()  # type: ignore[union-attr]
                if name == "payload_json":
                    payload = json.loads(bytes(data))
                else:
                    files[name] = bytes(data)
            return payload, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), {}

    async def _route(
        self, method: str, parts: list[str], body: Any, files: dict[str, bytes]
    ) -> web.StreamResponse:
        match method, parts:
            case "GET", ["users", "@me"]:
                return _json(self.users[BOT_USER_ID])
            case "GET", ["oauth2", "applications", "@me"]:
                return _json(self._application())
            case "GET", ["gateway", "bot"]:
                return _json(
                    {
                        "url": f"ws://127.0.0.1:{self.port}/gateway",
                        "shards": self.recommended_shards,
                        "session_start_limit": {
                            "total": 1000,
                            "remaining": 999,
                            "reset_after": 14400000,
                            "max_concurrency": 1,
                        },
                    }
                )
            case "PUT", ["applications", _, "commands"]:
                return _refused_commands(body) or _json(self._sync("global", body))
            case "PUT", ["applications", _, "guilds", guild, "commands"]:
                return _refused_commands(body) or _json(self._sync(guild, body))
            case "GET", ["applications", _, "commands"]:
                return _json(self.commands.get("global", []))
            case "GET", ["applications", _, "guilds", guild, "commands"]:
                return _json(self.commands.get(guild, []))
            case "POST", ["users", "@me", "channels"]:
                return _json(self._dm_channel(str(body["recipient_id"])))
            case "POST", ["interactions", _, token, "callback"]:
                return self._callback(token, body, files)
            case "POST", ["webhooks", _, token]:
                return self._followup(token, body, files)
            case (("GET" | "PATCH" | "DELETE"), ["webhooks", _, token, "messages", message]):
                return self._webhook_message(method, token, message, body, files)
            case _, ["channels", channel, "messages", *_] if channel in self.hidden_channels:
                # The bot token cannot reach a channel the bot cannot view: JSON error
                # 50001 "Missing access" (https://discord.com/developers/docs/topics/
                # opcodes-and-status-codes#json-json-error-codes); VIEW_CHANNEL is what
                # "Get Channel Messages"/"Create Message" need (https://discord.com/
                # developers/docs/resources/message#create-message). Interactions there
                # still work: they are webhooks, not the bot's channel access.
                return _error(403, 50001, "Missing Access")
            case "POST", ["channels", channel, "messages"]:
                return _json(self._create(channel, body, files))
            case (("GET" | "PATCH" | "DELETE"), ["channels", channel, "messages", message]):
                return self._channel_message(method, channel, message, body, files)
        return _error(404, 0, "404: Not Found")

    def _dm_channel(self, user_id: str) -> dict[str, Any]:
        """Create DM (https://discord.com/developers/docs/resources/user#create-dm): the
        bot's direct-message channel with a user; its messages are in ``messages`` under
        ``dm_channels[user_id]``."""
        channel_id = self.dm_channels.setdefault(user_id, self.next_id())
        return {
            "id": channel_id,
            "type": 1,
            "last_message_id": None,
            "recipients": [self.users[user_id]],
        }

    def _application(self) -> dict[str, Any]:
        flags = (1 << 19) if self.message_content_allowed else 0  # GATEWAY_MESSAGE_CONTENT
        return {
            "id": APPLICATION_ID,
            "name": "Kontext",
            "icon": None,
            "description": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": _user("1", "owner"),
            "verify_key": "0" * 64,
            "flags": flags,
            "team": None,
        }

    def _sync(self, scope: str, body: list[dict[str, Any]]) -> list[dict[str, Any]]:
        synced = []
        for definition in body:
            # Discord answers with every field filled in (context menus get an empty
            # description), and discord.py's AppCommand reads them.
            entry = {
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                **definition,
                "id": self.next_id(),
                "application_id": APPLICATION_ID,
                "version": "1",
            }
            if scope != "global":
                entry["guild_id"] = scope
            synced.append(entry)
        self.commands[scope] = synced
        return synced

    def _past_initial_deadline(self, interaction: Interaction) -> bool:
        """No initial response within 3 s (receiving-and-responding#interaction-callback:
        "you must send an initial response within 3 seconds of receiving the event")."""
        if interaction.sent_at is None:
            return False
        return self.clock() - interaction.sent_at > INITIAL_RESPONSE_SECONDS

    def _token_expired(self, interaction: Interaction) -> bool:
        """Older than 15 minutes (receiving-and-responding#followup-messages: "Interaction
        tokens are valid for 15 minutes"), or ended by ``expire``."""
        if interaction.expired:
            return True
        if interaction.sent_at is None:
            return False
        return self.clock() - interaction.sent_at >= TOKEN_LIFETIME_SECONDS

    def _webhook_interaction(self, token: str) -> Interaction | web.Response:
        """The interaction behind a webhook call's token, or Discord's refusal."""
        interaction = self.interactions.get(token)
        # An expired or invalidated token is JSON error 50027 "Invalid Webhook Token"
        # (https://discord.com/developers/docs/topics/opcodes-and-status-codes
        # #json-json-error-codes), answered with 401.
        if interaction is None or self._token_expired(interaction):
            return _expired()
        if not interaction.callbacks:
            # "If the 3 second deadline is exceeded, the token will be invalidated"
            # (receiving-and-responding#interaction-callback).
            if self._past_initial_deadline(interaction):
                return _expired()
            # Before the initial response there is no webhook to speak through yet.
            return _error(404, 10015, "Unknown Webhook")
        return interaction

    def _callback(self, token: str, body: Any, files: dict[str, bytes]) -> web.Response:
        """Create Interaction Response
        (https://discord.com/developers/docs/interactions/receiving-and-responding
        #create-interaction-response)."""
        interaction = self.interactions.get(token)
        if interaction is None:
            return _error(404, 10062, "Unknown interaction")
        if interaction.callbacks:
            # One initial response per interaction: JSON error 40060 "Interaction has
            # already been acknowledged" (opcodes-and-status-codes#json-json-error-codes;
            # receiving-and-responding#responding-to-an-interaction).
            return _error(400, 40060, "Interaction has already been acknowledged.")
        if self._token_expired(interaction) or self._past_initial_deadline(interaction):
            # Too late: "you must send an initial response within 3 seconds of receiving
            # the event. If the 3 second deadline is exceeded, the token will be
            # invalidated" (receiving-and-responding#interaction-callback); Discord then
            # answers 404 with JSON error 10062 "Unknown interaction".
            return _error(404, 10062, "Unknown interaction")
        kind = body["type"]
        data = body.get("data") or {}
        refusal = self._invalid_callback(interaction, kind, data)
        if refusal is not None:
            return refusal
        interaction.callbacks.append(body)
        resource: dict[str, Any] = {"type": kind}
        answer: dict[str, Any] = {
            "id": interaction.id,
            "type": interaction.type,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(data.get("flags", 0) & MESSAGE_FLAG_EPHEMERAL),
        }
        if kind in (4, 5):
            loading = MESSAGE_FLAG_LOADING if kind == 5 else 0
            message = self._bot_message(
                interaction.channel_id, data, files, extra_flags=loading, interaction=interaction
            )
            interaction.original_id = message["id"]
            interaction.message_ids.add(message["id"])
            interaction.loading = kind == 5
            answer["response_message_id"] = message["id"]
            # "message: Only present if type is either CHANNEL_MESSAGE_WITH_SOURCE or
            # UPDATE_MESSAGE" (receiving-and-responding#interaction-callback-interaction-
            # callback-resource-object); the deferral's id is in response_message_id.
            if kind == 4:
                resource["message"] = message
        elif kind in (6, 7) and interaction.component_message_id is not None:
            # For components the original response is the message the component is on:
            # 6 "edit the original message later", 7 "edit the message the component was
            # attached to" (receiving-and-responding#interaction-response-object-
            # interaction-callback-type).
            message_id = interaction.component_message_id
            interaction.original_id = message_id
            interaction.message_ids.add(message_id)
            if kind == 7:
                message = self._edit(interaction.channel_id, message_id, data, files)
                answer["response_message_id"] = message_id
                resource["message"] = message
        return _json({"interaction": answer, "resource": resource})

    def _invalid_callback(
        self, interaction: Interaction, kind: int, data: dict[str, Any]
    ) -> web.Response | None:
        """Callback types the interaction cannot take, per the callback type table
        (receiving-and-responding#interaction-response-object-interaction-callback-type):
        6 and 7 "Only valid for component-based interactions", 9 "Not available for
        MODAL_SUBMIT and PING interactions"; and a deferral's "only valid message flag
        you may use is EPHEMERAL" (#interaction-response-object-messages)."""
        if kind in (6, 7) and interaction.type not in (3, 5):
            return _error(400, 50035, "Invalid Form Body: callback type 6/7 needs a component")
        if kind == 9 and interaction.type in (1, 5):
            return _error(400, 50035, "Invalid Form Body: a modal cannot answer a modal")
        if kind == 5 and data.get("flags", 0) & ~MESSAGE_FLAG_EPHEMERAL:
            return _error(400, 50035, "Invalid Form Body: a deferral takes EPHEMERAL only")
        return None

    def _followup(self, token: str, body: Any, files: dict[str, bytes]) -> web.Response:
        """Create Followup Message
        (https://discord.com/developers/docs/interactions/receiving-and-responding
        #create-followup-message)."""
        got = self._webhook_interaction(token)
        if isinstance(got, web.Response):
            return got
        interaction = got
        channel = interaction.channel_id
        original = interaction.original_id
        if (
            interaction.loading
            and original is not None
            and original in self.messages.get(channel, {})
        ):
            # "When using this endpoint directly after responding to an interaction with
            # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE, this endpoint will function as Edit
            # Original Interaction Response [...] no new message will be created, and the
            # loading message will be edited instead. The ephemeral flag will be ignored,
            # and the value you provided in the initial defer response will be preserved"
            # (receiving-and-responding#create-followup-message). _edit never changes
            # the message's ephemeral flag.
            interaction.loading = False
            return _json(self._edit(channel, original, body, files))
        message = self._bot_message(channel, body, files, interaction=interaction)
        interaction.message_ids.add(message["id"])
        return _json(message)

    def _webhook_message(
        self, method: str, token: str, message: str, body: Any, files: dict[str, bytes]
    ) -> web.StreamResponse:
        """Get/Edit/Delete Original Interaction Response and Followup Message
        (receiving-and-responding#edit-original-interaction-response and the sections
        after it): a token reaches only the messages of its own interaction."""
        got = self._webhook_interaction(token)
        if isinstance(got, web.Response):
            return got
        interaction = got
        channel = interaction.channel_id
        message_id = interaction.original_id if message == "@original" else message
        if (
            message_id is None
            or message_id not in interaction.message_ids
            or message_id not in self.messages.get(channel, {})
        ):
            return _error(404, 10008, "Unknown Message")
        if message_id == interaction.original_id and method != "GET":
            # An edit or a delete ends the loading state: a later follow-up is a new
            # message (deleting a deferral then following up works since
            # https://github.com/discord/discord-api-docs/issues/2739 was fixed).
            interaction.loading = False
        if method == "GET":
            return _json(self.message(channel, message_id))
        if method == "PATCH":
            return _json(self._edit(channel, message_id, body, files))
        self._delete(channel, message_id)
        return web.Response(status=204)

    def _channel_message(
        self, method: str, channel: str, message_id: str, body: Any, files: dict[str, bytes]
    ) -> web.StreamResponse:
        """Get/Edit/Delete Message with the bot token
        (https://discord.com/developers/docs/resources/message#get-channel-message)."""
        message = self.messages.get(channel, {}).get(message_id)
        if message is None or self.is_ephemeral(message):
            # An ephemeral message "is only visible to the user who invoked the
            # Interaction" (resources/message#message-object-message-flags): it does not
            # exist for the channel-messages API, which answers 10008 "Unknown message"
            # (as JDA's maintainers observed, discord-jda/JDA#1790); only the
            # interaction's webhook reaches it.
            return _error(404, 10008, "Unknown Message")
        if method == "GET":
            return _json(message)
        own = str(message["author"]["id"]) == BOT_USER_ID
        if method == "PATCH":
            if not own:
                # resources/message#edit-message: "Only messages authored by the current
                # user can be edited" ... JSON error 50005.
                return _error(403, 50005, "Cannot edit a message authored by another user")
            return _json(self._edit(channel, message_id, body, files))
        if not own and not DEFAULT_PERMISSIONS & MANAGE_MESSAGES:
            # resources/message#delete-message: "If operating on a guild channel and trying
            # to delete a message that was not sent by the current user, this endpoint
            # requires the MANAGE_MESSAGES permission"; JSON error 50013.
            return _error(403, 50013, "Missing Permissions")
        self._delete(channel, message_id)
        return web.Response(status=204)

    def _delete(self, channel: str, message_id: str) -> None:
        message = self.messages[channel].pop(message_id)
        self._log("delete", channel, message)

    def _create(self, channel: str, body: Any, files: dict[str, bytes]) -> dict[str, Any]:
        reference = (body.get("message_reference") or {}).get("message_id")
        return self._bot_message(
            channel, body, files, reference=str(reference) if reference else None
        )

    def _bot_message(
        self,
        channel: str,
        body: dict[str, Any],
        files: dict[str, bytes],
        *,
        extra_flags: int = 0,
        reference: str | None = None,
        interaction: Interaction | None = None,
    ) -> dict[str, Any]:
        """A message the bot posts (interaction response, follow-up, channel message).

        An interaction's messages carry ``interaction_metadata`` (who it answers: the one
        user who sees it when it is ephemeral); ``_log`` records the finished message."""
        message = self._store_message(
            channel,
            author=self.users[BOT_USER_ID],
            content=body.get("content") or "",
            embeds=body.get("embeds"),
            components=body.get("components"),
            attachments=self._attachments(body, files),
            flags=body.get("flags", 0) | extra_flags,
            reference=reference,
        )
        self.message_log[-1].allowed_mentions = body.get("allowed_mentions")
        if interaction is not None:
            message["interaction_metadata"] = {
                "id": interaction.id,
                "type": interaction.type,
                "user": self.users[interaction.user_id],
                "authorizing_integration_owners": {"0": GUILD_ID},
            }
            self.message_log[-1].message = copy.deepcopy(message)
        return message

    def _edit(
        self, channel: str, message_id: str, body: Any, files: dict[str, bytes]
    ) -> dict[str, Any]:
        message = self.messages[channel][str(message_id)]
        for key in ("content", "embeds", "components"):
            if key in body:
                message[key] = (
                    body[key] if body[key] is not None else ([] if key != "content" else "")
                )
        if "attachments" in body:
            message["attachments"] = self._attachments(body, files, keep=message["attachments"])
        message["flags"] = message.get("flags", 0) & ~MESSAGE_FLAG_LOADING  # done "thinking"
        message["edited_timestamp"] = _now()
        self._log("edit", channel, message)
        self.message_log[-1].allowed_mentions = body.get("allowed_mentions")
        return message

    def _attachments(
        self,
        body: dict[str, Any],
        files: dict[str, bytes],
        keep: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """New uploads ("files[n]" parts described by ``attachments[n]``) plus the kept
        existing attachments listed by id."""
        kept_ids = {str(a.get("id")) for a in body.get("attachments") or [] if "filename" not in a}
        result = [a for a in keep or [] if str(a["id"]) in kept_ids]
        for described in body.get("attachments") or []:
            if "filename" not in described:
                continue
            data = files[f"files[{described['id']}]"]
            name = described["filename"]
            content_type = "image/png" if name.endswith(".png") else "image/jpeg"
            result.append(self.upload(data, name, content_type))
        return result


class _GatewaySocket:
    def __init__(self, fake: FakeDiscord, ws: web.WebSocketResponse, compress: str | None) -> None:
        if compress not in (None, "zlib-stream"):
            raise ValueError(f"the fake speaks zlib-stream only, not {compress}")
        self.fake = fake
        self.ws = ws
        self.compressor = zlib.compressobj() if compress else None
        self.sequence = 0
        self.ready = False
        self.session_id = f"session-{fake.next_id()}"
        self.shard: tuple[int, int] = (0, 1)  # IDENTIFY's, or the resumed session's

    def owns(self, guild_id: str | None) -> bool:
        """gateway#sharding: ``shard_id = (guild_id >> 22) % num_shards``; DMs: shard 0."""
        shard_id, num_shards = self.shard
        if guild_id is None:
            return shard_id == 0
        return (int(guild_id) >> 22) % num_shards == shard_id

    async def send(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload)
        if self.compressor is None:
            await self.ws.send_str(text)
        else:
            data = self.compressor.compress(text.encode()) + self.compressor.flush(
                zlib.Z_SYNC_FLUSH
            )
            await self.ws.send_bytes(data)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        guild = data.get("id") if event == "GUILD_CREATE" else data.get("guild_id")
        self.fake.gateway_log.append((self.shard, event, guild))
        self.sequence += 1
        await self.send({"op": 0, "t": event, "s": self.sequence, "d": data})

    async def close(self, code: int) -> None:
        await self.ws.close(code=code)

    async def serve(self) -> None:
        fake = self.fake
        await self.send(
            {
                "op": 10,
                "d": {"heartbeat_interval": fake.heartbeat_interval_ms},
                "s": None,
                "t": None,
            }
        )
        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            op = frame.get("op")
            if op == 1:
                await self.send({"op": 11, "d": None, "s": None, "t": None})
            elif op == 2:
                await self._identify(frame["d"])
            elif op == 6:
                resumed = fake._session_shards.get(str(frame["d"].get("session_id")))
                self.shard = resumed or (0, 1)
                fake._session_ready(self)
                await self.dispatch("RESUMED", {})

    async def _identify(self, data: dict[str, Any]) -> None:
        fake = self.fake
        fake.identifies.append(data)
        if data.get("token") != fake.token:
            await self.ws.close(code=4004, message=b"Authentication failed.")
            return
        if data.get("intents", 0) & MESSAGE_CONTENT_INTENT and not fake.message_content_allowed:
            await self.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard = data.get("shard", [0, 1])
        # gateway#sharding: "shard_id: 0 <= shard_id < num_shards"; anything else is
        # close code 4010 "You sent an invalid shard when identifying" (opcodes-and-
        # status-codes#gateway-gateway-close-event-codes).
        if not (
            isinstance(shard, list)
            and len(shard) == 2
            and all(type(n) is int for n in shard)
            and 0 <= shard[0] < shard[1]
        ):
            await self.ws.close(code=4010, message=b"Invalid shard.")
            return
        self.shard = (shard[0], shard[1])
        guilds = [g for g in fake.guild_ids() if self.owns(g)]
        # 4011 "The session would have handled too many guilds - you are required to
        # shard your connection in order to connect."
        if len(guilds) > fake.max_guilds_per_shard:
            await self.ws.close(code=4011, message=b"Sharding required.")
            return
        fake._session_shards[self.session_id] = self.shard
        await self.dispatch(
            "READY",
            {
                "v": 10,
                "user": fake.users[BOT_USER_ID],
                "guilds": [{"id": g, "unavailable": True} for g in guilds],
                "session_id": self.session_id,
                "resume_gateway_url": f"ws://127.0.0.1:{fake.port}/gateway",
                "shard": list(self.shard),
                "application": {"id": APPLICATION_ID, "flags": fake._application()["flags"]},
                "private_channels": [],
                "relationships": [],
            },
        )
        for guild_id in guilds:
            await self.dispatch("GUILD_CREATE", fake.guild_payload(guild_id))
        fake._session_ready(self)


# "Action Rows ... Messages can have up to 5 Action Rows" and "an Action Row can contain
# up to 5 buttons", and a custom_id "must be unique among components in the same
# message" (https://discord.com/developers/docs/components/reference#action-row,
# #button, #anatomy-of-a-component-custom-id); a message breaking them is refused with
def _refused_commands(body: list[dict[str, Any]]) -> web.Response | None:
    """What Discord refuses in a bulk overwrite of commands (Application Command Option
    Structure, https://discord.com/developers/docs/interactions/application-commands):
    "choices ... max 25", a choice's name 1-100 characters; the whole overwrite fails."""

    def options(definition: dict[str, Any]) -> list[dict[str, Any]]:
        found = list(definition.get("options") or [])
        return found + [o for sub in found for o in options(sub)]

    for definition in body:
        for option in options(definition):
            choices = option.get("choices") or []
            if len(choices) > 25:
                return _error(400, 50035, "Invalid Form Body: choices: at most 25")
            if any(not 1 <= len(c.get("name", "")) <= 100 for c in choices):
                return _error(400, 50035, "Invalid Form Body: choice name: 1-100 characters")
    return _refused_localizations(body)


# Discord's locales, the only keys a ``*_localizations`` map may have
# (https://discord.com/developers/docs/reference#locales).
DISCORD_LOCALES = frozenset(
    {
        *("id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt"),
        *("hu", "nl", "no", "pl", "pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el"),
        *("bg", "ru", "uk", "hi", "th", "zh-CN", "ja", "zh-TW", "ko"),
    }
)
NAMING_DOCS = (
    "https://discord.com/developers/docs/interactions/application-commands"
    "#application-command-object-application-command-naming"
)


def chat_input_name_ok(name: str) -> bool:
    """Discord's naming rule for CHAT_INPUT command and option names (NAMING_DOCS):
    ``^[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$`` with the unicode flag, and "if
    there is a lowercase variant of any letters used, you must use those"."""

    def allowed(char: str) -> bool:
        category = unicodedata.category(char)
        return (
            char in "-_'"
            or category[0] in "LN"
            or "\u0900" <= char <= "\u097f"  # Devanagari
            or "\u0e00" <= char <= "\u0e7f"  # Thai
        )

    return (
        1 <= len(name) <= 32
        and all(allowed(c) for c in name)
        and all(c.lower() == c for c in name if len(c.lower()) == 1)
    )


def _refused_localizations(body: list[dict[str, Any]]) -> web.Response | None:
    """Localized names and descriptions as Discord checks them: every key one of
    Discord's locales (https://discord.com/developers/docs/reference#locales); a name
    under the naming rule of its command's type (NAMING_DOCS: CHAT_INPUT commands and
    every option; USER and MESSAGE commands "may be mixed case and can include spaces",
    1-32 characters); a description 1-100 characters. One bad entry fails the overwrite
    with 400 / 50035, as the base fields do."""

    def check(item: dict[str, Any], chat_input: bool) -> web.Response | None:
        for field_name in ("name_localizations", "description_localizations"):
            localized = item.get(field_name) or {}
            for locale, text in localized.items():
                if locale not in DISCORD_LOCALES:
                    return _error(
                        400,
                        50035,
                        f"Invalid Form Body: {field_name}: {locale!r} is not a Discord locale "
                        "(https://discord.com/developers/docs/reference#locales)",
                    )
                if field_name == "description_localizations":
                    ok = 1 <= len(text) <= 100
                else:
                    ok = chat_input_name_ok(text) if chat_input else 1 <= len(text) <= 32
                if not ok:
                    return _error(
                        400,
                        50035,
                        f"Invalid Form Body: {field_name}.{locale}: APPLICATION_COMMAND_INVALID_"
                        f"{'NAME' if field_name == 'name_localizations' else 'DESCRIPTION'} "
                        f"{text!r} ({NAMING_DOCS})",
                    )
        for option in item.get("options") or []:
            refused = check(option, True)
            if refused is not None:
                return refused
        return None

    for definition in body:
        refused = check(definition, definition.get("type", 1) == 1)
        if refused is not None:
            return refused
    return None


# 400 and JSON error 50035 "Invalid Form Body".
MAX_ACTION_ROWS = 5
MAX_ROW_BUTTONS = 5
# "String Select ... options: Specified choices in a select menu; max 25", and an action
# row holds "up to 5 buttons, or a single select component"
# (https://discord.com/developers/docs/components/reference#string-select, #action-row).
MAX_SELECT_OPTIONS = 25
SELECT_TYPES = {3, 5, 6, 7, 8}
# "files[n]: Contents of the file being sent... up to 10 files" per message
# (https://discord.com/developers/docs/resources/message#create-message, jsonform params).
MAX_ATTACHMENTS = 10
MAX_CONTENT = 2000
MAX_EMBED_DESCRIPTION = 4096
# A component's "custom_id ... max 100 characters"; a button's "label: Text that appears
# on the button; max 80 characters"
# (https://discord.com/developers/docs/components/reference#anatomy-of-a-component,
# #button-button-structure).
MAX_CUSTOM_ID = 100
MAX_BUTTON_LABEL = 80


def _invalid_components(body: Any) -> web.Response | None:
    """A message (create, edit, follow-up, or an interaction response's ``data``) whose
    length or components Discord would refuse."""
    if not isinstance(body, dict):
        return None
    message = body.get("data") if isinstance(body.get("data"), dict) else body
    if not isinstance(message, dict):
        return None
    # "content: Message contents (up to 2000 characters)"; an embed's "description: 4096
    # characters" (https://discord.com/developers/docs/resources/message#create-message,
    # #embed-object-embed-limits).
    if len(message.get("content") or "") > MAX_CONTENT:
        return _error(400, 50035, "Invalid Form Body: content: at most 2000 characters")
    if any(
        len(e.get("description") or "") > MAX_EMBED_DESCRIPTION for e in message.get("embeds") or []
    ):
        return _error(400, 50035, "Invalid Form Body: embed description: at most 4096")
    if len(message.get("attachments") or []) > MAX_ATTACHMENTS:
        return _error(400, 50035, "Invalid Form Body: attachments: at most 10 files")
    rows = message.get("components")
    if not rows or body.get("type") == 9:  # modals: their own layout rules
        return None
    if len(rows) > MAX_ACTION_ROWS:
        return _error(400, 50035, "Invalid Form Body: components: at most 5 action rows")
    ids: list[str] = []
    for row in rows:
        inner = row.get("components") or []
        if row.get("type") == 1 and len(inner) > MAX_ROW_BUTTONS:
            return _error(400, 50035, "Invalid Form Body: an action row holds at most 5")
        selects = [c for c in inner if c.get("type") in SELECT_TYPES]
        if selects and len(inner) > 1:
            return _error(400, 50035, "Invalid Form Body: a select fills its action row")
        if any(len(c.get("options") or []) > MAX_SELECT_OPTIONS for c in selects):
            return _error(400, 50035, "Invalid Form Body: a select lists at most 25 options")
        if any(len(str(c.get("custom_id") or "")) > MAX_CUSTOM_ID for c in inner):
            return _error(400, 50035, "Invalid Form Body: custom_id: at most 100 characters")
        if any(len(str(c.get("label") or "")) > MAX_BUTTON_LABEL for c in inner):
            return _error(400, 50035, "Invalid Form Body: label: at most 80 characters")
        ids += [str(c["custom_id"]) for c in inner if c.get("custom_id")]
    if len(ids) != len(set(ids)):
        return _error(400, 50035, "Invalid Form Body: custom_id must be unique per message")
    return None


# A message carries at most 10 attachments: "You may upload up to 10 files per message"
# (Uploading Files, https://discord.com/developers/docs/reference#uploading-files; the
# Create Message and webhook routes take ``files[n]`` described by ``attachments``).
# discord.py itself refuses more before sending ("files parameter must be a list of up
# to 10 elements"); the fake refuses them like Discord, 400 / 50035.
MAX_ATTACHMENTS = 10


def _too_many_files(body: Any, files: dict[str, bytes]) -> web.Response | None:
    message = (
        body.get("data") if isinstance(body, dict) and isinstance(body.get("data"), dict) else body
    )
    described = message.get("attachments") if isinstance(message, dict) else None
    count = max(len(files), len(described or []))
    if count > MAX_ATTACHMENTS:
        return _error(400, 50035, "Invalid Form Body: attachments: at most 10 per message")
    return None


# Discord answers through Google's load balancer, which adds ``Via``; discord.py takes a
# 429 without it for a Cloudflare ban and raises at once instead of waiting (http.py).
VIA = "1.1 google"
# https://discord.com/developers/docs/topics/rate-limits: "Rate limits are applied on a
# per-route basis (meaning they can be different for each route called)", counted apart
# for each of a route's major parameters ("channel_id, guild_id, and webhook_id or
# webhook_id + webhook_token"); each answer carries X-RateLimit-Limit, -Remaining,
# -Reset, -Reset-After and -Bucket; over a limit, HTTP 429 with a JSON body
# {"message", "retry_after" (seconds), "global"} and Retry-After; "All bots can make up
# to 50 requests per second to our API" (global, X-RateLimit-Global), and "Interaction
# endpoints are not bound to the bot's Global Rate Limit".
_MAJOR = re.compile(
    r"^/(channels|guilds)/(\d+)|^/webhooks/(\d+)/([^/]+)|^/interactions/(\d+)/([^/]+)"
)


def route_key(method: str, path: str) -> str:
    """The bucket a call falls in: its route with the major parameter kept and every
    other id replaced."""
    major = _MAJOR.match(path)
    kept = major.group(0) if major else ""
    rest = re.sub(r"/\d{5,}", "/:id", path[len(kept) :])
    return f"{method} {kept}{rest}"


@dataclass
class RouteLimits:
    """Buckets of ``per_route`` calls per ``window`` seconds, and the global limit."""

    per_route: int = 5
    window: float = 2.0
    global_per_second: int = 50
    _buckets: dict[str, tuple[float, int]] = field(default_factory=dict)  # key -> (reset, used)
    _global: tuple[float, int] = (0.0, 0)

    def take(self, method: str, path: str, now: float) -> dict[str, str] | web.Response:
        """The bucket headers of an allowed call, or the 429 that refuses it."""
        if not path.startswith(("/interactions/", "/webhooks/")):
            reset, used = self._global
            if now >= reset:
                reset, used = now + 1.0, 0
            if used >= self.global_per_second:
                return _rate_limited(reset - now, glob=True)
            self._global = (reset, used + 1)
        key = route_key(method, path)
        reset, used = self._buckets.get(key, (0.0, 0))
        if now >= reset:
            reset, used = now + self.window, 0
        bucket = hashlib.sha1(key.encode()).hexdigest()[:16]  # a name, not a secret
        headers = {
            "X-RateLimit-Limit": str(self.per_route),
            "X-RateLimit-Remaining": str(max(0, self.per_route - used - 1)),
            "X-RateLimit-Reset": f"{time.time() + (reset - now):.3f}",
            "X-RateLimit-Reset-After": f"{reset - now:.3f}",
            "X-RateLimit-Bucket": bucket,
        }
        if used >= self.per_route:
            return _rate_limited(
                reset - now, glob=False, headers={**headers, "X-RateLimit-Remaining": "0"}
            )
        self._buckets[key] = (reset, used + 1)
        return headers


def _rate_limited(
    wait: float, *, glob: bool, headers: dict[str, str] | None = None
) -> web.Response:
    extra = {"X-RateLimit-Global": "true"} if glob else {"X-RateLimit-Scope": "user"}
    return _json(
        {"message": "You are being rate limited.", "retry_after": round(wait, 3), "global": glob},
        status=429,
        headers={
            **(headers or {}),
            **extra,
            "Retry-After": str(max(1, math.ceil(wait))),
            "Via": VIA,
        },
    )


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON the way Discord sends it: discord.py parses a body only when the content
    type is exactly ``application/json`` (no charset)."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"message": message, "code": code}, status=status)


def _expired() -> web.Response:
    return _error(401, 50027, "Invalid Webhook Token")
