"""Presets and ``[results] buttons`` (issue 27): the config merges the operator's
``[[presets]]`` over the shipped ones and refuses, naming the key, what cannot work
(an unknown button, more than fits Discord's rows or Slack's actions block, a placeholder
typo, a model that is not an edit model); the conversation layer lays out a result's
buttons, with the shipped labels translated and the operator's shown as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import i18n
from bot.chat.conversation import Conversation
from bot.chat.presets import ResultLayout, layout_problems
from bot.chat.texts import Style
from bot.config import Settings, load_settings
from bot.config.presets import DEFAULT_BUTTONS, SHIPPED_PRESETS, preset_book
from bot.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("KONTEXT_"):
            monkeypatch.delenv(name)


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_settings(path)


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_the_shipped_presets_apply_without_any_config(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    names = [p.name for p in settings.presets]
    assert names == [str(p["name"]) for p in SHIPPED_PRESETS]
    assert {"zoom-out", "make-square", "vary-subtle", "vary-strong", "relight"} <= set(names)
    assert {"product-shot", "colorize", "remove-background"} <= set(names)
    assert settings.results.buttons == DEFAULT_BUTTONS
    square = preset_book(settings.presets).get("make-square")
    assert square is not None and square.aspect_ratio == "1:1"
    # Every shipped instruction names what must stay (BFL's Kontext prompting guide).
    assert all("Keep" in str(p["prompt"]) for p in SHIPPED_PRESETS)


def test_an_operator_changes_removes_and_adds_presets_by_name(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """
[[presets]]
name = "Zoom-Out"
button = "Wider"

[[presets]]
name = "colorize"
enabled = false

[[presets]]
name = "ink"
prompt = "Redraw as ink {prompt}; literal {{braces}} stay"
""",
    )
    book = preset_book(settings.presets)
    zoom = book.get("zoom-out")
    assert zoom is not None and zoom.label == "Wider" and not zoom.translated
    assert zoom.prompt.startswith("Zoom out"), "only the keys given change"
    assert book.get("colorize") is None
    ink = book.get("ink")
    assert ink is not None and ink.expand("  now ") == "Redraw as ink now; literal {braces} stay"
    assert ink.label == "ink", "no button label: the name"


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        (
            '[results]\nbuttons = ["reroll", "sparkle"]\n',
            "results.buttons: no button or preset named 'sparkle'",
        ),
        (
            '[results]\nbuttons = ["reroll", "reroll"]\n',
            "results.buttons: 'reroll' is listed twice",
        ),
        ('[[presets]]\nname = "ink"\nprompt = "ink {promt}"\n', "unknown placeholder {promt}"),
        ('[[presets]]\nname = "ink"\nprompt = "ink {prompt"\n', "braces do not pair up"),
        ('[[presets]]\nname = "reroll"\nprompt = "x"\n', "name of a built-in button"),
        ('[[presets]]\nname = "Bad Name!"\nprompt = "x"\n', "presets"),
        ('[[presets]]\nname = "ink"\nprompt = "x"\nmodel = "nope"\n', "no model named 'nope'"),
        (
            '[[presets]]\nname = "ink"\nprompt = "x"\n[[presets]]\nname = "INK"\nprompt = "y"\n',
            "given twice",
        ),
    ],
)
def test_what_cannot_work_is_refused_naming_the_key(tmp_path: Path, toml: str, words: str) -> None:
    assert words in refusal(tmp_path, toml)


def test_more_buttons_than_discord_or_slack_hold_are_refused(tmp_path: Path) -> None:
    extra = "".join(f'[[presets]]\nname = "p{n}"\nprompt = "x {{prompt}}"\n' for n in range(17))
    everything = ["reroll", "edit", "upscale", "delete", *(str(p["name"]) for p in SHIPPED_PRESETS)]
    listed = ", ".join(f'"{n}"' for n in [*everything, *(f"p{n}" for n in range(17))])
    text = refusal(tmp_path, extra + f"[results]\nbuttons = [{listed}]\n")
    assert "results.buttons: 29 buttons do not fit on a Discord message" in text
    assert "list at most 20" in text
    assert "results.buttons: 30 elements do not fit in a Slack actions block" in text
    assert "presets: 25 presets do not fit in Discord's More… select" not in text
    # 20 buttons and the More… select: exactly Discord's 5 rows and within Slack's 25.
    assert (
        layout_problems(
            everything + [f"p{n}" for n in range(8)],
            [*everything[4:], *(f"p{n}" for n in range(8))],
        )
        == []
    )


def test_more_presets_than_discords_select_lists_are_refused(tmp_path: Path) -> None:
    extra = "".join(f'[[presets]]\nname = "p{n}"\nprompt = "x"\n' for n in range(18))
    assert "26 presets do not fit in Discord's More… select (at most 25" in refusal(tmp_path, extra)


async def test_the_layout_follows_the_config_translates_shipped_labels_and_hides_upscale(
    tmp_path: Path,
) -> None:
    from bot.jobs.service import KontextService
    from bot.providers.base import ProviderCapabilities

    settings = load(
        tmp_path,
        """
[[presets]]
name = "relight"
button = "Licht!"

[results]
buttons = ["zoom-out", "upscale", "relight", "delete"]
""",
    )
    service = KontextService(
        None,  # type: ignore[arg-type]  # the layout reads no storage
        ProviderCapabilities(),
        provider_name="coretoday",
        model="black-forest-labs/flux-kontext-pro",
        max_input_bytes=20_000_000,
        presets=preset_book(settings.presets),
        result_buttons=settings.results.buttons,
    )
    layout: ResultLayout = Conversation(service, Style()).result_layout()
    # Upscale is listed but not shown: no upscale model is served (docs/presets.md).
    assert [(b.action, b.preset) for b in layout.buttons] == [
        ("preset", "zoom-out"),
        ("preset", "relight"),
        ("delete", None),
    ]
    assert [p.name for p in layout.more] == [p.name for p in settings.presets]
    i18n.activate("de")
    try:
        shown = [b.shown_label() for b in layout.buttons]
        more = dict(layout.more_options())
    finally:
        i18n.activate(i18n.SOURCE)
    assert shown[1] == "Licht!", "the operator's label as written"
    assert shown[0] != "Zoom out" and shown[2] != "Delete", "shipped labels translated"
    assert more["colorize"] != "Colorize"
