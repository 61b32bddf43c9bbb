"""The bot's languages (issue 28): the catalogs are complete and agree with the code,
a platform's locale picks the right one (an unknown one the default, never an error),
the texts speak the language in force, and the console follows ``LANG``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot import i18n
from bot.chat import texts
from bot.config import Settings
from tests.fakes.coretoday import FakeCoreToday
from tests.support import ROOT, cat_png, environment, run

LOCALE = ROOT / "bot" / "locale"
TRANSLATED = [code for code in i18n.SHIPPED if code != i18n.SOURCE]
PLACEHOLDER = re.compile(r"\{[a-z_]*\}")


def catalog(code: str) -> Catalog:
    with (LOCALE / code / "LC_MESSAGES" / "kontext.po").open("rb") as file:
        return read_po(file, locale=code)


def template() -> Catalog:
    with (LOCALE / "kontext.pot").open("rb") as file:
        return read_po(file)


def key(message_id: str | tuple[str, ...], context: str | None) -> tuple[str, str | None]:
    return (message_id if isinstance(message_id, str) else message_id[0], context)


# -- the catalogs -------------------------------------------------------------------------------


def test_the_template_holds_every_text_of_the_code() -> None:
    """What `pybabel extract` (babel.cfg) finds in bot/ and adapters/ is in kontext.pot:
    a text added without extracting fails here (docs/development.md)."""
    keywords = {"_": None, "N_": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2)}
    keywords["locale_str"] = None
    found = set()
    for folder in ("bot", "adapters"):
        for _file, _line, message, _comments, context in extract_from_dir(
            str(ROOT / folder), keywords=keywords
        ):
            found.add(key(message, context))
    have = {key(m.id, m.context) for m in template() if m.id}
    assert found - have == set(), "run pybabel extract (docs/development.md)"
    assert have - found == set(), "the template names texts the code no longer has"


def problems(translated: Catalog, source: Catalog) -> list[str]:
    """What makes a catalog incomplete: a text of the template missing, an entry fuzzy
    or empty, a wrong number of plural forms, or placeholders other than the source's
    (a singular may leave its count out, "Deine letzte Bearbeitung:"; nothing may name
    a placeholder the source does not give)."""
    wanted = {key(m.id, m.context): m for m in source if m.id}
    entries = {key(m.id, m.context): m for m in translated if m.id}
    found = [f"missing {name}" for name in wanted if name not in entries]
    found += ["the header is fuzzy"] if translated.fuzzy else []
    for name, message in entries.items():
        forms = [message.string] if isinstance(message.string, str) else list(message.string)
        if name not in wanted:
            found.append(f"obsolete {name}")
        elif "fuzzy" in message.flags:
            found.append(f"fuzzy {name}")
        elif not forms or not all(forms):
            found.append(f"untranslated {name}")
        elif isinstance(message.id, tuple) and len(forms) != translated.num_plurals:
            found.append(f"plural forms of {name}")
        else:
            given = message.id[-1] if isinstance(message.id, tuple) else message.id
            placeholders = set(PLACEHOLDER.findall(given))
            if (
                any(not set(PLACEHOLDER.findall(f)) <= placeholders for f in forms)
                or set(PLACEHOLDER.findall(forms[-1])) != placeholders
            ):
                found.append(f"placeholders of {name}: {forms}")
    return found


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_catalog_translates_every_text_with_the_same_placeholders(code: str) -> None:
    assert problems(catalog(code), template()) == []


def test_the_completeness_check_refuses_fuzzy_empty_and_wrong_placeholders() -> None:
    source = Catalog()
    source.add("You have no edits yet.")
    source.add("Job {job} is already being canceled.")
    source.add("Your credits were refunded.")
    source.add(("{n} image", "{n} images"))
    broken = Catalog(locale="de", fuzzy=False)
    broken.add("You have no edits yet.", "Du hast noch nichts bearbeitet.", flags=["fuzzy"])
    broken.add("Job {job} is already being canceled.", "Job {id} wird bereits abgebrochen.")
    broken.add("Your credits were refunded.", "")
    broken.add(("{n} image", "{n} images"), ("{n} Bild", "Bilder"))
    assert problems(broken, source) == [
        "fuzzy ('You have no edits yet.', None)",
        "placeholders of ('Job {job} is already being canceled.', None): "
        "['Job {id} wird bereits abgebrochen.']",
        "untranslated ('Your credits were refunded.', None)",
        "placeholders of ('{n} image', None): ['{n} Bild', 'Bilder']",
    ]
    broken.delete("Your credits were refunded.")
    assert "missing ('Your credits were refunded.', None)" in problems(broken, source)


def test_catalogs_compile_as_the_build_does(tmp_path: Path) -> None:
    """setup.py's step (the one the wheel and the editable install run) writes a .mo
    that gettext reads."""
    import gettext
    import shutil

    from setup import compile_catalogs  # type: ignore[import-not-found]

    copy = tmp_path / "locale"
    shutil.copytree(LOCALE, copy, ignore=shutil.ignore_patterns("*.mo"))
    written = compile_catalogs(copy)
    assert {p.parent.parent.name for p in written} == set(TRANSLATED)
    ko = gettext.translation("kontext", str(copy), languages=["ko"])
    assert ko.gettext("Cancel") == "취소"


# -- which language ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("ko", "ko"),
        ("ko-KR", "ko"),
        ("de_DE.UTF-8", "de"),
        ("pt-BR", "pt_BR"),
        ("pt-PT", "pt_BR"),
        ("es-419", "es"),
        ("es-ES", "es"),
        ("zh-CN", "zh_Hans"),
        ("zh_Hans", "zh_Hans"),
        ("en-GB", "en"),
        ("ja", "ja"),
        ("fr", "fr"),
        ("zh-TW", None),
        ("sv-SE", None),
        ("xx-YY", None),
        ("C.UTF-8", None),
        ("", None),
        (None, None),
    ],
)
def test_a_platform_locale_reads_its_catalog_or_none(tag: str | None, code: str | None) -> None:
    assert i18n.match(tag) == code


def test_an_unknown_locale_falls_back_to_the_default_without_an_error() -> None:
    assert i18n.choose(["sv-SE", None, "zh-TW"], "en") == "en"
    assert i18n.choose(["sv-SE", "de"], "en") == "de", "the next preference the bot has"
    assert i18n.choose([], "ko") == "ko"
    with i18n.using("xx"):
        assert i18n.current_code() == "en"


def test_the_default_must_be_a_shipped_language() -> None:
    assert Settings(i18n={"default": "ko-KR"}).i18n.default == "ko"
    with pytest.raises(ValueError, match="no catalog for 'tlh'"):
        Settings(i18n={"default": "tlh"})


# -- what the texts say -----------------------------------------------------------------------


def test_plural_forms_numbers_and_dates_follow_the_language() -> None:
    style = texts.Style()
    with i18n.using("en"):
        assert texts.result_details(1, 1, 5) == ["seed 1", "1 credit", "5 left"]
        assert texts.result_details(1, 120, 5)[1] == "120 credits"
        assert texts.position_text(1000) == "1,000+"
    with i18n.using("de"):
        assert texts.result_details(7, 1, 2) == ["Seed 7", "1 Credit", "2 übrig"]
        assert texts.result_details(7, 120, 2)[1] == "120 Credits"
        assert texts.position_text(1000) == "1.000+"
        assert texts.inputs_too_large(12_345_678, 50_000_000).startswith(
            "Zusammen sind die Bilder 12,3 MB"
        )
    with i18n.using("ko"):
        assert texts.result_details(7, 120, 2) == ["시드 7", "120 크레딧", "2 남음"]
        assert _(texts.DELETE_NOT_YOURS).startswith("이 이미지를")
    from datetime import UTC, datetime

    moment = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    with i18n.using("en"):
        assert style.when(moment) == "2026-12-07 09:30 UTC"
    with i18n.using("de"):
        assert style.when(moment) == "07.12.26, 09:30 UTC"


def _(text: str) -> str:
    return i18n._(text)


def test_the_prompt_is_never_translated() -> None:
    """A prompt that happens to be a catalog's word reaches the history as typed."""
    with i18n.using("ko"):
        assert texts.short("Cancel") == "Cancel"
        assert i18n._("Cancel") == "취소"


# -- the console: LANG ------------------------------------------------------------------------


async def test_console_answers_in_the_terminals_language(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    image = cat_png(tmp_path / "cat.png")
    out = tmp_path / "out.png"
    german = await run(
        ["console", "--image", str(image), "--out", str(out), "make it a watercolor"],
        environment(tmp_path, fake, LANG="de_DE.UTF-8"),
        tmp_path,
    )
    assert german.code == 0, german.stderr
    assert "In der Warteschlange (Platz 1): 120 Credits reserviert, 1080 übrig." in german.stderr
    (create,) = fake.creates
    assert create.input is not None
    assert create.input["prompt"] == "make it a watercolor", "the prompt goes as typed"
    seed = create.input["seed"]
    assert f"Seed {seed}, 120 Credits, 1080 übrig" in german.stderr
    helped = await run(
        ["console", "help"], environment(tmp_path, fake, LANG="de_DE.UTF-8"), tmp_path
    )
    assert "Beispiele:" in helped.stdout and "--seed N" in helped.stdout


async def test_console_with_an_unknown_language_answers_in_english(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    shown = await run(
        ["console", "credits"], environment(tmp_path, fake, LC_ALL="sv_SE.UTF-8"), tmp_path
    )
    assert shown.code == 0, shown.stderr
    assert shown.stdout.startswith("You have 1200 credits: 10 images at 120 each.")


async def test_lc_all_wins_over_lang_and_the_operator_default_applies_last(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    env = environment(tmp_path, fake, LANG="de_DE.UTF-8", LC_ALL="fr_FR.UTF-8")
    assert (await run(["console", "credits"], env, tmp_path)).stdout.startswith("Vous avez")
    env = environment(tmp_path, fake, KONTEXT_I18N__DEFAULT="ja")
    assert (await run(["console", "credits"], env, tmp_path)).stdout.startswith("残高は")
