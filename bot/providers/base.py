"""The provider interface: submit, status, cancel, fetch output.

A provider turns HTTP answers into ``PredictionStatus`` and raises the error classes of
``bot.errors`` (``ModerationError``, ``ProviderUnavailable``, ``UserInputError``); the
job runner decides about refunds and retries from the error kind alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from bot.credits.model_profiles import ModelProfile, shipped_profile
from bot.domain import ASPECT_RATIOS, EditOptions


class PredictionState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    MODERATED = "moderated"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self not in (PredictionState.PENDING, PredictionState.RUNNING)


@dataclass(frozen=True)
class PredictionStatus:
    """One observation of a prediction at the provider."""

    id: str
    state: PredictionState
    output_urls: tuple[str, ...] = ()
    error: str | None = None
    # Where a running job is, for providers that say so (ComfyUI's sampler steps):
    # (done, of), e.g. (12, 28); the pipeline shows it as "step 12 of 28".
    progress: tuple[int, int] | None = None


@dataclass(frozen=True)
class ProviderCapabilities:
    """What the provider and model accept; the parser and image checks read these."""

    input_formats: frozenset[str] = frozenset({"jpeg", "png", "webp", "gif"})
    max_input_bytes: int = 20_000_000
    max_input_images: int = 1
    aspect_ratios: tuple[str, ...] = ASPECT_RATIOS
    output_formats: tuple[str, ...] = ("png", "jpg")
    max_prompt_chars: int = 2000
    supports_text_to_image: bool = True
    cost_per_image: int = 120


@dataclass(frozen=True)
class InputImage:
    """A validated, normalised input image (see ``bot.images``)."""

    data: bytes
    content_type: str
    filename: str


@dataclass(frozen=True)
class ProviderRequest:
    prompt: str
    options: EditOptions
    images: tuple[InputImage, ...] = field(default_factory=tuple)
    # Where the provider may announce the end of the job (a hint to poll; optional).
    webhook_url: str | None = None
    # The model id for this provider of the job's named model (bot.credits.models); None: the
    # provider's own configured ``model``.
    model: str | None = None
    # What the model takes at this provider and how its images travel
    # (bot.credits.model_profiles); None: the shipped profile of ``model``.
    profile: ModelProfile | None = None

    def profile_at(self, provider: str, default_model: str) -> ModelProfile:
        """The profile the create is built from at ``provider``."""
        if self.profile is not None:
            return self.profile
        return shipped_profile(provider, self.model or default_model)


class Provider(Protocol):
    name: str
    model: str
    capabilities: ProviderCapabilities
    # Whether it calls ``ProviderRequest.webhook_url`` when a job ends: then the runner
    # waits for that call and polls only as a safety net (bot.jobs.pipeline).
    sends_webhooks: bool

    async def submit(self, request: ProviderRequest, *, idempotency_key: str) -> PredictionStatus:
        """Create a prediction. Must not be retried by the provider when the outcome of
        the create is unknown (answer lost): it raises ``ProviderUnavailable`` with
        ``retryable=False`` so the job is refunded instead of run twice."""

    async def status(self, prediction_id: str) -> PredictionStatus:
        """Read the current state; safe to retry."""

    async def cancel(self, prediction_id: str) -> None:
        """Best effort: ask the provider to stop; never raises for a finished job."""

    async def fetch_output(self, url: str, *, max_bytes: int) -> bytes:
        """Download a result at once (provider URLs expire)."""

    async def aclose(self) -> None:
        """Release the shared HTTP client."""


class WebhookRefused(Exception):
    """A webhook that fails its provider's verification; ``str`` is the short reason
    answered with the 401 (never anything secret)."""


# A provider's webhook check: (secret, headers, body, now) -> the delivery's id, by which a
# redelivery of the same notice is recognised ("" when the provider gives none); raises
# ``WebhookRefused`` for a delivery that is not authentic or not fresh.
WebhookVerifier = Callable[[str, Mapping[str, str], bytes, float], str]
