"""Secrets never reach the logs, whichever way they arrive."""

from __future__ import annotations

import io
import json
import logging

import structlog

from bot.server.logs import configure_logging


def capture(
    fmt: str, secrets: list[str]
) -> tuple[io.StringIO, structlog.typing.FilteringBoundLogger]:
    stream = io.StringIO()
    configure_logging(fmt=fmt, level="debug", secrets=secrets, stream=stream)
    return stream, structlog.get_logger("test")


def test_configured_secrets_and_token_shapes_are_redacted() -> None:
    stream, log = capture("json", ["cdt_supersecretkey123"])
    log.info(
        "calling provider",
        header="Bearer cdt_supersecretkey123",
        url="https://files.slack.com/x.png?token=abcdef123456",
        nested={"slack": "xoxb-1111-2222-abcdefgh", "list": ["xapp-1-A0-zzzzzzzz"]},
        db="postgresql://bot:hunter22@db/kontext",
    )
    line = stream.getvalue()
    for secret in ["cdt_supersecretkey123", "abcdef123456", "xoxb-1111", "xapp-1-A0", "hunter22"]:
        assert secret not in line
    event = json.loads(line)
    assert event["event"] == "calling provider"
    assert event["db"] == "postgresql://bot:***@db/kontext"


def test_tracebacks_are_redacted() -> None:
    stream, log = capture("text", ["s3cr3t-value"])
    try:
        raise RuntimeError("request failed with key s3cr3t-value")
    except RuntimeError:
        log.exception("boom")
    output = stream.getvalue()
    assert "RuntimeError" in output
    assert "s3cr3t-value" not in output


def test_stdlib_logging_is_redacted_too() -> None:
    stream, _ = capture("text", ["very-secret-token"])
    logging.getLogger("some.library").warning("sending %s", "very-secret-token")
    output = stream.getvalue()
    assert "sending ***" in output
    assert "very-secret-token" not in output


def test_level_filters() -> None:
    stream = io.StringIO()
    configure_logging(fmt="text", level="warning", stream=stream)
    log = structlog.get_logger("test")
    log.info("hidden")
    log.warning("shown")
    assert "shown" in stream.getvalue() and "hidden" not in stream.getvalue()
