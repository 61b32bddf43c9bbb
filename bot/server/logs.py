"""Structured logging with secrets scrubbed from every event.

Redaction is a processor, not a convention: every value of every event (tracebacks
included) passes through it, so a secret that reaches a log call by accident (an
exception quoting a URL with a token, a header dump) is still not written.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO, cast

import stamina.instrumentation
import structlog

REDACTED = "***"
# Token shapes worth hiding even when they are not this bot's own configured secrets.
_TOKEN_PATTERNS = [
    re.compile(r"xox[abposr]-[0-9A-Za-z-]{8,}"),
    re.compile(r"xapp-[0-9A-Za-z-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[^\s\"']+"),
    re.compile(r"(?i)((?:token|key|secret|signature|sig)=)[^&\s\"']+"),
    re.compile(r"(?i)(://[^:/@\s]+:)[^@/\s]+(@)"),
]


class SecretScrubber:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in _TOKEN_PATTERNS:
            if pattern.groups == 2:
                text = pattern.sub(rf"\1{REDACTED}\2", text)
            elif pattern.groups == 1:
                text = pattern.sub(rf"\1{REDACTED}", text)
            else:
                text = pattern.sub(REDACTED, text)
        return text

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._clean(v) for v in value)
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.scrub(repr(value))

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return {key: self._clean(value) for key, value in event_dict.items()}


def configure_logging(
    *,
    fmt: str = "text",
    level: str = "info",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> SecretScrubber:
    """Set up structlog for the whole process (and route stdlib logging through it)."""
    scrubber = SecretScrubber(secrets)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    output = stream or cast(TextIO, _CurrentStderr())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrubber,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=output),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(output)
    handler.addFilter(_StdlibScrubFilter(scrubber))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric_level, logging.INFO))
    # httpx logs every request URL at INFO; keep it for debugging only.
    logging.getLogger("httpx").setLevel(max(numeric_level, logging.WARNING))
    # Alembic announces every plugin and migration step at INFO on each start.
    logging.getLogger("alembic").setLevel(max(numeric_level, logging.WARNING))
    _quiet_retries()
    # discord.py warns at every start that PyNaCl/davey (voice) is missing; the bot has
    # no voice feature, so the warning only alarms operators (issue 29).
    logging.getLogger("discord.client").addFilter(_NoVoiceWarning())
    return scrubber


class _NoVoiceWarning(logging.Filter):
    """Drops discord.py's "voice will NOT be supported" start-up warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


def _log_retry(details: stamina.instrumentation.RetryDetails) -> None:
    """A retried call is routine (the caller logs the outcome that matters): at debug,
    so the console's own lines are not buried under stamina's warnings."""
    structlog.get_logger("kontext.retry").debug(
        "call retried",
        retry_num=details.retry_num,
        wait_for=round(details.wait_for, 2),
        caused_by=repr(details.caused_by),
    )


def _quiet_retries() -> None:
    """stamina's own retry hook logs every retry at warning; keep its Prometheus counter
    and log retries through ``_log_retry`` at debug instead."""
    from stamina.instrumentation import PrometheusOnRetryHook, set_on_retry_hooks

    set_on_retry_hooks([PrometheusOnRetryHook, _log_retry])


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of writing, not at set-up (test
    runners and daemons replace it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _StdlibScrubFilter(logging.Filter):
    def __init__(self, scrubber: SecretScrubber) -> None:
        super().__init__()
        self.scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrubber.scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.scrubber.scrub(
                logging.Formatter().formatException(record.exc_info)
            )
            record.exc_info = None
        return True
