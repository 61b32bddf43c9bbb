"""docs/slack-manifest.yml grants every scope the Slack adapter's Web API calls need.

The calls are found by reading adapters/slack/ (not by running it): every
``<anything>.<AsyncWebClient method>(...)`` and ``.api_call("method")``, resolved to the
Web API methods they reach through slack_sdk's own source, so ``files_upload_v2`` counts
as the files.getUploadURLExternal and files.completeUploadExternal it calls. Each method
is looked up in the fake Slack's METHOD_SCOPES (the scopes Slack documents for it); a
method missing from that table fails the test too, so a new call cannot slip past.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from functools import cache
from pathlib import Path

import yaml
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import (
    APP_TOKEN_SCOPES,
    CHANNEL_TYPE_SCOPES,
    MANIFEST,
    METHOD_SCOPES,
    manifest_scopes,
)

ADAPTER = Path(__file__).resolve().parents[1] / "adapters" / "slack"
# Called by slack_bolt itself, not by our code: the single-workspace AsyncApp asks
# auth.test who the bot is (bot_user_id in the listeners' context).
BOLT_CALLS = {"auth.test"}
# What each subscribed event needs, from the "Required scopes" of its reference page
# (https://docs.slack.dev/reference/events/<event>).
EVENT_SCOPES = {
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "message.mpim": "mpim:history",
    # https://docs.slack.dev/reference/events/app_home_opened: no scope required (the
    # welcome's reads and post go through conversations.history and chat:write).
    "app_home_opened": None,
}


def _string_arg(call: ast.Call) -> str | None:
    """The method name of ``api_call("chat.postMessage", ...)`` or ``api_method=...``."""
    values = list(call.args[:1]) + [k.value for k in call.keywords if k.arg == "api_method"]
    for value in values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
    return None


@cache
def sdk_methods(name: str) -> frozenset[str]:
    """The Web API methods AsyncWebClient.<name> calls, read from slack_sdk's source."""
    function = getattr(AsyncWebClient, name, None)
    if not inspect.iscoroutinefunction(function):
        return frozenset()
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    found: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr == "api_call":
            method = _string_arg(node)
            if method:
                found.add(method)
        elif (
            node.func.attr != name
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "self"
        ):
            found |= sdk_methods(node.func.attr)
    return frozenset(found)


def adapter_methods() -> dict[str, set[str]]:
    """Web API method -> where in adapters/slack/ it is called (file:line)."""
    calls: dict[str, set[str]] = {}
    for path in sorted(ADAPTER.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr == "api_call":
                literal = _string_arg(node)
                methods = {literal} if literal else set()
            else:
                methods = set(sdk_methods(node.func.attr))
            for method in methods:
                calls.setdefault(method, set()).add(f"{path.name}:{node.lineno}")
    return calls


def test_the_scan_finds_the_calls_it_must() -> None:
    """A scan that finds nothing would pass vacuously: it must see what is surely there."""
    calls = adapter_methods()
    for method in (
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "files.info",
        "users.info",
        "views.open",
        "conversations.replies",
        # files_upload_v2, through slack_sdk's own source:
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ):
        assert method in calls, method
    assert sdk_methods("files_upload_v2") == {
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    }


def test_every_called_method_has_a_documented_scope_in_the_fake() -> None:
    calls = adapter_methods()
    unknown = {
        method: sorted(where)
        for method, where in calls.items()
        if method not in METHOD_SCOPES and method not in APP_TOKEN_SCOPES
    }
    assert not unknown, f"add these methods' documented scopes to METHOD_SCOPES: {unknown}"


def test_the_manifest_grants_every_scope_the_calls_need() -> None:
    granted = manifest_scopes()
    missing: dict[str, list[str]] = {}
    for method in sorted(set(adapter_methods()) | BOLT_CALLS):
        if method in APP_TOKEN_SCOPES:
            continue  # the app-level token's scope (connections:write), not the bot's
        documented = METHOD_SCOPES[method]
        if method in CHANNEL_TYPE_SCOPES:
            # The bot answers in public and private channels, DMs and group DMs (it
            # subscribes to all four message events): each type needs its own scope.
            needed = set(documented)
        else:
            needed = set(documented[:1]) if not granted.intersection(documented) else set()
        lacking = sorted(needed - granted)
        if lacking:
            missing[method] = lacking
    assert not missing, f"docs/slack-manifest.yml lacks scopes: {missing}"


def test_the_manifest_lets_people_message_the_bot_and_grants_its_events() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    # Without the Messages tab Slack tells people "Sending messages to this app has been
    # turned off" (https://docs.slack.dev/reference/app-manifest#features, app_home).
    app_home = manifest["features"]["app_home"]
    assert app_home["messages_tab_enabled"] is True
    assert app_home["messages_tab_read_only_enabled"] is False
    granted = manifest_scopes()
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    assert {EVENT_SCOPES[event] for event in events} - {None} <= granted
    assert "commands" in granted  # the slash command and the message shortcut
