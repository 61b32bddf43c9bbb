"""The app commands in the user's language: discord.py's ``app_commands.Translator``
fills ``name_localizations`` and ``description_localizations`` from the bot's catalogs
(bot.i18n) when the commands are synced, so Discord shows each user the command list in
their client's language (https://discord.com/developers/docs/interactions/
application-commands#localization). The English definitions stay the commands' own.

Only what the catalogs translate is sent: a choice such as ``16:9`` or a model name has
no entry and keeps its name, ``/kontext`` keeps its name everywhere, and option names
(``prompt``, ``seed``) are never localized: they stay the words the help and the text
grammar use.
"""

from __future__ import annotations

import discord
from discord import app_commands

from bot import i18n


class CatalogTranslator(app_commands.Translator):
    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        if context.location is app_commands.TranslationContextLocation.parameter_name:
            return None  # option names stay as users type them (seed, image, prompt)
        code = i18n.match(locale.value)
        if code is None or code == i18n.SOURCE:
            return None
        translated = i18n.language(code).translations.gettext(string.message)
        return translated if translated != string.message else None
