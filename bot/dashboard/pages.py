"""Rendering: Jinja2 templates with autoescaping always on, and the headers every answer
carries.

Everything users control (prompts, user ids, refund reasons, admin notes) reaches a page
only through a template, where autoescape turns it into text; no template marks a value
``|safe``. The Content-Security-Policy allows no script and no inline style at all: the
pages have neither (the charts are SVG with presentation attributes), so an injected
``<script>`` would not run even if escaping were ever missed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined

from bot.chat import texts

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def shorten(text: str | None, limit: int = 80) -> str:
    if not text:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


ENV = Environment(
    loader=PackageLoader("bot.dashboard", "templates"),
    autoescape=True,  # every template, whatever its name
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["when"] = when
ENV.filters["shorten"] = shorten
# A job's model as history names it: the name people chose, else the provider's id.
ENV.filters["model"] = texts.job_model
# A delivering job whose result a platform's rate limit holds back (bot.jobs.pipeline).
ENV.filters["waiting"] = texts.waiting_for_platform


def render(template: str, /, **context: Any) -> web.Response:
    body = ENV.get_template(template).render(**context)
    return web.Response(
        text=body,
        content_type="text/html",
        charset="utf-8",
        headers=SECURITY_HEADERS,
    )


def plain(status: int, text: str) -> web.Response:
    """An error answer: a fixed sentence, never the request's own text or any data."""
    return web.Response(text=text, status=status, headers=SECURITY_HEADERS)


def static_file(name: str) -> bytes:
    return (resources.files("bot.dashboard") / "static" / name).read_bytes()
