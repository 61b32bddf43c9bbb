"""A loopback fake of the Slack Web API and file hosting, for the real slack_sdk client.

The bot's ``AsyncWebClient`` gets ``base_url = fake.api_url``; private file URLs point
at the same server and, like Slack's, answer an HTML login page to a request without
the bot token. ``sign_request`` builds the headers Slack puts on the requests it sends to
an app in HTTP mode, so tests can play Slack's side of events and interactivity.

The fake enforces the rules Slack documents, each cited beside its code: a method needs
its scope (``missing_scope``, with ``needed`` and ``provided``), a bot posts only where it
is a member (``not_in_channel``), ``file_input`` files reach the app only in a
``view_submission``, and message ``metadata`` is kept and shown to
``include_all_metadata``. A test can hold any Web API method's answer (``hold``) until it
releases it, to kill the bot at that exact moment. By default the token has exactly the scopes of
docs/slack-manifest.yml and the bot is a member of every channel a test uses, so the
manifest is what the tests run with.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml
from aiohttp import WSMsgType, web

BOT_TOKEN = "xoxb-1111111111-2222222222-testbottoken"
APP_TOKEN = "xapp-1-A0KONTEXT-3333333333-testapptoken"
SIGNING_SECRET = "3c5b0b4f8d2e4a6b9c7d1e2f3a4b5c6d"
TEAM_ID = "T0TEST"
BOT_USER_ID = "UBOT0001"
LOGIN_PAGE = "<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in</body></html>"

MANIFEST = Path(__file__).resolve().parents[2] / "docs" / "slack-manifest.yml"
DOCS = "https://docs.slack.dev/reference/methods/"

# The bot-token scopes each Web API method needs, from the "Scopes" facts of the
# method's reference page (DOCS + method name, e.g.
# https://docs.slack.dev/reference/methods/chat.postMessage). A tuple lists
# alternatives: any one of them will do unless the method depends on the channel's type
# (CHANNEL_TYPE_SCOPES). An empty tuple: the page says "no scope required".
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "auth.test": (),  # DOCS auth.test: no scope required
    "views.open": (),  # DOCS views.open: no scope required
    "views.publish": (),  # DOCS views.publish: no scope required
    "chat.postMessage": ("chat:write",),  # DOCS chat.postMessage
    "chat.update": ("chat:write",),  # DOCS chat.update
    "chat.postEphemeral": ("chat:write",),  # DOCS chat.postEphemeral
    "files.info": ("files:read",),  # DOCS files.info
    "files.delete": ("files:write",),  # DOCS files.delete
    "files.getUploadURLExternal": ("files:write",),  # DOCS files.getUploadURLExternal
    "files.completeUploadExternal": ("files:write",),  # DOCS files.completeUploadExternal
    "users.info": ("users:read",),  # DOCS users.info
    # DOCS conversations.replies / conversations.history: one *:history per channel type
    "conversations.replies": ("channels:history", "groups:history", "im:history", "mpim:history"),
    "conversations.history": ("channels:history", "groups:history", "im:history", "mpim:history"),
    # DOCS conversations.info: one *:read per channel type
    "conversations.info": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "reactions.add": ("reactions:write",),  # DOCS reactions.add
    "reactions.remove": ("reactions:write",),  # DOCS reactions.remove
}
# Methods called with the app-level token (xapp-), whose scope is set on the app, not
# the bot: DOCS apps.connections.open needs connections:write.
APP_TOKEN_SCOPES: dict[str, tuple[str, ...]] = {"apps.connections.open": ("connections:write",)}
# "The types of channels you interface with in the Conversations API are governed by
# corresponding permission scopes" (https://docs.slack.dev/apis/web-api/using-the-conversations-api):
# public channels need channels:*, private ones groups:*, DMs im:*, group DMs mpim:*.
_PREFIX = {"public": "channels", "private": "groups", "im": "im", "mpim": "mpim"}
CHANNEL_TYPE_SCOPES: dict[str, str] = {
    "conversations.replies": "history",
    "conversations.history": "history",
    "conversations.info": "read",
}


def manifest_scopes(path: Path = MANIFEST) -> set[str]:
    """The bot scopes docs/slack-manifest.yml asks for: what an installed app is granted."""
    manifest = yaml.safe_load(path.read_text())
    return set(manifest["oauth_config"]["scopes"]["bot"])


def sign_request(
    body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """Headers of a request Slack sends to an app: ``v0=HMAC-SHA256(v0:ts:body)``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def signed_json_headers(body: str) -> dict[str, str]:
    """All the headers of an Events API request Slack sends to an app in HTTP mode."""
    return {"Content-Type": "application/json", **sign_request(body)}


def event_callback(event: dict[str, Any], event_id: str) -> dict[str, Any]:
    """The Events API envelope Slack wraps an event in, as an HTTP body or as a Socket
    Mode ``events_api`` payload (https://docs.slack.dev/apis/events-api/)."""
    return {
        "token": "legacy",
        "team_id": TEAM_ID,
        "api_app_id": "A0KONTEXT",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": event,
    }


def http_mode_environment(api_url: str, port: int | str) -> dict[str, str]:
    """The settings that point ``kontext-bot run`` in Slack HTTP mode at a fake Slack
    whose Web API is ``api_url`` (its files on 127.0.0.1), serving events on ``port``."""
    return {
        "KONTEXT_SLACK__ENABLED": "true",
        "KONTEXT_SLACK__MODE": "http",
        "KONTEXT_SLACK__BOT_TOKEN": BOT_TOKEN,
        "KONTEXT_SLACK__SIGNING_SECRET": SIGNING_SECRET,
        "KONTEXT_SLACK__API_BASE_URL": api_url,
        "KONTEXT_SLACK__FILE_HOSTS": '["127.0.0.1"]',
        "KONTEXT_SLACK__HTTP_HOST": "127.0.0.1",
        "KONTEXT_SLACK__HTTP_PORT": str(port),
    }


# Slack's rate limits (https://docs.slack.dev/apis/web-api/rate-limits): "Each Web API
# method is assigned a rate limit tier" and limits apply "per app per workspace" to each
# method; Tier 1 "1+ per minute", Tier 2 "20+ per minute", Tier 3 "50+ per minute",
# Tier 4 "100+ per minute", each "with occasional bursts". chat.postMessage is
# "Special": "1 message per second per channel", allowing "short bursts above this
# limit". Over a limit: "HTTP 429 Too Many Requests ... a Retry-After HTTP header
# containing the number of seconds until you can retry", body {"ok": false, "error":
# "ratelimited"}. The tier of each method is the "Rate limits" fact of its page (DOCS +
# the method's name).
FAKE_TIERS: dict[str, int] = {
    "apps.connections.open": 1,  # DOCS apps.connections.open: Tier 1
    "chat.update": 3,  # DOCS chat.update: Tier 3
    "chat.delete": 3,  # DOCS chat.delete: Tier 3
    "conversations.info": 3,  # DOCS conversations.info: Tier 3
    "conversations.replies": 3,  # DOCS conversations.replies: Tier 3
    "conversations.history": 3,  # DOCS conversations.history: Tier 3
    "reactions.add": 3,  # DOCS reactions.add: Tier 3
    "reactions.remove": 3,  # DOCS reactions.remove: Tier 3
    "chat.postEphemeral": 4,  # DOCS chat.postEphemeral: Tier 4
    "files.getUploadURLExternal": 4,  # DOCS files.getUploadURLExternal: Tier 4
    "files.completeUploadExternal": 4,  # DOCS files.completeUploadExternal: Tier 4
    "files.info": 4,  # DOCS files.info: Tier 4
    "users.info": 4,  # DOCS users.info: Tier 4
    "views.open": 4,  # DOCS views.open: Tier 4
    "views.publish": 4,  # DOCS views.publish: Tier 4
    "auth.test": 4,  # DOCS auth.test: Special (Tier 4 for the fake)
}


@dataclass(frozen=True)
class SlackLimits:
    """The limits the fake enforces, on its ``clock``: a leaky bucket per method (per
    channel for chat.postMessage) that holds a minute's calls of the method's tier, or
    ``post_message_burst`` messages of one channel, and drains at the documented rate."""

    per_minute: tuple[float, float, float, float] = (1.0, 20.0, 50.0, 100.0)  # tiers 1-4
    post_message_per_second: float = 1.0
    post_message_burst: float = 3.0

    def bot_keys(self) -> dict[str, float]:
        """The bot's ``[slack]`` rate keys that pace it at exactly these limits."""
        # The bot paces no Tier 1 method (apps.connections.open), so it has no such key.
        _tier1, tier2, tier3, tier4 = self.per_minute
        return {
            "post_message_per_second": self.post_message_per_second,
            "tier2_per_minute": tier2,
            "tier3_per_minute": tier3,
            "tier4_per_minute": tier4,
        }

    def scaled(self, factor: float) -> SlackLimits:
        """The same limits ``factor`` times faster: for a burst test that keeps Slack's
        shape without taking Slack's minutes (the bot's rate keys scaled alike)."""
        return SlackLimits(
            tuple(t * factor for t in self.per_minute),  # type: ignore[arg-type]
            self.post_message_per_second * factor,
            self.post_message_burst,
        )


@dataclass
class _Bucket:
    capacity: float
    per_second: float
    level: float = 0.0
    at: float | None = None

    def take(self, now: float) -> float | None:
        """Take one call; None if it fits, else the seconds until it would."""
        if self.at is not None:
            self.level = max(0.0, self.level - (now - self.at) * self.per_second)
        self.at = now
        if self.level + 1.0 <= self.capacity + 1e-9:
            self.level += 1.0
            return None
        return (self.level + 1.0 - self.capacity) / self.per_second


class SlackRefusal(Exception):
    """A Web API answer ``{"ok": false, "error": ..., **extra}`` (HTTP 200, as Slack's)."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


# Block Kit's limits a published view is held to. A view: "blocks: An array of blocks
# ... Maximum of 100 blocks", "private_metadata: ... Max length of 3000 characters",
# "callback_id: ... Max length of 255 characters"
# (https://docs.slack.dev/reference/views/home-tab-views, the view object's fields, and
# https://docs.slack.dev/reference/methods/views.publish). The blocks and elements
# (https://docs.slack.dev/reference/block-kit/blocks,
# https://docs.slack.dev/reference/block-kit/block-elements): a section's text "Minimum
# length ... 1 and maximum length ... 3000 characters"; a header's text 150; a button's
# text 75, its value 2000, its url 3000; an actions block at most 25 elements; a
# block_id and an action_id 255; an image element has alt_text (at most 2000) and
# exactly one of image_url and slack_file
# (https://docs.slack.dev/reference/block-kit/block-elements/image-element).
VIEW_MAX_BLOCKS = 100
VIEW_METADATA_MAX = 3000
VIEW_CALLBACK_ID_MAX = 255
SECTION_TEXT_MAX = 3000
HEADER_TEXT_MAX = 150
BUTTON_TEXT_MAX = 75
BUTTON_VALUE_MAX = 2000
URL_MAX = 3000
ACTIONS_MAX_ELEMENTS = 25
ID_MAX = 255
ALT_TEXT_MAX = 2000


def _too_long(value: Any, limit: int, pointer: str) -> list[str]:
    if isinstance(value, str) and len(value) > limit:
        return [f"[ERROR] must be less than {limit + 1} characters [json-pointer:{pointer}]"]
    return []


def _element_problems(element: dict[str, Any], pointer: str) -> list[str]:
    problems = _too_long(element.get("action_id"), ID_MAX, f"{pointer}/action_id")
    kind = element.get("type")
    if kind == "button":
        problems += _too_long(
            (element.get("text") or {}).get("text"), BUTTON_TEXT_MAX, f"{pointer}/text/text"
        )
        problems += _too_long(element.get("value"), BUTTON_VALUE_MAX, f"{pointer}/value")
        problems += _too_long(element.get("url"), URL_MAX, f"{pointer}/url")
    elif kind == "image":
        sources = [k for k in ("image_url", "slack_file") if element.get(k)]
        if len(sources) != 1:
            problems.append(
                "[ERROR] must provide exactly one of image_url, slack_file "
                f"[json-pointer:{pointer}]"
            )
        if not element.get("alt_text"):
            problems.append(f"[ERROR] missing required field: alt_text [json-pointer:{pointer}]")
        problems += _too_long(element.get("alt_text"), ALT_TEXT_MAX, f"{pointer}/alt_text")
    return problems


def view_problems(view: dict[str, Any], kind: str) -> list[str]:
    """What Slack would refuse in ``view`` (of type ``kind``), in its own words."""
    problems: list[str] = []
    if view.get("type") != kind:
        problems.append(f"[ERROR] must be {kind} [json-pointer:/view/type]")
    problems += _too_long(view.get("private_metadata"), VIEW_METADATA_MAX, "/view/private_metadata")
    problems += _too_long(view.get("callback_id"), VIEW_CALLBACK_ID_MAX, "/view/callback_id")
    blocks = view.get("blocks") or []
    if len(blocks) > VIEW_MAX_BLOCKS:
        problems.append(
            f"[ERROR] must contain less than {VIEW_MAX_BLOCKS + 1} items "
            "[json-pointer:/view/blocks]"
        )
    for i, block in enumerate(blocks):
        at = f"/view/blocks/{i}"
        problems += _too_long(block.get("block_id"), ID_MAX, f"{at}/block_id")
        text = (block.get("text") or {}).get("text")
        if block.get("type") == "section":
            problems += _too_long(text, SECTION_TEXT_MAX, f"{at}/text/text")
            if isinstance(block.get("accessory"), dict):
                problems += _element_problems(block["accessory"], f"{at}/accessory")
        elif block.get("type") == "header":
            problems += _too_long(text, HEADER_TEXT_MAX, f"{at}/text/text")
        elif block.get("type") == "actions":
            elements = block.get("elements") or []
            if len(elements) > ACTIONS_MAX_ELEMENTS:
                problems.append(
                    f"[ERROR] must contain less than {ACTIONS_MAX_ELEMENTS + 1} items "
                    f"[json-pointer:{at}/elements]"
                )
            for j, element in enumerate(elements):
                problems += _element_problems(element, f"{at}/elements/{j}")
        elif block.get("type") == "image":
            problems += _element_problems(block, at)
    return problems


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str | None


@dataclass
class SlackFile:
    id: str
    name: str
    mimetype: str
    data: bytes
    content_type: str | None = None  # what the file host answers with; default mimetype
    title: str | None = None


@dataclass
class Hold:
    """One Web API call kept waiting: ``reached`` is set when the call arrives, and it is
    answered when the test calls ``release`` (a killed bot never reads the answer).
    With ``after``, the call's effect (a stored share, a posted message) happens first."""

    method: str
    after: bool = False
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


@dataclass
class Upload:
    file_id: str
    filename: str
    data: bytes = b""
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    completed_at: float | None = None  # time.monotonic() of completeUploadExternal


@dataclass
class Channel:
    """A conversation: ``kind`` is public | private | im | mpim."""

    id: str
    kind: str = "public"
    bot_member: bool = True
    members: set[str] | None = None  # None: every user is a member

    def info(self) -> dict[str, Any]:
        # Fields of the conversation object: https://docs.slack.dev/reference/objects/conversation-object
        return {
            "id": self.id,
            "name": self.id.lower(),
            "is_channel": self.kind in ("public", "private"),
            "is_group": self.kind == "private",
            "is_im": self.kind == "im",
            "is_mpim": self.kind == "mpim",
            "is_private": self.kind != "public",
            "is_archived": False,
            "is_member": self.bot_member,
        }


def _kind_from_id(channel_id: str) -> str:
    # IDs begin with C (public, or shared private), G (older private) or D (DM):
    # https://docs.slack.dev/apis/web-api/using-the-conversations-api#shared-channels
    return {"G": "private", "D": "im"}.get(channel_id[:1], "public")


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


def _json_arg(value: Any) -> Any:
    """slack_sdk sends nested arguments as JSON strings in form bodies, objects in JSON."""
    return json.loads(value) if isinstance(value, str) else value


def _valid_static_select(element: dict[str, Any]) -> bool:
    """Block Kit's rules for a static select
    (https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element and
    .../composition-objects/option-object): at most 100 options, an option's text at
    most 75 characters and its value at most 150, and an ``initial_option`` that
    "exactly matches one of the options"."""
    options = element.get("options") or []
    if not 1 <= len(options) <= 100:
        return False
    if any(len(o["text"]["text"]) > 75 or len(o.get("value", "")) > 150 for o in options):
        return False
    initial = element.get("initial_option")
    return initial is None or initial in options


MAX_ACTIONS_ELEMENTS = 25
MAX_SELECT_OPTIONS = 100
MAX_BUTTON_TEXT = 75
# An element's "action_id ... Maximum length is 255 characters"; a button's "value ...
# Maximum length is 2000 characters"; a block's "block_id ... Maximum length is 255"
# (https://docs.slack.dev/reference/block-kit/block-elements/button-element,
# https://docs.slack.dev/reference/block-kit/blocks/actions-block).
MAX_ACTION_ID = 255
MAX_BUTTON_VALUE = 2000
MAX_BLOCK_ID = 255


def _has_file_input(blocks: Any) -> bool:
    return "file_input" in json.dumps(blocks or [])


@dataclass
class FakeSlack:
    token: str = BOT_TOKEN
    # The bot token's scopes; None: exactly docs/slack-manifest.yml's (read at start).
    scopes: set[str] | None = None
    app_token_scopes: set[str] = field(default_factory=lambda: {"connections:write"})
    calls: list[Call] = field(default_factory=list)
    files: dict[str, SlackFile] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)
    # The largest upload the workspace allows: 1 GB by Slack's help ("Files uploaded to
    # Slack can be up to 1 GB"), less where an admin restricted large uploads.
    upload_limit: int = 1024**3
    responses: list[dict[str, Any]] = field(default_factory=list)  # posts to response_url
    deleted_files: list[str] = field(default_factory=list)  # files.delete, in order
    file_requests: list[tuple[str, str | None]] = field(default_factory=list)
    # (channel, thread_ts) -> messages in the thread, oldest first, the parent (when the
    # fake knows it) included; the bot's posts and uploads land here too.
    threads: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    # channel -> its top-level messages, oldest first (conversations.history).
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    # A channel not in ``channels`` is created on first use (public unless its id says
    # otherwise, the bot a member) so tests need not declare them; False: channel_not_found.
    auto_channels: bool = True
    fail_methods: dict[str, list[str]] = field(default_factory=dict)  # method -> errors
    rate_limit_methods: dict[str, int] = field(default_factory=dict)  # method -> 429 count
    # Slack's documented rate limits, enforced when set (None: no limits); read on
    # ``clock``, seconds, which a test may move by hand.
    limits: SlackLimits | None = None
    clock: Callable[[], float] = time.monotonic
    # Every call answered 429 by ``limits``, and the buckets behind them.
    ratelimited: list[Call] = field(default_factory=list)
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)
    app_token: str = APP_TOKEN
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    workspace_admins: set[str] = field(default_factory=set)  # users.info says is_admin
    # users.info's ``locale`` per user (Slack's default for a user is en-US), given only
    # when the call asks ``include_locale=true`` as Slack does
    # (https://docs.slack.dev/reference/methods/users.info#arguments).
    user_locales: dict[str, str] = field(default_factory=dict)
    socket_connected: asyncio.Event = field(default_factory=asyncio.Event)
    acks: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    files_read_scope: bool = True  # False: file downloads get the HTML login page
    # Views opened with views.open, by the id the fake gave them.
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Home tabs published with views.publish, by user id (the latest).
    home_views: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every Home tab published, in order: (user id, view).
    published: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # The client address of every Web API call and upload: one per TCP connection.
    api_peers: list[Any] = field(default_factory=list)
    base_url: str = ""
    # method -> the next call of it to hold (each hold catches one call); every hold
    # made, so that stopping the fake releases them all.
    holds: dict[str, Hold] = field(default_factory=dict)
    _all_holds: list[Hold] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        if self.scopes is None:
            self.scopes = manifest_scopes()

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def hold(self, method: str, *, after: bool = False) -> Hold:
        """Keep the next call of ``method`` unanswered until ``Hold.release``."""
        held = Hold(method, after)
        self.holds[method] = held
        self._all_holds.append(held)
        return held

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def add_channel(
        self,
        channel_id: str,
        kind: str | None = None,
        *,
        bot_member: bool = True,
        members: set[str] | None = None,
    ) -> Channel:
        channel = Channel(channel_id, kind or _kind_from_id(channel_id), bot_member, members)
        self.channels[channel_id] = channel
        return channel

    def channel(self, channel_id: Any) -> Channel:
        channel = self.channels.get(str(channel_id))
        if channel is None:
            if not self.auto_channels or not channel_id:
                raise SlackRefusal("channel_not_found")
            channel = self.add_channel(str(channel_id))
        return channel

    def add_file(
        self, name: str, data: bytes, mimetype: str = "image/png", **kw: Any
    ) -> dict[str, Any]:
        """Store a file as if a user uploaded it; returns its Slack file object."""
        file_id = f"F{len(self.files) + 1:06d}"
        self.files[file_id] = SlackFile(file_id, name, mimetype, data, **kw)
        return self.file_object(file_id)

    def file_object(self, file_id: str) -> dict[str, Any]:
        item = self.files[file_id]
        private = f"{self.base_url}/files-pri/{TEAM_ID}-{file_id}/{item.name}"
        return {
            "id": file_id,
            "name": item.name,
            "title": item.title or item.name,
            "mimetype": item.mimetype,
            "filetype": item.mimetype.split("/")[-1],
            "size": len(item.data),
            "url_private": private,
            "url_private_download": f"{private}?download=1",
            # The file object's permalink (https://docs.slack.dev/reference/objects/file-object):
            # "a URL to the file's page" on the workspace's domain.
            "permalink": f"https://test.slack.com/files/{BOT_USER_ID}/{file_id}/{item.name}",
        }

    def post_user_message(
        self,
        channel: str,
        text: str,
        *,
        user: str,
        files: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        ts: str | None = None,
    ) -> dict[str, Any]:
        """A message a person wrote, as conversations.history/replies will show it."""
        message: dict[str, Any] = {"type": "message", "user": user, "text": text}
        message["ts"] = ts or self._next_ts()
        if files:
            message["files"] = files
        self._store(str(channel), message, thread_ts)
        return message

    def messages_in(self, channel: str) -> list[dict[str, Any]]:
        """Every message of a channel the fake holds, top level and replies."""
        seen: dict[str, dict[str, Any]] = {m["ts"]: m for m in self.history.get(channel, [])}
        for (where, _), replies in self.threads.items():
            if where == channel:
                seen.update({m["ts"]: m for m in replies})
        return sorted(seen.values(), key=lambda m: float(m["ts"]))

    def _store(self, channel: str, message: dict[str, Any], thread_ts: str | None) -> None:
        if thread_ts:
            message["thread_ts"] = thread_ts
            thread = self.threads.setdefault((channel, thread_ts), [])
            parent = next((m for m in self.history.get(channel, []) if m["ts"] == thread_ts), None)
            if parent is not None and not thread:
                parent["thread_ts"] = thread_ts
                thread.append(parent)
            thread.append(message)
        else:
            self.history.setdefault(channel, []).append(message)
            existing = self.threads.get((channel, message["ts"]))
            if existing is not None:  # replies stored before their parent was known
                existing.insert(0, message)

    def view_submission(
        self,
        view_id: str,
        *,
        user: str,
        values: dict[str, dict[str, dict[str, Any]]],
        team: str = TEAM_ID,
    ) -> dict[str, Any]:
        """The ``view_submission`` payload Slack sends when a person submits a modal the
        app opened (https://docs.slack.dev/reference/interaction-payloads/view-interactions-payload).

        ``values`` maps block_id -> action_id -> the element's state, e.g.
        ``{"prompt": {"text": {"value": "blue"}}, "image": {"file": {"files": [file]}}}``;
        each must name an input element of the opened view, and gets that element's
        ``type``. File objects of a ``file_input`` are only ever carried here: "You can use
        this when you receive a view_submission payload to identify the value of the input
        element" (https://docs.slack.dev/reference/block-kit/block-elements/file-input-element);
        at most ``max_files`` of them (default 10).
        """
        view = self.views.get(view_id)
        if view is None:
            raise ValueError(f"no view {view_id} was opened")
        elements = {
            (block.get("block_id"), block["element"].get("action_id")): block["element"]
            for block in view.get("blocks", [])
            if block.get("type") == "input" and "element" in block
        }
        state: dict[str, dict[str, Any]] = {}
        for block_id, actions in values.items():
            for action_id, value in actions.items():
                element = elements.get((block_id, action_id))
                if element is None:
                    raise ValueError(f"the view has no input {block_id}/{action_id}")
                entry = {"type": element["type"], **value}
                if element["type"] == "file_input":
                    files = list(value.get("files") or [])
                    if len(files) > int(element.get("max_files", 10)):
                        raise ValueError("more files than the file_input's max_files")
                    entry["files"] = files
                elif "files" in value:
                    raise ValueError(f"{element['type']} carries no files, only file_input")
                state.setdefault(str(block_id), {})[str(action_id)] = entry
        return {
            "type": "view_submission",
            "team": {"id": team, "domain": "test"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
            "api_app_id": "A0KONTEXT",
            "token": "legacy",
            "trigger_id": f"trigger-{uuid.uuid4().hex[:8]}",
            "view": {**view, "state": {"values": state}},
            "response_urls": [],
            "is_enterprise_install": False,
        }

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> FakeSlack:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files-pri/{key}/{name}", self._private_file)
        app.router.add_post("/response/{id}", self._response_url)
        app.router.add_get("/link", self._socket_mode)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for held in self._all_holds:
            held.release()
        for socket in self.sockets:
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- Web API -------------------------------------------------------------------------

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            body = await request.text()
            if request.content_type == "application/json":
                args.update(json.loads(body or "{}"))
            else:
                args.update(dict(parse_qsl(body)))
        return args

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.get("token")
        self.calls.append(Call(method, args, token))
        self.api_peers.append(request.transport and request.transport.get_extra_info("peername"))
        if self.rate_limit_methods.get(method, 0) > 0:
            self.rate_limit_methods[method] -= 1
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "0"}
            )
        wait = self._over_limit(method, args)
        if wait is not None:
            self.ratelimited.append(self.calls[-1])
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        app_method = method in APP_TOKEN_SCOPES
        expected = self.app_token if app_method else self.token
        if token != expected:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        granted = self.app_token_scopes if app_method else (self.scopes or set())
        # Slack names the token's scopes and the method's in every answer's headers:
        # https://docs.slack.dev/authentication/tokens#scopes ("X-OAuth-Scopes").
        headers = {"X-OAuth-Scopes": ",".join(sorted(granted))}
        handler = getattr(self, "api_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"}, headers=headers)
        held = self.holds.pop(method, None)
        if held is not None and not held.after:
            held.reached.set()
            await held.released.wait()
        try:
            self._check_scope(method, args, granted)
            if self.fail_methods.get(method):
                raise SlackRefusal(self.fail_methods[method].pop(0))
            result: dict[str, Any] = handler(args)
        except SlackRefusal as refusal:
            body = {"ok": False, "error": refusal.error, **refusal.extra}
            return web.json_response(body, headers=headers)
        finally:
            if held is not None and held.after:
                held.reached.set()
                await held.released.wait()
        return web.json_response({"ok": True, **result}, headers=headers)

    def _over_limit(self, method: str, args: dict[str, Any]) -> float | None:
        """The seconds to wait when ``limits`` refuse this call, else None."""
        limits = self.limits
        if limits is None:
            return None
        if method == "chat.postMessage":
            key = (method, str(args.get("channel")))
            capacity, per_second = limits.post_message_burst, limits.post_message_per_second
        elif method in FAKE_TIERS:
            key = (method, "")
            per_minute = limits.per_minute[FAKE_TIERS[method] - 1]
            capacity, per_second = per_minute, per_minute / 60.0
        else:
            return None
        bucket = self._buckets.setdefault(key, _Bucket(capacity, per_second))
        return bucket.take(self.clock())

    def ratelimited_by_method(self) -> dict[str, int]:
        counted: dict[str, int] = {}
        for call in self.ratelimited:
            counted[call.method] = counted.get(call.method, 0) + 1
        return counted

    def _check_scope(self, method: str, args: dict[str, Any], granted: set[str]) -> None:
        """``missing_scope`` as every method's reference page lists it: "The token used is
        not granted the specific scope permissions required to complete this request",
        answered with ``needed`` and ``provided`` (the token's scopes, comma-separated)."""
        table = APP_TOKEN_SCOPES if method in APP_TOKEN_SCOPES else METHOD_SCOPES
        if method not in table:
            raise AssertionError(f"the fake has no documented scope for {method}: add it")
        needed: tuple[str, ...] = table[method]
        if method in CHANNEL_TYPE_SCOPES and args.get("channel"):
            kind = self.channel(args["channel"]).kind
            needed = (f"{_PREFIX[kind]}:{CHANNEL_TYPE_SCOPES[method]}",)
        if needed and not granted.intersection(needed):
            raise SlackRefusal(
                "missing_scope", needed=",".join(needed), provided=",".join(sorted(granted))
            )

    def _require_member(self, channel_id: Any, *, public_ok: bool = False) -> Channel:
        """``not_in_channel``: chat.postMessage "Cannot post user messages to a channel they
        are not in" (DOCS chat.postMessage#errors), the same for chat.postEphemeral (DOCS
        chat.postEphemeral#errors), and files.completeUploadExternal "User/bot membership
        is required for the specified channel" (DOCS files.completeUploadExternal#errors).
        ``chat:write.public`` lets chat.postMessage post in public channels the bot is not
        in (https://docs.slack.dev/reference/scopes/chat.write.public)."""
        channel = self.channel(channel_id)
        if channel.bot_member:
            return channel
        if public_ok and channel.kind == "public" and "chat:write.public" in (self.scopes or ()):
            return channel
        raise SlackRefusal("not_in_channel")

    def _metadata(self, args: dict[str, Any]) -> dict[str, Any] | None:
        """Message metadata: "JSON object with event_type and event_payload fields"
        (DOCS chat.postMessage, argument ``metadata``; https://docs.slack.dev/messaging/message-metadata);
        otherwise ``invalid_metadata_format`` / ``invalid_metadata_schema``."""
        if "metadata" not in args or args["metadata"] in (None, ""):
            return None
        try:
            metadata = _json_arg(args["metadata"])
        except json.JSONDecodeError:
            raise SlackRefusal("invalid_metadata_format") from None
        if not isinstance(metadata, dict):
            raise SlackRefusal("invalid_metadata_format")
        if not isinstance(metadata.get("event_type"), str) or not isinstance(
            metadata.get("event_payload"), dict
        ):
            raise SlackRefusal("invalid_metadata_schema")
        return {"event_type": metadata["event_type"], "event_payload": metadata["event_payload"]}

    @staticmethod
    def _refuse_file_input_in_message(args: dict[str, Any]) -> None:
        # "The file input element must be used inside the input block", and input blocks
        # belong to modals and Home tabs, not messages
        # (https://docs.slack.dev/reference/block-kit/block-elements/file-input-element,
        # https://docs.slack.dev/reference/block-kit/blocks/input-block).
        blocks = _json_arg(args.get("blocks") or "[]")
        if _has_file_input(blocks):
            raise SlackRefusal("invalid_blocks")
        # An actions block: "elements: An array of interactive element objects ... There
        # is a maximum of 25 elements in each action block"; a static select's options:
        # "Maximum number of options is 100"; a button's text "Maximum length for the
        # text in this field is 75 characters"
        # (https://docs.slack.dev/reference/block-kit/blocks/actions-block,
        # .../block-elements/select-menu-element, .../block-elements/button-element).
        for block in blocks if isinstance(blocks, list) else []:
            if not isinstance(block, dict) or block.get("type") != "actions":
                continue
            elements = block.get("elements") or []
            if len(elements) > MAX_ACTIONS_ELEMENTS:
                raise SlackRefusal("invalid_blocks")
            if len(str(block.get("block_id") or "")) > MAX_BLOCK_ID:
                raise SlackRefusal("invalid_blocks")
            for element in elements:
                if len(element.get("options") or []) > MAX_SELECT_OPTIONS:
                    raise SlackRefusal("invalid_blocks")
                if len((element.get("text") or {}).get("text") or "") > MAX_BUTTON_TEXT:
                    raise SlackRefusal("invalid_blocks")
                if len(str(element.get("action_id") or "")) > MAX_ACTION_ID:
                    raise SlackRefusal("invalid_blocks")
                if len(str(element.get("value") or "")) > MAX_BUTTON_VALUE:
                    raise SlackRefusal("invalid_blocks")

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def api_auth_test(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://test.slack.com/",
            "team": "Test",
            "user": "kontext",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": "B0001",
        }

    def api_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user"))
        info: dict[str, Any] = {
            "id": user,
            "team_id": TEAM_ID,
            "is_admin": user in self.workspace_admins,
            "is_owner": False,
        }
        if str(args.get("include_locale", "")).lower() in ("true", "1"):
            info["locale"] = self.user_locales.get(user, "en-US")
        return {"user": info}

    def api_apps_connections_open(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.base_url.replace("http://", "ws://") + "/link"}

    def api_conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self.channel(args.get("channel")).info()}

    def _bot_message(self, args: dict[str, Any], ts: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": "B0001",
            "text": args.get("text") or "",
            "ts": ts,
        }
        metadata = self._metadata(args)
        if metadata is not None:
            message["metadata"] = metadata
        blocks = _json_arg(args.get("blocks")) if args.get("blocks") else None
        if blocks:
            message["blocks"] = blocks
        return message

    def api_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_member(args.get("channel"), public_ok=True)
        self._refuse_file_input_in_message(args)
        ts = self._next_ts()
        message = self._bot_message(args, ts)
        self._store(channel.id, message, args.get("thread_ts") or None)
        return {"channel": channel.id, "ts": ts, "message": dict(message)}

    def api_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        # chat.update documents no not_in_channel; it refuses a ts it does not know
        # ("message_not_found: No message exists with the requested timestamp") and
        # another's message ("cant_update_message: Authenticated user does not have
        # permission to update this message"): DOCS chat.update#errors.
        channel = self.channel(args.get("channel"))
        self._refuse_file_input_in_message(args)
        ts = str(args.get("ts"))
        message = next((m for m in self.messages_in(channel.id) if m["ts"] == ts), None)
        if message is None:
            raise SlackRefusal("message_not_found")
        if message.get("user") != BOT_USER_ID:
            raise SlackRefusal("cant_update_message")
        metadata = self._metadata(args)
        # "If you don't include blocks, the message's previous blocks will only be
        # retained if the text argument is not provided. If the text argument is provided
        # and blocks are not provided, the blocks will be removed" (chat.update, blocks).
        blocks = _json_arg(args.get("blocks")) if args.get("blocks") else None
        if blocks:
            message["blocks"] = blocks
        elif args.get("text"):
            message.pop("blocks", None)
        message["text"] = args.get("text") or ""
        if metadata is not None:
            message["metadata"] = metadata
        return {"channel": channel.id, "ts": ts, "text": message["text"]}

    def api_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_member(args.get("channel"))
        self._refuse_file_input_in_message(args)
        # "user_not_in_channel: Intended recipient is not in the specified channel."
        # (DOCS chat.postEphemeral#errors)
        if channel.members is not None and str(args.get("user")) not in channel.members:
            raise SlackRefusal("user_not_in_channel")
        return {"message_ts": self._next_ts()}

    def api_reactions_add(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {}

    def api_reactions_remove(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {}

    def api_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        view = _json_arg(args.get("view")) or {}
        blocks = view.get("blocks", [])
        for block in blocks:
            element = block.get("element") or {}
            if element.get("type") == "file_input":
                # "In order to use the file_input element within your app, your app must
                # have the files:read scope" (the file input element's page, cited above).
                if "files:read" not in (self.scopes or ()):
                    raise SlackRefusal(
                        "missing_scope",
                        needed="files:read",
                        provided=",".join(sorted(self.scopes or ())),
                    )
                if not 1 <= int(element.get("max_files", 10)) <= 10:
                    raise SlackRefusal("invalid_arguments")
        if any(
            _has_file_input(b.get("elements")) or _has_file_input(b.get("accessory"))
            for b in blocks
            if b.get("type") != "input"
        ):
            raise SlackRefusal("invalid_arguments")  # file_input only in an input block
        for block in blocks:
            element = block.get("element") or {}
            if element.get("type") == "static_select" and not _valid_static_select(element):
                raise SlackRefusal("invalid_arguments")
        view_id = f"V{len(self.views) + 1:06d}"
        opened = {"id": view_id, "team_id": TEAM_ID, "app_id": "A0KONTEXT", **view}
        self.views[view_id] = opened
        return {"view": opened}

    def api_files_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        """DOCS files.delete: "file_not_found: The file does not exist, or is not
        visible to the calling user"; "cant_delete_file: Authenticated user does not have
        permission to delete this file" (a bot deletes the files it uploaded). The file
        and its share messages are gone after it."""
        file_id = str(args.get("file"))
        if file_id not in self.files:
            raise SlackRefusal("file_not_found")
        if file_id not in self.uploads:
            raise SlackRefusal("cant_delete_file")
        del self.files[file_id]
        self.deleted_files.append(file_id)
        for messages in [*self.threads.values(), *self.history.values()]:
            messages[:] = [
                m for m in messages if file_id not in {f.get("id") for f in m.get("files") or []}
            ]
        return {}

    def api_views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        """DOCS views.publish: ``user_id`` and ``view`` are required, and the view is a
        Home tab (``type: home``); a view that breaks Block Kit's limits
        (``view_problems``) is refused as Slack does, ``invalid_arguments`` with one
        ``[ERROR] ... [json-pointer:...]`` line per problem in
        ``response_metadata.messages``. ``fail_methods`` can make it refuse anyway."""
        view = _json_arg(args.get("view")) if args.get("view") else None
        problems: list[str] = []
        if not args.get("user_id"):
            problems.append("[ERROR] missing required field: user_id [json-pointer:/user_id]")
        if not isinstance(view, dict):
            problems.append("[ERROR] missing required field: view [json-pointer:/view]")
        else:
            problems += view_problems(view, "home")
        if problems:
            raise SlackRefusal("invalid_arguments", response_metadata={"messages": problems})
        assert isinstance(view, dict)
        published = {"id": f"VH{args['user_id']}", "team_id": TEAM_ID, **view}
        self.home_views[str(args["user_id"])] = published
        self.published.append((str(args["user_id"]), published))
        return {"view": published}

    def api_files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = str(args.get("file"))
        if file_id not in self.files:
            raise SlackRefusal("file_not_found")
        return {"file": self.file_object(file_id)}

    def _with_metadata(self, messages: list[dict[str, Any]], args: dict[str, Any]) -> list[Any]:
        # "include_all_metadata: Return all metadata associated with this message"
        # (DOCS conversations.replies, DOCS conversations.history): without it, none.
        # "oldest: Only messages after this Unix timestamp will be included in results"
        # (both pages; "inclusive" keeps a message at exactly that time); "limit: The
        # maximum number of items to return".
        keep = _truthy(args.get("include_all_metadata"))
        oldest = float(args.get("oldest") or 0)
        inclusive = _truthy(args.get("inclusive"))
        limit = int(args.get("limit") or 1000)
        shown = [
            m
            for m in messages
            if float(m["ts"]) > oldest or (inclusive and float(m["ts"]) == oldest)
        ][:limit]
        return [{k: v for k, v in m.items() if keep or k != "metadata"} for m in shown]

    def api_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(args.get("channel"))
        thread = self.threads.get((channel.id, str(args.get("ts"))), [])
        return {"messages": self._with_metadata(thread, args), "has_more": False}

    def api_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(args.get("channel"))
        # "not_in_channel: The token used does not have access to the proper channel.
        # Only user tokens can access public channels they are not in."
        # (DOCS conversations.history#errors)
        if not channel.bot_member:
            raise SlackRefusal("not_in_channel")
        newest_first = list(reversed(self.history.get(channel.id, [])))
        return {"messages": self._with_metadata(newest_first, args), "has_more": False}

    def api_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        # "length: Size in bytes of the file being uploaded" (required); errors
        # "missing_argument ... Typically only occurs when the length provided is 0" and
        # "file_upload_size_restricted: The size of provided file is too large, as the
        # team has restricted uploads of large files"
        # (https://docs.slack.dev/reference/methods/files.getUploadURLExternal).
        try:
            length = int(args.get("length") or 0)
        except (TypeError, ValueError):
            length = 0
        if length <= 0:
            raise SlackRefusal("missing_argument")
        if length > self.upload_limit:
            raise SlackRefusal("file_upload_size_restricted")
        file_id = f"FUP{len(self.uploads) + 1:05d}"
        self.uploads[file_id] = Upload(file_id, str(args.get("filename")))
        return {"upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def api_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = _json_arg(args.get("files", "[]"))
        channel_id = args.get("channel_id") or (str(args.get("channels") or "").split(",")[0])
        if channel_id:
            self._require_member(channel_id)
        for item in files:
            if item.get("id") not in self.uploads:
                raise SlackRefusal("file_not_found")
        done = []
        shared = []
        for item in files:
            upload = self.uploads[item["id"]]
            upload.channel = channel_id or None
            upload.thread_ts = args.get("thread_ts") or None
            upload.initial_comment = args.get("initial_comment")
            upload.completed_at = time.monotonic()
            self.files[upload.file_id] = SlackFile(
                upload.file_id, upload.filename, "image/png", upload.data, title=item.get("title")
            )
            shared.append(self.file_object(upload.file_id))
            # The answer's files are file objects (id, title, name, permalink, ...), as
            # the method's response type lists them; ``shares`` is added below once the
            # share's message exists.
            done.append(self.file_object(upload.file_id))
        if channel_id and shared:
            # A shared upload is a message in the channel (in the thread when thread_ts is
            # given) carrying its files and the initial comment, as conversations.replies
            # shows it (https://docs.slack.dev/messaging/working-with-files).
            message = {
                "type": "message",
                "subtype": "file_share",
                "user": BOT_USER_ID,
                "bot_id": "B0001",
                "text": args.get("initial_comment") or "",
                "ts": self._next_ts(),
                "files": shared,
            }
            self._store(str(channel_id), message, args.get("thread_ts") or None)
            kind = "public" if self.channel(channel_id).kind == "public" else "private"
            share = {
                "ts": message["ts"],
                **({"thread_ts": message["thread_ts"]} if args.get("thread_ts") else {}),
            }
            for item in done:
                item["shares"] = {kind: {str(channel_id): [share]}}
        return {"files": done}

    # -- files -----------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404, text="unknown upload")
        upload.data = await request.read()
        self.api_peers.append(request.transport and request.transport.get_extra_info("peername"))
        return web.Response(text=f"OK - {len(upload.data)}")

    async def _private_file(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        self.file_requests.append((request.path, auth))
        key = request.match_info["key"]
        file_id = key.split("-", 1)[-1]
        item = self.files.get(file_id)
        readable = self.files_read_scope and "files:read" in (self.scopes or ())
        if auth != f"Bearer {self.token}" or not readable:
            # What Slack does when the token lacks files:read or is missing.
            return web.Response(text=LOGIN_PAGE, content_type="text/html")
        if item is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=item.data, content_type=item.content_type or item.mimetype)

    # -- Socket Mode ---------------------------------------------------------------------

    async def _socket_mode(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self.sockets.append(socket)
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "connection_info": {"app_id": "A0KONTEXT"},
                "debug_info": {"host": "fake", "approximate_connection_time": 18060},
            }
        )
        self.socket_connected.set()
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                continue
            ack = json.loads(message.data)
            future = self.acks.get(str(ack.get("envelope_id")))
            if future is not None and not future.done():
                future.set_result(ack.get("payload") or {})
        return socket

    async def send_envelope(
        self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0, timeout: float = 5
    ) -> dict[str, Any]:
        """Deliver one envelope as Slack does and return the app's ack payload.

        Raises TimeoutError when the app does not acknowledge in time (Slack would
        retry, and the user would see an error).
        """
        await asyncio.wait_for(self.socket_connected.wait(), timeout)
        envelope_id = str(uuid.uuid4())
        self.acks[envelope_id] = asyncio.get_running_loop().create_future()
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
        }
        if kind == "events_api":
            envelope.update(
                retry_attempt=retry_attempt, retry_reason="timeout" if retry_attempt else ""
            )
        await self.sockets[-1].send_json(envelope)
        return await asyncio.wait_for(self.acks[envelope_id], timeout)

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        return web.Response(text="ok")
