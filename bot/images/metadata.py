"""Dropping where-and-when metadata from images that otherwise pass through untouched.

A photo is passed to the provider byte for byte whenever that is safe, since every
re-encode loses quality; but its EXIF GPS, XMP, IPTC and text chunks have no business at a
third-party image service. This walks the container (JPEG segments, PNG chunks, WebP RIFF
chunks) and leaves the pixels and colour profiles alone.
"""

from __future__ import annotations

import io

from PIL import Image

from bot.images.codec import bomb_guard, normalise_format

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
        if data[position + 1] == 0xFF:  # a fill byte: any marker may follow some (B.1.1.2)
            position += 1
            continue
        marker = data[position + 1]
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length field
            out += data[position : position + 2]
            position += 2
            continue
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


def without_metadata(data: bytes, fmt: str) -> bytes:
    """The image without its metadata: stripped bytes when they still read as the same
    image, else a re-encode without metadata, never the original with its GPS.

    The caller has decoded ``data`` in full already, and the stripped file keeps its image
    data byte for byte (JPEG's scans, PNG's IDAT chunks, WebP's bitstream chunks), so it
    is not decoded a second time (3-4 ms of CPU for a ~1 MB photo). What could go wrong
    is the container around that data, so that is what is checked: Pillow reads both
    headers to the same format, size and mode, and for PNG ``verify()`` walks every
    chunk to IEND with its CRC. A file with nothing to drop is returned as it is. A
    container this code cannot walk is re-encoded (one generation of quality lost) rather
    than sent as it came: where the photo was taken is not the provider's business.
    """
    try:
        stripped = strip_metadata(data, fmt)
        if stripped == data:
            return data
        with (
            bomb_guard(),
            Image.open(io.BytesIO(data)) as original,
            Image.open(io.BytesIO(stripped)) as check,
        ):
            if _header(check) != _header(original):
                return _reencoded(data, fmt)
            if fmt == "png":
                check.verify()
    except Exception:
        return _reencoded(data, fmt)
    return stripped


def _reencoded(data: bytes, fmt: str) -> bytes:
    """The pixels in the same format with the colour profile and nothing else kept."""
    with bomb_guard(), Image.open(io.BytesIO(data)) as img:
        img.load()
        options: dict[str, object] = {}
        if profile := img.info.get("icc_profile"):
            options["icc_profile"] = profile
        if fmt in ("jpeg", "webp"):
            options["quality"] = 95
        buffer = io.BytesIO()
        img.save(buffer, format=fmt.upper(), **options)
        return buffer.getvalue()


def _header(img: Image.Image) -> tuple[str, tuple[int, int], str]:
    return normalise_format(img.format), img.size, img.mode
