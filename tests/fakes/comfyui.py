"""A loopback fake of a ComfyUI server: the routes and websocket of ComfyUI's ``server.py``.

What it implements, as ComfyUI does (server.py, execution.py, main.py):

- ``POST /upload/image`` (multipart ``image``, ``type``, ``subfolder``, ``overwrite``)
  answers ``{name, subfolder, type}``; without ``overwrite`` a taken name gets `` (1)``.
- ``POST /prompt {prompt, client_id, prompt_id}``: a client's ``prompt_id`` must be a
  canonical lowercase UUID (else 400 ``invalid_prompt_id``); the graph is validated as
  ``execution.validate_prompt`` does: an unknown ``class_type`` is 400
  ``missing_node_type`` with empty ``node_errors``; a missing required input, a link to
  a node that is not there, or a ``LoadImage`` of a file never uploaded
  (``custom_validation_failed``, "Invalid image file") is 400
  ``prompt_outputs_failed_validation`` with ``node_errors`` per node; no output node is
  ``prompt_no_outputs``. A good graph answers ``{prompt_id, number, node_errors: {}}``.
- ``GET /queue`` ``{queue_running, queue_pending}`` (items ``[number, prompt_id,
  prompt, extra_data, outputs]``), ``GET /history/{id}`` (``{}`` until finished, then
  ``{id: {prompt, outputs, status: {status_str, completed, messages}, meta}}``),
  ``GET /view?filename&subfolder&type`` (the PNG), ``POST /interrupt {prompt_id}``,
  ``POST /queue {delete: [...]}`` (a deleted pending prompt leaves no history).
- ``/ws?clientId=``: a ``status`` message on connect; a prompt's ``execution_start``,
  ``execution_cached``, ``executing``, ``progress {value, max, prompt_id, node}``,
  ``executed``, ``execution_success`` / ``execution_error`` / ``execution_interrupted``
  go to the client that queued it (``client_id``), as ``PromptExecutor.add_message`` and
  the progress hook send them.

Scripting is the shared ``Script``: a prompt runs for ``polls_before_done`` reads of its
``/history`` (each read moves the sampler a step on), then ends as ``outcome``. Tests
can also drive steps themselves (``send_progress``) and finish a "never" prompt
(``finish``). ``moderated`` plays a safety-checker custom node raising its exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fakes.provider import FakeProvider, Received, Script, png_bytes

DEFAULT_KEY = "comfy-proxy-token-0123456789abcdef"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# The node classes this fake ComfyUI has, with their required inputs (INPUT_TYPES) and
# whether they are output nodes (OUTPUT_NODE).
NODES: dict[str, tuple[tuple[str, ...], bool]] = {
    "UNETLoader": (("unet_name", "weight_dtype"), False),
    "DualCLIPLoader": (("clip_name1", "clip_name2", "type"), False),
    "VAELoader": (("vae_name",), False),
    "LoadImage": (("image",), False),
    "FluxKontextImageScale": (("image",), False),
    "VAEEncode": (("pixels", "vae"), False),
    "CLIPTextEncode": (("text", "clip"), False),
    "ReferenceLatent": (("conditioning",), False),
    "FluxGuidance": (("conditioning", "guidance"), False),
    "ConditioningZeroOut": (("conditioning",), False),
    "EmptySD3LatentImage": (("width", "height", "batch_size"), False),
    "KSampler": (
        (
            "model",
            "seed",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "positive",
            "negative",
            "latent_image",
            "denoise",
        ),
        False,
    ),
    "VAEDecode": (("samples", "vae"), False),
    "SaveImage": (("images", "filename_prefix"), True),
    # comfy_extras/nodes_upscale_model.py: UpscaleModelLoader's INPUT_TYPES is
    # {"model_name": (the files in models/upscale_models,)}; ImageUpscaleWithModel's
    # {"upscale_model": ("UPSCALE_MODEL",), "image": ("IMAGE",)}.
    "UpscaleModelLoader": (("model_name",), False),
    "ImageUpscaleWithModel": (("upscale_model", "image"), False),
    # nodes.py ImageScaleBy: "image", "upscale_method" (nearest-exact, bilinear, area,
    # bicubic, lanczos), "scale_by" (FLOAT, min 0.01, max 8.0).
    "ImageScaleBy": (("image", "upscale_method", "scale_by"), False),
}
# The upscale model files this fake server has (a COMBO input's list: another value is
# "Value not in list", as execution.validate_inputs answers it), each with its scale.
UPSCALE_MODELS = {"RealESRGAN_x4plus.pth": 4, "4x-UltraSharp.pth": 4}
UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
TEXT_ENCODERS = ("CLIPTextEncode",)
SAMPLERS = ("KSampler",)
KONTEXT_RESOLUTIONS = (
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248),
    (880, 1184), (944, 1104), (1024, 1024), (1104, 944), (1184, 880), (1248, 832),
    (1328, 800), (1392, 752), (1456, 720), (1504, 688), (1568, 672),
)  # fmt: skip


def kontext_size(width: int, height: int) -> tuple[int, int]:
    """What FluxKontextImageScale makes of an input: the closest trained resolution."""
    ratio = width / height
    return min(KONTEXT_RESOLUTIONS, key=lambda size: abs(ratio - size[0] / size[1]))


@dataclass
class Prompt:
    id: str
    number: int
    graph: dict[str, Any]
    client_id: str | None
    outcome: str
    polls_left: int
    size: tuple[int, int]
    steps: int
    sampler: str
    output_node: str
    step: int = 0
    started: bool = False
    done: bool = False
    interrupted: bool = False
    messages: list[list[Any]] = field(default_factory=list)

    def queue_item(self) -> list[Any]:
        return [self.number, self.id, self.graph, {"client_id": self.client_id}, [self.output_node]]

    @property
    def filename(self) -> str:
        return f"kontext-bot_{self.id[:8]}_00001_.png"


def _combo_refusal(class_type: str, inputs: dict[str, Any]) -> str | None:
    """What ComfyUI's validation says of a list input (COMBO) or a FLOAT out of range."""
    if class_type == "UpscaleModelLoader" and inputs.get("model_name") not in UPSCALE_MODELS:
        return f"model_name: '{inputs.get('model_name')}' not in {list(UPSCALE_MODELS)}"
    if class_type == "ImageScaleBy":
        if inputs.get("upscale_method") not in UPSCALE_METHODS:
            return (
                f"upscale_method: '{inputs.get('upscale_method')}' not in {list(UPSCALE_METHODS)}"
            )
        scale = inputs.get("scale_by")
        if not isinstance(scale, int | float) or not 0.01 <= scale <= 8.0:
            return f"scale_by: {scale} is outside 0.01-8.0"
    return None


def _node_error(node_id: str, graph: dict[str, Any], kind: str, message: str, details: str) -> Any:
    return {
        "errors": [{"type": kind, "message": message, "details": details, "extra_info": {}}],
        "dependent_outputs": [],
        "class_type": graph[node_id]["class_type"],
    }


class FakeComfyUI(FakeProvider):
    output_color = (90, 60, 200)

    def __init__(self, api_key: str = DEFAULT_KEY, script: Script | None = None) -> None:
        super().__init__(api_key, script)
        self.uploads: dict[str, bytes] = {}
        self.prompts: dict[str, Prompt] = {}
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.connected = asyncio.Event()
        # Each history read of a running prompt moves its sampler a step on; off, only
        # ``send_progress`` does (tests that want exact steps).
        self.auto_steps = True
        self._numbers = itertools.count()

    # -- what the contract suite reads ----------------------------------------------------

    @property
    def creates(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST" and r.path == "/prompt"]

    @property
    def polls(self) -> int:
        return sum(1 for r in self.received if r.path.startswith("/history/"))

    @property
    def cancels(self) -> int:
        return sum(
            1
            for r in self.received
            if r.path == "/interrupt" or (r.path == "/queue" and "delete" in r.fields)
        )

    # -- routes ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws", self._ws)
        app.router.add_post("/upload/image", self._upload)
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/queue", self._queue)
        app.router.add_post("/queue", self._queue_change)
        app.router.add_get("/history/{prompt_id}", self._history)
        app.router.add_get("/view", self._view)
        app.router.add_post("/interrupt", self._interrupt)
        app.router.add_get("/system_stats", self._system_stats)

    async def _system_stats(self, request: web.Request) -> web.Response:
        """GET /system_stats (ComfyUI's server.py): the version and devices, read by
        ``check-config --online`` to see the server answers (and the proxy's header)."""
        if not self.authorised(request):
            return self.failure(401)
        return web.json_response(
            {
                "system": {"os": "posix", "comfyui_version": "0.3.40", "python_version": "3.11"},
                "devices": [{"name": "cuda:0 fake", "type": "cuda", "vram_total": 25769803776}],
            }
        )

    def authorised(self, request: web.Request) -> bool:
        """No key set: a ComfyUI of its own (no auth); else the proxy's bearer token."""
        if not self.api_key:
            return True
        expected = self.api_key if " " in self.api_key else f"Bearer {self.api_key}"
        return request.headers.get("Authorization") == expected

    def failure(self, code: int) -> web.Response:
        headers = {"Retry-After": self.script.retry_after} if code in (429, 503) else {}
        if code == 422:
            return web.json_response({"error": self.script.error_body}, status=422)
        messages = {401: "Unauthorized", 402: "Payment required", 429: "Too many requests"}
        return web.json_response(
            {"error": messages.get(code, "Internal Server Error")}, status=code, headers=headers
        )

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if not self.authorised(request):
            return self.failure(401)
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets.pop(sid, None)  # "Reusing existing session, remove old"
        self.sockets[sid] = socket
        self.connected.set()
        try:
            await self._send("status", {"status": self._queue_info(), "sid": sid}, sid)
            async for _message in socket:
                pass
        finally:
            if self.sockets.get(sid) is socket:
                del self.sockets[sid]
        return socket

    async def _upload(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        data = image.file.read() if isinstance(image, web.FileField) else None
        self.record(
            request,
            file_bytes=data,
            file_name=getattr(image, "filename", None),
            file_content_type=getattr(image, "content_type", None),
            file_field="image",
            fields={k: v for k, v in post.items() if k != "image"},
        )
        if not self.authorised(request):
            return self.failure(401)
        if not isinstance(image, web.FileField) or not image.filename or data is None:
            return web.Response(status=400)
        name, subfolder = image.filename, str(post.get("subfolder", ""))
        if str(post.get("overwrite", "")) not in ("true", "1"):
            stem, dot, suffix = name.rpartition(".")
            n = 1
            while f"{subfolder}/{name}".lstrip("/") in self.uploads:
                if self.uploads[f"{subfolder}/{name}".lstrip("/")] == data:
                    break  # the same bytes: a duplicate, not a new file
                name = f"{stem} ({n}){dot}{suffix}"
                n += 1
        self.uploads[f"{subfolder}/{name}".lstrip("/")] = data
        return web.json_response({"name": name, "subfolder": subfolder, "type": "input"})

    def _validate(self, graph: Any) -> tuple[web.Response | None, dict[str, Any]]:
        """``execution.validate_prompt``: the refusal, or what the graph asks for."""
        if not isinstance(graph, dict):
            return web.json_response({"error": "no prompt", "node_errors": {}}, status=400), {}
        outputs = []
        for node_id, node in graph.items():
            class_type = node.get("class_type") if isinstance(node, dict) else None
            title = (node.get("_meta") or {}).get("title", class_type) if class_type else None
            if class_type not in NODES:
                error = {
                    "type": "missing_node_type",
                    "message": f"Node '{title or f'ID #{node_id}'}' not found. "
                    "The custom node may not be installed.",
                    "details": f"Node ID '#{node_id}'",
                    "extra_info": {"node_id": node_id, "class_type": class_type},
                }
                return web.json_response({"error": error, "node_errors": {}}, status=400), {}
            if NODES[class_type][1]:
                outputs.append(node_id)
        if not outputs:
            error = {"type": "prompt_no_outputs", "message": "Prompt has no outputs"}
            error.update(details="", extra_info={})
            return web.json_response({"error": error, "node_errors": {}}, status=400), {}
        node_errors: dict[str, Any] = {}
        for node_id, node in graph.items():
            inputs = node.get("inputs") or {}
            for name in NODES[node["class_type"]][0]:
                value = inputs.get(name)
                if name not in inputs:
                    node_errors[node_id] = _node_error(
                        node_id, graph, "required_input_missing", "Required input is missing", name
                    )
                elif isinstance(value, list) and (len(value) != 2 or str(value[0]) not in graph):
                    node_errors[node_id] = _node_error(
                        node_id, graph, "bad_linked_input", "Bad linked input", name
                    )
            combo = _combo_refusal(node["class_type"], inputs)
            if combo is not None:
                node_errors[node_id] = _node_error(
                    node_id, graph, "value_not_in_list", "Value not in list", combo
                )
            if node["class_type"] == "LoadImage" and inputs.get("image") not in self.uploads:
                node_errors[node_id] = _node_error(
                    node_id,
                    graph,
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    f"image - Invalid image file: {inputs.get('image')}",
                )
        if node_errors:
            details = "\n".join(
                f"{e['errors'][0]['message']}: {e['errors'][0]['details']}"
                for e in node_errors.values()
            )
            error = {
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
                "details": details,
                "extra_info": {},
            }
            return web.json_response({"error": error, "node_errors": node_errors}, status=400), {}
        texts = [
            n["inputs"]["text"]
            for n in graph.values()
            if n["class_type"] in TEXT_ENCODERS and n["inputs"].get("text")
        ]
        sampler_id, sampler = next(
            ((i, n) for i, n in graph.items() if n["class_type"] in SAMPLERS),
            ("", {"inputs": {"seed": None, "steps": 1}}),
        )
        images = [
            self.uploads[n["inputs"]["image"]]
            for n in graph.values()
            if n["class_type"] == "LoadImage"
        ]
        factor = 1.0
        for node in graph.values():  # an upscale graph: the model's scale, then ScaleBy
            if node["class_type"] == "UpscaleModelLoader":
                factor *= UPSCALE_MODELS[node["inputs"]["model_name"]]
            if node["class_type"] == "ImageScaleBy":
                factor *= float(node["inputs"]["scale_by"])
        return None, {
            "upscale": factor if factor != 1.0 else None,
            "prompt": texts[0] if texts else "",
            "seed": sampler["inputs"]["seed"],
            "steps": int(sampler["inputs"]["steps"]),
            "sampler": sampler_id,
            "output": outputs[0],
            "image": images[0] if images else None,
            "size": next(
                (
                    (int(n["inputs"]["width"]), int(n["inputs"]["height"]))
                    for n in graph.values()
                    if n["class_type"] == "EmptySD3LatentImage"
                ),
                None,
            ),
        }

    async def _prompt(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = {}
        graph = body.get("prompt") if isinstance(body, dict) else None
        refusal, asked = (None, {}) if not self.authorised(request) else self._validate(graph)
        self.received.append(
            Received(
                request.method,
                request.path,
                dict(request.headers),
                input={"prompt": asked.get("prompt"), "seed": asked.get("seed"), "graph": graph},
                file_bytes=asked.get("image"),
                fields={k: v for k, v in body.items() if k != "prompt"},
            )
        )
        gate = await self.refuse_create(request, body if isinstance(body, dict) else None)
        if gate is not None:
            return gate
        client_prompt_id = body.get("prompt_id")
        if client_prompt_id is not None and not (
            isinstance(client_prompt_id, str) and _UUID.match(client_prompt_id)
        ):
            error = {
                "type": "invalid_prompt_id",
                "message": "prompt_id must be a valid UUID",
                "details": "",
                "extra_info": {},
            }
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        if refusal is not None:
            return refusal
        size = self.script.output_size or asked["size"]
        if size is None and asked["image"]:
            with Image.open(io.BytesIO(asked["image"])) as image:
                if asked["upscale"] is not None:
                    factor = asked["upscale"]
                    size = (round(image.width * factor), round(image.height * factor))
                else:
                    size = kontext_size(image.width, image.height)
        prompt = Prompt(
            id=client_prompt_id or str(uuid.uuid4()),
            number=next(self._numbers),
            graph=graph,  # type: ignore[arg-type]
            client_id=body.get("client_id"),
            outcome=self.script.outcome,
            polls_left=self.script.polls_before_done,
            size=size or (1024, 1024),
            steps=asked["steps"],
            sampler=asked["sampler"],
            output_node=asked["output"],
        )
        self.prompts[prompt.id] = prompt
        self.created.set()
        await self._send("status", {"status": self._queue_info()})
        if self.script.drop_create_answer:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        answer = {"prompt_id": prompt.id, "number": prompt.number, "node_errors": {}}
        return web.json_response(answer)

    # -- queue and history ------------------------------------------------------------------

    def _live(self) -> list[Prompt]:
        return sorted((p for p in self.prompts.values() if not p.done), key=lambda p: p.number)

    def _queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": len(self._live())}}

    async def _queue(self, request: web.Request) -> web.Response:
        self.record(request)
        if not self.authorised(request):
            return self.failure(401)
        live = self._live()
        return web.json_response(
            {
                "queue_running": [p.queue_item() for p in live[:1]],
                "queue_pending": [p.queue_item() for p in live[1:]],
            }
        )

    async def _queue_change(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.record(request, fields=body)
        if not self.authorised(request):
            return self.failure(401)
        live = self._live()
        for prompt_id in body.get("delete", []):
            prompt = self.prompts.get(prompt_id)
            if prompt is not None and prompt in live[1:]:
                del self.prompts[prompt_id]  # a deleted pending prompt leaves no trace
        return web.Response(status=200)

    async def _interrupt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = {}
        self.record(request, fields=body)
        if not self.authorised(request):
            return self.failure(401)
        live = self._live()
        if live and body.get("prompt_id") in (None, live[0].id):
            live[0].interrupted = True
            await self._finish(live[0])
        return web.Response(status=200)

    async def _history(self, request: web.Request) -> web.Response:
        self.record(request)
        refusal = self.refuse_status(request)
        if refusal is not None:
            return refusal
        prompt = self.prompts.get(request.match_info["prompt_id"])
        if prompt is None:
            return web.json_response({})
        if not prompt.done:
            if prompt is not self._live()[0]:
                return web.json_response({})  # still pending behind another
            if prompt.outcome == "never" or prompt.polls_left > 0:
                prompt.polls_left -= 1
                if self.auto_steps:
                    await self._step(prompt)
                return web.json_response({})
            await self._finish(prompt)
        return web.json_response({prompt.id: self._entry(prompt)})

    def _entry(self, prompt: Prompt) -> dict[str, Any]:
        success = prompt.outcome == "succeeded" and not prompt.interrupted
        outputs: dict[str, Any] = {}
        if success:
            image = {"filename": prompt.filename, "subfolder": "", "type": "output"}
            outputs[prompt.output_node] = {"images": [image]}
        return {
            "prompt": prompt.queue_item(),
            "outputs": outputs,
            "status": {
                "status_str": "success" if success else "error",
                "completed": success,
                "messages": prompt.messages,
            },
            "meta": {n: {"node_id": n, "display_node": n} for n in outputs},
        }

    # -- running a prompt -------------------------------------------------------------------

    async def _message(self, prompt: Prompt, event: str, data: dict[str, Any]) -> None:
        """``PromptExecutor.add_message``: kept in the history, sent to the client."""
        data = {**data, "timestamp": int(time.time() * 1000)}
        prompt.messages.append([event, data])
        await self._send(event, data, prompt.client_id)

    async def _start(self, prompt: Prompt) -> None:
        if prompt.started:
            return
        prompt.started = True
        await self._message(prompt, "execution_start", {"prompt_id": prompt.id})
        await self._message(prompt, "execution_cached", {"nodes": [], "prompt_id": prompt.id})
        await self._send(
            "executing",
            {"node": prompt.sampler, "display_node": prompt.sampler, "prompt_id": prompt.id},
            prompt.client_id,
        )

    async def _step(self, prompt: Prompt) -> None:
        """One sampler step, as the progress hook reports it."""
        await self._start(prompt)
        if prompt.step < prompt.steps - 1:
            prompt.step += 1
            await self.send_progress(prompt.id, prompt.step)

    async def send_progress(self, prompt_id: str, value: int) -> None:
        prompt = self.prompts[prompt_id]
        await self._start(prompt)
        prompt.step = value
        data = {"value": value, "max": prompt.steps, "prompt_id": prompt_id, "node": prompt.sampler}
        await self._send("progress", data, prompt.client_id)

    def finish(self, prompt_id: str, outcome: str = "succeeded") -> None:
        """End a prompt scripted to run forever at its next history read."""
        prompt = self.prompts[prompt_id]
        prompt.outcome, prompt.polls_left = outcome, 0

    async def complete(self, prompt_id: str) -> None:
        """End a prompt now, as if the GPU finished it while nobody was looking."""
        prompt = self.prompts[prompt_id]
        prompt.outcome = "succeeded" if prompt.outcome == "never" else prompt.outcome
        await self._finish(prompt)

    async def _finish(self, prompt: Prompt) -> None:
        await self._start(prompt)
        prompt.done = True
        if prompt.interrupted:
            await self._message(
                prompt,
                "execution_interrupted",
                {"prompt_id": prompt.id, "node_id": prompt.sampler, "node_type": "KSampler"},
            )
        elif prompt.outcome == "succeeded":
            await self.send_progress(prompt.id, prompt.steps)
            output = {"images": [{"filename": prompt.filename, "subfolder": "", "type": "output"}]}
            await self._send(
                "executed",
                {"node": prompt.output_node, "output": output, "prompt_id": prompt.id},
                prompt.client_id,
            )
            await self._message(prompt, "execution_success", {"prompt_id": prompt.id})
        else:
            message = (
                "NSFW content detected by the safety checker"
                if prompt.outcome == "moderated"
                else "Allocation on device: CUDA out of memory"
            )
            await self._message(
                prompt,
                "execution_error",
                {
                    "prompt_id": prompt.id,
                    "node_id": prompt.sampler,
                    "node_type": "KSampler",
                    "exception_message": message,
                    "exception_type": "RuntimeError",
                    "traceback": [],
                },
            )
        await self._send("executing", {"node": None, "prompt_id": prompt.id}, prompt.client_id)
        await self._send("status", {"status": self._queue_info()})

    async def _send(self, event: str, data: dict[str, Any], sid: str | None = None) -> None:
        """``PromptServer.send_json``: to one client, or to all without a sid."""
        message = {"type": event, "data": data}
        targets = list(self.sockets.values()) if sid is None else [self.sockets.get(sid)]
        for socket in targets:
            if socket is not None and not socket.closed:
                with contextlib.suppress(ConnectionError):
                    await socket.send_json(message)

    # -- results ----------------------------------------------------------------------------

    async def _view(self, request: web.Request) -> web.Response:
        self.record(request)
        if not self.authorised(request):
            return self.failure(401)
        if self.script.output_failures:
            return self.failure(self.script.output_failures.pop(0))
        if request.query.get("type", "output") != "output":
            return web.Response(status=404)
        prompt = next(
            (p for p in self.prompts.values() if p.filename == request.query.get("filename")),
            None,
        )
        if prompt is None or not prompt.done:
            return web.Response(status=404)
        if self.script.output_location is not None:
            location = self.script.output_location.format(id=prompt.id)
            return web.Response(status=302, headers={"Location": location})
        body = png_bytes(prompt.size, self.output_color)
        return web.Response(body=body, content_type="image/png")

    async def stop(self) -> None:
        for socket in list(self.sockets.values()):
            await socket.close()
        await super().stop()
