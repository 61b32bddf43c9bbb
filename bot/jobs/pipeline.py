"""One job's way from the queue to the user: prepare input, submit, wait, fetch, deliver.

``bot.jobs.worker`` decides when a job runs; this module is what running it means. Each step
that matters after a crash is recorded before it is taken (``submit_started_at`` before
the create call, the prediction id right after it, the output file before delivery),
which is what lets a restart resume a job without submitting it twice: a job claimed
in ``delivering`` with its file is only delivered, one with a prediction id is only
waited for. Every way a job can end settles its credits: charged once delivered,
refunded (and the user told why) on any failure, or held back in the queue when the
provider asks for time (``bot.jobs.failover.hold_delay``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import structlog

from bot import i18n
from bot.chat import texts
from bot.chat.platforms import Platform
from bot.chat.texts import (
    CANCEL_TOO_LATE,
    CANCELED_AT_PROVIDER,
    canceled_text,
    inputs_too_large,
)
from bot.domain import EditResult, GroupMember, GroupResult, Job, JobState, Reply
from bot.errors import (
    DeliveryDeferred,
    DeliveryImpossible,
    ErrorKind,
    InternalError,
    KontextError,
    ModerationError,
    ProviderUnavailable,
    UserInputError,
)
from bot.i18n import _
from bot.images import inspect_output_image, pixel_size, validate_input_image
from bot.jobs.cancellation import CANCELED_KIND, cancel_requested
from bot.jobs.failover import Failover, hold_delay
from bot.jobs.polling import PollPlanner
from bot.jobs.progress import StepRelay, show_progress
from bot.jobs.queue import Charged, JobQueue, Refunded
from bot.jobs.runner_limits import RunnerLimits
from bot.providers.base import InputImage, PredictionState, PredictionStatus, Provider
from bot.server.metrics import Metrics

Log = structlog.typing.FilteringBoundLogger
Posted = TypeVar("Posted")


class _Held(Exception):
    """The job went back in the queue; this run of it ends without an outcome."""


class _Canceled(Exception):
    """The provider stopped the job after a cancel was asked (bot.jobs.cancellation)."""


async def show_told(reply: Reply, text: str, bound: Log) -> None:
    """A word for the requester that must not fail the job (it is delivered)."""
    try:
        await reply.tell(text)
    except Exception:
        bound.exception("could not tell the requester")


class JobPipeline:
    def __init__(
        self,
        queue: JobQueue,
        failover: Failover,
        frontends: Mapping[str, Platform],
        limits: RunnerLimits,
        output_dir: Path,
        metrics: Metrics,
        *,
        webhook_base_url: str = "",
        default_language: str = i18n.SOURCE,
        owner: str = "",
    ) -> None:
        """``owner``: the runner's lease name, taken for the member of a group of
        variations that this runner posts (``JobQueue.group_turn``)."""
        self.owner = owner
        self.queue = queue
        # ``[i18n] default``: for a job stored before jobs kept their language.
        self.default_language = default_language
        self.failover = failover
        self.frontends = frontends  # read-only, the worker's view (complete when built)
        self.output_dir = output_dir
        self.metrics = metrics
        self.webhook_base_url = webhook_base_url
        self.poller = PollPlanner(
            initial=limits.poll_initial,
            floor=min(0.25, limits.poll_initial),
            cap=limits.poll_max,
        )
        self._hints: dict[str, asyncio.Event] = {}
        self._limits = limits
        # Jobs whose provider was asked to stop (bot.jobs.cancellation), while they run here.
        self._cancel_sent: set[str] = set()
        self._preparing = asyncio.Semaphore(limits.max_preparing)

    @property
    def limits(self) -> RunnerLimits:
        return self._limits

    @property
    def keep_outputs(self) -> bool:
        """With image retention on, delivered results stay for ``bot.jobs.retention`` to prune."""
        return self._limits.keep_images_hours > 0

    def set_limits(self, limits: RunnerLimits) -> None:
        """Apply new limits to everything derived from them (``Worker.set_limits``).
        The poller keeps what it learnt of the models' durations and takes the new
        bounds; a changed ``max_preparing`` is a new gate for the jobs that come to it
        (those preparing now finish under the old one)."""
        self.poller.bound(
            initial=limits.poll_initial, floor=min(0.25, limits.poll_initial), cap=limits.poll_max
        )
        if limits.max_preparing != self._limits.max_preparing:
            self._preparing = asyncio.Semaphore(limits.max_preparing)
        self._limits = limits

    def hint(self, job_id: str) -> None:
        """Poll this job now (a webhook said it may be done); kept until the wait."""
        self._hints.setdefault(job_id, asyncio.Event()).set()

    async def run(self, job: Job, bound: Log) -> None:
        """Take the job as far as it goes: delivered, failed, or held in the queue."""
        try:
            # Every word of the job (progress, result, failure) in its request's language.
            with i18n.using(job.locale or self.default_language):
                await self._execute(job, bound)
        finally:
            self._hints.pop(job.id, None)
            self._cancel_sent.discard(job.id)

    async def _execute(self, job: Job, bound: Log) -> None:
        reply = self.frontends[job.user.platform].reply_for(job)
        started = time.monotonic()
        # Bounds the provider's part (submit, wait, download); a resumed job gets a
        # fresh budget, so a crash never shortens a user's chance to get the image.
        deadline = asyncio.timeout(self.limits.job_timeout)
        try:
            async with deadline:
                if job.state == JobState.DELIVERING and job.output_path:
                    if job.group_id is not None:  # a variation: its group decides
                        await self.group_finished(job, bound)
                        return
                    # A restart: the last run may have posted the image and died before
                    # recording it, so the reply looks before it posts.
                    await self._deliver(job, reply, started, bound, maybe_delivered=True)
                    return
                status, provider = await self._submit_or_resume(job, reply, bound)
                bound = bound.bind(prediction_id=status.id)
                # What the store now says of the job, without reading it back.
                job = replace(
                    job,
                    prediction_id=status.id,
                    provider=provider.name,
                    model=self.failover.model_id(job, provider) or provider.model,
                    submit_started=True,
                )
                final = await self._wait_until_done(job, status, provider, reply)
                output_path, meta = await self._download(job, final, provider)
                balance = await self.queue.mark_delivering(
                    job.id, str(output_path), meta, user=job.user
                )
            if balance is None:  # finished elsewhere meanwhile: go by what is stored
                job = await self._refresh(job)
            else:  # what was just written, without reading it back
                job = replace(
                    job,
                    state=JobState.DELIVERING,
                    output_path=str(output_path),
                    output_meta=dict(meta),
                )
            if job.group_id is not None:
                # A variation: posted with its siblings once the last one ends.
                await self.group_finished(job, bound)
                return
            await self._deliver(job, reply, started, bound, balance)
            if job.id in self._cancel_sent:  # the result won the race with a cancel
                await show_told(reply, _(CANCEL_TOO_LATE), bound)
        except _Canceled:
            await self._canceled(job, reply, bound)
        except _Held:
            bound.info("provider busy; job back in the queue")
        except TimeoutError as exc:
            if not deadline.expired():
                # Some call inside timed out, not the job: say so, not "took too long".
                await self._fail_internal(job, reply, exc, bound, "a call timed out")
                return
            await self._cancel_at_provider(job)
            await self._fail(
                job,
                reply,
                ProviderUnavailable(
                    _(
                        "The image service took longer than {seconds} seconds, so the edit "
                        "was canceled."
                    ).format(seconds=i18n.number(round(self.limits.job_timeout))),
                    detail=f"job timeout: {self.limits.job_timeout:.0f} s",
                ),
                bound,
            )
        except KontextError as exc:
            await self._fail(job, reply, exc, bound)
        except Exception as exc:
            await self._fail_internal(job, reply, exc, bound, "internal error")

    async def _fail_internal(
        self, job: Job, reply: Reply, exc: Exception, bound: Log, what: str
    ) -> None:
        """The bot's own failure (a bug, a call timed out): traceback logged, refunded."""
        bound.exception("job failed with an internal error", reason=what)
        await self._fail(job, reply, InternalError(what, detail=repr(exc)), bound)

    async def _refresh(self, job: Job) -> Job:
        fresh = await self.queue.get(job.id)
        return fresh or job

    # -- prepare and submit ---------------------------------------------------------

    async def _submit_or_resume(
        self, job: Job, reply: Reply, bound: Log
    ) -> tuple[PredictionStatus, Provider]:
        provider = self.failover.provider_for(job)
        if job.prediction_id:
            bound.info("resuming submitted job", prediction_id=job.prediction_id)
            return await provider.status(job.prediction_id), provider
        if job.submit_started:
            # The create may or may not have reached the provider before the crash;
            # submitting again could run (and bill) it twice.
            raise ProviderUnavailable(
                _(
                    "The bot restarted while sending your edit, so it was stopped to avoid "
                    "running it twice. Please try again."
                ),
                detail="restarted during submit: not submitted again",
            )
        await show_progress(reply, job, "editing")
        # Inputs live in memory only from their download to the provider's answer, and
        # only for a few jobs at a time: a burst of many jobs must not hold all their
        # images at once (1,000 jobs x 1 MB peaked over 1 GB before this bound).
        async with self._preparing:
            images = await self._fetch_inputs(job, provider)
            if job.cancel_requested or await cancel_requested(self.queue, job.id):
                # Canceled after a runner took it, before anything reached the provider:
                # nothing to stop there, refunded now (bot.jobs.cancellation).
                raise _Canceled
            try:
                return await self.failover.submit(
                    job, images, lambda p: self._webhook_url(p, job), bound
                )
            except ProviderUnavailable as exc:
                if await self._hold(job, exc, reply):
                    raise _Held from None
                raise

    def _webhook_url(self, provider: Provider, job: Job) -> str | None:
        if not self.webhook_base_url:
            return None
        return f"{self.webhook_base_url.rstrip('/')}/webhooks/{provider.name}/{job.id}"

    async def _fetch_inputs(self, job: Job, provider: Provider) -> tuple[InputImage, ...]:
        frontend = self.frontends[job.user.platform]
        images: list[InputImage] = []
        total = 0
        for source in job.attachments:
            attachment = frontend.attachment_for(source)
            data = await attachment.fetch(self.limits.max_input_bytes)
            # Each input is capped on its own and the inputs together (issue 26).
            total += len(data)
            if total > self.limits.max_total_input_bytes:
                raise UserInputError(
                    inputs_too_large(total, self.limits.max_total_input_bytes),
                    detail=f"inputs total {total} bytes, limit {self.limits.max_total_input_bytes}",
                )
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
        if job.options.upscale is not None and images:
            self._check_upscaled_size(images[0], job.options.upscale)
        return tuple(images)

    @property
    def max_output_pixels(self) -> int:
        """The largest result the runner downloads and inspects."""
        return self.limits.max_input_pixels * 4

    def _check_upscaled_size(self, image: InputImage, scale: int) -> None:
        """An upscale whose result would be over the output cap is refused before the
        provider runs (and is paid): afterwards it could only fail, refunded to the user
        but not to the operator."""
        size = pixel_size(image.data)
        if size is None:
            return
        width, height = size
        if width * height * scale * scale > self.max_output_pixels:
            raise UserInputError(
                texts.upscale_too_large(width, height, scale, self.max_output_pixels)
            )

    def _output_cap(self, job: Job) -> int:
        """The bytes a result may have: ``max_output_bytes``, or for an upscale what its
        pixel cap can take as a PNG (three bytes a pixel, and headroom): its results
        are many times an edit's, and the provider has been paid for them."""
        cap = self.limits.max_output_bytes
        if job.options.upscale is not None:
            cap = max(cap, self.max_output_pixels * 3 + 1_000_000)
        return cap

    async def _hold(self, job: Job, exc: ProviderUnavailable, reply: Reply) -> bool:
        """Put the job back in line when ``hold_delay`` says so; False: fail it."""
        delay = hold_delay(
            exc,
            age=self.queue.clock() - job.created_at,
            hold_seconds=self.limits.hold_seconds,
            job_timeout=self.limits.job_timeout,
        )
        if delay is None or not await self.queue.requeue(job.id, delay):
            return False
        self.metrics.errors.labels("held").inc()
        await show_progress(reply, job, "waiting for the image service")
        return True

    # -- wait and fetch -------------------------------------------------------------

    async def _wait_until_done(
        self, job: Job, status: PredictionStatus, provider: Provider, reply: Reply
    ) -> PredictionStatus:
        started = time.monotonic()
        steps = StepRelay(reply, job, self.limits.progress_interval)
        polls = 0
        pending_at = 0.0  # the create's answer saw it running
        model = job.model
        hint = self._hints.setdefault(job.id, asyncio.Event())
        # Webhook first (bot.jobs.polling): the provider will call back when it is done.
        webhook = provider.sends_webhooks and bool(self.webhook_base_url)
        try:
            while not status.state.terminal:
                elapsed = time.monotonic() - started
                delay = self.poller.next_delay(model, elapsed, polls, webhook=webhook)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(hint.wait(), timeout=delay)
                hint.clear()
                if job.id not in self._cancel_sent and await cancel_requested(self.queue, job.id):
                    # Asked by the requester or an admin (bot.jobs.cancellation): tell the
                    # provider, then go on polling for what it says it became.
                    self._cancel_sent.add(job.id)
                    await provider.cancel(status.id)
                polls += 1
                asked_at = time.monotonic() - started
                status = await provider.status(status.id)
                if not status.state.terminal:
                    pending_at = asked_at
                    await steps.show(status.progress)
        finally:
            self._hints.pop(job.id, None)
            self.metrics.status_requests.labels(provider.name).observe(polls)
        duration = time.monotonic() - started
        if polls:  # a resumed or at-once answer says nothing about how long jobs take
            self.poller.record(model, duration, pending_at=pending_at)
        self.metrics.provider_latency.labels(provider.name, model).observe(duration)
        if job.id in self._cancel_sent and status.state != PredictionState.SUCCEEDED:
            raise _Canceled
        if status.state == PredictionState.SUCCEEDED:
            if not status.output_urls:
                raise ProviderUnavailable(
                    _("The image service finished without an image."), detail=f"{status}"
                )
            return status
        if status.state == PredictionState.MODERATED:
            raise ModerationError(
                _(
                    "The image service's safety filter refused this edit. Try a different "
                    "prompt or image."
                ),
                detail=status.error or "moderated by the provider",
            )
        if status.state == PredictionState.CANCELED:
            raise ProviderUnavailable(
                _("The edit was canceled at the image service."),
                detail="canceled at the provider",
            )
        raise ProviderUnavailable(
            _("The image service could not finish this edit."),
            detail=status.error or f"prediction {status.state.value}",
        )

    async def _download(
        self, job: Job, status: PredictionStatus, provider: Provider
    ) -> tuple[Path, dict[str, object]]:
        cap = self._output_cap(job)
        data = await provider.fetch_output(status.output_urls[0], max_bytes=cap)
        info = await asyncio.to_thread(
            inspect_output_image, data, max_bytes=cap, max_pixels=self.max_output_pixels
        )
        path = self.output_dir / f"{job.id}.{info.extension}"
        await asyncio.to_thread(_write_atomically, path, data)
        return path, {
            "content_type": info.content_type,
            "width": info.width,
            "height": info.height,
            "seed": job.options.seed,
        }

    # -- deliver, or fail -----------------------------------------------------------

    async def _deliver(
        self,
        job: Job,
        reply: Reply,
        started: float,
        bound: Log,
        balance: int | None = None,
        *,
        maybe_delivered: bool = False,
    ) -> None:
        assert job.output_path is not None
        path = Path(job.output_path)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            missing = InternalError("output missing", detail=f"{path} is gone")
            await self._fail(job, reply, missing, bound)
            return
        # The balance the user will have once this job is charged; the charge itself
        # adds nothing (the credits left at reservation).
        status_balance = balance if balance is not None else await self.queue.balance(job.user)
        result = self._kept_result(job, data, path, status_balance)
        try:
            delivered = await self._post(
                job,
                reply,
                bound,
                lambda again: reply.deliver(result, maybe_delivered=maybe_delivered or again),
            )
        except KontextError as exc:
            await self._fail(job, reply, exc, bound)
            return
        charged = await self.queue.mark_succeeded(job, delivered)
        if charged:
            self.metrics.jobs_finished.labels(JobState.SUCCEEDED.value).inc()
            self.metrics.credits_charged.inc(job.cost)
        if not self.keep_outputs:
            await asyncio.to_thread(_remove_quietly, path)
        bound.info(
            "job succeeded",
            balance=status_balance if charged else None,
            elapsed=round(time.monotonic() - started, 3),
        )

    async def _post(
        self,
        job: Job,
        reply: Reply,
        bound: Log,
        attempt: Callable[[bool], Awaitable[Posted]],
    ) -> Posted:
        """Post the paid result (``attempt``, told whether an earlier one may have
        reached the platform): what the platform says "not yet" to (a rate limit) is
        tried again after its ``Retry-After`` until ``delivery_deadline``; any other
        failure ``delivery_attempts`` times; what it says can never happen is final.
        Raises the ``KontextError`` to fail the job with."""
        loop = asyncio.get_running_loop()
        waiting_until: float | None = None  # set while a rate limit holds the result
        failures = 0
        last_error: Exception | None = None
        try:
            while True:
                try:
                    # A failed attempt may have reached the platform before it failed.
                    return await attempt(failures > 0)
                except DeliveryDeferred as deferred:
                    self.metrics.platform_rate_limited.labels(
                        deferred.platform, deferred.method
                    ).inc()
                    if waiting_until is None:
                        waiting_until = loop.time() + self.limits.delivery_deadline
                        await self._waiting(job, reply, deferred.platform, bound)
                    pause = max(deferred.retry_after, self.limits.delivery_backoff)
                    if loop.time() + pause > waiting_until:
                        raise DeliveryImpossible(
                            texts.rate_limited_too_long(
                                deferred.platform, self.limits.delivery_deadline
                            ),
                            detail=str(deferred),
                        ) from deferred
                    bound.info("delivery waits for the platform's rate limit", wait=pause)
                    await asyncio.sleep(pause)
                except KontextError:
                    raise  # the platform says the result can never be posted there
                except Exception as exc:
                    failures += 1
                    last_error = exc
                    bound.warning("delivery failed", attempt=failures, error=repr(exc))
                    if failures >= self.limits.delivery_attempts:
                        raise DeliveryImpossible(
                            _("The edited image could not be posted here."),
                            detail=repr(last_error),
                        ) from exc
                    await asyncio.sleep(min(2 ** (failures - 1), 20) * self.limits.delivery_backoff)
        finally:
            if waiting_until is not None:
                self.metrics.deliveries_waiting.labels(job.user.platform).dec()
                with contextlib.suppress(Exception):
                    await self.queue.mark_waiting(job, None)

    async def _waiting(self, job: Job, reply: Reply, platform: str, bound: Log) -> None:
        """A result held back by a rate limit: visible on the dashboard, in the metrics
        and, where a status line can be posted, to the user."""
        bound.warning("delivery held back by the platform's rate limit", platform=platform)
        self.metrics.deliveries_waiting.labels(job.user.platform).inc()
        await self.queue.mark_waiting(job, platform)
        await show_progress(reply, job, texts.waiting_for_platform(platform))

    async def _fail(self, job: Job, reply: Reply, exc: KontextError, bound: Log) -> None:
        message = texts.failure_message(exc, job.id)
        # A variation's reason is read back for its group's message: the user's words
        # (the detail is in the log line below).
        stored = exc.user_message if job.group_id is not None else str(exc)
        if not await self.queue.mark_failed(job, error_kind=exc.kind.value, message=stored):
            return  # someone else already finished this job
        self.metrics.jobs_finished.labels(JobState.FAILED.value).inc()
        self.metrics.credits_refunded.inc(job.cost)
        self.metrics.errors.labels(exc.kind.value).inc()
        level = bound.warning if exc.kind != ErrorKind.INTERNAL else bound.error
        level("job failed and was refunded", error_kind=exc.kind.value, detail=str(exc))
        if job.output_path:
            await asyncio.to_thread(_remove_quietly, Path(job.output_path))
        if job.group_id is not None:
            # A variation: named, with its refund, in its group's message.
            await self.group_finished(job, bound)
            return
        try:
            await reply.fail(job, message)
        except Exception:
            bound.exception("could not tell the user about the failure")

    async def _canceled(self, job: Job, reply: Reply, bound: Log) -> None:
        """The provider stopped the job as asked: canceled and refunded, once."""
        outcome = Refunded(CANCELED_KIND, CANCELED_AT_PROVIDER, JobState.CANCELED)
        if not await self.queue.finish(job, outcome):
            return  # someone else already finished this job
        balance = await self.queue.balance(job.user)
        self.metrics.jobs_finished.labels(JobState.CANCELED.value).inc()
        self.metrics.credits_refunded.inc(job.cost)
        bound.info("job canceled at the provider and refunded")
        if job.group_id is not None:
            await self.group_finished(job, bound)
            return
        try:
            await reply.fail(job, canceled_text(balance))
        except Exception:
            bound.exception("could not tell the user about the cancel")

    # -- variations (``--n``, issue 27): a group posted together, once -----------------------

    async def group_finished(self, job: Job, bound: Log) -> None:
        """A member of a group ended (its image kept on disk, or failed and refunded):
        the last one to end posts the group (``JobQueue.group_turn`` decides, once);
        the others wait, their outputs kept until the post. Spoken in the group's
        language (every member keeps its request's, ``jobs.locale``), also when a
        canceled member ends its group from the worker."""
        with i18n.using(job.locale or self.default_language):
            await self._group_finished(job, bound)

    async def _group_finished(self, job: Job, bound: Log) -> None:
        turn = await self.queue.group_turn(job, self.owner, self.limits.lease_seconds)
        if not turn.post:
            bound.info("variation waits for its siblings", group=job.group_id)
            return
        if turn.poster is None:
            await self._group_all_failed(turn.members, bound)
            return
        await self._post_group(turn.poster, turn.members, bound, resumed=turn.resumed)

    def _failure_text(self, member: Job) -> str:
        if member.error_kind == ErrorKind.INTERNAL.value:
            return texts.failure_message(InternalError("internal"), member.id)
        return member.error_message or _("It failed.")

    async def _group_all_failed(self, members: tuple[Job, ...], bound: Log) -> None:
        group = GroupResult(
            tuple(GroupMember(m, failure=self._failure_text(m)) for m in members),
            balance_after=await self.queue.balance(members[0].user),
            elapsed_seconds=max(0.0, self.queue.clock() - members[0].created_at),
        )
        first = members[0]
        try:
            await (
                self.frontends[first.user.platform]
                .reply_for(first)
                .fail(first, texts.group_all_failed(group))
            )
        except Exception:
            bound.exception("could not tell the user that every variation failed")

    async def _post_group(
        self, poster: Job, members: tuple[Job, ...], bound: Log, *, resumed: bool
    ) -> None:
        """Post every image of the group in one message and settle each member: the
        ones posted charged, those whose image is gone refunded, in one transaction
        (``finish_many``). A post that can never be made refunds them all."""
        bound = bound.bind(group=poster.group_id)
        reply = self.frontends[poster.user.platform].reply_for(poster)
        entries: list[GroupMember] = []
        lost: list[tuple[Job, Refunded]] = []
        balance = await self.queue.balance(poster.user)
        for member in members:
            if member.state != JobState.DELIVERING:
                entries.append(GroupMember(member, failure=self._failure_text(member)))
                continue
            result = await self._group_result(member, balance)
            if result is None:
                missing = InternalError("output missing", detail=f"{member.output_path} is gone")
                text = texts.failure_message(missing, member.id)
                lost.append((member, Refunded(missing.kind.value, str(missing))))
                entries.append(GroupMember(member, failure=text))
            else:
                entries.append(GroupMember(member, result=result))
        # What the refunds of lost images give back is the user's after the post.
        returned = sum(job.cost for job, _outcome in lost)
        group = GroupResult(
            tuple(entries),
            balance_after=balance + returned,
            elapsed_seconds=max(0.0, self.queue.clock() - poster.created_at),
        )
        posted = [m.job for m in entries if m.result is not None]
        try:
            if not posted:
                raise DeliveryImpossible(_(texts.GROUP_IMAGES_GONE))
            where = await self._post(
                poster,
                reply,
                bound,
                lambda again: reply.deliver_group(group, maybe_delivered=resumed or again),
            )
        except KontextError as exc:
            refunds = [(job, Refunded(exc.kind.value, str(exc))) for job in posted]
            done = await self.queue.finish_many([*lost, *refunds])
            self._count_refunds([*lost, *refunds], done)
            bound.warning("group could not be posted and was refunded", detail=str(exc))
            try:
                await reply.fail(poster, texts.failure_message(exc, poster.id))
            except Exception:
                bound.exception("could not tell the user about the failure")
            self._remove_outputs(members)
            return
        charges = [(job, Charged((where or {}).get(job.id))) for job in posted]
        done = await self.queue.finish_many([*lost, *charges])
        self._count_refunds(lost, done[: len(lost)])
        for (job, _outcome), charged in zip(charges, done[len(lost) :], strict=True):
            if charged:
                self.metrics.jobs_finished.labels(JobState.SUCCEEDED.value).inc()
                self.metrics.credits_charged.inc(job.cost)
        if not self.keep_outputs:
            self._remove_outputs(members)
        bound.info("group posted", images=len(posted), failed=len(members) - len(posted))

    def _count_refunds(self, refunds: list[tuple[Job, Refunded]], done: list[bool]) -> None:
        for (job, outcome), refunded in zip(refunds, done, strict=False):
            if refunded:
                self.metrics.jobs_finished.labels(JobState.FAILED.value).inc()
                self.metrics.credits_refunded.inc(job.cost)
                self.metrics.errors.labels(outcome.error_kind).inc()

    def _remove_outputs(self, members: tuple[Job, ...]) -> None:
        for member in members:
            if member.output_path:
                _remove_quietly(Path(member.output_path))

    async def _group_result(self, job: Job, balance: int) -> EditResult | None:
        """A finished variation's image as kept on disk; None when it is gone."""
        assert job.output_path is not None
        path = Path(job.output_path)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        return self._kept_result(job, data, path, balance, f"-{job.group_index}")

    def _kept_result(
        self, job: Job, data: bytes, path: Path, balance: int, marker: str = ""
    ) -> EditResult:
        """A finished job's image as kept on disk, described as its output check stored
        it; ``marker`` tells a group's variations apart in their file names."""
        meta = job.output_meta
        return EditResult(
            job=job,
            image=data,
            content_type=str(meta.get("content_type", "image/png")),
            filename=f"kontext-{job.id[:8]}{marker}{path.suffix}",
            width=int(meta.get("width", 0)),
            height=int(meta.get("height", 0)),
            balance_after=balance,
            elapsed_seconds=max(0.0, self.queue.clock() - job.created_at),
        )

    async def _cancel_at_provider(self, job: Job) -> None:
        fresh = await self._refresh(job)
        if fresh.prediction_id:
            with contextlib.suppress(Exception):
                await self.failover.provider_for(fresh).cancel(fresh.prediction_id)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".part")
    temporary.write_bytes(data)
    os.replace(temporary, path)
