"""Is the bot in this channel? Asked before a request is reserved.

A slash command and a message shortcut work in any channel, but the bot can post only
where it is a member (chat.postMessage, chat.postEphemeral and file shares answer
``not_in_channel``). Without this check the provider would be paid for an image that
cannot be posted. Slack's "yes" (conversations.info, ``is_member``) is kept per channel
for a short time, so a burst of requests in one channel costs one call, and concurrent
askers share the call in flight; a "no" is not kept, so a user who has just invited the
bot is let through on the next try.

The check only ever says "no" when Slack says so: a direct message (the app's own DM,
or one whose membership ``is_member`` does not describe), our own missing scope, or any
other failure of the look-up lets the request through: a user is never blocked because
of the bot's configuration or a hiccup, and delivery failures are still refunded.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.in_flight import InFlight

log = structlog.get_logger("kontext.slack")

# Errors of conversations.info that mean the bot cannot see the channel: a private
# channel it is not in is "channel_not_found" to it
# (https://docs.slack.dev/reference/methods/conversations.info#errors).
_ABSENT = frozenset({"channel_not_found"})


class Membership:
    def __init__(
        self,
        client: AsyncWebClient,
        on_error: Callable[[str, SlackApiError], None],
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.on_error = on_error
        self.ttl = ttl
        self.clock = clock
        # Only a "yes" is kept: channel -> until when it holds.
        self._member_until: dict[str, float] = {}
        self._asking = InFlight[str, bool]()

    async def is_member(self, channel: str) -> bool:
        """False only when Slack says the bot is not in ``channel``."""
        if not channel or channel.startswith("D"):
            return True  # a DM: is_member does not describe it; delivery falls back
        if self._member_until.get(channel, 0.0) > self.clock():
            return True
        return await self._asking.run(channel, lambda: self._ask(channel))

    def forget(self, channel: str) -> None:
        """Drop what is known of ``channel`` (the bot was found missing at delivery)."""
        self._member_until.pop(channel, None)

    async def _ask(self, channel: str) -> bool:
        try:
            answer = await self.client.conversations_info(channel=channel)
        except SlackApiError as exc:
            error = exc.response.get("error")
            member = error not in _ABSENT
            if member:
                # missing_scope (logged once, naming the scope) or anything else: not a
                # reason to refuse the user.
                self.on_error("conversations.info", exc)
        except Exception as exc:  # network trouble: the request goes ahead
            log.warning("conversations.info failed", channel=channel, error=repr(exc))
            member = True
        else:
            info = answer.get("channel") or {}
            member = bool(info.get("is_member", True))
        if member:
            # Only a "yes" is kept: after "/invite" the next try must get through at once.
            self._member_until[channel] = self.clock() + self.ttl
        return member
