"""Provider webhooks: a finished job's notice arrives at once instead of at the next poll.

A webhook is only ever a hint: it makes the runner poll that job now, through the
provider's authenticated API, and nothing in its body is trusted. So a forged webhook
can at most cause one extra status request, and a lost one costs only the time until
the next scheduled poll: polling stays the fallback and no job depends on a webhook.

Where a provider signs its webhooks the signature is still checked, so that strangers
cannot make the bot poll at will: Replicate signs ``id.timestamp.body`` with
HMAC-SHA256 under the ``whsec_`` secret (``webhook-id``, ``webhook-timestamp``,
``webhook-signature`` headers); stale timestamps and replayed ids are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable

import structlog
from aiohttp import web

log = structlog.get_logger("kontext.webhooks")

TOLERANCE_SECONDS = 300
REMEMBERED_IDS = 10_000
Hint = Callable[[str], None]


def replicate_signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The ``v1,<base64>`` signature Replicate sends for this delivery."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookServer:
    def __init__(
        self,
        host: str,
        port: int,
        on_hint: Hint,
        *,
        replicate_secret: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = port
        self.on_hint = on_hint
        self.replicate_secret = replicate_secret
        self.clock = clock
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/webhooks/{provider}/{job_id}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])
        log.info("webhook endpoint listening", host=self.host, port=self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        job_id = request.match_info["job_id"]
        body = await request.read()
        if provider == "replicate" and self.replicate_secret:
            refusal = self._check_replicate(request, body)
            if refusal is not None:
                log.warning("webhook refused", provider=provider, reason=refusal.text)
                return refusal
        elif provider not in {"coretoday", "bfl", "replicate"}:
            return web.Response(status=404, text="unknown provider")
        self.on_hint(job_id)
        return web.Response(status=204)

    def _check_replicate(self, request: web.Request, body: bytes) -> web.Response | None:
        webhook_id = request.headers.get("webhook-id", "")
        timestamp = request.headers.get("webhook-timestamp", "")
        signatures = request.headers.get("webhook-signature", "").split()
        try:
            sent_at = int(timestamp)
        except ValueError:
            return web.Response(status=401, text="missing or bad timestamp")
        if abs(self.clock() - sent_at) > TOLERANCE_SECONDS:
            return web.Response(status=401, text="stale timestamp")
        try:
            expected = replicate_signature(self.replicate_secret, webhook_id, timestamp, body)
        except (binascii.Error, ValueError):
            log.error("provider.webhook_secret is not a valid whsec_ secret")
            return web.Response(status=401, text="cannot verify")
        if not any(hmac.compare_digest(expected, given) for given in signatures):
            return web.Response(status=401, text="bad signature")
        if webhook_id in self._seen:
            return web.Response(status=409, text="replayed")
        self._seen[webhook_id] = None
        while len(self._seen) > REMEMBERED_IDS:
            self._seen.popitem(last=False)
        return None
