"""One Slack manifest per mode (docs/slack-manifest-socket.yml, -http.yml), checked
against Slack's app manifest reference as far as it is documented
(https://docs.slack.dev/reference/app-manifest): the fields each object may have (so
``request_url`` under a slash command, a mistake the docs once made, is refused: its
field is ``url``), the required ones, the documented length limits, and what each mode
needs. The two files say the same apart from the mode; docs/slack-manifest.yml (the
older name, read by the fake Slack and tests/test_slack_scopes.py) is the socket one."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support import ROOT

DOCS = ROOT / "docs"
MODES = {"socket": DOCS / "slack-manifest-socket.yml", "http": DOCS / "slack-manifest-http.yml"}

# The keys Slack's manifest reference documents per object (those the bot may use).
ALLOWED: dict[str, set[str]] = {
    "": {"_metadata", "display_information", "features", "oauth_config", "settings"},
    "display_information": {"name", "description", "long_description", "background_color"},
    "features": {"app_home", "bot_user", "shortcuts", "slash_commands", "unfurl_domains"},
    "features.app_home": {
        "home_tab_enabled",
        "messages_tab_enabled",
        "messages_tab_read_only_enabled",
    },
    "features.bot_user": {"display_name", "always_online"},
    "features.shortcuts[]": {"name", "callback_id", "description", "type"},
    "features.slash_commands[]": {"command", "description", "usage_hint", "url", "should_escape"},
    "oauth_config": {"scopes", "redirect_urls", "token_management_enabled"},
    "oauth_config.scopes": {"bot", "user"},
    "settings": {
        "event_subscriptions",
        "interactivity",
        "org_deploy_enabled",
        "socket_mode_enabled",
        "token_rotation_enabled",
        "allowed_ip_address_ranges",
        "function_runtime",
    },
    "settings.event_subscriptions": {"request_url", "bot_events", "user_events"},
    "settings.interactivity": {"is_enabled", "request_url", "message_menu_options_url"},
}
REQUIRED: dict[str, set[str]] = {
    "display_information": {"name"},
    "features.shortcuts[]": {"name", "callback_id", "description", "type"},
    "features.slash_commands[]": {"command", "description"},
}
# Documented maximum lengths.
LIMITS = {
    "display_information.name": 35,
    "display_information.description": 140,
    "features.bot_user.display_name": 80,
    "features.shortcuts[].name": 24,
    "features.shortcuts[].description": 150,
    "features.slash_commands[].command": 32,
    "features.slash_commands[].description": 2000,
    "features.slash_commands[].usage_hint": 1000,
}


def load(path: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def objects(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every mapping of the manifest with its path (lists as ``name[]``)."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            child = f"{path}.{key}" if path else key
            if isinstance(value, list):
                for item in value:
                    found.extend(objects(item, f"{child}[]"))
            else:
                found.extend(objects(value, child))
    return found


@pytest.mark.parametrize("mode", MODES)
def test_each_manifest_follows_slacks_reference(mode: str) -> None:
    manifest = load(MODES[mode])
    for path, mapping in objects(manifest):
        if path in ALLOWED:
            unknown = set(mapping) - ALLOWED[path]
            where = path or "(top)"
            assert not unknown, f"{mode}: {where} has fields Slack does not know: {unknown}"
        missing = REQUIRED.get(path, set()) - set(mapping)
        assert not missing, f"{mode}: {path} lacks {missing}"
        for key, value in mapping.items():
            limit = LIMITS.get(f"{path}.{key}" if path else key)
            if limit is not None:
                assert len(str(value)) <= limit, f"{mode}: {path}.{key} longer than {limit}"
    for command in manifest["features"]["slash_commands"]:
        assert command["command"].startswith("/")
    assert manifest["display_information"]["background_color"].startswith("#")


def test_the_socket_manifest_needs_no_urls() -> None:
    manifest = load(MODES["socket"])
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert "request_url" not in settings["event_subscriptions"]
    assert "request_url" not in settings["interactivity"]
    assert all("url" not in c for c in manifest["features"]["slash_commands"])
    # The older name is the same manifest (the fake Slack grants its scopes).
    assert load(DOCS / "slack-manifest.yml") == manifest


def test_the_http_manifest_points_everything_at_one_https_url() -> None:
    manifest = load(MODES["http"])
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is False
    urls = {
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
        *(c["url"] for c in manifest["features"]["slash_commands"]),
    }
    # The bot serves events, commands and interactivity on one path (slack.http_port).
    assert urls == {"https://bot.example.com/slack/events"}


def test_the_two_manifests_differ_only_in_the_mode() -> None:
    socket, http = load(MODES["socket"]), load(MODES["http"])
    del http["settings"]["event_subscriptions"]["request_url"]
    del http["settings"]["interactivity"]["request_url"]
    for command in http["features"]["slash_commands"]:
        del command["url"]
    http["settings"]["socket_mode_enabled"] = True
    assert http == socket


def test_the_guide_starts_with_the_steps_and_names_both_manifests() -> None:
    guide = (DOCS / "slack.md").read_text()
    assert "slack-manifest-socket.yml" in guide and "slack-manifest-http.yml" in guide
    headings = [line for line in guide.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Quickstart", "## If it does not work"]
