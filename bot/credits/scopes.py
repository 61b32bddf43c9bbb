"""Scopes: the names of where an allowance override or a pause applies.

    global                                      everyone
    workspace:<platform>:<workspace>            workspace:discord:9876
    channel:<platform>:<workspace>:<channel>    channel:slack:T0123:C0456
    role:<platform>:<workspace>:<role>          role:discord:9876:777
    user:<platform>:<workspace>:<user>          user:discord:9876:1234

A pure module (no config, no storage) because both sides need it: config validation
checks ``[[credits.overrides]]`` scopes with it, and the policies read stored rows by it.
Importing it from ``bot.credits.policies`` made the config import the storage schema.
"""

from __future__ import annotations

import re

from bot.domain import RequestContext, UserRef
from bot.errors import UserInputError
from bot.i18n import _

SCOPE_KINDS = ("workspace", "channel", "role", "user")
_PART = r"[A-Za-z0-9_.@-]{1,64}"
_SCOPE = re.compile(
    rf"^(?:workspace:{_PART}:{_PART}|(?:channel|role|user):{_PART}:{_PART}:{_PART})$"
)

GLOBAL = "global"


def parse_scope(text: str) -> str:
    scope = text.strip()
    if scope != GLOBAL and not _SCOPE.match(scope):
        raise UserInputError(
            _(
                "'{text}' is not a scope: write global, workspace:PLATFORM:WORKSPACE, "
                "channel:PLATFORM:WORKSPACE:CHANNEL, role:PLATFORM:WORKSPACE:ROLE or "
                "user:PLATFORM:WORKSPACE:USER"
            ).format(text=text)
        )
    return scope


def scope_workspace(scope: str) -> tuple[str, str] | None:
    """The (platform, workspace) a scope belongs to: whose admins may change it (None for
    ``global``, which only the bot's own admins may)."""
    parts = scope.split(":")
    return (parts[1], parts[2]) if len(parts) >= 3 else None


def scopes_for(user: UserRef, context: RequestContext) -> list[str]:
    """The scopes a request from ``user`` in ``context`` falls under (``global`` aside)."""
    space = f"{user.platform}:{user.workspace}"
    scopes = [f"user:{user}", f"workspace:{space}"]
    if context.channel:
        scopes.append(f"channel:{space}:{context.channel}")
    scopes.extend(f"role:{space}:{role}" for role in context.roles)
    return scopes
