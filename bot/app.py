"""Wiring: one place that turns a ``Settings`` into a running core.

The CLI commands, the adapters and the tests all build the core here, so a test
exercises the same object graph an operator runs. Everything is built in the order it
is needed and handed over whole: storage, the service, the front ends (they need the
service), then the worker and pipeline with the complete, read-only set of front ends.
Nothing is attached after construction; the one change at run time is
``Worker.set_limits``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import structlog

from bot.chat.platforms import Platform
from bot.config import Settings
from bot.config.presets import preset_book
from bot.credits.limits import LIMITS, Limits, spec
from bot.credits.models import catalogue_for
from bot.credits.policies import Override, PolicyBook
from bot.dashboard import DashboardServer
from bot.jobs.queue import JobQueue
from bot.jobs.retention import PruneReport, prune
from bot.jobs.runner_limits import RunnerLimits
from bot.jobs.service import KontextService
from bot.jobs.worker import Doorbell, Worker
from bot.providers.base import Provider
from bot.providers.factory import build_fallbacks, build_provider, capabilities_for
from bot.server.metrics import Metrics
from bot.server.ops import OpsServer
from bot.server.webhooks import WebhookServer
from bot.storage import Database, open_database

# The front ends the worker answers for: given ready-made (tests, the console), or built
# from the service (the adapters need it to take requests).
Frontends = Mapping[str, Platform] | Callable[[KontextService], Iterable[Platform]]


def limits_from_settings(settings: Settings) -> Limits:
    """The config's limits: each read from its key in its spec's section."""
    return Limits(
        **{name: getattr(getattr(settings, spec(f).section), name) for name, f in LIMITS.items()}
    )


def runner_limits(settings: Settings) -> RunnerLimits:
    jobs, images = settings.jobs, settings.images
    return RunnerLimits(
        max_concurrent=jobs.max_concurrent,
        job_timeout=jobs.timeout_seconds,
        lease_seconds=jobs.lease_seconds,
        poll_initial=jobs.poll_initial_seconds,
        poll_max=jobs.poll_max_seconds,
        delivery_attempts=jobs.delivery_attempts,
        delivery_deadline=jobs.delivery_deadline_seconds,
        max_preparing=jobs.max_preparing,
        progress_interval=jobs.progress_interval_seconds,
        max_input_bytes=images.max_input_bytes,
        max_input_pixels=images.max_input_pixels,
        max_total_input_bytes=images.max_total_input_bytes,
        max_output_bytes=images.max_output_bytes,
        keep_images_hours=settings.storage.keep_images_hours,
    )


RETENTION_INTERVAL_SECONDS = 600.0

log = structlog.get_logger("kontext.app")


@dataclass
class Core:
    settings: Settings
    db: Database
    store: JobQueue
    service: KontextService
    provider: Provider | None
    runner: Worker | None
    metrics: Metrics
    frontends: Mapping[str, Platform] = field(default_factory=dict)
    ops: OpsServer | None = None
    fallbacks: list[Provider] = field(default_factory=list)
    webhooks: WebhookServer | None = None
    dashboard: DashboardServer | None = None
    _retention: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.runner is not None:
            await self.runner.start()
            self._retention = asyncio.create_task(self._retention_loop(), name="kontext-prune")
        if self.ops is not None:
            await self.ops.start()
        if self.webhooks is not None:
            await self.webhooks.start()
        if self.dashboard is not None:
            await self.dashboard.start()

    def stop_accepting(self) -> None:
        self.service.stop_accepting()

    def hurry(self) -> None:
        """A second stop signal: cut the shutdown grace short (jobs stay resumable)."""
        if self.runner is not None:
            self.runner.hurry()

    async def close(self, grace: float = 0.0) -> None:
        self.service.stop_accepting()
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        if self.runner is not None:
            await self.runner.stop(grace)
        if self.ops is not None:
            await self.ops.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.dashboard is not None:
            await self.dashboard.stop()
        for provider in [self.provider, *self.fallbacks]:
            if provider is not None:
                await provider.aclose()
        await self.db.dispose()

    async def prune(self) -> PruneReport:
        storage = self.settings.storage
        return await prune(
            self.store,
            storage.data_dir / "outputs",
            keep_images_hours=storage.keep_images_hours,
            keep_jobs_days=storage.keep_jobs_days,
        )

    async def _retention_loop(self) -> None:
        while True:
            try:
                report = await self.prune()
                if report.images_deleted or report.jobs_deleted:
                    log.info(
                        "pruned",
                        images=report.images_deleted,
                        jobs=report.jobs_deleted,
                    )
            except Exception:
                log.exception("pruning failed; retrying later")
            await asyncio.sleep(RETENTION_INTERVAL_SECONDS)


async def build_core(
    settings: Settings,
    frontends: Frontends | None = None,
    *,
    clock: Callable[[], float] = time.time,
    with_runner: bool = True,
    provider: Provider | None = None,
) -> Core:
    """Open storage (applying migrations) and, unless ``with_runner`` is False (the
    credits CLI), the provider and the job runner. ``frontends``: the platforms to
    answer for, or a function that builds them from the service."""
    fallbacks: list[Provider] = []
    if with_runner and provider is None:
        provider = build_provider(settings)  # config errors surface before storage work
        fallbacks = build_fallbacks(settings)
    db = await open_database(settings.storage.url, pool_size=settings.storage.pool_size)
    base_limits = limits_from_settings(settings)
    configured = [
        Override(
            scope=o.scope,
            allowance=o.allowance,
            period=o.period,
            paused=o.paused,
            models=tuple(o.models) or None,
        )
        for o in settings.credits.overrides
    ]
    budget_period = settings.credits.budget_period or None
    store = JobQueue(db, base_limits, clock, PolicyBook(base_limits, configured, budget_period))
    metrics = Metrics()
    capabilities = provider.capabilities if provider else capabilities_for(settings)
    models = catalogue_for(settings, capabilities.cost_per_image)
    doorbell = Doorbell()  # the service rings it for each job queued; the worker hears it
    service = KontextService(
        store,
        capabilities,
        provider_name=settings.provider.name,
        model=settings.provider.model,
        max_input_bytes=settings.images.max_input_bytes,
        metrics=metrics,
        admins=settings.credits.admins,
        platform_admins=settings.credits.platform_admins,
        models=models,
        queued=doorbell if with_runner else None,
        max_total_input_bytes=settings.images.max_total_input_bytes,
        default_language=settings.i18n.default,
        presets=preset_book(settings.presets),
        result_buttons=settings.results.buttons,
        max_variations=settings.jobs.max_variations,
        dashboard_url=settings.dashboard.public_url if settings.dashboard.enabled else "",
    )
    if callable(frontends):
        platforms: Mapping[str, Platform] = {p.platform: p for p in frontends(service)}
    else:
        platforms = dict(frontends or {})
    runner = None
    if with_runner and provider is not None:
        runner = Worker(
            store,
            provider,
            platforms,
            runner_limits(settings),
            settings.storage.data_dir,
            metrics=metrics,
            fallbacks=fallbacks,
            # Without [[models]] every provider serves every job with its own model.
            models=models if settings.models else None,
            doorbell=doorbell,
            webhook_base_url=settings.provider.webhook_base_url,
            default_language=settings.i18n.default,
        )
    ops = None
    if with_runner and settings.ops.enabled:
        ops = OpsServer(settings.ops.host, settings.ops.port, metrics, store)
        if runner is not None:
            ops.add_check("runner", runner.ready)
    webhooks = None
    if runner is not None and settings.provider.webhook_base_url:
        config = settings.provider
        webhooks = WebhookServer(
            config.webhook_host,
            config.webhook_port,
            runner.hint,
            secret=config.webhook_secret.get_secret_value(),
        )
    # The operator's dashboard (bot/dashboard), beside the adapters like the ops endpoint.
    dashboard = None
    if with_runner and settings.dashboard.enabled:
        board = settings.dashboard
        dashboard = DashboardServer(
            board.host, board.port, board.password.get_secret_value(), service, provider
        )
    return Core(
        settings,
        db,
        store,
        service,
        provider,
        runner,
        metrics,
        runner.frontends if runner is not None else platforms,
        ops,
        fallbacks=fallbacks,
        webhooks=webhooks,
        dashboard=dashboard,
    )
