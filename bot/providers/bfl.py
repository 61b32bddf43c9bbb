"""Black Forest Labs' own API: ``POST /v1/flux-kontext-pro`` (or ``-max``), then poll.

The create answer names a ``polling_url`` on a regional host; that exact URL is polled
(the id alone is not enough once requests are spread over regions), so it is what the
job stores as its prediction id. The key is only ever sent to the API's own domain.
Results (``result.sample``) are signed delivery URLs that expire within minutes: the
runner downloads them at once, without the key.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

from bot.credits.model_profiles import ModelProfile
from bot.errors import ProviderUnavailable
from bot.i18n import _
from bot.providers.base import PredictionState, PredictionStatus, ProviderRequest
from bot.providers.http import UNAVAILABLE, HttpProvider

_STATES = {
    "pending": PredictionState.PENDING,
    "queued": PredictionState.PENDING,
    "processing": PredictionState.RUNNING,
    "ready": PredictionState.SUCCEEDED,
    "error": PredictionState.FAILED,
    "failed": PredictionState.FAILED,
    "request moderated": PredictionState.MODERATED,
    "content moderated": PredictionState.MODERATED,
    "task not found": PredictionState.FAILED,
}


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port that is not a number
        return None


def endpoint_for(model: str) -> str:
    """``black-forest-labs/flux-kontext-pro`` and ``flux-kontext-pro`` both name the
    ``/v1/flux-kontext-pro`` endpoint."""
    return model.rsplit("/", 1)[-1]


# FLUX.2 at BFL takes a size, not a ratio: ``width``/``height`` multiples of 32 (at most
# 2048 a side in BFL's published schema); without them it follows the first input.
_FLUX2_STEP = 32
_FLUX2_SIDE_MAX = 2048


def image_field(index: int) -> str:
    """BFL's numbered inputs: ``input_image``, ``input_image_2`` … (Kontext up to 4,
    "Experimental Multiref", docs.bfl.ml/api-reference/models/edit-or-create-an-image-
    with-flux-kontext-pro; FLUX.2 up to 8, docs.bfl.ml/flux_2/flux2_image_editing)."""
    return "input_image" if index == 0 else f"input_image_{index + 1}"


def flux2_size(ratio: str, megapixels: int) -> tuple[int, int]:
    """Width and height of ``ratio`` at about ``megapixels``, on BFL's grid."""
    across, down = (int(part) for part in ratio.split(":"))
    pixels = megapixels * 1_000_000
    height = (pixels * down / across) ** 0.5
    width = height * across / down
    scale = min(1.0, _FLUX2_SIDE_MAX / max(width, height))

    def snap(value: float) -> int:
        return max(_FLUX2_STEP * 2, int(value * scale) // _FLUX2_STEP * _FLUX2_STEP)

    return snap(width), snap(height)


def bfl_inputs(request: ProviderRequest, profile: ModelProfile | None = None) -> dict[str, Any]:
    options = request.options
    profile = profile or request.profile_at("bfl", "")
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "output_format": "jpeg" if options.output_format == "jpg" else "png",
        "prompt_upsampling": options.upsample,
        "safety_tolerance": options.safety,
    }
    for index, image in enumerate(request.images):
        body[image_field(index)] = base64.b64encode(image.data).decode("ascii")
    ratio = options.aspect_ratio
    if profile.family == "flux2":
        if ratio is None and not request.images:
            ratio = "1:1"
        if ratio is not None and ratio != "match_input_image":
            body["width"], body["height"] = flux2_size(ratio, options.resolution or 1)
    elif ratio is not None and ratio != "match_input_image":
        # BFL matches the input image when no ratio is given.
        body["aspect_ratio"] = ratio
    if options.seed is not None:
        body["seed"] = options.seed
    if request.webhook_url:
        body["webhook_url"] = request.webhook_url
    return body


class BflProvider(HttpProvider):
    name = "bfl"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"x-key": self._api_key}

    def trusted(self, url: str) -> bool:
        """The API's own host or a regional sibling (api.us1.bfl.ai beside api.bfl.ai),
        with the API's own scheme and port: a plain-http or other-port URL on the same
        name is another service as far as the key is concerned."""
        parts, base_parts = urlsplit(url), urlsplit(self.base_url)
        if parts.scheme != base_parts.scheme or _port(parts) != _port(base_parts):
            return False
        host = parts.hostname or ""
        base = base_parts.hostname or ""
        if host == base:
            return True
        parent = base.split(".", 1)[1] if base.count(".") >= 2 else base
        return not parent.replace(".", "").isdigit() and host.endswith("." + parent)

    def same_origin(self, url: str) -> bool:
        # Delivery URLs live on other hosts of the same domain and must not get the key;
        # only the API host itself (and regional API hosts) do.
        host = urlsplit(url).hostname or ""
        return self.trusted(url) and not host.startswith("delivery")

    async def submit(self, request: ProviderRequest, *, idempotency_key: str) -> PredictionStatus:
        body = await self.call(
            "POST",
            f"{self.base_url}/v1/{endpoint_for(request.model or self.model)}",
            create=True,
            headers={**self.auth_headers, "accept": "application/json"},
            json=bfl_inputs(request, request.profile_at(self.name, self.model)),
        )
        if not isinstance(body, Mapping) or not body.get("id"):
            raise ProviderUnavailable(_(UNAVAILABLE), detail="create answer without id")
        polling_url = body.get("polling_url")
        if isinstance(polling_url, str) and self.trusted(polling_url):
            return PredictionStatus(id=polling_url, state=PredictionState.PENDING)
        return PredictionStatus(id=str(body["id"]), state=PredictionState.PENDING)

    def _polling_url(self, prediction_id: str) -> str:
        if prediction_id.startswith(("http://", "https://")):
            if not self.trusted(prediction_id):
                raise ProviderUnavailable(_(UNAVAILABLE), detail="untrusted polling URL")
            return prediction_id
        return f"{self.base_url}/v1/get_result?{urlencode({'id': prediction_id})}"

    async def status(self, prediction_id: str) -> PredictionStatus:
        body = await self.call("GET", self._polling_url(prediction_id), headers=self.auth_headers)
        if not isinstance(body, Mapping):
            raise ProviderUnavailable(_(UNAVAILABLE), detail="status answer is not an object")
        raw = str(body.get("status", "")).strip().lower()
        state = _STATES.get(raw, PredictionState.RUNNING)
        result = body.get("result")
        urls: tuple[str, ...] = ()
        if isinstance(result, Mapping) and isinstance(result.get("sample"), str):
            urls = (result["sample"],)
        error = None
        if state in (PredictionState.FAILED, PredictionState.MODERATED):
            details = body.get("details") or body.get("error")
            error = f"{body.get('status')}: {details}" if details else str(body.get("status"))
        return PredictionStatus(id=prediction_id, state=state, output_urls=urls, error=error)

    async def cancel(self, prediction_id: str) -> None:
        """BFL documents no way to cancel a task: it finishes and is simply not used."""
        return None

    async def credits(self) -> float:
        """The operator's remaining BFL credits (``GET /v1/credits``)."""
        body = await self.call("GET", f"{self.base_url}/v1/credits", headers=self.auth_headers)
        value = body.get("credits") if isinstance(body, Mapping) else None
        if not isinstance(value, int | float):
            raise ProviderUnavailable(_(UNAVAILABLE), detail="credits answer without credits")
        return float(value)
