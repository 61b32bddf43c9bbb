"""Provider webhooks: a finished job's notice arrives at once instead of at the next poll.

A webhook is only ever a hint: it makes the runner poll that job now, through the
provider's authenticated API, and nothing in its body is trusted. So a forged webhook
can at most cause one extra status request, and a lost one costs only the time until
the next scheduled poll: polling stays the fallback and no job depends on a webhook.

Which providers may call is the provider registry (``bot.providers.registry``): an
unregistered name in the path is a 404. Where a provider signs its webhooks (its spec
has ``verify_webhook``) and ``provider.webhook_secret`` is set, the signature is checked
so that strangers cannot make the bot poll at will; a stale or forged one is a 401.

A redelivery of a notice already taken (same delivery id, e.g. Replicate's
``webhook-id``) is answered 2xx and does nothing more: a provider retries any non-2xx
answer (Replicate: "If we can't make the request at all, or if we get a 4xx or 5xx
response, we'll retry the webhook", https://replicate.com/docs/topics/webhooks/receive-webhook),
so refusing it would only bring it back again; the first delivery already gave the hint.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

import structlog
from aiohttp import web

from bot.providers.base import WebhookRefused
from bot.providers.registry import SPECS, ProviderSpec
from bot.server.local_server import LocalServer

log = structlog.get_logger("kontext.webhooks")

REMEMBERED_IDS = 10_000
Hint = Callable[[str], None]


class WebhookServer(LocalServer):
    label = "webhook endpoint"

    def __init__(
        self,
        host: str,
        port: int,
        on_hint: Hint,
        *,
        secret: str = "",
        specs: Mapping[str, ProviderSpec] = SPECS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(host, port)
        self.on_hint = on_hint
        self.secret = secret  # provider.webhook_secret, for the providers that sign
        self.specs = specs
        self.clock = clock
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def application(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/webhooks/{provider}/{job_id}", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        job_id = request.match_info["job_id"]
        spec = self.specs.get(provider)
        if spec is None:
            return web.Response(status=404, text="unknown provider")
        body = await request.read()
        if spec.verify_webhook is not None and self.secret:
            try:
                delivery_id = spec.verify_webhook(self.secret, request.headers, body, self.clock())
            except WebhookRefused as exc:
                log.warning("webhook refused", provider=provider, reason=str(exc))
                return web.Response(status=401, text=str(exc))
            if delivery_id and not self._first_delivery(provider, delivery_id):
                log.info("webhook redelivered; already taken", provider=provider, job=job_id)
                return web.Response(status=200, text="already received")
        self.on_hint(job_id)
        return web.Response(status=204)

    def _first_delivery(self, provider: str, delivery_id: str) -> bool:
        """Remember a verified delivery; False when it was seen before."""
        key = (provider, delivery_id)
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > REMEMBERED_IDS:
            self._seen.popitem(last=False)
        return True
