"""What each provider documents its models to take, as the fakes enforce it.

A fake refuses what the real service documents it refuses, not only what the bot
happens to send (DESIGN.md, testing doctrine): a FLUX.2 create with ``input_image``,
more images than the model takes, a safety value out of the model's range, Kontext
with two images where only one is documented. Each rule cites its page; the bot's own
reading of the same pages is bot/credits/model_profiles.py, written separately on purpose so
that a mistake there shows up as a refusal here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def family(model: str | None) -> str:
    name = (model or "").rsplit("/", 1)[-1].lower()
    if name.startswith("flux-2-"):
        return "flux2"
    if name.startswith("flux-kontext-"):
        return "kontext"
    if name == "real-esrgan":
        return "upscale"
    return "other"


def _flux2_most(model: str | None, flex: int, pro: int) -> int:
    return flex if (model or "").endswith("flux-2-flex") else pro


def coretoday_refusal(
    model: str | None, file_fields: Sequence[str], inputs: Mapping[str, Any]
) -> str | None:
    """core.today. FLUX.2 [pro]: https://api.core.today/v1/models/black-forest-labs/flux-2-pro/llms.txt
    "input_images (array) ... Maximum 8 images", "safety_tolerance ... (Range: min: 1,
    max: 5)"; FLUX.2 [flex]: https://console.core.today/en/docs/models/black-forest-labs/flux-2-flex
    "input_images ... (max 10)", output_format png/jpg/webp. FLUX.1 Kontext's pages
    document one ``input_image``."""
    kind = family(model)
    if kind == "flux2":
        if "file:input_image" in file_fields or "input_image" in inputs:
            return "input_image is not a parameter of this model; use input_images"
        count = sum(1 for f in file_fields if f == "file:input_images")
        images = inputs.get("input_images")
        count += len(images) if isinstance(images, list) else 0
        most = _flux2_most(model, 10, 8)
        if count > most:
            return f"input_images: at most {most} images"
        safety = inputs.get("safety_tolerance")
        if safety is not None and not (isinstance(safety, int) and 1 <= safety <= 5):
            return "safety_tolerance must be between 1 and 5"
        fmt = inputs.get("output_format")
        if fmt is not None and fmt not in ("png", "jpg", "webp"):
            return "output_format must be one of png, jpg, webp"
    elif kind == "kontext":
        if "file:input_images" in file_fields or "input_images" in inputs:
            return "input_images is not a parameter of this model; use input_image"
        if len(file_fields) > 1:
            return "this model takes one input_image"
        fmt = inputs.get("output_format")
        if fmt is not None and fmt not in ("png", "jpg"):
            return "output_format must be png or jpg"
    return None


def bfl_refusal(endpoint: str, body: Mapping[str, Any]) -> str | None:
    """BFL. Kontext [pro]/[max]: https://docs.bfl.ml/api-reference/models/edit-or-create-an-image-with-flux-kontext-pro
    ``input_image``, ``input_image_2`` … ``input_image_4``, ``safety_tolerance`` 0-6,
    ``aspect_ratio``. FLUX.2: https://docs.bfl.ml/flux_2/flux2_image_editing "up to 8
    via API" (``input_image`` … ``input_image_8``), ``width``/``height`` multiples of 32
    instead of a ratio, ``safety_tolerance`` 0-5."""
    kind = family(endpoint)
    numbered = [k for k in body if k.startswith("input_image_")]
    most = 8 if kind == "flux2" else 4
    for key in numbered:
        suffix = key.removeprefix("input_image_")
        if not suffix.isdigit() or not 2 <= int(suffix) <= most:
            return f"{key} is not a parameter of this endpoint"
    safety = body.get("safety_tolerance")
    top = 5 if kind == "flux2" else 6
    if safety is not None and not (isinstance(safety, int) and 0 <= safety <= top):
        return f"safety_tolerance must be between 0 and {top}"
    if kind == "flux2":
        if "aspect_ratio" in body:
            return "aspect_ratio is not a parameter of this endpoint; give width and height"
        for side in ("width", "height"):
            value = body.get(side)
            if value is not None and (not isinstance(value, int) or value % 32 or value < 64):
                return f"{side} must be a multiple of 32, at least 64"
    return None


def replicate_refusal(model: str, inputs: Mapping[str, Any]) -> str | None:
    """Replicate. ``black-forest-labs/flux-2-pro``: https://replicate.com/black-forest-labs/flux-2-pro/api
    ``input_images`` (array), ``safety_tolerance`` "Min: 1 Max: 6" on its page;
    ``flux-kontext-pro``: one ``input_image``."""
    kind = family(model)
    if kind == "upscale":
        return real_esrgan_refusal(inputs)
    if kind == "flux2":
        if "input_image" in inputs:
            return "input_image: Additional property is not allowed (use input_images)"
        images = inputs.get("input_images")
        most = _flux2_most(model, 10, 8)
        if isinstance(images, list) and len(images) > most:
            return f"input_images: at most {most} items"
        safety = inputs.get("safety_tolerance")
        if safety is not None and not (isinstance(safety, int) and 1 <= safety <= 6):
            return "safety_tolerance: must be between 1 and 6"
    elif kind == "kontext" and "input_images" in inputs:
        return "input_images: Additional property is not allowed"
    return None


# ``nightmareai/real-esrgan``'s input schema (https://replicate.com/nightmareai/real-esrgan/api):
# ``image`` (file, required), ``scale`` (number, "minimum: 0, maximum: 10", default 4),
# ``face_enhance`` (boolean, default false); nothing else.
REAL_ESRGAN_INPUTS = frozenset({"image", "scale", "face_enhance"})


def real_esrgan_refusal(inputs: Mapping[str, Any]) -> str | None:
    """What real-esrgan's schema refuses, worded as Replicate's validation errors."""
    for key in inputs:
        if key not in REAL_ESRGAN_INPUTS:
            return f"{key}: Additional property is not allowed"
    image = inputs.get("image")
    if not isinstance(image, str) or not image:
        return "image is required"
    scale = inputs.get("scale", 4)
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        return "scale: Invalid type. Expected: number"
    if not 0 <= scale <= 10:
        return (
            "scale: Must be less than or equal to 10"
            if scale > 10
            else ("scale: Must be greater than or equal to 0")
        )
    if not isinstance(inputs.get("face_enhance", False), bool):
        return "face_enhance: Invalid type. Expected: boolean"
    return None
