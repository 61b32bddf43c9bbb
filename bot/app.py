"""Wiring: one place that turns a ``Settings`` into a running core.

The CLI commands, the adapters and the tests all build the core here, so a test
exercises the same object graph an operator runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bot.config import Settings
from bot.domain import Frontend
from bot.jobstore import JobStore
from bot.ledger import AllowancePolicy
from bot.providers.base import Provider
from bot.providers.factory import build_provider, capabilities_for
from bot.runner import JobRunner, RunnerLimits
from bot.service import KontextService
from bot.storage import Database, open_database


def runner_limits(settings: Settings) -> RunnerLimits:
    jobs, images = settings.jobs, settings.images
    return RunnerLimits(
        max_concurrent=jobs.max_concurrent,
        per_user_concurrent=jobs.per_user_concurrent,
        job_timeout=jobs.timeout_seconds,
        lease_seconds=jobs.lease_seconds,
        poll_initial=jobs.poll_initial_seconds,
        poll_max=jobs.poll_max_seconds,
        delivery_attempts=jobs.delivery_attempts,
        max_input_bytes=images.max_input_bytes,
        max_input_pixels=images.max_input_pixels,
        max_output_bytes=images.max_output_bytes,
    )


def allowance_policy(settings: Settings) -> AllowancePolicy:
    return AllowancePolicy(amount=settings.credits.allowance, period=settings.credits.period)


@dataclass
class Core:
    settings: Settings
    db: Database
    store: JobStore
    service: KontextService
    provider: Provider | None
    runner: JobRunner | None

    async def start(self) -> None:
        if self.runner is not None:
            await self.runner.start()

    async def close(self, grace: float = 0.0) -> None:
        if self.runner is not None:
            await self.runner.stop(grace)
        if self.provider is not None:
            await self.provider.aclose()
        await self.db.dispose()


async def build_core(
    settings: Settings,
    frontends: Mapping[str, Frontend] | None = None,
    *,
    clock: Callable[[], float] = time.time,
    with_runner: bool = True,
    provider: Provider | None = None,
) -> Core:
    """Open storage (applying migrations) and, unless ``with_runner`` is False (the
    credits CLI), the provider and the job runner."""
    if with_runner and provider is None:
        provider = build_provider(settings)  # config errors surface before storage work
    db = await open_database(settings.storage.url)
    store = JobStore(db, allowance_policy(settings), clock)
    capabilities = provider.capabilities if provider else capabilities_for(settings)
    service = KontextService(
        store,
        capabilities,
        provider_name=settings.provider.name,
        model=settings.provider.model,
        max_input_bytes=settings.images.max_input_bytes,
    )
    runner = None
    if with_runner and provider is not None:
        runner = JobRunner(
            store, provider, frontends or {}, runner_limits(settings), settings.storage.data_dir
        )
        service.runner = runner
    return Core(settings, db, store, service, provider, runner)
