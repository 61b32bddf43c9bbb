"""The console platform's entry in the registry (see bot/chat/platforms.py). It is enabled in
every ``kontext-bot run`` process, so a console job a crash left behind is finished and
written where its owner asked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bot.chat.platforms import Platform, PlatformSpec

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.jobs.service import KontextService


def _build(settings: Settings, service: KontextService) -> Platform:
    from adapters.console.frontend import ConsoleFrontend

    return ConsoleFrontend()


async def _run_one(
    settings: Settings, image: Path | list[Path] | None, out: Path | None, text: str
) -> int:
    from adapters.console.main import run_console

    return await run_console(settings, image=image, out=out, text=text)


SPEC = PlatformSpec(name="console", enabled=lambda settings: True, build=_build, run_one=_run_one)
