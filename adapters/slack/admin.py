"""``/kontext grant|allowance|pause|resume|history|top``: the admin commands in Slack,
mapped onto the core's admin API (which decides who may, and records who did).

Workspace admins and owners count as bot admins when the operator set
``credits.platform_admins``; Slack says who they are in ``users.info``.
"""

from __future__ import annotations

import re

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands import top_spenders_text
from bot.domain import UserRef
from bot.errors import UserInputError
from bot.policies import parse_period
from bot.service import KontextService

# "<@U123|name>" when the command escapes mentions, "<@U123>" otherwise.
_MENTION = r"<@(?P<user>[A-Z0-9]+)(?:\|[^>]*)?>"
GRANT = re.compile(rf"^grant\s+{_MENTION}\s+(?P<amount>-?\d{{1,9}})$", re.I)
ALLOWANCE = re.compile(
    rf"^allowance(?:\s+{_MENTION})?\s+(?P<amount>\d{{1,9}}|off)(?:\s+(?P<period>\w+))?$", re.I
)
PAUSE = re.compile(r"^(?P<action>pause|resume)$", re.I)
HISTORY = re.compile(rf"^history\s+{_MENTION}$", re.I)
TOP = re.compile(r"^top$", re.I)


class SlackAdmin:
    def __init__(self, service: KontextService, client: AsyncWebClient) -> None:
        self.service = service
        self.client = client

    async def answer(self, text: str, admin: UserRef) -> str | None:
        """The reply to an admin command, or None when ``text`` is not one."""
        text = text.strip()
        for pattern, handler in (
            (GRANT, self._grant),
            (ALLOWANCE, self._allowance),
            (PAUSE, self._pause),
            (HISTORY, self._history),
            (TOP, self._top),
        ):
            match = pattern.match(text)
            if match:
                try:
                    return await handler(match, admin)
                except UserInputError as exc:
                    return exc.user_message
        return None

    async def _is_workspace_admin(self, user: UserRef) -> bool:
        if not self.service.platform_admins or self.service.is_admin(user):
            return False
        try:
            info = await self.client.users_info(user=user.user)
        except SlackApiError:
            return False
        profile = info.get("user") or {}
        return bool(profile.get("is_admin") or profile.get("is_owner"))

    def _target(self, admin: UserRef, match: re.Match[str]) -> UserRef:
        return UserRef(admin.platform, admin.workspace, match["user"])

    async def _grant(self, match: re.Match[str], admin: UserRef) -> str:
        target = self._target(admin, match)
        balance = await self.service.admin_grant(
            admin,
            target,
            int(match["amount"]),
            platform_admin=await self._is_workspace_admin(admin),
        )
        return f"<@{target.user}> now has {balance} credits."

    async def _allowance(self, match: re.Match[str], admin: UserRef) -> str:
        space = f"{admin.platform}:{admin.workspace}"
        scope = f"user:{space}:{match['user']}" if match["user"] else f"workspace:{space}"
        who = f"<@{match['user']}>" if match["user"] else "this workspace"
        remove = match["amount"].lower() == "off"
        override = await self.service.admin_set_allowance(
            admin,
            scope,
            None if remove else int(match["amount"]),
            parse_period(match["period"]) if match["period"] else None,
            platform_admin=await self._is_workspace_admin(admin),
        )
        if override.allowance is None:
            return (
                f"{who.capitalize() if not match['user'] else who} has no allowance override now."
            )
        period = override.period or self.service.store.policy.period
        return f"Allowance for {who}: {override.allowance} credits {period}."

    async def _pause(self, match: re.Match[str], admin: UserRef) -> str:
        paused = match["action"].lower() == "pause"
        await self.service.admin_pause(
            admin,
            f"workspace:{admin.platform}:{admin.workspace}",
            paused,
            platform_admin=await self._is_workspace_admin(admin),
        )
        return (
            "Paused: new edits are refused in this workspace until `/kontext resume`."
            if paused
            else "Resumed: taking edits again."
        )

    async def _history(self, match: re.Match[str], admin: UserRef) -> str:
        target = self._target(admin, match)
        entries = await self.service.admin_history(
            admin, target, platform_admin=await self._is_workspace_admin(admin)
        )
        lines = [
            f"#{e.id} {e.kind.value} {e.amount:+d}" + (f" ({e.note})" if e.note else "")
            for e in entries
        ]
        return f"Recent credits of <@{target.user}>:\n" + ("\n".join(lines) or "No entries yet.")

    async def _top(self, _match: re.Match[str], admin: UserRef) -> str:
        rows = await self.service.admin_top_spenders(
            admin, platform_admin=await self._is_workspace_admin(admin)
        )
        return top_spenders_text(rows)
