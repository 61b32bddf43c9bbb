"""The demo provider (``provider.name = "demo"``): offline, free, deterministic.

It exists so that an operator can wire Slack, Discord or the console end to end and
watch acknowledgements, progress, results, refunds and the ledger work before paying
any image service. It is not FLUX: it applies a few plain Pillow "looks" chosen from
the prompt's words (watercolor, sketch, night, warm, mono ...) to the input, or draws
the prompt on a card for text-to-image, and stamps every result "DEMO" so nobody takes
it for a real edit. The same input, prompt and seed always give the same bytes.

It behaves like a hosted provider where the pipeline can tell: a job runs for
``demo_seconds`` with step progress, can be canceled, and can be told to fail
(``demo_fail``, every ``demo_fail_every``-th job) in each way the pipeline handles.
Jobs live in memory: after a restart a demo job is reported failed (and refunded).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import re
import textwrap
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from bot.errors import ProviderUnavailable
from bot.i18n import _
from bot.providers.base import (
    PredictionState,
    PredictionStatus,
    ProviderCapabilities,
    ProviderRequest,
)

DEFAULT_BASE_URL = "http://demo.invalid"  # never contacted: ".invalid" cannot resolve
OUTPUT_SCHEME = "demo://"
STEPS = 8  # the progress shown while a demo job runs: "step 3 of 8"
LONG_EDGE = 768  # results are at most this big, so a demo job costs little CPU
_KEPT = 200  # finished demo jobs remembered for status and download


def sample_image() -> bytes:
    """The picture shipped with the bot, edited by ``kontext-bot console --demo``."""
    return (resources.files("bot.providers") / "demo_assets" / "sample.png").read_bytes()


# -- looks ------------------------------------------------------------------------------


def _tint(image: Image.Image, colour: tuple[int, int, int], amount: float) -> Image.Image:
    return Image.blend(image, Image.new("RGB", image.size, colour), amount)


def _watercolor(image: Image.Image) -> Image.Image:
    soft = image.filter(ImageFilter.ModeFilter(5)).filter(ImageFilter.SMOOTH_MORE)
    soft = ImageEnhance.Color(soft).enhance(1.3)
    return _tint(ImageOps.posterize(soft, 5), (250, 244, 230), 0.18)


def _sketch(image: Image.Image) -> Image.Image:
    grey = ImageOps.grayscale(image).filter(ImageFilter.CONTOUR)
    return ImageOps.autocontrast(grey).convert("RGB")


def _night(image: Image.Image) -> Image.Image:
    dark = ImageEnhance.Brightness(image).enhance(0.45)
    return _tint(dark, (20, 30, 90), 0.3)


def _warm(image: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(_tint(image, (255, 150, 50), 0.22)).enhance(1.05)


def _cold(image: Image.Image) -> Image.Image:
    return _tint(image, (80, 150, 255), 0.22)


def _mono(image: Image.Image) -> Image.Image:
    return ImageOps.autocontrast(ImageOps.grayscale(image)).convert("RGB")


def _sepia(image: Image.Image) -> Image.Image:
    return ImageOps.colorize(ImageOps.grayscale(image), (40, 26, 13), (255, 236, 200))


def _pixel(image: Image.Image) -> Image.Image:
    small = image.resize((max(1, image.width // 16), max(1, image.height // 16)))
    return small.resize(image.size, Image.Resampling.NEAREST)


def _blur(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(4))


def _invert(image: Image.Image) -> Image.Image:
    return ImageOps.invert(image)


def _poster(image: Image.Image) -> Image.Image:
    return ImageOps.posterize(ImageOps.autocontrast(image), 3)


@dataclass(frozen=True)
class Look:
    name: str
    words: tuple[str, ...]
    apply: Callable[[Image.Image], Image.Image]


# In this order when a prompt names several; the first word of each is its name.
LOOKS = (
    Look("watercolor", ("watercolor", "watercolour", "paint", "painting"), _watercolor),
    Look("sketch", ("sketch", "pencil", "drawing", "line art"), _sketch),
    Look("pixel", ("pixel", "8-bit", "8bit", "retro game"), _pixel),
    Look("blur", ("blur", "dream", "soft focus"), _blur),
    Look("mono", ("mono", "black and white", "grayscale", "greyscale", "noir"), _mono),
    Look("sepia", ("sepia", "vintage", "old photo"), _sepia),
    Look("night", ("night", "dark", "moon", "midnight"), _night),
    Look("warm", ("warm", "sunset", "golden", "autumn"), _warm),
    Look("cold", ("cold", "cool", "winter", "snow", "ice"), _cold),
    Look("invert", ("invert", "negative"), _invert),
)
DEFAULT_LOOK = Look("poster", (), _poster)


def looks_for(prompt: str) -> tuple[Look, ...]:
    """The looks a prompt asks for (by its words), or the poster look when none."""
    lowered = prompt.lower()
    chosen = tuple(
        look
        for look in LOOKS
        if any(re.search(rf"\b{re.escape(word)}\b", lowered) for word in look.words)
    )
    return chosen or (DEFAULT_LOOK,)


# -- drawing ----------------------------------------------------------------------------


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # a Pillow built without FreeType
        return ImageFont.load_default()


def _ratio_size(ratio: str | None, long_edge: int) -> tuple[int, int] | None:
    if not ratio or ":" not in ratio:
        return None
    width, height = (float(part) for part in ratio.split(":", 1))
    if width >= height:
        return long_edge, max(1, round(long_edge * height / width))
    return max(1, round(long_edge * width / height)), long_edge


def _card(prompt: str, seed: int, size: tuple[int, int]) -> Image.Image:
    """Text-to-image: the prompt written on a gradient whose colours come from the seed."""
    digest = hashlib.sha256(f"{seed}".encode()).digest()
    top, bottom = tuple(digest[0:3]), tuple(digest[3:6])
    card = Image.new("RGB", size)
    draw = ImageDraw.Draw(card)
    for y in range(size[1]):
        t = y / max(1, size[1] - 1)
        colour = tuple(int(a + (b - a) * t) // 2 + 64 for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (size[0], y)], fill=colour)
    font = _font(max(14, size[0] // 24))
    lines = textwrap.wrap(prompt, width=max(10, size[0] // max(8, size[0] // 40))) or [""]
    text = "\n".join(lines[:8])
    draw.multiline_text(
        (size[0] / 2, size[1] / 2), text, font=font, fill="white", anchor="mm", align="center"
    )
    return card


def _label(image: Image.Image, text: str) -> Image.Image:
    """The band that says it is a demo, so nobody mistakes it for a FLUX result."""
    labelled = image.copy()
    band = max(18, image.height // 14)
    draw = ImageDraw.Draw(labelled)
    draw.rectangle((0, image.height - band, image.width, image.height), fill=(0, 0, 0))
    draw.text(
        (8, image.height - band / 2),
        text,
        font=_font(max(10, band * 2 // 3)),
        fill=(255, 255, 0),
        anchor="lm",
    )
    return labelled


def render(request: ProviderRequest) -> bytes:
    """The demo result for a request: deterministic for the same input, prompt, options."""
    options = request.options
    seed = options.seed if options.seed is not None else 0
    ratio = options.aspect_ratio if options.aspect_ratio != "match_input_image" else None
    if request.images:
        with Image.open(io.BytesIO(request.images[0].data)) as opened:
            base = ImageOps.exif_transpose(opened).convert("RGB")
        base.thumbnail((LONG_EDGE, LONG_EDGE))
        wanted = _ratio_size(ratio, max(base.size))
        if wanted is not None:
            base = ImageOps.fit(base, wanted)
    else:
        base = _card(request.prompt, seed, _ratio_size(ratio, LONG_EDGE) or (LONG_EDGE, LONG_EDGE))
    looks = looks_for(request.prompt)
    for look in looks:
        base = look.apply(base)
    base = _label(base, f"DEMO · {' + '.join(look.name for look in looks)} · seed {seed}")
    out = io.BytesIO()
    if options.output_format == "jpg":
        base.save(out, "JPEG", quality=90)
    else:
        base.save(out, "PNG")
    return out.getvalue()


# -- the provider -----------------------------------------------------------------------


@dataclass
class _DemoJob:
    started: float
    failure: str
    result: bytes | None = None
    canceled: bool = False


class DemoProvider:
    """The ``Provider`` interface, answered from memory (see the module's docstring)."""

    name = "demo"
    # Nothing calls back: the pipeline polls, as it does for ComfyUI.
    sends_webhooks = False

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str = "",
        model: str = "demo",
        capabilities: ProviderCapabilities | None = None,
        request_timeout: float = 30.0,
        max_retries: int = 4,
        seconds: float = 2.0,
        fail: str = "",
        fail_every: int = 1,
        clock: Callable[[], float] = time.monotonic,
        **_ignored: Any,
    ) -> None:
        # The same constructor as the HTTP providers (bot.providers.factory builds every
        # provider alike); the URL, key and timeouts mean nothing offline.
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.capabilities = capabilities or ProviderCapabilities()
        self.seconds = seconds
        self.fail = fail
        self.fail_every = max(1, fail_every)
        self._clock = clock
        self._count = itertools.count(1)
        self._jobs: OrderedDict[str, _DemoJob] = OrderedDict()

    def __repr__(self) -> str:
        return f"DemoProvider(seconds={self.seconds}, fail={self.fail!r})"

    async def submit(self, request: ProviderRequest, *, idempotency_key: str) -> PredictionStatus:
        number = next(self._count)
        failure = self.fail if number % self.fail_every == 0 else ""
        if failure == "submit":
            raise ProviderUnavailable(
                _('The demo image service is down (provider.demo_fail = "submit").'),
                detail=f"demo job {number}: failure injected at submit",
            )
        prediction_id = "demo-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]
        result = await asyncio.to_thread(render, request)
        self._jobs[prediction_id] = _DemoJob(self._clock(), failure, result)
        self._jobs.move_to_end(prediction_id)
        while len(self._jobs) > _KEPT:
            self._jobs.popitem(last=False)
        return await self.status(prediction_id)

    async def status(self, prediction_id: str) -> PredictionStatus:
        job = self._jobs.get(prediction_id)
        if job is None:
            return PredictionStatus(
                prediction_id,
                PredictionState.FAILED,
                error="the demo provider keeps jobs in memory only; this one was lost",
            )
        if job.canceled:
            return PredictionStatus(prediction_id, PredictionState.CANCELED)
        elapsed = self._clock() - job.started
        if job.failure == "never" or elapsed < self.seconds:
            done = min(STEPS - 1, 1 + int(STEPS * elapsed / self.seconds)) if self.seconds else 1
            state = PredictionState.RUNNING if elapsed > 0 else PredictionState.PENDING
            return PredictionStatus(prediction_id, state, progress=(done, STEPS))
        if job.failure == "moderation":
            return PredictionStatus(
                prediction_id,
                PredictionState.MODERATED,
                error='demo safety filter (provider.demo_fail = "moderation")',
            )
        if job.failure == "failed":
            return PredictionStatus(
                prediction_id,
                PredictionState.FAILED,
                error='demo failure (provider.demo_fail = "failed")',
            )
        return PredictionStatus(
            prediction_id,
            PredictionState.SUCCEEDED,
            output_urls=(f"{OUTPUT_SCHEME}{prediction_id}",),
        )

    async def cancel(self, prediction_id: str) -> None:
        job = self._jobs.get(prediction_id)
        if job is not None:
            job.canceled = True

    async def fetch_output(self, url: str, *, max_bytes: int) -> bytes:
        job = self._jobs.get(url.removeprefix(OUTPUT_SCHEME))
        if not url.startswith(OUTPUT_SCHEME) or job is None or job.result is None:
            raise ProviderUnavailable(
                _("The demo result is gone (the demo provider keeps results in memory)."),
                detail=url,
            )
        if len(job.result) > max_bytes:
            raise ProviderUnavailable(
                _("The demo result is larger than images.max_output_bytes allows."),
                detail=f"{len(job.result)} > {max_bytes}",
            )
        return job.result

    async def aclose(self) -> None:
        """Nothing to release: no client, no connection."""
