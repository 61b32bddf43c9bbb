"""Replicate: ``POST /v1/models/{owner}/{name}/predictions`` with ``Prefer: wait``.

With ``Prefer: wait=N`` Replicate may hold the create for up to N seconds and answer a
finished prediction at once, saving every poll for a fast job; otherwise it answers
``starting`` and the job is polled. Errors are problem+json (``detail`` carries the
reason). Output URLs are deleted after an hour; the runner downloads at once.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from bot.errors import ProviderUnavailable
from bot.providers.base import PredictionState, PredictionStatus, ProviderRequest
from bot.providers.http import UNAVAILABLE, HttpProvider

PREFER_WAIT_SECONDS = 5
_STATES = {
    "starting": PredictionState.PENDING,
    "processing": PredictionState.RUNNING,
    "succeeded": PredictionState.SUCCEEDED,
    "failed": PredictionState.FAILED,
    "canceled": PredictionState.CANCELED,
    "aborted": PredictionState.CANCELED,
}
_FLAGGED = ("flagged as sensitive", "nsfw", "e005")


def replicate_inputs(request: ProviderRequest) -> dict[str, Any]:
    options = request.options
    inputs: dict[str, Any] = {
        "prompt": request.prompt,
        "output_format": options.output_format,
        "safety_tolerance": options.safety,
        "prompt_upsampling": options.upsample,
    }
    if request.images:
        image = request.images[0]
        encoded = base64.b64encode(image.data).decode("ascii")
        inputs["input_image"] = f"data:{image.content_type};base64,{encoded}"
    if options.aspect_ratio is not None:
        inputs["aspect_ratio"] = options.aspect_ratio
    if options.seed is not None:
        inputs["seed"] = options.seed
    return inputs


def parse_prediction(body: Any) -> PredictionStatus:
    if not isinstance(body, Mapping) or not body.get("id"):
        raise ProviderUnavailable(UNAVAILABLE, detail="prediction answer without id")
    state = _STATES.get(str(body.get("status", "")).lower(), PredictionState.RUNNING)
    error = body.get("error")
    error_text = str(error) if error else None
    flagged = error_text is not None and any(w in error_text.lower() for w in _FLAGGED)
    if state == PredictionState.FAILED and flagged:
        state = PredictionState.MODERATED
    output = body.get("output")
    urls: tuple[str, ...] = ()
    if isinstance(output, str) and output:
        urls = (output,)
    elif isinstance(output, list):
        urls = tuple(item for item in output if isinstance(item, str) and item)
    return PredictionStatus(id=str(body["id"]), state=state, output_urls=urls, error=error_text)


class ReplicateProvider(HttpProvider):
    name = "replicate"

    async def submit(self, request: ProviderRequest, *, idempotency_key: str) -> PredictionStatus:
        body: dict[str, Any] = {"input": replicate_inputs(request)}
        if request.webhook_url:
            body["webhook"] = request.webhook_url
            body["webhook_events_filter"] = ["completed"]
        answer = await self.call(
            "POST",
            f"{self.base_url}/v1/models/{self.model}/predictions",
            create=True,
            headers={**self.auth_headers, "Prefer": f"wait={PREFER_WAIT_SECONDS}"},
            json=body,
        )
        return parse_prediction(answer)

    async def status(self, prediction_id: str) -> PredictionStatus:
        answer = await self.call(
            "GET", f"{self.base_url}/v1/predictions/{prediction_id}", headers=self.auth_headers
        )
        return parse_prediction(answer)

    async def cancel(self, prediction_id: str) -> None:
        await self.best_effort("POST", f"{self.base_url}/v1/predictions/{prediction_id}/cancel")
