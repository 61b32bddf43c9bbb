"""Pillow under guard: decoding untrusted bytes under a pixel cap, encoding without metadata.

Both the input checks (``inputs``) and the output checks (``outputs``) decode bytes nobody
vouches for, so the one careful way to do it lives here: identify the format, check the
pixel count on the header before any pixel is allocated, decode fully, apply EXIF rotation.
Failures come out as ``Rejected`` with the reason; each caller phrases it for its audience
(the user for an input, a refund for an output). Re-encoding drops EXIF, XMP and text
chunks, which can carry GPS and device data.
"""

from __future__ import annotations

import io
import re
import threading
import warnings
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from PIL import ExifTags, Image, ImageOps

T = TypeVar("T")

# Formats that can be handed to a provider as they are; anything else is re-encoded.
PASS_THROUGH: dict[str, tuple[str, str]] = {
    "jpeg": ("image/jpeg", "jpg"),
    "png": ("image/png", "png"),
    "webp": ("image/webp", "webp"),
}

_REENCODE_JPEG_QUALITY = 95
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")

# ``warnings.catch_warnings`` swaps process-global state and is not thread-safe before
# Python 3.14: two overlapping blocks in different threads can restore each other's
# filters and leave an "error" filter behind. Our own calls are serialised by this lock;
# the explicit pixel checks below do not depend on the warning filter at all, so a race
# with foreign code can only make a warning be logged instead of raised.
_DECODE_LOCK = threading.Lock()


class Rejected(Exception):
    """Why decoding failed, before it is phrased for the user or for the provider case."""

    def __init__(
        self,
        reason: str,
        *,
        format_name: str | None = None,
        pixels: int | None = None,
        size: tuple[int, int] | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.format_name = format_name
        self.pixels = pixels
        self.size = size
        self.limit = limit


@dataclass
class Decoded:
    image: Image.Image
    format: str
    stored_size: tuple[int, int]
    animated: bool
    orientation_applied: bool
    exif_unreadable: bool


@contextmanager
def bomb_guard() -> Iterator[None]:
    """Turn Pillow's bomb warning into an exception without touching MAX_IMAGE_PIXELS.

    Pillow only warns between its limit and twice its limit; for untrusted input a
    warning in a log protects nothing. Pillow's warnings about corrupt metadata are
    silenced because the exceptions that matter are handled by the callers.
    """
    with _DECODE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def normalise_format(name: str | None) -> str:
    # MPO is a JPEG with extra images appended (phones add depth maps or gain maps);
    # every JPEG decoder reads its first image, so it is a JPEG for our purposes.
    fmt = (name or "").lower()
    return {"mpo": "jpeg", "jpg": "jpeg"}.get(fmt, fmt)


def effective_pixel_limit(max_pixels: int) -> int:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    return max_pixels if pillow_limit is None else min(max_pixels, pillow_limit)


def open_checked(
    data: bytes,
    *,
    max_pixels: int,
    accepted: Collection[str],
    finish: Callable[[Image.Image, str], T],
) -> tuple[str, tuple[int, int], T]:
    """Identify and cap an image, then ``finish`` it (decode, verify); every failure is a
    ``Rejected``.

    The pixel cap is checked on the header's size before ``finish`` so that a bomb never
    allocates its pixels. Any exception from Pillow counts as unreadable: crafted files
    reach error paths (``struct.error``, ``IndexError``, ``ZeroDivisionError`` …) that no
    list of exception types keeps up with.
    """
    limit = effective_pixel_limit(max_pixels)
    try:
        with bomb_guard():
            img = Image.open(io.BytesIO(data))
            fmt = normalise_format(img.format)
            if fmt not in accepted:
                raise Rejected("format", format_name=img.format)
            width, height = img.size
            if width * height > limit:
                raise Rejected("pixels", pixels=width * height, size=(width, height), limit=limit)
            finished = finish(img, fmt)
    except Rejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        match = _BOMB_PIXELS.search(str(exc))
        pixels = int(match.group(1)) if match else None
        raise Rejected("pixels", pixels=pixels, limit=limit) from exc
    except Exception as exc:
        raise Rejected("unreadable") from exc
    return fmt, (width, height), finished


def open_and_load(data: bytes, *, max_pixels: int, accepted: frozenset[str]) -> Decoded:
    """Identify, cap and fully decode the first frame (``open_checked``), upright."""

    def load(img: Image.Image, fmt: str) -> tuple[Image.Image, bool, bool, bool]:
        animated = _is_animated(img)
        img.load()
        orientation, exif_unreadable = _orientation(img)
        oriented = orientation in range(2, 9)
        upright: Image.Image = ImageOps.exif_transpose(img) if oriented else img
        return upright, animated, oriented, exif_unreadable

    fmt, size, (image, animated, oriented, exif_unreadable) = open_checked(
        data, max_pixels=max_pixels, accepted=accepted, finish=load
    )
    return Decoded(image, fmt, size, animated, oriented, exif_unreadable)


def _is_animated(img: Image.Image) -> bool:
    if img.format == "MPO":
        # The extra images of an MPO are not frames of an animation.
        return False
    try:
        animated = bool(getattr(img, "is_animated", False))
    except Exception:
        # A broken later frame must not reject a good first frame; re-encoding the
        # first frame alone keeps the broken part away from the provider.
        animated = True
    if animated:
        img.seek(0)
    return animated


def _orientation(img: Image.Image) -> tuple[int, bool]:
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return 1, True
    return (value if isinstance(value, int) else 1), False


def has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _to_saveable(img: Image.Image, fmt: str) -> Image.Image:
    """Bring any decoded mode to one every provider reads the same way.

    Palette, 16-bit and CMYK images are legal PNG/JPEG but are handled inconsistently
    by image pipelines; RGB/RGBA/L are not.
    """
    if fmt == "jpeg":
        return img if img.mode in ("RGB", "L") else img.convert("RGB")
    if img.mode in ("RGB", "RGBA", "L"):
        return img
    return img.convert("RGBA" if has_alpha(img) else "RGB")


def icc_profile_for(source: Image.Image, converted: Image.Image) -> bytes | None:
    # A CMYK profile on RGB pixels would make viewers shift every colour; keep the
    # profile only when the colour space did not change.
    icc = source.info.get("icc_profile")
    if not isinstance(icc, bytes) or not icc:
        return None
    same_space = source.mode == converted.mode or (
        source.mode in ("RGB", "RGBA", "P", "PA") and converted.mode in ("RGB", "RGBA")
    )
    return icc if same_space else None


def encode(img: Image.Image, fmt: str, *, quality: int = _REENCODE_JPEG_QUALITY) -> bytes:
    """Encode without EXIF, XMP or text chunks: they can carry GPS and device data."""
    converted = _to_saveable(img, fmt)
    icc = icc_profile_for(img, converted)
    out = io.BytesIO()
    if fmt == "jpeg":
        converted.save(out, "JPEG", quality=quality, icc_profile=icc, exif=b"")
    else:
        converted.save(out, "PNG", icc_profile=icc)
    return out.getvalue()
