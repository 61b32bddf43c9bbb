"""``[[presets]]`` and ``[results]``: the named instructions and a result's buttons
(docs/presets.md). Key names are a public contract (DESIGN.md): add, never rename.

The shipped presets apply without any ``[[presets]]``. An operator's entry with the name
of a shipped preset changes only the keys it gives (``button = "Wider"`` relabels Zoom
out); ``enabled = false`` removes it; a new name adds a preset (then ``prompt`` is
required). The prompts follow BFL's Kontext prompting guide
(https://docs.bfl.ai/guides/prompting_guide_kontext_i2i): say exactly what changes and
name what must stay the same ("keep the subject, style and lighting exactly as they
are"), since Kontext otherwise feels free to change the rest.
"""

from __future__ import annotations

import string
from typing import Any

from pydantic import Field, field_validator

from bot.chat.presets import BUILT_IN_BUTTONS, NAME_PATTERN, Preset, PresetBook
from bot.config.sections import Section
from bot.i18n import N_

_KEEP = "Keep the subject, their identity, pose, style and lighting exactly as they are."

# The shipped presets, as an operator would write them in the config file.
SHIPPED_PRESETS: tuple[dict[str, Any], ...] = (
    {
        "name": "zoom-out",
        "prompt": "Zoom out to show more of the surroundings around the subject, extending "
        f"the scene naturally on every side. {_KEEP} {{prompt}}",
        "aspect_ratio": "match_input_image",
        "button": N_("Zoom out"),
        "emoji": "🔍",
        "description": "a wider view, same subject and style",
    },
    {
        "name": "make-square",
        "prompt": "Extend the scene to a square 1:1 frame by adding more of the "
        "surroundings on the shorter sides; do not crop, stretch or move the subject. "
        f"{_KEEP} {{prompt}}",
        "aspect_ratio": "1:1",
        "button": N_("Make square"),
        "emoji": "⬛",
        "description": "1:1, the scene extended rather than cropped",
    },
    {
        "name": "vary-subtle",
        "prompt": "Make a subtle variation of this image: change only small details, "
        "textures and the expression. Keep the subject, composition, colors, style and "
        "lighting the same. {prompt}",
        "button": N_("Vary (subtle)"),
        "emoji": "🌱",
        "new_seed": True,
        "description": "a close variation, new seed",
    },
    {
        "name": "vary-strong",
        "prompt": "Make a clearly different variation of this image: a new pose, camera "
        "angle and composition. Keep the same subject, their identity and the same "
        "style. {prompt}",
        "button": N_("Vary (strong)"),
        "emoji": "🌪️",
        "new_seed": True,
        "description": "a bolder variation, new seed",
    },
    {
        "name": "relight",
        "prompt": "Relight the scene with soft, warm golden-hour light coming from the "
        "side. {prompt} Keep the subject, their identity and pose, the composition and "
        "the background exactly the same; change only the light and shadows.",
        "button": N_("Relight"),
        "emoji": "💡",
        "description": "new light; add your own, e.g. --preset relight neon blue light",
    },
    {
        "name": "product-shot",
        "prompt": "Place the main object on a clean, seamless light-grey studio background "
        "with soft, even studio lighting and a gentle shadow beneath it. Keep the object "
        "exactly the same: its shape, colors, materials, labels and text. {prompt}",
        "button": N_("Product shot"),
        "emoji": "📦",
        "description": "a clean studio background",
    },
    {
        "name": "colorize",
        "prompt": "Colorize this photo with natural, realistic colors. Keep every detail, "
        "the faces, the composition and the textures exactly the same; change only the "
        "colors. {prompt}",
        "button": N_("Colorize"),
        "emoji": "🎨",
        "description": "natural colors for a black-and-white photo",
    },
    {
        "name": "remove-background",
        "prompt": "Replace the background with a plain, pure white background. Keep the "
        "subject exactly the same, in the exact same position, scale and pose, with clean "
        "edges. {prompt}",
        "button": N_("Remove background"),
        "emoji": "✂️",
        "description": "the subject on plain white",
    },
)

# Re-roll, Edit again, three presets, Upscale (shown when an upscale model is
# configured), Delete: two of Discord's rows, and the More… select a third.
# A shipped label is translated for each reader; one the operator wrote is shown as written.
_SHIPPED_LABELS = {str(p["name"]): str(p["button"]) for p in SHIPPED_PRESETS}

DEFAULT_BUTTONS = ["reroll", "edit", "vary-subtle", "zoom-out", "make-square", "upscale", "delete"]


class PresetConfig(Section):
    """One ``[[presets]]`` entry (after merging with a shipped one of the same name)."""

    name: str = Field(pattern=NAME_PATTERN)
    # The instruction; ``{prompt}`` is what the user added (may be empty).
    prompt: str = Field(min_length=1, max_length=2000)
    aspect_ratio: str | None = None
    # A [[models]] name; empty: the model of the result it edits, else the default.
    model: str | None = None
    # The button's label and emoji; empty label: the name.
    button: str = Field(default="", max_length=60)
    emoji: str = ""
    # Applied to a result it picks a new seed (the vary presets); else it keeps the seed.
    new_seed: bool = False
    description: str = Field(default="", max_length=100)
    enabled: bool = True

    @field_validator("prompt")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        """Only ``{prompt}`` may be a placeholder (a typo such as ``{promt}`` would reach
        the provider as written); a literal brace is written ``{{`` or ``}}``."""
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as exc:
            raise ValueError(f"the prompt's braces do not pair up ({exc})") from None
        unknown = sorted({f for f in fields if f != "prompt"})
        if unknown:
            raise ValueError(
                f"unknown placeholder {', '.join('{' + f + '}' for f in unknown)}: "
                "the only one is {prompt}"
            )
        return value

    @field_validator("name")
    @classmethod
    def _not_a_button(cls, value: str) -> str:
        if value in BUILT_IN_BUTTONS:
            raise ValueError(f"'{value}' is the name of a built-in button; choose another")
        return value

    def preset(self) -> Preset:
        return Preset(
            name=self.name,
            # Literal braces were doubled for the check above; the template keeps one.
            prompt=self.prompt.replace("{{", "{").replace("}}", "}"),
            label=self.button or self.name,
            emoji=self.emoji,
            aspect_ratio=self.aspect_ratio or None,
            model=self.model or None,
            new_seed=self.new_seed,
            description=self.description,
            translated=bool(self.button) and self.button == _SHIPPED_LABELS.get(self.name),
        )


def merge_presets(value: Any) -> Any:
    """The operator's ``[[presets]]`` over the shipped ones, by name (see the module's
    docstring); names are compared in lower case. Raises on a name given twice."""
    if not isinstance(value, list):
        return value
    merged: dict[str, dict[str, Any]] = {p["name"]: dict(p) for p in SHIPPED_PRESETS}
    seen: set[str] = set()
    for entry in value:
        if isinstance(entry, PresetConfig):
            entry = entry.model_dump()
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            return value  # pydantic names the problem
        name = entry["name"].strip().lower()
        if name in seen:
            raise ValueError(f"the preset '{name}' is given twice; names must differ")
        seen.add(name)
        merged[name] = {**merged.get(name, {}), **entry, "name": name}
    return [entry for entry in merged.values() if entry.get("enabled", True)]


class ResultsConfig(Section):
    """``[results]``: which buttons a result carries, in order (docs/presets.md)."""

    buttons: list[str] = Field(default_factory=lambda: list(DEFAULT_BUTTONS))


def preset_book(presets: list[PresetConfig]) -> PresetBook:
    return PresetBook(p.preset() for p in presets if p.enabled)


def shipped_preset_configs() -> list[PresetConfig]:
    return [PresetConfig(**p) for p in SHIPPED_PRESETS]
