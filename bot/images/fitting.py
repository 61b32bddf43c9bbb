"""Fitting a result into a platform's upload limit: a high-quality JPEG first, then smaller.

An upscale easily makes a 4096x4096 PNG of 30 MB or more, over Discord's 10 MiB for a bot
in most servers. The provider has been paid by then, so fitting must not fail the job:
``fit_upload`` never raises, takes a bounded number of steps, and says what it did so
the posted message can tell the reader (``bot.chat.texts.fitted_note``).

The steps, each tried only when the one before is still too large:

1. the image as it is;
2. a JPEG at high quality, then a little lower (``QUALITIES``): costs less than pixels;
3. smaller: each round scales by the square root of the overshoot (JPEG size grows
   about with the pixel count), at most ``MAX_ROUNDS`` rounds, never under ``MIN_SIDE``.

If even that is too large, the smallest made is returned with ``fits = False`` and the
platform's answer decides (the delivery then fails and is refunded, as any other).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from bot.errors import ProviderUnavailable
from bot.i18n import N_, _
from bot.images.codec import (
    PASS_THROUGH,
    bomb_guard,
    has_alpha,
    icc_profile_for,
    normalise_format,
)

QUALITIES = (92, 85)  # high quality first: most upscales fit at 92
DOWNSCALE_QUALITY = 85
MAX_ROUNDS = 6
MIN_SIDE = 64
_DAMAGED = N_("The image service returned a damaged image.")

Change = Literal["", "jpeg", "smaller"]


@dataclass(frozen=True)
class Fitted:
    """What is posted: the bytes, their type and size, and what was done to them
    (``""``: nothing, ``"jpeg"``: re-encoded at full size, ``"smaller"``: scaled down)."""

    data: bytes
    content_type: str
    width: int
    height: int
    change: Change
    fits: bool

    @property
    def extension(self) -> str:
        return {"image/jpeg": "jpg", "image/webp": "webp"}.get(self.content_type, "png")


def fit_upload(data: bytes, *, max_bytes: int) -> Fitted:
    """``data`` made to fit in ``max_bytes``, as far as bounded steps can; never raises
    (an image it cannot read is returned as it is, ``fits`` telling whether it does)."""
    try:
        return _fit(data, max_bytes)
    except Exception:
        return Fitted(data, "application/octet-stream", 0, 0, "", len(data) <= max_bytes)


def fit_to_byte_limit(data: bytes, *, max_bytes: int) -> tuple[bytes, str]:
    """The input checks' use of the same steps (``bot.images.inputs``): raises
    ``ProviderUnavailable`` for bytes that are no image and ``ValueError`` when even the
    smallest step does not fit (a limit too small for any image)."""
    try:
        fitted = _fit(data, max_bytes)
    except Exception as exc:
        raise ProviderUnavailable(
            _(_DAMAGED), detail=f"cannot fit output: {exc!r}", retryable=False
        ) from exc
    if not fitted.fits:
        raise ValueError(f"max_bytes={max_bytes} is too small for this image")
    return fitted.data, fitted.content_type


def _fit(data: bytes, max_bytes: int) -> Fitted:
    with bomb_guard():
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        if len(data) <= max_bytes:
            known = PASS_THROUGH.get(normalise_format(img.format))
            content_type = known[0] if known else (img.get_format_mimetype() or "image/png")
            return Fitted(data, content_type, width, height, "", True)
        img.seek(0)
        img.load()
        source: Image.Image = img
        rgb = _flatten_to_rgb(source)
    icc = icc_profile_for(source, rgb)
    out = b""
    for quality in QUALITIES:
        out = _jpeg(rgb, quality, icc)
        if len(out) <= max_bytes:
            return Fitted(out, "image/jpeg", rgb.width, rgb.height, "jpeg", True)
    for _round in range(MAX_ROUNDS):
        scale = min(0.9, (max_bytes / len(out)) ** 0.5 * 0.95)
        size = (max(MIN_SIDE, round(rgb.width * scale)), max(MIN_SIDE, round(rgb.height * scale)))
        if size == rgb.size:
            break  # at the floor: nothing smaller to try
        rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        out = _jpeg(rgb, DOWNSCALE_QUALITY, icc)
        if len(out) <= max_bytes:
            return Fitted(out, "image/jpeg", rgb.width, rgb.height, "smaller", True)
    return Fitted(out, "image/jpeg", rgb.width, rgb.height, "smaller", False)


def pixel_size(data: bytes) -> tuple[int, int] | None:
    """An image's width and height from its header (nothing decoded); None if unreadable."""
    try:
        with bomb_guard(), Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:
        return None


def _flatten_to_rgb(img: Image.Image) -> Image.Image:
    # JPEG has no alpha; white is what chat clients in light mode show behind it anyway.
    if has_alpha(img):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


def _jpeg(img: Image.Image, quality: int, icc: bytes | None) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, icc_profile=icc, exif=b"")
    return out.getvalue()
