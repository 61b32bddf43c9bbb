"""The docs and the code name the same things (issue 29): every ``kontext-bot`` command,
subcommand and option the docs show exists in the parser, every command of the parser
is documented, and every config key of docs/configuration.md exists in the settings
model and the other way round."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest
from pydantic import BaseModel

from bot import __version__
from bot.cli import build_parser
from bot.config import ModelConfig, PresetConfig, Settings
from tests.support import ROOT

DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "CHANGELOG.md"]
# Text inside backticks or a fenced block: where the docs show a command to type.
_CODE = re.compile(r"```[a-z]*\n(.*?)```|`([^`\n]+)`", re.S)


def code_spans(path: Path) -> list[str]:
    spans: list[str] = []
    for block, inline in _CODE.findall(path.read_text()):
        spans.extend(block.splitlines() if block else [inline])
    return spans


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def commands_in_docs() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for path in DOCS:
        for span in code_spans(path):
            # Not the image's name (docker build -t kontext-bot ., kontext-bot:latest).
            pattern = r"(?<![\w/:.-])(?<!-t )kontext-bot(?![\w:.-])((?: +[^\s|;&)`>]+)*)"
            for match in re.finditer(pattern, span):
                try:
                    words = shlex.split(match.group(1))
                except ValueError:
                    words = match.group(1).split()
                found.append((path.name, words))
    return found


def test_every_command_the_docs_show_exists() -> None:
    parser = build_parser()
    commands = subparsers(parser)
    wrong: list[str] = []
    for name, words in commands_in_docs():
        if not words:
            continue
        first = words[0]
        if first.startswith("-"):
            if first not in options(parser):
                wrong.append(f"{name}: kontext-bot {first}")
            continue
        if first not in commands:
            wrong.append(f"{name}: kontext-bot {first}")
            continue
        command = commands[first]
        rest = words[1:]
        nested = subparsers(command)
        if nested and rest and not rest[0].startswith("-"):
            if rest[0] not in nested:
                wrong.append(f"{name}: kontext-bot {first} {rest[0]}")
                continue
            command = nested.get(rest[0], command)
            rest = rest[1:]
        if first == "console":
            continue  # the grammar's own options follow the prompt (bot.chat.commands)
        known = options(command) | options(parser)  # --debug goes anywhere
        for word in rest:
            flag = word.split("=", 1)[0].strip("[]")
            if flag.startswith("--") and flag not in known:
                wrong.append(f"{name}: kontext-bot {' '.join(words)}: {flag}")
    assert not wrong, "commands in the docs that the parser does not have:\n" + "\n".join(wrong)


def test_every_command_is_documented() -> None:
    shown = {" ".join(words[:2]) for _name, words in commands_in_docs() if words}
    shown |= {words[0] for _name, words in commands_in_docs() if words}
    missing: list[str] = []
    for name, command in subparsers(build_parser()).items():
        nested = subparsers(command)
        if not nested:
            if name not in shown:
                missing.append(name)
            continue
        for sub in nested:
            if f"{name} {sub}" not in shown:
                missing.append(f"{name} {sub}")
    assert not missing, f"commands no doc shows: {missing}"


# -- config keys ------------------------------------------------------------------------


def documented_keys() -> set[str]:
    """``section.key`` for every key row of docs/configuration.md's tables."""
    keys: set[str] = set()
    section = ""
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        heading = re.match(r"## \[\[?([a-z_]+)\]?\]", line)
        if heading:
            section = heading.group(1)
            continue
        if not line.startswith("| `"):
            continue
        first_cell = line.split("|")[1]
        for name in re.findall(r"`([a-z0-9_.]+)`", first_cell):
            keys.add(name if "." in name else f"{section}.{name}")
    return keys


def model_keys() -> set[str]:
    keys: set[str] = set()
    for section, field in Settings.model_fields.items():
        if section == "models":
            keys |= {f"models.{name}" for name in ModelConfig.model_fields}
            continue
        if section == "presets":
            keys |= {f"presets.{name}" for name in PresetConfig.model_fields}
            continue
        annotation = field.annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
        keys |= {f"{section}.{name}" for name in annotation.model_fields}
    return keys


def test_every_documented_key_exists() -> None:
    unknown = sorted(documented_keys() - model_keys())
    assert not unknown, f"docs/configuration.md names keys the settings do not have: {unknown}"


def test_every_key_is_documented() -> None:
    missing = sorted(model_keys() - documented_keys())
    assert not missing, f"keys docs/configuration.md does not describe: {missing}"


# -- releases ---------------------------------------------------------------------------


def test_the_version_is_one_and_has_a_changelog(capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == __version__
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"kontext-bot {__version__}"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {__version__}" in changelog
    assert "MIT License" in (ROOT / "LICENSE").read_text() and project["license"]["text"] == "MIT"


@pytest.mark.parametrize("guide", ["slack.md", "discord.md"])
def test_the_platform_guides_start_with_steps_then_troubleshooting(guide: str) -> None:
    """A new operator reads the numbered steps first, then what to do when one fails;
    the internals come after (issue 29)."""
    text = (ROOT / "docs" / guide).read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:3] == ["## Quickstart", "## If it does not work", "## How it works"]
    steps = text.split("## Quickstart", 1)[1].split("## If it does not work", 1)[0]
    numbers = [int(m) for m in re.findall(r"^(\d+)\. ", steps, re.M)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 8
    trouble = text.split("## If it does not work", 1)[1].split("## How it works", 1)[0]
    rows = [line for line in trouble.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) - 1 >= 5  # five likely failures at least, each with its fix
    assert "check-config --online" in steps


def test_every_key_named_anywhere_in_the_docs_exists() -> None:
    """`section.key` in any doc (not only configuration.md) is a real key; the jobs
    table's columns (`jobs.model_name`) share a section's name and are not keys."""
    from bot.storage import schema

    sections = set(Settings.model_fields)
    columns = {
        f"{table.name}.{column.name}"
        for table in schema.metadata.tables.values()
        for column in table.c
    }
    wrong: list[str] = []
    for path in DOCS:
        for section, key in re.findall(r"`([a-z_]+)\.([a-z0-9_]+)`", path.read_text()):
            name = f"{section}.{key}"
            if section in sections and name not in model_keys() and name not in columns:
                wrong.append(f"{path.name}: {name}")
    assert not wrong, f"keys in the docs the settings do not have: {wrong}"
