"""A loopback fake of the core.today predictions API, speaking its wire protocol.

Tests point the real ``CoreTodayProvider`` (real httpx) at ``fake.base_url``. The fake
records everything it receives and can be scripted to fail in the ways the real service
does. It also runs as its own process for subprocess tests:

    python -m tests.fakes.coretoday --port-file PATH [--script JSON]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from PIL import Image

DEFAULT_KEY = "cdt_test_key_0123456789abcdef"


@dataclass
class Script:
    """What the fake does; change fields at any time, also while requests run."""

    shape: str = "async"  # "async": {id, status: pending} then poll; "sync": finished at once
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


@dataclass
class Prediction:
    id: str
    input: dict[str, Any]
    outcome: str
    polls_left: int
    size: tuple[int, int]
    canceled: bool = False


_RATIO_SIZES = {"1:1": (64, 64), "16:9": (112, 63), "9:16": (63, 112), "4:3": (80, 60)}


class FakeCoreToday:
    def __init__(self, api_key: str = DEFAULT_KEY, script: Script | None = None) -> None:
        self.api_key = api_key
        self.script = script or Script()
        self.received: list[Received] = []
        self.predictions: dict[str, Prediction] = {}
        self.created = asyncio.Event()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- counts tests assert on --------------------------------------------------------

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for r in self.received if r.method == method and r.path.startswith(prefix))

    @property
    def creates(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST"]

    @property
    def polls(self) -> int:
        return sum(
            1 for r in self.received if r.method == "GET" and r.path.startswith("/v1/predictions/")
        )

    @property
    def cancels(self) -> int:
        return self.count("DELETE", "/v1/predictions/")

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> FakeCoreToday:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/predictions/upload", self._create_upload)
        app.router.add_post("/v1/predictions", self._create_json)
        app.router.add_get("/v1/predictions/{id}", self._status)
        app.router.add_delete("/v1/predictions/{id}", self._cancel)
        app.router.add_get("/files/{id}.png", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        real_port = sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{real_port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers --------------------------------------------------------------------

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _record(self, request: web.Request, **extra: Any) -> Received:
        item = Received(request.method, request.path, dict(request.headers), **extra)
        self.received.append(item)
        return item

    async def _create_upload(self, request: web.Request) -> web.StreamResponse:
        fields: dict[str, Any] = {}
        file_bytes = None
        file_type = file_field = file_name = None
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            if part.filename:
                file_field, file_name = part.name, part.filename
                file_type = part.headers.get("Content-Type")
                file_bytes = bytes(await part.read())
            else:
                fields[str(part.name)] = await part.text()
        try:
            inputs = json.loads(fields.get("input", "{}"))
        except json.JSONDecodeError:
            inputs = None
        self._record(
            request,
            model=fields.get("model"),
            input=inputs,
            file_bytes=file_bytes,
            file_content_type=file_type,
            file_field=file_field,
            file_name=file_name,
            fields={k: v for k, v in fields.items() if k not in ("model", "input")},
        )
        size = (64, 48)
        if file_bytes:
            try:
                with Image.open(io.BytesIO(file_bytes)) as image:
                    size = (max(8, image.width // 4), max(8, image.height // 4))
            except OSError:
                pass
        return await self._create(request, inputs, size, has_file=file_bytes is not None)

    async def _create_json(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = {}
        inputs = body.get("input") if isinstance(body, dict) else None
        extra = (
            {k: v for k, v in body.items() if k not in ("model", "input")}
            if isinstance(body, dict)
            else {}
        )
        self._record(
            request,
            model=body.get("model") if isinstance(body, dict) else None,
            input=inputs,
            fields=extra,
        )
        ratio = (inputs or {}).get("aspect_ratio", "1:1")
        return await self._create(
            request, inputs, _RATIO_SIZES.get(ratio, (64, 64)), has_file=False
        )

    async def _create(
        self,
        request: web.Request,
        inputs: dict[str, Any] | None,
        size: tuple[int, int],
        has_file: bool,
    ) -> web.StreamResponse:
        script = self.script
        if not self._authorised(request):
            return web.json_response({"detail": "Invalid API key"}, status=401)
        if script.create_delay:
            await asyncio.sleep(script.create_delay)
        if script.create_failures:
            code = script.create_failures.pop(0)
            return self._failure(code)
        if not isinstance(inputs, dict) or not inputs.get("prompt"):
            return web.json_response({"detail": "input.prompt is required"}, status=422)
        prediction = Prediction(
            id=f"pred_{next(self._ids):04d}",
            input=inputs,
            outcome=script.outcome,
            polls_left=script.polls_before_done,
            size=script.output_size or size,
        )
        self.predictions[prediction.id] = prediction
        self.created.set()
        if script.drop_create_answer:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # aiohttp drops the connection unanswered
        if script.shape == "sync" and prediction.outcome == "succeeded":
            return web.json_response(
                {"job_id": prediction.id, "status": "completed", "result": self._url(prediction)}
            )
        return web.json_response({"id": prediction.id, "status": "pending"}, status=201)

    def _failure(self, code: int) -> web.Response:
        headers = {"Retry-After": self.script.retry_after} if code in (429, 503) else {}
        messages = {
            401: "Invalid API key",
            402: "Insufficient credits",
            422: self.script.error_body,
            429: "Too many requests",
        }
        return web.json_response(
            {"detail": messages.get(code, "Internal server error")}, status=code, headers=headers
        )

    def _url(self, prediction: Prediction) -> str:
        return f"{self.base_url}/files/{prediction.id}.png"

    async def _status(self, request: web.Request) -> web.Response:
        self._record(request)
        if not self._authorised(request):
            return web.json_response({"detail": "Invalid API key"}, status=401)
        if self.script.status_failures:
            return self._failure(self.script.status_failures.pop(0))
        if self.script.status_html:
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return web.json_response({"detail": "Not found"}, status=404)
        body: dict[str, Any] = {"id": prediction.id, "input": prediction.input}
        if prediction.canceled:
            body["status"] = "canceled"
        elif prediction.outcome == "never" or prediction.polls_left > 0:
            prediction.polls_left -= 1
            body["status"] = "processing"
        elif prediction.outcome == "succeeded":
            body.update(status="succeeded", output=[self._url(prediction)])
        elif prediction.outcome == "moderated":
            body.update(status="failed", error="NSFW content detected in the output image")
        else:
            body.update(status="failed", error="Model crashed: CUDA out of memory")
        return web.json_response(body)

    async def _cancel(self, request: web.Request) -> web.Response:
        self._record(request)
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return web.json_response({"detail": "Not found"}, status=404)
        prediction.canceled = True
        return web.json_response({"id": prediction.id, "status": "canceled"})

    async def _file(self, request: web.Request) -> web.Response:
        self._record(request)
        if self.script.output_failures:
            return self._failure(self.script.output_failures.pop(0))
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return web.Response(status=404)
        image = Image.new("RGB", prediction.size, (200, 120, 40))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return web.Response(body=buffer.getvalue(), content_type="image/png")


async def _serve(port_file: Path, script: dict[str, Any], api_key: str) -> None:
    fake = FakeCoreToday(api_key=api_key, script=Script(**script))
    await fake.start()
    port_file.write_text(fake.base_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log_file = port_file.with_suffix(".log")
    try:
        while not stop.is_set():
            # Keep a journal for the test that started us (it cannot see our memory).
            log_file.write_text(
                json.dumps(
                    [
                        {
                            "method": r.method,
                            "path": r.path,
                            "model": r.model,
                            "input": r.input,
                            "file_field": r.file_field,
                            "file_size": len(r.file_bytes or b""),
                            "authorization": r.headers.get("Authorization"),
                        }
                        for r in fake.received
                    ]
                )
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.05)
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--script", default="{}", help="JSON of Script fields")
    parser.add_argument("--api-key", default=DEFAULT_KEY)
    args = parser.parse_args()
    asyncio.run(_serve(args.port_file, json.loads(args.script), args.api_key))


if __name__ == "__main__":
    main()
