"""What only ComfyUI does: workflows filled in by node titles, the operator's refused
graph, sampler steps as progress, finding a job again after a restart, cancelling,
the proxy's auth header, and the console end to end. The shared behaviour of every
provider is in test_provider_contract.py."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog.testing
from PIL import Image

from bot.app import build_core
from bot.config import load_settings
from bot.domain import EditOptions, EditRequest, JobState, UserRef
from bot.errors import ConfigError
from bot.providers.base import InputImage, PredictionState, ProviderCapabilities, ProviderRequest
from bot.providers.comfyui import WORKFLOW_REFUSED, ComfyUIProvider, prompt_id_for
from bot.providers.comfyui_workflow import shipped_upscale_workflow, shipped_workflow
from bot.providers.factory import build_provider
from tests.fakes.comfyui import DEFAULT_KEY, FakeComfyUI
from tests.fakes.coretoday import DEFAULT_KEY as CORE_KEY
from tests.fakes.coretoday import FakeCoreToday
from tests.recording import RecordingFrontend
from tests.support import (
    HANG_GUARD_SECONDS,
    cat_png,
    core_with_fallbacks,
    edit_and_wait,
    make_settings,
    png,
    start,
)

USER = UserRef("slack", "T1", "U1")
SHIPPED = Path(__file__).resolve().parent.parent / "bot/providers/comfyui_workflows"


@pytest.fixture
async def comfy() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI() as fake:
        yield fake


def provider_for(fake: FakeComfyUI, **overrides: Any) -> ComfyUIProvider:
    options: dict[str, Any] = {
        "base_url": fake.base_url,
        "api_key": DEFAULT_KEY,
        "model": "flux-kontext-dev",
        "capabilities": ProviderCapabilities(),
        "request_timeout": 5.0,
        "max_retries": 2,
        "wait_initial": 0.01,
        "wait_cap": 0.05,
    }
    options.update(overrides)
    return ComfyUIProvider(**options)


def edit(seed: int = 7, **options: Any) -> ProviderRequest:
    return ProviderRequest(
        "make it a watercolor",
        EditOptions(seed=seed, **options),
        (InputImage(png(), "image/png", "in.png"),),
    )


async def until(condition: Any) -> None:
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not condition():
            await asyncio.sleep(0.01)


class Core:
    """A core on the fake ComfyUI with a recording front end."""

    def __init__(self, tmp_path: Path, fake: FakeComfyUI, **provider: Any) -> None:
        self.frontend = RecordingFrontend()
        self.settings = make_settings(
            tmp_path,
            fake.base_url,
            provider={"name": "comfyui", "api_key": DEFAULT_KEY, "max_retries": 1, **provider},
            jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
        )
        self.core: Any = None

    async def __aenter__(self) -> Core:
        await self.open()
        return self

    async def open(self) -> None:
        self.core = await build_core(self.settings, {"slack": self.frontend})
        self.core.provider.wait_initial = 0.01
        self.core.runner.set_limits(replace(self.core.runner.limits, idle_scan_seconds=0.1))
        await self.core.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.core.close()

    async def submit(self, key: str = "evt-1", *, image: bool = True, **options: Any) -> str:
        attachments = (self.frontend.attach(f"{key}.png", png()),) if image else ()
        ack = await self.core.service.submit(
            EditRequest(
                USER, "make it a watercolor", EditOptions(**options), attachments, {"c": 1}, key
            )
        )
        return str(ack.job.id)

    async def wait(self, job_id: str) -> Any:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            return await self.core.runner.wait_for(job_id)

    async def balance(self) -> int:
        return int((await self.core.service.credits(USER)).balance)


def workflow_file(tmp_path: Path, change: Any) -> Path:
    graph = json.loads((SHIPPED / "kontext_dev_edit.json").read_text())
    change(graph)
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(graph))
    return path


# -- workflows ------------------------------------------------------------------------


def test_the_shipped_workflows_are_the_kontext_dev_graph() -> None:
    edit_flow = shipped_workflow("kontext_dev_edit.json", needs_image=True)
    classes = {node["class_type"] for node in edit_flow.graph.values()}
    assert {
        "UNETLoader",
        "DualCLIPLoader",
        "VAELoader",
        "LoadImage",
        "FluxKontextImageScale",
        "VAEEncode",
        "ReferenceLatent",
        "CLIPTextEncode",
        "FluxGuidance",
        "KSampler",
        "VAEDecode",
        "SaveImage",
    } <= classes
    graph = edit_flow.fill(prompt="make it a watercolor", seed=42, image="in.png")
    assert graph[edit_flow.prompt_node]["inputs"]["text"] == "make it a watercolor"
    assert graph[edit_flow.seed_node]["inputs"]["seed"] == 42
    assert graph[edit_flow.image_node or ""]["inputs"]["image"] == "in.png"
    assert edit_flow.graph[edit_flow.prompt_node]["inputs"]["text"] == ""  # a copy was filled
    text_flow = shipped_workflow("kontext_dev_text.json", needs_image=False)
    filled = text_flow.fill(prompt="a fox", seed=1, ratio="16:9")
    assert filled[text_flow.size_node or ""]["inputs"]["width"] == 1392
    assert filled[text_flow.size_node or ""]["inputs"]["height"] == 752


def drop_titles(*titles: str) -> Any:
    def change(graph: dict[str, Any]) -> None:
        for node in graph.values():
            if node["_meta"]["title"] in titles:
                node["_meta"]["title"] = node["class_type"]

    return change


def test_a_workflow_without_the_nodes_is_refused_at_start_naming_them(tmp_path: Path) -> None:
    path = workflow_file(tmp_path, drop_titles("kontext image", "kontext seed"))
    config = tmp_path / "config.toml"
    config.write_text(f'[provider]\nname = "comfyui"\nworkflow = "{path}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    message = str(info.value)
    assert "provider.workflow" in message
    assert "'kontext image', 'kontext seed'" in message and "kontext prompt" not in message
    # The factory refuses it too (a provider built without the config's checks).
    settings = make_settings(tmp_path, provider={"name": "comfyui"})
    object.__setattr__(settings.provider, "workflow", str(path))
    with pytest.raises(ConfigError, match="'kontext image', 'kontext seed'"):
        build_provider(settings)


def test_a_ui_format_workflow_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "ui.json"
    path.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    config = tmp_path / "config.toml"
    config.write_text(f'[provider]\nname = "comfyui"\nworkflow = "{path}"\n')
    with pytest.raises(ConfigError, match=r"Export \(API\)"):
        load_settings(config)


async def test_an_operators_workflow_is_filled_by_its_titles(
    tmp_path: Path, comfy: FakeComfyUI
) -> None:
    def renumber(graph: dict[str, Any]) -> None:
        # Other node ids, and a noise node's "noise_seed" would do as well as "seed".
        graph["42"] = graph.pop("7")
        for node in graph.values():
            for name, value in node["inputs"].items():
                if value == ["7", 0]:
                    node["inputs"][name] = ["42", 0]

    provider = provider_for(comfy, workflow=str(workflow_file(tmp_path, renumber)))
    try:
        await provider.submit(edit(seed=5), idempotency_key="job-1")
    finally:
        await provider.aclose()
    (create,) = comfy.creates
    assert create.input is not None
    assert create.input["graph"]["42"]["inputs"]["text"] == "make it a watercolor"
    assert create.input["seed"] == 5 and create.file_bytes == png()


# -- the refused graph ----------------------------------------------------------------


def needs_a_custom_node(graph: dict[str, Any]) -> None:
    graph["20"] = {"class_type": "NSFWChecker", "inputs": {"images": ["12", 0]}}


def sampler_without_steps(graph: dict[str, Any]) -> None:
    del graph["11"]["inputs"]["steps"]


@pytest.mark.parametrize(
    ("change", "logged"),
    [
        (needs_a_custom_node, "missing_node_type: Node 'NSFWChecker' not found"),
        (sampler_without_steps, "#11 KSampler: required_input_missing (steps)"),
    ],
    ids=["unknown-node", "node-errors"],
)
async def test_a_refused_graph_is_an_operator_error_refunded_not_retried(
    tmp_path: Path, comfy: FakeComfyUI, change: Any, logged: str
) -> None:
    path = workflow_file(tmp_path, change)
    with structlog.testing.capture_logs() as logs:
        async with Core(tmp_path, comfy, workflow=str(path)) as core:
            job = await core.wait(await core.submit())
            balance = await core.balance()
    (refusal,) = [e for e in logs if e["event"].startswith("ComfyUI refused the workflow")]
    assert refusal["log_level"] == "error" and logged in refusal["refusal"]
    assert job.state == JobState.FAILED and balance == 1200
    assert len(comfy.creates) == 1  # not retried
    ((_, message),) = core.frontend.failures
    assert WORKFLOW_REFUSED in message
    assert logged in (job.error_message or "")


async def test_a_refused_graph_fails_over_to_the_next_provider(
    tmp_path: Path, comfy: FakeComfyUI
) -> None:
    from tests.fakes.bfl import DEFAULT_KEY as BFL_KEY
    from tests.fakes.bfl import FakeBfl

    path = workflow_file(tmp_path, sampler_without_steps)
    async with FakeBfl() as bfl:
        fallback = {"name": "bfl", "base_url": bfl.base_url, "api_key": BFL_KEY}
        async with Core(tmp_path, comfy, workflow=str(path), fallbacks=[fallback]) as core:
            job = await core.wait(await core.submit())
    assert job.state == JobState.SUCCEEDED and job.provider == "bfl"


async def test_comfyui_takes_over_as_a_fallback(tmp_path: Path) -> None:
    frontend = RecordingFrontend()
    async with FakeCoreToday() as primary, FakeComfyUI(api_key="") as comfy:
        primary.script.create_failures = [503, 503]
        comfyui = {"name": "comfyui", "base_url": comfy.base_url}
        core = await core_with_fallbacks(tmp_path, primary.base_url, CORE_KEY, [comfyui], frontend)
        try:
            job = await edit_and_wait(core, frontend, USER, "fb")
        finally:
            await core.close()
    assert job.state == JobState.SUCCEEDED and job.provider == "comfyui"
    assert len(comfy.creates) == 1 and len(frontend.delivered) == 1
    # No key configured for the fallback: a ComfyUI of its own gets no Authorization.
    assert all("Authorization" not in r.headers for r in comfy.received)


# -- progress -------------------------------------------------------------------------


async def test_sampler_steps_reach_the_chat_as_step_n_of_m(
    tmp_path: Path, comfy: FakeComfyUI
) -> None:
    comfy.script.outcome = "never"
    comfy.auto_steps = False
    async with Core(tmp_path, comfy) as core:
        core.core.runner.set_limits(replace(core.core.runner.limits, progress_interval=0.0))
        job_id = await core.submit()
        await until(lambda: comfy.polls > 0)
        (prompt_id,) = comfy.prompts
        for step in (3, 12):
            await comfy.send_progress(prompt_id, step)
            await until(lambda s=step: (job_id, f"step {s} of 20") in core.frontend.progress)
        comfy.finish(prompt_id)
        job = await core.wait(job_id)
    assert job.state == JobState.SUCCEEDED
    steps = [stage for _, stage in core.frontend.progress if stage.startswith("step")]
    assert steps == ["step 3 of 20", "step 12 of 20"]  # each change once, in order


async def test_with_webhooks_on_comfyui_is_still_polled(tmp_path: Path, comfy: FakeComfyUI) -> None:
    """ComfyUI never calls a webhook: webhook-first waiting (bot.jobs.polling) must not apply
    to it, or its jobs would wait for the safety-net poll, here an hour away."""
    comfy.script.polls_before_done = 2
    webhooks = {
        "webhook_base_url": "http://127.0.0.1:9/never-called",
        "webhook_host": "127.0.0.1",
        "webhook_port": 0,
    }
    async with Core(tmp_path, comfy, **webhooks) as core:
        core.core.runner.set_limits(replace(core.core.runner.limits, poll_max=3600.0))
        job = await core.wait(await core.submit())
    assert job.state == JobState.SUCCEEDED
    assert comfy.polls >= 3  # found by its own polls


async def test_step_progress_is_throttled(tmp_path: Path, comfy: FakeComfyUI) -> None:
    comfy.script.outcome = "never"
    comfy.auto_steps = False
    async with Core(tmp_path, comfy) as core:
        core.core.runner.set_limits(replace(core.core.runner.limits, progress_interval=3600.0))
        job_id = await core.submit()
        await until(lambda: comfy.polls > 0)
        (prompt_id,) = comfy.prompts
        await comfy.send_progress(prompt_id, 3)
        await until(lambda: (job_id, "step 3 of 20") in core.frontend.progress)
        await comfy.send_progress(prompt_id, 12)
        seen = comfy.polls
        await until(lambda: comfy.polls >= seen + 5)  # step 12 was read, and held back
        comfy.finish(prompt_id)
        await core.wait(job_id)
    steps = [stage for _, stage in core.frontend.progress if stage.startswith("step")]
    assert steps == ["step 3 of 20"]


# -- restart safety -------------------------------------------------------------------


@pytest.mark.parametrize("where", ["queue", "history"])
async def test_a_restart_finds_the_job_instead_of_queueing_it_again(
    tmp_path: Path, comfy: FakeComfyUI, where: str
) -> None:
    comfy.script.outcome = "never"
    core = Core(tmp_path, comfy)
    await core.open()
    job_id = await core.submit()
    await until(lambda: comfy.polls > 0)  # the prompt id is stored
    await core.core.close()  # the bot goes away mid-job
    (prompt_id,) = comfy.prompts
    if where == "history":
        await comfy.complete(prompt_id)  # finished while the bot was down
    else:
        comfy.finish(prompt_id)  # still running; ends at the next look
    await core.open()
    try:
        job = await core.wait(job_id)
        balance = await core.balance()
    finally:
        await core.core.close()
    assert job.state == JobState.SUCCEEDED and balance == 1080
    assert len(comfy.creates) == 1 and job.prediction_id == prompt_id


async def test_a_lost_queue_answer_is_refunded_and_the_orphan_withdrawn(
    tmp_path: Path, comfy: FakeComfyUI
) -> None:
    comfy.script.drop_create_answer = True
    async with Core(tmp_path, comfy) as core:
        job_id = await core.submit()
        job = await core.wait(job_id)
        balance = await core.balance()
    assert job.state == JobState.FAILED and balance == 1200
    assert len(comfy.creates) == 1
    # The bot chose the prompt id, so it could take the orphan out of the GPU's way.
    (interrupt,) = [r for r in comfy.received if r.path == "/interrupt"]
    assert interrupt.fields == {"prompt_id": prompt_id_for(job_id)}
    (prompt,) = comfy.prompts.values()
    assert prompt.interrupted and prompt.id == prompt_id_for(job_id)


# -- cancelling -----------------------------------------------------------------------


async def test_cancel_interrupts_the_running_prompt_and_dequeues_a_pending_one(
    comfy: FakeComfyUI,
) -> None:
    comfy.script.outcome = "never"
    provider = provider_for(comfy)
    try:
        running = await provider.submit(edit(), idempotency_key="job-a")
        pending = await provider.submit(edit(), idempotency_key="job-b")
        assert (await provider.status(running.id)).state == PredictionState.RUNNING
        assert (await provider.status(pending.id)).state == PredictionState.PENDING
        await provider.cancel(pending.id)
        assert pending.id not in comfy.prompts  # deleted from the queue
        await provider.cancel(running.id)
        final = await provider.status(running.id)
        interrupts = [r for r in comfy.received if r.path == "/interrupt"]
        await provider.cancel(running.id)  # finished now: nothing more is sent
    finally:
        await provider.aclose()
    assert final.state == PredictionState.CANCELED
    assert [r.fields for r in interrupts] == [{"prompt_id": running.id}]
    deletes = [r.fields for r in comfy.received if r.path == "/queue" and r.method == "POST"]
    assert deletes == [{"delete": [pending.id]}]
    assert comfy.cancels == 2


async def test_text_to_image_uses_the_text_workflow_at_the_ratio(comfy: FakeComfyUI) -> None:
    provider = provider_for(comfy)
    try:
        request = ProviderRequest("a fox", EditOptions(seed=1, aspect_ratio="9:16"))
        status = await provider.submit(request, idempotency_key="t2i")
        while not status.state.terminal:
            status = await provider.status(status.id)
        data = await provider.fetch_output(status.output_urls[0], max_bytes=10_000_000)
    finally:
        await provider.aclose()
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (752, 1392)
    (create,) = comfy.creates
    assert create.file_bytes is None
    assert [r for r in comfy.received if r.path == "/upload/image"] == []


async def test_an_operators_workflow_refuses_text_to_image(
    tmp_path: Path, comfy: FakeComfyUI
) -> None:
    path = workflow_file(tmp_path, lambda graph: None)
    async with Core(tmp_path, comfy, workflow=str(path)) as core:
        job = await core.wait(await core.submit(image=False))
    assert job.state == JobState.FAILED and comfy.creates == []
    assert "attach an image" in core.frontend.failures[0][1]


# -- the proxy's header ---------------------------------------------------------------


async def test_the_auth_header_goes_with_every_call_and_the_websocket(tmp_path: Path) -> None:
    header = "Basic a29udGV4dDpzZWNyZXQ="
    async with FakeComfyUI(api_key=header) as comfy:
        async with Core(tmp_path, comfy, api_key="", auth_header=header) as core:
            job = await core.wait(await core.submit())
        assert job.state == JobState.SUCCEEDED
        paths = {r.path for r in comfy.received}
        assert {"/upload/image", "/prompt", "/history/" + job.prediction_id, "/view"} <= paths
        assert all(r.headers.get("Authorization") == header for r in comfy.received)
        assert comfy.connected.is_set()  # the websocket got through the same check
        (tmp_path / "no-header").mkdir()
        async with Core(tmp_path / "no-header", comfy, api_key="") as refused:
            job = await refused.wait(await refused.submit("evt-2"))
        assert job.state == JobState.FAILED


async def test_a_lost_websocket_costs_nothing_but_the_steps(comfy: FakeComfyUI) -> None:
    provider = provider_for(comfy)
    try:
        status = await provider.submit(edit(), idempotency_key="ws")
        for socket in list(comfy.sockets.values()):
            await socket.close()
        while not status.state.terminal:
            status = await provider.status(status.id)
    finally:
        await provider.aclose()
    assert status.state == PredictionState.SUCCEEDED


# -- the console, end to end -----------------------------------------------------------


async def test_console_edits_with_comfyui_and_shows_the_steps(
    tmp_path: Path, comfy: FakeComfyUI
) -> None:
    import os

    from tests.support import ROOT

    comfy.script.outcome = "never"
    comfy.auto_steps = False
    image = cat_png(tmp_path / "cat.png")
    out = tmp_path / "watercolor.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
    env.update(
        KONTEXT_PROVIDER__NAME="comfyui",
        KONTEXT_PROVIDER__BASE_URL=comfy.base_url,
        KONTEXT_PROVIDER__API_KEY=DEFAULT_KEY,
        KONTEXT_STORAGE__URL=f"sqlite:///{tmp_path / 'kontext.db'}",
        KONTEXT_STORAGE__DATA_DIR=str(tmp_path / "data"),
        KONTEXT_JOBS__POLL_INITIAL_SECONDS="0.05",
        KONTEXT_JOBS__POLL_MAX_SECONDS="0.1",
        PYTHONPATH=str(ROOT),
    )
    process = await start(
        ["console", "--image", str(image), "--out", str(out), "make it a watercolor"],
        env,
        tmp_path,
    )
    assert process.stderr is not None and process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            await until(lambda: comfy.polls > 0)
            (prompt_id,) = comfy.prompts
            await comfy.send_progress(prompt_id, 12)
            while not any("step 12 of 20" in line for line in lines):
                lines.append((await process.stderr.readline()).decode())
            comfy.finish(prompt_id)
            rest, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, "".join(lines)
    assert rest.decode().strip() == str(out)
    with Image.open(out) as written:
        assert written.format == "PNG" and written.size == (1248, 832)  # Kontext's own size
    (create,) = comfy.creates
    assert create.input is not None and create.input["prompt"] == "make it a watercolor"
    assert create.file_bytes == image.read_bytes()


async def test_a_named_dev_model_runs_on_comfyui_at_its_own_price(tmp_path: Path) -> None:
    """issue 18: ComfyUI as the provider of one named model. `--model dev` goes to the
    community's GPU at dev's price; the default model never does, even with ComfyUI
    configured as a fallback: when core.today is busy a pro job waits for it."""
    models = [
        {
            "name": "pro",
            "model": "black-forest-labs/flux-kontext-pro",
            "cost_per_image": 120,
            "default": True,
            "providers": ["coretoday"],
        },
        {
            "name": "dev",
            "model": "flux-kontext-dev",
            "cost_per_image": 20,
            "providers": ["comfyui"],
        },
    ]
    frontend = RecordingFrontend()
    async with FakeCoreToday() as primary, FakeComfyUI(api_key="") as comfy:
        comfyui = {"name": "comfyui", "base_url": comfy.base_url}
        core = await core_with_fallbacks(
            tmp_path, primary.base_url, CORE_KEY, [comfyui], frontend, models
        )
        try:
            start_balance = int((await core.service.credits(USER)).balance)
            dev = await edit_and_wait(core, frontend, USER, "dev-1", "dev")
            after_dev = int((await core.service.credits(USER)).balance)
            creates_after_dev = len(primary.creates)
            primary.script.create_failures = [503, 503]
            pro = await edit_and_wait(core, frontend, USER, "pro-1")
            after_pro = int((await core.service.credits(USER)).balance)
        finally:
            await core.close()
    assert dev.state == JobState.SUCCEEDED and dev.provider == "comfyui"
    assert dev.model_name == "dev" and start_balance - after_dev == 20
    assert len(comfy.creates) == 1 and creates_after_dev == 0
    # pro is not served by ComfyUI: through the primary's 503s it is held for
    # core.today (bot.jobs.failover), and the GPU never sees it.
    assert pro.state == JobState.SUCCEEDED and pro.provider == "coretoday"
    assert after_dev - after_pro == 120 and len(comfy.creates) == 1
    assert len(primary.creates) == 3  # two refused with 503, then the one it made


# -- upscale (issue 27): the shipped upscale workflow --------------------------------------------


def test_the_shipped_upscale_workflow_has_the_upscale_nodes() -> None:
    graph = json.loads((SHIPPED / "upscale.json").read_text())
    classes = {node["class_type"] for node in graph.values()}
    assert {"UpscaleModelLoader", "ImageUpscaleWithModel", "ImageScaleBy"} <= classes
    filled = shipped_upscale_workflow().fill(image="in.png", scale=2)
    (scale,) = [n for n in filled.values() if n["class_type"] == "ImageScaleBy"]
    assert scale["inputs"]["scale_by"] == 0.5  # 4x model, then half: 2x


async def test_an_upscale_runs_the_upscale_workflow_at_its_scale(
    tmp_path: Path, comfy: FakeComfyUI
) -> None:
    models = [
        {"name": "dev", "model": "flux-kontext-dev", "cost_per_image": 20, "default": True},
        {"name": "upscale", "kind": "upscale", "model": "4x-UltraSharp.pth", "cost_per_image": 5},
    ]
    settings = make_settings(
        tmp_path,
        comfy.base_url,
        provider={"name": "comfyui", "api_key": DEFAULT_KEY, "max_retries": 1},
        models=models,  # type: ignore[arg-type]
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
    )
    frontend = RecordingFrontend()
    app = await build_core(settings, {"slack": frontend})
    app.provider.wait_initial = 0.01
    await app.start()
    try:
        image = frontend.attach("in.png", png(size=(64, 48)))
        ack = await app.service.submit(
            EditRequest(USER, "", EditOptions(model="upscale", upscale=2), (image,), {}, "up-1")
        )
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            job = await app.runner.wait_for(ack.job.id)
    finally:
        await app.close()
    assert job.state == JobState.SUCCEEDED and job.cost == 5
    (create,) = comfy.creates
    graph = create.input["graph"]  # type: ignore[index]
    loader = next(n for n in graph.values() if n["class_type"] == "UpscaleModelLoader")
    assert loader["inputs"]["model_name"] == "4x-UltraSharp.pth"
    (result,) = frontend.delivered
    assert (result.width, result.height) == (128, 96)


async def test_fake_comfyui_refuses_an_upscale_model_it_does_not_have(comfy: FakeComfyUI) -> None:
    graph = shipped_upscale_workflow().fill(image="missing.png", scale=4, model_file="nope.pth")
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{comfy.base_url}/prompt",
            headers={"Authorization": f"Bearer {DEFAULT_KEY}"},
            json={"prompt": graph},
        )
    assert answer.status_code == 400
    errors = answer.json()["node_errors"]
    kinds = {e["errors"][0]["type"] for e in errors.values()}
    assert kinds == {"value_not_in_list", "custom_validation_failed"}
    assert comfy.prompts == {}
