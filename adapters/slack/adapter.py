"""The Slack adapter: its Web API client, its HTTP or Socket Mode transport, and the
core's way back to Slack (replies and file downloads for stored jobs). The listeners
that turn Slack events into requests are in ``listeners.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import structlog
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler

from adapters.slack.files import SlackFileFetcher
from adapters.slack.listeners import PLATFORM, SlackListeners
from adapters.slack.locales import Locales
from adapters.slack.membership import Membership
from adapters.slack.pacing import CountingRateLimitHandler, PacedWebClient, SlackPacer, SlackRates
from adapters.slack.reply import SlackReply
from adapters.slack.status import StatusBoard
from adapters.slack.style import SlackStyle
from bot.chat.conversation import Conversation
from bot.config import SlackConfig
from bot.domain import Attachment, AttachmentSource, Job, UserRef
from bot.errors import UserInputError
from bot.http_transport import new_http_client
from bot.i18n import _
from bot.jobs.service import KontextService

log = structlog.get_logger("kontext.slack")


def rates_of(config: SlackConfig) -> SlackRates:
    return SlackRates(
        post_message_per_second=config.post_message_per_second,
        tier2_per_minute=config.tier2_per_minute,
        tier3_per_minute=config.tier3_per_minute,
        tier4_per_minute=config.tier4_per_minute,
    )


class SlackAdapter:
    platform = PLATFORM

    def __init__(self, config: SlackConfig, service: KontextService) -> None:
        self.config = config
        self.service = service
        token = config.bot_token.get_secret_value()
        metrics = service.metrics
        self.client = PacedWebClient(
            token=token,
            base_url=config.api_base_url,
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(),
                CountingRateLimitHandler(metrics, max_retry_count=3),
            ],
            pacer=SlackPacer(rates_of(config)) if config.rate_limits else None,
            metrics=metrics,
        )
        self.status = StatusBoard(self.client)
        self.app = AsyncApp(
            client=self.client,
            signing_secret=config.signing_secret.get_secret_value() or None,
            # Slack gets its 200 only when the listener is done: by then the request
            # is stored and reserved, so a process killed earlier is retried by Slack
            # instead of losing a request it acknowledged (listeners.py).
            process_before_response=True,
        )
        self.http = new_http_client(timeout=30.0)
        self.files = SlackFileFetcher(self.http, token, config.file_hosts)
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._scopes_reported: set[str] = set()
        # The bot user's name, for "/invite @kontext" answers; auth.test tells it at start.
        self.bot_name = "kontext"
        self.membership = Membership(self.client, self.api_error)
        self.locales = Locales(self.client, self.api_error)
        self.conversation = Conversation(service, SlackStyle())
        SlackListeners(self, self.conversation).register()

    # -- the Platform side (the core finishing jobs) -------------------------------------

    def reply_for(self, job: Job) -> SlackReply:
        return SlackReply(
            self.client,
            job.reply_target,
            bot_name=self.bot_name,
            on_unreachable=self.membership.forget,
            board=self.status,
            layout=self.conversation.result_layout(),
        )

    def attachment_for(self, source: AttachmentSource) -> Attachment:
        async def fetch(max_bytes: int) -> bytes:
            return await self.files.fetch(await self._download_url(source.locator), max_bytes)

        return Attachment(source=source, fetch=fetch)

    async def _download_url(self, locator: str) -> str:
        """Files the event did not describe are looked up here, in the runner, where a
        slow or failing files.info costs a refund with a message, not the request."""
        if not locator.startswith("file:"):
            return locator
        try:
            info = await self.client.files_info(file=locator.removeprefix("file:"))
        except SlackApiError as exc:
            if exc.response.get("error") in ("missing_scope", "not_allowed_token_type"):
                self.api_error("files.info", exc)
                raise UserInputError(
                    _(
                        "I can't read files in this workspace: the bot's Slack token lacks the "
                        "files:read scope. Ask an admin to add it and reinstall the app."
                    ),
                    detail="files.info: missing files:read",
                ) from None
            raise UserInputError(
                _("I couldn't find that file (it may have been deleted)."),
                detail=f"files.info: {exc.response.get('error')}",
            ) from None
        file = info["file"]
        url = file.get("url_private_download") or file.get("url_private")
        if not url:
            raise UserInputError(
                _("Slack did not give me a way to download that file."),
                detail="files.info: no download URL",
            )
        return str(url)

    def platform_admin(self, user: UserRef) -> Callable[[], Awaitable[bool]]:
        """Whether Slack calls ``user`` a workspace admin or owner (users.info), asked
        only when the conversation layer needs to know."""

        async def ask() -> bool:
            try:
                info = await self.client.users_info(user=user.user)
            except SlackApiError as exc:
                self.api_error("users.info", exc)
                return False
            profile = info.get("user") or {}
            return bool(profile.get("is_admin") or profile.get("is_owner"))

        return ask

    def api_error(self, method: str, exc: SlackApiError) -> None:
        """A missing scope is the operator's to fix: said once, as an error naming the
        scope, instead of a silent "no" on every request."""
        error = exc.response.get("error")
        if error == "missing_scope":
            needed = str(exc.response.get("needed") or "?")
            if needed not in self._scopes_reported:
                self._scopes_reported.add(needed)
                log.error(
                    "the Slack app lacks a scope: add it in the app's OAuth settings "
                    "(docs/slack-manifest.yml) and reinstall",
                    method=method,
                    scope=needed,
                )
            return
        log.warning("slack call failed", method=method, error=error)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        # One aiohttp session for every Web API call (bolt's per-request clients share
        # it too): without one, slack_sdk opens and closes a session, so a TCP and TLS
        # connection, for each call, and a job makes about eight calls.
        self.client.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.client.timeout)
        )
        # Fail fast with Slack's own reason (invalid_auth, ...) instead of retrying a
        # connection that can never work.
        identity = await self.client.auth_test()
        self.bot_name = str(identity.get("user") or self.bot_name)
        if self.config.mode == "socket":
            await self.client.apps_connections_open(
                app_token=self.config.app_token.get_secret_value()
            )
        if self.config.mode == "http":
            self._runner = web.AppRunner(self.app.web_app(path="/slack/events"), access_log=None)
            await self._runner.setup()
            # Slack delivers bursts (a channel's worth of mentions at once); the default
            # listen backlog of 128 resets connections beyond it.
            site = web.TCPSite(
                self._runner, self.config.http_host, self.config.http_port, backlog=1024
            )
            await site.start()
            self.port = int(self._runner.addresses[0][1])
            log.info("slack adapter listening", mode="http", port=self.port)
        else:
            self._socket = AsyncSocketModeHandler(
                self.app, self.config.app_token.get_secret_value()
            )
            await self._socket.connect_async()  # type: ignore[no-untyped-call]
            log.info("slack adapter connected", mode="socket")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
        # Status edits and acknowledgements still on their way get a moment to land.
        await self.status.drain(grace=5.0)
        await self.http.aclose()
        if self.client.session is not None:
            await self.client.session.close()

    async def ready(self) -> bool:
        if self._socket is not None:
            return bool(await self._socket.client.is_connected())
        return self._runner is not None
