"""What the provider fakes share: the script, the records, the prediction book, files.

Each provider's fake speaks its own API's shapes (paths, auth header, error bodies) on
top of this; the shared ``Script`` is what lets one contract suite drive them all.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from PIL import Image


@dataclass
class Script:
    """What the fake does; change fields at any time, also while requests run."""

    shape: str = "async"  # "async": pending then poll; "sync": finished in the create answer
    outcome: str = "succeeded"  # succeeded | failed | moderated | never
    polls_before_done: int = 1  # status reads answering "processing" before the outcome
    create_failures: list[int] = field(default_factory=list)  # HTTP codes, one per create
    status_failures: list[int] = field(default_factory=list)  # HTTP codes, one per poll
    output_failures: list[int] = field(default_factory=list)  # HTTP codes, one per download
    drop_create_answer: bool = False  # accept the create, then close without answering
    create_delay: float = 0.0  # seconds before answering a create
    status_html: bool = False  # answer polls with a 200 HTML maintenance page
    retry_after: str = "0"
    error_body: str = "The input is invalid"
    output_size: tuple[int, int] | None = None  # default: from aspect ratio / input
    # Working time per prediction in seconds (e.g. a log-normal sampler), instead of
    # polls_before_done; a webhook URL in the create is called when it is over.
    duration: Callable[[], float] | None = None
    # Keep each create's input bytes in ``received`` (tests compare them); benchmarks
    # turn it off so the fake's records do not count as the bot's memory.
    keep_inputs: bool = True
    noisy_output: bool = False  # random pixels: an output that does not compress
    # Where a result download is sent instead of the image: ``302 Location:`` this URL
    # with ``{id}`` filled in (e.g. a ``FileHost`` on another port). None: the image.
    output_location: str | None = None
    # A cancel arrives after the prediction finished: answered as accepted, but the
    # prediction keeps its outcome (a result that wins the race with a cancel).
    cancel_ignored: bool = False


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    model: str | None = None
    input: dict[str, Any] | None = None
    file_bytes: bytes | None = None
    file_content_type: str | None = None
    file_field: str | None = None
    file_name: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # other form or body fields
    # Every image of the create in order: (field, file name, content type, bytes); the
    # ``file_*`` fields above describe the first.
    files: list[tuple[str, str | None, str | None, bytes]] = field(default_factory=list)


@dataclass
class Prediction:
    id: str
    input: dict[str, Any]
    outcome: str
    polls_left: int
    size: tuple[int, int]
    canceled: bool = False
    created_at: float = field(default_factory=time.monotonic)
    duration: float | None = None  # seconds of provider work, when scripted by time
    webhook: str | None = None

    def still_running(self) -> bool:
        """Pending by time when a duration is scripted, else for ``polls_left`` reads."""
        if self.duration is not None:
            if time.monotonic() < self.created_at + self.duration:
                return True
            self.polls_left = 0  # so that answers built from polls_left agree
            return False
        if self.polls_left > 0:
            self.polls_left -= 1
            return True
        return False


Redirect = tuple[int, str | None]  # (status, Location or None for a 3xx without one)


def redirect_table(
    redirects: dict[str, Redirect], record: Callable[[web.Request], object]
) -> Middleware:
    """A middleware that answers any path (with its query) listed in ``redirects`` with
    that redirect before routing, recording the request: how the tests build same-host
    hops, cross-host hops, loops and long chains on any fake."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        answer = redirects.get(request.path_qs)
        if answer is None:
            return await handler(request)
        record(request)
        status, location = answer
        headers = {"Location": location} if location is not None else {}
        return web.Response(status=status, headers=headers)

    return middleware


def png_bytes(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


class FileHost:
    """Another host (127.0.0.1 on its own port) that result URLs redirect to, as a CDN or
    signed storage: it serves a PNG at ``/files/{name}``, follows its own ``redirects``
    table, and records every request with its headers, so a test can show that no
    provider key ever reached it."""

    color = (10, 160, 90)

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.redirects: dict[str, Redirect] = {}
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def _record(self, request: web.Request) -> None:
        self.received.append(Received(request.method, request.path_qs, dict(request.headers)))

    async def _file(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.Response(body=png_bytes((20, 10), self.color), content_type="image/png")

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[redirect_table(self.redirects, self._record)])
        app.router.add_get("/files/{name}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{int(self._runner.addresses[0][1])}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class FakeProvider(ABC):
    id_prefix = "pred_"
    output_color = (200, 120, 40)

    def __init__(self, api_key: str, script: Script | None = None) -> None:
        self.api_key = api_key
        self.script = script or Script()
        self.received: list[Received] = []
        self.predictions: dict[str, Prediction] = {}
        self.created = asyncio.Event()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        # Paths (with query) answered with a redirect instead of their route.
        self.redirects: dict[str, Redirect] = {}
        self.base_url = ""
        self.port = 0

    # -- what each API defines -----------------------------------------------------------

    @abstractmethod
    def add_routes(self, app: web.Application) -> None: ...

    @abstractmethod
    def failure(self, code: int) -> web.Response:
        """This API's error answer for an HTTP status code."""

    def authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, port: int = 0) -> str:
        app = web.Application(
            client_max_size=64 * 1024 * 1024,
            middlewares=[redirect_table(self.redirects, self.record)],
        )
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.port = int(self._runner.addresses[0][1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        return self.base_url

    async def _call_webhook(self, prediction: Prediction) -> None:
        """Tell the bot the prediction is done, as the provider's callback does."""
        assert prediction.duration is not None and prediction.webhook
        await asyncio.sleep(prediction.duration)
        body = {"id": prediction.id, "status": "succeeded"}
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(prediction.webhook, json=body) as answer,
            ):
                await answer.read()
        except aiohttp.ClientError:
            pass  # a lost webhook: the bot finds out by polling

    async def stop(self) -> None:
        for task in list(self._webhook_tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- shared steps of the handlers ---------------------------------------------------------

    def record(self, request: web.Request, **extra: Any) -> Received:
        if not self.script.keep_inputs:
            extra.pop("file_bytes", None)
        item = Received(request.method, request.path, dict(request.headers), **extra)
        self.received.append(item)
        return item

    async def refuse_create(
        self, request: web.Request, inputs: dict[str, Any] | None, *, needs_prompt: bool = True
    ) -> web.Response | None:
        """The scripted gate every create passes: auth, delay, failures, a prompt (an
        upscaler reads none: ``needs_prompt=False``)."""
        if not self.authorised(request):
            return self.failure(401)
        if self.script.create_delay:
            await asyncio.sleep(self.script.create_delay)
        if self.script.create_failures:
            return self.failure(self.script.create_failures.pop(0))
        if not isinstance(inputs, dict) or (needs_prompt and not inputs.get("prompt")):
            return self.failure(422)
        return None

    def new_prediction(
        self,
        request: web.Request,
        inputs: dict[str, Any],
        file_bytes: bytes | None,
        default_size: tuple[int, int] = (64, 48),
        webhook: str | None = None,
        scale: float | None = None,
    ) -> Prediction:
        """Book a prediction (a quarter of the input's size; an upscaler's ``scale``
        times it), or drop the connection unanswered when scripted to, as a create whose
        answer was lost."""
        size = default_size
        if file_bytes:
            try:
                with Image.open(io.BytesIO(file_bytes)) as image:
                    if scale is not None:
                        size = (round(image.width * scale), round(image.height * scale))
                    else:
                        size = (max(8, image.width // 4), max(8, image.height // 4))
            except OSError:
                pass
        prediction = Prediction(
            id=f"{self.id_prefix}{next(self._ids):04d}",
            input=inputs,
            outcome=self.script.outcome,
            polls_left=self.script.polls_before_done,
            size=self.script.output_size or size,
            duration=self.script.duration() if self.script.duration else None,
            webhook=webhook,
        )
        self.predictions[prediction.id] = prediction
        if prediction.duration is not None and webhook:
            task = asyncio.get_running_loop().create_task(self._call_webhook(prediction))
            self._webhook_tasks.add(task)
            task.add_done_callback(self._webhook_tasks.discard)
        self.created.set()
        if self.script.drop_create_answer:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # aiohttp drops the connection unanswered
        return prediction

    def refuse_status(self, request: web.Request) -> web.Response | None:
        if not self.authorised(request):
            return self.failure(401)
        if self.script.status_failures:
            return self.failure(self.script.status_failures.pop(0))
        if self.script.status_html:
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        return None

    async def serve_output(self, request: web.Request) -> web.Response:
        self.record(request)
        if self.script.output_failures:
            return self.failure(self.script.output_failures.pop(0))
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return web.Response(status=404)
        if self.script.output_location is not None:
            location = self.script.output_location.format(id=prediction.id)
            return web.Response(status=302, headers={"Location": location})
        if self.script.noisy_output:
            buffer = io.BytesIO()
            width, height = prediction.size
            noise = random.Random(prediction.id).randbytes(width * height * 3)
            Image.frombytes("RGB", prediction.size, noise).save(buffer, format="PNG")
            return web.Response(body=buffer.getvalue(), content_type="image/png")
        body = png_bytes(prediction.size, self.output_color)
        return web.Response(body=body, content_type="image/png")
