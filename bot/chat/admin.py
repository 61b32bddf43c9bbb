"""The admin commands typed in chat (grant, allowance, pause, ledger, top) and the admin
actions the platforms' own forms call (restricted models): the core decides who may
and records who did; this turns each into its answer. Part of ``Conversation``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence

from bot.chat import texts
from bot.chat.texts import Style
from bot.credits.periods import parse_period
from bot.domain import UserRef
from bot.errors import UserInputError
from bot.jobs.service import KontextService

# Asks the platform, only when it matters, whether it calls this user an admin.
PlatformAdmin = Callable[[], Awaitable[bool]]

# "<@U123|name>" (Slack escapes mentions in commands), "<@U123>", "<@!123>" (Discord).
MENTION = r"<@!?(?P<user>[A-Za-z0-9]+)(?:\|[^>]*)?>"
ADMIN_COMMANDS = {
    "grant": re.compile(rf"^grant\s+{MENTION}\s+(?P<amount>-?\d{{1,9}})$", re.I),
    "allowance": re.compile(
        rf"^allowance(?:\s+{MENTION})?\s+(?P<amount>\d{{1,9}}|off)(?:\s+(?P<period>\w+))?$",
        re.I,
    ),
    "pause": re.compile(r"^(?P<action>pause|resume)$", re.I),
    # A user's credit entries; "history" is everyone's own jobs (Conversation.history).
    "ledger": re.compile(rf"^ledger\s+{MENTION}$", re.I),
    "top": re.compile(r"^top$", re.I),
}


class AdminCommands:
    service: KontextService
    style: Style

    # -- admin commands (the core decides who may, and records who did) ------------------------

    async def _admin_command(
        self, admin: UserRef, text: str, platform_admin: PlatformAdmin
    ) -> str | None:
        for name, pattern in ADMIN_COMMANDS.items():
            match = pattern.match(text)
            if match is None:
                continue
            space = f"{admin.platform}:{admin.workspace}"
            target = match.groupdict().get("user")
            if name == "grant":
                return await self.grant(
                    admin, same_space(admin, target), int(match["amount"]), platform_admin
                )
            if name == "allowance":
                scope = f"user:{space}:{target}" if target else f"workspace:{space}"
                amount = match["amount"].lower()
                period = match["period"]
                return await self.allowance(
                    admin,
                    scope,
                    None if amount == "off" else int(amount),
                    period,
                    platform_admin,
                )
            if name == "pause":
                paused = match["action"].lower() == "pause"
                return await self.pause(admin, f"workspace:{space}", paused, platform_admin)
            if name == "ledger":
                return await self.ledger(admin, same_space(admin, target), platform_admin)
            return await self.top(admin, platform_admin)
        return None

    async def grant(
        self, admin: UserRef, user: UserRef, amount: int, platform_admin: PlatformAdmin
    ) -> str:
        async def act(is_platform_admin: bool) -> str:
            balance = await self.service.admin_grant(
                admin, user, amount, platform_admin=is_platform_admin
            )
            return texts.grant_text(self.style, user.user, balance)

        return await self._answer(admin, platform_admin, act)

    async def allowance(
        self,
        admin: UserRef,
        scope: str,
        amount: int | None,
        period: str | None,
        platform_admin: PlatformAdmin,
    ) -> str:
        async def act(is_platform_admin: bool) -> str:
            override = await self.service.admin_set_allowance(
                admin,
                scope,
                amount,
                parse_period(period) if period else None,
                platform_admin=is_platform_admin,
            )
            limits = await self.service.limits()
            return texts.allowance_text(self.style, override.scope, override, limits)

        return await self._answer(admin, platform_admin, act)

    async def pause(
        self, admin: UserRef, scope: str, paused: bool, platform_admin: PlatformAdmin
    ) -> str:
        async def act(is_platform_admin: bool) -> str:
            override = await self.service.admin_pause(
                admin, scope, paused, platform_admin=is_platform_admin
            )
            return texts.pause_text(self.style, override.scope, paused)

        return await self._answer(admin, platform_admin, act)

    async def ledger(self, admin: UserRef, user: UserRef, platform_admin: PlatformAdmin) -> str:
        async def act(is_platform_admin: bool) -> str:
            entries = await self.service.admin_history(
                admin, user, platform_admin=is_platform_admin
            )
            return texts.ledger_text(self.style, user.user, entries)

        return await self._answer(admin, platform_admin, act)

    async def top(self, admin: UserRef, platform_admin: PlatformAdmin) -> str:
        async def act(is_platform_admin: bool) -> str:
            rows = await self.service.admin_top_spenders(admin, platform_admin=is_platform_admin)
            return texts.top_spenders_text(self.style, rows)

        return await self._answer(admin, platform_admin, act)

    # -- restricted models (bot.credits.models; docs/credits.md) ----------------------------------

    async def allow_models(
        self, admin: UserRef, scope: str, names: Sequence[str], platform_admin: PlatformAdmin
    ) -> str:
        """Allow the restricted models ``names`` in ``scope`` (``off`` or none: no more)."""
        chosen = [] if [n.lower() for n in names] in ([], ["off"]) else list(names)

        async def act(is_platform_admin: bool) -> str:
            override = await self.service.admin_set_models(
                admin, scope, chosen, platform_admin=is_platform_admin
            )
            return texts.models_allowed_text(self.style, override.scope, override.models or ())

        return await self._answer(admin, platform_admin, act)

    # -- end of restricted models ---------------------------------------------------------------

    async def _answer(
        self, admin: UserRef, platform_admin: PlatformAdmin, act: Callable[[bool], Awaitable[str]]
    ) -> str:
        """An admin action's answer: what ``act`` says it did, or why the core refused
        (not an admin, another workspace, a bad scope or amount), which is the answer too."""
        is_platform_admin = await self._asks(admin, platform_admin)
        try:
            return await act(is_platform_admin)
        except UserInputError as exc:
            return exc.user_message

    async def _asks(self, admin: UserRef, platform_admin: PlatformAdmin) -> bool:
        """Ask the platform only when the operator lets platform admins act and the
        user is not already a bot admin (Slack's answer costs a users.info call)."""
        if not self.service.platform_admins or self.service.is_admin(admin):
            return False
        return await platform_admin()


def same_space(admin: UserRef, user_id: str | None) -> UserRef:
    """A user named in an admin command belongs to the admin's own workspace."""
    return UserRef(admin.platform, admin.workspace, str(user_id))
