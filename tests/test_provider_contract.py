"""One contract, every provider: the same scripted situations against each fake.

Each provider is the real client (real httpx) against its own loopback fake. The fakes
share one scripting interface (``tests.fakes.coretoday.Script``), so a behaviour the bot
relies on is proven for every provider by the same test.
"""

from __future__ import annotations

import asyncio
import copy
import io
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image

from bot.app import build_core
from bot.domain import EditOptions, EditRequest, JobState, UserRef
from bot.errors import KontextError, ProviderUnavailable, UserInputError
from bot.providers.base import (
    InputImage,
    PredictionState,
    PredictionStatus,
    ProviderCapabilities,
    ProviderRequest,
)
from bot.providers.bfl import BflProvider
from bot.providers.comfyui import ComfyUIProvider
from bot.providers.coretoday import CoreTodayProvider
from bot.providers.http import BAD_OUTPUT_LINK, MAX_REDIRECTS, HttpProvider
from bot.providers.replicate import ReplicateProvider
from tests.fakes import bfl as bfl_fake
from tests.fakes import comfyui as comfyui_fake
from tests.fakes import coretoday as coretoday_fake
from tests.fakes import replicate as replicate_fake
from tests.fakes.provider import FileHost, Received
from tests.recording import RecordingFrontend
from tests.support import HANG_GUARD_SECONDS, LoopClock, make_settings, png


@dataclass(frozen=True)
class Flavour:
    name: str
    fake: Callable[[], AbstractAsyncContextManager[Any]]
    provider: type[HttpProvider]
    key: str
    cancels: bool  # whether the API has a cancel call


FLAVOURS = [
    Flavour(
        "coretoday",
        coretoday_fake.FakeCoreToday,
        CoreTodayProvider,
        coretoday_fake.DEFAULT_KEY,
        True,
    ),
    Flavour("bfl", bfl_fake.FakeBfl, BflProvider, bfl_fake.DEFAULT_KEY, False),
]
FLAVOURS.append(
    Flavour(
        "replicate",
        replicate_fake.FakeReplicate,
        ReplicateProvider,
        replicate_fake.DEFAULT_KEY,
        True,
    )
)
FLAVOURS.append(
    Flavour(
        "comfyui",
        comfyui_fake.FakeComfyUI,
        ComfyUIProvider,
        comfyui_fake.DEFAULT_KEY,
        True,
    )
)


@dataclass
class Harness:
    flavour: Flavour
    fake: Any

    def provider(self, **overrides: Any) -> HttpProvider:
        options: dict[str, Any] = {
            "base_url": self.fake.base_url,
            "api_key": self.flavour.key,
            "model": "black-forest-labs/flux-kontext-pro",
            "capabilities": ProviderCapabilities(),
            "request_timeout": 2.0,
            "max_retries": 3,
            "wait_initial": 0.01,
            "wait_cap": 0.05,
        }
        options.update(overrides)
        return self.flavour.provider(**options)


@pytest.fixture(params=FLAVOURS, ids=lambda flavour: flavour.name)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    flavour: Flavour = request.param
    async with flavour.fake() as fake:
        yield Harness(flavour, fake)


def edit(with_image: bool = True, **options: Any) -> ProviderRequest:
    images = (InputImage(png(), "image/png", "in.png"),) if with_image else ()
    return ProviderRequest("make it a watercolor", EditOptions(**options), images)


async def until_done(provider: HttpProvider, status: PredictionStatus) -> PredictionStatus:
    for _ in range(30):
        if status.state.terminal:
            return status
        status = await provider.status(status.id)
    raise AssertionError("never finished")


@pytest.mark.parametrize("with_image", [True, False], ids=["edit", "text-to-image"])
async def test_success(harness: Harness, with_image: bool) -> None:
    harness.fake.script.polls_before_done = 2
    provider = harness.provider()
    try:
        status = await until_done(
            provider, await provider.submit(edit(with_image, seed=3), idempotency_key="job-1")
        )
        assert status.state == PredictionState.SUCCEEDED
        data = await provider.fetch_output(status.output_urls[0], max_bytes=5_000_000)
    finally:
        await provider.aclose()
    assert Image.open(io.BytesIO(data)).format == "PNG"
    (create,) = harness.fake.creates
    assert create.input["prompt"] == "make it a watercolor"
    assert create.input["seed"] == 3
    assert create.file_bytes == (png() if with_image else None)


@pytest.mark.parametrize(
    ("code", "error", "words"),
    [
        (401, ProviderUnavailable, "API key"),
        (402, ProviderUnavailable, "out of credits"),
        (422, UserInputError, "rejected the request"),
    ],
)
async def test_refusals_are_not_retried(
    harness: Harness, code: int, error: type[KontextError], words: str
) -> None:
    harness.fake.script.create_failures = [code]
    provider = harness.provider()
    with pytest.raises(error) as info:
        await provider.submit(edit(), idempotency_key="j")
    await provider.aclose()
    assert words in info.value.user_message
    assert harness.flavour.key not in info.value.user_message + str(info.value)
    assert len(harness.fake.creates) == 1


async def test_back_pressure_429_is_retried(harness: Harness) -> None:
    harness.fake.script.create_failures = [429, 429]
    provider = harness.provider()
    await provider.submit(edit(), idempotency_key="j")
    await provider.aclose()
    assert len(harness.fake.creates) == 3


@pytest.mark.parametrize("setup", [{"create_failures": [500]}, {"drop_create_answer": True}])
async def test_a_create_that_may_have_happened_is_never_repeated(
    harness: Harness, setup: dict[str, Any]
) -> None:
    for name, value in setup.items():
        # A copy: the parameter's list is shared by every provider's run of this test.
        setattr(harness.fake.script, name, copy.deepcopy(value))
    provider = harness.provider()
    with pytest.raises(ProviderUnavailable) as info:
        await provider.submit(edit(), idempotency_key="j")
    await provider.aclose()
    assert "avoid running it twice" in info.value.user_message
    assert len(harness.fake.creates) == 1


@pytest.mark.parametrize(
    ("outcome", "state"),
    [("failed", PredictionState.FAILED), ("moderated", PredictionState.MODERATED)],
)
async def test_failed_and_moderated(harness: Harness, outcome: str, state: PredictionState) -> None:
    harness.fake.script.outcome = outcome
    provider = harness.provider()
    status = await until_done(provider, await provider.submit(edit(), idempotency_key="j"))
    await provider.aclose()
    assert status.state == state


async def test_status_errors_are_retried(harness: Harness) -> None:
    provider = harness.provider()
    status = await provider.submit(edit(), idempotency_key="j")
    harness.fake.script.status_failures = [500, 429]
    assert (await until_done(provider, status)).state == PredictionState.SUCCEEDED
    await provider.aclose()


async def test_a_fresh_client_resumes_a_submitted_prediction(harness: Harness) -> None:
    harness.fake.script.polls_before_done = 1
    first = harness.provider()
    status = await first.submit(edit(), idempotency_key="j")
    await first.aclose()  # the process that submitted is gone
    second = harness.provider()
    final = await until_done(second, await second.status(status.id))
    await second.aclose()
    assert final.state == PredictionState.SUCCEEDED
    assert len(harness.fake.creates) == 1


# -- result URLs that redirect ------------------------------------------------------------

KEY_HEADERS = ("authorization", "x-key", "api-key", "x-api-key")


def carried_a_key(received: list[Received], key: str) -> list[str]:
    """Every request (path) that carried the key, or any auth header, anywhere in it."""
    return [
        r.path
        for r in received
        if any(key in value for value in r.headers.values())
        or any(name.lower() in KEY_HEADERS for name in r.headers)
    ]


async def finished_output(provider: HttpProvider) -> tuple[str, str]:
    """A finished prediction's result URL, and its path (with query) at the fake."""
    status = await until_done(provider, await provider.submit(edit(), idempotency_key="j"))
    url = status.output_urls[0]
    parts = urlsplit(url)
    return url, parts.path + (f"?{parts.query}" if parts.query else "")


async def test_a_redirected_result_is_followed_and_the_key_stays_home(harness: Harness) -> None:
    provider = harness.provider()
    try:
        async with FileHost() as other:
            url, path = await finished_output(provider)
            # A same-host hop (relative Location), then another host, then a hop there.
            harness.fake.redirects[path] = (301, f"{urlsplit(path).path}?hop=1")
            harness.fake.redirects[f"{urlsplit(path).path}?hop=1"] = (
                307,
                f"{other.base_url}/cdn",
            )
            other.redirects["/cdn"] = (302, "/files/result.png")
            data = await provider.fetch_output(url, max_bytes=5_000_000)
    finally:
        await provider.aclose()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.size == (20, 10)  # the other host's file
    assert [r.path for r in other.received] == ["/cdn", "/files/result.png"]
    assert carried_a_key(other.received, harness.flavour.key) == []


async def test_the_runner_delivers_a_redirected_result(tmp_path: Path, harness: Harness) -> None:
    async with FileHost() as other:
        harness.fake.script.output_location = f"{other.base_url}/files/{{id}}.png"
        (job, balance), frontend = await run_job(tmp_path, harness)
    assert job.state == JobState.SUCCEEDED and balance == 1080
    assert len(frontend.delivered) == 1
    assert len(other.received) == 1
    assert carried_a_key(other.received, harness.flavour.key) == []


@pytest.mark.parametrize("hops", [MAX_REDIRECTS, MAX_REDIRECTS + 1])
async def test_redirects_are_followed_a_few_hops_at_most(harness: Harness, hops: int) -> None:
    provider = harness.provider()
    try:
        async with FileHost() as other:
            url, path = await finished_output(provider)
            harness.fake.redirects[path] = (302, f"{other.base_url}/r1")
            for n in range(1, hops - 1):
                other.redirects[f"/r{n}"] = (302, f"/r{n + 1}")
            other.redirects[f"/r{hops - 1}"] = (302, "/files/result.png")
            if hops <= MAX_REDIRECTS:
                data = await provider.fetch_output(url, max_bytes=5_000_000)
                assert Image.open(io.BytesIO(data)).size == (20, 10)
            else:
                with pytest.raises(ProviderUnavailable) as info:
                    await provider.fetch_output(url, max_bytes=5_000_000)
                assert info.value.user_message == BAD_OUTPUT_LINK
                assert f"more than {MAX_REDIRECTS}" in str(info.value)
                assert "/files/result.png" not in [r.path for r in other.received]
    finally:
        await provider.aclose()
    assert carried_a_key(other.received, harness.flavour.key) == []


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ((302, "{path}"), f"more than {MAX_REDIRECTS} times"),  # a loop
        ((302, "ftp://127.0.0.1/result.png"), "not http(s): ftp"),
        ((302, "file:///etc/passwd"), "not http(s): file"),
        ((302, None), "HTTP 302 without Location"),
        ((300, None), "HTTP 300 without Location"),
    ],
    ids=["loop", "ftp", "file", "302-without-location", "300-without-location"],
)
async def test_a_broken_redirect_is_a_clear_provider_error(
    harness: Harness, answer: tuple[int, str | None], words: str
) -> None:
    provider = harness.provider()
    try:
        url, path = await finished_output(provider)
        status, location = answer
        harness.fake.redirects[path] = (
            status,
            location.format(path=path) if location is not None else None,
        )
        with pytest.raises(ProviderUnavailable) as info:
            await provider.fetch_output(url, max_bytes=5_000_000)
    finally:
        await provider.aclose()
    assert info.value.user_message == BAD_OUTPUT_LINK
    assert words in str(info.value)
    assert not info.value.retryable
    downloads = [r for r in harness.fake.received if r.path == urlsplit(path).path]
    # Not retried: one request per hop of one attempt (a loop is cut after the limit).
    assert len(downloads) == (MAX_REDIRECTS + 1 if words.startswith("more") else 1)


# -- the same contract through the whole runner ----------------------------------------


async def run_job(
    tmp_path: Path, harness: Harness, loop_clock: LoopClock | None = None, **jobs: Any
) -> tuple[Any, RecordingFrontend]:
    """Run one job to its end; with ``loop_clock``, once the prediction is created and its
    id stored, move the loop's clock past the job timeout."""
    frontend = RecordingFrontend()
    settings = make_settings(
        tmp_path,
        harness.fake.base_url,
        provider={"name": harness.flavour.name, "api_key": harness.flavour.key, "max_retries": 2},
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05, **jobs},
    )
    core = await build_core(settings, {"slack": frontend})
    assert core.runner is not None and core.provider is not None
    core.provider.wait_initial = 0.01  # type: ignore[attr-defined]
    core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1))
    await core.start()
    try:
        user = UserRef("slack", "T1", "U1")
        ack = await core.service.submit(
            EditRequest(
                user,
                "make it a watercolor",
                EditOptions(),
                (frontend.attach("in.png", png()),),
                {"c": 1},
                "evt-1",
            )
        )
        if loop_clock is not None:
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                while (await core.store.get(ack.job.id)).prediction_id is None:  # type: ignore[union-attr]
                    await asyncio.sleep(0.01)
            loop_clock.advance(float(jobs["timeout_seconds"]) + 1)
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            job = await core.runner.wait_for(ack.job.id)
        balance = (await core.service.credits(user)).balance
    finally:
        await core.close()
    return (job, balance), frontend


async def test_runner_delivers_and_charges(tmp_path: Path, harness: Harness) -> None:
    (job, balance), frontend = await run_job(tmp_path, harness)
    assert job.state == JobState.SUCCEEDED and balance == 1080
    assert len(frontend.delivered) == 1


async def test_runner_timeout_cancels_where_possible_and_refunds(
    tmp_path: Path, harness: Harness, loop_clock: LoopClock
) -> None:
    harness.fake.script.outcome = "never"
    (job, balance), frontend = await run_job(tmp_path, harness, loop_clock, timeout_seconds=60)
    assert job.state == JobState.FAILED and balance == 1200
    assert "took longer" in frontend.failures[0][1]
    assert harness.fake.cancels == (1 if harness.flavour.cancels else 0)


async def test_runner_refunds_an_expired_output_url(tmp_path: Path, harness: Harness) -> None:
    harness.fake.script.output_failures = [404] * 10  # the signed URL has expired
    (job, balance), frontend = await run_job(tmp_path, harness)
    assert job.state == JobState.FAILED and balance == 1200
    assert "refunded" in frontend.failures[0][1]


async def test_provider_status_shows_the_bfl_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    async with bfl_fake.FakeBfl() as fake:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[provider]\nname = "bfl"\nbase_url = "{fake.base_url}"\n'
            f'api_key = "{bfl_fake.DEFAULT_KEY}"\n'
        )
        code = await asyncio.to_thread(main, ["provider", "status", "--config", str(config)])
        assert code == 0
        out = capsys.readouterr().out
        assert "provider: bfl" in out and "account credits: 1234.5" in out
        fake.api_key = "rotated"
        code = await asyncio.to_thread(main, ["provider", "status", "--config", str(config)])
        assert code == 3
        assert "API key" in capsys.readouterr().err


# -- failover ----------------------------------------------------------------------------


async def failover_core(
    tmp_path: Path, primary: Any, fallback: Any, frontend: RecordingFrontend
) -> Any:
    settings = make_settings(
        tmp_path,
        primary.base_url,
        provider={
            "name": "coretoday",
            "api_key": coretoday_fake.DEFAULT_KEY,
            "max_retries": 1,
            "fallbacks": [
                {"name": "bfl", "base_url": fallback.base_url, "api_key": bfl_fake.DEFAULT_KEY}
            ],
        },
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
    )
    core = await build_core(settings, {"slack": frontend})
    for provider in [core.provider, *core.fallbacks]:
        provider.wait_initial = 0.01
    core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1, hold_seconds=0.05))
    await core.start()
    return core


async def submit_and_wait(core: Any, frontend: RecordingFrontend, key: str) -> Any:
    ack = await core.service.submit(
        EditRequest(
            UserRef("slack", "T1", "U1"),
            "make it a watercolor",
            EditOptions(),
            (frontend.attach(f"{key}.png", png()),),
            {"c": 1},
            key,
        )
    )
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        return await core.runner.wait_for(ack.job.id)


@pytest.mark.parametrize("failure", [[503, 503], [402], [401], [429, 429]])
async def test_unavailable_primary_fails_over_to_the_next_provider(
    tmp_path: Path, failure: list[int]
) -> None:
    frontend = RecordingFrontend()
    async with coretoday_fake.FakeCoreToday() as primary, bfl_fake.FakeBfl() as fallback:
        primary.script.create_failures = list(failure)
        core = await failover_core(tmp_path, primary, fallback, frontend)
        try:
            job = await submit_and_wait(core, frontend, "a")
            kinds = sorted(
                e.kind.value for e in await core.service.history(UserRef("slack", "T1", "U1"))
            )
        finally:
            await core.close()
    assert job.state == JobState.SUCCEEDED
    assert job.provider == "bfl" and job.prediction_id.endswith("task-0001")
    assert len(fallback.creates) == 1
    assert kinds == ["charge", "grant", "reserve"]  # the user's cost did not change


@pytest.mark.parametrize(
    "setup",
    [
        {"outcome": "moderated"},
        {"drop_create_answer": True},
        {"create_failures": [500]},
        {"create_failures": [422]},
    ],
)
async def test_no_failover_for_content_refusals_or_creates_that_may_exist(
    tmp_path: Path, setup: dict[str, Any]
) -> None:
    frontend = RecordingFrontend()
    async with coretoday_fake.FakeCoreToday() as primary, bfl_fake.FakeBfl() as fallback:
        for name, value in setup.items():
            setattr(primary.script, name, copy.deepcopy(value))
        core = await failover_core(tmp_path, primary, fallback, frontend)
        try:
            job = await submit_and_wait(core, frontend, "b")
        finally:
            await core.close()
    assert job.state == JobState.FAILED
    assert fallback.creates == []


async def test_a_resumed_job_is_polled_at_the_provider_that_has_it(tmp_path: Path) -> None:
    frontend = RecordingFrontend()
    async with coretoday_fake.FakeCoreToday() as primary, bfl_fake.FakeBfl() as fallback:
        primary.script.create_failures = [402]
        fallback.script.outcome = "never"
        core = await failover_core(tmp_path, primary, fallback, frontend)
        ack = await core.service.submit(
            EditRequest(
                UserRef("slack", "T1", "U1"),
                "x",
                EditOptions(),
                (frontend.attach("c.png", png()),),
                {"c": 1},
                "c",
            )
        )
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while fallback.polls == 0:
                await asyncio.sleep(0.01)
        await core.close()
        for prediction in fallback.predictions.values():
            prediction.outcome = "succeeded"
        core = await failover_core(tmp_path, primary, fallback, frontend)
        try:
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                job = await core.runner.wait_for(ack.job.id)
        finally:
            await core.close()
    assert job.state == JobState.SUCCEEDED and job.provider == "bfl"
    assert primary.polls == 0 and len(fallback.creates) == 1
