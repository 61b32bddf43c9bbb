"""Checks and normalisation of images that cross the bot's borders.

Inputs come from strangers on chat platforms and a small file can expand to gigabytes of
pixels; outputs come from the provider and may be broken or too large to post. The two
directions differ in whose fault a bad image is (``UserInputError`` before any credit is
reserved, ``ProviderUnavailable`` and a refund after), so they live in separate modules
over one shared, careful decoder:

- ``codec``: decode untrusted bytes under a pixel cap; re-encode without metadata.
- ``metadata``: drop EXIF/XMP/IPTC/text from images that otherwise pass through as they are.
- ``inputs``: ``validate_input_image``, the user's attachment becomes an ``InputImage``.
- ``outputs``: ``inspect_output_image``, the provider's result checked before anyone pays.
- ``fitting``: ``fit_upload``, a result made to fit a platform's upload limit (never raises).

Callers import from this package; its modules are the layout, not the interface.
All functions are synchronous and CPU-bound: callers run them in a worker thread.
"""

from bot.images.fitting import Fitted, fit_to_byte_limit, fit_upload, pixel_size
from bot.images.inputs import ACCEPTED_FORMATS, formats_phrase, validate_input_image
from bot.images.metadata import strip_metadata
from bot.images.outputs import OutputImageInfo, inspect_output_image

__all__ = [
    "ACCEPTED_FORMATS",
    "Fitted",
    "OutputImageInfo",
    "fit_to_byte_limit",
    "fit_upload",
    "formats_phrase",
    "inspect_output_image",
    "pixel_size",
    "strip_metadata",
    "validate_input_image",
]
