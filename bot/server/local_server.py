"""A small aiohttp server of the bot's own (ops, webhooks, dashboard): listened on at
start, with ``port = 0`` meaning any free port (tests), and closed with the core."""

from __future__ import annotations

import structlog
from aiohttp import web

log = structlog.get_logger("kontext.server")


class LocalServer:
    """Subclasses give ``application()`` and a ``label`` for the log line."""

    label = "server"

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> int:
        """Listen and return the bound port (``port = 0`` picks a free one)."""
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        log.info(f"{self.label} listening", host=self.host, port=self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
