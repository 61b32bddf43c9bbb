"""The peer: a Slack image-edit bot as one would write it without kontext-bot.

What a user would run instead (issue 25, step 9): bolt in HTTP mode, an ``app_mention``
listener that downloads the attached file with the bot token, uploads it to core.today's
``/v1/predictions/upload``, polls the prediction every 0.5 s, downloads the result and
posts it in the thread with ``files_upload_v2``, after a "working on it" reply. No
database, no ledger, no restart safety, no metadata stripping, no rate-limit pacing:
the figure it gives is the floor kontext-bot's CPU per image is compared with.

Run by ``bench.peer`` as its own process, configured by the environment:
``PEER_SLACK_API``, ``PEER_PROVIDER_URL``, ``PEER_PORT`` (and the fakes' token, secret
and key). Every loop is bounded: a prediction is polled at most ``MAX_POLLS`` times.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

import httpx
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.coretoday import DEFAULT_KEY
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET

MODEL = "black-forest-labs/flux-kontext-pro"
POLL_SECONDS = 0.5
MAX_POLLS = 2400  # 20 minutes at 0.5 s

client = AsyncWebClient(token=BOT_TOKEN, base_url=os.environ["PEER_SLACK_API"])
app = AsyncApp(token=BOT_TOKEN, signing_secret=SIGNING_SECRET, client=client)
provider = os.environ["PEER_PROVIDER_URL"]
http = httpx.AsyncClient(timeout=120)
auth = {"Authorization": f"Bearer {DEFAULT_KEY}"}


@app.event("app_mention")
async def on_mention(event: dict[str, Any], say: Any) -> None:
    thread = event.get("thread_ts") or event["ts"]
    files = event.get("files") or []
    if not files:
        await say(text="Attach an image.", thread_ts=thread)
        return
    await say(text="Working on it…", thread_ts=thread)
    file = files[0]
    image = await http.get(
        file["url_private_download"], headers={"Authorization": f"Bearer {BOT_TOKEN}"}
    )
    prompt = re.sub(r"<@[A-Z0-9]+>", "", event["text"]).strip()
    submitted = await http.post(
        f"{provider}/v1/predictions/upload",
        headers=auth,
        data={"model": MODEL, "input": json.dumps({"prompt": prompt, "output_format": "png"})},
        files=[("file:input_image", (file["name"], image.content, file["mimetype"]))],
    )
    prediction = submitted.json()
    for _ in range(MAX_POLLS):
        if prediction.get("status") in ("succeeded", "failed", "canceled"):
            break
        await asyncio.sleep(POLL_SECONDS)
        polled = await http.get(f"{provider}/v1/predictions/{prediction['id']}", headers=auth)
        prediction = polled.json()
    if prediction.get("status") != "succeeded":
        await say(text=f"Failed: {prediction.get('error')}", thread_ts=thread)
        return
    output = prediction["output"]
    url = output[0] if isinstance(output, list) else output
    result = await http.get(url)
    await app.client.files_upload_v2(
        channel=event["channel"], thread_ts=thread, file=result.content, filename="edit.png"
    )


if __name__ == "__main__":
    app.start(port=int(os.environ["PEER_PORT"]), path="/slack/events", host="127.0.0.1")
