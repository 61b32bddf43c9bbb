"""The job runner: a bounded pool of workers that turns queued jobs into delivered images.

Jobs come from storage, not from memory, so the same code path serves a fresh job, a
job another process queued and a job a crash left behind. Each step that matters after
a crash is recorded before it is taken (``submit_started_at`` before the create call,
the prediction id right after it, the output file before delivery), which is what lets
a restart resume a job without submitting it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from bot.domain import EditResult, Frontend, Job, JobState, Reply
from bot.errors import (
    DeliveryImpossible,
    ErrorKind,
    InternalError,
    KontextError,
    ModerationError,
    ProviderUnavailable,
)
from bot.images import inspect_output_image, validate_input_image
from bot.jobstore import JobStore
from bot.metrics import Metrics
from bot.polling import PollPlanner
from bot.providers.base import (
    InputImage,
    PredictionState,
    PredictionStatus,
    Provider,
    ProviderRequest,
)

log = structlog.get_logger("kontext.runner")


@dataclass(frozen=True)
class RunnerLimits:
    max_concurrent: int = 8
    job_timeout: float = 300.0
    lease_seconds: float = 60.0
    poll_initial: float = 2.0
    poll_max: float = 5.0
    delivery_attempts: int = 3
    delivery_backoff: float = 0.5
    keep_images_hours: float = 0.0
    # How long a job waits after the provider's 429 when it gives no Retry-After.
    hold_seconds: float = 5.0
    max_input_bytes: int = 20_000_000
    max_input_pixels: int = 20_000_000
    max_output_bytes: int = 50_000_000
    # How often the dispatcher looks for work it was not woken for (other processes'
    # jobs, expired leases).
    idle_scan_seconds: float = 1.0
    # Jobs downloading, validating and uploading their inputs at the same time.
    max_preparing: int = 8


class _Held(Exception):
    """The job went back in the queue; this run of it ends without an outcome."""


def failure_message(exc: KontextError, job_id: str) -> str:
    """What the user reads when a job fails after its credits were reserved."""
    refunded = "Your credits were refunded."
    if exc.kind == ErrorKind.INTERNAL:
        return (
            f"Something went wrong on the bot's side (job {job_id}). {refunded} "
            "An operator can look the job up in the logs."
        )
    return f"{exc.user_message} {refunded}"


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        provider: Provider,
        frontends: Mapping[str, Frontend],
        limits: RunnerLimits,
        data_dir: Path,
        *,
        owner: str | None = None,
        metrics: Metrics | None = None,
        fallbacks: Sequence[Provider] = (),
    ) -> None:
        self.store = store
        self.metrics = metrics or Metrics()
        self.poller = PollPlanner(
            initial=limits.poll_initial,
            floor=min(0.25, limits.poll_initial),
            cap=limits.poll_max,
        )
        self.provider = provider
        # The primary first, then the operator's fallbacks, in order.
        self.providers: list[Provider] = [provider, *fallbacks]
        self.frontends = dict(frontends)
        self.limits = limits
        self.output_dir = data_dir / "outputs"
        # With image retention on, delivered results stay for ``bot.retention`` to prune.
        self.keep_outputs = limits.keep_images_hours > 0
        self.owner = owner or f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._finished: dict[str, asyncio.Event] = {}
        self._stopping = False
        self._hurry = asyncio.Event()
        self._hints: dict[str, asyncio.Event] = {}
        self._preparing = asyncio.Semaphore(limits.max_preparing)
        self.webhook_base_url = ""

    # -- lifecycle ------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="kontext-dispatch")
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="kontext-lease")
        log.info("runner started", owner=self.owner, platforms=sorted(self.frontends))

    def hint(self, job_id: str) -> None:
        """A provider's webhook says this job may be done: poll it now. A hint can beat
        the job's own first wait (fast providers), so it is kept for a job this runner
        is running; hints for other jobs are dropped."""
        if job_id in self._workers:
            self._hints.setdefault(job_id, asyncio.Event()).set()

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
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self.store.release_leases(self.owner)
        log.info("runner stopped", owner=self.owner)

    @property
    def active_jobs(self) -> int:
        return len(self._workers)

    async def wait_for(self, job_id: str) -> Job:
        """Wait until the job is terminal (the console front end and tests; callers bound
        the wait with ``asyncio.timeout``). Storage is re-read at least every second
        because another process may be the one finishing the job."""
        while True:
            job = await self.store.get(job_id)
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
                claimed = await self.store.claim(
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
                await self.store.renew_leases(self.owner, self.limits.lease_seconds)
            except Exception:
                log.exception("renewing job leases failed")

    async def _run(self, job: Job) -> None:
        bound = log.bind(job_id=job.id, user=str(job.user), platform=job.user.platform)
        try:
            await self._execute(job, bound)
        except asyncio.CancelledError:
            bound.info("job interrupted; it resumes on the next start")
            raise
        finally:
            self._workers.pop(job.id, None)
            self._hints.pop(job.id, None)
            self._finished.setdefault(job.id, asyncio.Event()).set()
            self._wake.set()

    # -- one job --------------------------------------------------------------------

    async def _execute(self, job: Job, bound: structlog.typing.FilteringBoundLogger) -> None:
        reply = self.frontends[job.user.platform].reply_for(job)
        started = time.monotonic()
        try:
            # Bounds the provider's part (submit, wait, download); a resumed job gets a
            # fresh budget, so a crash never shortens a user's chance to get the image.
            async with asyncio.timeout(self.limits.job_timeout):
                if job.state == JobState.DELIVERING and job.output_path:
                    await self._deliver(job, reply, started, bound)
                    return
                status, provider = await self._submit_or_resume(job, reply, bound)
                bound = bound.bind(prediction_id=status.id)
                # What the store now says of the job, without reading it back.
                job = replace(
                    job,
                    prediction_id=status.id,
                    provider=provider.name,
                    model=provider.model,
                    submit_started=True,
                )
                final = await self._wait_until_done(job, status, provider)
                output_path, meta = await self._download(job, final, provider)
                balance = await self.store.mark_delivering(
                    job.id, str(output_path), meta, user=job.user
                )
            if balance is None:  # finished elsewhere meanwhile: go by what is stored
                job = await self._refresh(job)
            else:  # what was just written, without reading it back
                job = replace(
                    job,
                    state=JobState.DELIVERING,
                    output_path=str(output_path),
                    extra=dict(meta),
                )
            await self._deliver(job, reply, started, bound, balance)
        except _Held:
            bound.info("provider busy; job back in the queue")
            self._wake.set()
        except TimeoutError:
            await self._cancel_at_provider(job)
            await self._fail(
                job,
                reply,
                ProviderUnavailable(
                    f"The image service took longer than {self.limits.job_timeout:.0f} seconds,"
                    " so the edit was canceled."
                ),
                bound,
            )
        except KontextError as exc:
            await self._fail(job, reply, exc, bound)
        except Exception as exc:
            bound.exception("job failed with an internal error")
            await self._fail(job, reply, InternalError("internal error", detail=repr(exc)), bound)

    async def _refresh(self, job: Job) -> Job:
        fresh = await self.store.get(job.id)
        return fresh or job

    def provider_for(self, job: Job) -> Provider:
        """The provider that has (or will get) this job: the one its record names."""
        for provider in self.providers:
            if provider.name == job.provider:
                return provider
        return self.provider

    async def _submit_or_resume(
        self, job: Job, reply: Reply, bound: structlog.typing.FilteringBoundLogger
    ) -> tuple[PredictionStatus, Provider]:
        provider = self.provider_for(job)
        if job.prediction_id:
            bound.info("resuming submitted job", prediction_id=job.prediction_id)
            return await provider.status(job.prediction_id), provider
        if job.submit_started:
            # The create may or may not have reached the provider before the crash;
            # submitting again could run (and bill) it twice.
            raise ProviderUnavailable(
                "The bot restarted while sending your edit, so it was stopped to avoid "
                "running it twice. Please try again."
            )
        await reply.progress(job, "editing")
        # Inputs live in memory only from their download to the provider's answer, and
        # only for a few jobs at a time: a burst of many jobs must not hold all their
        # images at once (1,000 jobs x 1 MB peaked over 1 GB before this bound).
        async with self._preparing:
            images = await self._fetch_inputs(job, provider)
            return await self._create(job, images, provider, reply, bound)

    async def _create(
        self,
        job: Job,
        images: tuple[InputImage, ...],
        provider: Provider,
        reply: Reply,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> tuple[PredictionStatus, Provider]:
        candidates = self.providers[self.providers.index(provider) :]
        for position, candidate in enumerate(candidates):
            if candidate is not provider:
                await self.store.switch_provider(job.id, candidate.name, candidate.model)
                bound.warning("failing over", provider=candidate.name)
            await self.store.mark_submit_started(job.id)
            request = ProviderRequest(
                prompt=job.prompt,
                options=job.options,
                images=images,
                webhook_url=self._webhook_url(candidate, job),
            )
            try:
                status = await candidate.submit(request, idempotency_key=job.id)
            except ProviderUnavailable as exc:
                last = position == len(candidates) - 1
                if exc.maybe_created or last:
                    if exc.retryable and await self._hold(job, exc, reply):
                        raise _Held from None
                    raise
                # The create certainly did not happen here: the next provider may take it.
                await self.store.clear_submit_started(job.id)
                continue
            del request, images  # the inputs are not held while the provider works
            await self.store.record_prediction(job.id, status.id)
            bound.info(
                "submitted",
                provider=candidate.name,
                prediction_id=status.id,
                state=status.state.value,
            )
            return status, candidate
        raise AssertionError("unreachable: the last candidate raises")  # pragma: no cover

    def _webhook_url(self, provider: Provider, job: Job) -> str | None:
        if not self.webhook_base_url:
            return None
        return f"{self.webhook_base_url.rstrip('/')}/webhooks/{provider.name}/{job.id}"

    async def _fetch_inputs(self, job: Job, provider: Provider) -> tuple[InputImage, ...]:
        frontend = self.frontends[job.user.platform]
        images: list[InputImage] = []
        for source in job.attachments:
            attachment = frontend.attachment_for(source)
            data = await attachment.fetch(self.limits.max_input_bytes)
            images.append(
                await asyncio.to_thread(
                    validate_input_image,
                    data,
                    filename=source.name,
                    max_bytes=self.limits.max_input_bytes,
                    max_pixels=self.limits.max_input_pixels,
                    accepted_formats=provider.capabilities.input_formats,
                )
            )
        return tuple(images)

    async def _hold(self, job: Job, exc: ProviderUnavailable, reply: Reply) -> bool:
        """Back-pressure (429: too many active tasks) is the provider saying "later", not
        "no": the job goes back in line instead of failing, as long as it is young
        enough to finish within the job timeout."""
        age = self.store.clock() - job.created_at
        delay = min(max(exc.retry_after or self.limits.hold_seconds, 1.0), 60.0)
        if age + delay >= self.limits.job_timeout:
            return False
        if not await self.store.requeue(job.id, delay):
            return False
        self.metrics.errors.labels("held").inc()
        await reply.progress(job, "waiting for the image service")
        return True

    async def _wait_until_done(
        self, job: Job, status: PredictionStatus, provider: Provider
    ) -> PredictionStatus:
        started = time.monotonic()
        polls = 0
        pending_at = 0.0  # the create's answer saw it running
        model = provider.model
        hint = self._hints.setdefault(job.id, asyncio.Event())
        try:
            while not status.state.terminal:
                elapsed = time.monotonic() - started
                delay = self.poller.next_delay(model, elapsed, polls)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(hint.wait(), timeout=delay)
                hint.clear()
                polls += 1
                asked_at = time.monotonic() - started
                status = await provider.status(status.id)
                if not status.state.terminal:
                    pending_at = asked_at
        finally:
            self._hints.pop(job.id, None)
            self.metrics.status_requests.labels(provider.name).observe(polls)
        duration = time.monotonic() - started
        if polls:  # a resumed or at-once answer says nothing about how long jobs take
            self.poller.record(model, duration, pending_at=pending_at)
        self.metrics.provider_latency.labels(provider.name, model).observe(duration)
        if status.state == PredictionState.SUCCEEDED:
            if not status.output_urls:
                raise ProviderUnavailable(
                    "The image service finished without an image.", detail=f"{status}"
                )
            return status
        if status.state == PredictionState.MODERATED:
            raise ModerationError(
                "The image service's safety filter refused this edit. Try a different "
                "prompt or image.",
                detail=status.error,
            )
        if status.state == PredictionState.CANCELED:
            raise ProviderUnavailable("The edit was canceled at the image service.")
        raise ProviderUnavailable(
            "The image service could not finish this edit.", detail=status.error
        )

    async def _download(
        self, job: Job, status: PredictionStatus, provider: Provider
    ) -> tuple[Path, dict[str, object]]:
        data = await provider.fetch_output(
            status.output_urls[0], max_bytes=self.limits.max_output_bytes
        )
        info = await asyncio.to_thread(
            inspect_output_image,
            data,
            max_bytes=self.limits.max_output_bytes,
            max_pixels=self.limits.max_input_pixels * 4,
        )
        path = self.output_dir / f"{job.id}.{info.extension}"
        await asyncio.to_thread(_write_atomically, path, data)
        return path, {
            "content_type": info.content_type,
            "width": info.width,
            "height": info.height,
            "seed": job.options.seed,
        }

    async def _deliver(
        self,
        job: Job,
        reply: Reply,
        started: float,
        bound: structlog.typing.FilteringBoundLogger,
        balance: int | None = None,
    ) -> None:
        assert job.output_path is not None
        path = Path(job.output_path)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            await self._fail(
                job,
                reply,
                InternalError("output missing", detail=f"{path} is gone"),
                bound,
            )
            return
        meta = job.extra
        # The balance the user will have once this job is charged; the charge itself
        # adds nothing (the credits left at reservation).
        status_balance = balance if balance is not None else await self.store.balance(job.user)
        result = EditResult(
            job=job,
            image=data,
            content_type=str(meta.get("content_type", "image/png")),
            filename=f"kontext-{job.id[:8]}{path.suffix}",
            width=int(meta.get("width", 0)),
            height=int(meta.get("height", 0)),
            balance_after=status_balance,
            elapsed_seconds=max(0.0, self.store.clock() - job.created_at),
        )
        last_error: Exception | None = None
        for attempt in range(self.limits.delivery_attempts):
            try:
                await reply.deliver(result)
                break
            except DeliveryImpossible as exc:  # final: no retry, refunded
                await self._fail(job, reply, exc, bound)
                return
            except Exception as exc:
                last_error = exc
                bound.warning("delivery failed", attempt=attempt + 1, error=repr(exc))
                if attempt + 1 < self.limits.delivery_attempts:
                    await asyncio.sleep(min(2**attempt, 20) * self.limits.delivery_backoff)
        else:
            await self._fail(
                job,
                reply,
                ProviderUnavailable(
                    "The edited image could not be posted here.", detail=repr(last_error)
                ),
                bound,
            )
            return
        balance = await self.store.succeed(job)
        if balance is not None:
            self.metrics.jobs_finished.labels(JobState.SUCCEEDED.value).inc()
            self.metrics.credits_charged.inc(job.cost)
        if not self.keep_outputs:
            await asyncio.to_thread(_remove_quietly, path)
        bound.info("job succeeded", balance=balance, elapsed=round(time.monotonic() - started, 3))

    async def _fail(
        self,
        job: Job,
        reply: Reply,
        exc: KontextError,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> None:
        message = failure_message(exc, job.id)
        balance = await self.store.fail(job, error_kind=exc.kind.value, message=str(exc))
        if balance is None:
            return  # someone else already finished this job
        self.metrics.jobs_finished.labels(JobState.FAILED.value).inc()
        self.metrics.credits_refunded.inc(job.cost)
        self.metrics.errors.labels(exc.kind.value).inc()
        level = bound.warning if exc.kind != ErrorKind.INTERNAL else bound.error
        level("job failed and was refunded", error_kind=exc.kind.value, detail=str(exc))
        if job.output_path:
            await asyncio.to_thread(_remove_quietly, Path(job.output_path))
        try:
            await reply.fail(job, message)
        except Exception:
            bound.exception("could not tell the user about the failure")

    async def _cancel_at_provider(self, job: Job) -> None:
        fresh = await self._refresh(job)
        if fresh.prediction_id:
            with contextlib.suppress(Exception):
                await self.provider_for(fresh).cancel(fresh.prediction_id)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".part")
    temporary.write_bytes(data)
    os.replace(temporary, path)


__all__ = ["JobRunner", "RunnerLimits", "failure_message"]
