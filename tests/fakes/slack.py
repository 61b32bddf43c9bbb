"""A loopback fake of the Slack Web API and file hosting, for the real slack_sdk client.

The bot's ``AsyncWebClient`` gets ``base_url = fake.api_url``; private file URLs point
at the same server and, like Slack's, answer an HTML login page to a request without
the bot token. ``sign_request`` builds the headers Slack puts on the requests it sends to
an app in HTTP mode, so tests can play Slack's side of events and interactivity.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

BOT_TOKEN = "xoxb-1111111111-2222222222-testbottoken"
APP_TOKEN = "xapp-1-A0KONTEXT-3333333333-testapptoken"
SIGNING_SECRET = "3c5b0b4f8d2e4a6b9c7d1e2f3a4b5c6d"
TEAM_ID = "T0TEST"
BOT_USER_ID = "UBOT0001"
LOGIN_PAGE = "<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in</body></html>"


def sign_request(
    body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """Headers of a request Slack sends to an app: ``v0=HMAC-SHA256(v0:ts:body)``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


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
class FakeSlack:
    token: str = BOT_TOKEN
    calls: list[Call] = field(default_factory=list)
    files: dict[str, SlackFile] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)  # posts to response_url
    file_requests: list[tuple[str, str | None]] = field(default_factory=list)
    # (channel, thread_ts) -> messages in the thread, oldest first; uploads land here too
    threads: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    fail_methods: dict[str, list[str]] = field(default_factory=dict)  # method -> errors
    rate_limit_methods: dict[str, int] = field(default_factory=dict)  # method -> 429 count
    app_token: str = APP_TOKEN
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    workspace_admins: set[str] = field(default_factory=set)  # users.info says is_admin
    socket_connected: asyncio.Event = field(default_factory=asyncio.Event)
    acks: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    files_read_scope: bool = True  # False: file downloads get the HTML login page
    # The client address of every Web API call and upload: one per TCP connection.
    api_peers: list[Any] = field(default_factory=list)
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

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
            "mimetype": item.mimetype,
            "filetype": item.mimetype.split("/")[-1],
            "size": len(item.data),
            "url_private": private,
            "url_private_download": f"{private}?download=1",
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
        expected = self.app_token if method == "apps.connections.open" else self.token
        if token != expected:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if self.fail_methods.get(method):
            return web.json_response({"ok": False, "error": self.fail_methods[method].pop(0)})
        handler = getattr(self, "api_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        result: dict[str, Any] = handler(args)
        return web.json_response({"ok": True, **result})

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
        return {
            "ok": True,
            "user": {
                "id": user,
                "team_id": TEAM_ID,
                "is_admin": user in self.workspace_admins,
                "is_owner": False,
            },
        }

    def api_apps_connections_open(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.base_url.replace("http://", "ws://") + "/link"}

    def api_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = self._next_ts()
        return {
            "channel": args.get("channel"),
            "ts": ts,
            "message": {"text": args.get("text"), "ts": ts},
        }

    def api_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": args.get("channel"), "ts": args.get("ts"), "text": args.get("text")}

    def api_chat_postEphemeral(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self._next_ts()}

    def api_reactions_add(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {}

    def api_reactions_remove(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {}

    def api_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        return {"view": {"id": f"V{len(self.calls):06d}", **(view or {})}}

    def api_files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = str(args.get("file"))
        if file_id not in self.files:
            raise web.HTTPOk(
                text=json.dumps({"ok": False, "error": "file_not_found"}),
                content_type="application/json",
            )
        return {"file": self.file_object(file_id)}

    def api_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (str(args.get("channel")), str(args.get("ts")))
        return {"messages": self.threads.get(key, []), "has_more": False}

    def api_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"FUP{len(self.uploads) + 1:05d}"
        self.uploads[file_id] = Upload(file_id, str(args.get("filename")))
        return {"upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def api_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = json.loads(args.get("files", "[]"))
        done = []
        for item in files:
            upload = self.uploads[item["id"]]
            upload.channel = args.get("channel_id")
            upload.thread_ts = args.get("thread_ts")
            upload.initial_comment = args.get("initial_comment")
            upload.completed_at = time.monotonic()
            done.append({"id": upload.file_id, "title": item.get("title"), "name": upload.filename})
            self.files[upload.file_id] = SlackFile(
                upload.file_id, upload.filename, "image/png", upload.data
            )
            if upload.channel and upload.thread_ts:
                self.threads.setdefault((upload.channel, upload.thread_ts), []).append(
                    {
                        "ts": self._next_ts(),
                        "bot_id": "B0001",
                        "files": [self.file_object(upload.file_id)],
                    }
                )
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
        if auth != f"Bearer {self.token}" or not self.files_read_scope:
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
