"""The CLI's credits commands work on the same storage as a running bot."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main, split_console_args


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("KONTEXT_CONFIG", "KONTEXT_PROVIDER__API_KEY"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "config.toml"
    path.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path / "k.db"}"\n[credits]\nallowance = 600\n'
        'period = "weekly"\n'
    )
    return path


def test_show_grant_and_adjust(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = "discord:9876:1234"
    assert main(["credits", "show", user, "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"{user}: 600 credits" in out
    assert "images left: 5 at 120 credits each" in out
    assert "next allowance: 600 credits at" in out
    assert (
        main(["credits", "grant", user, "240", "--note", "contest", "--config", str(config)]) == 0
    )
    assert capsys.readouterr().out.strip() == f"{user}: 840 credits"
    assert main(["credits", "grant", user, "-40", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == f"{user}: 800 credits"
    assert main(["credits", "show", user, "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "adjust  -40" in out and "grant   +240" in out and "(contest)" in out


def test_bad_user_ref_and_zero_grant_exit_1(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["credits", "show", "alice", "--config", str(config)]) == 1
    assert "platform:workspace:user" in capsys.readouterr().err
    assert main(["credits", "grant", "slack:T1:U1", "0", "--config", str(config)]) == 1
    assert "changes nothing" in capsys.readouterr().err


def test_usage_errors_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["credits", "grant", "slack:T1:U1", "lots"])
    assert info.value.code == 1
    assert "invalid int value" in capsys.readouterr().err


def test_migrate_command(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--config", str(config)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_console_arguments_split_from_grammar_options() -> None:
    own, prompt = split_console_args(
        ["--ar", "16:9", "--image", "cat.png", "make", "it", "--out=o.png", "pop", "--upsample"]
    )
    assert own == ["--image", "cat.png", "--out=o.png"]
    assert prompt == ["--ar", "16:9", "make", "it", "pop", "--upsample"]
    assert split_console_args(["--", "--image", "x"]) == ([], ["--image", "x"])
