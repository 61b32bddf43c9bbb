"""Replicate: ``POST /v1/models/{owner}/{name}/predictions`` with ``Prefer: wait``.

With ``Prefer: wait=N`` Replicate may hold the create for up to N seconds and answer a
finished prediction at once, saving every poll for a fast job; otherwise it answers
``starting`` and the job is polled. Errors are problem+json (``detail`` carries the
reason). Output URLs are deleted after an hour; the runner downloads at once.

Webhooks are signed (https://replicate.com/docs/topics/webhooks/verify-webhook):
HMAC-SHA256 over ``webhook-id.webhook-timestamp.body`` under the base64 key after the
``whsec_`` prefix, sent as space-separated ``v1,<base64>`` signatures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import structlog

from bot.credits.model_profiles import ImageTransport, ModelProfile
from bot.errors import ProviderUnavailable
from bot.i18n import _
from bot.providers.base import (
    PredictionState,
    PredictionStatus,
    ProviderRequest,
    WebhookRefused,
)
from bot.providers.http import UNAVAILABLE, HttpProvider

log = structlog.get_logger("kontext.providers.replicate")

PREFER_WAIT_SECONDS = 5
# How far a webhook's timestamp may be from our clock: Replicate sends the timestamp
# "to mitigate replay attacks" (verify-webhook docs); its retries end about a minute
# after the prediction, well inside this window.
WEBHOOK_TOLERANCE_SECONDS = 300
_STATES = {
    "starting": PredictionState.PENDING,
    "processing": PredictionState.RUNNING,
    "succeeded": PredictionState.SUCCEEDED,
    "failed": PredictionState.FAILED,
    "canceled": PredictionState.CANCELED,
    "aborted": PredictionState.CANCELED,
}
_FLAGGED = ("flagged as sensitive", "nsfw", "e005")


def replicate_inputs(
    request: ProviderRequest, profile: ModelProfile | None = None
) -> dict[str, Any]:
    """The ``input`` of a create. FLUX.2 takes ``input_images``, an array of URIs in
    order (https://replicate.com/black-forest-labs/flux-2-pro/api), and ``resolution``
    as "N MP"; FLUX.1 Kontext takes one ``input_image``. Data URIs carry the bytes, as
    Replicate's file-input docs allow for files under 256 kB and our stripped inputs
    mostly are; the create is one request either way."""
    options = request.options
    profile = profile or request.profile_at("replicate", "")
    if profile.upscale is not None:
        return upscale_inputs(request, profile)
    inputs: dict[str, Any] = {
        "prompt": request.prompt,
        "output_format": options.output_format,
        "safety_tolerance": options.safety,
        "prompt_upsampling": options.upsample,
    }
    uris = [
        f"data:{image.content_type};base64,{base64.b64encode(image.data).decode('ascii')}"
        for image in request.images
    ]
    if uris and profile.transport == ImageTransport.ARRAY:
        inputs["input_images"] = uris
    elif uris:
        inputs["input_image"] = uris[0]
    if options.resolution is not None:
        inputs["resolution"] = f"{options.resolution} MP"
    if options.aspect_ratio is not None:
        inputs["aspect_ratio"] = options.aspect_ratio
    if options.seed is not None:
        inputs["seed"] = options.seed
    return inputs


def upscale_inputs(request: ProviderRequest, profile: ModelProfile) -> dict[str, Any]:
    """An upscaler's ``input`` (``nightmareai/real-esrgan``,
    https://replicate.com/nightmareai/real-esrgan/api): ``image``, ``scale`` (a number,
    0-10) and ``face_enhance``, sent false: GFPGAN repaints faces, an edit nobody asked
    for. The prompt and an edit's options are no inputs of that model."""
    assert profile.upscale is not None
    image = request.images[0]
    uri = f"data:{image.content_type};base64,{base64.b64encode(image.data).decode('ascii')}"
    return {
        profile.upscale.image_field: uri,
        profile.upscale.scale_field: request.options.upscale or profile.upscale.default_scale,
        "face_enhance": False,
    }


def parse_prediction(body: Any) -> PredictionStatus:
    if not isinstance(body, Mapping) or not body.get("id"):
        raise ProviderUnavailable(_(UNAVAILABLE), detail="prediction answer without id")
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
        profile = request.profile_at(self.name, self.model)
        body: dict[str, Any] = {"input": replicate_inputs(request, profile)}
        if request.webhook_url:
            body["webhook"] = request.webhook_url
            body["webhook_events_filter"] = ["completed"]
        answer = await self.call(
            "POST",
            f"{self.base_url}/v1/models/{request.model or self.model}/predictions",
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


def replicate_signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The ``v1,<base64>`` signature Replicate sends for this delivery."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_replicate_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, now: float
) -> str:
    """Check a delivery's signature and freshness; its ``webhook-id`` names it.

    Replicate retries a final webhook that got a 4xx or 5xx answer or none ("Retries" in
    https://replicate.com/docs/topics/webhooks/receive-webhook), and ``webhook-id`` "will
    be the same when a webhook is being resent (e.g. retried)" (verify-webhook docs); the
    endpoint uses the id to answer such a redelivery 2xx without acting twice.
    """
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "").split()
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookRefused("missing or bad timestamp") from None
    if abs(now - sent_at) > WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookRefused("stale timestamp")
    try:
        expected = replicate_signature(secret, webhook_id, timestamp, body)
    except (binascii.Error, ValueError):
        log.error("provider.webhook_secret is not a valid whsec_ secret")
        raise WebhookRefused("cannot verify") from None
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        raise WebhookRefused("bad signature")
    return webhook_id
