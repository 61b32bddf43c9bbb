"""Checks and normalisation of images that cross the bot's borders.

Inputs come from strangers on chat platforms: a file's name and declared type say
nothing about its bytes, and a small file can expand to gigabytes of pixels. So every
input is identified and fully decoded by Pillow under a pixel cap before anything else
sees it, and every rejection becomes a ``UserInputError`` the person can act on (no
credits are reserved at that point). Outputs come from the provider; a broken one is the
provider's fault, so it becomes ``ProviderUnavailable`` (the job is refunded).

Images are passed through byte for byte whenever that is safe, because every re-encode
of a photo loses quality; they are re-encoded only when the provider would otherwise
see something other than what the user sees (EXIF rotation, animation, GIF palettes,
CMYK).

All functions are synchronous and CPU-bound: callers run them in a worker thread.
"""

from __future__ import annotations

import io
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageOps

from bot.errors import ProviderUnavailable, UserInputError
from bot.providers.base import InputImage

ACCEPTED_FORMATS: frozenset[str] = frozenset({"jpeg", "png", "gif", "webp"})

# Formats that can be handed to a provider as they are; anything else is re-encoded.
_PASS_THROUGH: dict[str, tuple[str, str]] = {
    "jpeg": ("image/jpeg", "jpg"),
    "png": ("image/png", "png"),
    "webp": ("image/webp", "webp"),
}
_OUTPUT_FORMATS = _PASS_THROUGH
_FORMAT_LABELS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WebP"}
_LABEL_ORDER = ("jpeg", "png", "gif", "webp")

_REENCODE_JPEG_QUALITY = 95
_FIT_QUALITIES = (90, 80, 70, 60)
_FIT_DOWNSCALE_QUALITY = 75
_FIT_MIN_SIDE = 16

_DAMAGED_OUTPUT = "The image service returned a damaged image."
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")

# ``warnings.catch_warnings`` swaps process-global state and is not thread-safe before
# Python 3.14: two overlapping blocks in different threads can restore each other's
# filters and leave an "error" filter behind. Our own calls are serialised by this lock;
# the explicit pixel checks below do not depend on the warning filter at all, so a race
# with foreign code can only make a warning be logged instead of raised.
_DECODE_LOCK = threading.Lock()


@dataclass(frozen=True)
class OutputImageInfo:
    """What an adapter needs to post a result with the right name and type."""

    content_type: str
    extension: str
    width: int
    height: int


class _Rejected(Exception):
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
class _Decoded:
    image: Image.Image
    format: str
    stored_size: tuple[int, int]
    animated: bool
    orientation_applied: bool
    exif_unreadable: bool


@contextmanager
def _bomb_guard() -> Iterator[None]:
    """Turn Pillow's bomb warning into an exception without touching MAX_IMAGE_PIXELS.

    Pillow only warns between its limit and twice its limit; for untrusted input a
    warning in a log protects nothing. Pillow's warnings about corrupt metadata are
    silenced because the exceptions that matter are handled by the callers.
    """
    with _DECODE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _normalise_format(name: str | None) -> str:
    # MPO is a JPEG with extra images appended (phones add depth maps or gain maps);
    # every JPEG decoder reads its first image, so it is a JPEG for our purposes.
    fmt = (name or "").lower()
    return {"mpo": "jpeg", "jpg": "jpeg"}.get(fmt, fmt)


def _effective_pixel_limit(max_pixels: int) -> int:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    return max_pixels if pillow_limit is None else min(max_pixels, pillow_limit)


def _open_and_load(data: bytes, *, max_pixels: int, accepted: frozenset[str]) -> _Decoded:
    """Identify, cap and fully decode the first frame; every failure is a ``_Rejected``.

    The pixel cap is checked on the header's size before ``load()`` so that a bomb never
    allocates its pixels. Any exception from Pillow counts as unreadable: crafted files
    reach error paths (``struct.error``, ``IndexError``, ``ZeroDivisionError`` …) that no
    list of exception types keeps up with.
    """
    limit = _effective_pixel_limit(max_pixels)
    try:
        with _bomb_guard():
            img = Image.open(io.BytesIO(data))
            fmt = _normalise_format(img.format)
            if fmt not in accepted:
                raise _Rejected("format", format_name=img.format)
            width, height = img.size
            if width * height > limit:
                raise _Rejected("pixels", pixels=width * height, size=(width, height), limit=limit)
            animated = _is_animated(img)
            img.load()
            orientation, exif_unreadable = _orientation(img)
            oriented = orientation in range(2, 9)
            image: Image.Image = ImageOps.exif_transpose(img) if oriented else img
    except _Rejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        match = _BOMB_PIXELS.search(str(exc))
        pixels = int(match.group(1)) if match else None
        raise _Rejected("pixels", pixels=pixels, limit=limit) from exc
    except Exception as exc:
        raise _Rejected("unreadable") from exc
    return _Decoded(image, fmt, (width, height), animated, oriented, exif_unreadable)


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


def _has_alpha(img: Image.Image) -> bool:
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
    return img.convert("RGBA" if _has_alpha(img) else "RGB")


def _icc_profile_for(source: Image.Image, converted: Image.Image) -> bytes | None:
    # A CMYK profile on RGB pixels would make viewers shift every colour; keep the
    # profile only when the colour space did not change.
    icc = source.info.get("icc_profile")
    if not isinstance(icc, bytes) or not icc:
        return None
    same_space = source.mode == converted.mode or (
        source.mode in ("RGB", "RGBA", "P", "PA") and converted.mode in ("RGB", "RGBA")
    )
    return icc if same_space else None


def _encode(img: Image.Image, fmt: str, *, quality: int = _REENCODE_JPEG_QUALITY) -> bytes:
    """Encode without EXIF, XMP or text chunks: they can carry GPS and device data."""
    converted = _to_saveable(img, fmt)
    icc = _icc_profile_for(img, converted)
    out = io.BytesIO()
    if fmt == "jpeg":
        converted.save(out, "JPEG", quality=quality, icc_profile=icc, exif=b"")
    else:
        converted.save(out, "PNG", icc_profile=icc)
    return out.getvalue()


def _human_bytes(n: int) -> str:
    for unit, size in (("MB", 1_000_000), ("KB", 1_000)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def _human_megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:.1f}"


def _formats_phrase(accepted: frozenset[str]) -> str:
    ordered = [f for f in _LABEL_ORDER if f in accepted]
    ordered += sorted(accepted - set(_LABEL_ORDER))
    labels = [_FORMAT_LABELS.get(f, f.upper()) for f in ordered]
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " or " + labels[-1]


def _user_message(rejected: _Rejected, accepted: frozenset[str]) -> str:
    wanted = f"Please send a {_formats_phrase(accepted)} image."
    if rejected.reason == "format":
        return f"The attachment is a {rejected.format_name} image, which is not supported. {wanted}"
    if rejected.reason == "pixels":
        limit = _human_megapixels(rejected.limit or 0).removesuffix(".0")
        if rejected.pixels is None:
            return f"The image has too many pixels; the limit is {limit} megapixels."
        size = f" ({rejected.size[0]}×{rejected.size[1]})" if rejected.size else ""
        return (
            f"The image is {_human_megapixels(rejected.pixels)} megapixels{size}; "
            f"the limit is {limit} megapixels."
        )
    return (
        "The attachment could not be read as an image "
        f"(it may be damaged or not an image). {wanted}"
    )


def _safe_filename(original: str, extension: str) -> str:
    # Only the stem survives: the name reaches provider uploads and logs, and must not
    # carry directories, control characters or a lying extension.
    name = original.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, _ = name.rpartition(".")
    if not dot or not stem:
        stem = name
    stem = re.sub(r"[^\w.-]+", "_", stem).strip("._")[:100]
    return f"{stem or 'image'}.{extension}"


def validate_input_image(
    data: bytes,
    *,
    filename: str,
    max_bytes: int,
    max_pixels: int,
    accepted_formats: frozenset[str] = ACCEPTED_FORMATS,
) -> InputImage:
    """Admit an attachment only after Pillow has decoded every pixel of what we send.

    Raises ``UserInputError`` (and nothing else) for any bytes that are not an
    acceptable image, so the job fails before a credit is reserved.
    ``max_pixels`` is further capped by Pillow's ``Image.MAX_IMAGE_PIXELS``.
    """
    accepted = frozenset(_normalise_format(f) for f in accepted_formats)
    if len(data) > max_bytes:
        raise UserInputError(
            f"The image is {_human_bytes(len(data))}; the limit is {_human_bytes(max_bytes)}."
        )
    try:
        decoded = _open_and_load(data, max_pixels=max_pixels, accepted=accepted)
        reencode_as = _reencode_target(decoded)
        if reencode_as is None:
            content_type, extension = _PASS_THROUGH[decoded.format]
            clean = _without_metadata(data, decoded.format)
            return InputImage(clean, content_type, _safe_filename(filename, extension))
        out = _encode(decoded.image, reencode_as)
    except _Rejected as rejected:
        raise UserInputError(
            _user_message(rejected, accepted), detail=f"input image rejected: {rejected.reason}"
        ) from rejected
    except Exception as exc:
        # Encoding a successfully decoded image should not fail; if an exotic mode
        # still does, the user can fix it by converting the file.
        raise UserInputError(
            _user_message(_Rejected("unreadable"), accepted),
            detail=f"re-encoding the input failed: {exc!r}",
        ) from exc
    content_type = "image/jpeg" if reencode_as == "jpeg" else "image/png"
    if len(out) > max_bytes:
        # A lossless PNG of a photo can be several times its source; fit rather than
        # reject an image the user sent within the limit.
        try:
            out, content_type = fit_to_byte_limit(out, max_bytes=max_bytes)
        except (ValueError, ProviderUnavailable) as exc:
            raise UserInputError(
                f"The image is too large once converted; the limit is {_human_bytes(max_bytes)}.",
                detail=f"fitting the re-encoded input failed: {exc!r}",
            ) from exc
    extension = "jpg" if content_type == "image/jpeg" else "png"
    return InputImage(out, content_type, _safe_filename(filename, extension))


# Metadata that says where and when a photo was taken (EXIF GPS, XMP, IPTC, text
# chunks) has no business at a third-party image service. These are dropped from
# images that otherwise pass through byte for byte; colour profiles stay.
_JPEG_DROP = {0xE1, 0xED, 0xFE}  # APP1 (EXIF, XMP), APP13 (IPTC), COM
_PNG_DROP = {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"}
_WEBP_DROP = {b"EXIF", b"XMP "}


def strip_metadata(data: bytes, fmt: str) -> bytes:
    """The same image without EXIF/XMP/IPTC/text metadata, pixels untouched.

    Raises ``ValueError`` on a structure it does not understand.
    """
    if fmt == "jpeg":
        return _strip_jpeg(data)
    if fmt == "png":
        return _strip_png(data)
    if fmt == "webp":
        return _strip_webp(data)
    return data


def _strip_jpeg(data: bytes) -> bytes:
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    out = bytearray(data[:2])
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise ValueError("JPEG marker expected")
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan: the rest is image data
            out += data[position:]
            return bytes(out)
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        end = position + 2 + length
        if length < 2 or end > len(data):
            raise ValueError("JPEG segment overruns the file")
        if marker not in _JPEG_DROP:
            out += data[position:end]
        position = end
    raise ValueError("JPEG without image data")


def _strip_png(data: bytes) -> bytes:
    signature = b"\x89PNG\r\n\x1a\n"
    if not data.startswith(signature):
        raise ValueError("not a PNG")
    out = bytearray(signature)
    position = len(signature)
    while position + 12 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if end > len(data):
            raise ValueError("PNG chunk overruns the file")
        if kind not in _PNG_DROP:
            out += data[position:end]
        position = end
        if kind == b"IEND":
            return bytes(out)
    raise ValueError("PNG without IEND")


def _strip_webp(data: bytes) -> bytes:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP")
    chunks = bytearray()
    position = 12
    while position + 8 <= len(data):
        kind = data[position : position + 4]
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        end = position + 8 + size + (size & 1)
        if end > len(data):
            raise ValueError("WebP chunk overruns the file")
        chunk = bytearray(data[position:end])
        if kind == b"VP8X":
            chunk[8] &= ~0x0C & 0xFF  # the EXIF and XMP flags: they are gone now
        if kind not in _WEBP_DROP:
            chunks += chunk
        position = end
    return b"RIFF" + (len(chunks) + 4).to_bytes(4, "little") + b"WEBP" + bytes(chunks)


def _without_metadata(data: bytes, fmt: str) -> bytes:
    """Stripped bytes when they still decode; otherwise the original (validated) bytes,
    so a structure this code misreads never costs the user their edit."""
    try:
        stripped = strip_metadata(data, fmt)
        with _bomb_guard(), Image.open(io.BytesIO(stripped)) as check:
            check.load()
    except Exception:
        return data
    return stripped


def _reencode_target(decoded: _Decoded) -> str | None:
    """The format to re-encode to, or None when the original bytes may go out as-is."""
    if decoded.animated or decoded.format not in _PASS_THROUGH:
        # First frame only; GIF palettes and exotic formats become PNG, which every
        # provider reads losslessly.
        return "png"
    needs_reencode = (
        decoded.orientation_applied
        or decoded.exif_unreadable
        or (decoded.format == "jpeg" and decoded.image.mode not in ("RGB", "L"))
    )
    if not needs_reencode:
        return None
    return "jpeg" if decoded.format == "jpeg" else "png"


def inspect_output_image(data: bytes, *, max_bytes: int, max_pixels: int) -> OutputImageInfo:
    """Make sure a result is a whole, postable image before anyone is charged for it.

    Raises ``ProviderUnavailable`` (not retryable: the same prediction gives the same
    bytes) so that the job is refunded.
    """
    if len(data) > max_bytes:
        raise ProviderUnavailable(
            "The image service returned an image that is too large to post.",
            detail=f"output is {len(data)} bytes, limit {max_bytes}",
            retryable=False,
        )
    try:
        decoded = _open_and_load(data, max_pixels=max_pixels, accepted=frozenset(_OUTPUT_FORMATS))
    except _Rejected as rejected:
        raise ProviderUnavailable(
            _DAMAGED_OUTPUT, detail=f"output image rejected: {rejected.reason}", retryable=False
        ) from rejected
    content_type, extension = _OUTPUT_FORMATS[decoded.format]
    # The stored size, not the EXIF-rotated one: it is what the platform reports.
    width, height = decoded.stored_size
    return OutputImageInfo(content_type, extension, width, height)


def _flatten_to_rgb(img: Image.Image) -> Image.Image:
    # JPEG has no alpha; white is what chat clients in light mode show behind it anyway.
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


def _jpeg_bytes(img: Image.Image, quality: int, icc: bytes | None) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, icc_profile=icc, exif=b"")
    return out.getvalue()


def fit_to_byte_limit(data: bytes, *, max_bytes: int) -> tuple[bytes, str]:
    """Make a result postable on a platform with an upload limit, losing as little as possible.

    Lowering JPEG quality costs less than losing pixels, so quality goes first and
    the image is downscaled only when that is not enough. Raises ``ProviderUnavailable``
    if the data is not an image, ``ValueError`` if ``max_bytes`` cannot hold even a
    tiny JPEG (a caller bug, not a user's problem).
    """
    try:
        with _bomb_guard():
            img = Image.open(io.BytesIO(data))
            if len(data) <= max_bytes:
                known = _PASS_THROUGH.get(_normalise_format(img.format))
                if known is not None:
                    return data, known[0]
                return data, img.get_format_mimetype() or "application/octet-stream"
            img.seek(0)
            img.load()
            source: Image.Image = img
            rgb = _flatten_to_rgb(source)
    except Exception as exc:
        raise ProviderUnavailable(
            _DAMAGED_OUTPUT, detail=f"cannot fit output: {exc!r}", retryable=False
        ) from exc
    icc = _icc_profile_for(source, rgb)
    out = b""
    for quality in _FIT_QUALITIES:
        out = _jpeg_bytes(rgb, quality, icc)
        if len(out) <= max_bytes:
            return out, "image/jpeg"
    while True:
        # JPEG size grows roughly with the pixel count, so scale by the square root of
        # the overshoot, a little more to converge in one or two rounds.
        scale = min(0.9, (max_bytes / len(out)) ** 0.5 * 0.95)
        width, height = round(rgb.width * scale), round(rgb.height * scale)
        if min(width, height) < _FIT_MIN_SIDE:
            raise ValueError(f"max_bytes={max_bytes} is too small for any image")
        rgb = rgb.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
        out = _jpeg_bytes(rgb, _FIT_DOWNSCALE_QUALITY, icc)
        if len(out) <= max_bytes:
            return out, "image/jpeg"
