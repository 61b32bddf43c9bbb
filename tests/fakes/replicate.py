"""A loopback fake of Replicate's predictions API (``Prefer: wait``, problem+json errors).

Same ``Script`` as the other provider fakes. ``shape = "sync"`` plays Replicate holding
the create (``Prefer: wait``) and answering a finished prediction; otherwise the create
answers ``starting`` and polls move it through ``processing`` to its outcome.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import itertools
import json
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fakes.coretoday import Prediction, Received, Script

DEFAULT_KEY = "r8_test_token_0123456789abcdefghij"


class FakeReplicate:
    def __init__(self, api_key: str = DEFAULT_KEY, script: Script | None = None) -> None:
        self.api_key = api_key
        self.script = script or Script()
        self.received: list[Received] = []
        self.predictions: dict[str, Prediction] = {}
        self.created = asyncio.Event()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    @property
    def creates(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST" and r.path.endswith("/predictions")]

    @property
    def polls(self) -> int:
        return sum(1 for r in self.received if r.method == "GET" and "/v1/predictions/" in r.path)

    @property
    def cancels(self) -> int:
        return sum(1 for r in self.received if r.path.endswith("/cancel"))

    async def __aenter__(self) -> FakeReplicate:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/models/{owner}/{name}/predictions", self._create)
        app.router.add_get("/v1/predictions/{id}", self._status)
        app.router.add_post("/v1/predictions/{id}/cancel", self._cancel)
        app.router.add_get("/files/{id}.png", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _problem(self, code: int) -> web.Response:
        titles = {
            401: "Unauthenticated",
            402: "Insufficient credit",
            404: "Not found",
            422: "Invalid input",
            429: "Request was throttled",
        }
        details = {
            401: "You did not pass a valid authentication token",
            402: "You have insufficient credit to run this model.",
            404: "The requested resource could not be found.",
            422: self.script.error_body,
            429: "Request was throttled. Expected available in 1 second.",
        }
        headers = {"Retry-After": self.script.retry_after} if code in (429, 503) else {}
        body = {
            "type": "about:blank",
            "title": titles.get(code, "Server error"),
            "status": code,
            "detail": details.get(code, "Internal server error"),
        }
        return web.Response(
            text=json.dumps(body),
            status=code,
            headers=headers,
            content_type="application/problem+json",
        )

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _body(self, prediction: Prediction) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": prediction.id,
            "model": "black-forest-labs/flux-kontext-pro",
            "input": prediction.input,
            "error": None,
            "output": None,
            "logs": "",
            "urls": {
                "get": f"{self.base_url}/v1/predictions/{prediction.id}",
                "cancel": f"{self.base_url}/v1/predictions/{prediction.id}/cancel",
            },
        }
        if prediction.canceled:
            body["status"] = "canceled"
        elif prediction.outcome == "never" or prediction.polls_left > 0:
            body["status"] = "processing"
        elif prediction.outcome == "succeeded":
            body.update(status="succeeded", output=f"{self.base_url}/files/{prediction.id}.png")
        elif prediction.outcome == "moderated":
            body.update(
                status="failed",
                error="Prediction failed: the input or output was "
                "flagged as sensitive. Please try again with different inputs. (E005)",
            )
        else:
            body.update(status="failed", error="Prediction failed: CUDA out of memory")
        return body

    async def _create(self, request: web.Request) -> web.StreamResponse:
        try:
            payload = await request.json()
        except json.JSONDecodeError:
            payload = {}
        inputs = dict(payload.get("input") or {}) if isinstance(payload, dict) else {}
        file_bytes = file_type = None
        image = inputs.pop("input_image", None)
        if isinstance(image, str) and image.startswith("data:"):
            header, _, encoded = image.partition(",")
            file_type = header[5:].split(";")[0]
            try:
                file_bytes = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                file_bytes = b""
        extra = (
            {k: v for k, v in payload.items() if k != "input"} if isinstance(payload, dict) else {}
        )
        self.received.append(
            Received(
                request.method,
                request.path,
                dict(request.headers),
                model=f"{request.match_info['owner']}/{request.match_info['name']}",
                input=inputs,
                file_bytes=file_bytes,
                file_content_type=file_type,
                fields=extra,
            )
        )
        if not self._authorised(request):
            return self._problem(401)
        script = self.script
        if script.create_delay:
            await asyncio.sleep(script.create_delay)
        if script.create_failures:
            return self._problem(script.create_failures.pop(0))
        if not inputs.get("prompt"):
            return self._problem(422)
        size = (64, 48)
        if file_bytes:
            try:
                with Image.open(io.BytesIO(file_bytes)) as decoded:
                    size = (max(8, decoded.width // 4), max(8, decoded.height // 4))
            except OSError:
                pass
        prediction = Prediction(
            id=f"rp{next(self._ids):04d}",
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
            raise asyncio.CancelledError
        waited = request.headers.get("Prefer", "").startswith("wait")
        if waited and script.shape == "sync" and prediction.outcome == "succeeded":
            prediction.polls_left = 0
            return web.json_response(self._body(prediction), status=201)
        body = self._body(prediction)
        body.update(status="starting", output=None, error=None)
        return web.json_response(body, status=201)

    async def _status(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.method, request.path, dict(request.headers)))
        if not self._authorised(request):
            return self._problem(401)
        if self.script.status_failures:
            return self._problem(self.script.status_failures.pop(0))
        if self.script.status_html:
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return self._problem(404)
        if prediction.polls_left > 0 and prediction.outcome != "never":
            prediction.polls_left -= 1
            body = self._body(prediction)
            body.update(status="processing", output=None, error=None)
            return web.json_response(body)
        return web.json_response(self._body(prediction))

    async def _cancel(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.method, request.path, dict(request.headers)))
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return self._problem(404)
        prediction.canceled = True
        return web.json_response(self._body(prediction))

    async def _file(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.method, request.path, dict(request.headers)))
        if self.script.output_failures:
            return self._problem(self.script.output_failures.pop(0))
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return web.Response(status=404)
        buffer = io.BytesIO()
        Image.new("RGB", prediction.size, (200, 200, 40)).save(buffer, format="PNG")
        return web.Response(body=buffer.getvalue(), content_type="image/png")
