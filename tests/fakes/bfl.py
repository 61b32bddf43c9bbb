"""A loopback fake of Black Forest Labs' API (``x-key`` auth, ``polling_url``, ``result.sample``).

It answers polling URLs on a "regional" path that the client can only know from the
create answer, and serves results from a different host name (``localhost`` instead of
``127.0.0.1``), as BFL's delivery hosts differ from its API hosts. Scripting is the
same ``Script`` as the core.today fake, so one contract suite drives both.
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

DEFAULT_KEY = "bfl_test_key_0123456789abcdef"
REGION = "us1"


class FakeBfl:
    def __init__(self, api_key: str = DEFAULT_KEY, script: Script | None = None) -> None:
        self.api_key = api_key
        self.script = script or Script()
        self.received: list[Received] = []
        self.predictions: dict[str, Prediction] = {}
        self.created = asyncio.Event()
        self.credits = 1234.5
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.port = 0

    @property
    def creates(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST"]

    @property
    def polls(self) -> int:
        return sum(1 for r in self.received if "get_result" in r.path)

    @property
    def cancels(self) -> int:
        return 0  # BFL has no cancel endpoint

    async def __aenter__(self) -> FakeBfl:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/{endpoint}", self._create)
        app.router.add_get(f"/{REGION}/v1/get_result", self._status)
        app.router.add_get("/v1/credits", self._credits)
        app.router.add_get("/delivery/{id}.png", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("x-key") == self.api_key

    def _failure(self, code: int) -> web.Response:
        headers = {"Retry-After": self.script.retry_after} if code in (429, 503) else {}
        if code == 422:
            body: dict[str, Any] = {
                "detail": [
                    {
                        "loc": ["body", "prompt"],
                        "msg": self.script.error_body,
                        "type": "value_error",
                    }
                ]
            }
        else:
            messages = {
                401: "Not authenticated",
                402: "Insufficient credits",
                429: "You have reached the maximum number of active tasks",
            }
            body = {"detail": messages.get(code, "Internal Server Error")}
        return web.json_response(body, status=code, headers=headers)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        try:
            inputs = await request.json()
        except json.JSONDecodeError:
            inputs = None
        file_bytes = None
        if isinstance(inputs, dict) and isinstance(inputs.get("input_image"), str):
            try:
                file_bytes = base64.b64decode(inputs["input_image"], validate=True)
            except binascii.Error:
                file_bytes = b""
        self.received.append(
            Received(
                request.method,
                request.path,
                dict(request.headers),
                model=request.match_info["endpoint"],
                input={k: v for k, v in (inputs or {}).items() if k != "input_image"},
                file_bytes=file_bytes,
            )
        )
        if not self._authorised(request):
            return web.json_response({"detail": "Not authenticated"}, status=401)
        script = self.script
        if script.create_delay:
            await asyncio.sleep(script.create_delay)
        if script.create_failures:
            return self._failure(script.create_failures.pop(0))
        if not isinstance(inputs, dict) or not inputs.get("prompt"):
            return self._failure(422)
        size = (64, 48)
        if file_bytes:
            try:
                with Image.open(io.BytesIO(file_bytes)) as image:
                    size = (max(8, image.width // 4), max(8, image.height // 4))
            except OSError:
                pass
        prediction = Prediction(
            id=f"task-{next(self._ids):04d}",
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
        polling_url = f"{self.base_url}/{REGION}/v1/get_result?id={prediction.id}"
        return web.json_response({"id": prediction.id, "polling_url": polling_url})

    async def _status(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.method, request.path, dict(request.headers)))
        if not self._authorised(request):
            return web.json_response({"detail": "Not authenticated"}, status=401)
        if self.script.status_failures:
            return self._failure(self.script.status_failures.pop(0))
        if self.script.status_html:
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        prediction = self.predictions.get(request.query.get("id", ""))
        if prediction is None:
            return web.json_response({"id": request.query.get("id"), "status": "Task not found"})
        body: dict[str, Any] = {"id": prediction.id, "result": None, "progress": None}
        if prediction.outcome == "never" or prediction.polls_left > 0:
            prediction.polls_left -= 1
            body["status"] = "Pending"
        elif prediction.outcome == "succeeded":
            # Delivery comes from another host name, as BFL's delivery hosts do.
            sample = f"http://localhost:{self.port}/delivery/{prediction.id}.png"
            body.update(status="Ready", result={"sample": sample, "prompt": "", "seed": 1})
        elif prediction.outcome == "moderated":
            body.update(status="Content Moderated", details={"Moderation Reasons": ["NSFW"]})
        else:
            body.update(status="Error", details={"error": "Generation failed"})
        return web.json_response(body)

    async def _credits(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.method, request.path, dict(request.headers)))
        if not self._authorised(request):
            return web.json_response({"detail": "Not authenticated"}, status=401)
        return web.json_response({"credits": self.credits})

    async def _file(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.method, request.path, dict(request.headers)))
        if self.script.output_failures:
            return self._failure(self.script.output_failures.pop(0))
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return web.Response(status=404)
        buffer = io.BytesIO()
        Image.new("RGB", prediction.size, (40, 120, 200)).save(buffer, format="PNG")
        return web.Response(body=buffer.getvalue(), content_type="image/png")
