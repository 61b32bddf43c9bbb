"""What is particular to Replicate: Prefer: wait, data URIs, problem+json errors."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from bot.domain import EditOptions
from bot.errors import ProviderUnavailable, UserInputError
from bot.providers.base import InputImage, PredictionState, ProviderCapabilities, ProviderRequest
from bot.providers.replicate import ReplicateProvider
from tests.fakes.replicate import DEFAULT_KEY, FakeReplicate


@pytest.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate() as server:
        yield server


def provider(fake: FakeReplicate) -> ReplicateProvider:
    return ReplicateProvider(
        base_url=fake.base_url,
        api_key=DEFAULT_KEY,
        model="black-forest-labs/flux-kontext-max",
        capabilities=ProviderCapabilities(),
        max_retries=2,
        wait_initial=0.01,
        wait_cap=0.02,
    )


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (1, 100, 1)).save(buffer, format="JPEG")
    return buffer.getvalue()


async def test_prefer_wait_can_answer_a_finished_prediction(fake: FakeReplicate) -> None:
    fake.script.shape = "sync"
    client = provider(fake)
    request = ProviderRequest(
        "make it pop", EditOptions(aspect_ratio="1:1"), (InputImage(jpeg(), "image/jpeg", "a.jpg"),)
    )
    status = await client.submit(
        request,
        idempotency_key="j",
    )
    await client.aclose()
    assert status.state == PredictionState.SUCCEEDED and status.output_urls
    (create,) = fake.creates
    assert create.path == "/v1/models/black-forest-labs/flux-kontext-max/predictions"
    assert create.headers["Prefer"].startswith("wait=")
    assert create.file_content_type == "image/jpeg" and create.file_bytes == jpeg()
    assert create.input == {
        "prompt": "make it pop",
        "output_format": "png",
        "safety_tolerance": 2,
        "prompt_upsampling": False,
        "aspect_ratio": "1:1",
    }
    assert fake.polls == 0


async def test_problem_json_reasons_are_shown(fake: FakeReplicate) -> None:
    fake.script.create_failures = [422]
    fake.script.error_body = "input.seed: Must be less than or equal to 2147483647"
    client = provider(fake)
    with pytest.raises(UserInputError) as info:
        await client.submit(ProviderRequest("x", EditOptions()), idempotency_key="j")
    assert "Must be less than or equal" in info.value.user_message
    fake.script.create_failures = [404]
    with pytest.raises(ProviderUnavailable) as unavailable:
        await client.submit(ProviderRequest("x", EditOptions()), idempotency_key="j")
    await client.aclose()
    assert not unavailable.value.retryable and not unavailable.value.maybe_created


async def test_webhook_is_requested_for_completion_only(fake: FakeReplicate) -> None:
    client = provider(fake)
    await client.submit(
        ProviderRequest("x", EditOptions(), webhook_url="https://bot.example/webhooks/replicate/j"),
        idempotency_key="j",
    )
    await client.aclose()
    assert fake.creates[0].fields == {
        "webhook": "https://bot.example/webhooks/replicate/j",
        "webhook_events_filter": ["completed"],
    }
