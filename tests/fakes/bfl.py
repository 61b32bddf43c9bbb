"""A loopback fake of Black Forest Labs' API (``x-key`` auth, ``polling_url``, ``result.sample``).

It answers polling URLs on a "regional" path that the client can only know from the
create answer, and serves results from a different host name (``localhost`` instead of
``127.0.0.1``), as BFL's delivery hosts differ from its API hosts. Scripting is the
same ``Script`` as the core.today fake, so one contract suite drives both.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aiohttp import web

from tests.fakes.model_rules import bfl_refusal
from tests.fakes.provider import FakeProvider, Received, Script

DEFAULT_KEY = "bfl_test_key_0123456789abcdef"
REGION = "us1"


class FakeBfl(FakeProvider):
    id_prefix = "task-"
    output_color = (40, 120, 200)

    def __init__(self, api_key: str = DEFAULT_KEY, script: Script | None = None) -> None:
        super().__init__(api_key, script)
        self.credits = 1234.5
        self.refusals: list[str] = []  # creates refused by tests/fakes/model_rules.py

    @property
    def creates(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST"]

    @property
    def polls(self) -> int:
        return sum(1 for r in self.received if "get_result" in r.path)

    @property
    def cancels(self) -> int:
        return 0  # BFL has no cancel endpoint

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/{endpoint}", self._create)
        app.router.add_get(f"/{REGION}/v1/get_result", self._status)
        app.router.add_get("/v1/credits", self._credits)
        app.router.add_get("/delivery/{id}.png", self.serve_output)

    def authorised(self, request: web.Request) -> bool:
        return request.headers.get("x-key") == self.api_key

    def failure(self, code: int) -> web.Response:
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
        files: list[tuple[str, str | None, str | None, bytes]] = []
        body = inputs if isinstance(inputs, dict) else {}
        # input_image, input_image_2, ... in their numbered order.
        numbered = sorted(
            (k for k in body if k == "input_image" or k.startswith("input_image_")),
            key=lambda k: int(k.rsplit("_", 1)[1]) if k != "input_image" else 1,
        )
        for key in numbered:
            value = body[key]
            try:
                data = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
            except (binascii.Error, ValueError):
                data = b""
            files.append((key, None, None, data))
        file_bytes = files[0][3] if files else None
        endpoint = request.match_info["endpoint"]
        self.received.append(
            Received(
                request.method,
                request.path,
                dict(request.headers),
                model=endpoint,
                input={k: v for k, v in body.items() if k not in numbered},
                file_bytes=file_bytes,
                files=files,
            )
        )
        reason = bfl_refusal(endpoint, body) if self.authorised(request) else None
        if reason is not None:
            # What the endpoint's schema refuses (tests/fakes/model_rules.py), answered
            # as BFL's validation errors are.
            self.refusals.append(reason)
            return web.json_response(
                {"detail": [{"loc": ["body"], "msg": reason, "type": "value_error"}]},
                status=422,
            )
        refusal = await self.refuse_create(request, inputs)
        if refusal is not None:
            return refusal
        assert isinstance(inputs, dict)
        prediction = self.new_prediction(request, inputs, file_bytes)
        polling_url = f"{self.base_url}/{REGION}/v1/get_result?id={prediction.id}"
        return web.json_response({"id": prediction.id, "polling_url": polling_url})

    async def _status(self, request: web.Request) -> web.Response:
        self.record(request)
        refusal = self.refuse_status(request)
        if refusal is not None:
            return refusal
        prediction = self.predictions.get(request.query.get("id", ""))
        if prediction is None:
            return web.json_response({"id": request.query.get("id"), "status": "Task not found"})
        body: dict[str, Any] = {"id": prediction.id, "result": None, "progress": None}
        if prediction.outcome == "never" or prediction.still_running():
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
        self.record(request)
        if not self.authorised(request):
            return self.failure(401)
        return web.json_response({"credits": self.credits})
