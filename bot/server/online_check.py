"""``kontext-bot check-config --online``: each credential asked of its service, one line
each, without making an image (issue 29).

The first real check used to cost an image, and ``provider status`` on core.today never
looked at the key. Here every configured credential gets the cheapest authenticated
read its service offers: Slack ``auth.test`` (and the token's scopes against the
manifest's), Slack ``apps.connections.open`` for the Socket Mode token, Discord
``GET /users/@me`` and ``/oauth2/applications/@me``, BFL ``GET /v1/credits``, Replicate
``GET /v1/account``, ComfyUI ``GET /system_stats``; core.today documents no account read,
so its key is shown a prediction id that cannot exist: 404 means the key was accepted,
401/403 that it was refused. Nothing is created anywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

import httpx

from bot.config import Settings
from bot.http_transport import new_http_client
from bot.providers.factory import base_url_for
from bot.providers.http import connect_failure

# The bot scopes of docs/slack-manifest*.yml (tests/test_online_check.py keeps them equal).
SLACK_BOT_SCOPES = frozenset(
    {
        "commands",
        "chat:write",
        "files:read",
        "files:write",
        "app_mentions:read",
        "channels:history",
        "groups:history",
        "im:history",
        "mpim:history",
        "channels:read",
        "groups:read",
        "im:read",
        "mpim:read",
        "users:read",
    }
)
_PROBE_ID = "kontext-check-config-probe"  # a prediction id no service will have


class Checked(Exception):
    """A check's outcome line, raised from deep in a check to end it."""


async def _get(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: object
) -> httpx.Response:
    try:
        return await client.request(method, url, **kwargs)  # type: ignore[arg-type]
    except httpx.InvalidURL:
        raise Checked(f"FAILED: {url.split('?', 1)[0]!r} is not a valid URL") from None
    except httpx.TransportError as exc:
        detail = (
            connect_failure(exc, url)
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            else f"no answer ({type(exc).__name__})"
        )
        raise Checked(f"FAILED: {detail}") from None


def _refused(response: httpx.Response, key: str) -> str:
    return f"FAILED: {key} refused (HTTP {response.status_code}); check the value"


async def _slack(settings: Settings, client: httpx.AsyncClient) -> list[str]:
    slack = settings.slack
    base = slack.api_base_url if slack.api_base_url.endswith("/") else slack.api_base_url + "/"
    lines: list[str] = []
    token = slack.bot_token.get_secret_value()
    answer = await _get(
        client, "POST", f"{base}auth.test", headers={"Authorization": f"Bearer {token}"}
    )
    body = (
        answer.json()
        if answer.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    if not body.get("ok"):
        error = body.get("error", f"HTTP {answer.status_code}")
        lines.append(f"slack.bot_token: FAILED: Slack says {error}; check the xoxb- token")
    else:
        granted = {s.strip() for s in answer.headers.get("x-oauth-scopes", "").split(",") if s}
        missing = sorted(SLACK_BOT_SCOPES - granted) if granted else []
        line = f"slack.bot_token: ok, bot @{body.get('user')} in {body.get('team_id')}"
        if missing:
            line = (
                f"slack.bot_token: FAILED: the token lacks scopes {', '.join(missing)}: add "
                "them (or reinstall from docs/slack-manifest-*.yml) and reinstall the app"
            )
        lines.append(line)
    if slack.mode == "socket":
        app = slack.app_token.get_secret_value()
        answer = await _get(
            client,
            "POST",
            f"{base}apps.connections.open",
            headers={"Authorization": f"Bearer {app}"},
        )
        body = answer.json() if answer.status_code == 200 else {}
        if body.get("ok"):
            lines.append("slack.app_token: ok, Socket Mode accepts it")
        else:
            error = body.get("error", f"HTTP {answer.status_code}")
            lines.append(
                f"slack.app_token: FAILED: Slack says {error}; check the xapp- token "
                "(it needs connections:write)"
            )
    else:
        lines.append(
            "slack.signing_secret: not checkable from here; Slack verifies the Request URL "
            "when you save it in the app's settings"
        )
    return lines


async def _discord(settings: Settings, client: httpx.AsyncClient) -> list[str]:
    discord = settings.discord
    headers = {"Authorization": f"Bot {discord.token.get_secret_value()}"}
    base = discord.api_base_url.rstrip("/")
    me = await _get(client, "GET", f"{base}/users/@me", headers=headers)
    if me.status_code != 200:
        return [f"discord.token: {_refused(me, 'the token was')}"]
    user = me.json()
    app = await _get(client, "GET", f"{base}/oauth2/applications/@me", headers=headers)
    app_id = app.json().get("id") if app.status_code == 200 else "unknown"
    return [
        f"discord.token: ok, bot {user.get('username')} (user id {user.get('id')}, "
        f"application id {app_id})"
    ]


async def _provider(settings: Settings, client: httpx.AsyncClient) -> list[str]:
    config = settings.provider
    name = config.name
    base = base_url_for(settings).rstrip("/")
    key = config.api_key.get_secret_value()
    if name == "demo":
        return ["provider (demo): ok, offline; nothing to check"]
    if name == "bfl":
        answer = await _get(client, "GET", f"{base}/v1/credits", headers={"x-key": key})
        if answer.status_code == 200:
            return [f"provider.api_key (bfl): ok, {answer.json().get('credits')} credits left"]
        return [f"provider.api_key (bfl): {_refused(answer, 'the key was')}"]
    if name == "replicate":
        answer = await _get(
            client, "GET", f"{base}/v1/account", headers={"Authorization": f"Bearer {key}"}
        )
        if answer.status_code == 200:
            return [f"provider.api_key (replicate): ok, account {answer.json().get('username')}"]
        return [f"provider.api_key (replicate): {_refused(answer, 'the token was')}"]
    if name == "comfyui":
        header = config.auth_header.get_secret_value() or (f"Bearer {key}" if key else "")
        answer = await _get(
            client,
            "GET",
            f"{base}/system_stats",
            headers={"Authorization": header} if header else {},
        )
        if answer.status_code == 200:
            version = answer.json().get("system", {}).get("comfyui_version", "unknown")
            return [f"provider (comfyui): ok, ComfyUI {version} answers at {base}"]
        return [f"provider (comfyui): {_refused(answer, 'the request was')}"]
    answer = await _get(
        client,
        "GET",
        f"{base}/v1/predictions/{_PROBE_ID}",
        headers={"Authorization": f"Bearer {key}"},
    )
    if answer.status_code == 404:
        return [f"provider.api_key ({name}): ok, the key is accepted"]
    if answer.status_code in (401, 403):
        return [f"provider.api_key ({name}): {_refused(answer, 'the key was')}"]
    # Any other answer says nothing about the key (the read is not a documented one).
    return [
        f"provider.api_key ({name}): not known (HTTP {answer.status_code} to a read that "
        "should say 404); the first edit will tell"
    ]


async def check_online(settings: Settings, out: TextIO | None = None) -> bool:
    """Print one line per credential (to ``out``, else the current stdout); True when
    every one was accepted."""
    out = out or sys.stdout
    checks: list[tuple[str, Callable[[Settings, httpx.AsyncClient], Awaitable[list[str]]]]] = [
        ("provider", _provider)
    ]
    if settings.slack.enabled:
        checks.append(("slack", _slack))
    if settings.discord.enabled:
        checks.append(("discord", _discord))
    ok = True
    print("# online checks (no image is made):", file=out)
    async with new_http_client(timeout=settings.provider.request_timeout_seconds) as client:
        for name, check in checks:
            try:
                lines = await check(settings, client)
            except Checked as exc:
                lines = [f"{name}: {exc}"]
            except ValueError:  # an answer that is not JSON
                lines = [f"{name}: FAILED: the service's answer is not JSON (a proxy?)"]
            for line in lines:
                ok = ok and "FAILED" not in line
                print(line, file=out)
    return ok
