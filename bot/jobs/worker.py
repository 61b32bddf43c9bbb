"""The worker: a bounded pool that takes jobs from the queue and runs their pipeline.

Jobs come from storage, not from memory, so the same loop serves a fresh job, a job
another process queued and a job a crash left behind: the dispatcher claims what it
has room for (woken when a job is queued, and every ``idle_scan_seconds`` for other
processes' jobs and expired leases), a heartbeat renews the leases of the jobs it runs,
and a stop hands unfinished jobs back. What running one job means is
``bot.jobs.pipeline``'s; this module only decides when, how many, and for how long.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import structlog

from bot.chat.platforms import Platform
from bot.credits.models import Catalogue
from bot.domain import Job
from bot.jobs.failover import Failover
from bot.jobs.pipeline import JobPipeline
from bot.jobs.queue import JobQueue
from bot.jobs.runner_limits import RunnerLimits
from bot.providers.base import Provider
from bot.server.metrics import Metrics

log = structlog.get_logger("kontext.runner")


class Doorbell(asyncio.Event):
    """ "A job was queued": rung by the service (``wake``), heard by the dispatcher. Made
    before both (bot.app) and handed to each, so neither is wired to the other later.
    It also carries the service's two other words for the runner, a cancel asked of a
    job (``hint``) and a queued job withdrawn (``withdrawn``), to the worker that
    answers it (the one it was handed to, which says so as it is built)."""

    def __init__(self) -> None:
        super().__init__()
        self._worker: Worker | None = None

    def wake(self) -> None:
        self.set()

    def answered_by(self, worker: Worker) -> None:
        self._worker = worker

    def hint(self, job_id: str) -> None:
        if self._worker is not None:
            self._worker.hint(job_id)

    def withdrawn(self, job: Job, text: str) -> None:
        if self._worker is not None:
            self._worker.withdrawn(job, text)


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        provider: Provider,
        frontends: Mapping[str, Platform],
        limits: RunnerLimits,
        data_dir: Path,
        *,
        owner: str | None = None,
        metrics: Metrics | None = None,
        fallbacks: Sequence[Provider] = (),
        models: Catalogue | None = None,
        doorbell: Doorbell | None = None,
        webhook_base_url: str = "",
        default_language: str = "en",
    ) -> None:
        """``frontends``: every platform this process answers for, complete when the
        worker is built (bot.app builds the adapters first); the worker and the pipeline
        share one read-only view of it. ``webhook_base_url``: where providers' webhooks
        reach this process ("" for none: polling only)."""
        self.queue = queue
        self.metrics = metrics or Metrics()
        self.frontends: Mapping[str, Platform] = MappingProxyType(dict(frontends))
        self.owner = owner or f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.pipeline = JobPipeline(
            queue,
            Failover(queue, provider, fallbacks, models),
            self.frontends,
            limits,
            data_dir / "outputs",
            self.metrics,
            webhook_base_url=webhook_base_url,
            default_language=default_language,
            owner=self.owner,
        )
        self._wake = doorbell or Doorbell()
        self._wake.answered_by(self)
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._finished: dict[str, asyncio.Event] = {}
        self._stopping = False
        self._hurry = asyncio.Event()
        self._notices: set[asyncio.Task[None]] = set()

    @property
    def limits(self) -> RunnerLimits:
        return self.pipeline.limits

    def set_limits(self, limits: RunnerLimits) -> None:
        """The one way to change the runner's limits at run time, applied everywhere at
        once: the pipeline's (timeouts, the poller's bounds, image caps, retention, how
        many prepare at once) and the dispatcher's (concurrency, leases, idle scans),
        which is woken to claim up to a raised ``max_concurrent`` now."""
        self.pipeline.set_limits(limits)
        self._wake.set()

    @property
    def webhook_base_url(self) -> str:
        """Where providers' webhooks reach this process ("" for none: polling only)."""
        return self.pipeline.webhook_base_url

    # -- lifecycle ------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self.pipeline.output_dir.mkdir(parents=True, exist_ok=True)
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="kontext-dispatch")
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="kontext-lease")
        log.info("runner started", owner=self.owner, platforms=sorted(self.frontends))

    def hint(self, job_id: str) -> None:
        """A provider's webhook says this job may be done: poll it now. A hint can beat
        the job's own first wait (fast providers), so it is kept for a job this runner
        is running; hints for other jobs are dropped."""
        if job_id in self._workers:
            self.pipeline.hint(job_id)

    def withdrawn(self, job: Job, text: str) -> None:
        """A queued job was canceled (bot.jobs.cancellation): its status message is taken
        down and the requester told, in the background, so the canceller's own answer
        is not held up by the platform."""
        frontend = self.frontends.get(job.user.platform)
        if frontend is None:
            return
        task = asyncio.create_task(self._tell_withdrawn(frontend, job, text))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _tell_withdrawn(self, frontend: Platform, job: Job, text: str) -> None:
        if job.group_id is not None:
            # A variation: named in its group's message, which it may be the last to end.
            try:
                await self.pipeline.group_finished(job, log.bind(job_id=job.id))
            except Exception:
                log.exception("could not finish the group of a canceled job", job_id=job.id)
            return
        try:
            await frontend.reply_for(job).fail(job, text)
        except Exception:
            log.exception("could not tell the requester about the cancel", job_id=job.id)

    def hurry(self) -> None:
        """End the grace period of a ``stop`` now (a second signal)."""
        self._hurry.set()

    async def ready(self) -> bool:
        """For ``/readyz``: the dispatcher is alive (it dies only with the process)."""
        return self._dispatcher is not None and not self._dispatcher.done()

    async def stop(self, grace: float = 0.0) -> None:
        """Stop taking jobs, give running ones ``grace`` seconds, then hand the rest back.

        Jobs cut off here keep their recorded progress; releasing their leases lets the
        next start resume them at once.
        """
        self._stopping = True
        self._wake.set()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        if self._workers and grace > 0:
            log.info("waiting for running jobs", jobs=len(self._workers), grace=grace)
            deadline = time.monotonic() + grace
            hurry = asyncio.create_task(self._hurry.wait())
            while self._workers and not self._hurry.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await asyncio.wait(
                    [*self._workers.values(), hurry],
                    timeout=remaining,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            hurry.cancel()
        for task in list(self._workers.values()):
            task.cancel()
        for task in list(self._workers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._notices:  # cancel notices under way: a platform call each, let them end
            await asyncio.wait(list(self._notices), timeout=5.0)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self.queue.release_leases(self.owner)
        log.info("runner stopped", owner=self.owner)

    @property
    def active_jobs(self) -> int:
        return len(self._workers)

    async def wait_for(self, job_id: str) -> Job:
        """Wait until the job is terminal (the console front end and tests; callers bound
        the wait with ``asyncio.timeout``). Storage is re-read at least every second
        because another process may be the one finishing the job."""
        while True:
            job = await self.queue.get(job_id)
            if job is None:
                raise KeyError(job_id)
            if job.state.terminal:
                return job
            event = self._finished.setdefault(job_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=1.0)

    # -- dispatch -------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.limits.max_concurrent - len(self._workers)
            try:
                claimed = await self.queue.claim(
                    self.owner,
                    self.frontends.keys(),
                    free,
                    self.limits.lease_seconds,
                )
            except Exception:
                log.exception("claiming jobs failed; retrying")
                claimed = []
            for job in claimed:
                task = asyncio.create_task(self._run(job), name=f"kontext-job-{job.id}")
                self._workers[job.id] = task
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.limits.idle_scan_seconds)

    async def _heartbeat_loop(self) -> None:
        interval = self.limits.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.queue.renew_leases(self.owner, self.limits.lease_seconds)
            except Exception:
                log.exception("renewing job leases failed")

    async def _run(self, job: Job) -> None:
        bound = log.bind(job_id=job.id, user=str(job.user), platform=job.user.platform)
        try:
            await self.pipeline.run(job, bound)
        except asyncio.CancelledError:
            bound.info("job interrupted; it resumes on the next start")
            raise
        finally:
            self._workers.pop(job.id, None)
            self._finished.setdefault(job.id, asyncio.Event()).set()
            # Room for another job (or a held one to come back): look at once.
            self._wake.set()
