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
MESSAGE_CREATE. Every REST call is recorded (``calls``), messages the bot creates or
edits are kept per channel with their files, and interaction tokens can be expired to
play the 15-minute limit. Payload shapes follow discord.py 2.7's http.py, gateway.py,
interactions.py and webhook/async_.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

BOT_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GfakeX.faketokenfaketokenfaketokenfake1234"
APPLICATION_ID = "1098765432109876540"
BOT_USER_ID = "1098765432109876540"
GUILD_ID = "2000000000000000001"
CHANNEL_ID = "3000000000000000001"
ART_CHANNEL_ID = "3000000000000000002"
MESSAGE_CONTENT_INTENT = 1 << 15
MESSAGE_FLAG_EPHEMERAL = 1 << 6
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
DEFAULT_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 15)  # view, send, attach files


@dataclass
class Call:
    method: str
    path: str
    json: Any
    files: dict[str, bytes]
    query: dict[str, str]


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
    identifies: list[dict[str, Any]] = field(default_factory=list)
    cdn_requests: list[str] = field(default_factory=list)
    rate_limits: dict[str, int] = field(default_factory=dict)  # "METHOD path-prefix" -> count
    # Members' permissions by user id (the interaction's ``member.permissions``).
    permissions: dict[str, int] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # role id -> name
    member_roles: dict[str, list[str]] = field(default_factory=dict)  # user id -> role ids
    heartbeat_interval_ms: int = 41_250

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

    def calls_to(self, method: str, path_prefix: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    def channel_messages(self, channel_id: str) -> list[dict[str, Any]]:
        return list(self.messages.get(channel_id, {}).values())

    def message(self, channel_id: str, message_id: str) -> dict[str, Any]:
        return self.messages[channel_id][message_id]

    def attachment_bytes(self, attachment: dict[str, Any]) -> bytes:
        return self.files[str(attachment["id"])][0]

    def expire(self, token: str) -> None:
        """Play the 15-minute limit: the interaction's token stops working."""
        self.interactions[token].expired = True

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
            "guild_id": GUILD_ID,
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
                "guild_id": GUILD_ID,
            }
            message["referenced_message"] = self.messages.get(channel_id, {}).get(reference)
        self.messages.setdefault(channel_id, {})[message["id"]] = message
        return message

    def _role(self, role_id: str, name: str) -> dict[str, Any]:
        return {
            "id": role_id,
            "name": name,
            "permissions": str(DEFAULT_PERMISSIONS),
            "position": 0 if role_id == GUILD_ID else 1,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    def _channel(self, channel_id: str) -> dict[str, Any]:
        return {
            "id": channel_id,
            "type": 0,
            "guild_id": GUILD_ID,
            "name": "art" if channel_id == ART_CHANNEL_ID else "general",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
        }

    def guild_payload(self) -> dict[str, Any]:
        return {
            "id": GUILD_ID,
            "name": "Fake Art Server",
            "icon": None,
            "owner_id": "1",
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "features": [],
            "mfa_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "roles": [self._role(GUILD_ID, "@everyone")]
            + [self._role(role_id, name) for role_id, name in self.roles.items()],
            "emojis": [],
            "stickers": [],
            "channels": [self._channel(CHANNEL_ID), self._channel(ART_CHANNEL_ID)],
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
        payload = {
            "id": interaction_id,
            "application_id": APPLICATION_ID,
            "type": kind,
            "data": data,
            "guild_id": GUILD_ID,
            "channel_id": channel_id,
            "channel": self._channel(channel_id),
            "member": self._member(user_id),
            "token": token,
            "version": 1,
            "app_permissions": str(DEFAULT_PERMISSIONS),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": GUILD_ID},
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
    ) -> Interaction:
        """``/name option:value ...``; an ``attachment`` fills the option typed 11."""
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
        data["guild_id"] = GUILD_ID if definition.get("guild_id") else None
        if data["guild_id"] is None:
            del data["guild_id"]
        payload = self._interaction(2, user_id, channel_id, data)
        await self.dispatch("INTERACTION_CREATE", payload)
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
        await self.dispatch("INTERACTION_CREATE", payload)
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
        await self.dispatch("INTERACTION_CREATE", payload)
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
        await self.dispatch("INTERACTION_CREATE", payload)
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
        data = {"custom_id": modal["custom_id"], "components": components}
        payload = self._interaction(5, user_id, opened_by.channel_id, data)
        await self.dispatch("INTERACTION_CREATE", payload)
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

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        await asyncio.wait_for(self.connected.wait(), 10)
        for sock in list(self._sockets):
            if sock.ready:
                await sock.dispatch(event, data)

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
        self.calls.append(Call(request.method, path, body, files, dict(request.query)))
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
                    },
                )
        webhook_route = path.startswith(("/webhooks/", "/interactions/"))
        if not webhook_route and request.headers.get("Authorization") != f"Bot {self.token}":
            return _error(401, 0, "401: Unauthorized")
        parts = path.strip("/").split("/")
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
                        "shards": 1,
                        "session_start_limit": {
                            "total": 1000,
                            "remaining": 999,
                            "reset_after": 14400000,
                            "max_concurrency": 1,
                        },
                    }
                )
            case "PUT", ["applications", _, "commands"]:
                return _json(self._sync("global", body))
            case "PUT", ["applications", _, "guilds", guild, "commands"]:
                return _json(self._sync(guild, body))
            case "GET", ["applications", _, "commands"]:
                return _json(self.commands.get("global", []))
            case "GET", ["applications", _, "guilds", guild, "commands"]:
                return _json(self.commands.get(guild, []))
            case "POST", ["interactions", _, token, "callback"]:
                return self._callback(token, body, files)
            case "POST", ["webhooks", _, token]:
                return self._followup(token, body, files)
            case "PATCH", ["webhooks", _, token, "messages", message]:
                interaction = self._live(token)
                if interaction is None:
                    return _expired()
                message_id = interaction.original_id if message == "@original" else message
                if message_id is None:
                    return _error(404, 10008, "Unknown Message")
                return _json(self._edit(interaction.channel_id, message_id, body, files))
            case "GET", ["webhooks", _, token, "messages", message]:
                interaction = self._live(token)
                if interaction is None:
                    return _expired()
                message_id = interaction.original_id if message == "@original" else message
                return _json(self.message(interaction.channel_id, str(message_id)))
            case "DELETE", ["webhooks", _, token, "messages", message]:
                interaction = self._live(token)
                if interaction is None:
                    return _expired()
                message_id = interaction.original_id if message == "@original" else message
                del self.messages[interaction.channel_id][str(message_id)]
                return web.Response(status=204)
            case "POST", ["channels", channel, "messages"]:
                return _json(self._create(channel, body, files))
            case "GET", ["channels", channel, "messages", message]:
                return _json(self.message(channel, message))
            case "PATCH", ["channels", channel, "messages", message]:
                return _json(self._edit(channel, message, body, files))
            case "DELETE", ["channels", channel, "messages", message]:
                del self.messages[channel][message]
                return web.Response(status=204)
        return _error(404, 0, "404: Not Found")

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

    def _live(self, token: str) -> Interaction | None:
        interaction = self.interactions.get(token)
        if interaction is None or interaction.expired:
            return None
        return interaction

    def _callback(self, token: str, body: Any, files: dict[str, bytes]) -> web.Response:
        interaction = self._live(token)
        if interaction is None:
            return _error(404, 10062, "Unknown interaction")
        if interaction.callbacks:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        interaction.callbacks.append(body)
        kind = body["type"]
        data = body.get("data") or {}
        resource: dict[str, Any] = {"type": kind}
        answer: dict[str, Any] = {
            "id": interaction.id,
            "type": interaction.type,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(data.get("flags", 0) & MESSAGE_FLAG_EPHEMERAL),
        }
        if kind in (4, 5):
            thinking = 1 << 7 if kind == 5 else 0
            message = self._bot_message(interaction.channel_id, data, files, extra_flags=thinking)
            message["interaction_metadata"] = {
                "id": interaction.id,
                "type": interaction.type,
                "user": self.users[interaction.user_id],
                "authorizing_integration_owners": {"0": GUILD_ID},
            }
            interaction.original_id = message["id"]
            answer["response_message_id"] = message["id"]
            resource["message"] = message
        return _json({"interaction": answer, "resource": resource})

    def _followup(self, token: str, body: Any, files: dict[str, bytes]) -> web.Response:
        interaction = self._live(token)
        if interaction is None:
            return _expired()
        if not interaction.callbacks:
            return _error(404, 10015, "Unknown Webhook")
        message = self._bot_message(interaction.channel_id, body, files)
        return _json(message)

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
    ) -> dict[str, Any]:
        """A message the bot posts (interaction response, follow-up, channel message)."""
        return self._store_message(
            channel,
            author=self.users[BOT_USER_ID],
            content=body.get("content") or "",
            embeds=body.get("embeds"),
            components=body.get("components"),
            attachments=self._attachments(body, files),
            flags=body.get("flags", 0) | extra_flags,
            reference=reference,
        )

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
        message["flags"] = message.get("flags", 0) & ~(1 << 7)  # no longer "thinking"
        message["edited_timestamp"] = _now()
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
                self.ready = True
                fake.connected.set()
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
        await self.dispatch(
            "READY",
            {
                "v": 10,
                "user": fake.users[BOT_USER_ID],
                "guilds": [{"id": GUILD_ID, "unavailable": True}],
                "session_id": self.session_id,
                "resume_gateway_url": f"ws://127.0.0.1:{fake.port}/gateway",
                "shard": data.get("shard", [0, 1]),
                "application": {"id": APPLICATION_ID, "flags": fake._application()["flags"]},
                "private_channels": [],
                "relationships": [],
            },
        )
        await self.dispatch("GUILD_CREATE", fake.guild_payload())
        self.ready = True
        fake.connected.set()


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
