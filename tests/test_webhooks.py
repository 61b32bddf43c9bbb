"""Webhooks: signed ones accepted, bad/stale refused, redeliveries taken once, only a hint."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from bot.app import build_core
from bot.domain import EditOptions, EditRequest, JobState, UserRef
from bot.providers.base import WebhookRefused
from bot.providers.coretoday import CoreTodayProvider
from bot.providers.registry import ProviderSpec
from bot.providers.replicate import replicate_signature
from bot.server.webhooks import WebhookServer
from tests.fakes.coretoday import FakeCoreToday
from tests.recording import RecordingFrontend
from tests.support import HANG_GUARD_SECONDS, make_settings, png

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture
async def server() -> AsyncIterator[tuple[WebhookServer, list[str]]]:
    hints: list[str] = []
    webhooks = WebhookServer("127.0.0.1", 0, hints.append, secret=SECRET)
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
    # Replicate's redelivery of the same webhook-id: 2xx (so it stops retrying), no hint.
    assert await post(webhooks, "/webhooks/replicate/job1", body, headers) == 200
    resent = signed(body)  # a retry is signed afresh, with the same webhook-id
    assert await post(webhooks, "/webhooks/replicate/job1", body, resent) == 200
    assert hints == ["job1"]
    other = signed(body, webhook_id="msg_2")  # another delivery is another hint
    assert await post(webhooks, "/webhooks/replicate/job1", body, other) == 204
    assert hints == ["job1", "job1"]


async def test_a_forged_redelivery_is_still_refused(
    server: tuple[WebhookServer, list[str]],
) -> None:
    """A known webhook-id does not excuse a bad signature: verification comes first."""
    webhooks, hints = server
    body = b'{"id": "p1", "status": "succeeded"}'
    assert await post(webhooks, "/webhooks/replicate/job1", body, signed(body)) == 204
    forged = {**signed(body), "webhook-signature": "v1,bm90LWl0"}
    assert await post(webhooks, "/webhooks/replicate/job1", body, forged) == 401
    assert hints == ["job1"]


def acme_verifier(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """A made-up provider's check: the secret in a header, the delivery id in another."""
    if headers.get("x-acme-secret") != secret:
        raise WebhookRefused("bad secret")
    return headers.get("x-acme-delivery", "")


async def test_a_registered_spec_drives_webhook_verification() -> None:
    acme = ProviderSpec(
        "acme", CoreTodayProvider, "https://api.acme.test", "Acme key", verify_webhook=acme_verifier
    )
    plain = ProviderSpec("plain", CoreTodayProvider, "https://api.plain.test", "Plain key")
    hints: list[str] = []
    webhooks = WebhookServer(
        "127.0.0.1", 0, hints.append, secret="s3cret", specs={"acme": acme, "plain": plain}
    )
    await webhooks.start()
    try:
        good = {"x-acme-secret": "s3cret", "x-acme-delivery": "d1"}
        assert await post(webhooks, "/webhooks/acme/j1", b"{}", {}) == 401
        assert await post(webhooks, "/webhooks/acme/j1", b"{}", good) == 204
        assert await post(webhooks, "/webhooks/acme/j1", b"{}", good) == 200  # redelivered
        assert await post(webhooks, "/webhooks/plain/j2", b"{}", {}) == 204  # no check
        # Only the registry given decides: replicate is not in this one.
        assert await post(webhooks, "/webhooks/replicate/j3", b"{}", signed(b"{}")) == 404
    finally:
        await webhooks.stop()
    assert hints == ["j1", "j2"]


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


async def run_with_webhooks(
    tmp_path: Path, fake: FakeCoreToday, webhook_base_url: str
) -> tuple[float, JobState, object]:
    frontend = RecordingFrontend()
    poll_seconds = 3600.0 if webhook_base_url == "self" else 3.0
    # "self": the listener's port is known only once it listens (port 0), after the
    # base URL is configured; the test plays the provider and calls back on the path the
    # bot gave, at the listener's real address.
    told_base = "http://127.0.0.1:9/self" if webhook_base_url == "self" else webhook_base_url
    settings = make_settings(
        tmp_path,
        fake.base_url,
        provider={
            "webhook_base_url": told_base,
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
    core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1))
    await core.start()
    try:
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
            path = urlsplit(create.fields["webhook"]).path.removeprefix("/self")  # type: ignore[attr-defined]
            assert path == f"/webhooks/coretoday/{ack.job.id}"
            async with httpx.AsyncClient() as client:
                await client.post(f"http://127.0.0.1:{core.webhooks.port}{path}", json={})
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
