"""A self-hosted ComfyUI server running FLUX.1 Kontext [dev] (docs/providers.md).

The HTTP and websocket API as ComfyUI's own ``server.py`` implements it:

- ``POST /upload/image`` (multipart ``image``, ``type=input``, ``overwrite``) answers
  ``{name, subfolder, type}``; the filled-in workflow's ``kontext image`` node reads it.
- ``POST /prompt {prompt, client_id, prompt_id}`` answers ``{prompt_id, number,
  node_errors}``; a graph the server refuses is a 400 ``{error, node_errors}``: that is
  the operator's configuration, never the user's fault, so it is logged in full and the
  job refunded (not retried: the same graph fails the same way).
- ``GET /history/{prompt_id}`` has the finished prompt (its ``status`` and ``outputs``);
  ``GET /queue`` lists the running and pending ones; ``GET /view`` serves a result.
- Cancelling: ``POST /interrupt {prompt_id}`` for the running prompt, ``POST /queue
  {delete: [prompt_id]}`` for a pending one.
- ``/ws?clientId=`` carries ``progress {value, max, prompt_id, node}`` for the prompts
  this client queued: the sampler's steps, shown to the user as "step 12 of 28".

ComfyUI takes no idempotency key. The bot names the prompt itself instead: the
``prompt_id`` it sends is a UUID derived from the job id (ComfyUI accepts a client's
canonical UUID and queues under it). A create whose answer was lost is still reported
as "maybe created" (refunded, never sent again, as with every provider), and because
the bot knows the id, the orphan is taken out of the queue (or interrupted) at once so
the GPU does not spend minutes on an image nobody will see.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
import structlog

from bot.errors import ConfigError, KontextError, ProviderUnavailable, UserInputError
from bot.i18n import N_, _
from bot.providers.base import PredictionState, PredictionStatus, ProviderRequest
from bot.providers.comfyui_workflow import (
    UpscaleWorkflow,
    WorkflowError,
    Workflows,
    load_workflows,
    shipped_upscale_workflow,
)
from bot.providers.http import UNAVAILABLE, HttpProvider, classify_response

log = structlog.get_logger("kontext.providers.comfyui")

# Prompt ids are derived from job ids in this namespace (uuid5), so one job always
# names the same ComfyUI prompt.
PROMPT_NAMESPACE = uuid.UUID("6c1f2d0e-7a55-4d7e-9a36-3f0c2b8e5a11")
WORKFLOW_REFUSED = N_(
    "The image server refused the bot's workflow, so nothing was made. An operator "
    "needs to fix the bot's ComfyUI setup (the log names the node)."
)
FORGOTTEN = "The image server no longer knows this job (it may have restarted)."
# Words of the exceptions that safety-checker custom nodes raise: such a failure is a
# content refusal, as a hosted provider's moderation is.
_FLAGGED = ("nsfw", "safety checker", "content policy", "flagged as sensitive")
_PROGRESS_KEPT = 1000  # prompts whose last progress is remembered
_WS_RETRY_CAP = 30.0
_WS_FIRST_WAIT = 2.0  # the first job waits this long at most for the websocket
_IMAGE_SUFFIX = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def prompt_id_for(idempotency_key: str) -> str:
    """The canonical lowercase UUID ComfyUI accepts as a client's own prompt id."""
    return str(uuid.uuid5(PROMPT_NAMESPACE, idempotency_key))


def describe_refusal(body: Any) -> str:
    """ComfyUI's 400 answer to ``POST /prompt`` as one line for the log: the error and
    every node's errors (``#11 KSampler: required_input_missing (seed)``)."""
    if not isinstance(body, Mapping):
        return "no details"
    parts: list[str] = []
    error = body.get("error")
    if isinstance(error, Mapping):
        parts.append(f"{error.get('type')}: {error.get('message')} {error.get('details') or ''}")
    elif error:
        parts.append(str(error))
    node_errors = body.get("node_errors")
    if isinstance(node_errors, Mapping):
        for node_id, info in node_errors.items():
            if not isinstance(info, Mapping):
                continue
            reasons = ", ".join(
                f"{item.get('type')} ({item.get('details') or item.get('message')})"
                for item in info.get("errors") or []
                if isinstance(item, Mapping)
            )
            parts.append(f"#{node_id} {info.get('class_type')}: {reasons}")
    return "; ".join(" ".join(part.split()) for part in parts)[:2000] or "no details"


def _queued_ids(items: Any) -> set[str]:
    """Prompt ids of ``/queue``'s lists of ``[number, prompt_id, prompt, extra, outputs]``."""
    found: set[str] = set()
    if isinstance(items, list):
        for item in items:
            if isinstance(item, list) and len(item) > 1:
                found.add(str(item[1]))
    return found


class ComfyUIProvider(HttpProvider):
    name = "comfyui"
    # ComfyUI has no webhooks (its websocket is per client): the runner polls it.
    sends_webhooks = False

    def __init__(self, *, workflow: str = "", auth_header: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        try:
            self.workflows: Workflows = load_workflows(workflow)
        except WorkflowError as exc:
            raise ConfigError(f"provider.workflow: {exc}") from None
        self._auth_header = auth_header
        self.upscale_workflow: UpscaleWorkflow = shipped_upscale_workflow()
        # One websocket per process; ComfyUI sends a prompt's progress to the client
        # that queued it. After a restart another id listens, so a resumed job is
        # followed by polling alone (its steps are not shown).
        self.client_id = uuid.uuid4().hex
        self._progress: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._listener: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._connected = asyncio.Event()

    @property
    def auth_headers(self) -> dict[str, str]:
        """A ComfyUI of its own has no key; behind an authenticating proxy, the header
        the operator configured (``provider.auth_header``), or ``provider.api_key`` as
        a bearer token."""
        if self._auth_header:
            return {"Authorization": self._auth_header}
        if self._api_key:
            return {"Authorization": f"Bearer {self._api_key}"}
        return {}

    def classify(self, response: httpx.Response) -> KontextError | None:
        if response.status_code == 400 and response.request.url.path.endswith("/prompt"):
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, Mapping) and "node_errors" in body:
                detail = describe_refusal(body)
                log.error("ComfyUI refused the workflow; check provider.workflow", refusal=detail)
                return ProviderUnavailable(
                    _(WORKFLOW_REFUSED), detail=f"workflow refused: {detail}"
                )
        return classify_response(response)

    # -- submit -----------------------------------------------------------------------

    async def submit(self, request: ProviderRequest, *, idempotency_key: str) -> PredictionStatus:
        prompt_id = prompt_id_for(idempotency_key)
        options = request.options
        profile = request.profile_at(self.name, self.model)
        if profile.upscale is not None and request.images:
            # An upscaler (issue 27): the shipped upscale workflow, no prompt or seed.
            uploaded = await self._upload(request, prompt_id)
            graph = self.upscale_workflow.fill(
                image=uploaded,
                scale=options.upscale or profile.upscale.default_scale,
                model_file=request.model,
            )
            return await self._queue(graph, prompt_id)
        if request.images:
            workflow = self.workflows.edit
            image_name: str | None = await self._upload(request, prompt_id)
        elif self.workflows.text is not None:
            workflow, image_name = self.workflows.text, None
        else:
            raise UserInputError(
                _("This image server edits pictures only: attach an image."),
                detail="no text workflow configured (provider.workflow)",
            )
        seed = options.seed if options.seed is not None else uuid.uuid4().int % 2**32
        graph = workflow.fill(
            prompt=request.prompt, seed=seed, image=image_name, ratio=options.aspect_ratio
        )
        return await self._queue(graph, prompt_id)

    async def _queue(self, graph: dict[str, Any], prompt_id: str) -> PredictionStatus:
        """``POST /prompt`` with a filled-in graph under the bot's own prompt id."""
        await self._listen()
        try:
            body = await self.call(
                "POST",
                f"{self.base_url}/prompt",
                create=True,
                headers=self.auth_headers,
                json={"prompt": graph, "client_id": self.client_id, "prompt_id": prompt_id},
            )
        except ProviderUnavailable as exc:
            if exc.maybe_created:
                # Refunded and never sent again; the prompt may be in the queue under
                # the id the bot chose, so take it out rather than let it run unseen.
                await self.cancel(prompt_id)
            raise
        if not isinstance(body, Mapping) or not body.get("prompt_id"):
            raise ProviderUnavailable(_(UNAVAILABLE), detail="queue answer without prompt_id")
        if body.get("node_errors"):
            refusal = describe_refusal(body)
            log.warning("ComfyUI queued the workflow with node errors", refusal=refusal)
        return PredictionStatus(id=str(body["prompt_id"]), state=PredictionState.PENDING)

    async def _upload(self, request: ProviderRequest, prompt_id: str) -> str:
        """Put the input image in ComfyUI's input folder under a name of this job's own;
        ``overwrite`` makes a repeated upload (a retry) the same file, not a copy."""
        image = request.images[0]
        suffix = _IMAGE_SUFFIX.get(image.content_type, "png")
        answer = await self.call(
            "POST",
            f"{self.base_url}/upload/image",
            headers=self.auth_headers,
            files={"image": (f"kontext-{prompt_id}.{suffix}", image.data, image.content_type)},
            data={"type": "input", "overwrite": "true"},
        )
        if not isinstance(answer, Mapping) or not answer.get("name"):
            raise ProviderUnavailable(_(UNAVAILABLE), detail="upload answer without name")
        subfolder = str(answer.get("subfolder") or "")
        name = str(answer["name"])
        return f"{subfolder}/{name}" if subfolder else name

    # -- status -----------------------------------------------------------------------

    async def status(self, prediction_id: str) -> PredictionStatus:
        """From ``/history`` once finished; else from ``/queue``; a prompt in neither
        (after a second look at the history, in case it finished in between) is gone."""
        finished = await self._history(prediction_id)
        if finished is not None:
            return finished
        queue = await self.call("GET", f"{self.base_url}/queue", headers=self.auth_headers)
        if not isinstance(queue, Mapping):
            raise ProviderUnavailable(_(UNAVAILABLE), detail="queue answer is not an object")
        if prediction_id in _queued_ids(queue.get("queue_running")):
            progress = self._progress.get(prediction_id)
            return PredictionStatus(prediction_id, PredictionState.RUNNING, progress=progress)
        if prediction_id in _queued_ids(queue.get("queue_pending")):
            return PredictionStatus(prediction_id, PredictionState.PENDING)
        finished = await self._history(prediction_id)
        if finished is not None:
            return finished
        return PredictionStatus(prediction_id, PredictionState.FAILED, error=FORGOTTEN)

    async def _history(self, prediction_id: str) -> PredictionStatus | None:
        body = await self.call(
            "GET", f"{self.base_url}/history/{prediction_id}", headers=self.auth_headers
        )
        entry = body.get(prediction_id) if isinstance(body, Mapping) else None
        if not isinstance(entry, Mapping):
            return None
        self._progress.pop(prediction_id, None)
        return self._finished(prediction_id, entry)

    def _finished(self, prediction_id: str, entry: Mapping[str, Any]) -> PredictionStatus:
        status = entry.get("status")
        messages = status.get("messages") if isinstance(status, Mapping) else None
        events = {
            str(item[0]): item[1]
            for item in messages or []
            if isinstance(item, list) and len(item) == 2 and isinstance(item[1], Mapping)
        }
        failed = isinstance(status, Mapping) and status.get("status_str") == "error"
        if "execution_interrupted" in events:
            return PredictionStatus(prediction_id, PredictionState.CANCELED, error="interrupted")
        if failed or "execution_error" in events:
            error = events.get("execution_error") or {}
            text = f"{error.get('node_type')}: {error.get('exception_message')}".strip()
            flagged = any(word in text.lower() for word in _FLAGGED)
            state = PredictionState.MODERATED if flagged else PredictionState.FAILED
            return PredictionStatus(prediction_id, state, error=text[:500])
        return PredictionStatus(
            prediction_id, PredictionState.SUCCEEDED, output_urls=self._outputs(entry)
        )

    def _outputs(self, entry: Mapping[str, Any]) -> tuple[str, ...]:
        """``/view`` URLs of the saved images (``type: output``; previews are ``temp``)."""
        urls: list[str] = []
        outputs = entry.get("outputs")
        for node_output in (outputs or {}).values() if isinstance(outputs, Mapping) else ():
            images = node_output.get("images") if isinstance(node_output, Mapping) else None
            for image in images or []:
                if not isinstance(image, Mapping) or image.get("type") != "output":
                    continue
                query = urlencode(
                    {
                        "filename": image.get("filename", ""),
                        "subfolder": image.get("subfolder", ""),
                        "type": "output",
                    }
                )
                urls.append(f"{self.base_url}/view?{query}")
        return tuple(urls)

    # -- cancel -----------------------------------------------------------------------

    async def cancel(self, prediction_id: str) -> None:
        """Interrupt the prompt if it is the one running, or delete it from the queue if
        it waits; a finished or unknown prompt is left alone. ``/interrupt`` names the
        prompt, so a server that honours that never stops another user's work."""
        with contextlib.suppress(KontextError, httpx.HTTPError):
            queue = await self.call("GET", f"{self.base_url}/queue", headers=self.auth_headers)
            if not isinstance(queue, Mapping):
                return
            if prediction_id in _queued_ids(queue.get("queue_running")):
                await self._post_quietly("/interrupt", {"prompt_id": prediction_id})
            elif prediction_id in _queued_ids(queue.get("queue_pending")):
                await self._post_quietly("/queue", {"delete": [prediction_id]})

    async def _post_quietly(self, path: str, body: dict[str, Any]) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self._client.post(f"{self.base_url}{path}", json=body, headers=self.auth_headers)

    # -- the websocket: progress --------------------------------------------------------

    def progress_of(self, prediction_id: str) -> tuple[int, int] | None:
        return self._progress.get(prediction_id)

    async def _listen(self) -> None:
        """Start the websocket listener once, and give it a moment to connect so the
        first steps of the prompt about to be queued are not missed. Progress is a
        courtesy: a server (or proxy) without websockets still runs every job."""
        if self._listener is not None and not self._listener.done():
            return  # listening, or retrying in the background: no job waits for it
        self._listener = asyncio.get_running_loop().create_task(self._listen_forever())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_WS_FIRST_WAIT):
                await self._connected.wait()

    def _ws_url(self) -> str:
        scheme = "wss" if self.base_url.startswith("https://") else "ws"
        rest = self.base_url.split("://", 1)[1]
        return f"{scheme}://{rest}/ws?{urlencode({'clientId': self.client_id})}"

    async def _listen_forever(self) -> None:
        wait, warned = 1.0, False
        while True:
            try:
                if self._session is None or self._session.closed:
                    self._session = aiohttp.ClientSession(
                        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
                    )
                async with self._session.ws_connect(
                    self._ws_url(), headers=self.auth_headers, autoping=True
                ) as socket:
                    self._connected.set()
                    wait, warned = 1.0, False
                    async for message in socket:
                        if message.type == aiohttp.WSMsgType.TEXT:
                            self._on_message(message.data)
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                # Once per outage: the retries of a server without websockets (a proxy
                # that does not pass them) would otherwise fill the log.
                if not warned:
                    log.warning("ComfyUI websocket unavailable; steps not shown", error=repr(exc))
                warned = True
            self._connected.clear()
            await asyncio.sleep(wait)
            wait = min(wait * 2, _WS_RETRY_CAP)

    def _on_message(self, raw: str) -> None:
        try:
            message = _json(raw)
        except ValueError:
            return
        data = message.get("data")
        if message.get("type") != "progress" or not isinstance(data, Mapping):
            return
        prompt_id, value, most = data.get("prompt_id"), data.get("value"), data.get("max")
        if isinstance(prompt_id, str) and isinstance(value, int) and isinstance(most, int):
            self._progress[prompt_id] = (value, most)
            self._progress.move_to_end(prompt_id)
            while len(self._progress) > _PROGRESS_KEPT:
                self._progress.popitem(last=False)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().aclose()


def _json(raw: str) -> Mapping[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, Mapping):
        raise ValueError("not an object")
    return value
