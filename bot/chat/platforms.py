"""Where platforms plug in: one protocol, and a registry filled from entry points.

Slack, Discord and the console are found through the ``kontext_bot.platforms`` entry
points in pyproject.toml (the mechanism pytest and Flask use for plugins), so the core
never imports an adapter, and ``kontext-bot run``, readiness checks and the CLI iterate
one list instead of an if-chain per platform. A platform whose SDK is not installed
fails only when it is enabled, with the pip extra to install.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bot.domain import Attachment, AttachmentSource, Job, Reply
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.jobs.service import KontextService

ENTRY_POINT_GROUP = "kontext_bot.platforms"
# settings, input images (one, several in order, or none), output path, the request's
# text -> exit code
RunOne = Callable[
    ["Settings", Path | list[Path] | None, Path | None, str], Coroutine[Any, Any, int]
]


class Platform(Protocol):
    """A front end as the core sees it: started and stopped with the process, asked
    whether it is ready, and able to answer stored jobs (also after a restart)."""

    platform: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ready(self) -> bool: ...

    def reply_for(self, job: Job) -> Reply:
        """A ``Reply`` for a stored job (also after a restart)."""

    def attachment_for(self, source: AttachmentSource) -> Attachment:
        """Rebuild a fetchable attachment from its stored source."""


class NoConnection:
    """For a platform with nothing to connect to (the console, test doubles): started,
    stopped and always ready."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ready(self) -> bool:
        return True


@dataclass(frozen=True)
class PlatformSpec:
    """What the registry knows of a platform before importing its SDK."""

    name: str
    enabled: Callable[[Settings], bool]
    # Imports the SDK only when called: a missing one is then a clear config error.
    build: Callable[[Settings, KontextService], Platform]
    extra: str = ""
    # A platform that takes one request from the terminal (``kontext-bot console``).
    run_one: RunOne | None = None


@cache
def registered() -> dict[str, PlatformSpec]:
    specs: dict[str, PlatformSpec] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        spec = entry.load()
        if not isinstance(spec, PlatformSpec) or spec.name != entry.name:
            raise ConfigError(f"the platform entry point {entry.name!r} is not a PlatformSpec")
        specs[spec.name] = spec
    return specs


def build(spec: PlatformSpec, settings: Settings, service: KontextService) -> Platform:
    try:
        return spec.build(settings, service)
    except ImportError as exc:
        raise ConfigError(
            f"{spec.name}.enabled: the {spec.name} libraries are not installed ({exc.name}); "
            f"install kontext-bot[{spec.extra or spec.name}]"
        ) from None
