"""A contest in one Slack channel (issue 24): 150 people mention the bot with an image at
once, against a fake Slack that enforces Slack's documented rate limits.

``python -m bench --only burst`` runs the bot in this process (HTTP mode, the real
slack_bolt and slack_sdk) against ``FakeSlack(limits=SlackLimits())``: about one
``chat.postMessage`` a second per channel, Tier 3 (``chat.update``) 50 a minute, Tier 4
(``chat.postEphemeral``, ``files.*``) 100 a minute, 429 with ``Retry-After`` beyond.
The provider is the fake core.today serving a real-sized result (1024x1024, ~1.2 MB PNG)
after a few seconds of "work". Two variants in one run, each on a fresh database:

- ``paced``: the bot as shipped (``[slack] rate_limits = true``);
- ``unpaced``: the same bot with pacing off, calling at full speed as the bot did before
  issue 24 (its 429s are still waited out rather than refunded, which is the other half
  of the fix).

Printed per variant: time to the last result and to the last status edit, results
delivered, refunds, status messages posted (and how many reached "Done"), Slack calls
per job, and the 429s by method. ``--quick`` runs 50
mentions on limits ten times faster.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from adapters.slack.adapter import SlackAdapter
from bench.common import SizedCoreToday, result_png
from bot.app import build_core
from bot.storage.schema import ledger
from tests.fakes.provider import Script
from tests.fakes.slack import (
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    TEAM_ID,
    FakeSlack,
    SlackLimits,
    event_callback,
    signed_json_headers,
)
from tests.support import make_settings, png

CHANNEL = "C0CONTEST"
WORK_SECONDS = 4.0  # the provider's time per image
GUARD_SECONDS = 1800.0  # a hang guard for one variant, never the measure


async def _variant(paced: bool, mentions: int, speed: float, output: bytes) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        script = Script(duration=lambda: WORK_SECONDS, keep_inputs=False)
        limits = SlackLimits().scaled(speed)  # what the fake enforces, and the bot's keys
        async with (
            SizedCoreToday(output, script=script) as provider,
            FakeSlack(limits=limits) as slack,
        ):
            settings = make_settings(
                tmp,
                provider.base_url,
                slack={
                    "enabled": True,
                    "mode": "http",
                    "bot_token": BOT_TOKEN,
                    "api_base_url": slack.api_url,
                    "file_hosts": ["127.0.0.1"],
                    "signing_secret": SIGNING_SECRET,
                    "http_host": "127.0.0.1",
                    "http_port": 0,
                    "rate_limits": paced,
                    **limits.bot_keys(),
                },
                jobs={
                    "poll_initial_seconds": 1.0,
                    "poll_max_seconds": 2.0,
                    "timeout_seconds": 600,
                    "max_concurrent": 32,
                },
            )
            core = await build_core(
                settings, lambda service: [SlackAdapter(settings.slack, service)]
            )
            adapter = core.frontends["slack"]
            assert isinstance(adapter, SlackAdapter)
            await core.start()
            await adapter.start()
            base = time.time() - 600
            events = []
            for n in range(mentions):
                file = slack.add_file(f"entry-{n}.png", png((n % 256, 90, 180), (96, 96)))
                event = {
                    "type": "app_mention",
                    "channel": CHANNEL,
                    "user": f"U{n:05d}",
                    "text": f"<@{BOT_USER_ID}> make it a watercolor",
                    "ts": f"{base + n:.6f}",
                    "team": TEAM_ID,
                    "files": [file],
                }
                events.append(event)
            started = time.monotonic()
            last_result = 0.0
            try:
                async with httpx.AsyncClient(timeout=120) as http:
                    url = f"http://127.0.0.1:{adapter.port}/slack/events"

                    async def send(n: int, event: dict[str, Any]) -> None:
                        body = json.dumps(event_callback(event, f"EvB{n}"))
                        await http.post(url, content=body, headers=signed_json_headers(body))

                    await asyncio.gather(*(send(n, e) for n, e in enumerate(events)))
                async with asyncio.timeout(GUARD_SECONDS):
                    while True:
                        counts = await core.store.counts_by_state()
                        done = counts.get("succeeded", 0) + counts.get("failed", 0)
                        if done >= mentions:
                            last_result = time.monotonic() - started
                            break
                        await asyncio.sleep(0.25)
                    # The status lines drain after the results (Tier 3 is the slowest).
                    await adapter.status.idle()
                last_status = time.monotonic() - started
                async with core.db.read() as conn:
                    kinds = dict(
                        (str(k), int(n))
                        for k, n in await conn.execute(
                            select(ledger.c.kind, func.count()).group_by(ledger.c.kind)
                        )
                    )
            finally:
                await adapter.stop()
                await core.close()
            delivered = len([u for u in slack.uploads.values() if u.channel])
            calls = len(slack.calls)
            statuses = [m for m in slack.messages_in(CHANNEL) if m.get("metadata")]
            return {
                "mentions": mentions,
                "seconds_to_last_result": round(last_result, 1),
                "seconds_to_last_status": round(last_status, 1),
                "delivered": delivered,
                "succeeded": counts.get("succeeded", 0),
                "refunds": kinds.get("refund", 0),
                # Status messages posted, and those that reached "Done": the people
                # who were told, and told the end.
                "status_messages": len(statuses),
                "status_done": sum("Done" in str(m.get("text")) for m in statuses),
                "slack_calls": calls,
                "slack_calls_per_job": round(calls / mentions, 2),
                "ratelimited": sum(slack.ratelimited_by_method().values()),
                "ratelimited_by_method": slack.ratelimited_by_method(),
            }


async def _run(quick: bool) -> dict[str, Any]:
    mentions, speed = (50, 10.0) if quick else (150, 1.0)
    output = result_png()
    figures: dict[str, Any] = {
        "speed": speed,
        "result_bytes": len(output),
        "provider_seconds_per_image": WORK_SECONDS,
    }
    for name, paced in (("paced", True), ("unpaced", False)):
        print(f"burst: {mentions} mentions in one channel, {name}, limits x{speed:g} ...")
        found = await _variant(paced, mentions, speed, output)
        figures[name] = found
        print(
            f"  last result {found['seconds_to_last_result']} s, last status "
            f"{found['seconds_to_last_status']} s; delivered {found['delivered']}, "
            f"refunds {found['refunds']}; status messages {found['status_messages']} "
            f"({found['status_done']} ending on Done); "
            f"Slack calls/job {found['slack_calls_per_job']}; "
            f"429s {found['ratelimited']} {found['ratelimited_by_method']}"
        )
    return figures


def run(quick: bool) -> dict[str, Any]:
    return asyncio.run(_run(quick))
