"""Each Slack user's language, for the core to choose the answers' language from.

Slack tells it only when asked: ``users.info`` with ``include_locale=true`` adds the
user's ``locale`` (``ko-KR``) to the answer, under the ``users:read`` scope the
manifest has (https://docs.slack.dev/reference/methods/users.info#arguments). It is
looked up on a user's first request and kept by the membership cache's rules
(membership.py): an answer is kept for a while, concurrent requests of one user share
the call in flight, and a failed look-up is not kept and never holds a request up: the
answer is then in the workspace's language or the bot's default.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.in_flight import InFlight

log = structlog.get_logger("kontext.slack")


class Locales:
    def __init__(
        self,
        client: AsyncWebClient,
        on_error: Callable[[str, SlackApiError], None],
        *,
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.on_error = on_error
        self.ttl = ttl
        self.clock = clock
        # user -> (their locale, until when it holds)
        self._known: dict[str, tuple[str | None, float]] = {}
        self._asking = InFlight[str, str | None]()

    async def of(self, user: str) -> str | None:
        """The user's locale as Slack gives it (``ko-KR``), or None when unknown."""
        known = self._known.get(user)
        if known is not None and known[1] > self.clock():
            return known[0]
        return await self._asking.run(user, lambda: self._ask(user))

    async def _ask(self, user: str) -> str | None:
        try:
            answer = await self.client.users_info(user=user, include_locale=True)
        except SlackApiError as exc:
            self.on_error("users.info", exc)
            return None
        except Exception as exc:  # network trouble: answer in the default language
            log.warning("users.info failed", user=user, error=repr(exc))
            return None
        locale = (answer.get("user") or {}).get("locale")
        found = str(locale) if locale else None
        self._known[user] = (found, self.clock() + self.ttl)
        return found
