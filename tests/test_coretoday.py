"""The real CoreTodayProvider (real httpx) against the loopback fake core.today."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import pytest
from PIL import Image

from bot.domain import EditOptions
from bot.errors import KontextError, ProviderUnavailable, UserInputError
from bot.providers.base import InputImage, PredictionState, ProviderCapabilities, ProviderRequest
from bot.providers.coretoday import CoreTodayProvider, parse_prediction, parse_retry_after
from tests import support
from tests.fakes.coretoday import DEFAULT_KEY, FakeCoreToday
from tests.support import HANG_GUARD_SECONDS, LoopClock


@contextmanager
def raises_saying(error_type: type[KontextError], words: str) -> Iterator[None]:
    """The user-facing message is what matters; ``str(exc)`` is only for logs."""
    with pytest.raises(error_type) as info:
        yield
    assert words in info.value.user_message, info.value.user_message


# Small enough that the fake's output (a quarter of the input, at least 8×8) is 8×8.
png = partial(support.png, size=(32, 24))


def request(with_image: bool = True, **options: object) -> ProviderRequest:
    images = (InputImage(png(), "image/png", "cat.png"),) if with_image else ()
    return ProviderRequest("make it a watercolor", EditOptions(**options), images)  # type: ignore[arg-type]


def provider_for(fake: FakeCoreToday, key: str = DEFAULT_KEY, **kw: object) -> CoreTodayProvider:
    return CoreTodayProvider(
        base_url=fake.base_url,
        api_key=key,
        model="black-forest-labs/flux-kontext-pro",
        capabilities=ProviderCapabilities(),
        request_timeout=2.0,
        max_retries=3,
        wait_initial=0.01,
        wait_cap=0.05,
        **kw,  # type: ignore[arg-type]
    )


async def poll_to_end(provider: CoreTodayProvider, prediction_id: str) -> PredictionState:
    for _ in range(20):
        status = await provider.status(prediction_id)
        if status.state.terminal:
            return status.state
    raise AssertionError("prediction never finished")


async def test_upload_carries_model_input_and_file(fake: FakeCoreToday) -> None:
    provider = provider_for(fake)
    status = await provider.submit(request(aspect_ratio="16:9", seed=7), idempotency_key="job-1")
    await provider.aclose()
    assert status.state == PredictionState.PENDING
    (create,) = fake.creates
    assert create.path == "/v1/predictions/upload"
    assert create.model == "black-forest-labs/flux-kontext-pro"
    assert create.input == {
        "prompt": "make it a watercolor",
        "aspect_ratio": "16:9",
        "seed": 7,
        "output_format": "png",
        "prompt_upsampling": False,
        "safety_tolerance": 2,
    }
    assert create.file_field == "file:input_image"
    assert create.file_name == "cat.png"
    assert create.file_content_type == "image/png"
    assert create.file_bytes == png()
    assert create.headers["Authorization"] == f"Bearer {DEFAULT_KEY}"
    assert create.headers["Idempotency-Key"] == "job-1"


async def test_text_to_image_posts_json(fake: FakeCoreToday) -> None:
    provider = provider_for(fake)
    await provider.submit(request(with_image=False, output_format="jpg"), idempotency_key="j")
    await provider.aclose()
    (create,) = fake.creates
    assert create.path == "/v1/predictions"
    assert create.input is not None and create.input["output_format"] == "jpg"
    assert "aspect_ratio" not in create.input and "seed" not in create.input


async def test_async_shape_polls_to_success_and_downloads(fake: FakeCoreToday) -> None:
    fake.script.polls_before_done = 2
    provider = provider_for(fake)
    status = await provider.submit(request(), idempotency_key="j")
    states = [(await provider.status(status.id)).state for _ in range(3)]
    final = await provider.status(status.id)
    data = await provider.fetch_output(final.output_urls[0], max_bytes=10_000_000)
    await provider.aclose()
    assert states == [PredictionState.RUNNING, PredictionState.RUNNING, PredictionState.SUCCEEDED]
    assert Image.open(io.BytesIO(data)).size == (8, 8)


async def test_sync_shape_is_finished_in_the_create_answer(fake: FakeCoreToday) -> None:
    fake.script.shape = "sync"
    provider = provider_for(fake)
    status = await provider.submit(request(), idempotency_key="j")
    await provider.aclose()
    assert status.state == PredictionState.SUCCEEDED
    assert status.output_urls and status.output_urls[0].endswith(".png")
    assert fake.polls == 0


async def test_download_is_capped(fake: FakeCoreToday) -> None:
    fake.script.shape = "sync"
    provider = provider_for(fake)
    status = await provider.submit(request(), idempotency_key="j")
    with pytest.raises(ProviderUnavailable) as info:
        await provider.fetch_output(status.output_urls[0], max_bytes=10)
    await provider.aclose()
    assert "too large" in info.value.user_message


@pytest.mark.parametrize(
    ("code", "error_type", "words"),
    [
        (401, ProviderUnavailable, "API key"),
        (402, ProviderUnavailable, "out of credits"),
        (422, UserInputError, "The input is invalid"),
    ],
)
async def test_client_errors_map_to_clear_messages(
    fake: FakeCoreToday, code: int, error_type: type[KontextError], words: str
) -> None:
    fake.script.create_failures = [code]
    provider = provider_for(fake)
    with pytest.raises(error_type) as info:
        await provider.submit(request(), idempotency_key="j")
    await provider.aclose()
    assert words in info.value.user_message
    assert DEFAULT_KEY not in info.value.user_message and DEFAULT_KEY not in str(info.value)
    assert len(fake.creates) == 1  # never retried


async def test_wrong_key_is_rejected_without_showing_it(fake: FakeCoreToday) -> None:
    provider = provider_for(fake, key="cdt_wrong_key_abcdefghijkl")
    with pytest.raises(ProviderUnavailable) as info:
        await provider.submit(request(), idempotency_key="j")
    await provider.aclose()
    assert "cdt_wrong_key" not in str(info.value) + info.value.user_message


async def test_429_is_retried_after_retry_after(fake: FakeCoreToday) -> None:
    fake.script.create_failures = [429, 429]
    provider = provider_for(fake)
    status = await provider.submit(request(), idempotency_key="j")
    await provider.aclose()
    assert status.state == PredictionState.PENDING
    assert len(fake.creates) == 3


async def test_429_gives_up_after_max_retries(fake: FakeCoreToday) -> None:
    fake.script.create_failures = [429] * 10
    provider = provider_for(fake)
    with pytest.raises(ProviderUnavailable) as info:
        await provider.submit(request(), idempotency_key="j")
    await provider.aclose()
    assert "busy" in info.value.user_message
    assert info.value.retryable
    assert len(fake.creates) == 4  # 1 + max_retries


async def test_500_on_create_is_not_retried(fake: FakeCoreToday) -> None:
    fake.script.create_failures = [500]
    provider = provider_for(fake)
    with raises_saying(ProviderUnavailable, "did not answer"):
        await provider.submit(request(), idempotency_key="j")
    await provider.aclose()
    assert len(fake.creates) == 1


async def test_503_on_create_is_retried(fake: FakeCoreToday) -> None:
    fake.script.create_failures = [503]
    provider = provider_for(fake)
    await provider.submit(request(), idempotency_key="j")
    await provider.aclose()
    assert len(fake.creates) == 2


async def test_lost_create_answer_is_not_retried(fake: FakeCoreToday) -> None:
    fake.script.drop_create_answer = True
    provider = provider_for(fake)
    with raises_saying(ProviderUnavailable, "avoid running it twice"):
        await provider.submit(request(), idempotency_key="j")
    await provider.aclose()
    assert len(fake.creates) == 1
    assert len(fake.predictions) == 1  # the provider did create it


async def test_slow_create_times_out_without_retry(
    fake: FakeCoreToday, loop_clock: LoopClock
) -> None:
    fake.script.create_delay = 3600.0
    provider = CoreTodayProvider(
        base_url=fake.base_url,
        api_key=DEFAULT_KEY,
        model="m",
        capabilities=ProviderCapabilities(),
        request_timeout=30.0,
        wait_initial=0.01,
    )
    submit = asyncio.ensure_future(provider.submit(request(), idempotency_key="j"))
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not fake.creates:  # the create reached the provider, which sits on it
            await asyncio.sleep(0.01)
    loop_clock.advance(31)  # past the request timeout, without waiting for it
    with raises_saying(ProviderUnavailable, "did not answer"):
        await submit
    await provider.aclose()
    assert len(fake.creates) == 1
    # The fake's own delay is on the same clock: let it answer (into a closed connection)
    # instead of holding the server's shutdown for a minute.
    loop_clock.advance(3600)


async def test_refused_connection_is_retried_then_reported() -> None:
    async with FakeCoreToday() as fake:
        url = fake.base_url
    provider = CoreTodayProvider(
        base_url=url,
        api_key=DEFAULT_KEY,
        model="m",
        capabilities=ProviderCapabilities(),
        max_retries=2,
        wait_initial=0.01,
        wait_cap=0.02,
    )
    with raises_saying(ProviderUnavailable, "unavailable"):
        await provider.submit(request(), idempotency_key="j")
    await provider.aclose()


async def test_status_errors_are_retried(fake: FakeCoreToday) -> None:
    provider = provider_for(fake)
    status = await provider.submit(request(), idempotency_key="j")
    fake.script.status_failures = [500, 502, 429]
    assert await poll_to_end(provider, status.id) == PredictionState.SUCCEEDED
    await provider.aclose()


async def test_output_download_errors_are_retried(fake: FakeCoreToday) -> None:
    fake.script.shape = "sync"
    provider = provider_for(fake)
    status = await provider.submit(request(), idempotency_key="j")
    fake.script.output_failures = [500, 404]
    data = await provider.fetch_output(status.output_urls[0], max_bytes=1_000_000)
    await provider.aclose()
    assert data.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("outcome", "state"),
    [("failed", PredictionState.FAILED), ("moderated", PredictionState.MODERATED)],
)
async def test_failed_and_moderated_outcomes(
    fake: FakeCoreToday, outcome: str, state: PredictionState
) -> None:
    fake.script.outcome = outcome
    provider = provider_for(fake)
    status = await provider.submit(request(), idempotency_key="j")
    assert await poll_to_end(provider, status.id) == state
    await provider.aclose()


async def test_cancel_sends_delete_and_swallows_errors(fake: FakeCoreToday) -> None:
    fake.script.outcome = "never"
    provider = provider_for(fake)
    status = await provider.submit(request(), idempotency_key="j")
    await provider.cancel(status.id)
    assert (await provider.status(status.id)).state == PredictionState.CANCELED
    await provider.cancel("does-not-exist")
    await provider.aclose()
    assert fake.cancels == 2
    closed = CoreTodayProvider(
        base_url="http://127.0.0.1:9", api_key="k", model="m", capabilities=ProviderCapabilities()
    )
    await closed.cancel("x")  # nothing listens there: must not raise
    await closed.aclose()


async def test_key_is_not_sent_to_foreign_output_hosts(fake: FakeCoreToday) -> None:
    async with FakeCoreToday(api_key="other") as cdn:
        fake.script.shape = "sync"
        provider = provider_for(fake)
        status = await provider.submit(request(), idempotency_key="j")
        cdn.predictions.update(fake.predictions)
        foreign = status.output_urls[0].replace(fake.base_url, cdn.base_url)
        await provider.fetch_output(foreign, max_bytes=1_000_000)
        await provider.aclose()
        (download,) = cdn.received
        assert "Authorization" not in download.headers


def test_answer_shapes_and_status_words() -> None:
    assert parse_prediction({"id": "a", "status": "Starting"}).state == PredictionState.PENDING
    done = parse_prediction({"job_id": "b", "status": "completed", "result": ["u1"]})
    assert done.state == PredictionState.SUCCEEDED and done.output_urls == ("u1",)
    assert parse_prediction({"id": "c", "status": "cancelled"}).state == PredictionState.CANCELED
    flagged = parse_prediction({"id": "d", "status": "failed", "error": "Flagged as sensitive"})
    assert flagged.state == PredictionState.MODERATED
    assert parse_prediction({"id": "e", "status": "weird"}).state == PredictionState.RUNNING
    with pytest.raises(ProviderUnavailable):
        parse_prediction({"status": "pending"})
    with pytest.raises(ProviderUnavailable):
        parse_prediction(["not", "an", "object"])


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-1") == 0.0
    assert parse_retry_after("9999") == 60.0
    assert parse_retry_after("Wed, 25 Nov 2026 00:00:10 GMT", now=1_795_564_800.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


async def test_html_answer_is_provider_unavailable(fake: FakeCoreToday) -> None:
    provider = provider_for(fake)
    status = await provider.submit(request(), idempotency_key="j")
    fake.script.status_html = True
    with pytest.raises(ProviderUnavailable) as info:
        await provider.status(status.id)
    await provider.aclose()
    assert "unavailable" in info.value.user_message
    assert "non-JSON" in str(info.value)
