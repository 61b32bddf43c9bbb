"""Webhooks: signed ones accepted, bad/stale/replayed refused, and only ever a hint."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from PIL import Image

from bot.app import build_core
from bot.domain import EditOptions, EditRequest, JobState, UserRef
from bot.webhooks import WebhookServer, replicate_signature
from tests.conftest import HANG_GUARD_SECONDS, make_settings
from tests.fakes.coretoday import FakeCoreToday
from tests.recording import RecordingFrontend

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture
async def server() -> AsyncIterator[tuple[WebhookServer, list[str]]]:
    hints: list[str] = []
    webhooks = WebhookServer("127.0.0.1", 0, hints.append, replicate_secret=SECRET)
    await webhooks.start()
    yield webhooks, hints
    await webhooks.stop()


def signed(
    body: bytes, webhook_id: str = "msg_1", at: float | None = None, secret: str = SECRET
) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1,bm90LWl0 "
        + replicate_signature(secret, webhook_id, timestamp, body),
        "content-type": "application/json",
    }


async def post(server: WebhookServer, path: str, body: bytes, headers: dict[str, str]) -> int:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"http://127.0.0.1:{server.port}{path}", content=body, headers=headers
        )
    return answer.status_code


async def test_valid_signature_is_accepted_once(server: tuple[WebhookServer, list[str]]) -> None:
    webhooks, hints = server
    body = b'{"id": "p1", "status": "succeeded"}'
    headers = signed(body)
    assert await post(webhooks, "/webhooks/replicate/job1", body, headers) == 204
    assert hints == ["job1"]
    assert await post(webhooks, "/webhooks/replicate/job1", body, headers) == 409  # replay
    assert hints == ["job1"]


@pytest.mark.parametrize(
    "mangle",
    ["body", "secret", "stale", "future", "no-headers"],
)
async def test_bad_or_stale_signatures_are_refused(
    server: tuple[WebhookServer, list[str]], mangle: str
) -> None:
    webhooks, hints = server
    body = b'{"id": "p1", "status": "succeeded"}'
    headers = signed(body)
    sent = body
    if mangle == "body":
        sent = body.replace(b"succeeded", b"failed")
    elif mangle == "secret":
        other = "whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()
        headers = signed(body, secret=other)
    elif mangle == "stale":
        headers = signed(body, at=time.time() - 600)
    elif mangle == "future":
        headers = signed(body, at=time.time() + 600)
    else:
        headers = {"content-type": "application/json"}
    assert await post(webhooks, "/webhooks/replicate/job1", sent, headers) == 401
    assert hints == []


async def test_unsigned_providers_give_a_hint_only(server: tuple[WebhookServer, list[str]]) -> None:
    webhooks, hints = server
    assert await post(webhooks, "/webhooks/coretoday/job2", b"{}", {}) == 204
    assert await post(webhooks, "/webhooks/bfl/job3", b"not even json", {}) == 204
    assert await post(webhooks, "/webhooks/evil/job4", b"{}", {}) == 404
    assert hints == ["job2", "job3"]


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (9, 9, 9)).save(buffer, format="PNG")
    return buffer.getvalue()


async def run_with_webhooks(
    tmp_path: Path, fake: FakeCoreToday, webhook_base_url: str
) -> tuple[float, JobState, object]:
    frontend = RecordingFrontend()
    poll_seconds = 3600.0 if webhook_base_url == "self" else 3.0
    settings = make_settings(
        tmp_path,
        fake.base_url,
        provider={
            "webhook_base_url": webhook_base_url,
            "webhook_host": "127.0.0.1",
            "webhook_port": 0,
        },
        # Slow polls: a webhook must make the difference. With a webhook that arrives,
        # the first scheduled poll is an hour away (far beyond the hang guards), so only
        # the webhook can finish the job, however slow the machine.
        jobs={"poll_initial_seconds": poll_seconds, "poll_max_seconds": poll_seconds},
    )
    core = await build_core(settings, {"slack": frontend})
    assert core.runner is not None and core.webhooks is not None
    core.runner.limits = replace(core.runner.limits, idle_scan_seconds=0.1)
    await core.start()
    try:
        if webhook_base_url == "self":
            core.runner.webhook_base_url = f"http://127.0.0.1:{core.webhooks.port}"
        started = time.monotonic()
        ack = await core.service.submit(
            EditRequest(
                UserRef("slack", "T1", "U1"),
                "x",
                EditOptions(),
                (frontend.attach("a.png", png()),),
                {"c": 1},
                "w1",
            )
        )
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while not fake.creates:
                await asyncio.sleep(0.01)
        create = fake.creates[0]
        if webhook_base_url == "self":
            # The provider finishes and calls back, as core.today would.
            for prediction in fake.predictions.values():
                prediction.polls_left = 0
            async with httpx.AsyncClient() as client:
                await client.post(
                    f"{core.runner.webhook_base_url}/webhooks/coretoday/{ack.job.id}", json={}
                )
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            job = await core.runner.wait_for(ack.job.id)
        return time.monotonic() - started, job.state, create
    finally:
        await core.close()


async def test_a_webhook_makes_the_runner_poll_at_once(tmp_path: Path, fake: FakeCoreToday) -> None:
    fake.script.polls_before_done = 0
    _, state, create = await run_with_webhooks(tmp_path, fake, "self")
    # Finished at all means finished by the webhook: the first scheduled poll was an
    # hour away, beyond the hang guard.
    assert state == JobState.SUCCEEDED
    assert "/webhooks/coretoday/" in create.fields["webhook"]  # type: ignore[attr-defined]
    assert fake.polls == 1


async def test_a_lost_webhook_still_finishes_by_polling(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    fake.script.polls_before_done = 0
    elapsed, state, create = await run_with_webhooks(tmp_path, fake, "http://127.0.0.1:9/lost")
    assert state == JobState.SUCCEEDED
    assert elapsed >= 2.5  # found by the scheduled poll
    # The provider was told where to call back, even though nothing listens there.
    assert create.fields["webhook"].startswith("http://127.0.0.1:9/lost/webhooks/coretoday/")  # type: ignore[attr-defined]
