"""Admitting an attachment: a user's bytes become an ``InputImage`` or a ``UserInputError``.

Inputs come from strangers on chat platforms: a file's name and declared type say nothing
about its bytes. Every input is decoded by ``codec`` before anything else sees it, and
every rejection is phrased so the person can act on it (no credits are reserved yet).
Images are re-encoded only when the provider would otherwise see something other than
what the user sees (EXIF rotation, animation, GIF palettes, CMYK); otherwise only their
metadata is dropped (``metadata``).
"""

from __future__ import annotations

import re

from bot.errors import ProviderUnavailable, UserInputError
from bot.i18n import _, ngettext, number
from bot.images.codec import (
    PASS_THROUGH,
    Decoded,
    Rejected,
    encode,
    normalise_format,
    open_and_load,
)
from bot.images.fitting import fit_to_byte_limit
from bot.images.metadata import without_metadata
from bot.providers.base import InputImage

ACCEPTED_FORMATS: frozenset[str] = frozenset({"jpeg", "png", "gif", "webp"})

_FORMAT_LABELS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WebP"}
_LABEL_ORDER = ("jpeg", "png", "gif", "webp")


def _human_bytes(n: int) -> str:
    """``12.5 MB`` (``12,5 MB`` in German): a size for the reader, in their language."""
    for unit, size in (("MB", 1_000_000), ("KB", 1_000)):
        if n >= size:
            return f"{number(round(n / size, 1), '0.#')} {unit}"
    return ngettext("{n} byte", "{n} bytes", n).format(n=number(n))


def _human_megapixels(pixels: int, pattern: str = "0.0") -> str:
    return number(round(pixels / 1_000_000, 1), pattern)


def formats_phrase(accepted: frozenset[str]) -> str:
    """'JPEG, PNG, GIF or WebP': the accepted formats as every refusal names them."""
    ordered = [f for f in _LABEL_ORDER if f in accepted]
    ordered += sorted(accepted - set(_LABEL_ORDER))
    labels = [_FORMAT_LABELS.get(f, f.upper()) for f in ordered]
    if len(labels) <= 1:
        return "".join(labels)
    # TRANSLATORS: the last two of a list of image formats: "GIF or WebP".
    return _("{some} or {last}").format(some=", ".join(labels[:-1]), last=labels[-1])


def _user_message(rejected: Rejected, accepted: frozenset[str]) -> str:
    wanted = _("Please send a {formats} image.").format(formats=formats_phrase(accepted))
    if rejected.reason == "format":
        return _("The attachment is a {format} image, which is not supported. {wanted}").format(
            format=rejected.format_name, wanted=wanted
        )
    if rejected.reason == "pixels":
        limit = _human_megapixels(rejected.limit or 0, "0.#")
        if rejected.pixels is None:
            return _("The image has too many pixels; the limit is {limit} megapixels.").format(
                limit=limit
            )
        pixels = _human_megapixels(rejected.pixels)
        if rejected.size:
            return _(
                "The image is {pixels} megapixels ({width}×{height}); "
                "the limit is {limit} megapixels."
            ).format(pixels=pixels, width=rejected.size[0], height=rejected.size[1], limit=limit)
        return _("The image is {pixels} megapixels; the limit is {limit} megapixels.").format(
            pixels=pixels, limit=limit
        )
    return _(
        "The attachment could not be read as an image (it may be damaged or not an image). {wanted}"
    ).format(wanted=wanted)


def _safe_filename(original: str, extension: str) -> str:
    # Only the stem survives: the name reaches provider uploads and logs, and must not
    # carry directories, control characters or a lying extension.
    name = original.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, _extension = name.rpartition(".")
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
    accepted = frozenset(normalise_format(f) for f in accepted_formats)
    if len(data) > max_bytes:
        raise UserInputError(
            _("The image is {size}; the limit is {limit}.").format(
                size=_human_bytes(len(data)), limit=_human_bytes(max_bytes)
            ),
            detail=f"input image is {len(data)} bytes, limit {max_bytes}",
        )
    try:
        decoded = open_and_load(data, max_pixels=max_pixels, accepted=accepted)
        reencode_as = _reencode_target(decoded)
        if reencode_as is None:
            content_type, extension = PASS_THROUGH[decoded.format]
            clean = without_metadata(data, decoded.format)
            if len(clean) <= max_bytes:  # a re-encode without metadata may have grown it
                return InputImage(clean, content_type, _safe_filename(filename, extension))
            reencode_as = "jpeg" if decoded.format == "jpeg" else "png"
        out = encode(decoded.image, reencode_as)
    except Rejected as rejected:
        raise UserInputError(
            _user_message(rejected, accepted), detail=f"input image rejected: {rejected.reason}"
        ) from rejected
    except Exception as exc:
        # Encoding a successfully decoded image should not fail; if an exotic mode
        # still does, the user can fix it by converting the file.
        raise UserInputError(
            _user_message(Rejected("unreadable"), accepted),
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
                _("The image is too large once converted; the limit is {limit}.").format(
                    limit=_human_bytes(max_bytes)
                ),
                detail=f"fitting the re-encoded input failed: {exc!r}",
            ) from exc
    extension = "jpg" if content_type == "image/jpeg" else "png"
    return InputImage(out, content_type, _safe_filename(filename, extension))


def _reencode_target(decoded: Decoded) -> str | None:
    """The format to re-encode to, or None when the original bytes may go out as-is."""
    if decoded.animated or decoded.format not in PASS_THROUGH:
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
