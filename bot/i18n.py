"""The bot's languages: gettext catalogs read with Python's ``gettext``, numbers and dates
formatted by Babel for the language in force.

The language in force is a context variable, so every text built while a request is
being answered, or while its job runs, comes out in that request's language without
each call passing it on: the conversation layer decides the language
(``Conversation.speak``) and the pipeline restores the one stored with a job. The
catalogs live in ``bot/locale/<lang>/LC_MESSAGES/kontext.po``; the package build
compiles them to ``.mo`` (setup.py), and a catalog whose ``.mo`` is missing or older
than its ``.po`` (a checkout edited since the last install) is compiled in memory at
first use, so a stale install never answers with old words.

The prompt is never translated: only the bot's own words are.
"""

from __future__ import annotations

import functools
import gettext
import io
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

DOMAIN = "kontext"
LOCALE_DIR = Path(__file__).parent / "locale"
SOURCE = "en"
# Every language the bot ships a catalog for, by its catalog directory's name.
SHIPPED: tuple[str, ...] = ("en", "ko", "ja", "de", "fr", "es", "pt_BR", "zh_Hans")


@dataclass(frozen=True)
class Language:
    """One catalog and the Babel locale its numbers and dates are formatted for."""

    code: str
    translations: gettext.NullTranslations
    locale: Locale


def _catalog(code: str) -> gettext.NullTranslations:
    if code == SOURCE:
        return gettext.NullTranslations()
    folder = LOCALE_DIR / code / "LC_MESSAGES"
    po, mo = folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"
    if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
        with mo.open("rb") as file:
            return gettext.GNUTranslations(file)
    # Not built (or edited since): compile the source catalog in memory, as the build would.
    with po.open("rb") as file:
        catalog = read_po(file, locale=code, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


@functools.cache
def language(code: str) -> Language:
    """The shipped language ``code`` (one of ``SHIPPED``), loaded once."""
    if code not in SHIPPED:
        raise ValueError(f"no catalog for {code!r}; shipped: {', '.join(SHIPPED)}")
    return Language(code, _catalog(code), Locale.parse(code))


def display_name(code: str) -> str:
    """A shipped language by its own name (한국어, Deutsch, 中文 (简体))."""
    return Locale.parse(code).get_display_name(code) or code


def _parse(tag: str) -> Locale | None:
    """A platform's locale tag (``ko``, ``ko-KR``, ``pt_BR``, ``zh-CN``, ``de_DE.UTF-8``)
    as a Babel locale, or None for one Babel does not know (no error: the caller falls
    back)."""
    tag = tag.split(".")[0].split("@")[0].strip()
    if not tag or tag in ("C", "POSIX"):
        return None
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def match(tag: str | None) -> str | None:
    """The shipped catalog for a platform's locale tag, or None. The region picks the
    catalog only where the bot has one for it (``pt-BR``; ``pt-PT`` reads Brazilian
    Portuguese rather than English); Chinese needs the simplified script (``zh-CN``,
    ``zh-SG``, ``zh-Hans``), since ``zh-TW`` readers do not read it as their own."""
    found = _parse(tag) if tag else None
    if found is None:
        return None
    if found.language == "zh":
        script = found.script or Locale.parse(f"zh_{found.territory or 'CN'}").script
        return "zh_Hans" if script == "Hans" else None
    if found.language == "pt":
        return "pt_BR"
    return found.language if found.language in SHIPPED else None


def environment_locales(environ: Mapping[str, str]) -> list[str]:
    """A terminal's language, as POSIX ranks its variables: ``LC_ALL``, then
    ``LC_MESSAGES``, then ``LANG`` (the console and the CLI)."""
    return [environ[name] for name in ("LC_ALL", "LC_MESSAGES", "LANG") if environ.get(name)]


def choose(preferences: Iterable[str | None], default: str) -> str:
    """The first preference the bot has a catalog for, else ``default``."""
    for tag in preferences:
        code = match(tag)
        if code is not None:
            return code
    return match(default) or SOURCE


# Unset: the source language. Whoever answers sets it from a decision (the conversation
# layer for a request, the pipeline for a job), never from a module-wide default.
_current: ContextVar[Language | None] = ContextVar("kontext_language", default=None)


# What the platform said of the person being answered (``Conversation.speak``), so a
# decision can be made again in the same task (an admin set the language back to auto).
_asked: ContextVar[tuple[str | None, ...]] = ContextVar("kontext_locales", default=())


def remember(locales: Iterable[str | None]) -> None:
    _asked.set(tuple(locales))


def remembered() -> tuple[str | None, ...]:
    return _asked.get()


def current() -> Language:
    found = _current.get()
    return found if found is not None else language(SOURCE)


def current_code() -> str:
    return current().code


def activate(code: str | None) -> None:
    """Speak ``code`` (a shipped code or a tag ``match`` knows; None or unknown: the
    source) for the rest of this task; tasks it starts inherit it. ``using`` is the
    scoped form."""
    _current.set(language(match(code) or SOURCE))


@contextmanager
def using(code: str | None) -> Iterator[Language]:
    token = _current.set(language(match(code) or SOURCE))
    try:
        yield current()
    finally:
        _current.reset(token)


# -- the gettext functions: the keywords `pybabel extract` looks for (babel.cfg) -----------


def _(message: str) -> str:
    return current().translations.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return current().translations.ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    return current().translations.pgettext(context, message)


def N_(message: str) -> str:
    """Marks a module-level text for extraction; ``_()`` translates it where it is used."""
    return message


# -- numbers and dates for the language in force ---------------------------------------------


def number(value: float, pattern: str | None = None) -> str:
    """``1,000`` in English, ``1.000`` in German; ``pattern``: Babel's, e.g. ``"0.0"``."""
    return format_decimal(value, format=pattern, locale=current().locale)


def when(moment: datetime) -> str:
    """A moment in UTC for plain text: English keeps its ``2026-12-07 09:00 UTC``; other
    languages write the date their way."""
    moment = moment.astimezone(UTC)
    if current().code == SOURCE:
        return f"{moment:%Y-%m-%d %H:%M} UTC"
    return f"{format_datetime(moment, 'short', tzinfo=UTC, locale=current().locale)} UTC"
