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
import json
import signal
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakes.model_rules import coretoday_refusal
from tests.fakes.provider import FakeProvider, Prediction, Received, Script

__all__ = ["DEFAULT_KEY", "FakeCoreToday", "Prediction", "Received", "Script"]

DEFAULT_KEY = "cdt_test_key_0123456789abcdef"


_RATIO_SIZES = {"1:1": (64, 64), "16:9": (112, 63), "9:16": (63, 112), "4:3": (80, 60)}


class FakeCoreToday(FakeProvider):
    def __init__(self, api_key: str = DEFAULT_KEY, script: Script | None = None) -> None:
        super().__init__(api_key, script)
        # The reasons of the creates refused by the documented model rules
        # (tests/fakes/model_rules.py), in order.
        self.refusals: list[str] = []

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

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/predictions/upload", self._create_upload)
        app.router.add_post("/v1/predictions", self._create_json)
        app.router.add_get("/v1/predictions/{id}", self._status)
        app.router.add_delete("/v1/predictions/{id}", self._cancel)
        app.router.add_get("/files/{id}.png", self.serve_output)

    async def _create_upload(self, request: web.Request) -> web.StreamResponse:
        fields: dict[str, Any] = {}
        files: list[tuple[str, str | None, str | None, bytes]] = []
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            if part.filename:
                # A field repeated (``file:input_images`` once per image) keeps its order.
                files.append(
                    (
                        str(part.name),
                        part.filename,
                        part.headers.get("Content-Type"),
                        bytes(await part.read()),
                    )
                )
            else:
                fields[str(part.name)] = await part.text()
        try:
            inputs = json.loads(fields.get("input", "{}"))
        except json.JSONDecodeError:
            inputs = None
        first = files[0] if files else (None, None, None, None)
        file_field, file_name, file_type, file_bytes = first
        self.record(
            request,
            model=fields.get("model"),
            input=inputs,
            file_bytes=file_bytes,
            file_content_type=file_type,
            file_field=file_field,
            file_name=file_name,
            fields={k: v for k, v in fields.items() if k not in ("model", "input")},
            files=files if self.script.keep_inputs else [],
        )
        refused = self._model_refusal(request, fields.get("model"), [f[0] for f in files], inputs)
        if refused is not None:
            return refused
        return await self._create(
            request, inputs, file_bytes, (64, 48), webhook=fields.get("webhook")
        )

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
        self.record(
            request,
            model=body.get("model") if isinstance(body, dict) else None,
            input=inputs,
            fields=extra,
        )
        model = body.get("model") if isinstance(body, dict) else None
        refused = self._model_refusal(
            request, model if isinstance(model, str) else None, [], inputs
        )
        if refused is not None:
            return refused
        ratio = (inputs or {}).get("aspect_ratio", "1:1") if isinstance(inputs, dict) else "1:1"
        webhook = extra.get("webhook")
        return await self._create(
            request, inputs, None, _RATIO_SIZES.get(ratio, (64, 64)), webhook=webhook
        )

    async def _create(
        self,
        request: web.Request,
        inputs: dict[str, Any] | None,
        file_bytes: bytes | None,
        size: tuple[int, int],
        webhook: str | None = None,
    ) -> web.StreamResponse:
        refusal = await self.refuse_create(request, inputs)
        if refusal is not None:
            return refusal
        assert isinstance(inputs, dict)
        prediction = self.new_prediction(request, inputs, file_bytes, size, webhook=webhook)
        if self.script.shape == "sync" and prediction.outcome == "succeeded":
            return web.json_response(
                {"job_id": prediction.id, "status": "completed", "result": self._url(prediction)}
            )
        return web.json_response({"id": prediction.id, "status": "pending"}, status=201)

    def _model_refusal(
        self, request: web.Request, model: str | None, file_fields: list[str], inputs: Any
    ) -> web.Response | None:
        """A create the model's page says it does not take (tests/fakes/model_rules.py),
        answered 422 with the reason as core.today's validation errors are."""
        if not self.authorised(request) or not isinstance(inputs, dict):
            return None
        reason = coretoday_refusal(model, file_fields, inputs)
        if reason is None:
            return None
        self.refusals.append(reason)
        return web.json_response({"detail": reason}, status=422)

    def failure(self, code: int) -> web.Response:
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
        self.record(request)
        refusal = self.refuse_status(request)
        if refusal is not None:
            return refusal
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return web.json_response({"detail": "Not found"}, status=404)
        body: dict[str, Any] = {"id": prediction.id, "input": prediction.input}
        if prediction.canceled:
            body["status"] = "canceled"
        elif prediction.outcome == "never" or prediction.still_running():
            body["status"] = "processing"
        elif prediction.outcome == "succeeded":
            body.update(status="succeeded", output=[self._url(prediction)])
        elif prediction.outcome == "moderated":
            body.update(status="failed", error="NSFW content detected in the output image")
        else:
            body.update(status="failed", error="Model crashed: CUDA out of memory")
        return web.json_response(body)

    async def _cancel(self, request: web.Request) -> web.Response:
        self.record(request)
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return web.json_response({"detail": "Not found"}, status=404)
        if not self.script.cancel_ignored:
            prediction.canceled = True
        return web.json_response({"id": prediction.id, "status": "canceled"})


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
