"""Tests of bot.images; every image is generated in memory with Pillow."""

from __future__ import annotations

import io
import random
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image, ImageFile

from bot.errors import ProviderUnavailable, UserInputError
from bot.images import (
    ACCEPTED_FORMATS,
    OutputImageInfo,
    fit_to_byte_limit,
    inspect_output_image,
    validate_input_image,
)
from bot.providers.base import InputImage

MB = 1_000_000
LIMITS: dict[str, Any] = {"max_bytes": 20 * MB, "max_pixels": 25 * MB}
FORMATS_PHRASE = "JPEG, PNG, GIF or WebP"
RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def solid(color: tuple[int, int, int] = RED, size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, color)


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rnd = random.Random(seed)
    return Image.frombytes("RGB", size, rnd.randbytes(size[0] * size[1] * 3))


def two_halves() -> Image.Image:
    """64×48, left half red, right half blue: shows where a rotation put the left edge."""
    img = solid(RED)
    img.paste(BLUE, (32, 0, 64, 48))
    return img


def exif_with(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "TestCam"
    return exif


def animated(fmt: str) -> bytes:
    frames = [solid(c) for c in (RED, GREEN, BLUE)]
    extra: dict[str, Any] = {"lossless": True} if fmt == "WEBP" else {}
    return encode(
        frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **extra
    )


def rejection(data: bytes, **overrides: Any) -> str:
    """The user-facing message of the UserInputError that validation must raise."""
    with pytest.raises(UserInputError) as info:
        validate(data, **overrides)
    return info.value.user_message


def validate(data: bytes, filename: str = "upload.bin", **overrides: Any) -> InputImage:
    return validate_input_image(data, filename=filename, **{**LIMITS, **overrides})


def decode(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        # Pillow warns about corrupt EXIF in mutated pass-through inputs; not our concern.
        warnings.simplefilter("ignore", UserWarning)
        img = Image.open(io.BytesIO(data))
        img.load()
    return img


def close_to(actual: Any, expected: tuple[int, int, int], tolerance: int = 30) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual[:3], expected, strict=True))


# --- accepted inputs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params", "content_type", "extension"),
    [
        ("JPEG", {"quality": 90}, "image/jpeg", "jpg"),
        ("PNG", {}, "image/png", "png"),
        ("WEBP", {"quality": 90}, "image/webp", "webp"),
    ],
)
def test_still_images_pass_through_unchanged(
    fmt: str, params: dict[str, Any], content_type: str, extension: str
) -> None:
    data = encode(solid(), fmt, **params)
    result = validate(data, filename="holiday photo.HEIC")
    assert result.data == data
    assert result.content_type == content_type
    assert result.filename == f"holiday_photo.{extension}"


def test_rgba_png_passes_through() -> None:
    data = encode(Image.new("RGBA", (10, 10), (1, 2, 3, 100)), "PNG")
    assert validate(data).data == data


def test_still_gif_becomes_png() -> None:
    data = encode(solid(GREEN), "GIF")
    result = validate(data, filename="a.gif")
    assert result.content_type == "image/png"
    assert result.filename == "a.png"
    img = decode(result.data)
    assert img.format == "PNG"
    assert img.mode in ("RGB", "RGBA")
    assert close_to(img.getpixel((5, 5)), GREEN, tolerance=10)


def test_gif_with_transparency_keeps_alpha() -> None:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putpixel((0, 0), 1)
    result = validate(encode(img, "GIF", transparency=1))
    out = decode(result.data)
    assert out.mode == "RGBA"
    corner = out.getpixel((0, 0))
    assert isinstance(corner, tuple)
    assert corner[3] == 0
    assert out.getpixel((4, 4)) == (255, 0, 0, 255)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"], ids=["gif", "webp", "apng"])
def test_animated_images_become_first_frame_png(fmt: str) -> None:
    data = animated(fmt)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    result = validate(data, filename="anim.gif")
    assert result.content_type == "image/png"
    assert result.filename == "anim.png"
    img = decode(result.data)
    assert img.format == "PNG"
    assert getattr(img, "n_frames", 1) == 1
    assert img.size == (64, 48)
    assert close_to(img.getpixel((10, 10)), RED, tolerance=10)


def test_exif_orientation_6_is_applied_and_exif_stripped() -> None:
    exif = exif_with(6)
    exif[ExifTags.IFD.GPSInfo] = {1: "N", 2: (52.0, 31.0, 12.0)}
    data = encode(two_halves(), "JPEG", quality=95, exif=exif)
    assert Image.open(io.BytesIO(data)).getexif().get(ExifTags.Base.Orientation) == 6

    result = validate(data, filename="IMG_0001.JPG")
    assert result.content_type == "image/jpeg"
    assert result.filename == "IMG_0001.jpg"
    img = decode(result.data)
    assert img.format == "JPEG"
    assert img.size == (48, 64)
    assert ExifTags.Base.Orientation not in img.getexif()
    assert len(img.getexif()) == 0
    assert b"Exif\x00\x00" not in result.data
    assert b"TestCam" not in result.data
    # Orientation 6 means "rotate 90° clockwise to display": the left edge goes on top.
    assert close_to(img.getpixel((24, 5)), RED)
    assert close_to(img.getpixel((24, 58)), BLUE)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_exif_orientation_on_other_formats_gives_png(fmt: str) -> None:
    extra: dict[str, Any] = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(two_halves(), fmt, exif=exif_with(8), **extra)
    result = validate(data, filename="x.webp")
    assert result.content_type == "image/png"
    assert result.filename == "x.png"
    img = decode(result.data)
    assert img.size == (48, 64)
    assert len(img.getexif()) == 0
    # Orientation 8 means "rotate 90° counter-clockwise": the left edge goes to the bottom.
    assert close_to(img.getpixel((24, 58)), RED, tolerance=5)


def test_identity_orientation_passes_through() -> None:
    data = encode(solid(), "JPEG", exif=exif_with(1))
    result = validate(data).data
    # Not re-encoded: the same compressed image, only the EXIF block is gone.
    assert decode(result).tobytes() == decode(data).tobytes()
    assert len(data) - len(result) > 0 and not decode(result).getexif()


def test_cmyk_jpeg_is_converted_to_rgb_jpeg() -> None:
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    result = validate(data)
    img = decode(result.data)
    assert (img.format, img.mode, result.content_type) == ("JPEG", "RGB", "image/jpeg")


@pytest.mark.parametrize(
    ("given_name", "expected"),
    [
        ("../../etc/passwd", "passwd.png"),
        ("C:\\Users\\me\\cat.jpeg", "cat.png"),
        ("", "image.png"),
        (".hidden", "hidden.png"),
        ("weird <name>\n.png", "weird_name.png"),
        ("photo.tar.gz", "photo.tar.png"),
    ],
)
def test_filename_is_sanitised_and_extension_follows_content(
    given_name: str, expected: str
) -> None:
    assert validate(encode(solid(), "PNG"), filename=given_name).filename == expected


# --- rejected inputs -------------------------------------------------------------------

SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
HTML = b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(random.Random(1).randbytes(3000), id="random"),
        pytest.param(b"", id="empty"),
        pytest.param(b"just some notes\n" * 20, id="text"),
        pytest.param(SVG, id="svg"),
        pytest.param(HTML, id="html"),
        pytest.param(encode(solid(), "BMP"), id="bmp"),
        pytest.param(encode(solid(), "TIFF"), id="tiff"),
        pytest.param(b"\x89PNG\r\n\x1a\n", id="png-magic-only"),
        pytest.param(b"\xff\xd8\xff\xe0", id="jpeg-magic-only"),
    ],
)
def test_non_images_and_unaccepted_formats_are_rejected(data: bytes) -> None:
    with pytest.raises(UserInputError) as info:
        validate(data, filename="cat.png")
    assert FORMATS_PHRASE in info.value.user_message


def test_unaccepted_format_is_named() -> None:
    assert "BMP" in rejection(encode(solid(), "BMP"))


def test_undecodable_message() -> None:
    with pytest.raises(UserInputError) as info:
        validate(b"hello")
    assert "could not be read as an image" in info.value.user_message


def test_accepted_formats_can_be_narrowed() -> None:
    with pytest.raises(UserInputError) as info:
        validate(encode(solid(), "GIF"), accepted_formats=frozenset({"jpeg", "png"}))
    assert "JPEG or PNG" in info.value.user_message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_images_are_rejected(fmt: str) -> None:
    data = encode(noise((128, 128)), fmt)
    assert "could not be read" in rejection(data[: len(data) // 2])


def test_too_many_bytes_rejected_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded despite the byte limit")

    monkeypatch.setattr(Image, "open", no_decoding)
    with pytest.raises(UserInputError) as info:
        validate(b"\0" * 2_345_678, max_bytes=1 * MB)
    assert info.value.user_message == "The image is 2.3 MB; the limit is 1 MB."


def test_pixel_cap_checked_before_load(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.new("1", (3000, 3000)), "PNG")

    def no_load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("load() called on an image over the pixel cap")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_load)
    with pytest.raises(UserInputError) as info:
        validate(data, max_pixels=4 * MB)
    assert info.value.user_message == (
        "The image is 9.0 megapixels (3000×3000); the limit is 4 megapixels."
    )


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """A PNG of a few hundred KB whose header claims 30000×30000 (900 megapixels)."""
    data = encode(Image.new("1", (30000, 30000)), "PNG")
    assert len(data) < 1 * MB
    return data


def test_bomb_rejected_fast(bomb_png: bytes) -> None:
    start = time.perf_counter()
    with pytest.raises(UserInputError) as info:
        validate(bomb_png)
    assert time.perf_counter() - start < 1.0
    assert "900.0 megapixels" in info.value.user_message
    assert "the limit is 25 megapixels" in info.value.user_message


def test_pillow_bomb_error_becomes_user_error(bomb_png: bytes) -> None:
    # Our cap is out of the way: Pillow's DecompressionBombError (>2× its limit) fires.
    assert 2 * (Image.MAX_IMAGE_PIXELS or 0) < 30000 * 30000
    with pytest.raises(UserInputError) as info:
        validate(bomb_png, max_pixels=10**12)
    assert "900.0 megapixels" in info.value.user_message


def test_pillow_bomb_warning_becomes_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Between Pillow's limit and twice it Pillow only warns; that must still reject.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = encode(solid(size=(40, 40)), "PNG")
    assert "megapixels" in rejection(data, max_pixels=10**12)


def test_no_global_state_leaks(bomb_png: bytes) -> None:
    filters_before = list(warnings.filters)
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(UserInputError):
        validate(bomb_png, max_pixels=10**12)
    validate(encode(solid(), "PNG"))
    assert warnings.filters == filters_before
    assert limit_before == Image.MAX_IMAGE_PIXELS
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_concurrent_validation_from_threads(bomb_png: bytes) -> None:
    # The caller runs validation in worker threads; the warnings guard must not leak.
    filters_before = list(warnings.filters)
    inputs = [bomb_png, animated("GIF"), encode(solid(), "JPEG", exif=exif_with(6))] * 4

    def outcome(data: bytes) -> str:
        try:
            return validate(data, max_pixels=10**12).content_type
        except UserInputError:
            return "rejected"

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(outcome, inputs))
    assert results == ["rejected", "image/png", "image/jpeg"] * 4
    assert warnings.filters == filters_before


def test_reencoded_input_over_byte_limit_is_fitted() -> None:
    # A noisy GIF becomes a bigger PNG; it must still fit the limit it was sent under.
    data = encode(noise((300, 300)).quantize(256), "GIF")
    result = validate(data, max_bytes=len(data))
    assert len(result.data) <= len(data)
    assert decode(result.data).size[0] > 0


# --- outputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("PNG", OutputImageInfo("image/png", "png", 64, 48)),
        ("JPEG", OutputImageInfo("image/jpeg", "jpg", 64, 48)),
        ("WEBP", OutputImageInfo("image/webp", "webp", 64, 48)),
    ],
)
def test_inspect_output(fmt: str, expected: OutputImageInfo) -> None:
    assert inspect_output_image(encode(solid(), fmt), **LIMITS) == expected


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"<html>502 Bad Gateway</html>", id="html"),
        pytest.param(b"", id="empty"),
        pytest.param(encode(noise((64, 64)), "PNG")[:500], id="truncated"),
        pytest.param(encode(solid(), "GIF"), id="gif"),
    ],
)
def test_damaged_output_is_provider_unavailable(data: bytes) -> None:
    with pytest.raises(ProviderUnavailable) as info:
        inspect_output_image(data, **LIMITS)
    assert info.value.user_message == "The image service returned a damaged image."
    assert info.value.retryable is False


def _flip_inside_idat(data: bytes) -> bytes:
    # One changed byte in the middle of the pixel data: the header still reads fine.
    start = data.index(b"IDAT") + 4
    middle = start + (len(data) - 12 - start) // 2
    return data[:middle] + bytes([data[middle] ^ 0x5A]) + data[middle + 1 :]


def _without_iend(data: bytes) -> bytes:
    assert data.endswith(b"IEND\xaeB`\x82")
    return data[:-12]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_flip_inside_idat(encode(noise((64, 64)), "PNG")), id="png-altered-pixels"),
        pytest.param(_without_iend(encode(noise((64, 64)), "PNG")), id="png-without-end"),
        pytest.param(encode(noise((64, 64)), "JPEG")[:-600], id="jpeg-truncated"),
    ],
)
def test_damage_behind_a_good_header_is_caught(data: bytes) -> None:
    # The output's pixels are not decoded when the format can prove its own integrity
    # (PNG's chunk CRCs): a readable header must not be taken for a whole image.
    assert Image.open(io.BytesIO(data)).size == (64, 64)
    with pytest.raises(ProviderUnavailable) as info:
        inspect_output_image(data, **LIMITS)
    assert info.value.user_message == "The image service returned a damaged image."


def test_output_over_limits_is_provider_unavailable(bomb_png: bytes) -> None:
    data = encode(solid(), "PNG")
    with pytest.raises(ProviderUnavailable):
        inspect_output_image(data, max_bytes=len(data) - 1, max_pixels=25 * MB)
    with pytest.raises(ProviderUnavailable):
        inspect_output_image(bomb_png, **LIMITS)


def test_fit_to_byte_limit_shrinks_noisy_png() -> None:
    data = encode(noise((512, 512)), "PNG")
    limit = 60_000
    assert len(data) > limit
    out, content_type = fit_to_byte_limit(data, max_bytes=limit)
    assert len(out) <= limit
    assert content_type == "image/jpeg"
    img = decode(out)
    assert img.format == "JPEG"
    assert 0 < img.width <= 512


def test_fit_to_byte_limit_flattens_alpha() -> None:
    img = noise((256, 256)).convert("RGBA")
    img.putalpha(128)
    data = encode(img, "PNG")
    out, content_type = fit_to_byte_limit(data, max_bytes=len(data) // 3)
    assert content_type == "image/jpeg"
    assert decode(out).mode == "RGB"


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]
)
def test_fit_to_byte_limit_leaves_small_images_alone(fmt: str, content_type: str) -> None:
    data = encode(solid(), fmt)
    assert fit_to_byte_limit(data, max_bytes=len(data)) == (data, content_type)


def test_fit_to_byte_limit_rejects_garbage() -> None:
    with pytest.raises(ProviderUnavailable):
        fit_to_byte_limit(b"not an image", max_bytes=5)


# --- property tests --------------------------------------------------------------------


def _samples() -> list[bytes]:
    small = noise((16, 12), seed=3)
    return [
        encode(small, "PNG"),
        encode(small, "JPEG", quality=80),
        encode(small, "JPEG", exif=exif_with(6)),
        encode(small, "WEBP"),
        encode(small.quantize(16), "GIF"),
        animated("GIF"),
        animated("PNG"),
        animated("WEBP"),
    ]


SAMPLES = _samples()
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"RIFF\x00\x01\x00\x00WEBPVP8 "]
PROPERTY_LIMITS: dict[str, Any] = {"max_bytes": 200_000, "max_pixels": 1 * MB}
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def only_user_errors(data: bytes) -> None:
    try:
        result = validate_input_image(data, filename="f", **PROPERTY_LIMITS)
    except UserInputError as exc:
        assert exc.user_message
        return
    assert result.content_type in ("image/jpeg", "image/png", "image/webp")
    decode(result.data)


def only_provider_errors(data: bytes) -> None:
    try:
        inspect_output_image(data, **PROPERTY_LIMITS)
    except ProviderUnavailable as exc:
        assert exc.retryable is False


@PROPERTY_SETTINGS
@given(st.one_of(st.binary(max_size=2048), st.tuples(st.sampled_from(MAGIC), st.binary())))
def test_arbitrary_bytes_only_raise_user_errors(data: bytes | tuple[bytes, bytes]) -> None:
    if isinstance(data, tuple):
        data = data[0] + data[1]
    only_user_errors(data)
    only_provider_errors(data)


@PROPERTY_SETTINGS
@given(
    sample=st.sampled_from(SAMPLES),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_mutated_images_only_raise_user_errors(
    sample: bytes, flips: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(sample)
    for position, xor in flips:
        data[position % len(data)] ^= xor
    if cut is not None:
        del data[cut % len(data) :]
    only_user_errors(bytes(data))
    only_provider_errors(bytes(data))


def test_accepted_formats_constant() -> None:
    assert frozenset({"jpeg", "png", "gif", "webp"}) == ACCEPTED_FORMATS


# -- metadata that must not travel to the provider ------------------------------------


def _photo_with_gps(fmt: str) -> bytes:
    image = Image.new("RGB", (64, 48), (120, 30, 200))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}  # GPS: latitude
    buffer = io.BytesIO()
    options: dict[str, object] = {"exif": exif}
    if fmt == "PNG":
        from PIL import PngImagePlugin

        text = PngImagePlugin.PngInfo()
        text.add_text("Location", "52.52N 13.40E")
        options["pnginfo"] = text
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_location_metadata_is_stripped_without_reencoding(fmt: str) -> None:
    original = _photo_with_gps(fmt)
    with Image.open(io.BytesIO(original)) as before:
        assert before.getexif()  # the fixture really carries EXIF
        pixels = before.convert("RGB").tobytes()
    result = validate_input_image(
        original, filename="holiday", max_bytes=10_000_000, max_pixels=10_000_000
    )
    assert b"PhoneMaker" not in result.data and b"52.52N" not in result.data
    with Image.open(io.BytesIO(result.data)) as after:
        assert not after.getexif()
        assert after.format == fmt
        assert after.convert("RGB").tobytes() == pixels  # not re-encoded


def test_jpeg_colour_profile_survives_stripping() -> None:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(
        buffer, format="JPEG", icc_profile=profile, exif=Image.Exif()
    )
    result = validate_input_image(
        buffer.getvalue(), filename="a.jpg", max_bytes=10_000_000, max_pixels=10_000_000
    )
    with Image.open(io.BytesIO(result.data)) as after:
        assert after.info.get("icc_profile") == profile


def _with_fill_bytes(jpeg: bytes) -> bytes:
    """The same JPEG with 0xFF fill bytes before every marker after SOI, as some
    cameras and encoders write them (ITU T.81 B.1.1.2 allows any number)."""
    out = bytearray(jpeg[:2])
    position = 2
    while True:
        marker = jpeg[position + 1]
        out += b"\xff\xff\xff"  # fill bytes, then the marker itself
        out += jpeg[position + 1 : position + 2]
        if marker == 0xDA:
            out += jpeg[position + 2 :]
            return bytes(out)
        length = int.from_bytes(jpeg[position + 2 : position + 4], "big")
        out += jpeg[position + 2 : position + 2 + length]
        position += 2 + length


def test_jpeg_fill_bytes_before_markers_still_lose_their_gps() -> None:
    padded = _with_fill_bytes(_photo_with_gps("JPEG"))
    with Image.open(io.BytesIO(padded)) as before:
        assert before.getexif()  # Pillow reads the padded file and its EXIF
        pixels = before.convert("RGB").tobytes()
    result = validate_input_image(
        padded, filename="padded.jpg", max_bytes=10_000_000, max_pixels=10_000_000
    )
    assert b"PhoneMaker" not in result.data
    with Image.open(io.BytesIO(result.data)) as after:
        assert not after.getexif()
        assert after.convert("RGB").tobytes() == pixels  # stripped, not re-encoded


def test_a_container_the_stripper_cannot_walk_is_reencoded_not_sent_with_gps() -> None:
    original = _photo_with_gps("JPEG")
    # A junk byte between two segments: Pillow skips it and reads the photo, the
    # segment walker refuses it. Before, the original bytes (GPS included) were sent.
    app0_end = 2 + 2 + int.from_bytes(original[4:6], "big")
    assert original[2:4] == b"\xff\xe0"
    junk = original[:app0_end] + b"\x00" + original[app0_end:]
    with Image.open(io.BytesIO(junk)) as before:
        assert before.getexif()
    result = validate_input_image(
        junk, filename="odd.jpg", max_bytes=10_000_000, max_pixels=10_000_000
    )
    assert b"PhoneMaker" not in result.data
    with Image.open(io.BytesIO(result.data)) as after:
        assert after.format == "JPEG"
        assert after.size == (64, 48)
        assert not after.getexif()
