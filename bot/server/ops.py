"""The operations endpoint: ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` says only that the process answers (a liveness probe restarts a hung
process); ``/readyz`` checks what serving needs: the database and each component that
registered a check (adapters report whether they are connected). A failed readiness
check names itself in the answer, never a secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from bot.jobstore import JobStore
from bot.server.local_server import LocalServer
from bot.server.metrics import Metrics

ReadinessCheck = Callable[[], Awaitable[bool]]
CHECK_TIMEOUT_SECONDS = 3.0

log = structlog.get_logger("kontext.ops")


class OpsServer(LocalServer):
    label = "ops endpoint"

    def __init__(self, host: str, port: int, metrics: Metrics, store: JobStore) -> None:
        super().__init__(host, port)
        self.metrics = metrics
        self.store = store
        self.checks: dict[str, ReadinessCheck] = {"storage": self._storage_ready}

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _storage_ready(self) -> bool:
        async with self.store.db.transaction() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        results: dict[str, bool] = {}
        for name, check in self.checks.items():
            try:
                results[name] = bool(await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS))
            except Exception as exc:  # any failure means "not ready", with the reason logged
                log.warning("readiness check failed", check=name, error=type(exc).__name__)
                results[name] = False
        ready = all(results.values())
        return web.json_response(
            {"status": "ready" if ready else "not ready", "checks": results},
            status=200 if ready else 503,
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        try:
            counts = await self.store.counts_by_state()
        except Exception as exc:  # still serve the process's own metrics
            log.warning("job counts unavailable for metrics", error=type(exc).__name__)
        else:
            for state, count in counts.items():
                self.metrics.jobs.labels(state).set(count)
            self.metrics.queue_depth.set(counts.get("queued", 0))
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
