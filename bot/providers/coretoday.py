"""core.today: FLUX.1 Kontext through ``/v1/predictions``.

The public docs disagree about the answer's shape, so both are accepted: an
asynchronous ``{id, status: "pending"}`` followed by polling that ends in
``{status: "succeeded", output: [url]}``, and a finished ``{job_id, status:
"completed", result: url}`` right in the create answer.

Retries follow the rule of ``bot.providers.http``: never repeat a create that may have
happened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bot.credits.model_profiles import ImageTransport, ModelProfile
from bot.errors import ProviderUnavailable
from bot.i18n import _
from bot.providers.base import PredictionState, PredictionStatus, ProviderRequest
from bot.providers.http import (
    UNAVAILABLE,
    HttpProvider,
    Retry,
    classify_response,
    parse_retry_after,
)

__all__ = [
    "CoreTodayProvider",
    "Retry",
    "classify_response",
    "parse_prediction",
    "parse_retry_after",
    "provider_inputs",
]

_MODERATION_WORDS = ("nsfw", "moderat", "safety", "flagged", "sensitive", "content policy")
_STATES = {
    "pending": PredictionState.PENDING,
    "queued": PredictionState.PENDING,
    "starting": PredictionState.PENDING,
    "processing": PredictionState.RUNNING,
    "running": PredictionState.RUNNING,
    "in_progress": PredictionState.RUNNING,
    "succeeded": PredictionState.SUCCEEDED,
    "completed": PredictionState.SUCCEEDED,
    "success": PredictionState.SUCCEEDED,
    "failed": PredictionState.FAILED,
    "error": PredictionState.FAILED,
    "moderated": PredictionState.MODERATED,
    "canceled": PredictionState.CANCELED,
    "cancelled": PredictionState.CANCELED,
}


def parse_prediction(body: Any) -> PredictionStatus:
    """Read either answer shape into a ``PredictionStatus``."""
    if not isinstance(body, Mapping):
        raise ProviderUnavailable(_(UNAVAILABLE), detail="prediction answer is not an object")
    prediction_id = body.get("id") or body.get("job_id") or body.get("prediction_id")
    if not prediction_id:
        raise ProviderUnavailable(_(UNAVAILABLE), detail="prediction answer has no id")
    raw_status = str(body.get("status", "")).strip().lower()
    state = _STATES.get(raw_status, PredictionState.RUNNING)
    error = body.get("error")
    error_text = error if isinstance(error, str) else (json.dumps(error) if error else None)
    if state == PredictionState.FAILED and error_text:
        lowered = error_text.lower()
        if any(word in lowered for word in _MODERATION_WORDS):
            state = PredictionState.MODERATED
    urls: list[str] = []
    for key in ("output", "result", "output_url"):
        value = body.get(key)
        if isinstance(value, str) and value:
            urls.append(value)
        elif isinstance(value, list):
            urls.extend(v for v in value if isinstance(v, str) and v)
        elif isinstance(value, Mapping) and isinstance(value.get("sample"), str):
            urls.append(value["sample"])
        if urls:
            break
    return PredictionStatus(
        id=str(prediction_id), state=state, output_urls=tuple(urls), error=error_text
    )


def provider_inputs(request: ProviderRequest) -> dict[str, Any]:
    """The ``input`` object. ``resolution``: "Resolution in megapixels", shown with the
    default "1 MP" on core.today's FLUX.2 pages, so the bot sends ``"2 MP"``."""
    options = request.options
    inputs: dict[str, Any] = {
        "prompt": request.prompt,
        "output_format": options.output_format,
        "prompt_upsampling": options.upsample,
        "safety_tolerance": options.safety,
    }
    if options.aspect_ratio is not None:
        inputs["aspect_ratio"] = options.aspect_ratio
    if options.seed is not None:
        inputs["seed"] = options.seed
    if options.resolution is not None:
        inputs["resolution"] = f"{options.resolution} MP"
    return inputs


def upload_files(
    request: ProviderRequest, profile: ModelProfile
) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The multipart files of ``/v1/predictions/upload``: Kontext's one
    ``file:input_image``; FLUX.2's ``input_images`` array as ``file:input_images``
    repeated, one part per image in order (the first is the one edited). core.today's
    FLUX.2 pages say files for ``input_images`` may be attached directly to the upload
    route but name no spelling for an array; issue 26 reads it as the field repeated."""
    if profile.transport == ImageTransport.MULTIPART:
        field = "file:input_images"
    else:
        field = "file:input_image"
    return [(field, (i.filename, i.data, i.content_type)) for i in request.images]


class CoreTodayProvider(HttpProvider):
    name = "coretoday"

    # -- the Provider interface ------------------------------------------------------

    async def submit(self, request: ProviderRequest, *, idempotency_key: str) -> PredictionStatus:
        inputs = provider_inputs(request)
        headers = {**self.auth_headers, "Idempotency-Key": idempotency_key}
        if request.images:
            files = upload_files(request, request.profile_at(self.name, self.model))
            body = await self.call(
                "POST",
                f"{self.base_url}/v1/predictions/upload",
                create=True,
                headers=headers,
                data={
                    "model": request.model or self.model,
                    "input": json.dumps(inputs),
                    **({"webhook": request.webhook_url} if request.webhook_url else {}),
                },
                files=files,
            )
        else:
            body = await self.call(
                "POST",
                f"{self.base_url}/v1/predictions",
                create=True,
                headers=headers,
                json={
                    "model": request.model or self.model,
                    "input": inputs,
                    **({"webhook": request.webhook_url} if request.webhook_url else {}),
                },
            )
        return parse_prediction(body)

    async def status(self, prediction_id: str) -> PredictionStatus:
        body = await self.call(
            "GET", f"{self.base_url}/v1/predictions/{prediction_id}", headers=self.auth_headers
        )
        return parse_prediction(body)

    async def cancel(self, prediction_id: str) -> None:
        await self.best_effort("DELETE", f"{self.base_url}/v1/predictions/{prediction_id}")
