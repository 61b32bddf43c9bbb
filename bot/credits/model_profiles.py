"""What each model accepts and how its inputs travel, per provider: a model's profile.

The bot once spoke one model's language (one ``input_image``, Kontext's ratios and its
safety rule). FLUX.2 takes up to eight or ten reference images, its own ratios, safety
1-5, webp and a resolution in megapixels, and each provider sends the images its own
way. A profile holds all of that for one (provider, model id); the parser and the
service check a request against the chosen model's profile before anything is reserved,
the failover sends a job only to providers whose profile takes it, and each provider
builds its create request from the profile of the model it is sent.

The rules, each from the provider's public docs (fetched December 2026):

- core.today, FLUX.1 Kontext [pro]/[max]: one ``input_image`` (the model page documents
  a single image), multipart field ``file:input_image`` on ``/v1/predictions/upload``;
  safety 0-6, at most 2 with an image; png/jpg.
- core.today, FLUX.2 [pro]: https://api.core.today/v1/models/black-forest-labs/flux-2-pro/llms.txt
  ``input_images`` (array, "Maximum 8 images"), ``aspect_ratio`` incl.
  ``match_input_image``, ``resolution`` in MP ("up to 4 MP"), ``safety_tolerance``
  "1 is most strict and 5 is most permissive (Range: min: 1, max: 5)", 100 credits.
- core.today, FLUX.2 [flex]: https://console.core.today/en/docs/models/black-forest-labs/flux-2-flex
  ``input_images`` "max 10", ratios 1:1 16:9 9:16 4:3 3:4 match_input_image,
  ``resolution`` default "1 MP", ``output_format`` png/jpg/webp, 200 credits. Files go
  to ``/v1/predictions/upload`` as multipart ("Attach files directly"); the page names
  no field spelling for an array, so the bot repeats ``file:input_images`` once per
  image in order (issue 26's reading of the upload route, as ``file:input_image`` is
  for one image).
- BFL, Kontext [pro]/[max]: https://docs.bfl.ml/api-reference/models/edit-or-create-an-image-with-flux-kontext-pro
  ``input_image``, ``input_image_2`` … ``input_image_4`` ("Experimental Multiref"),
  ``safety_tolerance`` 0-6, ``output_format`` jpeg/png, ratios "between 21:9 and 9:21".
- BFL, FLUX.2: https://docs.bfl.ml/flux_2/flux2_image_editing "up to 8 via API" as
  ``input_image`` … ``input_image_8``; size as ``width``/``height`` (multiples of 32,
  at most 2048 a side in BFL's published schema), safety 0-5 there, but 1-5 is what
  every FLUX.2 seller documents together, so the bot offers 1-5 everywhere; jpeg/png.
- Replicate, ``black-forest-labs/flux-2-pro``: https://replicate.com/black-forest-labs/flux-2-pro/api
  ``input_images`` (array of URIs; data URIs work as for ``input_image``), webp default,
  ``resolution`` "N MP". An older version's page says "Maximum 4 images"; core.today,
  which resells that model from Replicate, documents 8; the bot follows the newer 8.
  FLUX.1 Kontext on Replicate takes one ``input_image``.
- ComfyUI, FLUX.1 Kontext [dev]: the shipped workflow loads one image.

Upscalers (``kind = "upscale"``, issue 27) have an ``UpscaleProfile`` instead of an
edit's options: the field their one image goes in, and the scales ``--upscale`` may ask.

- Replicate, ``nightmareai/real-esrgan``: https://replicate.com/nightmareai/real-esrgan/api
  ``image`` (file), ``scale`` "Factor to scale image by" (number, minimum 0, maximum 10,
  default 4), ``face_enhance`` (boolean, "Run GFPGAN face enhancement along with
  upscaling", default false). The bot offers 2 and 4: a 4x of a 1-2 MP Kontext result
  is already 16-32 MP, larger than any chat platform shows, and sends
  ``face_enhance = false`` (GFPGAN repaints faces, which is an edit, not an upscale).
- ComfyUI: the shipped ``upscale.json`` (``UpscaleModelLoader`` +
  ``ImageUpscaleWithModel``, comfy_extras/nodes_upscale_model.py) runs a 4x model file
  (the model id names it when it is a file name, e.g. ``RealESRGAN_x4plus.pth`` under
  ``models/upscale_models``), then ``ImageScaleBy`` to the asked scale: 2 or 4.
- core.today and BFL document no upscaler (docs/models.md): the config refuses an
  upscale model served by them.

A model id the bot does not know gets ``UNKNOWN``: one image, Kontext's options; the
operator widens it with ``[[models]]`` keys (``max_images``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from bot.domain import ASPECT_RATIOS


class ImageTransport(StrEnum):
    """How a provider receives the job's images."""

    SINGLE = "input_image"  # one field, one image
    NUMBERED = "input_image_N"  # input_image, input_image_2, ... (BFL)
    ARRAY = "input_images"  # one field holding a list (Replicate's JSON)
    MULTIPART = "file:input_images"  # core.today's upload: the file field repeated


FLUX2_RATIOS: tuple[str, ...] = ("match_input_image", "1:1", "16:9", "9:16", "4:3", "3:4")
# BFL's FLUX.2 takes width and height, so any ratio of Kontext's list can be made.
FLUX2_BFL_RATIOS: tuple[str, ...] = ASPECT_RATIOS
RESOLUTIONS_MP: tuple[int, ...] = (1, 2, 4)


@dataclass(frozen=True)
class UpscaleProfile:
    """What an upscaler takes: its one image's field and the scales people may ask."""

    image_field: str
    scales: tuple[int, ...]
    scale_field: str = "scale"

    @property
    def default_scale(self) -> int:
        """The scale a result's Upscale button asks: the smallest (fastest, smallest file)."""
        return self.scales[0]


@dataclass(frozen=True)
class ModelProfile:
    """What one model takes at one provider. ``safety_max_with_image`` None: the same
    range with or without an image (FLUX.2); Kontext allows at most 2 with one."""

    family: str  # "kontext", "flux2", or "unknown"
    transport: ImageTransport
    max_images: int
    aspect_ratios: tuple[str, ...] = ASPECT_RATIOS
    safety_min: int = 0
    safety_max: int = 6
    safety_max_with_image: int | None = 2
    output_formats: tuple[str, ...] = ("png", "jpg")
    resolutions: tuple[int, ...] = ()  # megapixels ``--res`` may ask; empty: none
    text_to_image: bool = True
    max_prompt_chars: int = 2000
    suggested_cost: int | None = None  # credits, for docs/models.md and the defaults
    # Set for an upscaler (``kind = "upscale"``): it takes one image and a scale only.
    upscale: UpscaleProfile | None = None

    def safety_limit(self, has_image: bool) -> int:
        if has_image and self.safety_max_with_image is not None:
            return self.safety_max_with_image
        return self.safety_max

    def takes(
        self, *, images: int, ratio: str | None, safety: int, fmt: str, res: int | None
    ) -> bool:
        """Whether a job of these options and this many images can go to this model at
        this provider (the failover's test; the parser gives the reasons)."""
        if self.upscale is not None:
            return images == 1
        if images > self.max_images or (images == 0 and not self.text_to_image):
            return False
        if ratio is not None and ratio not in self.aspect_ratios:
            return False
        if not self.safety_min <= safety <= self.safety_limit(images > 0):
            return False
        if fmt not in self.output_formats:
            return False
        return res is None or res in self.resolutions


_KONTEXT = ModelProfile(family="kontext", transport=ImageTransport.SINGLE, max_images=1)
_FLUX2 = ModelProfile(
    family="flux2",
    transport=ImageTransport.MULTIPART,
    max_images=8,
    aspect_ratios=FLUX2_RATIOS,
    safety_min=1,
    safety_max=5,
    safety_max_with_image=None,
    output_formats=("png", "jpg", "webp"),
    resolutions=RESOLUTIONS_MP,
    # FLUX.2 reads long prompts (32K tokens at BFL); chat messages stay far shorter.
    max_prompt_chars=10_000,
)
UNKNOWN = replace(_KONTEXT, family="unknown")

# (provider, short model id) -> profile. The short id is the part after the owner:
# ``black-forest-labs/flux-2-pro`` and ``flux-2-pro`` are the same model.
SHIPPED: dict[tuple[str, str], ModelProfile] = {
    ("coretoday", "flux-kontext-pro"): replace(_KONTEXT, suggested_cost=120),
    ("coretoday", "flux-kontext-max"): replace(_KONTEXT, suggested_cost=240),
    ("coretoday", "flux-2-pro"): replace(_FLUX2, suggested_cost=100),
    ("coretoday", "flux-2-flex"): replace(_FLUX2, max_images=10, suggested_cost=200),
    ("bfl", "flux-kontext-pro"): replace(
        _KONTEXT, transport=ImageTransport.NUMBERED, max_images=4, suggested_cost=120
    ),
    ("bfl", "flux-kontext-max"): replace(
        _KONTEXT, transport=ImageTransport.NUMBERED, max_images=4, suggested_cost=240
    ),
    ("bfl", "flux-2-pro"): replace(
        _FLUX2,
        transport=ImageTransport.NUMBERED,
        aspect_ratios=FLUX2_BFL_RATIOS,
        output_formats=("png", "jpg"),
        suggested_cost=100,
    ),
    ("bfl", "flux-2-flex"): replace(
        _FLUX2,
        transport=ImageTransport.NUMBERED,
        aspect_ratios=FLUX2_BFL_RATIOS,
        output_formats=("png", "jpg"),
        suggested_cost=200,
    ),
    ("replicate", "flux-kontext-pro"): replace(_KONTEXT, suggested_cost=120),
    ("replicate", "flux-kontext-max"): replace(_KONTEXT, suggested_cost=240),
    ("replicate", "flux-2-pro"): replace(
        _FLUX2, transport=ImageTransport.ARRAY, suggested_cost=100
    ),
    ("replicate", "flux-2-flex"): replace(
        _FLUX2, transport=ImageTransport.ARRAY, max_images=10, suggested_cost=200
    ),
    # ComfyUI runs whatever workflow the operator gives it; the shipped one is Kontext
    # [dev] with one LoadImage, under any model id.
    ("comfyui", "*"): replace(_KONTEXT, family="kontext"),
}


# (provider, short model id) -> the upscaler's profile; ``*``: any id (ComfyUI's id is
# the upscale model's file name the shipped workflow loads).
UPSCALERS: dict[tuple[str, str], UpscaleProfile] = {
    ("replicate", "real-esrgan"): UpscaleProfile(image_field="image", scales=(2, 4)),
    ("comfyui", "*"): UpscaleProfile(image_field="image", scales=(2, 4)),
}
# Where the docs list none (checked December 2026, docs/models.md): said by the config.
NO_UPSCALER = ("coretoday", "bfl")


def upscale_profile(provider: str, model_id: str) -> UpscaleProfile | None:
    """The upscaler ``model_id`` is at ``provider``; None when the bot knows none there."""
    return UPSCALERS.get((provider, model_key(model_id))) or UPSCALERS.get((provider, "*"))


def upscaler_profile(provider: str, model_id: str) -> ModelProfile:
    """The whole profile of an upscale model: one image, no prompt, its scales."""
    upscale = upscale_profile(provider, model_id)
    return replace(
        _KONTEXT,
        family="upscale",
        text_to_image=False,
        upscale=upscale or UpscaleProfile(image_field="image", scales=(2, 4)),
    )


@dataclass(frozen=True)
class ProfileOverrides:
    """The ``[[models]]`` keys that change a profile (docs/configuration.md)."""

    max_images: int | None = None


def model_key(model_id: str) -> str:
    return model_id.rsplit("/", 1)[-1].strip().lower()


def shipped_profile(provider: str, model_id: str) -> ModelProfile:
    """The shipped profile of ``model_id`` at ``provider``, else ``UNKNOWN``."""
    found = SHIPPED.get((provider, model_key(model_id))) or SHIPPED.get((provider, "*"))
    return found or UNKNOWN


def profile_for(
    provider: str,
    model_id: str,
    overrides: ProfileOverrides | None = None,
    kind: str = "edit",
) -> ModelProfile:
    """The profile with the operator's keys applied. ``max_images`` beyond one on a
    one-image transport sends the images numbered (``input_image_2`` …): the common
    spelling of the providers that take several. An upscaler's is ``upscaler_profile``."""
    if kind == "upscale":
        return upscaler_profile(provider, model_id)
    profile = shipped_profile(provider, model_id)
    if provider == "comfyui":
        return profile  # the shipped workflow has one LoadImage, whatever the key says
    if overrides is not None and overrides.max_images is not None:
        transport = profile.transport
        if overrides.max_images > 1 and transport == ImageTransport.SINGLE:
            transport = {
                "coretoday": ImageTransport.MULTIPART,
                "replicate": ImageTransport.ARRAY,
            }.get(provider, ImageTransport.NUMBERED)
        profile = replace(profile, max_images=overrides.max_images, transport=transport)
    return profile


def largest_max_images(profiles: Mapping[str, ModelProfile] | list[ModelProfile]) -> int:
    values = profiles.values() if isinstance(profiles, Mapping) else profiles
    return max((p.max_images for p in values), default=1)
