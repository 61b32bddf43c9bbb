"""The /kontext text grammar: every mistake is a clear UserInputError, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chat.commands import (
    CreditsCommand,
    EditCommand,
    HelpCommand,
    build_options,
    parse_command,
)
from bot.domain import ASPECT_RATIOS, SEED_MAX, EditOptions
from bot.errors import UserInputError
from bot.providers.base import ProviderCapabilities

CAPS = ProviderCapabilities()


def parse(text: str, has_image: bool = True) -> EditCommand:
    command = parse_command(text, has_image=has_image, capabilities=CAPS)
    assert isinstance(command, EditCommand)
    return command


def error(text: str, has_image: bool = True) -> str:
    with pytest.raises(UserInputError) as info:
        parse_command(text, has_image=has_image, capabilities=CAPS)
    return info.value.user_message


def test_plain_prompt_gets_defaults() -> None:
    command = parse("make it a watercolor")
    assert command.prompt == "make it a watercolor"
    assert command.options == EditOptions()


@pytest.mark.parametrize(
    ("text", "prompt", "options"),
    [
        ("make it pop --ar 16:9", "make it pop", EditOptions(aspect_ratio="16:9")),
        ("--ar=9:16 make it pop", "make it pop", EditOptions(aspect_ratio="9:16")),
        ("make --seed 42 it pop", "make it pop", EditOptions(seed=42)),
        ("x --format JPEG --upsample", "x", EditOptions(output_format="jpg", upsample=True)),
        ("x \u2014ar 4:3", "x", EditOptions(aspect_ratio="4:3")),
        ("x \u2013seed 7", "x", EditOptions(seed=7)),
        ("x --aspect-ratio 16x9", "x", EditOptions(aspect_ratio="16:9")),
        ("x --safety 0", "x", EditOptions(safety=0)),
        ("x --ar match_input_image", "x", EditOptions(aspect_ratio="match_input_image")),
        ('make it say "hello" and don\'t', 'make it say "hello" and don\'t', EditOptions()),
        ("<@U0456> make it pop", "make it pop", EditOptions()),
        ("<@!1234> <@U99|kontext> make it pop", "make it pop", EditOptions()),
        ("/kontext make it pop", "make it pop", EditOptions()),
        ("!kontext   make\n it   pop", "make it pop", EditOptions()),
        ("ask <@U1> to wave", "ask <@U1> to wave", EditOptions()),
        ("x --seed 4294967295", "x", EditOptions(seed=SEED_MAX)),
    ],
)
def test_options_anywhere_and_forms(text: str, prompt: str, options: EditOptions) -> None:
    command = parse(text)
    assert command.prompt == prompt
    assert command.options == options


def test_literal_bot_names_are_stripped() -> None:
    command = parse_command(
        "@kontext make it pop", has_image=True, capabilities=CAPS, bot_mentions=["@kontext"]
    )
    assert command == EditCommand("make it pop", EditOptions())


def test_text_to_image_allows_higher_safety() -> None:
    assert parse("a lighthouse --safety 6", has_image=False).options.safety == 6


@pytest.mark.parametrize(
    ("text", "has_image", "expected"),
    [
        ("x --ar 7:3", True, ["7:3", "16:9", "21:9", "match_input_image"]),
        ("x --seed abc", True, ["0 to 4294967295", "abc"]),
        ("x --seed 4294967296", True, ["4294967295"]),
        ("x --seed -1", True, ["4294967295"]),
        ("x --safety 5", True, ["at most 2", "image"]),
        ("x --safety 7", False, ["0", "6"]),
        ("x --format gif", True, ["png", "jpg", "gif"]),
        ("x --foo", True, ["--foo", "--ar", "--seed", "--format", "--upsample", "--safety"]),
        ("x --ar", True, ["needs a value", "--ar 16:9"]),
        ("x --seed --upsample", True, ["needs a value"]),
        ("x --ar 1:1 --ar 4:3", True, ["twice"]),
        ("x --upsample=yes", True, ["no value"]),
        ("--ar 16:9", True, ["Write what to change"]),
        ("<@U1>   ", True, ["Write what to change"]),
        ("x --ar match_input_image", False, ["needs an input image"]),
        ("x " + "y" * 3000, True, ["limit is 2000", "3002"]),
    ],
)
def test_mistakes_get_helpful_messages(text: str, has_image: bool, expected: list[str]) -> None:
    message = error(text, has_image)
    for words in expected:
        assert words in message, message


@pytest.mark.parametrize("text", ["help", " HELP ", "<@U1> help", "/kontext help"])
def test_help(text: str) -> None:
    assert parse_command(text, has_image=False, capabilities=CAPS) == HelpCommand()


@pytest.mark.parametrize("text", ["credits", "Balance", "<@U1> credits"])
def test_credits(text: str) -> None:
    assert parse_command(text, has_image=False, capabilities=CAPS) == CreditsCommand()


def test_help_inside_a_prompt_is_a_prompt() -> None:
    assert parse("help me make a cat").prompt == "help me make a cat"


def test_build_options_is_shared_with_real_slash_command_options() -> None:
    options = build_options(
        has_image=False, capabilities=CAPS, aspect_ratio="21:9", seed=3, output_format="jpg"
    )
    assert options == EditOptions(aspect_ratio="21:9", seed=3, output_format="jpg")
    with pytest.raises(UserInputError):
        build_options(has_image=True, capabilities=CAPS, safety=3)


def test_capabilities_limit_ratios_and_formats() -> None:
    narrow = ProviderCapabilities(aspect_ratios=("1:1",), output_formats=("png",))
    with pytest.raises(UserInputError) as info:
        parse_command("x --ar 16:9", has_image=True, capabilities=narrow)
    assert "Choose one of: 1:1." in info.value.user_message
    with pytest.raises(UserInputError) as info:
        parse_command("x --format jpg", has_image=True, capabilities=narrow)
    assert "use png" in info.value.user_message


# -- properties ---------------------------------------------------------------------

FLAG_TOKENS = ["--ar", "--seed", "--format", "--upsample", "--safety", "--ar=", "\u2014ar", "--"]
NOISE = st.sampled_from(
    [
        *FLAG_TOKENS,
        "16:9",
        "7:3",
        "42",
        "-1",
        "png",
        "gif",
        "<@U1>",
        "<@!2|x>",
        '"',
        "'",
        "help",
        "credits",
        "/kontext",
        "\u2013",
        "=",
        "x" * 50,
        "\n",
        "\t",
        "\x00",
    ]
)
WORD = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2014\u2013"),
    min_size=1,
    max_size=12,
).filter(
    lambda w: (
        w.strip() == w
        and w.isprintable()
        and " " not in w
        and not w.startswith(("-", "<@"))
        and w.lower() not in {"/kontext", "!kontext"}
    )
)


@settings(max_examples=300, deadline=None)
@given(text=st.text(), has_image=st.booleans())
def test_any_text_parses_or_gives_a_user_error(text: str, has_image: bool) -> None:
    try:
        parse_command(text, has_image=has_image, capabilities=CAPS)
    except UserInputError as exc:
        assert exc.user_message


@settings(max_examples=300, deadline=None)
@given(tokens=st.lists(st.one_of(NOISE, WORD), max_size=12), has_image=st.booleans())
def test_flag_soup_parses_or_gives_a_user_error(tokens: list[str], has_image: bool) -> None:
    try:
        result = parse_command(" ".join(tokens), has_image=has_image, capabilities=CAPS)
    except UserInputError as exc:
        assert exc.user_message
        return
    if isinstance(result, EditCommand):
        words = result.prompt.split()
        assert not any(w.startswith(("--", "\u2014", "\u2013")) and len(w) > 2 for w in words)
        assert not result.prompt.startswith("<@")


RATIOS = st.sampled_from([r for r in ASPECT_RATIOS if r != "match_input_image"])


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(
        WORD.filter(lambda w: w.lower() not in {"help", "credits", "balance"}),
        min_size=1,
        max_size=8,
    ),
    ratio=st.none() | RATIOS,
    seed=st.none() | st.integers(0, SEED_MAX),
    fmt=st.sampled_from(["png", "jpg"]),
    upsample=st.booleans(),
    safety=st.integers(0, 2),
    order=st.randoms(use_true_random=False),
)
def test_valid_commands_round_trip(
    words: list[str],
    ratio: str | None,
    seed: int | None,
    fmt: str,
    upsample: bool,
    safety: int,
    order: object,
) -> None:
    flags: list[list[str]] = [["--format", fmt], ["--safety", str(safety)]]
    if ratio:
        flags.append(["--ar", ratio])
    if seed is not None:
        flags.append([f"--seed={seed}"])
    if upsample:
        flags.append(["--upsample"])
    units = [[word] for word in words]
    for flag in flags:  # flags go anywhere between words, never between flag and value
        units.insert(order.randint(0, len(units)), flag)  # type: ignore[attr-defined]
    tokens = [token for unit in units for token in unit]
    command = parse(" ".join(tokens))
    assert command.prompt == " ".join(words)
    assert command.options == EditOptions(
        aspect_ratio=ratio,
        seed=seed,
        output_format=fmt,
        upsample=upsample,
        safety=safety,  # type: ignore[arg-type]
    )
