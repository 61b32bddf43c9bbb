"""A loopback fake of Replicate's predictions API (``Prefer: wait``, problem+json errors).

Same ``Script`` as the other provider fakes. ``shape = "sync"`` plays Replicate holding
the create (``Prefer: wait``) and answering a finished prediction; otherwise the create
answers ``starting`` and polls move it through ``processing`` to its outcome.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aiohttp import web

from tests.fakes.model_rules import family, replicate_refusal
from tests.fakes.provider import FakeProvider, Prediction, Received, Script

DEFAULT_KEY = "r8_test_token_0123456789abcdefghij"


def _data_uri(uri: str) -> tuple[str, bytes]:
    header, _, encoded = uri.partition(",")
    try:
        return header[5:].split(";")[0], base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return header[5:].split(";")[0], b""


class FakeReplicate(FakeProvider):
    id_prefix = "rp"
    output_color = (200, 200, 40)

    def __init__(self, api_key: str = DEFAULT_KEY, script: Script | None = None) -> None:
        super().__init__(api_key, script)
        self.refusals: list[str] = []  # creates refused by tests/fakes/model_rules.py

    @property
    def creates(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST" and r.path.endswith("/predictions")]

    @property
    def polls(self) -> int:
        return sum(1 for r in self.received if r.method == "GET" and "/v1/predictions/" in r.path)

    @property
    def cancels(self) -> int:
        return sum(1 for r in self.received if r.path.endswith("/cancel"))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/models/{owner}/{name}/predictions", self._create)
        app.router.add_get("/v1/predictions/{id}", self._status)
        app.router.add_post("/v1/predictions/{id}/cancel", self._cancel)
        app.router.add_get("/files/{id}.png", self.serve_output)
        app.router.add_get("/v1/account", self._account)

    async def _account(self, request: web.Request) -> web.Response:
        """GET /v1/account: who the token belongs to (the cheapest authenticated read,
        https://replicate.com/docs/reference/http#account.get); ``check-config --online``."""
        self.record(request)
        if not self.authorised(request):
            return self.failure(401)
        return web.json_response({"type": "organization", "username": "kontext", "name": "Kontext"})

    def failure(self, code: int) -> web.Response:
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
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        reason = replicate_refusal(model, inputs)
        file_bytes = file_type = None
        upscaler = family(model) == "upscale"
        image = inputs.pop("image" if upscaler else "input_image", None)
        if isinstance(image, str) and image.startswith("data:"):
            file_type, file_bytes = _data_uri(image)
        files: list[tuple[str, str | None, str | None, bytes]] = []
        listed = inputs.pop("input_images", None)
        for item in listed if isinstance(listed, list) else []:
            if isinstance(item, str) and item.startswith("data:"):
                kind, data = _data_uri(item)
                files.append(("input_images", None, kind, data))
        if files and file_bytes is None:
            file_type, file_bytes = files[0][2], files[0][3]
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
                files=files,
            )
        )
        if reason is not None and self.authorised(request):
            # What the model's schema refuses (tests/fakes/model_rules.py), as Replicate
            # answers a create whose input fails validation.
            self.refusals.append(reason)
            return web.json_response(
                {"title": "Input validation failed", "detail": reason, "status": 422},
                status=422,
            )
        refusal = await self.refuse_create(request, inputs, needs_prompt=not upscaler)
        if refusal is not None:
            return refusal
        # real-esrgan's output is its input ``scale`` times larger (default 4).
        scale = float(inputs.get("scale", 4)) if upscaler else None
        prediction = self.new_prediction(request, inputs, file_bytes, scale=scale)
        script = self.script
        waited = request.headers.get("Prefer", "").startswith("wait")
        if waited and script.shape == "sync" and prediction.outcome == "succeeded":
            prediction.polls_left = 0
            return web.json_response(self._body(prediction), status=201)
        body = self._body(prediction)
        body.update(status="starting", output=None, error=None)
        return web.json_response(body, status=201)

    async def _status(self, request: web.Request) -> web.Response:
        self.record(request)
        refusal = self.refuse_status(request)
        if refusal is not None:
            return refusal
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return self.failure(404)
        if prediction.outcome != "never" and prediction.still_running():
            body = self._body(prediction)
            body.update(status="processing", output=None, error=None)
            return web.json_response(body)
        return web.json_response(self._body(prediction))

    async def _cancel(self, request: web.Request) -> web.Response:
        self.record(request)
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return self.failure(404)
        prediction.canceled = True
        return web.json_response(self._body(prediction))
