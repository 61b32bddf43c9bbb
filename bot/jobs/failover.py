"""Which provider a job goes to, and what happens when the provider says "not now".

``Failover`` holds the operator's providers in order (the primary, then the fallbacks)
and sends one job's create down that list: a provider that certainly did not create the
work (it refused outright) hands the job to the next one; a create whose outcome is
unknown (``maybe_created``) never goes anywhere else, since it could run, and be
billed, twice. Every step is recorded in the queue before or right after it is taken
(the provider the job switched to, ``submit_started_at``, the prediction id), which is
what lets a restart resume the job with the provider that has it.

``hold_delay`` is the one retry decision for a create that no provider took: provider
back-pressure (429, "too many active tasks") is the provider saying "later", not "no",
so a job young enough to finish within its timeout is held in the queue and retried
after the delay; anything else fails (and is refunded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from bot.chat import texts
from bot.credits.model_profiles import ModelProfile, shipped_profile
from bot.credits.models import Catalogue
from bot.domain import Job
from bot.errors import ProviderUnavailable
from bot.jobs.queue import JobQueue
from bot.providers.base import InputImage, PredictionStatus, Provider, ProviderRequest

# The longest a held job waits, whatever the provider's Retry-After says.
MAX_HOLD_SECONDS = 60.0


class Failover:
    def __init__(
        self,
        queue: JobQueue,
        primary: Provider,
        fallbacks: Sequence[Provider],
        models: Catalogue | None = None,
    ) -> None:
        self.queue = queue
        self.primary = primary
        # The primary first, then the operator's fallbacks, in order.
        self.providers: list[Provider] = [primary, *fallbacks]
        # The named models (bot.credits.models): which provider serves a job's model, under
        # which id. None: every provider serves every job with its own ``model``.
        self.models = models

    def model_id(self, job: Job, provider: Provider) -> str | None:
        """The id of the job's model at ``provider``, or None: it does not serve it."""
        model = self.models.get(job.model_name) if self.models is not None else None
        if model is None:
            # No catalogue, or a model the operator has since removed: the job keeps
            # the id it was stored with where it is, other providers use their own.
            return job.model if provider.name == job.provider else provider.model
        return model.id_for(provider.name)

    def provider_for(self, job: Job) -> Provider:
        """The provider that has (or will get) this job: the one its record names."""
        for provider in self.providers:
            if provider.name == job.provider:
                return provider
        return self.primary

    def candidates(self, job: Job) -> list[Provider]:
        """The providers to try for this job's create, in order: from the one its record
        names (a job resumed after a failover stays with the later provider) onward."""
        providers = self.providers
        later = providers[providers.index(self.provider_for(job)) :]
        # Failover keeps the model: a provider that does not serve it is skipped, and so
        # is one whose profile does not take the job (a 3-image job never goes to a
        # one-image provider).
        return [p for p in later if self.model_id(job, p) is not None and self.takes(job, p)]

    def profile(self, job: Job, provider: Provider) -> ModelProfile:
        model = self.models.get(job.model_name) if self.models is not None else None
        if model is not None and model.id_for(provider.name) is not None:
            return model.profile(provider.name)
        return shipped_profile(provider.name, self.model_id(job, provider) or provider.model)

    def takes(self, job: Job, provider: Provider) -> bool:
        options = job.options
        return self.profile(job, provider).takes(
            images=len(job.attachments),
            ratio=options.aspect_ratio,
            safety=options.safety,
            fmt=options.output_format,
            res=options.resolution,
        )

    async def submit(
        self,
        job: Job,
        images: tuple[InputImage, ...],
        webhook_url: Callable[[Provider], str | None],
        log: structlog.typing.FilteringBoundLogger,
    ) -> tuple[PredictionStatus, Provider]:
        """Create the job's prediction with the first provider that takes it, and record
        which one did. Raises the last provider's ``ProviderUnavailable`` when none did,
        or the first one whose create may have happened."""
        candidates = self.candidates(job)
        if not candidates:
            serving = [p for p in self.providers if self.model_id(job, p) is not None]
            raise ProviderUnavailable(
                texts.NO_PROVIDER_TAKES
                if serving
                else "No configured image service offers this model now. Nothing was charged.",
                detail=f"model {job.model_name!r}, {len(job.attachments)} images",
            )
        for position, candidate in enumerate(candidates):
            model_id = self.model_id(job, candidate) or candidate.model
            if candidate.name != job.provider or model_id != job.model:
                await self.queue.switch_provider(job.id, candidate.name, model_id)
                if position > 0:
                    log.warning("failing over", provider=candidate.name)
            await self.queue.mark_submit_started(job.id)
            request = ProviderRequest(
                prompt=job.prompt,
                options=job.options,
                images=images,
                webhook_url=webhook_url(candidate),
                model=model_id,
                profile=self.profile(job, candidate),
            )
            try:
                status = await candidate.submit(request, idempotency_key=job.id)
            except ProviderUnavailable as exc:
                if exc.maybe_created or position == len(candidates) - 1:
                    raise
                # The create certainly did not happen here: the next provider may take it.
                await self.queue.clear_submit_started(job.id)
                continue
            del request, images  # the inputs are not held while the provider works
            await self.queue.record_prediction(job.id, status.id)
            log.info(
                "submitted",
                provider=candidate.name,
                prediction_id=status.id,
                state=status.state.value,
            )
            return status, candidate
        raise AssertionError("unreachable: the last candidate raises")  # pragma: no cover


def hold_delay(
    exc: ProviderUnavailable, *, age: float, hold_seconds: float, job_timeout: float
) -> float | None:
    """Hold the job and retry its create after the returned delay (seconds), or None:
    fail it and refund. ``age`` is how long ago the job was created; ``hold_seconds``
    the wait when the provider gave no Retry-After."""
    if not exc.retryable:
        return None
    delay = min(max(exc.retry_after or hold_seconds, 1.0), MAX_HOLD_SECONDS)
    if age + delay >= job_timeout:
        return None
    return delay
