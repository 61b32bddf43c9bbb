"""The Dockerfile and compose file name things that exist and work.

Docker has no engine on the test machines, so these files are checked by reading them
and by running what they run: the entry command, the health check command, and the
configuration their environment variables set.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import pytest
import yaml

from bot.app import build_core
from bot.cli import build_parser, main
from bot.config import load_settings
from tests.support import make_settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def exec_form(value: str) -> list[str]:
    match = re.search(r"(\[.*\])", value)
    assert match, f"not in exec form: {value}"
    parsed = json.loads(match.group(1))
    assert isinstance(parsed, list)
    return [str(part) for part in parsed]


def test_final_stage_is_slim_non_root_and_runs_the_bot() -> None:
    stages = instructions("FROM")
    assert stages[0].startswith("python:3.11-slim") and stages[-1].startswith("python:3.11-slim")
    final = DOCKERFILE.split("\nFROM ")[-1]
    assert "USER kontext" in final and "USER root" not in final
    assert "apt-get" not in final and "gcc" not in final
    assert exec_form(instructions("CMD")[-1]) == ["kontext-bot", "run"]
    assert build_parser().parse_args(["run"]).command == "run"


def test_copied_paths_exist() -> None:
    for copy in instructions("COPY"):
        if copy.startswith("--from"):
            continue
        *sources, _destination = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source


def docker_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for block in instructions("ENV"):
        for key, value in re.findall(r"(\w+)=(\S+)", block):
            env[key] = value
    return env


def test_environment_of_image_and_compose_is_valid_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    default = {name for name, svc in compose["services"].items() if "profiles" not in svc}
    assert default == {"bot", "postgres"}  # the "monitoring" profile: tests/test_grafana.py
    bot = compose["services"]["bot"]
    env = docker_environment()
    for key, value in bot["environment"].items():
        env[key] = interpolate(value, {"POSTGRES_PASSWORD": "secret"})
    for key, value in env.items():
        if key.startswith("KONTEXT_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.storage.url == "postgresql://kontext:secret@postgres/kontext"
    assert settings.ops.enabled and settings.ops.host == "0.0.0.0"
    assert settings.jobs.shutdown_grace_seconds == 30
    grace = float(bot["stop_grace_period"].rstrip("s"))
    assert grace > settings.jobs.shutdown_grace_seconds
    assert bot["volumes"][0].endswith(":/etc/kontext/config.toml:ro")
    assert "WORKDIR /etc/kontext" in DOCKERFILE


async def test_healthcheck_command_answers_for_a_running_bot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exec_form(instructions("HEALTHCHECK")[0]) == ["kontext-bot", "healthcheck"]
    settings = make_settings(tmp_path, ops={"enabled": True, "port": 0})
    core = await build_core(settings, {})
    await core.start()
    try:
        assert core.ops is not None
        config = tmp_path / "config.toml"
        config.write_text(f'[ops]\nenabled = true\nhost = "0.0.0.0"\nport = {core.ops.port}\n')
        code = await asyncio.to_thread(main, ["healthcheck", "--config", str(config)])
        assert code == 0
        assert "healthy" in capsys.readouterr().out
    finally:
        await core.close()
    code = await asyncio.to_thread(main, ["healthcheck", "--config", str(config)])
    assert code == 1
    assert "unhealthy" in capsys.readouterr().err


def test_healthcheck_with_ops_disabled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[ops]\nenabled = false\n")
    assert main(["healthcheck", "--config", str(config)]) == 1
    assert "disabled" in capsys.readouterr().err


# -- Compose as shipped (issue 29) ------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?(?::\?[^}]*)?\}")


def interpolate(value: object, dotenv: dict[str, str]) -> str:
    """Compose's ``${NAME:-default}`` against a ``.env`` (its own rule: .env, else the
    default)."""
    return _INTERPOLATION.sub(lambda m: dotenv.get(m.group(1)) or (m.group(2) or ""), str(value))


def dotenv_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def config_keys() -> set[str]:
    from pydantic import BaseModel

    from bot.config import Settings

    keys: set[str] = set()
    for section, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= {f"KONTEXT_{section}__{key}".upper() for key in annotation.model_fields}
    return keys


def bot_services() -> dict[str, dict[str, object]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return {
        name: service
        for name, service in compose["services"].items()
        if "build" in service or str(service.get("image", "")).startswith("kontext-bot")
    }


def test_every_kontext_variable_of_compose_and_env_example_is_a_config_key() -> None:
    known = config_keys()
    named = set(dotenv_example())
    for service in bot_services().values():
        environment = service.get("environment", {})
        assert isinstance(environment, dict)
        named |= set(environment)
    unknown = sorted(name for name in named if name.startswith("KONTEXT_") and name not in known)
    assert not unknown, f"not config keys: {unknown}"
    # The switches the issue found missing: without them the bot answers nobody.
    for switch in ("KONTEXT_SLACK__ENABLED", "KONTEXT_DISCORD__ENABLED"):
        assert switch in dotenv_example()
        assert all(switch in s["environment"] for s in bot_services().values())  # type: ignore[operator]


def test_compose_as_shipped_gives_a_valid_config_with_listeners_on_all_interfaces(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dotenv = {
        **dotenv_example(),
        "KONTEXT_PROVIDER__NAME": "demo",
        "KONTEXT_DASHBOARD__ENABLED": "true",
        "KONTEXT_DASHBOARD__PASSWORD": "pw",
    }
    (bot,) = bot_services().values()
    env = {**docker_environment(), **dotenv}
    environment = bot["environment"]
    assert isinstance(environment, dict)
    env.update({key: interpolate(value, dotenv) for key, value in environment.items()})
    for key in list(os.environ):
        if key.startswith("KONTEXT_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("KONTEXT_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.dashboard.enabled and settings.dashboard.host == "0.0.0.0"
    assert settings.slack.http_host == "0.0.0.0" and settings.ops.host == "0.0.0.0"
    assert settings.credits.admins == [] and settings.discord.guild_ids == []
    # Published on the host's loopback only, one port per replica (host port ranges).
    ports = bot["ports"]
    assert isinstance(ports, list)
    published = {}
    for entry in ports:
        host, host_ports, container = str(entry).split(":")
        assert host == "127.0.0.1", entry
        published[int(container)] = host_ports
    for port in (settings.dashboard.port, settings.ops.port, settings.slack.http_port):
        assert port in published and "-" in published[port], port
