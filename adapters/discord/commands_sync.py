"""Sync the app commands only when their definitions changed.

Discord allows 200 command creates per day per guild; a bot that syncs on every start
(and a crash loop restarts it often) runs into that. The definitions' digest per scope
is kept next to the database, so a restart with the same commands syncs nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import discord
import structlog
from discord import app_commands

log = structlog.get_logger("kontext.discord")


async def _digest(tree: app_commands.CommandTree[Any], guild: discord.Object | None) -> str:
    """The definitions as they are synced: with their translations (translator.py), so a
    changed translation syncs again and an unchanged one does not."""
    translator = tree.translator
    definitions = [
        await command.get_translated_payload(tree, translator)
        if translator is not None
        else command.to_dict(tree)
        for command in tree.get_commands(guild=guild)
    ]
    definitions.sort(key=lambda d: (d.get("type", 1), d["name"]))
    return hashlib.sha256(json.dumps(definitions, sort_keys=True).encode()).hexdigest()


async def sync_if_changed(
    tree: app_commands.CommandTree[Any], guild_ids: list[int], data_dir: Path
) -> list[str]:
    """Sync to each of ``guild_ids`` (instant) or globally (up to an hour to show);
    returns the scopes that were synced."""
    application_id = tree.client.application_id
    marker = data_dir / f"discord-commands-{application_id}.json"
    known = _load(marker)
    synced: list[str] = []
    scopes: list[discord.Object | None] = [discord.Object(id=g) for g in guild_ids] or [None]
    for guild in scopes:
        if guild is not None:
            tree.copy_global_to(guild=guild)
        scope = str(guild.id) if guild is not None else "global"
        digest = await _digest(tree, guild)
        if known.get(scope) == digest:
            continue
        await tree.sync(guild=guild)
        known[scope] = digest
        synced.append(scope)
        log.info("discord commands synced", scope=scope)
    if synced:
        _save(marker, known)
    return synced


def _load(marker: Path) -> dict[str, str]:
    try:
        known = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in known.items()} if isinstance(known, dict) else {}


def _save(marker: Path, known: dict[str, str]) -> None:
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(known, indent=1))
